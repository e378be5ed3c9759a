"""The stages of ``train``: their keys, ``num_epochs``, data loaders and pre/post processes; ``log_freq`` and the
top-level ``seed``."""

from __future__ import annotations

from collections.abc import Mapping

from .context import CheckContext
from .loaders_check import Loader, check_loader
from .numbers_check import check_int
from .registries import PROCESS_NAMES
from .stages import stage_keys
from .suggest import unknown_key

__all__ = ["check_loaders", "check_num_epochs", "check_procs", "check_run_numbers", "is_first_stage", "stages"]


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


def check_num_epochs(ctx: CheckContext, sp: str, stage: Mapping) -> int | None:
    """The stage's ``num_epochs`` when it is a positive integer (``None``: reported)."""
    where = f"{sp}.num_epochs"
    if "num_epochs" not in stage:
        ctx.report.error(where, "missing. Add e.g. `num_epochs: 10` (geokt-train --epochs overrides it).")
        return None
    n = stage["num_epochs"]
    return n if check_int(ctx.report, n, where, minimum=1, example="10") else None


def check_loaders(ctx: CheckContext, sp: str, stage: Mapping) -> tuple[Loader | None, Loader | None]:
    """Check the stage's train and val loaders (the first stage's first training sample gives the input shape)."""
    first = is_first_stage(sp)
    train = check_loader(ctx, stage, "train_data_loader", f"{sp}.train_data_loader", required=first,
                         read_sample=first)
    val = check_loader(ctx, stage, "val_data_loader", f"{sp}.val_data_loader", required=False)
    return train, val


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


def check_run_numbers(ctx: CheckContext, config: Mapping) -> None:
    """The top-level ``seed`` (what every RNG is seeded with) and ``train.log_freq`` (a log line every N steps)."""
    if config.get("seed") is not None:
        check_int(ctx.report, config["seed"], "seed", minimum=0, maximum=2**32 - 1, example="0")
    train = config.get("train")
    if isinstance(train, Mapping) and train.get("log_freq") is not None:
        check_int(ctx.report, train["log_freq"], "train.log_freq", minimum=0, example="100")
