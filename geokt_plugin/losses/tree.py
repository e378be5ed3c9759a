"""The instructor's graph for ``neighborhood_contrast_loss``: a minimum spanning tree and its hop mask.

Both functions are batched over ``S`` point sets, run on the input's device, and hold no Python loop over sets
or points (see docs/losses.md, ``neighborhood_contrast_loss``, for the tree and the mask they define).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["duplicate_representatives", "hop_mask", "minimum_spanning_tree"]

SQRT_EPS = 1e-12  # D = sqrt(Q + 1e-12): the tree is ordered by the same D the losses use
_PRIME = 2_147_483_647  # 2^31 - 1, the modulus of the duplicate hash


def _check_square(name: str, value: Tensor) -> None:
    if value.dim() != 3 or value.shape[1] != value.shape[2] or value.shape[1] < 1:
        raise ValueError(
            f"{name}: expected a (S, n, n) tensor of squared distances with n >= 1, got shape {tuple(value.shape)}"
        )
    if not value.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {value.dtype}")


def duplicate_representatives(points: Tensor) -> Tensor:
    """``(S, n)``: for each point, the lowest index of a point exactly equal to it (itself when it has no copy).

    Points are grouped by an exact integer hash of their bits (``-0.0`` counts as ``0.0``): 16-bit pieces times
    fixed weights, summed modulo a prime, twice. Integer sums do not depend on their order, so equal points always
    hash alike; each point is then checked against its group's first member, so a hash collision never merges
    distinct points (it only leaves a copy unrecognised). NaN is not equal to itself: such points stay their own.
    """
    S, n, C = points.shape
    x = points.detach() + 0.0
    bits = x.contiguous().view(torch.int64 if x.dtype == torch.float64 else torch.int32).to(torch.int64)
    pieces = torch.stack([(bits >> shift) & 0xFFFF for shift in (0, 16, 32, 48)], dim=-1).view(S, n, -1)
    k = torch.arange(pieces.shape[-1], device=points.device)
    code = torch.zeros(S, n, dtype=torch.long, device=points.device)
    for mult in (40503, 65599):  # pieces < 2^16 and weights < 2^31: each sum stays far below 2^63
        code = code * _PRIME + (pieces * ((k * mult + 7) % _PRIME)).sum(-1) % _PRIME
    order = code.argsort(dim=1, stable=True)  # copies end up adjacent, lowest index first
    ranked = code.gather(1, order)
    arange = torch.arange(n, device=points.device).expand(S, n)
    first = torch.ones_like(ranked, dtype=torch.bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    head = torch.where(first, arange, 0).cummax(dim=1).values  # sorted position of each group's first member
    rep = torch.empty_like(order).scatter_(1, order, order.gather(1, head))
    same = (x == x.gather(1, rep.unsqueeze(-1).expand(S, n, C))).all(-1)
    return torch.where(same, rep, arange)


def _edge_keys(sq_dist: Tensor, rep: Tensor | None) -> Tensor:
    """Symmetric edge weights ``D = sqrt(max(Q, 0) + 1e-12)`` read from the upper triangle; diagonal +inf.

    One value per edge keeps the order strict even when ``Q`` is not bitwise symmetric (a ``Q`` built from a
    Gram matrix need not be). NaN and +inf become the largest finite value: the order stays total, so Borůvka
    terminates normally, and +inf is left free to mark pairs that are never candidates. With ``rep`` (see
    :func:`duplicate_representatives`), every copy of a point takes its first copy's weights and copies weigh
    ``sqrt(0 + 1e-12)`` to each other: exact ties, as the definition has them, whatever the rounding of ``Q``.
    """
    top = torch.finfo(sq_dist.dtype).max
    key = sq_dist.detach().clamp_min(0).add_(SQRT_EPS).sqrt_().nan_to_num_(nan=top, posinf=top)
    S, n, _ = key.shape
    upper = torch.ones(n, n, dtype=torch.bool, device=key.device).triu_(1)
    key = torch.where(upper, key, key.transpose(1, 2))
    if rep is not None and bool((rep != torch.arange(n, device=rep.device)).any()):
        key.diagonal(dim1=1, dim2=2).fill_(math.sqrt(SQRT_EPS))
        key = key.gather(1, rep.unsqueeze(2).expand(S, n, n)).gather(2, rep.unsqueeze(1).expand(S, n, n))
    key.diagonal(dim1=1, dim2=2).fill_(math.inf)
    return key


def _refresh_rows(key: Tensor, comp: Tensor, weight: Tensor, best: Tensor, live: Tensor) -> None:
    """Recompute, in place, each live set's rows whose cheapest outgoing edge now lies inside their component.

    Candidates only leave a row as components grow, so a row whose best ``j`` is still outside its component
    keeps it. When many rows are stale (the first merges absorb every nearest neighbour), all rows are redone
    at once and ``key`` is masked in place (a pair inside one component never becomes a candidate again);
    otherwise only the stale rows are gathered and redone.
    """
    weight.masked_fill_(~live[:, None], math.inf)  # a finished set has no outgoing edge
    stale = (comp.gather(1, best) == comp) & live[:, None]
    n = comp.shape[1]
    # Per row i, ordering j by (D, min(i, j), max(i, j)) is ordering by (D, j): min returns the first j.
    if 4 * int(stale.sum()) > stale.numel():
        key.masked_fill_(comp[:, :, None] == comp[:, None, :], math.inf)
        dense_weight, dense_best = key.min(dim=2)
        weight.copy_(dense_weight)
        best.copy_(dense_best)
        return
    flat = stale.view(-1).nonzero().squeeze(1)  # row s * n + i of the (S * n, n) stack of all sets' rows
    if flat.numel() == 0:
        return
    own = comp.index_select(0, flat // n) == comp.view(-1).index_select(0, flat)[:, None]
    row_weight, row_best = key.view(-1, n).index_select(0, flat).masked_fill_(own, math.inf).min(dim=1)
    weight.view(-1).index_copy_(0, flat, row_weight)
    best.view(-1).index_copy_(0, flat, row_best)


def _component_edges(comp: Tensor, weight: Tensor, best: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each component's least outgoing edge under ``(D, min, max)``, from its rows' least edges.

    Args:
        comp: ``(S, n)`` root label of each point's component.
        weight: ``(S, n)`` each row's least outgoing weight (+inf where none).
        best: ``(S, n)`` the other end of that edge.

    Returns:
        ``code`` (``(S, n)``: ``min * n + max`` of the edge, read at roots), ``has_edge`` (``(S, n)``: True at
        roots that chose one) and ``target`` (``(S, n)``: the component it reaches).
    """
    n = comp.shape[1]
    arange = torch.arange(n, device=comp.device)
    code = torch.minimum(arange, best) * n + torch.maximum(arange, best)
    # The least D first, then the least code: the lexicographic (min, max) among rows that tie on D.
    least = torch.full_like(weight, math.inf).scatter_reduce(1, comp, weight, "amin")
    eligible = (weight < math.inf) & (weight == least.gather(1, comp))
    no_code = n * n
    code = torch.full_like(comp, no_code).scatter_reduce(1, comp, torch.where(eligible, code, no_code), "amin")
    has_edge = (comp == arange) & (code < no_code)
    code = torch.where(has_edge, code, 0)
    end_a, end_b = comp.gather(1, code // n), comp.gather(1, code % n)
    return code, has_edge, torch.where(end_a == arange, end_b, end_a)


def _merge_components(comp: Tensor, target: Tensor, has_edge: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """One Borůvka merge: hook each component onto its chosen neighbour, then pointer-jump to the roots.

    Args:
        comp: ``(S, n)`` root label of each point's component (a root labels itself).
        target: ``(S, n)`` for each root, the component its cheapest outgoing edge reaches.
        has_edge: ``(S, n)`` True at roots that chose an edge this round.
        steps: pointer-jumping iterations (``ceil(log2 n) + 1`` reaches every root).

    Returns:
        The new labels and the ``(S, n)`` mask of roots whose edge is new (a mutual pair's shared edge once).
    """
    parent = torch.where(has_edge, target, comp)
    # Under a strict edge order, the only cycles are pairs that chose the same edge; the lower label stays root.
    mutual = has_edge & (parent.gather(1, parent) == comp) & (parent != comp)
    arange = torch.arange(comp.shape[1], device=comp.device)
    new_edge = has_edge & ~(mutual & (arange > parent))
    parent = torch.where(mutual & (arange < parent), comp, parent)
    for _ in range(steps):
        parent = parent.gather(1, parent)
    return parent, new_edge


def minimum_spanning_tree(sq_dist: Tensor, points: Tensor | None = None) -> Tensor:
    """The unique minimum spanning tree of each of ``S`` complete graphs, by batched Borůvka rounds.

    Edge ``(i, j)`` weighs ``D[i, j] = sqrt(max(Q[i, j], 0) + 1e-12)`` and edges are ordered strictly by
    ``(D[i, j], min(i, j), max(i, j))``, so the tree is unique even where distances tie (duplicate points).
    The input is squared distances, not points: the loss already holds ``Q`` for its contrast, and ``D`` is
    derived here so that ties are those of ``D`` (two ``Q`` that round to the same ``D`` tie). Only the upper
    triangle ``Q[i, j]``, ``i < j``, is read, so a ``Q`` that is not bitwise symmetric still has one weight
    per edge.

    Why Borůvka: each round is dense, batched work over all sets at once (a masked row minimum, two scatter
    minima over components, a few pointer jumps), and at most ``ceil(log2 n)`` rounds are needed because every
    component merges with at least one other per round. Kruskal or Prim are sequential over edges or points.

    ``Q`` from the expansion ``|a|^2 + |b|^2 - 2 <a, b>`` rounds differently for two copies of a point, which would
    break their ties by rounding noise; pass the ``points`` and exact copies are recognised and tie exactly (other
    exact ties between distinct pairs are as exact as ``sq_dist`` is).

    Non-finite weights (a NaN or inf in the points) are ordered last, as the largest finite value, with the same
    index tie-break: such a set still gets a spanning tree, but which one is unspecified; the loss value of that
    set is non-finite anyway through ``Q``. The number of rounds is capped, so nothing can hang.

    Args:
        sq_dist: ``(S, n, n)`` squared distances of ``S`` point sets (float32 or float64, any device).
        points: the ``(S, n, C)`` points ``sq_dist`` comes from, to tie exact copies exactly (optional).

    Returns:
        ``(S, n - 1, 2)`` long tensor of tree edges ``(i, j)`` with ``i < j``, sorted lexicographically.
    """
    _check_square("minimum_spanning_tree", sq_dist)
    S, n, _ = sq_dist.shape
    device = sq_dist.device
    arange = torch.arange(n, device=device)
    key = _edge_keys(sq_dist, None if points is None else duplicate_representatives(points))
    comp = arange.expand(S, n).clone()
    weight, best = key.min(dim=2)
    # Slots 0..n-2 receive the tree's edges; slots n..2n-1 are one private dump slot per point.
    slots = torch.zeros(S, 2 * n, dtype=torch.long, device=device)
    count = torch.zeros(S, 1, dtype=torch.long, device=device)
    steps = math.ceil(math.log2(max(n, 2))) + 1
    for _ in range(steps + 1):  # ceil(log2 n) rounds suffice: components at least halve each round
        live = count[:, 0] < n - 1
        if not bool(live.any()):
            break
        _refresh_rows(key, comp, weight, best, live)
        code, has_edge, target = _component_edges(comp, weight, best)
        comp, new_edge = _merge_components(comp, target, has_edge, steps)
        position = torch.where(new_edge, count + new_edge.cumsum(1) - 1, n + arange)
        slots.scatter_(1, position, torch.where(new_edge, code, 0))
        count = count + new_edge.sum(1, keepdim=True)
    codes = slots[:, : n - 1].sort(dim=1).values
    return torch.stack((codes // n, codes % n), dim=2)


def hop_mask(edges: Tensor, n: int, radius: int, rows: slice | None = None) -> Tensor:
    """Pairs within ``radius`` hops on each tree: ``M[s, i, j] = 1 <= hops(i, j) <= radius``, for rows ``i``.

    Frontier expansion over the edge list. ``reach[v, c]`` says whether point ``v`` is within the current hop count
    of row point ``c``; it starts as the identity, and each step ORs row ``w`` of ``reach`` into row ``v`` (and
    ``v`` into ``w``) for every tree edge ``(w, v)``: a gather and an accumulate of ``O(S n r)`` for ``r`` rows, so
    ``radius`` steps cost ``O(radius S n r)`` with no ``n^3`` product, and memory stays that of the row block. It
    stops early once a step changes nothing (the radius exceeds every tree's diameter).

    Args:
        edges: ``(S, n - 1, 2)`` long tree edges, e.g. from :func:`minimum_spanning_tree`.
        n: number of points per set.
        radius: the largest hop count kept, an integer >= 1.
        rows: the set-local rows ``i`` wanted (a step-1 slice); ``None`` means all ``n``.

    Returns:
        ``(S, r, n)`` contiguous bool mask, False at ``j = i`` (symmetric when all rows are asked for).
    """
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise ValueError(f"hop_mask: radius must be an integer >= 1, got {radius!r}")
    if edges.dim() != 3 or edges.shape[1:] != (n - 1, 2) or edges.dtype != torch.long:
        raise ValueError(
            f"hop_mask: expected long edges of shape (S, {n - 1}, 2) for n={n}, got {edges.dtype} {tuple(edges.shape)}"
        )
    rows = slice(0, n) if rows is None else rows
    S, device = edges.shape[0], edges.device
    # Rows of all sets stacked: row s * n + v holds set s's point v, so one index op covers every set.
    offset = (torch.arange(S, device=device) * n)[:, None]
    source = (torch.cat((edges[:, :, 0], edges[:, :, 1]), dim=1) + offset).reshape(-1)
    dest = (torch.cat((edges[:, :, 1], edges[:, :, 0]), dim=1) + offset).reshape(-1)
    own = torch.arange(n, device=device)[:, None] == torch.arange(rows.start, rows.stop, device=device)
    reach = own.expand(S, *own.shape).reshape(S * n, -1)
    for _ in range(radius):
        # A boolean accumulate is an OR: row v gains every row point within reach of any tree neighbour of v.
        grown = reach.index_put((dest,), reach.index_select(0, source), accumulate=True)
        if torch.equal(grown, reach):
            break
        reach = grown
    mask = reach.view(S, n, -1) & ~own
    return mask if mask.shape[2] == n else mask.transpose(1, 2).contiguous()  # all rows: symmetric already
