"""Data loaders (``train_data_loader``, ``val_data_loader``, ``test.test_data_loader``): each is built as torchdistill
builds it (without worker processes) and asked for one batch.

A loader with zero batches per epoch (``drop_last`` with a batch larger than the dataset), an absurd batch size, a
negative ``num_workers``, or a batch the runner cannot unpack fails here, not at the first step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .context import CheckContext
from .datasets_check import first_sample_shape
from .errors import short
from .numbers_check import check_int
from .suggest import did_you_mean

__all__ = ["MAX_BATCH_SIZE", "Loader", "check_loader", "check_test"]

# torch's BatchSampler allocates a list of batch_size entries: a batch this large and larger than the dataset is a
# typo (an exponent too many), not a plan.
MAX_BATCH_SIZE = 2**24
_LOADER_EXAMPLE = "{dataset_id: 'fmnist_train', sampler: {class_or_func: ..., kwargs: }, kwargs: {batch_size: 64}}"
_SAMPLER_FIX = "{class_or_func: !import_get {key: 'torch.utils.data.RandomSampler'}, kwargs: }"
_WORKER_ONLY = ("persistent_workers", "prefetch_factor", "multiprocessing_context", "worker_init_fn")


@dataclass(frozen=True)
class Loader:
    """A loader as checked."""

    sample_shape: tuple[int, ...] | None  # (C, H, W) of the dataset's first sample, when read and a 3-D tensor
    batches: int | None = None  # batches per epoch as the run builds it (None: the loader was not built)
    batch: Any = None  # its first batch: (sample, targets) or (sample, targets, supp_dict)


def check_loader(ctx: CheckContext, parent: Mapping, name: str, where: str, *, required: bool,
                 read_sample: bool = False) -> Loader | None:
    """Check ``parent[name]`` (at YAML path ``where``); build it and read one batch when nothing else is wrong.

    Args:
        ctx: the check context (its ``datasets``).
        parent: the section holding the loader (a stage, or ``test``).
        name: ``train_data_loader``, ``val_data_loader`` or ``test_data_loader``.
        where: the loader's YAML path.
        required: a missing loader is an error.
        read_sample: read the dataset's first sample for the dummy forward's input shape.
    """
    r = ctx.report
    cfg = r.mapping(parent, name, where, required=required, example=_LOADER_EXAMPLE)
    if cfg is None:
        return None
    before = len(r.problems)
    ds_id = _dataset_id(ctx, cfg, where)
    shape = first_sample_shape(ctx, ds_id, where, cfg.get("collate_fn")) if read_sample else None
    kwargs = cfg.get("kwargs")
    if not isinstance(kwargs, Mapping):
        r.error(f"{where}.kwargs", f"must be a mapping of DataLoader arguments (torchdistill requires it), got "
                                   f"{short(kwargs)}. Add e.g. `kwargs: {{batch_size: 64, num_workers: 0}}`.")
    else:
        check_int(r, kwargs.get("batch_size", 1), f"{where}.kwargs.batch_size", minimum=1, example="64")
        check_int(r, kwargs.get("num_workers", 0), f"{where}.kwargs.num_workers", minimum=0, example="0 or 4")
        if not isinstance(kwargs.get("drop_last", False), bool):
            r.error(f"{where}.kwargs.drop_last", f"must be true or false, got {short(kwargs['drop_last'])}.")
    sampler = cfg.get("sampler")
    if not isinstance(sampler, Mapping) or not callable(sampler.get("class_or_func")):
        got = short(sampler.get("class_or_func") if isinstance(sampler, Mapping) else sampler)
        r.error(f"{where}.sampler.class_or_func", f"must be a sampler class, got {got}. Add `sampler: "
                                                  f"{_SAMPLER_FIX}`.")
    if len(r.problems) > before or ds_id is None or ds_id in ctx.datasets.unusable:
        return Loader(shape)
    return _one_batch(ctx, cfg, where, ds_id, shape, warn_large=name == "train_data_loader")


def check_test(ctx: CheckContext, config: Mapping) -> None:
    """The ``test`` section, when there is one: its ``test_data_loader`` builds and gives one batch."""
    if "test" not in config:
        return
    test = ctx.report.mapping(config, "test", "test", required=False, example="{test_data_loader: {...}}")
    if test is None:
        return
    if "test_data_loader" not in test:
        ctx.report.warn("test: has no test_data_loader; the run evaluates no test set")
        return
    check_loader(ctx, test, "test_data_loader", "test.test_data_loader", required=True)


def _dataset_id(ctx: CheckContext, cfg: Mapping, where: str) -> Any:
    """The loader's ``dataset_id`` when ``datasets`` has it; ``None`` (reported) otherwise."""
    ds_id = cfg.get("dataset_id")
    ids = [str(k) for k in ctx.datasets.entries]
    if ds_id is None:
        ctx.report.error(f"{where}.dataset_id", f"missing; torchdistill would silently build no loader. Set it to "
                                                f"one of {ids}.")
        return None
    if ds_id not in ctx.datasets.entries:
        ctx.report.error(f"{where}.dataset_id", f"{ds_id!r} is not an entry of 'datasets' (entries: {ids})."
                                                f"{did_you_mean(str(ds_id), ids)} Fix the id or add the dataset.")
        return None
    return ds_id


