"""``local_distance_loss`` and ``GeoKTDistanceLoss``: normalised distances on the instructor's kNN graph.

The math is in docs/losses.md (``GeoKTDistanceLoss``).
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
from .checks import check_neighbors
from .compiled import block_function
from .geometry import DIST_EPS, knn
from .kernel import (
    BlockLoss,
    Blocks,
    Side,
    block_distances,
    fill_diag,
    geometric_loss,
    inv_distances,
    pair_grad,
    scale_grad,
    sq_block,
)

__all__ = ["GeoKTDistanceLoss", "local_distance_loss"]


def _huber_parts(u: Tensor) -> tuple[Tensor, Tensor]:
    """``(huber(u), huber'(u))`` with delta 1: ``h' = clamp(u, -1, 1)`` and ``huber = h' (u - h'/2)``."""
    hp = u.clamp(-1.0, 1.0)
    return hp * (u - 0.5 * hp), hp


@block_function(cpu_auto=True)  # the same shape of work as the KL block
def _all_pairs_block(s: Side, t: Side, scale_s: Tensor, scale_t: Tensor, start: int, need_grad: bool) -> tuple:
    """``(value, dL/ds, pair_grad parts, ds/dx_rows)`` of one row block on every pair (``None`` without grad)."""
    x_rows, _, x_all, _ = s
    n, sc_s, sc_t = x_all.shape[1], scale_s[:, None, None], scale_t[:, None, None]
    q_s = sq_block(s)
    negative = q_s < 0 if need_grad else None
    d_s = q_s.clamp_min_(0.0).add_(DIST_EPS).sqrt_()
    d_t = sq_block(t).clamp_min_(0.0).add_(DIST_EPS).sqrt_()
    u = d_s / sc_s - d_t.div_(sc_t)
    u = fill_diag(u, start, 0.0)
    del d_t
    err, hp = _huber_parts(u)
    value = err.sum((1, 2)) / (n * (n - 1))
    if not need_grad:
        return value, None, None, None
    d_s = fill_diag(d_s, start, 0.0)
    dscale = -(hp * d_s).sum((1, 2)) / (n * (n - 1)) / scale_s.pow(2)
    w = inv_distances(d_s, negative, start)
    vdir = scale_grad(w, x_rows, x_all)
    return value, dscale, pair_grad(hp.mul_(w).mul_(0.5 / (n * (n - 1)) / sc_s), x_rows, x_all), vdir


# Gathers, scatters and topk stay outside the compiled functions: inductor's CPU loops around them do not vectorise.


@block_function
def _knn_distances(s: Side, t: Side, start: int, need_grad: bool) -> tuple:
    """First kNN pass of a row block, all but the gathers: ``(D_t, sum D_t, D_s, sum D_s, [Q_s < 0], ds/dx_rows)``.

    ``D_t`` has ``+inf`` on the diagonal (ready for the kNN), ``D_s`` zero.
    """
    x_rows, _, x_all, _ = s
    d_t = block_distances(t, start)
    sum_t = d_t.sum((1, 2))
    d_t = fill_diag(d_t, start, math.inf)
    q_s = sq_block(s)
    negative = q_s < 0
    d_s = q_s.clamp_min_(0.0).add_(DIST_EPS).sqrt_()
    d_s = fill_diag(d_s, start, 0.0)
    vdir = scale_grad(inv_distances(d_s, negative, start), x_rows, x_all) if need_grad else None
    return d_t, sum_t, d_s, d_s.sum((1, 2)), negative, vdir


class _DistanceAllPairs(BlockLoss):
    """Every pair ``j != i``: scales first, then one pass with values and gradients."""

    def native_block(self, sets: slice, block: native.Side) -> Tensor:
        return native.distance(block, neighbors=None, need_grad=self.blocks.need_grad)

    def prepare(self) -> None:
        self.scale_s = self.blocks.scales(self.blocks.aug_s)
        self.scale_t = self.blocks.scales(self.blocks.aug_t)

    def block(self, sets: slice, rows: slice) -> None:
        b = self.blocks
        s, t = b.side(b.aug_s, sets, rows), b.side(b.aug_t, sets, rows)
        b.add(sets, rows, *b.call(_all_pairs_block, s, t, self.scale_s[sets], self.scale_t[sets], rows.start,
                                  b.need_grad))


class _DistanceKNN(BlockLoss):
    """The instructor's ``k`` nearest neighbours: one pass gathers, a second scatters the gradient weights."""

    second_pass = True

    def native_block(self, sets: slice, block: native.Side) -> Tensor:
        return native.distance(block, neighbors=self.k, need_grad=self.blocks.need_grad)

    def __init__(self, blocks: Blocks, *, neighbors: int) -> None:
        super().__init__(blocks)
        S, n = blocks.num_sets, blocks.n
        s = blocks.s
        self.k = min(neighbors, n - 1)
        self.sum_s, self.sum_t = s.new_zeros(S), s.new_zeros(S)
        self.idx = torch.empty(S, n, self.k, dtype=torch.long, device=s.device)
        self.d_s_nb, self.d_t_nb = s.new_empty(S, n, self.k), s.new_empty(S, n, self.k)
        self.neg_nb = torch.empty(S, n, self.k, dtype=torch.bool, device=s.device)

    def block(self, sets: slice, rows: slice) -> None:
        b = self.blocks
        s, t = b.side(b.aug_s, sets, rows), b.side(b.aug_t, sets, rows)
        d_t, sum_t, d_s, sum_s, negative, vdir = b.call(_knn_distances, s, t, rows.start, b.need_grad)
        nb = knn(d_t, self.k)
        self.sum_t[sets] += sum_t
        self.sum_s[sets] += sum_s
        self.idx[sets, rows] = nb
        self.d_t_nb[sets, rows], self.d_s_nb[sets, rows] = d_t.gather(2, nb), d_s.gather(2, nb)
        self.neg_nb[sets, rows] = negative.gather(2, nb)
        b.add(sets, rows, None, vdir=vdir)

    def finish(self) -> None:
        b, nk = self.blocks, self.blocks.n * self.k
        scale_s = b.mean_scale(self.sum_s)[:, None, None]
        scale_t = b.mean_scale(self.sum_t)[:, None, None]
        err, hp = _huber_parts(self.d_s_nb / scale_s - self.d_t_nb / scale_t)
        b.value += err.sum((1, 2)) / nk
        if b.need_grad:
            # dL/dD at the k neighbours, then dL/dQ = dL/dD [Q >= 0] / (2 D); the scale's share goes through vdir.
            b.dscale += -(hp * self.d_s_nb).sum((1, 2)) / nk / scale_s.view(-1).pow(2)
            self.c_nb = (hp / (scale_s * nk * 2.0 * self.d_s_nb)).masked_fill_(self.neg_nb, 0.0)

    def grad_block(self, sets: slice, rows: slice) -> None:
        # Scatter the k weights of each row into a dense block: two bmm beat gathers (eager: see _knn_distances).
        b = self.blocks
        c = b.s.new_zeros(sets.stop - sets.start, rows.stop - rows.start, b.n)
        b.add_pair_grad(sets, rows, c.scatter_(2, self.idx[sets, rows], self.c_nb[sets, rows]))


