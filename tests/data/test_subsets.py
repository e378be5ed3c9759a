"""geokt_plugin.data.subsets: class-balanced subsets and the split semantics on any dataset with targets."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from geokt_plugin import data as D

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
