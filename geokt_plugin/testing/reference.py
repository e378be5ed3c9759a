"""Naive reference implementations of the geometric losses, written straight from docs/losses.md.

Everything here is plain Python over lists of floats (IEEE double), with explicit loops over point sets, points
and neighbours; nothing is imported from the rest of ``geokt_plugin``. It is slow on purpose and meant for tiny
inputs only (a few dozen points). Each function has the name of the loss it checks; its loss-specific knobs have
no defaults (callers pass ``LossSpec.knobs``), so the defaults live in one place, the loss function.

The only torch calls are ``Tensor.tolist()`` to read the inputs, ``torch.randperm`` for the sampling step
(docs/losses.md defines sampling as a ``randperm`` draw, so the same generator state must give the same
positions), and ``torch.tensor`` to hand back the result as a float64 tensor.
"""

from __future__ import annotations

import math

import torch

SQRT_EPS = 1e-12  # docs/losses.md: D = sqrt(Q + 1e-12)
SCALE_EPS = 1e-12  # docs/losses.md: Dn = D / max(s, 1e-12)

Point = list[float]


# ----------------------------------------------------------------------------------------------------------------
# Inputs: alignment, point sets, sampling, scope.
# ----------------------------------------------------------------------------------------------------------------


def adaptive_avg_pool(fmap: list[list[list[float]]], out_h: int, out_w: int) -> list[list[list[float]]]:
    """Adaptive average pooling of one ``(C, H, W)`` map, bin by bin.

    Output cell ``(oh, ow)`` averages rows ``floor(oh*H/out_h) .. ceil((oh+1)*H/out_h) - 1`` and the matching
    columns: the bins ``torch.nn.functional.adaptive_avg_pool2d`` documents.
    """
    in_h, in_w = len(fmap[0]), len(fmap[0][0])
    out = []
    for channel in fmap:
        rows = []
        for oh in range(out_h):
            h0, h1 = (oh * in_h) // out_h, -((-(oh + 1) * in_h) // out_h)
            row = []
            for ow in range(out_w):
                w0, w1 = (ow * in_w) // out_w, -((-(ow + 1) * in_w) // out_w)
                cells = [channel[h][w] for h in range(h0, h1) for w in range(w0, w1)]
                row.append(sum(cells) / len(cells))
            rows.append(row)
        out.append(rows)
    return out


