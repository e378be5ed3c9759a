"""What each loss reads is hooked, and one dummy forward shows every GeoKT pair gets usable feature maps.

The forward runs on the models :mod:`.roles_check` built (meta device: shapes only, no compute) and again on CPU
when an op has no meta kernel or needs real values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .context import CheckContext
from .criterion_check import Term
from .errors import is_int, shape_of, short
from .module_paths import IO_NAMES, SELF_PATH, resolve
from .roles_check import CheckedRole, RoleModels, build_role
from .suggest import did_you_mean, nearest

__all__ = ["DEFAULT_INPUT_SHAPE", "Capture", "check_term_paths", "dummy_forward", "hooked_forward", "input_shape"]

DEFAULT_INPUT_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class Capture:
    """What one dummy forward of a role recorded."""

    io_dict: dict[str, dict[str, Any]]  # as torchdistill's hooks store it, '.' included
    shapes: dict[str, tuple[int, ...]]  # output shape of every module of the target that returns a tensor

    def good_paths(self) -> list[str]:
        """Module paths whose output is a 4-D map with at least 2 local features."""
        return [name for name, shape in self.shapes.items() if len(shape) == 4 and shape[2] * shape[3] >= 2]


def check_term_paths(ctx: CheckContext, terms: list[Term], roles: list[CheckedRole]) -> None:
    """Every ``student_module_path``/``teacher_module_path`` a term reads is hooked with that io."""
    by_name = {role.section.name: role for role in roles}
    for term in terms:
        for role_name, path, io, kw_name in term.reads():
            where = f"{term.where}.criterion.kwargs.{kw_name}"
            role = by_name.get(role_name)
            if role is None:
                if role_name == "teacher" and not ctx.has_teacher and isinstance(ctx.config.get("models"), Mapping):
                    ctx.report.error(where, f"{term.key} reads the teacher's {path!r}, but the config has no "
                                            "models.teacher_model. Add a teacher (and train.teacher), or drop this "
                                            "term.")
                continue
            if path == SELF_PATH or io not in IO_NAMES:
                continue
            if path not in role.hooks[io]:
                hooked = sorted(role.hooks[io])
                section = role.section.where
                ctx.report.error(where, f"{term.key} reads {role_name} {path!r} ({io}), which is not hooked "
                                        f"({section}.forward_hook.{io}: {hooked}). Add {path!r} to "
                                        f"{section}.forward_hook.{io}.{did_you_mean(path, hooked)}")


def input_shape(ctx: CheckContext) -> tuple[tuple[int, ...], str]:
    """``(C, H, W)`` of the dummy forward and where it comes from: the caller, ``check_input_shape``, the training
    dataset's first sample, else :data:`DEFAULT_INPUT_SHAPE`."""
    if ctx.input_shape is not None:
        return tuple(int(s) for s in ctx.input_shape), "input_shape argument"
    top = ctx.config.get("check_input_shape")
    if top is not None:
        if isinstance(top, list) and len(top) == 3 and all(is_int(s) and s > 0 for s in top):
            return tuple(top), "check_input_shape"
        ctx.report.error("check_input_shape", f"must be [C, H, W] of positive integers, got {short(top)}.")
    if ctx.sample_shape is not None:
        return ctx.sample_shape, "the training dataset's first sample"
    return DEFAULT_INPUT_SHAPE, "the default; set check_input_shape: [C, H, W] to change it"


def dummy_forward(ctx: CheckContext, sp: str, roles: list[CheckedRole], terms: list[Term]) -> None:
    """Run every role of stage ``sp`` on a zero batch of 2, then check each GeoKT term's pair of feature maps."""
    geokt = [t for t in terms if t.key.startswith("GeoKT") and t.module is not None]
    ready = [(role, role.models) for role in roles if role.models is not None]
    if not roles or len(ready) < len(roles):
        if geokt:
            ctx.report.warn(f"{sp}: the GeoKT feature-map shapes were not checked (models or hooks failed above).")
        return
    shape, source = input_shape(ctx)
    captures = {}
    for role, models in ready:
        capture = _forward_role(ctx, role, models, shape, source)
        if capture is None:
            return
        captures[role.section.name] = capture
    for term in geokt:
        _check_pair(ctx, term, captures)


def _forward_role(ctx: CheckContext, role: CheckedRole, models: RoleModels, shape: tuple[int, ...],
                  source: str) -> Capture | None:
    failures: list[str] = []
    for candidate in _as_built_then_on_cpu(ctx, role, models):
        try:
            capture = _run_forward(candidate, role.hooks, shape)
        except Exception as exc:  # noqa: BLE001  (NotImplementedError included: try again on CPU)
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        out = capture.io_dict[SELF_PATH]["output"]
        ctx.report.ok(f"{role.section.where}: dummy forward on {(2, *shape)} ({source}) gives {shape_of(out)}")
        return capture
    ctx.report.error(role.section.where, f"a dummy forward of the {role.section.name} on a batch of shape "
                                         f"{(2, *shape)} (from {source}) failed: "
                                         f"{failures[-1] if failures else 'no usable device'}. Check that the model "
                                         "fits the data (channels, image size), or set check_input_shape.")
    return None


def _as_built_then_on_cpu(ctx: CheckContext, role: CheckedRole, models: RoleModels) -> Iterator[RoleModels]:
    """``models`` as built, then (when they are not on CPU already) the role's models built again on CPU."""
    yield models
    if _device_of(models.target, "cpu").type == "cpu":
        return
    build = build_role(ctx, role.section, torch.device("cpu"))
    if build.models is not None:
        yield build.models


