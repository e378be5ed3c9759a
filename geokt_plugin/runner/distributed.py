"""Several processes: the Accelerator, DDP options from the config, model unwrapping, and what ranks share (buffers,
flags, sums, per-rank objects)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from ..config.stages import stage_keys

__all__ = ["any_rank", "ddp_kwargs_from_config", "gather_per_rank", "make_accelerator", "reduce_sum", "sync_buffers",
           "unwrap"]

logger = logging.getLogger(__name__)


def ddp_kwargs_from_config(train: dict) -> dict:
    """Take the student's `wrapper:` out of every stage (DDP belongs to accelerate) and keep its DDP kwargs."""
    ddp: dict = {}
    sections = [train[k] for k in stage_keys(train)] or [train]
    for section in sections:
        for role in ("student", "model", "teacher"):
            block = section.get(role)
            if isinstance(block, dict) and block.get("wrapper"):
                wrapper = block.pop("wrapper")
                if isinstance(wrapper, Mapping) and role != "teacher":
                    kwargs = dict(wrapper.get("kwargs") or {})
                    if "find_unused_parameters" in kwargs:
                        ddp["find_unused_parameters"] = bool(kwargs["find_unused_parameters"])
                logger.debug("train.%s.wrapper %r ignored: accelerate.prepare owns DDP", role, wrapper)
    return ddp


def make_accelerator(device: str | None, mixed_precision: str | None, ddp_kwargs: dict) -> Any:
    """The run's ``Accelerator``; ``device='cpu'`` forces the CPU (gloo under torchrun)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    handlers = [DistributedDataParallelKwargs(**ddp_kwargs)] if ddp_kwargs else []
    try:
        # step_scheduler_with_optimizer=False: torchdistill steps schedulers per epoch (or every N steps) itself;
        # accelerate would otherwise step them num_processes times per call.
        return Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision,
                           step_scheduler_with_optimizer=False, kwargs_handlers=handlers)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"accelerate could not start with --mixed-precision {mixed_precision} --device "
                          f"{device}: {exc}") from exc


def unwrap(model: nn.Module) -> nn.Module:
    """Strip DDP/DataParallel and accelerate's compile wrappers, keep auxiliary wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if isinstance(inner, nn.Module) and type(model).__name__ in ("DistributedDataParallel", "DataParallel"):
            model = inner
            continue
        inner = getattr(model, "_orig_mod", None)
        if isinstance(inner, nn.Module):
            model = inner
            continue
        return model


def sync_buffers(model: nn.Module, accelerator: Any) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics), so evaluation and checkpoints agree across ranks."""
    if accelerator.num_processes <= 1:
        return
    import torch.distributed as dist

    for buffer in model.buffers():
        if buffer.dtype.is_floating_point or buffer.dtype in (torch.int64, torch.int32):
            dist.broadcast(buffer.data, src=0)


def any_rank(flag: str | None, accelerator: Any) -> str | None:
    """``flag`` when set here, ``'another rank'`` when only another rank set it, else ``None``.

    All ranks must decide together whether to skip a step, or DDP's all-reduce in the backward pass would hang.
    """
    if accelerator.num_processes <= 1:
        return flag
    local = torch.tensor([1.0 if flag else 0.0], device=accelerator.device)
    if float(accelerator.reduce(local, reduction="sum")) > 0 and not flag:
        return "another rank"
    return flag


def reduce_sum(values: list[float], accelerator: Any) -> list[float]:
    """Element-wise sums of ``values`` over all ranks (float64)."""
    totals = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    totals = accelerator.reduce(totals, reduction="sum") if accelerator.num_processes > 1 else totals
    return totals.tolist()


def gather_per_rank(obj: Any, accelerator: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if accelerator.num_processes <= 1:
        return [obj]
    from accelerate.utils import gather_object

    return gather_object([obj])
