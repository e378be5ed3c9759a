"""The teacher and student sections of a stage: ``forward_proc``, hooks, and the model the box would hook.

The model a box hooks is the ``models.*`` entry, wrapped by the ``auxiliary_model_wrapper`` (if any), then
redesigned by ``sequential``. It is built on the meta device (shapes only); on CPU when the meta device cannot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn

from .context import CheckContext
from .errors import short
from .models_check import check_checkpoint
from .module_paths import IO_NAMES, SELF_PATH, path_message, resolve
from .suggest import unknown_key

__all__ = ["BuildStatus", "CheckedRole", "RoleBuild", "RoleModels", "RoleSection", "build_role", "check_role",
           "stage_roles"]

_META, _CPU = torch.device("meta"), torch.device("cpu")
_ROLE_EXAMPLE = "{forward_proc: 'forward_batch_only', forward_hook: {input: [], output: []}}"


@dataclass(frozen=True)
class RoleSection:
    """The teacher or the student of one stage: which, and its YAML section."""

    name: str  # "teacher" or "student"
    where: str  # e.g. "train.student"
    cfg: Mapping


@dataclass(frozen=True)
class RoleModels:
    """What a box would hook for one role."""

    ref: nn.Module  # what non-'+' hook paths resolve against: the auxiliary wrapper, else the model
    target: nn.Module  # what runs forward: ``ref`` after the ``sequential`` redesign


class BuildStatus(Enum):
    BUILT = "built"
    FAILED = "failed"  # did not build; what went wrong is in the report (or was found by an earlier check)
    NEEDS_CPU = "needs_cpu"  # the meta device cannot build it (no meta kernel, a wrapper that needs real tensors)


@dataclass(frozen=True)
class RoleBuild:
    """The outcome of :func:`build_role`: ``models`` is set exactly when ``status`` is ``BUILT``."""

    status: BuildStatus
    models: RoleModels | None = None


@dataclass(frozen=True)
class CheckedRole:
    """A role after :func:`check_role`.

    Attributes:
        section: the role's YAML section.
        hooks: the hooked module paths per io name (empty for an io whose list is malformed).
        models: what the box would hook, when the model, its wrapper and every hook path check out; else ``None``
            (the dummy forward is then skipped).
    """

    section: RoleSection
    hooks: Mapping[str, frozenset[str]]
    models: RoleModels | None


def stage_roles(ctx: CheckContext, sp: str, stage: Mapping, *, required: bool) -> list[RoleSection]:
    """The stage's teacher/student sections (a later stage may omit one: torchdistill keeps the previous)."""
    roles = []
    for name in ("teacher", "student") if ctx.has_teacher else ("student",):
        section = name
        if name == "student" and not ctx.has_teacher and "model" in stage:
            section = "model"  # torchdistill's TrainingBox reads train.model (the runner maps student to it)
        where = f"{sp}.{section}"
        cfg = ctx.report.mapping(stage, section, where, required=required, example=_ROLE_EXAMPLE)
        if cfg is not None:
            roles.append(RoleSection(name, where, cfg))
    return roles


def check_role(ctx: CheckContext, role: RoleSection) -> CheckedRole:
    """Check the role's ``forward_proc`` and hooks, build what it hooks, resolve every path, check ``src_ckpt``."""
    _check_forward_proc(ctx, role)
    hooks, hooks_ok = _read_hooks(ctx, role)
    if f"{role.name}_model" not in ctx.models:
        return CheckedRole(role, hooks, None)  # the model failed its own check, or is a torch.hub model
    build = build_role(ctx, role, _META)
    if build.status is BuildStatus.NEEDS_CPU:
        build = build_role(ctx, role, _CPU)
    if build.models is None:
        return CheckedRole(role, hooks, None)
    _check_frozen_modules(ctx, role, build.models.ref)
    if role.name == "student":
        _check_trainable(ctx, role, build.models)
    paths_ok = _check_hook_paths(ctx, role, hooks, build.models)
    if role.cfg.get("src_ckpt") is not None:
        check_checkpoint(ctx, role.cfg["src_ckpt"], f"{role.where}.src_ckpt", build.models.target,
                         f"the {role.name} as hooked in {role.where}", weights_only=False)
    return CheckedRole(role, hooks, build.models if hooks_ok and paths_ok else None)


