"""Checklist of ``neighborhood_contrast_loss`` and ``GeoKTNeighborhoodContrastLoss`` beyond the table-driven tests.

The table-driven files (test_functional, test_properties, test_chunking, test_loss_modules, ...) run NAC with its
defaults; here: both graphs and many radii against the float64 loop reference, values derived by hand, the tree's
tie-break on duplicate points, gradients (gradcheck and the dense autograd formulation), chunking, autocast, CUDA,
every error message and non-finite inputs.
"""

from __future__ import annotations

import re
from fractions import Fraction

import pytest
import torch

from geokt_plugin import GeoKTNeighborhoodContrastLoss
from geokt_plugin.functional import neighborhood_contrast_loss
from geokt_plugin.losses import loss_spec
from geokt_plugin.testing import pair, randn, tol
from geokt_plugin.testing.contract import assert_matches_reference, gradcheck_student
from geokt_plugin.testing.nac_reference import dense_neighborhood_contrast, neighborhood_contrast_loss_reference

OWNER = "neighborhood_contrast_loss"
MODULE = "GeoKTNeighborhoodContrastLoss"

# Graph knobs over the defaults: radius 1 (tree edges only) up to 50 (more than any tree's diameter here), and kNN
# sizes up to n - 1. The loop reference takes every knob explicitly.
DEFAULTS = loss_spec("nac").knobs
GRAPHS = [
    {**DEFAULTS, "graph": "mst", "radius": 1},
    {**DEFAULTS, "graph": "mst", "radius": 2},
    {**DEFAULTS, "graph": "mst", "radius": 4},
    {**DEFAULTS, "graph": "mst", "radius": 50},
    {**DEFAULTS, "graph": "knn", "neighbors": 1},
    {**DEFAULTS, "graph": "knn", "neighbors": 3},
    {**DEFAULTS, "graph": "knn", "neighbors": 50},
]
GRAPH_IDS = [f"{g['graph']}-{g['radius'] if g['graph'] == 'mst' else g['neighbors']}" for g in GRAPHS]

# (id, (B, Cs, Hs, Ws, Ct, Ht, Wt), extra knobs): Cs != Ct everywhere, Hs != Ht and Ws != Wt (pooling) in some.
SHAPES = [
    ("cs_ne_ct", (2, 3, 4, 4, 5, 4, 4), {}),
    ("hs_ne_ht", (2, 4, 6, 5, 3, 4, 7), {}),
    ("scope_batch", (3, 3, 3, 3, 2, 4, 3), {"scope": "batch"}),
    ("sampling_image", (2, 3, 5, 5, 4, 6, 6), {"max_points": 9, "generator": 11}),
    ("sampling_batch", (2, 3, 5, 4, 4, 5, 4), {"max_points": 7, "scope": "batch", "generator": 12}),
]
SHAPE_IDS = [c[0] for c in SHAPES]


def line(*coords: float) -> torch.Tensor:
    """1-channel points on a line, as a (1, 1, 1, n) map: point n is coords[n]."""
    return torch.tensor(coords, dtype=torch.float64).view(1, 1, 1, -1)


def with_generator(knobs: dict) -> dict:
    knobs = dict(knobs)
    if "generator" in knobs:
        knobs["generator"] = torch.Generator().manual_seed(knobs["generator"])
    return knobs


def nac_values(points: list[int], mask: dict[int, set[int]]) -> list[Fraction]:
    """``NAC[i] = sum_{j in mask[i]} Q_ij / sum_{j != i} Q_ij`` on 1-D integer points, exactly."""
    q = [[Fraction((a - b) ** 2) for b in points] for a in points]
    return [sum(q[i][j] for j in mask[i]) / sum(q[i]) for i in range(len(points))]


def mean_squared(a: list[Fraction], b: list[Fraction]) -> float:
    return float(sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / len(a))


def value_and_grad(student: torch.Tensor, teacher: torch.Tensor, **knobs) -> tuple[torch.Tensor, torch.Tensor]:
    s = student.detach().clone().requires_grad_(True)
    out = neighborhood_contrast_loss(s, teacher, reduction="none", **knobs)
    weights = torch.arange(1, out.numel() + 1, dtype=out.dtype, device=out.device)  # every set counts differently
    (grad,) = torch.autograd.grad((out * weights).sum(), s)
    return out.detach(), grad


