"""``optimizer`` and ``scheduler`` of a stage: registered keys, numbers that are numbers, and a dry run.

The optimizer is built on a dummy parameter and stepped once; the scheduler is built on it and stepped as often as
the run will step it (``num_epochs`` times, or once per ``scheduling_step`` optimizer steps), so a ``gamma`` or
``total_steps`` that would stop the run at a milestone fails here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .context import CheckContext
from .errors import is_int, is_number, short
from .numbers_check import check_int, check_kwarg_numbers, number_hint
from .registries import public_keys
from .suggest import unknown_key

__all__ = ["MAX_SCHEDULER_STEPS", "Schedule", "check_optimizer"]

MAX_SCHEDULER_STEPS = 100_000  # a dry run longer than this is cut short (with a note)


@dataclass(frozen=True)
class Schedule:
    """How often the run steps the scheduler of a stage."""

    epochs: int | None  # the stage's num_epochs (None: invalid, reported elsewhere)
    batches: int | None  # training batches per epoch (None: unknown)


def check_optimizer(ctx: CheckContext, sp: str, stage: Mapping, *, required: bool, schedule: Schedule) -> None:
    """Build the stage's optimizer on a dummy parameter and step it, then dry-run its scheduler."""
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
    _check_step_options(ctx, where, cfg)
    kwargs = cfg.get("kwargs")
    if not isinstance(kwargs, Mapping):
        r.error(f"{where}.kwargs", f"must be a mapping (torchdistill requires it), got {short(kwargs)}. Add "
                                   "e.g. `kwargs: {lr: 0.1}`.")
        return
    ok = check_kwarg_numbers(r, reg.optimizer[key], kwargs, f"{where}.kwargs")
    for i, group in enumerate(cfg.get("module_wise_configs") or []):
        if isinstance(group, Mapping) and isinstance(group.get("kwargs"), Mapping):
            ok = check_kwarg_numbers(r, reg.optimizer[key], group["kwargs"],
                                     f"{where}.module_wise_configs[{i}].kwargs") and ok
    if not ok:
        return
    optimizer = _dry_optimizer(ctx, where, key, kwargs)
    if optimizer is not None:
        _check_scheduler(ctx, sp, stage, optimizer, schedule)


def _check_step_options(ctx: CheckContext, where: str, cfg: Mapping) -> None:
    """``max_grad_norm`` (a number > 0) and ``grad_accum_step`` (a positive integer), read by torchdistill here."""
    norm = cfg.get("max_grad_norm")
    if norm is not None and (not is_number(norm) or not norm > 0):
        ctx.report.error(f"{where}.max_grad_norm", f"must be a number > 0, got {short(norm)}.{number_hint(norm)}")
    if cfg.get("grad_accum_step") is not None:
        check_int(ctx.report, cfg["grad_accum_step"], f"{where}.grad_accum_step", minimum=1, example="1")


def _dry_optimizer(ctx: CheckContext, where: str, key: str, kwargs: Mapping) -> torch.optim.Optimizer | None:
    """The optimizer on one dummy parameter after one step, or ``None`` (reported)."""
    param = nn.Parameter(torch.zeros(1))
    try:
        optimizer = ctx.registries.optimizer[key]([param], **kwargs)
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the "
                                            "arguments.")
        return None
    param.grad = torch.ones_like(param)
    try:
        optimizer.step()
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(f"{where}.kwargs", f"{key}: one optimizer step on a dummy parameter failed: "
                                            f"{type(exc).__name__}: {exc}. Fix the arguments.")
        return None
    if not torch.isfinite(param).all():
        ctx.report.error(f"{where}.kwargs", f"{key}: one step on a dummy parameter gives {param.item()}; the "
                                            "arguments make the update non-finite. Fix lr and the other arguments.")
        return None
    return optimizer