def _device_of(module: nn.Module, default: str) -> torch.device:
    """The device of ``module``'s first parameter (``default`` without parameters)."""
    return next(iter(module.parameters()), torch.empty(0, device=default)).device


def _run_forward(models: RoleModels, hooks: Mapping[str, frozenset[str]], shape: tuple[int, ...]) -> Capture:
    x = torch.zeros((2, *shape), device=_device_of(models.target, "meta"))
    return hooked_forward(models, hooks, lambda model: model(x))


def hooked_forward(models: RoleModels, hooks: Mapping[str, frozenset[str]],
                   forward: Callable[[nn.Module], Any]) -> Capture:
    """``forward(target)`` in eval mode without gradients, recording what torchdistill's hooks would, then the
    auxiliary wrapper's ``secondary_forward``; every hook is removed afterwards."""
    from torchdistill.models.wrapper import AuxiliaryModelWrapper

    target = models.target
    io_dict: dict[str, dict[str, Any]] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [module.register_forward_hook(_record_shape(shapes, name)) for name, module in target.named_modules()]
    for path in hooks["input"] | hooks["output"]:
        module = resolve(target, path[1:]) if path.startswith("+") else resolve(models.ref, path)
        if module is not None:
            handles.append(module.register_forward_hook(_record_io(io_dict, path)))
    try:
        with torch.no_grad():
            target.eval()
            out = forward(target)
            io_dict.setdefault(SELF_PATH, {})["output"] = out
            if isinstance(target, AuxiliaryModelWrapper):
                target.secondary_forward(io_dict)
    finally:
        for h in handles:
            h.remove()
    return Capture(io_dict, shapes)


def _record_shape(shapes: dict[str, tuple[int, ...]], name: str) -> Callable:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        if isinstance(output, Tensor):
            shapes[name] = tuple(output.shape)

    return hook


def _record_io(io_dict: dict[str, dict[str, Any]], path: str) -> Callable:
    """What torchdistill's hooks store: a tuple of length 1 is unwrapped."""

    def hook(module: nn.Module, args: Any, output: Any) -> None:
        entry = io_dict.setdefault(path, {})
        entry["input"] = args[0] if isinstance(args, tuple) and len(args) == 1 else args
        entry["output"] = output[0] if isinstance(output, tuple) and len(output) == 1 else output

    return hook


def _check_pair(ctx: CheckContext, term: Term, captures: Mapping[str, Capture]) -> None:
    """The term's student and teacher maps are 4-D, of one batch size, with >= 2 points per set after alignment."""
    module = term.module
    where = f"{term.where}.criterion.kwargs"
    s = _feature_map(ctx, term, captures.get("student"), "student")
    t = _feature_map(ctx, term, captures.get("teacher"), "teacher") if s is not None else None
    if s is None or t is None:
        return
    if s.shape[0] != t.shape[0]:
        ctx.report.error(where, f"{term.key}: student {shape_of(s)} and teacher {shape_of(t)} have different batch "
                                "sizes. Both networks must see the same batch (check the teacher's input adapter).")
        return
    H, W = min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3])
    scope = getattr(module, "scope", "image")
    n = H * W if scope == "image" else 2 * H * W
    max_points = getattr(module, "max_points", None)
    if max_points is not None:
        n = min(n, max_points) if scope == "image" else min(H * W, max_points) * 2
    if n < 2:
        good = captures["student"].good_paths()
        ctx.report.error(where, f"{term.key}: student {module.student_module_path!r} {shape_of(s)} and teacher "
                                f"{module.teacher_module_path!r} {shape_of(t)} align to {H}x{W} = {H * W} local "
                                f"feature(s) per image (scope {scope!r}); a point set needs at least 2. Hook a larger "
                                f"feature map (e.g. {nearest(module.student_module_path, good)}), use a larger "
                                "input, or set scope: 'batch'.")
        return
    neighbors = getattr(module, "neighbors", None)
    if is_int(neighbors) and neighbors > n - 1:
        ctx.report.warn(f"{where}.neighbors: {neighbors} is more than the {n - 1} other points of each set of student "
                        f"{module.student_module_path!r} (N = {n} points per set, {H}x{W}, scope {scope!r}); the "
                        f"loss clips it to {n - 1}, so every pair is a neighbour. Use neighbors < {n}, or hook a "
                        "larger map.")
    ctx.report.ok(f"{term.where}: {term.key} on student {shape_of(s)} / teacher {shape_of(t)}, {n} points per set")


def _feature_map(ctx: CheckContext, term: Term, capture: Capture | None, role_name: str) -> Tensor | None:
    """The 4-D map ``term`` reads from ``role_name``; ``None`` when it is not there (reported elsewhere) or not 4-D."""
    path = getattr(term.module, f"{role_name}_module_path")
    io = getattr(term.module, f"{role_name}_module_io")
    if capture is None or path not in capture.io_dict or io not in capture.io_dict[path]:
        return None  # reported by check_term_paths
    value = capture.io_dict[path][io]
    if not isinstance(value, Tensor) or value.dim() != 4:
        ctx.report.error(f"{term.where}.criterion.kwargs.{role_name}_module_path",
                         f"{term.key} reads {role_name} {path!r} ({io}) of shape {shape_of(value)}, but needs a 4-D "
                         f"feature map (B, C, H, W). Hook a convolutional stage instead; nearest 4-D paths: "
                         f"{nearest(path, capture.good_paths())}.")
        return None
    return value
