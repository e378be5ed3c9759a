"""Geometric agreement: the overlap of the k-nearest-neighbour sets of two networks' local features.

Pure tensor math; the positions of the two maps are aligned by :func:`geokt_plugin.losses.geometry.point_sets`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..losses.checks import check_generator, check_int, check_max_points
from ..losses.geometry import point_sets

__all__ = ["AGREEMENT_PREFIX", "knn_agreement", "knn_sets"]

AGREEMENT_PREFIX = "agree/"  # metrics.csv column of a layer's agreement: ``agree/<layer>``

_OWNER = "knn_agreement"
_BLOCK_ELEMENTS = 1 << 22  # distance-matrix entries materialised at once (sets x n x n)


def knn_agreement(
    student: Tensor,
    instructor: Tensor,
    *,
    k: int = 8,
    max_points: int | None = 128,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Mean overlap of the ``k``-nearest-neighbour sets of the student's and the instructor's local features.

    The maps are aligned as the losses align them (``point_sets``, scope ``"image"``: the larger map is average-pooled
    to the smaller size, then up to ``max_points`` positions are sampled, the same for both maps and every image).
    Image ``b`` then gives point sets :math:`s^b_1..s^b_n` and :math:`t^b_1..t^b_n`, and

    .. math::

        A = \frac{1}{B\,n\,k} \sum_{b=1}^{B} \sum_{i=1}^{n} \left| N_k(s^b, i) \cap N_k(t^b, i) \right|,

    where :math:`N_k(x, i)` holds the indices of the ``k`` points nearest to :math:`x_i` in Euclidean distance,
    :math:`i` itself excluded, equal distances ordered by index (the result is deterministic). ``A`` lies in
    ``[0, 1]``; it is 1 when the student's points are the instructor's up to a rotation, a positive scale and a
    translation, and ``k / (n - 1)`` in expectation for independent maps. No gradient flows.

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        instructor: ``(B, Ct, Ht, Wt)`` instructor feature map.
        k: neighbours per point, ``1 <= k < n`` (``n``: points per image after alignment and sampling).
        max_points: sample this many positions when there are more (``None``: all of them).
        generator: random generator of that sampling (seed it for the same positions on every call).

    Returns:
        A 0-dim float64 tensor on the maps' device.

    Raises:
        ValueError: ``k`` out of range, a map not 4-D, different batch sizes (each message names the argument).
        TypeError: a non-integer ``k``, a non-tensor map.
    """
    check_int(_OWNER, "k", k, minimum=1, allowed="an integer >= 1", hint="Use a positive neighbourhood size.")
    check_max_points(_OWNER, max_points)
    check_generator(_OWNER, generator)
    _check_maps(student, instructor)
    H, W = min(student.shape[2], instructor.shape[2]), min(student.shape[3], instructor.shape[3])
    n = H * W if max_points is None else min(H * W, max_points)
    if k >= n:
        raise ValueError(f"{_OWNER}: k must be smaller than the {n} points per image, got k={k} (student "
                         f"{tuple(student.shape)} and instructor {tuple(instructor.shape)} align to {H}x{W} positions, "
                         f"max_points={max_points}). Use k <= {n - 1}, or a layer with a larger map.")
    with torch.no_grad():
        s, t = point_sets(student.detach(), instructor.detach(), max_points=max_points, scope="image",
                          generator=generator, owner=_OWNER)
        shared = torch.zeros((), dtype=torch.int64, device=s.device)
        step = max(1, _BLOCK_ELEMENTS // (n * n))
        for start in range(0, s.shape[0], step):
            ns = knn_sets(s[start:start + step], k)
            nt = knn_sets(t[start:start + step], k)
            member = torch.zeros(ns.shape[0], n, n, dtype=torch.bool, device=s.device).scatter_(-1, ns, True)
            shared += member.gather(-1, nt).sum()
        return shared.to(torch.float64) / (s.shape[0] * n * k)


def knn_sets(points: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` nearest other points of every point, in Euclidean distance, ties ordered by index.

    Args:
        points: ``(S, n, C)`` point sets, ``k < n``.
        k: neighbours per point.

    Returns:
        ``(S, n, k)`` indices, nearest first.
    """
    # Distances from differences (not the |x|^2 + |y|^2 - 2<x, y> expansion): equal points give exactly equal
    # distances, so ties are real ties and the stable sort orders them by index.
    d = torch.cdist(points, points, compute_mode="donot_use_mm_for_euclid_dist")
    d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    return d.sort(dim=-1, stable=True).indices[..., :k]


def _check_maps(student: object, instructor: object) -> None:
    for name, x in (("student", student), ("instructor", instructor)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{_OWNER}: {name} must be a torch.Tensor feature map, got {type(x).__name__}.")
        if x.dim() != 4:
            raise ValueError(f"{_OWNER}: {name} must be a 4-D feature map (B, C, H, W), got shape {tuple(x.shape)}. "
                             "Hook a convolutional layer's output, not a pooled or flattened one.")
    if student.shape[0] != instructor.shape[0]:
        raise ValueError(f"{_OWNER}: student and instructor batch sizes differ, student {tuple(student.shape)} vs "
                         f"instructor {tuple(instructor.shape)}. Both networks must see the same images.")