def _check_forward_proc(ctx: CheckContext, role: RoleSection) -> None:
    proc = role.cfg.get("forward_proc")
    procs = ctx.registries.procs["forward_proc"]
    if proc is None:
        ctx.report.error(f"{role.where}.forward_proc", f"missing; torchdistill requires it. Add `forward_proc: "
                                                       f"'forward_batch_only'` (registered: {sorted(procs)}).")
    elif proc not in procs:
        ctx.report.error(f"{role.where}.forward_proc", unknown_key("forward_proc", proc, sorted(procs),
                                                                   uses_geokt=ctx.uses_geokt_dependency))


def _read_hooks(ctx: CheckContext, role: RoleSection) -> tuple[dict[str, frozenset[str]], bool]:
    """The hooked paths per io name, and whether every list was well formed."""
    r = ctx.report
    hook_cfg = role.cfg.get("forward_hook") or {}
    if not isinstance(hook_cfg, Mapping):
        r.error(f"{role.where}.forward_hook", f"must be a mapping {{input: [...], output: [...]}}, got "
                                              f"{short(hook_cfg)}.")
        hook_cfg = {}
    for io in hook_cfg:
        if io not in IO_NAMES:
            r.error(f"{role.where}.forward_hook.{io}", f"unknown io name {io!r}; use {list(IO_NAMES)}.")
    hooks = {io: frozenset() for io in IO_NAMES}
    ok = True
    for io in IO_NAMES:
        paths = hook_cfg.get(io) or []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            r.error(f"{role.where}.forward_hook.{io}", f"must be a list of module paths, got {short(paths)}.")
            ok = False
            continue
        hooks[io] = frozenset(paths)
    return hooks, ok


class _NeedsCPU(Exception):
    """The meta device cannot build this part; :func:`build_role` reports ``NEEDS_CPU``."""


class _Failed(Exception):
    """This part did not build and its problem is reported; :func:`build_role` reports ``FAILED``."""


def build_role(ctx: CheckContext, role: RoleSection, device: torch.device) -> RoleBuild:
    """Build what the box hooks for ``role`` on ``device``: the model, its auxiliary wrapper, then ``sequential``.

    Returns:
        ``BUILT`` with the models; ``NEEDS_CPU`` when ``device`` is meta and cannot build them (call again with
        CPU); ``FAILED`` otherwise (the problem is in the report).
    """
    recipe = ctx.models.get(f"{role.name}_model")
    if recipe is None:
        return RoleBuild(BuildStatus.FAILED)
    try:
        with torch.device(device):
            ref = _wrap(ctx, role, recipe.build(device), device)
            target = _redesign(ctx, role, ref)
    except (NotImplementedError, _NeedsCPU):
        return RoleBuild(BuildStatus.NEEDS_CPU if device.type == "meta" else BuildStatus.FAILED)
    except _Failed:
        return RoleBuild(BuildStatus.FAILED)
    return RoleBuild(BuildStatus.BUILT, RoleModels(ref, target))


def _wrap(ctx: CheckContext, role: RoleSection, model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in the role's auxiliary wrapper, if it names one."""
    aux = role.cfg.get("auxiliary_model_wrapper")
    where = f"{role.where}.auxiliary_model_wrapper"
    if aux is not None and not isinstance(aux, Mapping):
        ctx.report.error(where, f"must be a mapping {{key, kwargs}}, got {short(aux)}.")
    if not isinstance(aux, Mapping) or aux.get("key") is None:
        return model
    key = aux["key"]
    wrappers = ctx.registries.aux_wrapper
    if key not in wrappers:
        ctx.report.error(f"{where}.key", unknown_key("auxiliary_model_wrapper", key, sorted(wrappers),
                                                     uses_geokt=ctx.uses_geokt_dependency))
        raise _Failed
    try:
        return wrappers[key](**{f"{role.name}_model": model}, device=device, device_ids=None, distributed=False,
                             **(aux.get("kwargs") or {}))
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        if device.type == "meta":
            raise _NeedsCPU from exc  # some wrappers move tensors or probe shapes
        ctx.report.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the "
                                            "wrapper's arguments.")
        raise _Failed from exc


