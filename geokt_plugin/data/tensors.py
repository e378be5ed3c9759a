"""An in-memory dataset of grey uint8 images, transformed on access."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .stats import FASHION_MNIST_MEAN, FASHION_MNIST_STD

__all__ = ["ImageTensorDataset"]


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
        classes: class names, index ``i`` naming label ``i``.
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