def _check_knobs(owner: str, *, neighbors: int | None) -> dict[str, Any]:
    check_neighbors(owner, neighbors, allow_none=True)
    return {"neighbors": neighbors}


def local_distance_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    neighbors: int | None = 8,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Huber penalty on normalised distances along the instructor's kNN graph.

    For one point set of ``n`` points with ``k = min(neighbors, n - 1)``:

    .. math::
        L = \frac{1}{nk} \sum_i \sum_{j \in K(i)} \mathrm{huber}(Dn_s[i,j] - Dn_t[i,j]),\quad
        \mathrm{huber}(x) = \begin{cases} x^2/2 & |x| < 1 \\ |x| - 1/2 & \text{else} \end{cases}

    ``K(i)`` are the ``k`` nearest instructor neighbours of ``i``; with ``neighbors=None`` it is every
    ``j != i`` and the factor is ``1/(n(n-1))``.

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        neighbors: neighbourhood size ``k``, or ``None`` for all pairs.
        max_points, scope, reduction, generator, chunk_size: the knobs every loss shares, as
            :func:`~geokt_plugin.losses.kernel.geometric_loss` documents them.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "local_distance_loss"
    _check_knobs(owner, neighbors=neighbors)
    make = _DistanceAllPairs if neighbors is None else partial(_DistanceKNN, neighbors=neighbors)
    return geometric_loss(owner, make, student, teacher, max_points=max_points, scope=scope, reduction=reduction,
                          generator=generator, chunk_size=chunk_size)


@register_mid_level_loss
class GeoKTDistanceLoss(GeoKTLoss):
    """Huber penalty on normalised local-feature distances along the instructor's kNN graph.

    The math is in :func:`geokt_plugin.functional.local_distance_loss`. The formulation is this project's precise
    reading of Theodorakopoulos, Fotopoulou and Economou, `Geometric Regularization of Local Activations for
    Knowledge Transfer in Convolutional Neural Networks <https://doi.org/10.3390/info12080333>`_, Information
    12(8):333, 2021; it is not the paper's equation, which we could not read.

    Shape:
        student ``io_dict[student_module_path][student_module_io]``: ``(B, Cs, Hs, Ws)``; teacher likewise
        ``(B, Ct, Ht, Wt)``; output: scalar, or ``(B,)`` / ``(1,)`` with ``reduction="none"``.

    Example YAML sub-term::

        geo_layer2:
          criterion:
            key: 'GeoKTDistanceLoss'
            kwargs: {student_module_path: 'layer2', teacher_module_path: 'layer2', neighbors: 8}
          weight: 1.0
    """

    function = staticmethod(local_distance_loss)
    check_knobs = staticmethod(_check_knobs)
