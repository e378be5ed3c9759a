"""geokt_plugin.data.tensors: ImageTensorDataset input checks."""

from __future__ import annotations

import pytest
import torch

from geokt_plugin import data as D


def test_image_tensor_dataset_rejects_bad_input():
    with pytest.raises(ValueError, match=r"uint8 tensor"):
        D.ImageTensorDataset(torch.zeros(2, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError, match=r"2 images but 3 targets"):
        D.ImageTensorDataset(torch.zeros(2, 28, 28, dtype=torch.uint8), torch.zeros(3))
