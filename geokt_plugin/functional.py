"""Pure tensor math of the geometric local-activation losses.

The normative definition is ``shared/spec/geometric-losses.md`` (mirrored in ``docs/losses.md``). It is this
project's precise formulation of what Theodorakopoulos, Fotopoulou and Economou describe in "Geometric
Regularization of Local Activations for Knowledge Transfer in Convolutional Neural Networks" (Information
12(8):333, 2021); it is not the paper's own equations, which we could not read.

Every loss compares two feature maps, the student's ``(B, Cs, Hs, Ws)`` and the instructor's ``(B, Ct, Ht, Wt)``.
Each spatial position is a *local feature* (a point in channel space); the losses compare the neighbourhood
geometry of those points, so ``Cs`` and ``Ct`` are free.

This module imports nothing from the package and knows nothing about torchdistill.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "REDUCTIONS",
    "SCOPES",
    "local_distance_loss",
    "neighbor_kl_loss",
    "neighbor_rank_loss",
    "normalized_distances",
    "pairwise_sq_distances",
    "point_sets",
]

REDUCTIONS = ("mean", "sum", "none")
SCOPES = ("image", "batch")

_DIST_EPS = 1e-12  # added under the square root: finite gradients at coincident points
_SCALE_EPS = 1e-12  # floor of the mean distance: finite values for collapsed point sets


# ----------------------------------------------------------------------------------------------------------------
# Validation of the knobs (shared with the registered modules, which call these at construction time).
# ----------------------------------------------------------------------------------------------------------------


def check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Unknown {name} {value!r} for {owner}; choose one of {list(choices)}.")


def check_neighbors(owner: str, neighbors: object, *, allow_none: bool) -> None:
    """Raise unless ``neighbors`` is an integer >= 1 (or ``None`` when allowed)."""
    if neighbors is None and allow_none:
        return
    if isinstance(neighbors, bool) or not isinstance(neighbors, int):
        allowed = "an integer >= 1 or None" if allow_none else "an integer >= 1"
        raise TypeError(f"{owner}: neighbors must be {allowed}, got {neighbors!r} ({type(neighbors).__name__}).")
    if neighbors < 1:
        raise ValueError(f"{owner}: neighbors must be >= 1, got {neighbors}. Use a positive neighbourhood size.")


def check_positive(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a positive number, got {value!r} ({type(value).__name__}).")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value}.")


def check_max_points(owner: str, max_points: object) -> None:
    """Raise unless ``max_points`` is ``None`` or an integer >= 2."""
    if max_points is None:
        return
    if isinstance(max_points, bool) or not isinstance(max_points, int):
        raise TypeError(
            f"{owner}: max_points must be None or an integer >= 2, got {max_points!r} ({type(max_points).__name__})."
        )
    if max_points < 2:
        raise ValueError(
            f"{owner}: max_points must be None or an integer >= 2, got {max_points}. "
            "A point set needs at least 2 local features."
        )


def check_generator(owner: str, generator: object) -> None:
    """Raise unless ``generator`` is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be None or a torch.Generator, got {type(generator).__name__}.")


def check_common(
    owner: str, *, max_points: object, scope: object, reduction: object, generator: object = None
) -> None:
    """Validate the knobs every loss shares: ``max_points``, ``scope``, ``reduction``, ``generator``."""
    check_max_points(owner, max_points)
    check_choice(owner, "scope", scope, SCOPES)
    check_choice(owner, "reduction", reduction, REDUCTIONS)
    check_generator(owner, generator)


# ----------------------------------------------------------------------------------------------------------------
# Shared geometry.
# ----------------------------------------------------------------------------------------------------------------