def image_points(fmap: list[list[list[float]]]) -> list[Point]:
    """Point ``n`` of a ``(C, H, W)`` map is the channel vector at position ``(n // W, n % W)``."""
    C, H, W = len(fmap), len(fmap[0]), len(fmap[0][0])
    return [[fmap[c][n // W][n % W] for c in range(C)] for n in range(H * W)]


def point_sets(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    max_points: int | None = None,
    scope: str = "image",
    generator: torch.Generator | None = None,
) -> tuple[list[list[Point]], list[list[Point]]]:
    """Aligned student and teacher point sets (lists of sets of points), per docs/losses.md "Inputs" steps 1-6."""
    s_maps = student.detach().double().cpu().tolist()
    t_maps = teacher.detach().double().cpu().tolist()
    H = min(len(s_maps[0][0]), len(t_maps[0][0]))
    W = min(len(s_maps[0][0][0]), len(t_maps[0][0][0]))
    s_sets, t_sets = [], []
    for s_map, t_map in zip(s_maps, t_maps, strict=True):
        s_sets.append(image_points(adaptive_avg_pool(s_map, H, W)))
        t_sets.append(image_points(adaptive_avg_pool(t_map, H, W)))
    N = H * W
    if max_points is not None and N > max_points:
        keep = torch.randperm(N, generator=generator)[:max_points].tolist()
        s_sets = [[points[p] for p in keep] for points in s_sets]
        t_sets = [[points[p] for p in keep] for points in t_sets]
    if scope == "batch":
        s_sets = [[p for points in s_sets for p in points]]
        t_sets = [[p for points in t_sets for p in points]]
    return s_sets, t_sets


# ----------------------------------------------------------------------------------------------------------------
# Geometry of one point set.
# ----------------------------------------------------------------------------------------------------------------


def distances(points: list[Point]) -> list[list[float]]:
    """``D[i][j] = sqrt(max(||x_i - x_j||^2, 0) + 1e-12)``."""
    n = len(points)
    D = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            q = sum((a - b) ** 2 for a, b in zip(points[i], points[j], strict=True))
            D[i][j] = math.sqrt(max(q, 0.0) + SQRT_EPS)
    return D


def normalized(D: list[list[float]]) -> list[list[float]]:
    """``Dn = D / max(s, 1e-12)`` with ``s`` the mean of ``D[i][j]`` over ``i != j``."""
    n = len(D)
    total = sum(D[i][j] for i in range(n) for j in range(n) if i != j)
    s = max(total / (n * (n - 1)), SCALE_EPS)
    return [[D[i][j] / s for j in range(n)] for i in range(n)]


def knn(D: list[list[float]], i: int, k: int) -> list[int]:
    """The ``k`` indices ``j != i`` with the smallest ``D[i][j]``."""
    others = [j for j in range(len(D)) if j != i]
    return sorted(others, key=lambda j: D[i][j])[:k]


def log_softmax_off_diagonal(logits: list[float], i: int) -> dict[int, float]:
    """``log softmax`` of ``logits`` over ``j != i``, as ``{j: log p_j}``."""
    others = {j: v for j, v in enumerate(logits) if j != i}
    m = max(others.values())
    lse = m + math.log(sum(math.exp(v - m) for v in others.values()))
    return {j: v - lse for j, v in others.items()}


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1.0 else abs(x) - 0.5


# ----------------------------------------------------------------------------------------------------------------
# Per-set values.
# ----------------------------------------------------------------------------------------------------------------


def distance_set_value(s_points: list[Point], t_points: list[Point], neighbors: int | None) -> float:
    n = len(s_points)
    dn_s, dn_t = normalized(distances(s_points)), normalized(distances(t_points))
    D_t = distances(t_points)
    total = 0.0
    if neighbors is None:
        for i in range(n):
            for j in range(n):
                if i != j:
                    total += huber(dn_s[i][j] - dn_t[i][j])
        return total / (n * (n - 1))
    k = min(neighbors, n - 1)
    for i in range(n):
        for j in knn(D_t, i, k):
            total += huber(dn_s[i][j] - dn_t[i][j])
    return total / (n * k)


def kl_set_value(s_points: list[Point], t_points: list[Point], bandwidth: float) -> float:
    n = len(s_points)
    dn_s, dn_t = normalized(distances(s_points)), normalized(distances(t_points))
    total = 0.0
    for i in range(n):
        log_p_s = log_softmax_off_diagonal([-(d**2) / bandwidth for d in dn_s[i]], i)
        log_p_t = log_softmax_off_diagonal([-(d**2) / bandwidth for d in dn_t[i]], i)
        for j in log_p_t:
            total += math.exp(log_p_t[j]) * (log_p_t[j] - log_p_s[j])
    return total / n


def rank_set_value(s_points: list[Point], t_points: list[Point], neighbors: int, temperature: float) -> float:
    n = len(s_points)
    k = min(neighbors, n - 1)
    dn_s = normalized(distances(s_points))
    D_t = distances(t_points)
    total = 0.0
    for i in range(n):
        log_q = log_softmax_off_diagonal([-d / temperature for d in dn_s[i]], i)
        total += -math.log(k) - sum(log_q[j] for j in knn(D_t, i, k)) / k
    return total / n


# ----------------------------------------------------------------------------------------------------------------
# The losses.
# ----------------------------------------------------------------------------------------------------------------


def _reduce(values: list[float], reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return torch.tensor(sum(values) / len(values), dtype=torch.float64)
    if reduction == "sum":
        return torch.tensor(sum(values), dtype=torch.float64)
    if reduction == "none":
        return torch.tensor(values, dtype=torch.float64)
    raise ValueError(f"reference: unknown reduction {reduction!r}")


def local_distance_loss(
    student, teacher, *, neighbors, max_points=None, scope="image", reduction="mean", generator=None
) -> torch.Tensor:
    s_sets, t_sets = point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator)
    return _reduce([distance_set_value(s, t, neighbors) for s, t in zip(s_sets, t_sets, strict=True)], reduction)


def neighbor_kl_loss(
    student, teacher, *, bandwidth, max_points=None, scope="image", reduction="mean", generator=None
) -> torch.Tensor:
    s_sets, t_sets = point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator)
    return _reduce([kl_set_value(s, t, bandwidth) for s, t in zip(s_sets, t_sets, strict=True)], reduction)


def neighbor_rank_loss(
    student, teacher, *, neighbors, temperature, max_points=None, scope="image", reduction="mean", generator=None
) -> torch.Tensor:
    s_sets, t_sets = point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator)
    values = [rank_set_value(s, t, neighbors, temperature) for s, t in zip(s_sets, t_sets, strict=True)]
    return _reduce(values, reduction)
