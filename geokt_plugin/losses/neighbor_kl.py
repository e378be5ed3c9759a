"""``neighbor_kl_loss`` and ``GeoKTNeighborKLLoss``: KL divergence between neighbourhood distributions.

The math is in docs/losses.md (``GeoKTNeighborKLLoss``).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import Tensor

from ..registry import register_mid_level_loss
from . import native
from .base import GeoKTLoss
from .checks import check_positive
from .compiled import block_function
from .geometry import DIST_EPS
from .kernel import BlockLoss, Blocks, Side, fill_diag, geometric_loss, inv_distances, pair_grad, scale_grad, sq_block

__all__ = ["GeoKTNeighborKLLoss", "neighbor_kl_loss"]


@block_function(cpu_auto=True)  # 0.6x the eager time on CPU (docs/performance.md)
def _kl_block(s: Side, t: Side, scale_s: Tensor, scale_t: Tensor, start: int, bw: float, need_grad: bool) -> tuple:
    """``(value, dL/ds, pair_grad parts, ds/dx_rows)`` of one row block (the last three ``None`` without grad)."""
    x_rows, _, x_all, _ = s
    n, sc_s, sc_t = x_all.shape[1], scale_s[:, None, None], scale_t[:, None, None]
    q_s = sq_block(s)
    negative = q_s < 0 if need_grad else None
    a_s = q_s.clamp_min_(0.0).add_(DIST_EPS)
    a_t = sq_block(t).clamp_min_(0.0).add_(DIST_EPS)
    d_s = a_s.sqrt() if need_grad else None
    logit_s = a_s.mul_(-1.0 / bw / sc_s.pow(2))
    logit_s = fill_diag(logit_s, start, -math.inf)
    logp_s = logit_s.log_softmax(-1)
    logit_t = a_t.mul_(-1.0 / bw / sc_t.pow(2))
    logit_t = fill_diag(logit_t, start, -math.inf)
    logp_t = logit_t.log_softmax(-1)
    del a_t, logit_t
    p_t = logp_t.exp()
    logp_s = fill_diag(logp_s, start, 0.0)
    logp_t = fill_diag(logp_t, start, 0.0)
    value = logp_t.sub_(logp_s).mul_(p_t).sum((1, 2)) / n
    del logp_t
    if not need_grad:
        return value, None, None, None
    # dL/dlogit_s = (P_s - P_t) / n; logit = -A / (bw s^2) gives dL/dA and dL/ds.
    g = logp_s.exp_().sub_(p_t)
    del p_t
    g = fill_diag(g, start, 0.0)
    logit_s = fill_diag(logit_s, start, 0.0)
    dscale = -2.0 / (n * scale_s) * (g * logit_s).sum((1, 2))
    del logit_s, a_s
    grad = pair_grad(g.mul_(-1.0 / (n * bw) / sc_s.pow(2)).masked_fill_(negative, 0.0), x_rows, x_all)
    return value, dscale, grad, scale_grad(inv_distances(d_s, negative, start), x_rows, x_all)


class _NeighborKL(BlockLoss):
    """Every pair: both scales first, then one pass with values and gradients."""

    def __init__(self, blocks: Blocks, *, bandwidth: float) -> None:
        super().__init__(blocks)
        self.bandwidth = bandwidth

    def native_block(self, sets: slice, block: native.Side) -> Tensor:
        return native.kl(block, bandwidth=self.bandwidth, need_grad=self.blocks.need_grad)

    def prepare(self) -> None:
        self.scale_s = self.blocks.scales(self.blocks.aug_s)
        self.scale_t = self.blocks.scales(self.blocks.aug_t)

    def block(self, sets: slice, rows: slice) -> None:
        b = self.blocks
        s, t = b.side(b.aug_s, sets, rows), b.side(b.aug_t, sets, rows)
        out = b.call(_kl_block, s, t, self.scale_s[sets], self.scale_t[sets], rows.start, self.bandwidth, b.need_grad)
        b.add(sets, rows, *out)


def _check_knobs(owner: str, *, bandwidth: float) -> dict[str, Any]:
    check_positive(owner, "bandwidth", bandwidth)
    return {"bandwidth": float(bandwidth)}


def neighbor_kl_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    bandwidth: float = 0.5,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""KL divergence between instructor and student neighbourhood distributions.

    Each network uses its own normalised distances, so ``bandwidth`` means the same in both:

    .. math::
        P[j|i] = \mathrm{softmax}_{j \ne i}\left(-Dn[i,j]^2 / \mathrm{bandwidth}\right),\qquad
        L = \frac{1}{n} \sum_i \sum_{j \ne i} P_t[j|i] \left(\log P_t[j|i] - \log P_s[j|i]\right)

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        bandwidth: kernel width on the normalised scale (mean distance 1).
        max_points, scope, reduction, generator, chunk_size: the knobs every loss shares, as
            :func:`~geokt_plugin.losses.kernel.geometric_loss` documents them.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "neighbor_kl_loss"
    knobs = _check_knobs(owner, bandwidth=bandwidth)
    return geometric_loss(owner, partial(_NeighborKL, **knobs), student, teacher, max_points=max_points, scope=scope,
                          reduction=reduction, generator=generator, chunk_size=chunk_size)


@register_mid_level_loss
class GeoKTNeighborKLLoss(GeoKTLoss):
    """KL divergence between the instructor's and the student's local-feature neighbourhood distributions.

    The math is in :func:`geokt_plugin.functional.neighbor_kl_loss`. The formulation is this project's precise
    reading of Theodorakopoulos, Fotopoulou and Economou, `Geometric Regularization of Local Activations for
    Knowledge Transfer in Convolutional Neural Networks <https://doi.org/10.3390/info12080333>`_, Information
    12(8):333, 2021; it is not the paper's equation, which we could not read.

    Shape:
        student ``(B, Cs, Hs, Ws)``, teacher ``(B, Ct, Ht, Wt)``; output: scalar, or ``(B,)`` / ``(1,)`` with
        ``reduction="none"``.

    Example YAML sub-term::

        geo_layer3:
          criterion:
            key: 'GeoKTNeighborKLLoss'
            kwargs: {student_module_path: 'layer3', teacher_module_path: 'layer3', bandwidth: 0.5}
          weight: 1.0
    """

    function = staticmethod(neighbor_kl_loss)
    check_knobs = staticmethod(_check_knobs)