def _check_scheduler(ctx: CheckContext, sp: str, stage: Mapping, optimizer: torch.optim.Optimizer,
                     schedule: Schedule) -> None:
    r = ctx.report
    reg = ctx.registries
    where = f"{sp}.scheduler"
    sched = r.mapping(stage, "scheduler", where, required=False,
                      example="{key: 'MultiStepLR', kwargs: {milestones: [5], gamma: 0.1}}")
    if not sched:
        return
    key = sched.get("key")
    if key not in reg.scheduler:
        r.error(f"{where}.key", unknown_key("scheduler", key, public_keys(reg.scheduler), uses_geokt=True))
        return
    kwargs = sched.get("kwargs")
    if not isinstance(kwargs, Mapping):
        r.error(f"{where}.kwargs", f"must be a mapping (torchdistill requires it), got {short(kwargs)}.")
        return
    every = sched.get("scheduling_step", 0)
    if not is_int(every) or every < 0:
        r.error(f"{where}.scheduling_step", f"must be an integer >= 0 (0: per epoch), got {short(every)}."
                                            f"{number_hint(every)}")
        every = None
    if not check_kwarg_numbers(r, reg.scheduler[key], kwargs, f"{where}.kwargs") or not _milestones_ok(
            ctx, where, kwargs):
        return
    try:
        scheduler = reg.scheduler[key](optimizer, **kwargs)
    except Exception as exc:  # noqa: BLE001
        r.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}.")
        return
    steps, unit = _scheduler_steps(schedule, every)
    if steps is not None:
        _dry_run(ctx, where, key, optimizer, scheduler, steps, unit)
        _warn_late_milestones(ctx, where, kwargs, steps, unit)


def _milestones_ok(ctx: CheckContext, where: str, kwargs: Mapping) -> bool:
    """``milestones`` is a list of integers >= 0 (MultiStepLR reads a string's characters and never decays)."""
    milestones = kwargs.get("milestones")
    if milestones is None or (isinstance(milestones, (list, tuple))
                              and all(is_int(m) and m >= 0 for m in milestones)):
        return True
    ctx.report.error(f"{where}.kwargs.milestones", f"must be a list of integers >= 0 (the epochs, or steps, at "
                                                   f"which the lr decays), got {short(milestones)} "
                                                   f"({type(milestones).__name__}); with it the lr would never "
                                                   "decay, or the run would fail. Write e.g. milestones: [30, 60].")
    return False


def _scheduler_steps(schedule: Schedule, every: int | None) -> tuple[int | None, str]:
    """How many times the run steps the scheduler, and what one step is (``None``: unknown)."""
    if schedule.epochs is None or every is None:
        return None, ""
    if every == 0:
        return schedule.epochs, "epoch"
    if schedule.batches is None:
        return None, ""
    return schedule.epochs * schedule.batches // every, "scheduler step"


def _dry_run(ctx: CheckContext, where: str, key: str, optimizer: torch.optim.Optimizer, scheduler: Any,
             steps: int, unit: str) -> None:
    """Step ``scheduler`` ``steps`` times as the run does; the lr must stay a finite number >= 0."""
    from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, ReduceLROnPlateau

    done = min(steps, MAX_SCHEDULER_STEPS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. torch's "step() before optimizer.step()" on the dry run
        for i in range(1, done + 1):
            try:
                if isinstance(scheduler, ReduceLROnPlateau):
                    scheduler.step(0.0)
                elif isinstance(scheduler, CosineAnnealingWarmRestarts):
                    scheduler.step(i)
                else:
                    scheduler.step()
            except Exception as exc:  # noqa: BLE001
                ctx.report.error(f"{where}.kwargs", f"{key}: the run would fail at {unit} {i} of {steps}: "
                                                    f"{type(exc).__name__}: {exc}. Fix the scheduler's arguments.")
                return
            lrs = [group["lr"] for group in optimizer.param_groups]
            if not all(is_number(lr) and math.isfinite(lr) and lr >= 0 for lr in lrs):
                ctx.report.error(f"{where}.kwargs", f"{key}: the lr becomes {short(lrs[0])} at {unit} {i} of "
                                                    f"{steps}; it must stay a finite number >= 0. Fix the "
                                                    "scheduler's arguments (e.g. gamma in (0, 1]).")
                return
    if done < steps:
        ctx.report.warn(f"{where}: dry run of {key} stopped after {done} of {steps} {unit}s")


def _warn_late_milestones(ctx: CheckContext, where: str, kwargs: Mapping, steps: int, unit: str) -> None:
    milestones = kwargs.get("milestones")
    late = sorted(m for m in milestones or [] if m > steps)
    if late:
        ctx.report.warn(f"{where}.kwargs.milestones: {late} lie beyond the last {unit} ({steps}); the lr never "
                        "decays there. Lower them or raise num_epochs.")