def relu_teacher(seed: int, B: int = 2, C: int = 2, H: int = 4, W: int = 5) -> torch.Tensor:
    """A post-ReLU instructor map: many exact duplicates (all-zero points) and equal coordinates, plus copies."""
    t = randn(B, C, H, W, seed=seed).relu() * 3.7 + 0.3
    t[:, :, 1, :] = t[:, :, 0, :]  # a whole row of copies
    return t


def teacher_for(graph: dict, seed: int, **shape: int) -> torch.Tensor:
    """Copies for the tree, whose tie-break is strict; tie-free points for kNN, whose ties are unordered."""
    if graph["graph"] == "mst":
        return relu_teacher(seed, **shape)
    return randn(shape["B"], shape["C"], shape["H"], shape["W"], seed=seed)


# ----------------------------------------------------------------------------------------------------------------
# Against the float64 loop reference
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("graph", GRAPHS, ids=GRAPH_IDS)
@pytest.mark.parametrize("case", SHAPES, ids=SHAPE_IDS)
def test_neighborhood_contrast_matches_reference(case, graph, reduction):
    _, shape, extra = case
    s, t = pair(*shape, seed=31)
    knobs = with_generator({**graph, **extra})
    assert_matches_reference(neighborhood_contrast_loss, neighborhood_contrast_loss_reference, s, t,
                             reduction=reduction, **knobs)


# The tree orders tied edges strictly (docs/losses.md); kNN ties are unordered, as in the other losses, so "knn" is
# compared on copies only where no tie falls at the k-th neighbour (k = n - 1).
@pytest.mark.parametrize("graph", GRAPHS[:4] + GRAPHS[6:], ids=GRAPH_IDS[:4] + GRAPH_IDS[6:])
@pytest.mark.parametrize("seed", range(4))
def test_neighborhood_contrast_matches_reference_on_duplicate_teacher_points(graph, seed):
    s = randn(2, 3, 4, 5, seed=seed + 40)
    t = relu_teacher(seed)
    assert_matches_reference(neighborhood_contrast_loss, neighborhood_contrast_loss_reference, s, t,
                             reduction="none", **graph)
    assert_matches_reference(neighborhood_contrast_loss, neighborhood_contrast_loss_reference, s, t,
                             reduction="none", chunk_size=3, **graph)


def test_neighborhood_contrast_radius_beyond_the_diameter_gives_zero():
    # Every pair is within reach: M = 1 off the diagonal and NAC = 1 on both sides.
    s, t = pair(2, 3, 3, 4, 2, 3, 4, seed=32)
    value = neighborhood_contrast_loss(s, t, radius=11, reduction="none")  # n = 12: a tree has diameter <= 11
    torch.testing.assert_close(value, torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-15)
    assert neighborhood_contrast_loss(s, t, radius=1, reduction="none").min() > 0


# ----------------------------------------------------------------------------------------------------------------
# Hand-derived values
# ----------------------------------------------------------------------------------------------------------------


def test_neighborhood_contrast_four_points_on_a_line():
    # Teacher x = 0, 1, 3, 6: D(0,1)=1 < D(1,2)=2 < D(0,2)=3 = D(2,3)=3 (tie: (0,2) first, closes a cycle) < ...
    # Kruskal keeps (0,1), (1,2), (2,3): the path 0-1-2-3, hops(i, j) = |i - j|.
    #   radius 1: M rows 0:{1}  1:{0,2}  2:{1,3}  3:{2}
    #   radius 2: M rows 0:{1,2}  1:{0,2,3}  2:{0,1,3}  3:{1,2}
    #   knn, k=1: M rows 0:{1}  1:{0} (1 < 2)  2:{1} (2 < 3)  3:{2}
    # Q_t: q01=1 q02=9 q03=36 q12=4 q13=25 q23=9, row sums 46, 30, 22, 70.
    # Student x = 0, 1, 2, 3: Q_s q01=q12=q23=1, q02=q13=4, q03=9, row sums 14, 6, 6, 14.
    # radius 1: NAC_t = 1/46, 5/30, 13/22, 9/70; NAC_s = 1/14, 2/6, 2/6, 1/14.
    # radius 2: NAC_t = 10/46, 1, 1, 34/70; NAC_s = 5/14, 1, 1, 5/14.
    # knn k=1: NAC_t = 1/46, 1/30, 4/22, 9/70; NAC_s = 1/14, 1/6, 1/6, 1/14.   L = mean of the squared differences.
    teacher, student = [0, 1, 3, 6], [0, 1, 2, 3]
    cases = [
        ({"radius": 1}, {0: {1}, 1: {0, 2}, 2: {1, 3}, 3: {2}}),
        ({"radius": 2}, {0: {1, 2}, 1: {0, 2, 3}, 2: {0, 1, 3}, 3: {1, 2}}),
        ({"graph": "knn", "neighbors": 1}, {0: {1}, 1: {0}, 2: {1}, 3: {2}}),
    ]
    assert nac_values(teacher, cases[0][1]) == [Fraction(1, 46), Fraction(1, 6), Fraction(13, 22), Fraction(9, 70)]
    for knobs, mask in cases:
        expected = mean_squared(nac_values(student, mask), nac_values(teacher, mask))
        got = neighborhood_contrast_loss(line(*student), line(*teacher), **knobs).item()
        assert got == pytest.approx(expected, rel=1e-12), knobs
    assert neighborhood_contrast_loss(line(*student), line(*teacher), radius=3).item() == pytest.approx(0, abs=1e-15)


