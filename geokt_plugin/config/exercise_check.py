"""The loss of a first training step, computed before the run: every criterion term on one real batch.

Runs once every other check of the config passed: the roles are built on CPU (random weights), run through their
``forward_proc`` on the first two samples of the training loader's first batch with torchdistill's hooks, and each
``sub_terms`` entry of the criterion torchdistill builds must give a finite scalar. This catches what shapes cannot
show: ``reduction: 'none'`` inside ``WeightedSumLoss`` (a vector where backward needs a scalar), labels outside the
model's classes, a loss that is NaN on real data.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from .context import CheckContext
from .criterion_check import Term
from .errors import shape_of, short
from .forward_check import Capture, hooked_forward
from .roles_check import CheckedRole, build_role

__all__ = ["exercise_criterion"]

_SAMPLES = 2  # samples of the first batch the models run on (enough for BatchNorm and for batch-scope point sets)


def exercise_criterion(ctx: CheckContext, sp: str, stage: Mapping, roles: list[CheckedRole], terms: list[Term]) -> None:
    """Evaluate each term of stage ``sp``'s criterion on one training batch (skipped after any earlier problem)."""
    batch = ctx.train_batch
    if ctx.report.problems or batch is None or not terms or not roles or any(r.models is None for r in roles):
        return
    sample, targets = _head(batch[0]), _head(batch[1])
    supp = _head(batch[2]) if len(batch) == 3 else None
    if not isinstance(sample, Tensor):
        ctx.report.warn(f"{sp}.criterion: the loss terms were not evaluated on a batch (the training sample is a "
                        f"{type(sample).__name__}, not a tensor)")
        return
    io_dicts = {}
    for role in roles:
        capture = _forward(ctx, role, sample, targets, supp)
        if capture is None:
            return
        io_dicts[role.section.name] = capture.io_dict
    criterion = _build_criterion(ctx, sp, stage)
    term_dict = getattr(criterion, "term_dict", None)
    if not isinstance(term_dict, Mapping):
        return
    finite_data = bool(torch.isfinite(sample).all())
    with _eager_losses():
        for name, (term, _weight) in term_dict.items():
            _evaluate(ctx, f"{sp}.criterion.kwargs.sub_terms.{name}", term, io_dicts, targets, finite_data)


def _eager_losses() -> AbstractContextManager[None]:
    """The GeoKT losses' compiled path off for one evaluation: compiling a kernel takes far longer than the check."""
    from ..losses.compiled import eager

    return eager()


def _head(value: Any) -> Any:
    """The first :data:`_SAMPLES` samples of every tensor in ``value`` (mappings, lists and tuples walked)."""
    if isinstance(value, Tensor):
        return value[:_SAMPLES] if value.dim() > 0 else value
    if isinstance(value, Mapping):
        return {k: _head(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_head(v) for v in value)
    return value


def _forward(ctx: CheckContext, role: CheckedRole, sample: Tensor, targets: Any, supp: Any) -> Capture | None:
    """The role's io_dict after its ``forward_proc`` on ``sample`` (CPU, random weights); ``None`` when it fails."""
    build = build_role(ctx, role.section, torch.device("cpu"))
    if build.models is None:
        ctx.report.warn(f"{role.section.where}: not built on CPU, so the loss terms were not evaluated on a batch")
        return None
    procs = ctx.registries.procs["forward_proc"]
    proc = procs[role.section.cfg["forward_proc"]]
    try:
        return hooked_forward(build.models, role.hooks, lambda model: proc(model, sample, targets, supp))
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(role.section.where, f"a forward of the {role.section.name} on one training batch "
                                             f"{shape_of(sample)} failed: {type(exc).__name__}: {exc}. Check that the "
                                             "model fits the data.")
        return None


def _build_criterion(ctx: CheckContext, sp: str, stage: Mapping) -> nn.Module | None:
    """The criterion as torchdistill builds it from ``stage['criterion']``, or ``None`` (reported)."""
    from torchdistill.losses.registry import get_high_level_loss

    try:
        return get_high_level_loss(stage["criterion"])
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(f"{sp}.criterion", f"torchdistill could not build it: {type(exc).__name__}: {exc}.")
        return None


def _evaluate(ctx: CheckContext, where: str, term: nn.Module, io_dicts: Mapping[str, dict], targets: Any,
              finite_data: bool) -> None:
    """``term(student_io_dict, teacher_io_dict, targets)`` as WeightedSumLoss calls it must be a finite scalar (on
    data that is itself non-finite, a non-finite value is the run's NaN guard's business: a warning)."""
    try:
        with torch.no_grad():
            value = term(io_dicts["student"], io_dicts.get("teacher", {}), targets)
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(where, f"evaluating the term on one training batch failed: {type(exc).__name__}: {exc}. "
                                "Fix the term's kwargs, or the data it reads.")
        return
    if not isinstance(value, Tensor):
        ctx.report.error(where, f"gives {type(value).__name__} {short(value)} on one training batch, not a tensor; "
                                "WeightedSumLoss needs a scalar tensor. Use a loss module that returns one.")
    elif value.numel() != 1:
        ctx.report.error(where, f"gives a tensor of shape {tuple(value.shape)} on one training batch, not a scalar; "
                                "WeightedSumLoss adds the weighted terms and backward needs a scalar. Set "
                                "reduction: 'mean' (or 'sum') in its criterion.kwargs.")
    elif not torch.isfinite(value).all() and not finite_data:
        ctx.report.warn(f"{where}: gives {value.item()} on the first training batch, whose samples hold non-finite "
                        "values; the run's NaN guard (--nan-policy) will act on it")
    elif not torch.isfinite(value).all():
        ctx.report.error(where, f"gives {value.item()} on one training batch (random weights); the run would stop "
                                "at its first step. Check the term's kwargs (eps, temperature) and the data.")
    else:
        ctx.report.ok(f"{where}: {value.item():.4g} on one training batch")
