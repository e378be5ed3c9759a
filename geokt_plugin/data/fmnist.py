"""Fashion-MNIST read offline from its four idx .gz files: where to find them, how to read them, the builder."""

from __future__ import annotations

import gzip
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from .subsets import check_split, relabel, split_indices
from .tensors import ImageTensorDataset

__all__ = [
    "DEBIAN_FASHION_MNIST",
    "ENV_FASHION_MNIST",
    "fashion_mnist",
    "load_fashion_mnist_arrays",
    "resolve_fashion_mnist_root",
]

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
ENV_FASHION_MNIST = "GEOKT_FASHION_MNIST"
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_HOW_TO_GET = (
    "Get Fashion-MNIST with one of: `sudo apt-get install dataset-fashion-mnist` (offline, installs into "
    f"{DEBIAN_FASHION_MNIST}); pass root: '/path/to/folder' holding the four idx .gz files (or a torchvision "
    f"FashionMNIST layout); set {ENV_FASHION_MNIST}=/path/to/folder; or pass download: True (needs internet)."
)
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


def fashion_mnist(
    root: str | None = None,
    *,
    split: str = "train",
    subset_size: int | None = None,
    fraction: float | None = None,
    val_size: int = 0,
    classes: Sequence[int] | None = None,
    seed: int | str = 0,
    reserve: int = 0,
    pool: str = "student",
    split_seed: int | None = None,
    size: int = 32,
    channels: int = 3,
    augment: bool = False,
    download: bool = False,
) -> Dataset:
    """Fashion-MNIST, read directly from its idx .gz files (offline), as normalised ``(channels, size, size)`` images.

    Args:
        root: folder with the four idx .gz files or a torchvision ``FashionMNIST`` layout; see
            :func:`resolve_fashion_mnist_root` for the fallbacks.
        split: ``"train"``, ``"val"`` or ``"test"`` (see :mod:`geokt_plugin.data.subsets`).
        subset_size: class-balanced number of training images (after removing ``val``); ``None`` keeps all.
        fraction: fraction in (0, 1] of the ``subset_size`` images (nested across fractions for one seed).
        val_size: images held out of the official training set as ``"val"``.
        classes: keep only these classes, relabelled ``0..len(classes)-1`` in the given order.
        seed: seed of the subsets (not of training); ``"run"``: the run's seed (``geokt-train --seed``).
        reserve: training images held out for instructors, disjoint from every student subset.
        pool: ``"student"``, ``"reserve"`` (an instructor's images) or ``"student+reserve"``.
        split_seed: seed of ``val`` and the reserve (default: ``seed``).
        size: output side (28 -> 32 pads 2 pixels per side; other sizes resize).
        channels: grey channel repeated to this many channels.
        augment: random crop (padding 4) and horizontal flip.
        download: allow torchvision's download when no local copy is found.
    """
    owner = "fashion_mnist"
    check_split(owner, split)
    folder = resolve_fashion_mnist_root(root, download=download)
    images, labels = load_fashion_mnist_arrays(folder, "test" if split == "test" else "train")
    indices = split_indices(labels, split=split, subset_size=subset_size, fraction=fraction, val_size=val_size,
                            seed=seed, classes=classes, reserve=reserve, pool=pool, split_seed=split_seed,
                            owner=owner)
    index = torch.as_tensor(indices, dtype=torch.int64)
    targets = relabel(labels[index], classes, owner, known=10)
    names = _FASHION_CLASSES if classes is None else [_FASHION_CLASSES[c] for c in classes]
    return ImageTensorDataset(images[index], targets, size=size, channels=channels, augment=augment, classes=names)