def test_neighborhood_contrast_tie_break_on_duplicate_points():
    # Teacher x = 0, 2, 0, 2, 5: points 0 and 2 coincide, so do 1 and 3. Edges by (D, min, max):
    #   (0,2) and (1,3) at D = sqrt(0 + 1e-12) first; then D = 2 ties four ways, (0,1) < (0,3) < (1,2) < (2,3):
    #   (0,1) joins the two pairs, the rest close cycles; then D = 3 ties (1,4) < (3,4): (1,4).
    # Tree (0,1), (0,2), (1,3), (1,4); radius 1 masks rows 0:{1,2}  1:{0,3,4}  2:{0}  3:{1}  4:{1}.
    # The copies must tie exactly however Q rounds: the same points shifted far from 0 and spread over two
    # rotated channels (the copies are copied after the rotation, so they stay bitwise equal).
    teacher, student = [0, 2, 0, 2, 5], [0, 1, 3, 4, 9]
    mask = {0: {1, 2}, 1: {0, 3, 4}, 2: {0}, 3: {1}, 4: {1}}
    expected = mean_squared(nac_values(student, mask), nac_values(teacher, mask))
    assert neighborhood_contrast_loss(line(*student), line(*teacher), radius=1).item() == pytest.approx(
        expected, rel=1e-10)
    angle = torch.tensor(0.7, dtype=torch.float64)
    rotated = torch.stack((angle.cos(), angle.sin())).view(1, 2, 1, 1) * line(*teacher) + 1000.3
    rotated[..., 2], rotated[..., 3] = rotated[..., 0], rotated[..., 1]
    for dtype in (torch.float64, torch.float32):
        got = neighborhood_contrast_loss(line(*student).to(dtype), rotated.to(dtype), radius=1).item()
        assert got == pytest.approx(expected, rel=1e-4 if dtype == torch.float32 else 1e-9), dtype
    # Listed in another order, the copies tie-break by their new indices: same tree up to renumbering here.
    perm = [4, 3, 2, 1, 0]
    flipped = neighborhood_contrast_loss(line(*student)[..., perm], line(*teacher)[..., perm], radius=1).item()
    reference = neighborhood_contrast_loss_reference(line(*student)[..., perm], line(*teacher)[..., perm],
                                                     **{**DEFAULTS, "radius": 1})
    assert flipped == pytest.approx(reference.item(), rel=1e-10)


def test_neighborhood_contrast_is_non_negative_and_zero_for_a_scaled_student():
    s, t = pair(3, 2, 4, 4, 4, 4, 4, seed=33)
    assert neighborhood_contrast_loss(s, t, reduction="none").min() >= 0
    rotated = torch.einsum("oc,bchw->bohw", torch.linalg.qr(randn(4, 4, seed=34))[0], t)
    assert neighborhood_contrast_loss(2.5 * rotated + 1.0, t).item() < 1e-12


# ----------------------------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("graph", [{"graph": "mst", "radius": 2}, {"graph": "knn", "neighbors": 2}], ids=["mst", "knn"])
@pytest.mark.parametrize("scope", ["image", "batch"])
@pytest.mark.parametrize("chunk_size", [None, 2])
def test_neighborhood_contrast_gradcheck(graph, scope, chunk_size):
    s, t = pair(2, 2, 3, 3, 3, 2, 3, seed=35)  # the student is pooled 3x3 -> 2x3
    assert gradcheck_student(neighborhood_contrast_loss, s, t, scope=scope, chunk_size=chunk_size, **graph)
    assert gradcheck_student(neighborhood_contrast_loss, s, t, scope=scope, max_points=5, seed=0, **graph)


