"""Dataset builders usable from YAML: offline Fashion-MNIST, CIFAR through torchvision, class-balanced subsets.

Every builder is a plain function, so a torchdistill config reaches it with ``!import_call`` (the dataset id is the
mapping key; data loaders name it in ``dataset_id``)::

    datasets:
      &train_id fmnist/train: !import_call
        key: 'geokt_plugin.data.fashion_mnist'
        init:
          kwargs: {split: 'train', subset_size: 3000, val_size: 1000, seed: 0, augment: True}
      &val_id fmnist/val: !import_call
        key: 'geokt_plugin.data.fashion_mnist'
        init:
          kwargs: {split: 'val', val_size: 1000, seed: 0}

Split semantics (shared by all builders):

- ``"val"``: a class-balanced, seeded part of the official training set, ``val_size`` images.
- ``"train"``: the rest of the official training set (disjoint from ``"val"`` for the same ``seed`` and
  ``val_size``), then ``subset_size`` class-balanced images, then ``fraction`` of those. Subsets are nested:
  for one seed, the 10 % subset lies inside the 20 % one, and ``subset_size=1000`` inside ``subset_size=2000``.
- ``"test"``: the official test set.
"""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "DEBIAN_FASHION_MNIST",
    "ImageTensorDataset",
    "SubsetWithTargets",
    "balanced_subset",
    "cifar10",
    "cifar100",
    "fashion_mnist",
    "resolve_fashion_mnist_root",
    "split_indices",
]

FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
ENV_FASHION_MNIST = "GEOKT_FASHION_MNIST"
_SPLITS = ("train", "val", "test")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_HOW_TO_GET = (
    "Get Fashion-MNIST with one of: `sudo apt-get install dataset-fashion-mnist` (offline, installs into "
    f"{DEBIAN_FASHION_MNIST}); pass root: '/path/to/folder' holding the four idx .gz files (or a torchvision "
    f"FashionMNIST layout); set {ENV_FASHION_MNIST}=/path/to/folder; or pass download: True (needs internet)."
)


# ----------------------------------------------------------------------------------------------------------------
# Class-balanced subsets
# ----------------------------------------------------------------------------------------------------------------


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
    if split not in _SPLITS:
        raise ValueError(f"{owner}: unknown split {split!r}; choose one of {list(_SPLITS)}.")
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


# ----------------------------------------------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------------------------------------------