def _one_batch(ctx: CheckContext, cfg: Mapping, where: str, ds_id: Any, shape: tuple[int, ...] | None, *,
               warn_large: bool) -> Loader:
    """Build the loader as torchdistill does (no workers, no pinned memory) and read its first batch."""
    from torchdistill.datasets.util import build_data_loader

    r = ctx.report
    dataset = ctx.datasets.entries[ds_id]
    kwargs = dict(cfg["kwargs"])
    batches = None
    if cfg.get("batch_sampler") is None:
        batches = _batches_per_epoch(ctx, where, ds_id, len(dataset), kwargs, warn_large=warn_large)
        if batches == 0:
            return Loader(shape)
        kwargs["batch_size"] = min(kwargs.get("batch_size", 1), len(dataset))  # the same batches, a smaller list
    for name in _WORKER_ONLY:
        kwargs.pop(name, None)
    kwargs.update(num_workers=0, pin_memory=False)
    try:
        loader = build_data_loader(dataset, {**cfg, "kwargs": kwargs}, False, None)
        batches = len(loader) if batches is None else batches
        batch = next(iter(loader))
    except StopIteration:
        r.error(where, f"yields no batch from datasets.{ds_id} ({len(dataset)} samples); the run would do nothing. "
                       "Check the sampler and batch_sampler.")
        return Loader(shape)
    except Exception as exc:  # noqa: BLE001
        r.error(where, f"building it and reading one batch failed: {type(exc).__name__}: {exc}. Fix the loader's "
                       "kwargs, sampler or collate_fn, or the dataset's transform.")
        return Loader(shape)
    if not (isinstance(batch, (list, tuple)) and len(batch) in (2, 3)):
        length = f" of length {len(batch)}" if isinstance(batch, (list, tuple)) else ""
        r.error(where, f"yields {type(batch).__name__}{length} batches; the runner unpacks (sample, target) or "
                       "(sample, target, supp_dict). Make the dataset return (image, label).")
        return Loader(shape)
    return Loader(shape, batches, batch)


def _batches_per_epoch(ctx: CheckContext, where: str, ds_id: Any, n: int, kwargs: Mapping, *,
                       warn_large: bool) -> int:
    """Batches per epoch from ``batch_size`` and ``drop_last`` (``0``: none, reported)."""
    bs, drop_last = kwargs.get("batch_size", 1), kwargs.get("drop_last", False)
    at = f"{where}.kwargs.batch_size"
    if bs > n and bs >= MAX_BATCH_SIZE:
        ctx.report.error(at, f"{bs} is absurd: larger than datasets.{ds_id} ({n} samples) and than a batch torch's "
                             f"BatchSampler can allocate (a list of batch_size entries). Use a batch size <= {n}.")
        return 0
    if bs > n and drop_last:
        ctx.report.error(at, f"{bs} is larger than datasets.{ds_id} ({n} samples) and drop_last is true, so every "
                             f"epoch would have zero steps. Use a batch size <= {n}, or drop_last: false.")
        return 0
    if bs > n and warn_large:
        ctx.report.warn(f"{at}: {bs} is larger than datasets.{ds_id} ({n} samples); every epoch is one batch of {n}")
    return n // bs if drop_last else -(-n // bs)
