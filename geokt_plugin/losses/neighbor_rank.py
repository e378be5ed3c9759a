"""``neighbor_rank_loss`` and ``GeoKTNeighborRankLoss``: the instructor's kNN sets as soft-choice targets.

The math is in docs/losses.md (``GeoKTNeighborRankLoss``).
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
from .checks import check_neighbors, check_positive
from .compiled import block_function
from .geometry import DIST_EPS, knn
from .kernel import BlockLoss, Blocks, Side, fill_diag, geometric_loss, inv_distances, pair_grad, scale_grad, sq_block

__all__ = ["GeoKTNeighborRankLoss", "neighbor_rank_loss"]


# topk and the gathers stay outside the compiled functions (inductor's CPU loops around them do not vectorise); the
# scatter of -1/k stays inside _rank_grad, in place, which the eager path (the CPU default for this loss) needs.


@block_function
def _rank_logits(s: Side, t: Side, scale_s: Tensor, start: int, temp: float, need_grad: bool) -> tuple:
    """``(A_t, D_s, [Q_s < 0] or None, logit, logsumexp)`` of a row block; ``A_t``, ``logit`` masked on the diagonal."""
    q_s = sq_block(s)
    negative = q_s < 0 if need_grad else None
    d_s = q_s.clamp_min_(0.0).add_(DIST_EPS).sqrt_()
    a_t = sq_block(t).clamp_min_(0.0).add_(DIST_EPS)
    a_t = fill_diag(a_t, start, math.inf)
    logit = d_s * (-1.0 / temp / scale_s[:, None, None])
    logit = fill_diag(logit, start, -math.inf)
    return a_t, d_s, negative, logit, logit.logsumexp(-1, keepdim=True)


@block_function
def _rank_grad(logit: Tensor, lse: Tensor, nb: Tensor, d_s: Tensor, negative: Tensor, x_rows: Tensor,
               x_all: Tensor, scale_s: Tensor, start: int, temp: float) -> tuple:
    """``(dL/ds, pair_grad parts, ds/dx_rows)`` of a row block; ``nb``: the instructor's kNN (``logit`` is reused)."""
    n, sc_s, k = x_all.shape[1], scale_s[:, None, None], nb.shape[-1]
    # dL/dlogit = (q - [j in K(i)] / k) / n with q = softmax(logit); logit = -D / (T s).
    g = logit.sub_(lse).exp_().scatter_add_(2, nb, torch.full_like(nb, -1.0 / k, dtype=d_s.dtype))
    dscale = (g * d_s).sum((1, 2)) / (n * temp) / scale_s.pow(2)
    w = inv_distances(d_s, negative, start)
    vdir = scale_grad(w, x_rows, x_all)
    return dscale, pair_grad(g.mul_(w).mul_(-0.5 / (n * temp) / sc_s), x_rows, x_all), vdir


class _NeighborRank(BlockLoss):
    """Every pair: the student's scale first, then one pass with values and gradients."""

    def __init__(self, blocks: Blocks, *, neighbors: int, temperature: float) -> None:
        super().__init__(blocks)
        self.k = min(neighbors, blocks.n - 1)
        self.temperature = temperature

    def native_block(self, sets: slice, block: native.Side) -> Tensor:
        return native.rank(block, neighbors=self.k, temperature=self.temperature, need_grad=self.blocks.need_grad)

    def prepare(self) -> None:
        # The instructor enters only through its kNN, which does not depend on its scale.
        self.scale_s = self.blocks.scales(self.blocks.aug_s)

    def block(self, sets: slice, rows: slice) -> None:
        b, n, k, temp, scale_s = self.blocks, self.blocks.n, self.k, self.temperature, self.scale_s[sets]
        s, t = b.side(b.aug_s, sets, rows), b.side(b.aug_t, sets, rows)
        a_t, d_s, negative, logit, lse = b.call(_rank_logits, s, t, scale_s, rows.start, temp, b.need_grad)
        nb = knn(a_t, k)  # sqrt is monotone: the kNN of A are those of D
        del a_t
        value = (lse.squeeze(-1) - logit.gather(2, nb).mean(-1) - math.log(k)).sum(-1) / n
        if not b.need_grad:
            b.add(sets, rows, value)
            return
        b.add(sets, rows, value, *b.call(_rank_grad, logit, lse, nb, d_s, negative, s[0], s[2], scale_s, rows.start,
                                         temp))


def _check_knobs(owner: str, *, neighbors: int, temperature: float) -> dict[str, Any]:
    check_neighbors(owner, neighbors, allow_none=False)
    check_positive(owner, "temperature", temperature)
    return {"neighbors": neighbors, "temperature": float(temperature)}


def neighbor_rank_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    neighbors: int = 8,
    temperature: float = 0.1,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""KL divergence from the uniform distribution on the instructor's kNN set to the student's soft choice.

    .. math::
        q[j|i] = \mathrm{softmax}_{j \ne i}\left(-Dn_s[i,j] / T\right),\qquad
        L = \frac{1}{n} \sum_i \left(-\log k - \frac{1}{k} \sum_{j \in K(i)} \log q[j|i]\right) \ge 0

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        neighbors: neighbourhood size ``k`` (an integer; ``k = min(neighbors, n - 1)``).
        temperature: softness ``T`` of the student's neighbour choice.
        max_points, scope, reduction, generator, chunk_size: the knobs every loss shares, as
            :func:`~geokt_plugin.losses.kernel.geometric_loss` documents them.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "neighbor_rank_loss"
    knobs = _check_knobs(owner, neighbors=neighbors, temperature=temperature)
    return geometric_loss(owner, partial(_NeighborRank, **knobs), student, teacher, max_points=max_points,
                          scope=scope, reduction=reduction, generator=generator, chunk_size=chunk_size)


@register_mid_level_loss
class GeoKTNeighborRankLoss(GeoKTLoss):
    """The instructor's kNN graph as the target of the student's soft neighbour choice.

    The math is in :func:`geokt_plugin.functional.neighbor_rank_loss`. The formulation is this project's precise
    reading of Theodorakopoulos, Fotopoulou and Economou, `Geometric Regularization of Local Activations for
    Knowledge Transfer in Convolutional Neural Networks <https://doi.org/10.3390/info12080333>`_, Information
    12(8):333, 2021; it is not the paper's equation, which we could not read.

    Shape:
        student ``(B, Cs, Hs, Ws)``, teacher ``(B, Ct, Ht, Wt)``; output: scalar, or ``(B,)`` / ``(1,)`` with
        ``reduction="none"``.

    Example YAML sub-term::

        geo_layer1:
          criterion:
            key: 'GeoKTNeighborRankLoss'
            kwargs: {student_module_path: 'layer1', teacher_module_path: 'layer1', neighbors: 8,
                     temperature: 0.1, max_points: 256}
          weight: 1.0
    """

    function = staticmethod(neighbor_rank_loss)
    check_knobs = staticmethod(_check_knobs)
