"""Model keys of our own, for names that torchdistill's example script cannot reach.

``examples/torchvision/image_classification.py`` looks a model key up in ``torchvision.models`` first and only then
in torchdistill's registry. torchdistill registers its CIFAR ResNet of any depth as ``resnet``, which is also the
module ``torchvision.models.resnet``, so the script stops with ``TypeError: 'module' object is not callable``.
``GeoKTCifarResNet`` is the same constructor under a name torchvision does not have; the weights are identical.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchdistill.models.classification.resnet import resnet

from .registry import register_model

__all__ = ["GeoKTCifarResNet"]


@register_model
def GeoKTCifarResNet(depth: int, num_classes: int = 10, pretrained: bool = False, progress: bool = True,  # noqa: N802
                     **kwargs: Any) -> nn.Module:
    """torchdistill's CIFAR ResNet (``ResNet4Cifar``) of ``depth`` layers, exactly as its ``resnet`` key builds it.

    Args:
        depth: 8, 14, 20, ... (``depth - 2`` divisible by 6).
        num_classes: classifier outputs.
        pretrained: load torchdistill's released CIFAR weights where there are some (depths 20-110, 10 classes).
        progress: show the download's progress bar.
        **kwargs: passed to ``ResNet4Cifar``.

    Raises:
        ValueError: ``depth`` is not 6n + 2.

    Example (YAML)::

        student_model:
          key: 'GeoKTCifarResNet'
          kwargs: {depth: 8, num_classes: 10, pretrained: False, progress: False}
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"GeoKTCifarResNet: depth {depth!r} is not 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...). Fix "
                         "models.<role>.kwargs.depth.")
    return resnet(depth, num_classes, pretrained, progress, **kwargs)