def point_sets(
    student: Tensor,
    teacher: Tensor,
    *,
    max_points: int | None = None,
    scope: str = "image",
    generator: torch.Generator | None = None,
    owner: str = "geokt_plugin.functional",
) -> tuple[Tensor, Tensor]:
    """Turn two feature maps into aligned point sets, as the spec's "Inputs" section defines.

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
    for role, x in (("student", student), ("teacher", teacher)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{owner}: the {role} feature map must be a torch.Tensor, got {type(x).__name__}.")
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(
            f"{owner}: expected 4-D feature maps (B, C, H, W), got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}. Hook a convolutional layer's output, not a pooled or flattened one."
        )
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{owner}: batch sizes differ, student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}. "
            "Both networks must see the same batch."
        )
    if not (student.is_floating_point() and teacher.is_floating_point()):
        raise TypeError(
            f"{owner}: feature maps must be floating point, got student {student.dtype} and teacher {teacher.dtype}."
        )
    B = student.shape[0]
    H = min(student.shape[2], teacher.shape[2])
    W = min(student.shape[3], teacher.shape[3])
    n_points = H * W if scope == "image" else B * H * W
    if n_points < 2:
        raise ValueError(
            f"{owner}: a point set needs at least 2 local features, but student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)} align to {H}x{W} positions (scope={scope!r}, batch {B}). Hook an earlier layer "
            "with a larger feature map, or use scope 'batch'."
        )
    dtype = torch.float64 if torch.float64 in (student.dtype, teacher.dtype) else torch.float32
    s = student.to(dtype)
    t = teacher.detach().to(dtype)
    if s.shape[2:] != (H, W):
        s = F.adaptive_avg_pool2d(s, (H, W))
    if t.shape[2:] != (H, W):
        t = F.adaptive_avg_pool2d(t, (H, W))
    s = s.flatten(2).transpose(1, 2)  # (B, N, Cs); point n is position (n // W, n % W)
    t = t.flatten(2).transpose(1, 2)
    N = H * W
    if max_points is not None and N > max_points:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randperm(N, generator=generator, device=gen_device)[:max_points].to(s.device)
        s = s.index_select(1, idx)
        t = t.index_select(1, idx)
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
    points = _rescale_overflowing(points)
    dist = (pairwise_sq_distances(points) + _DIST_EPS).sqrt()
    off_diag_sum = dist.sum((1, 2)) - dist.diagonal(dim1=1, dim2=2).sum(-1)
    scale = (off_diag_sum / (n * (n - 1))).clamp_min(_SCALE_EPS)
    return dist / scale[:, None, None]


def _rescale_overflowing(points: Tensor) -> Tensor:
    """Divide a set by an exact power of two when ``||x||^2`` would overflow its dtype, else leave it unchanged.

    ``Q`` expands to sums of ``C`` squares, so a float32 set with entries near 1e19 gives ``inf - inf = nan``.
    ``Dn`` does not depend on the scale of a set (up to the ``1e-12`` under the root, negligible at these
    magnitudes), so such sets are brought near 1 first. Every other set is multiplied by exactly 1.
    """
    C = points.shape[-1]
    limit = math.sqrt(torch.finfo(points.dtype).max / (4 * C)) / 4
    peak = points.detach().abs().amax(dim=(1, 2))
    if not bool((peak > limit).any()):
        return points  # the usual case: no copy
    exponent = torch.where(peak > limit, torch.ceil(torch.log2(peak)), torch.zeros_like(peak))
    return points * torch.exp2(-exponent)[:, None, None]


def _reduce(per_set: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return per_set.mean()
    if reduction == "sum":
        return per_set.sum()
    return per_set


# ----------------------------------------------------------------------------------------------------------------
# Fused, memory-bounded evaluation.
#
# Autograd over the dense (n, n) pipeline keeps several n x n intermediates per network until backward (a 32x32
# stage at batch 128 holds 512 MiB per matrix). Instead, ``_FusedSetLoss`` computes each set's value *and* its
# exact gradient w.r.t. the student points in the forward pass, walking the distance matrices in row blocks, and
# saves only that gradient (the size of the student points) for backward. Nothing is recomputed in backward; peak
# extra memory is a few matrices of one block, bounded by ``chunk_size``. The gradient is the derivative of exactly
# the forward computation below (same expansion, same clamp, same eps), derived by hand:
#
#   Q_ij = |x_i|^2 + |x_j|^2 - 2 <x_i, x_j>,  A = max(Q, 0) + eps,  D = sqrt(A),  s = mean_{i != j} D.
#   dQ_ij/dx_i = 2 (x_i - x_j),  dQ_ij/dx_j = 2 (x_j - x_i);  dD/dQ = [Q >= 0] / (2 D)  (torch's clamp_min rule).
#   With C = dL/dQ on a row block:  grad[rows] += 2 (rowsum(C) x_rows - C X),  grad += 2 (colsum(C) X - C^T x_rows).
#   ds/dx_i = 2 / (n (n - 1)) * sum_j W_ij (x_i - x_j) with W = [Q >= 0] / D off the diagonal (W is symmetric).
#   dL/ds is only known once every block is done, so grad = direct part + dL/ds * ds/dx at the end.
# ----------------------------------------------------------------------------------------------------------------

_AUTO_BLOCK_ENTRIES = 1 << 18  # distance entries per block when chunk_size is None: 1 MiB per fp32 matrix


def check_chunk_size(owner: str, chunk_size: object) -> None:
    """Raise unless ``chunk_size`` is ``None`` or an integer >= 1."""
    if chunk_size is None:
        return
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int):
        raise TypeError(
            f"{owner}: chunk_size must be None (automatic) or an integer >= 1 (distance-matrix rows per block), "
            f"got {chunk_size!r} ({type(chunk_size).__name__})."
        )
    if chunk_size < 1:
        raise ValueError(
            f"{owner}: chunk_size must be None (automatic) or an integer >= 1, got {chunk_size}. It is the number of "
            "distance-matrix rows materialised at once; smaller values use less memory."
        )


def _row_blocks(num_sets: int, n: int, chunk_size: int | None) -> list[tuple[slice, slice]]:
    """Cover the ``num_sets * n`` rows by blocks ``(sets, rows)`` of at most ``max(chunk_size, n)`` rows.

    ``chunk_size >= n`` groups ``chunk_size // n`` whole sets per block; a smaller one splits each set's rows.
    ``None`` picks the rows so that one block holds about ``_AUTO_BLOCK_ENTRIES`` distances.
    """
    rows = chunk_size if chunk_size is not None else max(1, _AUTO_BLOCK_ENTRIES // n)
    if rows >= n:
        per = rows // n
        return [(slice(a, min(a + per, num_sets)), slice(0, n)) for a in range(0, num_sets, per)]
    return [(slice(a, a + 1), slice(r, min(r + rows, n))) for a in range(num_sets) for r in range(0, n, rows)]


def _augment(points: Tensor) -> tuple[Tensor, Tensor]:
    """``(points, squared norms)``: what ``_block_sq`` needs, without copying the points."""
    return points, points.pow(2).sum(-1)


def _block_sq(aug: tuple[Tensor, Tensor], sets: slice, rows: slice) -> Tensor:
    """Unclamped squared distances ``(b, r, n)`` of a row block to every point of its sets: one fused bmm."""
    x, sq = aug
    q = torch.baddbmm(sq[sets, rows].unsqueeze(2), x[sets, rows], x[sets].transpose(1, 2), alpha=-2.0)
    return q.add_(sq[sets].unsqueeze(1))


def _block_diag(m: Tensor, rows: slice) -> Tensor:
    """View of the entries ``(i, i)`` of a row block starting at set-local row ``rows.start``."""
    return m.diagonal(offset=rows.start, dim1=1, dim2=2)


def _block_distances(aug: tuple[Tensor, Tensor], sets: slice, rows: slice) -> Tensor:
    """``D = sqrt(max(Q, 0) + eps)`` of a row block, with the diagonal set to 0."""
    d = _block_sq(aug, sets, rows).clamp_min_(0.0).add_(_DIST_EPS).sqrt_()
    _block_diag(d, rows).zero_()
    return d


def _scales(aug: tuple[Tensor, Tensor], blocks: list[tuple[slice, slice]], num_sets: int, n: int) -> Tensor:
    """``s = max(mean_{i != j} D, 1e-12)`` per set, accumulated block by block."""
    total = aug[1].new_zeros(num_sets)
    for sets, rows in blocks:
        total[sets] += _block_distances(aug, sets, rows).sum((1, 2))
    return (total / (n * (n - 1))).clamp_min(_SCALE_EPS)


def _knn(d: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` smallest entries of each row of ``d`` (``(b, r, n)``, >= 0, diagonal already ``+inf``).

    CPU ``topk`` costs about as much per row as a dozen elementwise passes, so it runs on integer keys (the bit
    patterns of non-negative floats sort like the floats, and integer compares are cheaper) and long rows go in two
    exact stages: rows are cut into groups of ``g`` columns; the ``k`` groups with the smallest minima hold every
    one of the ``k`` smallest entries (a group holding one of them has a minimum no larger than the k-th smallest
    value), and a second ``topk`` picks among those ``k * g`` candidates. Ties may be broken differently from a
    single ``topk``; the spec does not order ties.
    """
    b, r, n = d.shape
    keys = d.contiguous().view(torch.int32 if d.dtype == torch.float32 else torch.int64) if d.is_floating_point() \
        and d.dtype in (torch.float32, torch.float64) else d
    g = 8 if n >= 32 * k else 4
    if n % g or n < 4 * k * g:
        return keys.topk(k, dim=-1, largest=False, sorted=False).indices
    rows = b * r
    groups = keys.view(rows * (n // g), g)
    best = keys.view(rows, n // g, g).amin(-1).topk(k, dim=-1, largest=False, sorted=False).indices  # (rows, k)
    flat = (best + torch.arange(0, rows * (n // g), n // g, device=d.device).unsqueeze(1)).view(-1)
    pick = groups.index_select(0, flat).view(rows, k * g).topk(k, dim=-1, largest=False, sorted=False).indices
    shift = g.bit_length() - 1  # g is a power of two: shifts and masks instead of int64 division
    return ((best.gather(1, pick >> shift) << shift) | (pick & (g - 1))).view(b, r, k)


def _add_pair_grad(grad: Tensor, x: Tensor, sets: slice, rows: slice, c: Tensor) -> None:
    """``grad += d/dx sum_ij c_ij Q_ij`` for a row block (``c``: ``(b, r, n)``, zero diagonal, any symmetry)."""
    x_rows, x_all = x[sets, rows], x[sets]
    grad[sets, rows] += 2.0 * (c.sum(2, keepdim=True) * x_rows - torch.bmm(c, x_all))
    grad[sets] += 2.0 * (c.sum(1).unsqueeze(-1) * x_all - torch.bmm(c.transpose(1, 2), x_rows))


def _add_scale_grad(vdir: Tensor, x: Tensor, sets: slice, rows: slice, w: Tensor, n: int) -> None:
    """``vdir[rows] += ds/dx_rows`` given ``w = [Q >= 0] / D`` on the block (zero diagonal)."""
    x_rows, x_all = x[sets, rows], x[sets]
    vdir[sets, rows] += (2.0 / (n * (n - 1))) * (w.sum(2, keepdim=True) * x_rows - torch.bmm(w, x_all))


def _inv_distances(d: Tensor, negative: Tensor, rows: slice) -> Tensor:
    """``W = [Q >= 0] / D`` with a zero diagonal (``d`` has a zero diagonal, so its reciprocal is inf there)."""
    w = d.reciprocal().masked_fill_(negative, 0.0)
    _block_diag(w, rows).zero_()
    return w


def _huber_parts(u: Tensor) -> tuple[Tensor, Tensor]:
    """``(huber(u), huber'(u))`` with delta 1: ``h' = clamp(u, -1, 1)`` and ``huber = h' (u - h'/2)``."""
    hp = u.clamp(-1.0, 1.0)
    return hp * (u - 0.5 * hp), hp


def _distance_knn_sets(
    s: Tensor, t: Tensor, k: int, blocks: list[tuple[slice, slice]], need_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """``local_distance_loss`` per set on the instructor's kNN graph; one pass over the blocks."""
    S, n, _ = s.shape
    aug_s, aug_t = _augment(s), _augment(t)
    sum_s, sum_t = s.new_zeros(S), s.new_zeros(S)
    idx = torch.empty(S, n, k, dtype=torch.long, device=s.device)
    d_s_nb, d_t_nb = s.new_empty(S, n, k), s.new_empty(S, n, k)
    neg_nb = torch.empty(S, n, k, dtype=torch.bool, device=s.device)
    vdir = torch.zeros_like(s) if need_grad else None
    for sets, rows in blocks:
        d_t = _block_distances(aug_t, sets, rows)
        sum_t[sets] += d_t.sum((1, 2))
        _block_diag(d_t, rows).fill_(float("inf"))
        nb = _knn(d_t, k)
        idx[sets, rows] = nb
        d_t_nb[sets, rows] = d_t.gather(2, nb)
        del d_t
        q_s = _block_sq(aug_s, sets, rows)
        negative = q_s < 0 if need_grad else None
        neg_nb[sets, rows] = q_s.gather(2, nb) < 0
        d_s = q_s.clamp_min_(0.0).add_(_DIST_EPS).sqrt_()
        _block_diag(d_s, rows).zero_()
        sum_s[sets] += d_s.sum((1, 2))
        d_s_nb[sets, rows] = d_s.gather(2, nb)
        if need_grad:
            _add_scale_grad(vdir, s, sets, rows, _inv_distances(d_s, negative, rows), n)
    scale_s = (sum_s / (n * (n - 1))).clamp_min(_SCALE_EPS)[:, None, None]
    scale_t = (sum_t / (n * (n - 1))).clamp_min(_SCALE_EPS)[:, None, None]
    err, hp = _huber_parts(d_s_nb / scale_s - d_t_nb / scale_t)
    value = err.sum((1, 2)) / (n * k)
    if not need_grad:
        return value, None
    # dL/dD at the k neighbours, then dL/dQ = dL/dD [Q >= 0] / (2 D); the scale's share is added through vdir.
    dscale = -(hp * d_s_nb).sum((1, 2)) / (n * k) / scale_s.view(-1).pow(2)
    c_nb = (hp / (scale_s * (n * k) * 2.0 * d_s_nb)).masked_fill_(neg_nb, 0.0)
    grad = torch.zeros_like(s)
    for sets, rows in blocks:  # scatter the k weights of each row into a dense block: two bmm beat gathers
        b, r = sets.stop - sets.start, rows.stop - rows.start
        c = s.new_zeros(b, r, n).scatter_(2, idx[sets, rows], c_nb[sets, rows])
        _add_pair_grad(grad, s, sets, rows, c)
    return value, grad.add_(dscale[:, None, None] * vdir)


def _dense_sets(
    kind: str, s: Tensor, t: Tensor, knobs: dict[str, Any], blocks: list[tuple[slice, slice]], need_grad: bool
) -> tuple[Tensor, Tensor | None]:
    """The losses that need every pair: distance with ``neighbors=None``, KL, rank. Scales first, then one pass."""
    S, n, _ = s.shape
    aug_s, aug_t = _augment(s), _augment(t)
    scale_s = _scales(aug_s, blocks, S, n)
    # The rank loss uses the instructor only through its kNN, which does not depend on its scale.
    scale_t = _scales(aug_t, blocks, S, n) if kind != "rank" else scale_s
    value, dscale = s.new_zeros(S), s.new_zeros(S)
    grad = torch.zeros_like(s) if need_grad else None
    vdir = torch.zeros_like(s) if need_grad else None
    neg_inf = float("-inf")
    for sets, rows in blocks:
        sc_s, sc_t = scale_s[sets, None, None], scale_t[sets, None, None]
        q_s = _block_sq(aug_s, sets, rows)
        negative = q_s < 0 if need_grad else None
        a_s = q_s.clamp_min_(0.0).add_(_DIST_EPS)  # A = D^2
        q_t = _block_sq(aug_t, sets, rows)
        a_t = q_t.clamp_min_(0.0).add_(_DIST_EPS)
        if kind == "kl":
            bw = knobs["bandwidth"]
            d_s = a_s.sqrt() if need_grad else None
            logit_s = a_s.mul_(-1.0 / bw / sc_s.pow(2))
            _block_diag(logit_s, rows).fill_(neg_inf)
            logp_s = logit_s.log_softmax(-1)
            logit_t = a_t.mul_(-1.0 / bw / sc_t.pow(2))
            _block_diag(logit_t, rows).fill_(neg_inf)
            logp_t = logit_t.log_softmax(-1)
            del q_t, a_t, logit_t
            p_t = logp_t.exp()
            _block_diag(logp_s, rows).zero_()
            _block_diag(logp_t, rows).zero_()
            value[sets] += logp_t.sub_(logp_s).mul_(p_t).sum((1, 2)) / n
            del logp_t
            if need_grad:
                # dL/dlogit_s = (P_s - P_t) / n; logit = -A / (bw s^2) gives dL/dA and dL/ds.
                g = logp_s.exp_().sub_(p_t)
                del p_t
                _block_diag(g, rows).zero_()
                _block_diag(logit_s, rows).zero_()
                dscale[sets] += -2.0 / (n * sc_s.view(-1)) * (g * logit_s).sum((1, 2))
                del logit_s, q_s, a_s
                _add_pair_grad(grad, s, sets, rows, g.mul_(-1.0 / (n * bw) / sc_s.pow(2)).masked_fill_(negative, 0.0))
                _add_scale_grad(vdir, s, sets, rows, _inv_distances(d_s, negative, rows), n)
        elif kind == "rank":
            k, temp = knobs["k"], knobs["temperature"]
            _block_diag(a_t, rows).fill_(float("inf"))
            nb = _knn(a_t, k)  # sqrt is monotone: the kNN of A are those of D
            del a_t, q_t
            d_s = a_s.sqrt_()
            logit = d_s * (-1.0 / temp / sc_s)
            _block_diag(logit, rows).fill_(neg_inf)
            lse = logit.logsumexp(-1, keepdim=True)
            value[sets] += (lse.squeeze(-1) - logit.gather(2, nb).mean(-1) - math.log(k)).sum(-1) / n
            if need_grad:
                # dL/dlogit = (q - [j in K(i)] / k) / n with q = softmax(logit); logit = -D / (T s).
                g = logit.sub_(lse).exp_().scatter_add_(2, nb, torch.full_like(nb, -1.0 / k, dtype=s.dtype))
                dscale[sets] += (g * d_s).sum((1, 2)) / (n * temp) / sc_s.view(-1).pow(2)
                w = _inv_distances(d_s, negative, rows)
                _add_scale_grad(vdir, s, sets, rows, w, n)
                _add_pair_grad(grad, s, sets, rows, g.mul_(w).mul_(-0.5 / (n * temp) / sc_s))
        else:  # distance, every pair
            d_s, d_t = a_s.sqrt_(), a_t.sqrt_()
            u = d_s / sc_s - d_t.div_(sc_t)
            _block_diag(u, rows).zero_()
            del d_t, q_t, a_t
            err, hp = _huber_parts(u)
            value[sets] += err.sum((1, 2)) / (n * (n - 1))
            if need_grad:
                _block_diag(d_s, rows).zero_()
                dscale[sets] += -(hp * d_s).sum((1, 2)) / (n * (n - 1)) / sc_s.view(-1).pow(2)
                w = _inv_distances(d_s, negative, rows)
                _add_scale_grad(vdir, s, sets, rows, w, n)
                _add_pair_grad(grad, s, sets, rows, hp.mul_(w).mul_(0.5 / (n * (n - 1)) / sc_s))
    if need_grad:
        grad.add_(dscale[:, None, None] * vdir)
    return value, grad


class _FusedSetLoss(torch.autograd.Function):
    """Per-set values whose gradient w.r.t. the student points was computed in the forward pass."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, s: Tensor, t: Tensor, kind: str, knobs: dict[str, Any], chunk_size: int | None, need_grad: bool
    ) -> Tensor:
        blocks = _row_blocks(s.shape[0], s.shape[1], chunk_size)
        if kind == "distance" and knobs["k"] is not None:
            value, grad = _distance_knn_sets(s, t, knobs["k"], blocks, need_grad)
        else:
            value, grad = _dense_sets(kind, s, t, knobs, blocks, need_grad)
        if grad is not None:
            ctx.save_for_backward(grad)
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad_out[:, None, None] * grad, None, None, None, None, None


def _fused(s: Tensor, t: Tensor, kind: str, knobs: dict[str, Any], chunk_size: int | None) -> Tensor:
    """Per-set values of ``kind`` for point sets ``s`` (student) and ``t`` (detached instructor)."""
    # Distances do not depend on a common translation. Centring each set first keeps the expansion's cancellation
    # relative to the spread of the points rather than to their (often large, post-ReLU) norm, and makes identical
    # points give Q = 0 up to the square of the centring residue: constant maps get a zero gradient, not noise / s^2.
    s, t = _rescale_overflowing(s), _rescale_overflowing(t)
    s, t = s - s.mean(1, keepdim=True), t - t.mean(1, keepdim=True)
    need_grad = torch.is_grad_enabled() and s.requires_grad
    return _FusedSetLoss.apply(s, t, kind, knobs, chunk_size, need_grad)


def _geometric_loss(
    owner: str,
    per_set_fn: Callable[[Tensor, Tensor], Tensor],
    student: Tensor,
    teacher: Tensor,
    *,
    max_points: int | None,
    scope: str,
    reduction: str,
    generator: torch.Generator | None,
) -> Tensor:
    """Shared frame: validate, build point sets with autocast off, apply ``per_set_fn``, reduce."""
    check_common(owner, max_points=max_points, scope=scope, reduction=reduction, generator=generator)
    device_type = student.device.type if isinstance(student, Tensor) else "cpu"
    # Geometry must not run in fp16/bf16: the distance expansion cancels catastrophically at low precision.
    with torch.autocast(device_type=device_type, enabled=False):
        s, t = point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator, owner=owner)
        return _reduce(per_set_fn(s, t), reduction)


# ----------------------------------------------------------------------------------------------------------------
# The three losses.
# ----------------------------------------------------------------------------------------------------------------


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
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.
        chunk_size: distance-matrix rows materialised at once (memory bound, see ``docs/performance.md``);
            ``None`` picks blocks of about 2**18 distances. The result does not depend on it.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "local_distance_loss"
    check_neighbors(owner, neighbors, allow_none=True)
    check_chunk_size(owner, chunk_size)

    def per_set(s: Tensor, t: Tensor) -> Tensor:
        k = None if neighbors is None else min(neighbors, s.shape[1] - 1)
        return _fused(s, t, "distance", {"k": k}, chunk_size)

    return _geometric_loss(
        owner, per_set, student, teacher, max_points=max_points, scope=scope, reduction=reduction, generator=generator
    )


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
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.
        chunk_size: distance-matrix rows materialised at once (memory bound, see ``docs/performance.md``);
            ``None`` picks blocks of about 2**18 distances. The result does not depend on it.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "neighbor_kl_loss"
    check_positive(owner, "bandwidth", bandwidth)
    check_chunk_size(owner, chunk_size)

    def per_set(s: Tensor, t: Tensor) -> Tensor:
        return _fused(s, t, "kl", {"bandwidth": float(bandwidth)}, chunk_size)

    return _geometric_loss(
        owner, per_set, student, teacher, max_points=max_points, scope=scope, reduction=reduction, generator=generator
    )


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
        max_points: sample this many positions per image when ``H*W`` is larger.
        scope: ``"image"`` or ``"batch"``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` over the point sets.
        generator: random generator for the sampling.
        chunk_size: distance-matrix rows materialised at once (memory bound, see ``docs/performance.md``);
            ``None`` picks blocks of about 2**18 distances. The result does not depend on it.

    Returns:
        A scalar, or ``(B,)`` / ``(1,)`` per-set values with ``reduction="none"``.
    """
    owner = "neighbor_rank_loss"
    check_neighbors(owner, neighbors, allow_none=False)
    check_positive(owner, "temperature", temperature)
    check_chunk_size(owner, chunk_size)

    def per_set(s: Tensor, t: Tensor) -> Tensor:
        k = min(neighbors, s.shape[1] - 1)
        return _fused(s, t, "rank", {"k": k, "temperature": float(temperature)}, chunk_size)

    return _geometric_loss(
        owner, per_set, student, teacher, max_points=max_points, scope=scope, reduction=reduction, generator=generator
    )