@pytest.mark.parametrize("case", ["zero_student", "constant_student", "zero_teacher", "both_zero", "relu_teacher"])
def test_neighborhood_contrast_gradcheck_degenerate_maps(case):
    s, t = pair(2, 2, 3, 3, 3, 3, 3, seed=36)
    s, t = {
        "zero_student": (torch.zeros_like(s), t),
        "constant_student": (torch.full_like(s, 0.7), t),
        "zero_teacher": (s, torch.zeros_like(t)),
        "both_zero": (torch.zeros_like(s), torch.zeros_like(t)),
        "relu_teacher": (s, t.relu()),
    }[case]
    out = neighborhood_contrast_loss(s, t, reduction="none")
    assert torch.isfinite(out).all()
    # At a constant map every Q is 0 and S_i = 0 < 1e-12: the exact derivative is 0 by symmetry (moving a point by
    # +h or -h gives the same Q). h = 1e-3 keeps Q = h^2 far above the rounding of the expansion for 0.7-valued maps.
    eps = 1e-3 if case == "constant_student" else 1e-6
    for graph in ({"graph": "mst", "radius": 2}, {"graph": "knn", "neighbors": 3}):
        assert gradcheck_student(neighborhood_contrast_loss, s, t, eps=eps, **graph)


@pytest.mark.parametrize("graph", GRAPHS[:2] + GRAPHS[4:6], ids=GRAPH_IDS[:2] + GRAPH_IDS[4:6])
@pytest.mark.parametrize("scope", ["image", "batch"])
def test_neighborhood_contrast_equals_dense_autograd(graph, scope):
    s = randn(3, 4, 5, 4, seed=37).relu()  # duplicate student points at 0, as in real activations
    t = teacher_for(graph, 38, B=3, C=3, H=5, W=4)
    value, grad = value_and_grad(s, t, scope=scope, chunk_size=3, **graph)
    s_ref = s.detach().clone().requires_grad_(True)
    oracle_value = dense_neighborhood_contrast(s_ref, t, scope=scope, **graph)
    weights = torch.arange(1, oracle_value.numel() + 1, dtype=oracle_value.dtype)
    (oracle_grad,) = torch.autograd.grad((oracle_value * weights).sum(), s_ref)
    torch.testing.assert_close(value, oracle_value.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, oracle_grad, rtol=1e-7, atol=1e-10)


# ----------------------------------------------------------------------------------------------------------------
# Chunking, precision, devices
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("graph", GRAPHS[:3] + GRAPHS[4:6], ids=GRAPH_IDS[:3] + GRAPH_IDS[4:6])
@pytest.mark.parametrize("scope", ["image", "batch"])
def test_neighborhood_contrast_chunk_size_gives_identical_results(graph, scope):
    s = randn(3, 3, 5, 4, seed=39).relu()
    t = teacher_for(graph, 40, B=3, C=2, H=5, W=4)
    ref_value, ref_grad = value_and_grad(s, t, scope=scope, chunk_size=1 << 30, **graph)
    for chunk_size in (1, 3, 7, 20, 41, None):
        value, grad = value_and_grad(s, t, scope=scope, chunk_size=chunk_size, **graph)
        torch.testing.assert_close(value, ref_value, rtol=1e-11, atol=1e-13)
        torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("graph", GRAPHS[:2] + GRAPHS[4:6], ids=GRAPH_IDS[:2] + GRAPH_IDS[4:6])
