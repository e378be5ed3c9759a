"""Shared geometry: aligned point sets from two feature maps, distances, rescaling, kNN, reduction.

Definitions are those of docs/losses.md ("Inputs and shared geometry").
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .checks import check_feature_maps

__all__ = [
    "AUTO_BLOCK_ENTRIES",
    "DIST_EPS",
    "SCALE_EPS",
    "knn",
    "normalized_distances",
    "pairwise_sq_distances",
    "point_sets",
    "reduce",
    "rescale_overflowing",
]

AUTO_BLOCK_ENTRIES = 1 << 18  # distances per network in one block when chunk_size is None: 1 MiB per fp32 matrix
DIST_EPS = 1e-12  # added under the square root: finite gradients at coincident points
SCALE_EPS = 1e-12  # floor of the mean distance: finite values for collapsed point sets


def point_sets(
    student: Tensor,
    teacher: Tensor,
    *,
    max_points: int | None = None,
    scope: str = "image",
    generator: torch.Generator | None = None,
    owner: str = "geokt_plugin.functional",
) -> tuple[Tensor, Tensor]:
    """Turn two feature maps into aligned point sets, as docs/losses.md ("Inputs") defines.

    Steps: check shapes; pool the larger map to ``(min(Hs, Ht), min(Ws, Wt))``; upcast to float32 (float64 if
    either input is float64); detach the teacher; flatten positions to points; optionally sample ``max_points``
    positions (the same for every image and both networks); group by ``scope``.

    Args:
        student: ``(B, Cs, Hs, Ws)`` student feature map.
        teacher: ``(B, Ct, Ht, Wt)`` instructor feature map.
        max_points: sample this many positions when ``H*W`` exceeds it.
        scope: ``"image"`` (one set per image) or ``"batch"`` (one set of all ``B*H*W`` points).
        generator: random generator used by the sampling.
        owner: name used in error messages.

    Returns:
        ``(S, n, Cs)`` student points and ``(S, n, Ct)`` detached teacher points, with ``S = B`` for
        ``"image"`` and ``S = 1`` for ``"batch"``.
    """
    check_feature_maps(owner, student, teacher, scope=scope)
    H = min(student.shape[2], teacher.shape[2])
    W = min(student.shape[3], teacher.shape[3])
    dtype = torch.float64 if torch.float64 in (student.dtype, teacher.dtype) else torch.float32
    s = student.to(dtype)
    t = teacher.detach().to(dtype)
    if s.shape[2:] != (H, W):
        s = F.adaptive_avg_pool2d(s, (H, W))
    if t.shape[2:] != (H, W):
        t = F.adaptive_avg_pool2d(t, (H, W))
    s, t = s.flatten(2), t.flatten(2)  # (B, C, N); point n is position (n // W, n % W)
    N = H * W
    if max_points is not None and N > max_points:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randperm(N, generator=generator, device=gen_device)[:max_points].to(s.device)
        # gather on the (B, C, N) layout: measured 6x faster than index_select on CPU (forward), 2x with backward
        s = s.gather(2, idx.view(1, 1, -1).expand(s.shape[0], s.shape[1], -1))
        t = t.gather(2, idx.view(1, 1, -1).expand(t.shape[0], t.shape[1], -1))
    s, t = s.transpose(1, 2), t.transpose(1, 2)  # (B, N, C)
    if scope == "batch":
        s = s.reshape(1, -1, s.shape[-1])
        t = t.reshape(1, -1, t.shape[-1])
    return s, t


def pairwise_sq_distances(points: Tensor) -> Tensor:
    """Squared Euclidean distances within each point set.

    ``Q[i, j] = ||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>``, clamped at 0 (the expansion can round below zero).

    Args:
        points: ``(S, n, C)`` point sets.

    Returns:
        ``(S, n, n)`` squared distances; the diagonal is not meaningful and callers mask it.
    """
    sq_norms = points.pow(2).sum(-1)
    gram = torch.bmm(points, points.transpose(1, 2))
    return (sq_norms.unsqueeze(2) + sq_norms.unsqueeze(1) - 2.0 * gram).clamp_min(0.0)


def normalized_distances(points: Tensor) -> Tensor:
    """Distances divided by their mean over ``i != j`` in each set.

    ``D = sqrt(Q + 1e-12)``, ``s = mean_{i != j} D[i, j]``, ``Dn = D / max(s, 1e-12)``.

    Args:
        points: ``(S, n, C)`` point sets with ``n >= 2``.

    Returns:
        ``(S, n, n)`` normalised distances. The diagonal holds ``sqrt(1e-12) / s`` and must be masked.
    """
    n = points.shape[1]
    points = rescale_overflowing(points)
    dist = (pairwise_sq_distances(points) + DIST_EPS).sqrt()
    off_diag_sum = dist.sum((1, 2)) - dist.diagonal(dim1=1, dim2=2).sum(-1)
    scale = (off_diag_sum / (n * (n - 1))).clamp_min(SCALE_EPS)
    return dist / scale[:, None, None]


def rescale_overflowing(points: Tensor, peak: Tensor | None = None) -> Tensor:
    """Divide a set by an exact power of two when ``||x||^2`` would overflow its dtype, else leave it unchanged.

    ``Q`` expands to sums of ``C`` squares, so a float32 set with entries near 1e19 gives ``inf - inf = nan``.
    ``Dn`` does not depend on the scale of a set (up to the ``1e-12`` under the root, negligible at these
    magnitudes), so such sets are brought near 1 first. Every other set is multiplied by exactly 1.
    ``peak``: each set's largest ``|x|``, when the caller has it already.
    """
    C = points.shape[-1]
    limit = math.sqrt(torch.finfo(points.dtype).max / (4 * C)) / 4
    if peak is None:
        peak = points.detach().abs().amax(dim=(1, 2))
    if not bool((peak > limit).any()):
        return points  # the usual case: no copy
    exponent = torch.where(peak > limit, torch.ceil(torch.log2(peak)), torch.zeros_like(peak))
    return points * torch.exp2(-exponent)[:, None, None]


def knn(d: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` smallest entries of each row of ``d`` (``(b, r, n)``, >= 0, diagonal already ``+inf``).

    CPU ``topk`` costs about as much per row as a dozen elementwise passes, so it runs on integer keys (the bit
    patterns of non-negative floats sort like the floats, and integer compares are cheaper) and long rows (up to 512
    columns) go in two exact stages: rows are cut into groups of ``g`` columns; the ``k`` groups with the smallest
    minima hold every one of the ``k`` smallest entries (a group holding one of them has a minimum no larger than the
    k-th smallest value), and a second ``topk`` picks among those ``k * g`` candidates. Ties may be broken
    differently from a single ``topk``; docs/losses.md does not order ties.
    """
    b, r, n = d.shape
    keys = d.contiguous().view(torch.int32 if d.dtype == torch.float32 else torch.int64) if d.is_floating_point() \
        and d.dtype in (torch.float32, torch.float64) else d
    g = 8 if n >= 32 * k else 4
    if n % g or n < 4 * k * g or n > 512:  # longer rows: one topk measured faster (benchmarks/bench_knn.py)
        return keys.topk(k, dim=-1, largest=False, sorted=False).indices
    rows = b * r
    groups = keys.view(rows * (n // g), g)
    best = keys.view(rows, n // g, g).amin(-1).topk(k, dim=-1, largest=False, sorted=False).indices  # (rows, k)
    flat = (best + torch.arange(0, rows * (n // g), n // g, device=d.device).unsqueeze(1)).view(-1)
    pick = groups.index_select(0, flat).view(rows, k * g).topk(k, dim=-1, largest=False, sorted=False).indices
    shift = g.bit_length() - 1  # g is a power of two: shifts and masks instead of int64 division
    return ((best.gather(1, pick >> shift) << shift) | (pick & (g - 1))).view(b, r, k)


def reduce(per_set: Tensor, reduction: str) -> Tensor:
    """``"mean"`` or ``"sum"`` of the per-set values, or the values themselves with ``"none"``."""
    if reduction == "mean":
        return per_set.mean()
    if reduction == "sum":
        return per_set.sum()
    return per_set
