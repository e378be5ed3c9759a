"""``neighborhood_contrast_loss`` and ``GeoKTNeighborhoodContrastLoss``: NAC on the instructor's tree neighbourhoods.

The math is in docs/losses.md (``GeoKTNeighborhoodContrastLoss``).
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
from .checks import check_choice, check_int, check_neighbors
from .compiled import block_function
from .geometry import DIST_EPS, knn
from .kernel import BlockLoss, Blocks, Side, block_diag, fill_diag, geometric_loss, pair_grad, sq_block
from .tree import hop_mask, minimum_spanning_tree

__all__ = ["GRAPHS", "GeoKTNeighborhoodContrastLoss", "neighborhood_contrast_loss"]

GRAPHS = ("mst", "knn")
NAC_EPS = 1e-12  # floor of the NAC denominator sum_{j != i} Q[i, j]


def _whole(rows: slice, n: int) -> bool:
    return rows.start == 0 and rows.stop == n


def _contrast(q: Tensor, m: Tensor, start: int) -> tuple[Tensor, Tensor]:
    """``(NAC, S)`` of a row block: ``S_i = sum_{j != i} Q_ij``, ``NAC_i = sum_j M_ij Q_ij / max(S_i, 1e-12)``."""
    q = fill_diag(q, start, 0.0)
    total = q.sum(-1)
    return (q * m).sum(-1).div_(total.clamp_min(NAC_EPS)), total


@block_function
def _nac_block(q_t: Tensor, mask: Tensor, s: Side, start: int, need_grad: bool) -> tuple:
    """``(value, None, pair_grad parts)`` of one row block from the instructor's ``Q`` and bool mask ``M``."""
    x_rows, _, x_all, _ = s
    n = x_all.shape[1]
    m = mask.to(q_t.dtype)
    nac_t, _ = _contrast(q_t.clamp_min(0.0), m, start)
    q_s = sq_block(s)
    negative = q_s < 0 if need_grad else None
    nac_s, total_s = _contrast(q_s.clamp_min_(0.0), m, start)
    diff = nac_s - nac_t
    value = diff.pow(2).sum(-1) / n
    if not need_grad:
        return value, None, None
    # dL/dQ_ij = g_i (M_ij - NAC_i [S_i >= 1e-12]) / max(S_i, 1e-12) [Q_ij >= 0], g_i = 2 (NAC_s - NAC_t) / n.
    live = torch.where(total_s >= NAC_EPS, nac_s, 0.0)
    coef = diff.mul_(2.0 / n).div_(total_s.clamp_min(NAC_EPS))
    c = m.sub_(live.unsqueeze(-1)).mul_(coef.unsqueeze(-1)).masked_fill_(negative, 0.0)
    c = fill_diag(c, start, 0.0)
    return value, None, pair_grad(c, x_rows, x_all)


class _NeighborhoodContrast(BlockLoss):
    """One pass: ``NAC[i]`` needs only row ``i`` of ``Q`` and ``M``, so each block has its values and gradients.

    The mask comes from the instructor alone. ``"knn"``: the block's own rows. ``"mst"``: the tree needs a whole
    set's distances; a block of whole sets builds its sets' trees from the distances it computes anyway, and the
    sets whose rows are split across blocks (``chunk_size < n``) get theirs in ``prepare``, one set at a time (one
    ``(n, n)`` matrix: the memory floor of this loss). Only the ``(S, n - 1, 2)`` edges are kept; each block expands
    its own rows of the hop mask.
    """

    def __init__(self, blocks: Blocks, *, graph: str, radius: int, neighbors: int) -> None:
        super().__init__(blocks)
        self.graph, self.radius, self.k = graph, radius, min(neighbors, blocks.n - 1)
        shape = (blocks.num_sets, blocks.n - 1, 2)
        self.edges = torch.empty(shape, dtype=torch.long, device=blocks.t.device) if graph == "mst" else None

    def native_block(self, sets: slice, block: native.Side) -> Tensor:
        mst = self.graph == "mst"
        return native.nac(block, mst=mst, radius=self.radius, neighbors=self.k,
                          points=self.blocks.t[sets] if mst else None, need_grad=self.blocks.need_grad)

    def prepare(self) -> None:
        b = self.blocks
        if self.edges is None:
            return
        for start in sorted({sets.start for sets, rows in b.blocks if not _whole(rows, b.n)}):
            one = slice(start, start + 1)
            self._grow_trees(one, b.sq(b.aug_t, one, slice(0, b.n)))

    def _grow_trees(self, sets: slice, q_t: Tensor) -> None:
        """Trees of whole sets from their ``(b, n, n)`` instructor ``Q`` (and points: copies of a point tie exactly)."""
        self.edges[sets] = minimum_spanning_tree(q_t, self.blocks.t[sets])

    def _mask(self, q_t: Tensor, sets: slice, rows: slice) -> Tensor:
        """The instructor's ``M`` on a row block, bool, False on the diagonal."""
        if self.graph == "knn":
            a_t = q_t.clamp_min(0.0).add_(DIST_EPS)  # the other losses' kNN: same keys, same tie rule
            block_diag(a_t, rows).fill_(math.inf)
            return torch.zeros_like(q_t, dtype=torch.bool).scatter_(2, knn(a_t, self.k), True)
        if _whole(rows, self.blocks.n):
            self._grow_trees(sets, q_t)
        return hop_mask(self.edges[sets], self.blocks.n, self.radius, rows)

    def block(self, sets: slice, rows: slice) -> None:
        b = self.blocks
        q_t = b.sq(b.aug_t, sets, rows)
        m = self._mask(q_t, sets, rows)
        b.add(sets, rows, *b.call(_nac_block, q_t, m, b.side(b.aug_s, sets, rows), rows.start, b.need_grad))


