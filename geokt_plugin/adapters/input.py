"""``GeoKTInputAdapter``: map a batch normalised for one network to another network's input convention."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import register_adaptation_module
from ._args import per_channel, positive_int

__all__ = ["GeoKTInputAdapter"]

_MIX_MODES = ("repeat", "fixed", "learnable")
_INTERPOLATIONS = ("bilinear", "nearest")


def _size_pair(owner: str, size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    pair = [size, size] if isinstance(size, int) else list(size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair):
        raise ValueError(f"{owner}: size must be a positive int or [H, W], got {size!r}.")
    return (pair[0], pair[1])


def _mix_matrix(
    owner: str, mix: str, weight: Sequence[Sequence[float]] | None, in_channels: int, out_channels: int
) -> Tensor | None:
    """The ``out_channels x in_channels`` mixing matrix, or ``None`` when ``mix`` needs none."""
    if mix == "repeat" and in_channels not in (1, out_channels):
        raise ValueError(f"{owner}: mix 'repeat' maps 1 channel to {out_channels} (or keeps equal counts), but "
                         f"in_channels={in_channels}. Use mix: 'fixed' with a weight matrix, or 'learnable'.")
    if weight is None and mix == "fixed":
        raise ValueError(f"{owner}: mix 'fixed' needs weight: an out_channels x in_channels matrix "
                         f"({out_channels} x {in_channels}).")
    if weight is not None:
        matrix = torch.tensor(weight, dtype=torch.float32)
        if matrix.shape != (out_channels, in_channels):
            raise ValueError(f"{owner}: weight has shape {tuple(matrix.shape)}, expected (out_channels, "
                             f"in_channels) = ({out_channels}, {in_channels}).")
        return matrix
    if mix == "learnable":
        # Copy when one side has a single channel, else average: a neutral start.
        return torch.full((out_channels, in_channels), 1.0 / in_channels)
    return None


@register_adaptation_module
class GeoKTInputAdapter(nn.Module):
    """Map an input batch normalised for one network to another network's input convention.

    In order: undo ``in_mean``/``in_std``, resize to ``size``, map ``in_channels`` to ``out_channels``, apply
    ``out_mean``/``out_std``. Means and stds are per channel (one value is broadcast).

    Args:
        in_channels: channels of the incoming batch.
        out_channels: channels the receiving network expects.
        size: output ``H = W`` (or ``[H, W]``); ``None`` keeps the input size.
        mix: ``"repeat"`` (1 -> N channels by copying; also the identity when channels match), ``"fixed"``
            (a constant ``out_channels x in_channels`` matrix ``weight``) or ``"learnable"`` (a trainable 1x1
            convolution initialised to ``weight`` or to an average/copy).
        weight: the mixing matrix for ``"fixed"`` / the initial one for ``"learnable"``.
        in_mean, in_std: normalisation of the incoming batch (``None``: the batch is not normalised).
        out_mean, out_std: normalisation the receiving network expects (``None``: leave unnormalised).
        interpolation: ``"bilinear"`` (with antialias when shrinking) or ``"nearest"``.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, *size)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        *,
        size: int | Sequence[int] | None = None,
        mix: str = "repeat",
        weight: Sequence[Sequence[float]] | None = None,
        in_mean: float | Sequence[float] | None = None,
        in_std: float | Sequence[float] | None = None,
        out_mean: float | Sequence[float] | None = None,
        out_std: float | Sequence[float] | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = positive_int(owner, "in_channels", in_channels)
        self.out_channels = positive_int(owner, "out_channels", out_channels)
        self.size = _size_pair(owner, size)
        if mix not in _MIX_MODES:
            raise ValueError(f"{owner}: unknown mix {mix!r}; choose one of {list(_MIX_MODES)}.")
        if interpolation not in _INTERPOLATIONS:
            raise ValueError(f"{owner}: unknown interpolation {interpolation!r}; choose 'bilinear' or 'nearest'.")
        self.mix = mix
        self.interpolation = interpolation
        matrix = _mix_matrix(owner, mix, weight, in_channels, out_channels)
        if mix == "learnable":
            self.mixer: nn.Conv2d | None = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
            with torch.no_grad():
                self.mixer.weight.copy_(matrix.view(out_channels, in_channels, 1, 1))
            self.register_buffer("mix_weight", None)
        else:
            self.mixer = None
            self.register_buffer("mix_weight", None if matrix is None else matrix.view(out_channels, in_channels, 1, 1))
        for name, value, channels in (("in_mean", in_mean, in_channels), ("in_std", in_std, in_channels),
                                      ("out_mean", out_mean, out_channels), ("out_std", out_std, out_channels)):
            self.register_buffer(name, per_channel(owner, name, value, channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected a (B, {self.in_channels}, H, W) batch, got "
                             f"{tuple(x.shape)}. Set in_channels to the channels of the data the student sees.")
        if self.in_std is not None:
            x = x * self.in_std.to(x.dtype)
        if self.in_mean is not None:
            x = x + self.in_mean.to(x.dtype)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            if self.interpolation == "nearest":
                x = F.interpolate(x, size=self.size, mode="nearest")
            else:
                x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if self.mixer is not None:
            x = self.mixer(x)
        elif self.mix_weight is not None:
            x = F.conv2d(x, self.mix_weight.to(x.dtype))
        elif self.in_channels != self.out_channels:
            x = x.expand(-1, self.out_channels, -1, -1)
        if self.out_mean is not None:
            x = x - self.out_mean.to(x.dtype)
        if self.out_std is not None:
            x = x / self.out_std.to(x.dtype)
        return x

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, size={self.size}, "
                f"mix={self.mix!r}, interpolation={self.interpolation!r}")