class ImageTensorDataset(Dataset):
    """Grey 28x28 uint8 images held in memory, transformed on access into normalised ``(channels, size, size)``.

    Args:
        images: ``(N, H, W)`` uint8 tensor.
        targets: ``(N,)`` int64 labels (already relabelled).
        size: output side; a larger even margin is zero-padded (28 -> 32 pads 2 per side), otherwise resized.
        channels: output channels (the grey channel repeated).
        augment: random crop with padding 4 plus horizontal flip (uses torch's global RNG, so a seeded run and a
            resumed run see the same augmentations).
        mean, std: normalisation of the grey values in [0, 1].
    """

    def __init__(
        self,
        images: Tensor,
        targets: Tensor,
        *,
        size: int = 32,
        channels: int = 3,
        augment: bool = False,
        mean: float = FASHION_MNIST_MEAN,
        std: float = FASHION_MNIST_STD,
        classes: Sequence[str] | None = None,
    ) -> None:
        if images.dim() != 3 or images.dtype != torch.uint8:
            raise ValueError(f"ImageTensorDataset: images must be a (N, H, W) uint8 tensor, got {images.dtype} "
                             f"{tuple(images.shape)}.")
        if len(images) != len(targets):
            raise ValueError(f"ImageTensorDataset: {len(images)} images but {len(targets)} targets.")
        if int(size) < 8:
            raise ValueError(f"ImageTensorDataset: size must be >= 8, got {size}.")
        if int(channels) < 1:
            raise ValueError(f"ImageTensorDataset: channels must be >= 1, got {channels}.")
        self.images = images
        self.targets = targets.to(torch.int64)
        self.size = int(size)
        self.channels = int(channels)
        self.augment = bool(augment)
        self.mean = float(mean)
        self.std = float(std)
        self.classes = list(classes) if classes is not None else None

    def __len__(self) -> int:
        return len(self.images)

    def _resize(self, x: Tensor) -> Tensor:
        H, W = x.shape[-2:]
        margin = self.size - H
        if H == W and margin >= 0 and margin % 2 == 0:
            return F.pad(x, (margin // 2,) * 4) if margin else x
        return F.interpolate(x[None], size=(self.size, self.size), mode="bilinear", antialias=True,
                             align_corners=False)[0]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        x = self.images[index].to(torch.float32).div_(255.0)[None]  # (1, H, W) in [0, 1]
        x = self._resize(x)
        if self.augment:
            x = F.pad(x, (4, 4, 4, 4))
            top, left = (int(v) for v in torch.randint(0, 9, (2,)))
            x = x[:, top:top + self.size, left:left + self.size]
            if bool(torch.rand(()) < 0.5):
                x = x.flip(-1)
        x = (x - self.mean) / self.std
        if self.channels > 1:
            x = x.expand(self.channels, -1, -1)
        return x.contiguous(), int(self.targets[index])

    def extra_repr(self) -> str:  # pragma: no cover - cosmetic
        return f"n={len(self)}, size={self.size}, channels={self.channels}, augment={self.augment}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


_FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                    "Ankle boot"]
_CACHE: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
_CACHE_LOCK = threading.Lock()


def _has_idx_files(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in _IDX_FILES.values() for name in pair)


def _idx_folder(candidate: Path) -> Path | None:
    """``candidate`` itself, or its torchvision layout ``FashionMNIST/raw``, if it holds the four idx .gz files."""
    for folder in (candidate, candidate / "FashionMNIST" / "raw", candidate / "raw"):
        if _has_idx_files(folder):
            return folder
    return None


def resolve_fashion_mnist_root(root: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """Folder holding Fashion-MNIST's four idx .gz files.

    Order: ``root`` (when given, it must hold the files unless ``download`` is set), the environment variable
    ``GEOKT_FASHION_MNIST``, the Debian package folder ``/usr/share/datasets/fashion-mnist``, then a torchvision
    download into ``root`` or ``~/.cache/geokt_plugin/fashion-mnist`` when ``download=True``.
    """
    if root is not None:
        explicit = Path(os.path.expanduser(str(root)))
        found = _idx_folder(explicit)
        if found is not None:
            return found
        if not download:
            raise FileNotFoundError(
                f"fashion_mnist: root={str(root)!r} does not hold train-images-idx3-ubyte.gz, "
                f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
                f"(directly or under FashionMNIST/raw). {_HOW_TO_GET}"
            )
        return _download_fashion_mnist(explicit)
    env = os.environ.get(ENV_FASHION_MNIST)
    if env:
        found = _idx_folder(Path(os.path.expanduser(env)))
        if found is None:
            raise FileNotFoundError(f"fashion_mnist: {ENV_FASHION_MNIST}={env!r} does not hold the four Fashion-MNIST "
                                    f"idx .gz files. {_HOW_TO_GET}")
        return found
    found = _idx_folder(Path(DEBIAN_FASHION_MNIST))
    if found is not None:
        return found
    if download:
        return _download_fashion_mnist(Path(os.path.expanduser("~/.cache/geokt_plugin/fashion-mnist")))
    raise FileNotFoundError(f"fashion_mnist: no Fashion-MNIST found (no root given, {ENV_FASHION_MNIST} unset, nothing "
                            f"in {DEBIAN_FASHION_MNIST}). {_HOW_TO_GET}")


def _download_fashion_mnist(folder: Path) -> Path:  # pragma: no cover - needs the internet
    from torchvision.datasets import FashionMNIST

    folder.mkdir(parents=True, exist_ok=True)
    FashionMNIST(str(folder), train=True, download=True)
    FashionMNIST(str(folder), train=False, download=True)
    found = _idx_folder(folder)
    if found is None:
        raise FileNotFoundError(f"fashion_mnist: torchvision's download into {folder} did not leave the idx .gz "
                                f"files. {_HOW_TO_GET}")
    return found


def _read_idx(path: Path) -> np.ndarray:
    """Read one gzipped idx file (magic: two zero bytes, a dtype code, the number of dimensions)."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"fashion_mnist: {path} is not an unsigned-byte idx file (bad magic {data[:4]!r}).")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - offset != expected:
        raise ValueError(f"fashion_mnist: {path} is truncated: header says {dims}, file holds {len(data) - offset} "
                         "bytes of data.")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist_arrays(folder: Path, official: str) -> tuple[Tensor, Tensor]:
    """The official ``"train"`` or ``"test"`` images ``(N, 28, 28)`` uint8 and labels, cached per process."""
    key = (str(folder.resolve()), official)
    with _CACHE_LOCK:
        if key not in _CACHE:
            image_file, label_file = _IDX_FILES[official]
            images = torch.from_numpy(_read_idx(folder / image_file).copy())
            labels = torch.from_numpy(_read_idx(folder / label_file).astype(np.int64))
            if images.dim() != 3 or len(images) != len(labels):
                raise ValueError(f"fashion_mnist: {folder} holds {tuple(images.shape)} images and {len(labels)} labels "
                                 f"for the {official} split; the files are inconsistent.")
            _CACHE[key] = (images, labels)
        return _CACHE[key]


def _relabel(labels: Tensor, classes: Sequence[int] | None, owner: str, known: int) -> Tensor:
    if classes is None:
        return labels
    mapping = _check_classes(classes, owner, known)
    lut = torch.full((known,), -1, dtype=torch.int64)
    for new, old in enumerate(mapping):
        lut[old] = new
    return lut[labels]


def _check_classes(classes: Sequence[int], owner: str, known: int) -> list[int]:
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(f"{owner}: classes must be a list of class indices such as [0, 1, 2], got {classes!r}.")
    mapping = [int(c) for c in classes]
    if not mapping or len(set(mapping)) != len(mapping) or not all(0 <= c < known for c in mapping):
        raise ValueError(f"{owner}: classes={list(classes)!r} must be distinct indices in 0..{known - 1}.")
    return mapping


def fashion_mnist(
    root: str | None = None,
    *,
    split: str = "train",
    subset_size: int | None = None,
    fraction: float | None = None,
    val_size: int = 0,
    classes: Sequence[int] | None = None,
    seed: int = 0,
    size: int = 32,
    channels: int = 3,
    augment: bool = False,
    download: bool = False,
) -> Dataset:
    """Fashion-MNIST, read directly from its idx .gz files (offline), as normalised ``(channels, size, size)`` images.

    Args:
        root: folder with the four idx .gz files or a torchvision ``FashionMNIST`` layout; see
            :func:`resolve_fashion_mnist_root` for the fallbacks.
        split: ``"train"``, ``"val"`` or ``"test"`` (module docstring).
        subset_size: class-balanced number of training images (after removing ``val``); ``None`` keeps all.
        fraction: fraction in (0, 1] of the ``subset_size`` images (nested across fractions for one seed).
        val_size: images held out of the official training set as ``"val"``.
        classes: keep only these classes, relabelled ``0..len(classes)-1`` in the given order.
        seed: seed of the subsets (not of training).
        size: output side (28 -> 32 pads 2 pixels per side; other sizes resize).
        channels: grey channel repeated to this many channels.
        augment: random crop (padding 4) and horizontal flip.
        download: allow torchvision's download when no local copy is found.
    """
    owner = "fashion_mnist"
    if split not in _SPLITS:
        raise ValueError(f"{owner}: unknown split {split!r}; choose one of {list(_SPLITS)}.")
    folder = resolve_fashion_mnist_root(root, download=download)
    images, labels = load_fashion_mnist_arrays(folder, "test" if split == "test" else "train")
    indices = split_indices(labels, split=split, subset_size=subset_size, fraction=fraction, val_size=val_size,
                            seed=seed, classes=classes, owner=owner)
    index = torch.as_tensor(indices, dtype=torch.int64)
    targets = _relabel(labels[index], classes, owner, known=10)
    names = _FASHION_CLASSES if classes is None else [_FASHION_CLASSES[c] for c in classes]
    return ImageTensorDataset(images[index], targets, size=size, channels=channels, augment=augment, classes=names)


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
    new_labels = _relabel(torch.as_tensor(labels[indices]), classes, owner, known=known) if indices else torch.zeros(0)
    return SubsetWithTargets(dataset, indices, [int(t) for t in new_labels])


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
    if split not in _SPLITS:
        raise ValueError(f"{owner}: unknown split {split!r}; choose one of {list(_SPLITS)}.")
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
