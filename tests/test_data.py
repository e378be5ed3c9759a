"""geokt_plugin.data: class-balanced subsets, split semantics, Fashion-MNIST resolution and transforms."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from geokt_plugin import data as D

FMNIST = Path(D.DEBIAN_FASHION_MNIST)  # `make test` installs it first (Debian package dataset-fashion-mnist)

# 10 classes of unequal size (100..190 items), shuffled: a stand-in for any labelled dataset.
_RNG = np.random.default_rng(123)
TARGETS = _RNG.permutation(np.concatenate([np.full(100 + 10 * c, c) for c in range(10)]))


def _counts(indices, targets=TARGETS):
    return collections.Counter(int(targets[i]) for i in indices)


# ---- balanced_subset -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 9, 10, 55, 500, 1000])
def test_balanced_subset_class_balance(n):
    chosen = D.balanced_subset(TARGETS, n, seed=0)
    assert len(chosen) == n and len(set(chosen)) == n
    counts = _counts(chosen)
    full = [counts.get(c, 0) for c in range(10)]
    assert max(full) - min(full) <= 1, full


def test_balanced_subset_caps_small_classes_and_balances_the_rest():
    chosen = D.balanced_subset(TARGETS, 1100, seed=0)  # classes 0 and 1 hold only 100 and 110 items
    counts = _counts(chosen)
    assert (counts[0], counts[1]) == (100, 110)
    others = [counts[c] for c in range(2, 10)]
    assert set(others) <= {111, 112} and sum(others) == 890


def test_balanced_subset_is_deterministic_and_seed_dependent():
    a = D.balanced_subset(TARGETS, 200, seed=7)
    assert a == D.balanced_subset(TARGETS, 200, seed=7)
    assert a == sorted(a)
    assert a != D.balanced_subset(TARGETS, 200, seed=8)


def test_balanced_subset_nesting_counts_and_fractions():
    small, large = D.balanced_subset(TARGETS, 0.1, seed=3), D.balanced_subset(TARGETS, 0.2, seed=3)
    assert set(small) < set(large)
    assert len(small) == round(0.1 * len(TARGETS)) and len(large) == round(0.2 * len(TARGETS))
    assert set(D.balanced_subset(TARGETS, 30, seed=3)) < set(D.balanced_subset(TARGETS, 31, seed=3))


def test_balanced_subset_exclude_is_disjoint():
    held_out = D.balanced_subset(TARGETS, 100, seed=0)
    rest = D.balanced_subset(TARGETS, None, seed=0, exclude=held_out)
    assert not set(held_out) & set(rest)
    assert len(rest) == len(TARGETS) - 100


def test_balanced_subset_accepts_tensor_targets():
    assert D.balanced_subset(torch.as_tensor(TARGETS), 50, seed=1) == D.balanced_subset(list(TARGETS), 50, seed=1)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (len(TARGETS) + 1, ValueError, r"only 1450 images are available"),
        (-1, ValueError, r"choose 0\.\.1450"),
        (0.0, ValueError, r"fraction in \(0, 1\]"),
        (1.5, ValueError, r"fraction in \(0, 1\]"),
        (True, TypeError, r"got a bool"),
        ("10", TypeError, r"must be an int, a float or None"),
    ],
)
def test_balanced_subset_errors(value, error, match):
    with pytest.raises(error, match=match):
        D.balanced_subset(TARGETS, value, seed=0)


# ---- split semantics on any dataset with targets (the CIFAR path, tested with a fake) --------------------------


class FakeLabelled:
    """What torchvision's CIFAR datasets offer the subset logic: ``targets`` and ``(image, label)`` items."""

    def __init__(self, targets):
        self.targets = list(int(t) for t in targets)

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return torch.full((3, 4, 4), float(i)), self.targets[i]


def test_subset_dataset_train_val_disjoint_and_sized():
    fake = FakeLabelled(TARGETS)
    val = D.subset_dataset(fake, split="val", val_size=100, seed=0)
    train = D.subset_dataset(fake, split="train", val_size=100, subset_size=500, seed=0)
    assert len(val) == 100 and len(train) == 500
    assert not set(val.indices) & set(train.indices)
    assert max(_counts(train.indices).values()) - min(_counts(train.indices).values()) <= 1
    image, label = train[0]
    assert image[0, 0, 0].item() == train.indices[0] and label == TARGETS[train.indices[0]]


def test_subset_dataset_fraction_is_nested_inside_subset():
    fake = FakeLabelled(TARGETS)
    ten = D.subset_dataset(fake, split="train", val_size=100, subset_size=600, fraction=0.1, seed=4)
    twenty = D.subset_dataset(fake, split="train", val_size=100, subset_size=600, fraction=0.2, seed=4)
    full = D.subset_dataset(fake, split="train", val_size=100, subset_size=600, seed=4)
    assert (len(ten), len(twenty)) == (60, 120)
    assert set(ten.indices) < set(twenty.indices) < set(full.indices)


def test_subset_dataset_classes_relabel_in_given_order():
    fake = FakeLabelled(TARGETS)
    sub = D.subset_dataset(fake, split="train", classes=[7, 2], seed=0)
    assert set(sub.targets) == {0, 1}
    for index, label in zip(sub.indices, sub.targets, strict=True):
        assert TARGETS[index] == [7, 2][label]
    assert len(sub) == int((TARGETS == 7).sum() + (TARGETS == 2).sum())


def test_subset_dataset_errors():
    fake = FakeLabelled(TARGETS)
    with pytest.raises(ValueError, match=r"split 'val' needs val_size > 0"):
        D.subset_dataset(fake, split="val")
    with pytest.raises(ValueError, match=r"unknown split 'valid'"):
        D.subset_dataset(fake, split="valid")
    with pytest.raises(ValueError, match=r"classes=\[3, 3\] must be distinct"):
        D.subset_dataset(fake, split="train", classes=[3, 3])
    with pytest.raises(TypeError, match=r"has no `targets` attribute"):
        D.subset_dataset(object(), split="train")


def test_cifar10_missing_data_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10: no CIFAR10 under .*download: True"):
        D.cifar10(str(tmp_path), split="train", download=False)


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
    monkeypatch.setattr(D, "DEBIAN_FASHION_MNIST", str(tmp_path / "absent"))
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


def test_image_tensor_dataset_rejects_bad_input():
    with pytest.raises(ValueError, match=r"uint8 tensor"):
        D.ImageTensorDataset(torch.zeros(2, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError, match=r"2 images but 3 targets"):
        D.ImageTensorDataset(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(3))
