"""Seeded, class-balanced subsets and the train/val/test split semantics shared by every builder.

- ``"val"``: a class-balanced, seeded part of the official training set, ``val_size`` images.
- ``"train"``: the rest of the official training set (disjoint from ``"val"`` for the same ``split_seed`` and
  ``val_size``), then ``subset_size`` class-balanced images, then ``fraction`` of those. Subsets are nested:
  for one seed, the 10 % subset lies inside the 20 % one, and ``subset_size=1000`` inside ``subset_size=2000``.
- ``reserve``: images held out of ``"train"`` for instructors (class-balanced, drawn with ``split_seed`` after
  ``"val"``). ``pool`` picks what ``"train"`` draws from: ``"student"`` (everything but val and the reserve),
  ``"reserve"`` (only the reserve: an instructor's images) or ``"student+reserve"`` (the student subset plus the
  whole reserve). So instructors and students never share an image.
- ``"test"``: the official test set.

``classes`` filters first: val, reserve and subsets are drawn among the kept classes. ``split_seed`` defaults to
``seed``; ``seed: "run"`` is the run's seed (``GEOKT_RUN_SEED``, set by ``geokt-train --seed``), so each seed of a
suite trains on its own subset while val and the reserve stay fixed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "POOLS",
    "RUN_SEED",
    "RUN_SEED_ENV",
    "SPLITS",
    "SubsetWithTargets",
    "balanced_subset",
    "check_split",
    "relabel",
    "resolve_seed",
    "split_indices",
    "subset_dataset",
]

SPLITS = ("train", "val", "test")
POOLS = ("student", "reserve", "student+reserve")
RUN_SEED = "run"  # a seed that means "the run's seed"
RUN_SEED_ENV = "GEOKT_RUN_SEED"  # where the runner puts the run's seed for the builders


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


def resolve_seed(seed: int | str, owner: str, name: str = "seed") -> int:
    """``seed`` as an int; ``"run"`` reads the run's seed from ``GEOKT_RUN_SEED`` (``geokt-train --seed`` sets it).

    Raises:
        ValueError: ``"run"`` without ``GEOKT_RUN_SEED``, or a seed that is neither an int >= 0 nor ``"run"``.
    """
    if seed == RUN_SEED:
        value = os.environ.get(RUN_SEED_ENV)
        if value is None or not value.strip().isdigit():
            raise ValueError(
                f"{owner}: {name}: 'run' draws the subset with the run's seed, but {RUN_SEED_ENV} is "
                f"{'unset' if value is None else repr(value)}. Run it with `geokt-train --seed S` (which sets it), or "
                f"set {RUN_SEED_ENV}=S before torchdistill's script; or write an integer {name}.")
        return int(value)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{owner}: {name} must be an integer >= 0 or 'run' (the run's seed), got {seed!r}.")
    return int(seed)


def _check_pool(owner: str, pool: str, reserve: int) -> None:
    if pool not in POOLS:
        raise ValueError(f"{owner}: unknown pool {pool!r}; choose one of {list(POOLS)}.")
    if isinstance(reserve, bool) or not isinstance(reserve, (int, np.integer)) or reserve < 0:
        raise ValueError(f"{owner}: reserve must be an integer >= 0, got {reserve!r}.")
    if pool != "student" and reserve == 0:
        raise ValueError(f"{owner}: pool {pool!r} needs reserve > 0 (the images held out for instructors).")


def split_indices(
    targets: Sequence[int] | Tensor | np.ndarray,
    *,
    split: str,
    subset_size: int | None = None,
    fraction: float | None = None,
    val_size: int = 0,
    seed: int | str = 0,
    classes: Sequence[int] | None = None,
    reserve: int = 0,
    pool: str = "student",
    split_seed: int | None = None,
    owner: str = "split_indices",
) -> list[int]:
    """Indices of a ``"train"`` or ``"val"`` split of an official training set (module docstring semantics).

    For ``"test"`` only the ``classes`` filter applies (and ``subset_size``/``fraction`` if given).
    ``split_seed`` (default: ``seed``) draws ``val`` and the ``reserve``; ``seed`` draws the subset.
    """
    check_split(owner, split)
    _check_pool(owner, pool, reserve)
    seed = resolve_seed(seed, owner)
    split_seed = seed if split_seed is None else resolve_seed(split_seed, owner, "split_seed")
    labels = _as_int_array(targets)
    outside = np.zeros(0, dtype=np.int64)
    if classes is not None:
        outside = np.flatnonzero(~np.isin(labels, np.asarray(list(classes), dtype=np.int64)))
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)) or val_size < 0:
        raise ValueError(f"{owner}: val_size must be an integer >= 0, got {val_size!r}.")
    if split == "val" and val_size == 0:
        raise ValueError(f"{owner}: split 'val' needs val_size > 0 (the number of held-out training images).")
    if split == "test":
        return balanced_subset(labels, _subset_count(len(labels) - len(outside), subset_size, fraction, owner), seed,
                               exclude=outside)
    val = balanced_subset(labels, int(val_size), split_seed, exclude=outside) if val_size else []
    if split == "val":
        return val
    held_out = np.union1d(outside, np.asarray(val, dtype=np.int64))
    reserved: list[int] = []
    if reserve:
        _count(int(reserve), len(labels) - len(held_out), owner=owner, name="reserve")
        reserved = balanced_subset(labels, int(reserve), split_seed, exclude=held_out)
    if pool == "reserve":  # the instructors' images: a subset of the reserve
        rest = np.setdiff1d(np.arange(len(labels)), np.asarray(reserved, dtype=np.int64))
        n = _subset_count(len(reserved), subset_size, fraction, owner)
        return balanced_subset(labels, n, seed, exclude=rest)
    held_out = np.union1d(held_out, np.asarray(reserved, dtype=np.int64))
    n = _subset_count(len(labels) - len(held_out), subset_size, fraction, owner)
    student = balanced_subset(labels, n, seed, exclude=held_out)
    return sorted(student + reserved) if pool == "student+reserve" else student


def _subset_count(available: int, subset_size: int | None, fraction: float | None, owner: str) -> int:
    """``subset_size`` of ``available`` images, then ``fraction`` of those."""
    n = _count(subset_size, available, owner=owner, name="subset_size")
    if fraction is not None:
        n = _count(float(fraction), n, owner=owner, name="fraction")
    return n


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
    seed: int | str = 0,
    reserve: int = 0,
    pool: str = "student",
    split_seed: int | None = None,
    owner: str = "subset_dataset",
) -> Dataset:
    """Apply the split/subset/class semantics to any dataset with a ``targets`` attribute (CIFAR, fakes in tests)."""
    if not hasattr(dataset, "targets"):
        raise TypeError(f"{owner}: {type(dataset).__name__} has no `targets` attribute; class-balanced subsets need "
                        "the labels.")
    labels = _as_int_array(dataset.targets)
    indices = split_indices(labels, split=split, subset_size=subset_size, fraction=fraction, val_size=val_size,
                            seed=seed, classes=classes, reserve=reserve, pool=pool, split_seed=split_seed,
                            owner=owner)
    known = int(labels.max()) + 1 if len(labels) else 0
    new_labels = relabel(torch.as_tensor(labels[indices]), classes, owner, known=known) if indices else torch.zeros(0)
    return SubsetWithTargets(dataset, indices, [int(t) for t in new_labels])