def test_neighborhood_contrast_bf16_autocast_equals_no_autocast(graph):
    s, t = pair(2, 4, 4, 4, 3, 4, 4, seed=41, dtype=torch.float32)
    plain = neighborhood_contrast_loss(s, t, reduction="none", **graph)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = neighborhood_contrast_loss(s, t, reduction="none", **graph)
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=1e-6, atol=1e-7)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("graph", GRAPHS[:2] + GRAPHS[4:6], ids=GRAPH_IDS[:2] + GRAPH_IDS[4:6])
def test_neighborhood_contrast_cuda_equals_cpu(graph, dtype):
    s = randn(3, 8, 8, 8, seed=42, dtype=dtype).relu()
    t = teacher_for(graph, 43, B=3, C=6, H=8, W=8).to(dtype)
    for scope in ("image", "batch"):
        cpu = value_and_grad(s, t, scope=scope, **graph)
        cuda = value_and_grad(s.cuda(), t.cuda(), scope=scope, **graph)
        assert cuda[0].is_cuda
        torch.testing.assert_close(cuda[0].cpu(), cpu[0], **tol(dtype))
        torch.testing.assert_close(cuda[1].cpu(), cpu[1], rtol=10 * tol(dtype)["rtol"], atol=10 * tol(dtype)["atol"])


# ----------------------------------------------------------------------------------------------------------------
# Non-finite inputs
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("graph", ["mst", "knn"])
@pytest.mark.parametrize("where", ["student_nan", "student_inf", "teacher_nan", "teacher_inf"])
def test_neighborhood_contrast_non_finite_point_gives_a_non_finite_set_value(graph, where):
    s, t = pair(2, 3, 4, 4, 2, 4, 4, seed=44)
    x = s if where.startswith("student") else t
    x[1, 0, 2, 3] = float("nan") if where.endswith("nan") else float("inf")
    value = neighborhood_contrast_loss(s, t, graph=graph, reduction="none")
    assert torch.isfinite(value[0]) and not torch.isfinite(value[1])
    assert not torch.isfinite(neighborhood_contrast_loss(s, t, graph=graph, scope="batch"))


# ----------------------------------------------------------------------------------------------------------------
# Errors and the module
# ----------------------------------------------------------------------------------------------------------------


def _knob_errors(owner: str):
    yield {"graph": "tree"}, ValueError, f"Unknown graph 'tree' for {owner}; choose one of ['mst', 'knn']."
    yield {"graph": None}, ValueError, f"Unknown graph None for {owner}; choose one of ['mst', 'knn']."
    yield {"radius": 0}, ValueError, f"{owner}: radius must be an integer >= 1 (tree hops), got 0. The authors used 5."
    yield {"radius": -2}, ValueError, f"{owner}: radius must be an integer >= 1 (tree hops), got -2."
    yield {"radius": 1.5}, TypeError, f"{owner}: radius must be an integer >= 1 (tree hops), got 1.5 (float)."
    yield {"radius": True}, TypeError, f"{owner}: radius must be an integer >= 1 (tree hops), got True (bool)."
    yield {"radius": "5"}, TypeError, f"{owner}: radius must be an integer >= 1 (tree hops), got '5' (str)."
    yield {"neighbors": 0}, ValueError, f"{owner}: neighbors must be >= 1, got 0. Use a positive neighbourhood size."
    yield {"neighbors": 2.5}, TypeError, f"{owner}: neighbors must be an integer >= 1, got 2.5 (float)."
    yield {"neighbors": None}, TypeError, f"{owner}: neighbors must be an integer >= 1, got None (NoneType)."


@pytest.mark.parametrize(("knobs", "exc", "message"), list(_knob_errors(OWNER)))
def test_neighborhood_contrast_knob_error_messages(knobs, exc, message):
    s, t = pair(2, 3, 4, 4, 2, 4, 4)
    with pytest.raises(exc, match=re.escape(message)):
        neighborhood_contrast_loss(s, t, **knobs)


@pytest.mark.parametrize(("knobs", "exc", "message"), list(_knob_errors(MODULE)))
def test_neighborhood_contrast_module_constructor_errors(knobs, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        GeoKTNeighborhoodContrastLoss("layer2", "layer2", **knobs)


def test_neighborhood_contrast_module_repr_and_equality():
    module = GeoKTNeighborhoodContrastLoss("layer2", "layer3", graph="knn", neighbors=4, chunk_size=16)
    assert repr(module) == (
        "GeoKTNeighborhoodContrastLoss(student='layer2:output', teacher='layer3:output', graph='knn', radius=5, "
        "neighbors=4, max_points=None, scope='image', reduction='mean', chunk_size=16)"
    )
    s, t = pair(2, 3, 4, 4, 2, 4, 4, seed=45)
    value = module({"layer2": {"output": s}}, {"layer3": {"output": t}})
    torch.testing.assert_close(value, neighborhood_contrast_loss(s, t, graph="knn", neighbors=4), rtol=0, atol=0)
