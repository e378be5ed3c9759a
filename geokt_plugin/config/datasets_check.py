"""``datasets``: each entry is a non-empty dataset object; the training loader's first sample reads and batches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from .context import CheckContext, Datasets
from .errors import Report, short

__all__ = ["check_datasets", "first_sample_shape"]


def check_datasets(ctx: CheckContext, datasets: Mapping) -> Datasets:
    """Check every entry of ``datasets``; return them with the ids no sample can be read from."""
    r = ctx.report
    if not datasets:
        r.error("datasets", "is empty. Add at least the training dataset (e.g. with `!import_call` on "
                            "geokt_plugin.data.fashion_mnist).")
    unusable = {ds_id for ds_id, ds in datasets.items() if not _check_dataset(r, f"datasets.{ds_id}", ds)}
    return Datasets(datasets, frozenset(unusable))


def _check_dataset(r: Report, where: str, ds: Any) -> bool:
    """Check one entry; ``False`` when no sample can be read from it (a mapping, no dataset, or empty)."""
    if isinstance(ds, Mapping):
        if "splits" in ds or "key" in ds:
            r.error(where, "uses torchdistill's pre-1.0 schema ({key, splits}); torchdistill 1.x silently "
                           "builds no loader from it. Build the dataset with `!import_call` instead.")
        else:
            r.error(where, f"is a mapping {short(dict(ds))}, not a dataset. Build it with `!import_call` "
                           "(e.g. key: 'geokt_plugin.data.fashion_mnist').")
        return False
    if not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        r.error(where, f"is a {type(ds).__name__}, not a dataset (needs __getitem__ and __len__).")
        return False
    try:
        n = len(ds)
    except Exception as exc:  # noqa: BLE001
        r.error(where, f"len() failed ({type(exc).__name__}: {exc}).")
        return True  # len() failing does not stop sample 0 from being read
    if n == 0:
        r.error(where, "is empty (0 samples). Check its root, split and subset arguments.")
        return False
    r.ok(f"{where}: {n} samples")
    return True


def first_sample_shape(ctx: CheckContext, ds_id: Any, where: str, collate_fn: Any) -> tuple[int, ...] | None:
    """``(C, H, W)`` of dataset ``ds_id``'s first sample when it is a 3-D tensor; report a sample that cannot work.

    Args:
        ctx: the check context (its ``datasets``).
        ds_id: the loader's ``dataset_id`` (an entry of ``datasets``).
        where: the loader's YAML path, for messages.
        collate_fn: the loader's ``collate_fn`` (``None``: torch's default collate).
    """
    if ds_id not in ctx.datasets.entries or ds_id in ctx.datasets.unusable:
        return None
    try:
        sample = ctx.datasets.entries[ds_id][0]
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(f"datasets.{ds_id}", f"reading sample 0 failed ({type(exc).__name__}: {exc}). Check the "
                                              "dataset's files and transform.")
        return None
    x = sample[0] if isinstance(sample, (tuple, list)) and sample else sample
    if isinstance(x, Tensor):
        return tuple(int(s) for s in x.shape) if x.dim() == 3 else None
    if collate_fn is None and type(x).__module__.startswith("PIL"):
        ctx.report.error(f"datasets.{ds_id}", f"yields {type(x).__name__} images, which the default collate "
                                              f"cannot batch ({where} has no collate_fn). Add a ToTensor transform.")
    return None
