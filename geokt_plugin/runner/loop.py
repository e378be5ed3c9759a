"""The training loop: one step, one epoch, evaluation, and the non-finite-loss policy.

A flat Accelerate sequence per step: forward under ``accelerator.autocast()`` (teacher, student, adapters, every
loss term), the non-finite check (all ranks decide together), ``accelerator.backward``, ``clip_grad_norm_`` on
unscaled gradients, optimizer step, step-wise scheduler.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import rundir
from .distributed import any_rank, reduce_sum
from .loaders import batch_size, unpack
from .session import Session

__all__ = ["EpochTotals", "TrainingStopped", "evaluate", "restore_buffers", "snapshot_buffers", "train_epoch",
           "train_step"]

logger = logging.getLogger(__name__)


class TrainingStopped(RuntimeError):
    """Training stopped on purpose (a non-finite loss under ``--nan-policy stop``); printed as one line, exit 3."""


@dataclass
class EpochTotals:
    """One epoch's sums: per-rank while training, all ranks' after :meth:`reduced`."""

    sums: dict[str, float] = field(default_factory=lambda: collections.defaultdict(float))
    seen: float = 0
    correct: float = 0
    acc_seen: float = 0
    steps: float = 0
    skipped: float = 0
    lr: float = float("nan")
    seconds: float = 0.0

    def add(self, loss: Tensor, box: Any, n: int, targets: Tensor) -> None:
        """Count one optimizer-visible step: the loss, each weighted term and the top-1 hits, weighted by ``n``."""
        self.steps += 1
        self.sums["train_loss"] += float(loss.detach()) * n
        for name, value in box.term_values.items():
            self.sums[f"{rundir.TERM_PREFIX}{name}"] += box.term_weights.get(name, 1.0) * float(value.detach()) * n
        hits = _count_correct(box.last_outputs, targets)
        if hits is not None:
            self.correct, self.acc_seen = self.correct + hits, self.acc_seen + n
        self.seen += n

    def reduced(self, accelerator: Any) -> EpochTotals:
        """The sums over all ranks."""
        keys = sorted(self.sums)
        counts = [self.seen, self.correct, self.acc_seen, self.steps, self.skipped]
        totals = reduce_sum([self.sums[k] for k in keys] + counts, accelerator)
        seen, correct, acc_seen, steps, skipped = totals[len(keys):]
        return EpochTotals(dict(zip(keys, totals[:len(keys)], strict=True)), seen, correct, acc_seen, steps, skipped,
                           self.lr, self.seconds)


def snapshot_buffers(model: nn.Module) -> dict[str, Tensor]:
    """Copies of every buffer (BatchNorm running statistics, counters) of ``model``."""
    return {name: buf.detach().clone() for name, buf in model.named_buffers()}


def restore_buffers(model: nn.Module, saved: Mapping[str, Tensor] | None) -> None:
    """Put back the buffers saved by :func:`snapshot_buffers` (no-op for ``None``)."""
    if saved is None:
        return
    with torch.no_grad():
        for name, buf in model.named_buffers():
            buf.copy_(saved[name])


def _non_finite(loss: Tensor, terms: Mapping[str, Tensor]) -> str | None:
    for name, value in terms.items():
        if isinstance(value, Tensor) and not bool(torch.isfinite(value.detach()).all()):
            return name
    if not bool(torch.isfinite(loss.detach()).all()):
        return "total"
    return None


def _count_correct(outputs: Any, targets: Tensor) -> int | None:
    """Correct top-1 predictions, or None when the stage's output is not logits (e.g. a FitNets hint stage)."""
    if isinstance(outputs, Tensor) and outputs.dim() == 2 and isinstance(targets, Tensor) and targets.dim() == 1 \
            and outputs.shape[0] == targets.shape[0]:
        return int((outputs.detach().argmax(dim=1) == targets).sum())
    return None


