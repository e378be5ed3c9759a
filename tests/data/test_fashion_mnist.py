"""geokt_plugin.data.fmnist: Fashion-MNIST resolution, splits and transforms (reads the Debian package's files)."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest
import torch

from geokt_plugin import data as D
from geokt_plugin.data import fmnist

FMNIST = Path(D.DEBIAN_FASHION_MNIST)  # `make test` installs it first (Debian package dataset-fashion-mnist)


# ---- Fashion-MNIST --------------------------------------------------------------------------------------------


def test_fashion_mnist_explicit_bad_root_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        D.fashion_mnist(str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "download: True" in message and "root:" in message


def test_fashion_mnist_nothing_found_lists_every_option(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ENV_FASHION_MNIST, raising=False)
    monkeypatch.setattr(fmnist, "DEBIAN_FASHION_MNIST", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match=r"no Fashion-MNIST found .*apt-get install dataset-fashion-mnist"):
        D.resolve_fashion_mnist_root()


def test_fashion_mnist_env_variable_pointing_nowhere(tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV_FASHION_MNIST, str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"GEOKT_FASHION_MNIST=.* does not hold"):
        D.resolve_fashion_mnist_root()


def test_fashion_mnist_torchvision_layout_and_env(tmp_path, monkeypatch):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in FMNIST.glob("*-ubyte.gz"):
        os.symlink(f, raw / f.name)
    assert D.resolve_fashion_mnist_root(str(tmp_path)) == raw
    monkeypatch.setenv(D.ENV_FASHION_MNIST, str(tmp_path))
    assert D.resolve_fashion_mnist_root() == raw


def test_fashion_mnist_splits_sizes_and_balance():
    train = D.fashion_mnist(split="train", subset_size=300, val_size=200, seed=0)
    val = D.fashion_mnist(split="val", val_size=200, seed=0)
    test = D.fashion_mnist(split="test", subset_size=50)
    assert (len(train), len(val), len(test)) == (300, 200, 50)
    assert set(collections.Counter(train.targets.tolist()).values()) == {30}
    assert set(collections.Counter(val.targets.tolist()).values()) == {20}
    # disjoint: no training image equals a validation image pixel for pixel (Fashion-MNIST has no duplicates here)
    train_bytes = {bytes(img.numpy()) for img in train.images}
    assert not any(bytes(img.numpy()) in train_bytes for img in val.images)


def test_fashion_mnist_fraction_nested():
    ten = D.fashion_mnist(split="train", subset_size=1000, fraction=0.1, val_size=100)
    twenty = D.fashion_mnist(split="train", subset_size=1000, fraction=0.2, val_size=100)
    small = {bytes(img.numpy()) for img in ten.images}
    large = {bytes(img.numpy()) for img in twenty.images}
    assert (len(ten), len(twenty)) == (100, 200) and small < large


def test_fashion_mnist_transforms():
    ds = D.fashion_mnist(split="test", subset_size=20)
    x, y = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    background = (0.0 - D.FASHION_MNIST_MEAN) / D.FASHION_MNIST_STD
    assert torch.allclose(x[:, :2, :], torch.full_like(x[:, :2, :], background))  # the 2-pixel zero padding
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    grey = D.fashion_mnist(split="test", subset_size=20, size=28, channels=1)
    assert grey[0][0].shape == (1, 28, 28)
    assert D.fashion_mnist(split="test", subset_size=20, size=24)[0][0].shape == (3, 24, 24)
    aug = D.fashion_mnist(split="test", subset_size=20, augment=True)
    torch.manual_seed(0)
    first = aug[0][0]
    torch.manual_seed(0)
    assert torch.equal(first, aug[0][0]) and first.shape == (3, 32, 32)


def test_fashion_mnist_classes_relabelled():
    ds = D.fashion_mnist(split="test", classes=[5, 6, 7, 8, 9])
    assert len(ds) == 5000 and set(ds.targets.tolist()) == {0, 1, 2, 3, 4}
    assert ds.classes == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    full = D.fashion_mnist(split="test")
    assert torch.equal(full.images[full.targets == 5], ds.images[ds.targets == 0])
