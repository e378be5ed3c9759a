"""Seeded, class-balanced subsets and the train/val/test split semantics shared by every builder.

- ``"val"``: a class-balanced, seeded part of the official training set, ``val_size`` images.
- ``"train"``: the rest of the official training set (disjoint from ``"val"`` for the same ``seed`` and
  ``val_size``), then ``subset_size`` class-balanced images, then ``fraction`` of those. Subsets are nested:
  for one seed, the 10 % subset lies inside the 20 % one, and ``subset_size=1000`` inside ``subset_size=2000``.
- ``"test"``: the official test set.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "SPLITS",
    "SubsetWithTargets",
    "balanced_subset",
    "check_split",
    "relabel",
    "split_indices",
    "subset_dataset",
]

SPLITS = ("train", "val", "test")


def check_split(owner: str, split: str) -> None:
    """Raise ``ValueError`` naming ``owner`` unless ``split`` is one of :data:`SPLITS`."""
    if split not in SPLITS:
        raise ValueError(f"{owner}: unknown split {split!r}; choose one of {list(SPLITS)}.")


def _as_int_array(targets: Sequence[int] | Tensor | np.ndarray) -> np.ndarray:
    if isinstance(targets, Tensor):
        return targets.detach().cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(targets, dtype=np.int64)


def _balanced_order(targets: np.ndarray, seed: int, pool: np.ndarray) -> np.ndarray:
    """All of ``pool``, ordered so that every prefix is class-balanced (round-robin over seeded per-class orders)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    classes = np.unique(targets)
    per_class: list[np.ndarray] = []
    for c in classes:
        # Permute the class's indices over the whole target list first, then drop the excluded ones, so the
        # order of what remains does not depend on what was excluded.
        members = np.flatnonzero(targets == c)
        members = members[rng.permutation(len(members))]
        per_class.append(members[np.isin(members, pool, assume_unique=True)])
    class_order = rng.permutation(len(classes))
    rounds = max((len(m) for m in per_class), default=0)
    order: list[int] = []
    for r in range(rounds):
        for ci in class_order:
            members = per_class[ci]
            if r < len(members):
                order.append(int(members[r]))
    return np.asarray(order, dtype=np.int64)


def _count(n_or_fraction: int | float | None, available: int, *, owner: str, name: str = "n_or_fraction") -> int:
    if n_or_fraction is None:
        return available
    if isinstance(n_or_fraction, bool):
        raise TypeError(f"{owner}: {name} must be an int count or a float fraction, got a bool.")
    if isinstance(n_or_fraction, (int, np.integer)):
        n = int(n_or_fraction)
        if n < 0 or n > available:
            raise ValueError(f"{owner}: {name}={n} but only {available} images are available; choose 0..{available}.")
        return n
    if isinstance(n_or_fraction, (float, np.floating)):
        f = float(n_or_fraction)
        if not 0.0 < f <= 1.0:
            raise ValueError(f"{owner}: {name}={f} must be a fraction in (0, 1].")
        return int(round(f * available))
    raise TypeError(f"{owner}: {name} must be an int, a float or None, got {type(n_or_fraction).__name__}.")


def balanced_subset(
    targets: Sequence[int] | Tensor | np.ndarray,
    n_or_fraction: int | float | None,
    seed: int,
    exclude: Sequence[int] | np.ndarray | None = None,
) -> list[int]:
    """Sorted indices of a seeded, class-balanced subset of ``targets``.

    Candidates are all indices not in ``exclude``. They are put in one seeded order in which every prefix is
    class-balanced (class counts differ by at most one while every class still has candidates); the subset is the
    first ``n`` of that order. Hence for one seed and one ``exclude``, a smaller subset is always inside a larger one.

    Args:
        targets: class label of every item.
        n_or_fraction: an ``int`` count, a ``float`` fraction in (0, 1] of the candidates, or ``None`` for all.
        seed: seed of the order.
        exclude: indices that must not be chosen (e.g. a validation split).

    Returns:
        the chosen indices into ``targets``, sorted ascending.
    """
    labels = _as_int_array(targets)
    if labels.ndim != 1:
        raise ValueError(f"balanced_subset: targets must be 1-D class labels, got shape {labels.shape}.")
    candidates = np.arange(len(labels))
    if exclude is not None and len(exclude) > 0:
        candidates = np.setdiff1d(candidates, np.asarray(list(exclude), dtype=np.int64))
    n = _count(n_or_fraction, len(candidates), owner="balanced_subset")
    order = _balanced_order(labels, seed, candidates)
    return sorted(int(i) for i in order[:n])


