"""Naive float64 reference for ``neighborhood_contrast_loss`` and its instructor graph (see docs/losses.md).

Written straight from the definition, with plain Python loops over point sets, points and edges: Kruskal's
algorithm with union-find for the tree, breadth-first search for the hop counts. Slow on purpose and meant for
tiny inputs (a few dozen points). The inputs (alignment, sampling, scope), ``D`` and ``K(i)`` are those of the
other losses' reference, :mod:`geokt_plugin.testing.reference`.

:func:`dense_neighborhood_contrast` is the same loss by plain autograd over full matrices (the mask from these
loops): the oracle of the fused kernel's values *and* gradients, like :mod:`geokt_plugin.testing.dense`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

import torch

from .reference import distances, knn, point_sets

__all__ = [
    "dense_neighborhood_contrast",
    "hops_reference",
    "mst_edges_reference",
    "nac_mask_reference",
    "neighborhood_contrast_loss_reference",
]

NAC_EPS = 1e-12  # NAC denominator max(sum_j Q[i, j], 1e-12)

Point = Sequence[float]


def squared_distances(points: Sequence[Point]) -> list[list[float]]:
    """``Q[i][j] = max(||x_i - x_j||^2, 0)``."""
    return [[max(sum((a - b) ** 2 for a, b in zip(p, q, strict=True)), 0.0) for q in points] for p in points]


def mst_edges_reference(points: Sequence[Point] | torch.Tensor) -> list[tuple[int, int]]:
    """Kruskal's minimum spanning tree under the strict order ``(D[i, j], min(i, j), max(i, j))``.

    Args:
        points: ``n`` points (a list of coordinate lists or an ``(n, C)`` tensor).

    Returns:
        The ``n - 1`` tree edges ``(i, j)``, ``i < j``, sorted.
    """
    if isinstance(points, torch.Tensor):
        points = points.detach().double().cpu().tolist()
    D = distances(points)
    n = len(points)
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    edges = sorted((D[i][j], i, j) for i in range(n) for j in range(i + 1, n))
    tree = []
    for _, i, j in edges:
        root_i, root_j = find(i), find(j)
        if root_i != root_j:
            parent[root_i] = root_j
            tree.append((i, j))
    return sorted(tree)


def hops_reference(edges: Iterable[Sequence[int]] | torch.Tensor, n: int) -> list[list[int]]:
    """Hop counts between all pairs of a graph on ``n`` nodes by breadth-first search (-1 if unreachable)."""
    if isinstance(edges, torch.Tensor):
        edges = edges.tolist()
    adjacent: list[list[int]] = [[] for _ in range(n)]
    for i, j in edges:
        adjacent[i].append(j)
        adjacent[j].append(i)
    hops = []
    for source in range(n):
        row = [-1] * n
        row[source] = 0
        queue = deque([source])
        while queue:
            v = queue.popleft()
            for w in adjacent[v]:
                if row[w] < 0:
                    row[w] = row[v] + 1
                    queue.append(w)
        hops.append(row)
    return hops


def nac_mask_reference(
    teacher_points: Sequence[Point], *, graph: str = "mst", radius: int = 5, neighbors: int = 8
) -> list[list[bool]]:
    """The instructor's mask ``M[i][j]``: within ``radius`` tree hops (``"mst"``) or in ``K(i)`` (``"knn"``)."""
    n = len(teacher_points)
    if graph == "mst":
        hops = hops_reference(mst_edges_reference(teacher_points), n)
        return [[1 <= hops[i][j] <= radius for j in range(n)] for i in range(n)]
    if graph == "knn":
        D = distances(teacher_points)
        k = min(neighbors, n - 1)
        mask = [[False] * n for _ in range(n)]
        for i in range(n):
            for j in knn(D, i, k):  # a stable sort: among equal distances the lower index comes first
                mask[i][j] = True
        return mask
    raise ValueError(f"reference: unknown graph {graph!r}")


def nac_values(points: Sequence[Point], mask: list[list[bool]]) -> list[float]:
    """``NAC[i] = sum_j M[i][j] Q[i][j] / max(sum_{j != i} Q[i][j], 1e-12)``."""
    Q = squared_distances(points)
    n = len(points)
    values = []
    for i in range(n):
        masked = sum(Q[i][j] for j in range(n) if mask[i][j])
        values.append(masked / max(sum(Q[i][j] for j in range(n) if j != i), NAC_EPS))
    return values


def contrast_set_value(
    s_points: Sequence[Point], t_points: Sequence[Point], *, graph: str, radius: int, neighbors: int
) -> float:
    """``L = 1/n sum_i (NAC_s[i] - NAC_t[i])^2``, both with the instructor's mask."""
    mask = nac_mask_reference(t_points, graph=graph, radius=radius, neighbors=neighbors)
    nac_s, nac_t = nac_values(s_points, mask), nac_values(t_points, mask)
    return sum((a - b) ** 2 for a, b in zip(nac_s, nac_t, strict=True)) / len(t_points)


def neighborhood_contrast_loss_reference(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    graph: str,
    radius: int,
    neighbors: int,
    max_points: int | None = None,
    scope: str = "image",
    reduction: str = "mean",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The loss from its definition, one set and one point at a time (float64); the knobs have no defaults here."""
    s_sets, t_sets = point_sets(student, teacher, max_points=max_points, scope=scope, generator=generator)
    if len(t_sets[0]) < 2:
        raise ValueError(f"reference: a point set needs at least 2 points, got {len(t_sets[0])}")
    values = [
        contrast_set_value(s, t, graph=graph, radius=radius, neighbors=neighbors)
        for s, t in zip(s_sets, t_sets, strict=True)
    ]
    reduce = {"mean": lambda v: sum(v) / len(v), "sum": sum, "none": list}
    if reduction not in reduce:
        raise ValueError(f"reference: unknown reduction {reduction!r}")
    return torch.tensor(reduce[reduction](values), dtype=torch.float64)


def dense_neighborhood_contrast(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    scope: str = "image",
    graph: str = "mst",
    radius: int = 5,
    neighbors: int = 8,
) -> torch.Tensor:
    """Per-set values by autograd over full ``(S, n, n)`` matrices, ``Q`` from explicit differences.

    Inputs are already aligned maps of equal ``H, W`` (no pooling, no sampling), as in
    :func:`geokt_plugin.testing.dense.dense_loss`; the instructor's mask comes from :func:`nac_mask_reference`.
    """
    s = student.flatten(2).transpose(1, 2)
    t = teacher.detach().flatten(2).transpose(1, 2)
    if scope == "batch":
        s, t = s.reshape(1, -1, s.shape[-1]), t.reshape(1, -1, t.shape[-1])
    masks = [nac_mask_reference(points.double().tolist(), graph=graph, radius=radius, neighbors=neighbors)
             for points in t]
    mask = torch.tensor(masks, dtype=s.dtype, device=s.device)
    off = 1.0 - torch.eye(s.shape[1], dtype=s.dtype, device=s.device)

    def nac(points: torch.Tensor) -> torch.Tensor:
        q = (points.unsqueeze(2) - points.unsqueeze(1)).pow(2).sum(-1).clamp_min(0.0)
        return (q * mask).sum(-1) / (q * off).sum(-1).clamp_min(NAC_EPS)

    return (nac(s) - nac(t)).pow(2).mean(-1)
