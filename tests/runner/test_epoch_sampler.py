"""The training data order: a permutation that depends only on ``(seed, epoch)``."""

from __future__ import annotations

import torch

from geokt_plugin.runner.loaders import EpochSeededSampler


def test_train_sampler_order_depends_only_on_seed_and_epoch():
    a, b = EpochSeededSampler(50, seed=3), EpochSeededSampler(50, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global RNG plays no part
    assert first == list(b) and sorted(first) == list(range(50))
    b.set_epoch(5)
    assert list(b) != first
    assert list(EpochSeededSampler(50, seed=4)) != list(EpochSeededSampler(50, seed=3))
    assert list(EpochSeededSampler(5, seed=3, shuffle=False)) == [0, 1, 2, 3, 4]