def split_indices(
    targets: Sequence[int] | Tensor | np.ndarray,
    *,
    split: str,
    subset_size: int | None = None,
    fraction: float | None = None,
    val_size: int = 0,
    seed: int = 0,
    classes: Sequence[int] | None = None,
    owner: str = "split_indices",
) -> list[int]:
    """Indices of a ``"train"`` or ``"val"`` split of an official training set (module docstring semantics).

    For ``"test"`` only the ``classes`` filter applies (and ``subset_size``/``fraction`` if given).
    """
    check_split(owner, split)
    labels = _as_int_array(targets)
    outside = np.zeros(0, dtype=np.int64)
    if classes is not None:
        outside = np.flatnonzero(~np.isin(labels, np.asarray(list(classes), dtype=np.int64)))
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) or val_size < 0:
        raise ValueError(f"{owner}: val_size must be an integer >= 0, got {val_size!r}.")
    if split == "val" and val_size == 0:
        raise ValueError(f"{owner}: split 'val' needs val_size > 0 (the number of held-out training images).")
    if split == "test":
        held_out = outside
    else:
        val = balanced_subset(labels, int(val_size), seed, exclude=outside) if val_size else []
        if split == "val":
            return val
        held_out = np.union1d(outside, np.asarray(val, dtype=np.int64))
    available = len(labels) - len(held_out)
    n = _count(subset_size, available, owner=owner, name="subset_size")
    if fraction is not None:
        n = _count(float(fraction), n, owner=owner, name="fraction")
    return balanced_subset(labels, n, seed, exclude=held_out)


def _check_classes(classes: Sequence[int], owner: str, known: int) -> list[int]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(f"{owner}: classes must be a list of class indices such as [0, 1, 2], got {classes!r}.")
    mapping = [int(c) for c in classes]
    if not mapping or len(set(mapping)) != len(mapping) or not all(0 <= c < known for c in mapping):
        raise ValueError(f"{owner}: classes={list(classes)!r} must be distinct indices in 0..{known - 1}.")
    return mapping


def relabel(labels: Tensor, classes: Sequence[int] | None, owner: str, known: int) -> Tensor:
    """Map ``labels`` in ``classes`` to ``0..len(classes)-1`` in the given order (``None``: unchanged).

    Args:
        labels: int64 labels, all inside ``classes``.
        classes: distinct class indices in ``0..known-1``.
        owner: name used in error messages.
        known: number of classes of the full dataset.
    """
    if classes is None:
        return labels
    mapping = _check_classes(classes, owner, known)
    lut = torch.full((known,), -1, dtype=torch.int64)
    for new, old in enumerate(mapping):
        lut[old] = new
    return lut[labels]


class SubsetWithTargets(Dataset):
    """``torch.utils.data.Subset`` that also relabels and exposes ``targets`` (for samplers and checks)."""

    def __init__(self, dataset: Any, indices: Sequence[int], targets: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.targets = list(targets)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        sample, _ = self.dataset[self.indices[index]]
        return sample, self.targets[index]


def subset_dataset(
    dataset: Any,
    *,
    split: str,
    subset_size: int | None = None,
    fraction: float | None = None,
    val_size: int = 0,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    owner: str = "subset_dataset",
) -> Dataset:
    """Apply the split/subset/class semantics to any dataset with a ``targets`` attribute (CIFAR, fakes in tests)."""
    if not hasattr(dataset, "targets"):
        raise TypeError(f"{owner}: {type(dataset).__name__} has no `targets` attribute; class-balanced subsets need "
                        "the labels.")
    labels = _as_int_array(dataset.targets)
    indices = split_indices(labels, split=split, subset_size=subset_size, fraction=fraction, val_size=val_size,
                            seed=seed, classes=classes, owner=owner)
    known = int(labels.max()) + 1 if len(labels) else 0
    new_labels = relabel(torch.as_tensor(labels[indices]), classes, owner, known=known) if indices else torch.zeros(0)
    return SubsetWithTargets(dataset, indices, [int(t) for t in new_labels])
