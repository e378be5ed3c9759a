"""The instructor graph of ``neighborhood_contrast_loss``: batched Borůvka tree and hop mask against loop references."""

from __future__ import annotations

from fractions import Fraction
from functools import partial

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geokt_plugin.losses import loss_spec
from geokt_plugin.losses.tree import hop_mask, minimum_spanning_tree
from geokt_plugin.testing.nac_reference import hops_reference, mst_edges_reference
from geokt_plugin.testing.nac_reference import neighborhood_contrast_loss_reference as _reference

# The reference takes every knob explicitly (LossSpec rule); these tests use the loss's defaults unless they say.
neighborhood_contrast_loss_reference = partial(_reference, **loss_spec("nac").knobs)


def sq_dist(points: torch.Tensor) -> torch.Tensor:
    """``(S, n, n)`` squared distances by explicit differences (exact on integer coordinates)."""
    return (points[:, :, None, :] - points[:, None, :, :]).pow(2).sum(-1)


def tree_lists(points: torch.Tensor) -> list[list[tuple[int, int]]]:
    return [[tuple(e) for e in s] for s in minimum_spanning_tree(sq_dist(points)).tolist()]


def assert_trees_match_kruskal(points: torch.Tensor) -> None:
    for s, tree in enumerate(tree_lists(points)):
        assert tree == mst_edges_reference(points[s]), f"set {s}"


def assert_mask_matches_bfs(edges: torch.Tensor, n: int, radius: int) -> None:
    mask = hop_mask(edges, n, radius)
    for s in range(edges.shape[0]):
        hops = torch.tensor(hops_reference(edges[s], n))
        torch.testing.assert_close(mask[s], (hops >= 1) & (hops <= radius), msg=f"set {s}, radius {radius}")


def line(*xs: float) -> torch.Tensor:
    """One set of 1-D points."""
    return torch.tensor(xs, dtype=torch.float64)[None, :, None]


# ------------------------------------------------------------------------------------------------------------------
# minimum_spanning_tree
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 13, 21, 34, 55, 70])
def test_minimum_spanning_tree_matches_kruskal_random(n):
    g = torch.Generator().manual_seed(n)
    assert_trees_match_kruskal(torch.randn(4, n, 3, generator=g, dtype=torch.float64))


@pytest.mark.parametrize("n", [2, 3, 6, 17, 40, 70])
def test_minimum_spanning_tree_matches_kruskal_duplicates_and_ties(n):
    # Few distinct integer coordinates: many duplicate points and many exactly equal distances.
    g = torch.Generator().manual_seed(100 + n)
    assert_trees_match_kruskal(torch.randint(0, 3, (5, n, 2), generator=g).double())


def test_minimum_spanning_tree_integer_grid_ties():
    # A 6 x 7 grid (unit spacing) and the same grid with its points listed in a shuffled order.
    grid = torch.cartesian_prod(torch.arange(6.0), torch.arange(7.0)).double()
    shuffled = grid[torch.randperm(len(grid), generator=torch.Generator().manual_seed(0))]
    assert_trees_match_kruskal(torch.stack((grid, shuffled)))


def test_minimum_spanning_tree_hand_derived_ties():
    # Square 0=(0,0), 1=(1,0), 2=(0,1), 3=(1,1): sides tie at D=1, ordered (0,1) < (0,2) < (1,3) < (2,3);
    # Kruskal takes the first three, (2,3) would close a cycle.
    square = torch.tensor([[[0.0, 0], [1, 0], [0, 1], [1, 1]]], dtype=torch.float64)
    assert tree_lists(square) == [[(0, 1), (0, 2), (1, 3)]]
    # Identical points: every edge ties, the least (min, max) edges form a star on point 0.
    assert tree_lists(torch.zeros(1, 5, 2, dtype=torch.float64)) == [[(0, 1), (0, 2), (0, 3), (0, 4)]]


def test_minimum_spanning_tree_four_points_on_a_line():
    # x = 0, 1, 3, 6: D(0,1)=1 < D(1,2)=2 < D(0,2)=3 = D(2,3)=3 (tie: (0,2) < (2,3)) < D(1,3)=5 < D(0,3)=6.
    # Kruskal: (0,1), (1,2); (0,2) closes a cycle; (2,3). The tree is the path 0-1-2-3.
    assert tree_lists(line(0, 1, 3, 6)) == [[(0, 1), (1, 2), (2, 3)]]


