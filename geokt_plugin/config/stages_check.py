"""The stages of ``train``: their keys, ``num_epochs``, data loaders and pre/post processes."""

from __future__ import annotations

from collections.abc import Mapping

from .context import CheckContext
from .datasets_check import first_sample_shape
from .errors import is_int, short
from .registries import PROCESS_NAMES
from .stages import stage_keys
from .suggest import did_you_mean, unknown_key

__all__ = ["check_loaders", "check_num_epochs", "check_procs", "is_first_stage", "stages"]

_LOADER_EXAMPLE = "{dataset_id: 'fmnist_train', sampler: {class_or_func: ..., kwargs: }, kwargs: {batch_size: 64}}"
_SAMPLER_FIX = "{class_or_func: !import_get {key: 'torch.utils.data.RandomSampler'}, kwargs: }"


def stages(ctx: CheckContext, train: Mapping) -> list[tuple[str, Mapping]]:
    """``(yaml path, section)`` of every stage: ``train`` itself, or ``train.stage1``, ``train.stage2``, ..."""
    keys = stage_keys(train)
    if not keys:
        return [("train", train)]
    if keys[0] != "stage1":
        ctx.report.error("train", f"multi-stage configs start at 'stage1', found {keys}. Rename the stages.")
    found = []
    for k in keys:
        if isinstance(train[k], Mapping):
            found.append((f"train.{k}", train[k]))
        else:
            ctx.report.error(f"train.{k}", f"must be a mapping, got {type(train[k]).__name__}.")
    return found


def is_first_stage(sp: str) -> bool:
    """The stage at YAML path ``sp`` is the first one (it must name everything a later stage may inherit)."""
    return sp in ("train", "train.stage1")


def check_num_epochs(ctx: CheckContext, sp: str, stage: Mapping) -> None:
    where = f"{sp}.num_epochs"
    if "num_epochs" not in stage:
        ctx.report.error(where, "missing. Add e.g. `num_epochs: 10` (geokt-train --epochs overrides it).")
        return
    n = stage["num_epochs"]
    if not is_int(n) or n < 1:
        ctx.report.error(where, f"must be a positive integer, got {short(n)} ({type(n).__name__}). Use e.g. 10.")


def check_loaders(ctx: CheckContext, sp: str, stage: Mapping) -> tuple[int, ...] | None:
    """Check the stage's train and val loaders; return the first stage's first training sample's ``(C, H, W)``."""
    first = is_first_stage(sp)
    shape = _check_loader(ctx, sp, stage, "train_data_loader", required=first, read_sample=first)
    _check_loader(ctx, sp, stage, "val_data_loader", required=False, read_sample=False)
    return shape


def _check_loader(ctx: CheckContext, sp: str, stage: Mapping, name: str, *, required: bool,
                  read_sample: bool) -> tuple[int, ...] | None:
    r = ctx.report
    where = f"{sp}.{name}"
    cfg = r.mapping(stage, name, where, required=required, example=_LOADER_EXAMPLE)
    if cfg is None:
        return None
    shape = None
    ds_id = cfg.get("dataset_id")
    ids = [str(k) for k in ctx.datasets.entries]
    if ds_id is None:
        r.error(f"{where}.dataset_id", f"missing; torchdistill would silently build no loader. Set it to one "
                                       f"of {ids}.")
    elif ds_id not in ctx.datasets.entries:
        r.error(f"{where}.dataset_id", f"{ds_id!r} is not an entry of 'datasets' (entries: {ids})."
                                       f"{did_you_mean(str(ds_id), ids)} Fix the id or add the dataset.")
    elif read_sample:
        shape = first_sample_shape(ctx, ds_id, where, cfg.get("collate_fn"))
    kwargs = cfg.get("kwargs")
    if not isinstance(kwargs, Mapping):
        r.error(f"{where}.kwargs", f"must be a mapping of DataLoader arguments (torchdistill requires it), got "
                                   f"{short(kwargs)}. Add e.g. `kwargs: {{batch_size: 64, num_workers: 0}}`.")
    else:
        bs = kwargs.get("batch_size", 1)
        if not is_int(bs) or bs < 1:
            r.error(f"{where}.kwargs.batch_size", f"must be a positive integer, got {short(bs)}.")
    sampler = cfg.get("sampler")
    if not isinstance(sampler, Mapping) or not callable(sampler.get("class_or_func")):
        got = short(sampler.get("class_or_func") if isinstance(sampler, Mapping) else sampler)
        r.error(f"{where}.sampler.class_or_func", f"must be a sampler class, got {got}. Add `sampler: "
                                                  f"{_SAMPLER_FIX}`.")
    return shape


def check_procs(ctx: CheckContext, sp: str, stage: Mapping) -> None:
    """The stage's pre/post epoch and forward processes and ``criterion.func2extract_model_loss`` are registered."""
    reg = ctx.registries
    for name in PROCESS_NAMES:
        if name in stage and stage[name] not in reg.procs[name]:
            ctx.report.error(f"{sp}.{name}", unknown_key(name, stage[name], sorted(reg.procs[name]),
                                                         uses_geokt=ctx.uses_geokt_dependency))
    criterion = stage.get("criterion")
    f2e = (criterion or {}).get("func2extract_model_loss") if isinstance(criterion, Mapping) else None
    if f2e is not None and f2e not in reg.func2extract:
        ctx.report.error(f"{sp}.criterion.func2extract_model_loss",
                         unknown_key("func2extract_model_loss", f2e, sorted(reg.func2extract),
                                     uses_geokt=ctx.uses_geokt_dependency))