def _check_knobs(owner: str, *, graph: str, radius: int, neighbors: int) -> dict[str, Any]:
    check_choice(owner, "graph", graph, GRAPHS)
    check_int(owner, "radius", radius, minimum=1, allowed="an integer >= 1 (tree hops)", hint="The authors used 5.")
    check_neighbors(owner, neighbors, allow_none=False)
    return {"graph": graph, "radius": radius, "neighbors": neighbors}


def neighborhood_contrast_loss(
    student: Tensor,
    teacher: Tensor,
    *,
    graph: str = "mst",
    radius: int = 5,
    neighbors: int = 8,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Squared error of the Neighbourhood Affinity Contrast (NAC), both networks on the instructor's neighbourhoods.

    For one point set of ``n`` points, with ``Q = max(||x_i - x_j||^2, 0)`` per network (no eps) and the
    instructor's mask ``M`` (``"mst"``: ``1 <= hops(i, j) <= radius`` on the minimum spanning tree of ``D_t``, edges
    ordered by ``(D_t, min(i, j), max(i, j))``; ``"knn"``: ``j`` among the instructor's ``min(neighbors, n - 1)``
    nearest):

    .. math::
        NAC[i] = \frac{\sum_j M_{ij} Q_{ij}}{\max(S_i, 10^{-12})},\quad S_i = \sum_{j \ne i} Q_{ij},\qquad
        L = \frac{1}{n} \sum_i (NAC_s[i] - NAC_t[i])^2

    Gradient (computed by hand, block by block, in the forward pass): with ``g_i = 2 (NAC_s[i] - NAC_t[i]) / n``,
    ``dNAC_i/dQ_ij = (M_ij - NAC_i) / S_i`` where ``S_i >= 1e-12`` and ``M_ij / 1e-12`` elsewhere (torch's
    ``clamp_min`` rule), times ``[Q_ij >= 0]`` for the clamp of ``Q``; ``dL/dQ_ij = g_i dNAC_i/dQ_ij`` goes to the
    points through ``dQ_ij/dx_i = 2 (x_i - x_j)``. NAC is a ratio of squared distances: no scale term. The kernel
    centres each set (``Q`` is translation invariant) and divides an overflowing set by a power of two (NAC is scale
    invariant, the ``1e-12`` floor aside, which only matters for sets with ``S_i`` near 0).

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map (detached).
        graph: the instructor's graph, ``"mst"`` (the authors') or ``"knn"`` (an ablation).
        radius: tree hops kept by ``"mst"``, an integer >= 1.
        neighbors: neighbourhood size of ``"knn"`` (an integer; ``k = min(neighbors, n - 1)``).
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.
        chunk_size: distance-matrix rows materialised at once (memory bound, see ``docs/performance.md``);
            ``None`` picks blocks of about 2**18 distances. The result does not depend on it. The ``"mst"`` tree
            needs one set's full ``(n, n)`` distances, whatever ``chunk_size`` is.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "neighborhood_contrast_loss"
    knobs = _check_knobs(owner, graph=graph, radius=radius, neighbors=neighbors)
    return geometric_loss(owner, partial(_NeighborhoodContrast, **knobs), student, teacher, max_points=max_points,
                          scope=scope, reduction=reduction, generator=generator, chunk_size=chunk_size)


@register_mid_level_loss
class GeoKTNeighborhoodContrastLoss(GeoKTLoss):
    """Neighbourhood Affinity Contrast: the student's share of squared distances in the instructor's neighbourhoods.

    The math is in :func:`geokt_plugin.functional.neighborhood_contrast_loss` and docs/losses.md. The formulation is
    the one two of the 2021 paper's authors published later with Tsourounis and Zois (arXiv 2308.01136, 2023), as we
    read it from their public code (github.com/dimTsourounis/FKD): a minimum spanning tree of the instructor's local
    features, neighbours within ``radius`` hops, and the squared error of the two networks' NAC. It is not an
    equation of Theodorakopoulos, Fotopoulou and Economou, `Geometric Regularization of Local Activations for
    Knowledge Transfer in Convolutional Neural Networks <https://doi.org/10.3390/info12080333>`_, Information
    12(8):333, 2021. Here both sides are computed every step (theirs: the instructor side offline), and the value is
    a mean over points, so their weights do not carry over; the loss is small (about 1e-4 to 1e-2) and its useful
    weights are large (hundreds to thousands).

    Shape:
        student ``(B, Cs, Hs, Ws)``, teacher ``(B, Ct, Ht, Wt)``; output: scalar, or ``(B,)`` / ``(1,)`` with
        ``reduction="none"``.

    Example YAML sub-term::

        nac_layer2:
          criterion:
            key: 'GeoKTNeighborhoodContrastLoss'
            kwargs: {student_module_path: 'layer2', teacher_module_path: 'layer2', graph: 'mst', radius: 5}
          weight: 1000.0
    """

    function = staticmethod(neighborhood_contrast_loss)
    check_knobs = staticmethod(_check_knobs)