def test_minimum_spanning_tree_ignores_lower_triangle():
    q = sq_dist(torch.randn(2, 9, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    skewed = q + torch.rand(q.shape, generator=torch.Generator().manual_seed(4), dtype=q.dtype).tril(-1)
    assert torch.equal(minimum_spanning_tree(skewed), minimum_spanning_tree(q))


def test_minimum_spanning_tree_float32_equals_float64_on_separated_points():
    g = torch.Generator().manual_seed(13)  # a seed whose sets meet the precondition below
    points = torch.randn(6, 16, 8, generator=g, dtype=torch.float64)
    d = sq_dist(points).sqrt()
    upper = torch.ones(16, 16, dtype=torch.bool).triu(1)
    for s in range(6):  # precondition: no two distances within 1e-5 (relative) of each other
        values = d[s][upper].sort().values
        assert ((values[1:] - values[:-1]) / values[1:]).min() > 1e-5
    assert torch.equal(minimum_spanning_tree(sq_dist(points.float())), minimum_spanning_tree(sq_dist(points)))


def test_minimum_spanning_tree_shape_and_dtype():
    q = sq_dist(torch.randn(3, 7, 2, dtype=torch.float64))
    edges = minimum_spanning_tree(q)
    assert edges.shape == (3, 6, 2) and edges.dtype == torch.long
    assert minimum_spanning_tree(torch.zeros(2, 1, 1)).shape == (2, 0, 2)


def test_minimum_spanning_tree_non_finite_terminates():
    g = torch.Generator().manual_seed(6)
    points = torch.randn(4, 12, 3, generator=g, dtype=torch.float64)
    points[0, 3, 1] = float("nan")
    points[1, 5, 0] = float("inf")
    points[2] = float("nan")
    q = sq_dist(points)
    q[3, 2, 7] = float("-inf")  # a negative weight clamps to 0 like any negative Q
    edges = minimum_spanning_tree(q)
    assert edges.shape == (4, 11, 2)
    for s in range(3):  # a non-finite set still gets some spanning tree: every point reachable
        assert all(h >= 0 for row in hops_reference(edges[s], 12) for h in row), f"set {s}"
    finite = torch.randn(1, 12, 3, generator=g, dtype=torch.float64)
    mixed = torch.cat((points[:3], finite))
    assert minimum_spanning_tree(sq_dist(mixed))[3].tolist() == [list(e) for e in mst_edges_reference(finite[0])]


def test_minimum_spanning_tree_errors():
    with pytest.raises(ValueError, match=r"\(S, n, n\).*got shape \(4, 4\)"):
        minimum_spanning_tree(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"got shape \(1, 3, 4\)"):
        minimum_spanning_tree(torch.zeros(1, 3, 4))
    with pytest.raises(TypeError, match="floating-point.*int64"):
        minimum_spanning_tree(torch.zeros(1, 3, 3, dtype=torch.long))


# ------------------------------------------------------------------------------------------------------------------
# hop_mask
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 9, 30, 64])
def test_hop_mask_matches_bfs(n):
    g = torch.Generator().manual_seed(200 + n)
    points = torch.cat((torch.randn(3, n, 2, generator=g), torch.randint(0, 3, (2, n, 2), generator=g).float()))
    edges = minimum_spanning_tree(sq_dist(points))
    diameter = max(max(max(row) for row in hops_reference(edges[s], n)) for s in range(len(edges)))
    for radius in range(1, diameter + 3):
        assert_mask_matches_bfs(edges, n, radius)


def test_hop_mask_four_points_on_a_line():
    # Tree 0-1-2-3 (see the tree test). hops:
    #     0 1 2 3
    # 0 [ 0 1 2 3 ]
    # 1 [ 1 0 1 2 ]
    # 2 [ 2 1 0 1 ]
    # 3 [ 3 2 1 0 ]
    edges = minimum_spanning_tree(sq_dist(line(0, 1, 3, 6)))
    radius_1 = [[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]]
    radius_2 = [[0, 1, 1, 0], [1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 0]]
    assert hop_mask(edges, 4, 1)[0].int().tolist() == radius_1
    assert hop_mask(edges, 4, 2)[0].int().tolist() == radius_2
    assert hop_mask(edges, 4, 3)[0].int().tolist() == (1 - torch.eye(4, dtype=torch.int)).tolist()


