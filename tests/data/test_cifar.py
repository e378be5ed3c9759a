"""geokt_plugin.data.cifar: the torchvision builders' errors (no download in tests)."""

from __future__ import annotations

import pytest

from geokt_plugin import data as D


def test_cifar10_missing_data_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10: no CIFAR10 under .*download: True"):
        D.cifar10(str(tmp_path), split="train", download=False)