def train_step(session: Session, sample: Any, targets: Tensor, supp: dict | None, *, sync_now: bool,
               nan_policy: str) -> Tensor | str:
    """One forward/backward (and, when ``sync_now``, optimizer step); the loss, or the name of a non-finite term.

    A non-finite step leaves no trace: gradients are dropped and, under ``nan_policy='skip'``, the buffers that the
    forward pass updated (BatchNorm running statistics) are put back.
    """
    box, accelerator = session.box, session.accelerator
    model, optimizer = box.student, box.optimizer
    with contextlib.nullcontext() if sync_now else accelerator.no_sync(model):
        saved_buffers = snapshot_buffers(model) if nan_policy == "skip" else None
        with accelerator.autocast():
            loss = box.forward_process(sample, targets, supp)
        bad = any_rank(_non_finite(loss, box.term_values), accelerator)
        if bad:
            optimizer.zero_grad(set_to_none=True)
            restore_buffers(model, saved_buffers)
            return bad
        # backward (scaled under fp16), then clip on unscaled gradients and step
        accelerator.backward(loss / box.grad_accum)
    box.count_backward()
    if sync_now:
        if box.max_grad_norm is not None:
            params = [p for group in optimizer.param_groups for p in group["params"]]
            accelerator.clip_grad_norm_(params, box.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        box.step_scheduler()
    return loss


@dataclass
class EpochPlan:
    """Where an epoch sits in the run, and how to report it."""

    epoch: int
    num_epochs: int
    grad_steps: int
    nan_policy: str
    log_every: int
    is_main: bool
    run_dir: Path


def _stop_message(bad: str, plan: EpochPlan, step: int, steps: float) -> str:
    last = rundir.RunDir(plan.run_dir).last
    where = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint yet"
    return (f"non-finite loss term {bad!r} at epoch {plan.epoch + 1}, step {step + 1} (global step "
            f"{plan.grad_steps + int(steps) + 1}); {where}. Lower the lr or the term's weight, or use "
            "--nan-policy skip.")


def train_epoch(session: Session, plan: EpochPlan) -> EpochTotals:
    """Train one epoch (data order already set); this rank's totals. Raises :class:`TrainingStopped`."""
    box = session.box
    loader = box.train_data_loader
    totals = EpochTotals(lr=float(box.optimizer.param_groups[0]["lr"]))
    t0 = time.perf_counter()
    bar = _progress_bar(len(loader), plan)
    for step, batch in enumerate(loader):
        sample, targets, supp = unpack(batch)
        sync_now = (step + 1) % box.grad_accum == 0 or step + 1 == len(loader)
        result = train_step(session, sample, targets, supp, sync_now=sync_now, nan_policy=plan.nan_policy)
        if isinstance(result, str):
            totals.skipped += 1
            if plan.nan_policy == "stop":
                raise TrainingStopped(_stop_message(result, plan, step, totals.steps))
        else:
            totals.add(result, box, batch_size(sample), targets)
        if bar is not None:
            bar.update(1)
            if not isinstance(result, str):
                bar.set_postfix(loss=f"{float(result.detach()):.4f}")
        elif plan.is_main and not isinstance(result, str) and (step + 1) % plan.log_every == 0:
            logger.info("epoch %d/%d step %d/%d loss %.4f lr %.4g", plan.epoch + 1, plan.num_epochs, step + 1,
                        len(loader), float(result.detach()), totals.lr)
    if bar is not None:
        bar.close()
    totals.seconds = time.perf_counter() - t0
    return totals


def _progress_bar(total: int, plan: EpochPlan) -> Any:
    """A tqdm bar on the main process when stderr is a TTY, else ``None`` (log lines instead)."""
    if not (plan.is_main and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {plan.epoch + 1}/{plan.num_epochs}", leave=False, dynamic_ncols=True)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Any, accelerator: Any) -> float:
    """Top-1 accuracy in percent over the whole (gathered, de-duplicated) loader."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    total = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for batch in loader:
        sample, targets, _ = unpack(batch)
        with accelerator.autocast():
            logits = model(sample)
        if not isinstance(logits, Tensor) or logits.dim() != 2:
            logger.warning("evaluation skipped: %s returns %s, not (batch, classes) logits", type(model).__name__,
                           tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__)
            model.train(was_training)
            return float("nan")
        logits, targets = accelerator.gather_for_metrics((logits.float(), targets))
        correct += (logits.argmax(dim=1) == targets).sum()
        total += targets.numel()
    model.train(was_training)
    return float(100.0 * correct / total.clamp_min(1))
