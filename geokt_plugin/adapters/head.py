"""``GeoKTHeadAdapter``: a trainable 1x1 conv + BatchNorm head with explicit channel counts."""

from __future__ import annotations

from torch import Tensor, nn

from ..registry import register_adaptation_module
from ._args import positive_int

__all__ = ["GeoKTHeadAdapter"]


@register_adaptation_module
class GeoKTHeadAdapter(nn.Module):
    """A trainable 1x1 convolution + BatchNorm head mapping ``in_channels`` to ``out_channels`` feature maps.

    Args:
        in_channels: channels of the hooked student tensor.
        out_channels: channels of the target (e.g. the instructor's layer, for a FitNets hint).
        batch_norm: append ``BatchNorm2d(out_channels)``.
        relu: append a ReLU.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = True, relu: bool = False) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = positive_int(owner, "in_channels", in_channels)
        self.out_channels = positive_int(owner, "out_channels", out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=False) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))