def test_hop_mask_path():
    # Gaps 1, 2, 3, ... grow along the line, so the tree is the path and hops(i, j) = |i - j|.
    n = 12
    xs = [k * (k + 1) / 2 for k in range(n)]
    edges = minimum_spanning_tree(sq_dist(line(*xs)))
    assert edges[0].tolist() == [[i, i + 1] for i in range(n - 1)]
    offset = (torch.arange(n)[:, None] - torch.arange(n)[None, :]).abs()
    for radius in (1, 2, 5, 11, 20):
        assert torch.equal(hop_mask(edges, n, radius)[0], (offset >= 1) & (offset <= radius))


def test_hop_mask_star():
    # Centre 0 at the origin, leaves at +-e_k: centre-leaf D=1 < leaf-leaf D >= sqrt(2), so the tree is a star.
    leaves = torch.cat((torch.eye(3), -torch.eye(3))).double()
    points = torch.cat((torch.zeros(1, 3, dtype=torch.float64), leaves))[None]
    edges = minimum_spanning_tree(sq_dist(points))
    assert edges[0].tolist() == [[0, j] for j in range(1, 7)]
    centre_only = torch.zeros(7, 7, dtype=torch.bool)
    centre_only[0, 1:] = centre_only[1:, 0] = True
    assert torch.equal(hop_mask(edges, 7, 1)[0], centre_only)
    assert torch.equal(hop_mask(edges, 7, 2)[0], ~torch.eye(7, dtype=torch.bool))


def test_hop_mask_errors():
    edges = minimum_spanning_tree(sq_dist(line(0, 1, 3, 6)))
    for radius in (0, 1.5, True):
        with pytest.raises(ValueError, match=f"radius must be an integer >= 1, got {radius!r}"):
            hop_mask(edges, 4, radius)
    with pytest.raises(ValueError, match=r"shape \(S, 4, 2\) for n=5"):
        hop_mask(edges, 5, 1)


# ------------------------------------------------------------------------------------------------------------------
# Properties, devices
# ------------------------------------------------------------------------------------------------------------------


@settings(max_examples=50, deadline=None, derandomize=True)
@given(data=st.data())
def test_tree_and_mask_property(data):
    n = data.draw(st.integers(2, 16), label="n")
    C = data.draw(st.integers(1, 3), label="C")
    S = data.draw(st.integers(1, 3), label="S")
    coords = data.draw(st.lists(st.integers(-2, 2), min_size=S * n * C, max_size=S * n * C), label="coords")
    radius = data.draw(st.integers(1, 6), label="radius")
    points = torch.tensor(coords, dtype=torch.float64).view(S, n, C)
    assert_trees_match_kruskal(points)
    assert_mask_matches_bfs(minimum_spanning_tree(sq_dist(points)), n, radius)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tree_and_mask_cuda_equal_cpu(dtype):
    g = torch.Generator().manual_seed(7)
    points = torch.cat((torch.randn(6, 90, 5, generator=g), torch.randint(0, 3, (6, 90, 5), generator=g).float()))
    q = sq_dist(points.to(dtype))
    edges = minimum_spanning_tree(q)
    cuda_edges = minimum_spanning_tree(q.cuda())
    assert cuda_edges.is_cuda and torch.equal(cuda_edges.cpu(), edges)
    for radius in (1, 5):
        assert torch.equal(hop_mask(cuda_edges, 90, radius).cpu(), hop_mask(edges, 90, radius))


# ------------------------------------------------------------------------------------------------------------------
# The loop reference of the loss, by hand
# ------------------------------------------------------------------------------------------------------------------

# Teacher points x = 0, 1, 3, 6 (one channel, a 1 x 4 map): tree 0-1-2-3, radius 1 keeps the tree edges.
# Q_t: q01=1, q02=9, q03=36, q12=4, q13=25, q23=9; row sums 46, 30, 22, 70.
# NAC_t (radius 1): 1/46, (1+4)/30 = 1/6, (4+9)/22 = 13/22, 9/70.
TEACHER = torch.tensor([0.0, 1, 3, 6], dtype=torch.float64).view(1, 1, 1, 4)
NAC_T_RADIUS_1 = [Fraction(1, 46), Fraction(1, 6), Fraction(13, 22), Fraction(9, 70)]


def mean_squared(a: list[Fraction], b: list[Fraction]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / len(a))


