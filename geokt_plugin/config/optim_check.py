"""``optimizer`` and ``scheduler`` of a stage: registered keys that build with their ``kwargs``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .context import CheckContext
from .errors import is_int, is_number, short
from .registries import public_keys
from .suggest import unknown_key

__all__ = ["check_optimizer"]


def check_optimizer(ctx: CheckContext, sp: str, stage: Mapping, *, required: bool) -> None:
    """Build the stage's optimizer on a dummy parameter, then its scheduler on that optimizer."""
    r = ctx.report
    reg = ctx.registries
    where = f"{sp}.optimizer"
    cfg = r.mapping(stage, "optimizer", where, required=required,
                    example="{key: 'SGD', kwargs: {lr: 0.1, momentum: 0.9}}")
    if not cfg:
        return
    key = cfg.get("key")
    if key not in reg.optimizer or key == "Optimizer":
        known = public_keys(reg.optimizer, torch.optim.Optimizer)
        r.error(f"{where}.key", unknown_key("optimizer", key, known, uses_geokt=True))
        return
    kwargs = cfg.get("kwargs")
    if not isinstance(kwargs, Mapping):
        r.error(f"{where}.kwargs", f"must be a mapping (torchdistill requires it), got {short(kwargs)}. Add "
                                   "e.g. `kwargs: {lr: 0.1}`.")
        return
    try:
        optimizer = reg.optimizer[key]([nn.Parameter(torch.zeros(1))], **kwargs)
    except Exception as exc:  # noqa: BLE001
        r.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the arguments.")
        return
    norm = cfg.get("max_grad_norm")
    if norm is not None and (not is_number(norm) or not norm > 0):
        r.error(f"{where}.max_grad_norm", f"must be a number > 0, got {short(norm)}.")
    _check_scheduler(ctx, sp, stage, optimizer)


def _check_scheduler(ctx: CheckContext, sp: str, stage: Mapping, optimizer: torch.optim.Optimizer) -> None:
    r = ctx.report
    reg = ctx.registries
    sched = r.mapping(stage, "scheduler", f"{sp}.scheduler", required=False,
                      example="{key: 'MultiStepLR', kwargs: {milestones: [5], gamma: 0.1}}")
    if not sched:
        return
    key = sched.get("key")
    if key not in reg.scheduler:
        r.error(f"{sp}.scheduler.key", unknown_key("scheduler", key, public_keys(reg.scheduler), uses_geokt=True))
        return
    kwargs = sched.get("kwargs")
    if not isinstance(kwargs, Mapping):
        r.error(f"{sp}.scheduler.kwargs", f"must be a mapping (torchdistill requires it), got {short(kwargs)}.")
        return
    try:
        reg.scheduler[key](optimizer, **kwargs)
    except Exception as exc:  # noqa: BLE001
        r.error(f"{sp}.scheduler.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}.")
    step = sched.get("scheduling_step", 0)
    if not is_int(step) or step < 0:
        r.error(f"{sp}.scheduler.scheduling_step", f"must be an integer >= 0 (0: per epoch), got {short(step)}.")