def _redesign(ctx: CheckContext, role: RoleSection, ref: nn.Module) -> nn.Module:
    """``ref`` redesigned by the role's ``sequential`` list (``ref`` itself without one)."""
    from torchdistill.models.util import redesign_model

    seq = role.cfg.get("sequential") or []
    if not seq:
        return ref
    adaptations = role.cfg.get("adaptations") or {}
    bad = False
    for i, path in enumerate(seq):
        where = f"{role.where}.sequential[{i}]"
        if isinstance(path, str) and path.startswith("+"):
            if path[1:] not in adaptations:
                ctx.report.error(where, f"{path!r} names no entry of adaptations ({sorted(adaptations)}). Add it "
                                        "under adaptations.")
                bad = True
        elif not isinstance(path, str) or resolve(ref, path) is None:
            ctx.report.error(where, path_message(path, ref))
            bad = True
    if bad:
        raise _Failed
    try:
        return redesign_model(ref, role.cfg, role.name, "checked")
    except NotImplementedError:
        raise
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(f"{role.where}.sequential", f"redesigning the {role.name} failed: {type(exc).__name__}: "
                                                     f"{exc}.")
        raise _Failed from exc


def _check_frozen_modules(ctx: CheckContext, role: RoleSection, ref: nn.Module) -> None:
    """Without ``sequential``, every ``frozen_modules`` path exists (``instance(...)`` entries name classes)."""
    if role.cfg.get("sequential"):
        return
    for i, path in enumerate(role.cfg.get("frozen_modules") or []):
        if isinstance(path, str) and not path.startswith("instance(") and resolve(ref, path) is None:
            ctx.report.error(f"{role.where}.frozen_modules[{i}]", path_message(path, ref))


def _check_trainable(ctx: CheckContext, role: RoleSection, models: RoleModels) -> None:
    """The student keeps a trainable parameter after ``requires_grad`` and ``frozen_modules`` (torch's optimizers
    refuse an empty parameter list, and there would be nothing to train)."""
    params = list(models.target.parameters())
    if not params:
        return  # a parameter-free student: nothing to freeze, and its own problem
    if role.cfg.get("requires_grad", True) is False:
        ctx.report.error(f"{role.where}.requires_grad", f"False freezes the whole student ({_count(params)}); "
                                                        "the optimizer would get no parameter to "
                                                        "train. Set requires_grad: True.")
        return
    frozen = role.cfg.get("frozen_modules") or []
    frozen_ids = {id(p) for path in frozen if isinstance(path, str) for p in _frozen_params(models.ref, path)}
    if not [p for p in params if p.requires_grad and id(p) not in frozen_ids]:
        ctx.report.error(f"{role.where}.frozen_modules", f"{short(frozen, 120)} freeze every parameter of the "
                                                         f"student ({_count(params)}); the optimizer would get no "
                                                         "parameter to train. Remove at least one module from "
                                                         "frozen_modules.")


def _frozen_params(ref: nn.Module, path: str) -> list[nn.Parameter]:
    """The parameters torchdistill freezes for one ``frozen_modules`` entry (``instance(Cls)``: every ``nn.Cls``)."""
    if path.startswith("instance(") and path.endswith(")"):
        cls = getattr(nn, path[len("instance("):-1], None)
        if not isinstance(cls, type):
            return []
        return [p for m in ref.modules() if isinstance(m, cls) for p in m.parameters()]
    module = resolve(ref, path)
    return list(module.parameters()) if module is not None else []


def _count(params: list[nn.Parameter]) -> str:
    return f"{sum(p.numel() for p in params):,} parameters"


def _check_hook_paths(ctx: CheckContext, role: RoleSection, hooks: Mapping[str, frozenset[str]],
                      models: RoleModels) -> bool:
    """Every hooked path exists (``+name``: an adaptation module of the target); ``False`` if one does not."""
    ok = True
    for io in IO_NAMES:
        where = f"{role.where}.forward_hook.{io}"
        for path in sorted(hooks[io]):
            if path == SELF_PATH:
                ctx.report.error(where, "'.' (the model's own output) cannot be hooked; torchdistill always stores "
                                        "it as io_dict['.']['output']. Remove '.' from the hook list.")
                ok = False
            elif path.startswith("+"):
                if resolve(models.target, path[1:]) is None:
                    ctx.report.error(where, path_message(path[1:], models.target).replace(
                        f"no module {path[1:]!r}", f"no adaptation module {path!r}"))
                    ok = False
            elif resolve(models.ref, path) is None:
                ctx.report.error(where, path_message(path, models.ref))
                ok = False
    return ok