def test_reference_loss_hand_values():
    ref = neighborhood_contrast_loss_reference
    # A scaled student (in two channels, one of them zero) has the teacher's NAC: the loss is 0.
    scaled = torch.cat((2 * TEACHER, torch.zeros_like(TEACHER)), dim=1)
    assert ref(scaled, TEACHER, radius=1).item() == pytest.approx(0.0, abs=1e-15)
    # radius >= diameter (3) keeps every pair: NAC = 1 on both sides whatever the student.
    student = torch.tensor([0.0, 1, 2, 3], dtype=torch.float64).view(1, 1, 1, 4)
    assert ref(student, TEACHER, radius=3).item() == pytest.approx(0.0, abs=1e-15)
    # Student x = 0, 1, 2, 3: Q_s q01=q12=q23=1, q02=q13=4, q03=9; row sums 14, 6, 6, 14.
    # NAC_s (teacher's radius-1 mask): 1/14, (1+1)/6 = 1/3, (1+1)/6 = 1/3, 1/14.
    nac_s = [Fraction(1, 14), Fraction(1, 3), Fraction(1, 3), Fraction(1, 14)]
    expected = mean_squared(nac_s, NAC_T_RADIUS_1)  # (8/161)^2, (1/6)^2, (17/66)^2, (2/35)^2 over 4
    assert ref(student, TEACHER, radius=1).item() == pytest.approx(expected, rel=1e-12)
    # Swapping the roles: teacher x = 0, 1, 2, 3 has a path tree too (the ties break towards lower indices).
    nac_t = [Fraction(1, 14), Fraction(1, 3), Fraction(1, 3), Fraction(1, 14)]
    nac_s = [Fraction(1, 46), Fraction(1, 6), Fraction(13, 22), Fraction(9, 70)]
    assert ref(TEACHER, student, radius=1).item() == pytest.approx(mean_squared(nac_s, nac_t), rel=1e-12)


def test_reference_loss_knn_hand_value_with_ties():
    # Teacher x = 0, 1, 2, 3, neighbors=1: K(1) = {0} and K(2) = {1} (D ties, lower index first); K(0)={1}, K(3)={2}.
    # NAC_t: q01/14, q10/6, q21/6, q32/14 = 1/14, 1/6, 1/6, 1/14.
    # Student x = 0, 1, 3, 6 with that mask: 1/46, 1/30, 4/22, 9/70.
    teacher = torch.tensor([0.0, 1, 2, 3], dtype=torch.float64).view(1, 1, 1, 4)
    nac_t = [Fraction(1, 14), Fraction(1, 6), Fraction(1, 6), Fraction(1, 14)]
    nac_s = [Fraction(1, 46), Fraction(1, 30), Fraction(4, 22), Fraction(9, 70)]
    value = neighborhood_contrast_loss_reference(TEACHER, teacher, graph="knn", neighbors=1)
    assert value.item() == pytest.approx(mean_squared(nac_s, nac_t), rel=1e-12)


def test_reference_loss_reductions_scope_and_sampling():
    ref = neighborhood_contrast_loss_reference
    g = torch.Generator().manual_seed(8)
    student, teacher = torch.randn(2, 3, 1, 6, generator=g), torch.randn(2, 5, 1, 6, generator=g)
    per_set = ref(student, teacher, reduction="none")
    assert per_set.shape == (2,) and per_set.dtype == torch.float64 and (per_set >= 0).all()
    assert ref(student, teacher).item() == pytest.approx(per_set.mean().item(), rel=1e-12)
    assert ref(student, teacher, reduction="sum").item() == pytest.approx(per_set.sum().item(), rel=1e-12)
    # With H = 1, "batch" is one image whose positions are the two images side by side.
    batch = ref(student, teacher, scope="batch", reduction="none")
    side_by_side = ref(torch.cat(tuple(student), dim=2)[None], torch.cat(tuple(teacher), dim=2)[None])
    assert batch.shape == (1,) and batch.item() == pytest.approx(side_by_side.item(), rel=1e-12)
    # Sampling keeps the same randperm positions for both networks and every image.
    keep = torch.randperm(6, generator=torch.Generator().manual_seed(9))[:4]
    sampled = ref(student, teacher, max_points=4, generator=torch.Generator().manual_seed(9), reduction="none")
    torch.testing.assert_close(sampled, ref(student[..., keep], teacher[..., keep], reduction="none"))
    # Alignment: a 2x larger teacher map is average-pooled to the student's size.
    wide = teacher.repeat_interleave(2, dim=3)
    torch.testing.assert_close(ref(student, wide, reduction="none"), per_set)
