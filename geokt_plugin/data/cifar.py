"""CIFAR-10 and CIFAR-100 through torchvision, with the shared split, subset and class semantics."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from .stats import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD
from .subsets import check_split, subset_dataset

__all__ = ["cifar10", "cifar100"]


def _cifar(
    cls_name: str,
    root: str,
    *,
    split: str,
    subset_size: int | None,
    fraction: float | None,
    val_size: int,
    classes: Sequence[int] | None,
    seed: int,
    augment: bool,
    download: bool,
    mean: tuple[float, ...],
    std: tuple[float, ...],
) -> Dataset:
    import torchvision
    from torchvision import transforms as T

    owner = cls_name.lower()
    check_split(owner, split)
    steps: list[Any] = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else []
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    root = os.path.expanduser(root)
    try:
        base = getattr(torchvision.datasets, cls_name)(root, train=split != "test", download=download,
                                                       transform=T.Compose(steps))
    except RuntimeError as exc:
        raise FileNotFoundError(f"{owner}: no {cls_name} under {root!r} ({exc}). Pass download: True (needs internet) "
                                "or root: a folder holding the torchvision layout.") from exc
    return subset_dataset(base, split=split, subset_size=subset_size, fraction=fraction, val_size=val_size,
                          classes=classes, seed=seed, owner=owner)


def cifar10(
    root: str = "~/datasets/cifar10",
    *,
    split: str = "train",
    subset_size: int | None = None,
    fraction: float | None = None,
    val_size: int = 0,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    augment: bool = False,
    download: bool = True,
) -> Dataset:
    """CIFAR-10 through torchvision, with :func:`fashion_mnist`'s split, subset and class semantics."""
    return _cifar("CIFAR10", root, split=split, subset_size=subset_size, fraction=fraction, val_size=val_size,
                  classes=classes, seed=seed, augment=augment, download=download, mean=CIFAR10_MEAN, std=CIFAR10_STD)


def cifar100(
    root: str = "~/datasets/cifar100",
    *,
    split: str = "train",
    subset_size: int | None = None,
    fraction: float | None = None,
    val_size: int = 0,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    augment: bool = False,
    download: bool = True,
) -> Dataset:
    """CIFAR-100 through torchvision, with :func:`fashion_mnist`'s split, subset and class semantics."""
    return _cifar("CIFAR100", root, split=split, subset_size=subset_size, fraction=fraction, val_size=val_size,
                  classes=classes, seed=seed, augment=augment, download=download, mean=CIFAR100_MEAN,
                  std=CIFAR100_STD)
