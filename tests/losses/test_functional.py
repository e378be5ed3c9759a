"""Checklist tests of the functional API (docs/contributing.md) for every loss of the LossSpec table.

Every value is compared against ``geokt_plugin.testing.reference`` (naive loops written from docs/losses.md) or a
closed form derived by hand in the comments. Shapes stay tiny so the whole file runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import inspect
import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geokt_plugin import functional as GF
from geokt_plugin.losses import LOSS_SPECS
from geokt_plugin.testing import LargestTensorSpy, pair, randn, reference, tol
from geokt_plugin.testing.contract import assert_matches_reference, call_with_fresh_generator, gradcheck_student
from geokt_plugin.testing.paths import PATHS, kernel_path

LOSS_NAMES = tuple(LOSS_SPECS)

REDUCTIONS = ("mean", "sum", "none")

# (id, (B, Cs, Hs, Ws, Ct, Ht, Wt), knob overrides). A "neighbors" override applies to the losses that have it.
CASES = [
    ("same_hw_cs_ne_ct", (2, 3, 4, 4, 5, 4, 4), {}),
    ("hs_ne_ht_ws_ne_wt", (2, 4, 6, 5, 3, 4, 7), {"neighbors": 3}),
    ("k_ge_n", (2, 2, 2, 2, 3, 2, 2), {"neighbors": 8}),  # N = 4, so k clips to 3
    ("scope_batch", (3, 3, 3, 3, 2, 4, 3), {"scope": "batch", "neighbors": 5}),
    ("max_points_image", (2, 3, 5, 5, 4, 6, 6), {"max_points": 7, "neighbors": 3}),
    ("max_points_batch", (2, 3, 5, 4, 4, 5, 4), {"max_points": 6, "scope": "batch", "neighbors": 4}),
    ("single_image", (1, 1, 3, 3, 1, 3, 3), {"neighbors": 2}),
]
CASE_IDS = [c[0] for c in CASES]


def knobs_for(name: str, overrides: dict, *, seed: int = 11) -> dict:
    """The loss's default knobs updated by ``overrides``; a seeded generator whenever sampling is on."""
    knobs = dict(LOSS_SPECS[name].knobs)
    for key, value in overrides.items():
        if key == "neighbors" and "neighbors" not in knobs:
            continue
        knobs[key] = value
    if knobs.get("max_points") is not None:
        knobs["generator"] = torch.Generator().manual_seed(seed)
    return knobs


def call(fn, student, teacher, knobs: dict, **extra):
    """Call ``fn`` with a fresh copy of the generator state, so functional and reference draw the same positions."""
    return call_with_fresh_generator(fn, student, teacher, **knobs, **extra)


# ----------------------------------------------------------------------------------------------------------------
# Smoke and cardinality
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_functional_smoke_every_reduction(loss_name, case, reduction):
    _, shape, overrides = case
    s, t = pair(*shape, dtype=torch.float32)
    s.requires_grad_(True)
    out = call(LOSS_SPECS[loss_name].function, s, t, knobs_for(loss_name, overrides), reduction=reduction)
    n_sets = 1 if overrides.get("scope") == "batch" else shape[0]
    assert out.shape == ((n_sets,) if reduction == "none" else ())
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("scope", ["image", "batch"])
def test_functional_smoke_distance_neighbors_none(scope, reduction):
    s, t = pair(2, 3, 5, 4, 2, 4, 6, dtype=torch.float32)
    s.requires_grad_(True)
    out = GF.local_distance_loss(s, t, neighbors=None, scope=scope, reduction=reduction)
    assert out.shape == (((2,) if scope == "image" else (1,)) if reduction == "none" else ())
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("scope, expected", [("image", (3,)), ("batch", (1,))])
def test_functional_cardinality_none_gives_per_set_values(loss_name, scope, expected):
    s, t = pair(3, 2, 3, 3, 4, 3, 3)
    fn = LOSS_SPECS[loss_name].function
    per_set = fn(s, t, scope=scope, reduction="none")
    assert per_set.shape == expected
    torch.testing.assert_close(fn(s, t, scope=scope, reduction="mean"), per_set.mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(fn(s, t, scope=scope, reduction="sum"), per_set.sum(), rtol=1e-12, atol=0)
    assert fn(s, t, scope=scope).shape == ()  # default reduction is "mean"


def test_functional_image_scope_values_are_per_image(loss_name):
    # With scope "image" the value of image b depends on image b alone.
    s, t = pair(3, 2, 3, 4, 3, 3, 4)
    fn = LOSS_SPECS[loss_name].function
    per_set = fn(s, t, reduction="none")
    for b in range(3):
        torch.testing.assert_close(fn(s[b : b + 1], t[b : b + 1], reduction="none"), per_set[b : b + 1])


# ----------------------------------------------------------------------------------------------------------------
# Against the naive reference (float64, 1e-6 relative)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_functional_matches_reference_float64(loss_name, case, reduction):
    _, shape, overrides = case
    s, t = pair(*shape, seed=3)
    spec = LOSS_SPECS[loss_name]
    knobs = knobs_for(loss_name, overrides)
    assert_matches_reference(spec.function, spec.reference_function(), s, t, **knobs, reduction=reduction)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", [CASES[1], CASES[5]], ids=[CASE_IDS[1], CASE_IDS[5]])
def test_functional_matches_reference_on_both_kernel_paths(loss_name, case, path):
    # Split rows and gradients on: the shape class the compiled chunking tests already compiled.
    _, shape, overrides = case
    s, t = pair(*shape, seed=3)
    spec = LOSS_SPECS[loss_name]
    with kernel_path(path):
        assert_matches_reference(spec.function, spec.reference_function(), s.requires_grad_(True), t,
                                 reduction="none", chunk_size=3, **knobs_for(loss_name, overrides))


@pytest.mark.parametrize("scope", ["image", "batch"])
def test_functional_distance_neighbors_none_matches_reference(scope):
    s, t = pair(2, 3, 4, 3, 2, 3, 5, seed=5)
    got = GF.local_distance_loss(s, t, neighbors=None, scope=scope, reduction="none")
    want = LOSS_SPECS["distance"].reference_function()(s, t, neighbors=None, scope=scope, reduction="none")
    torch.testing.assert_close(got, want, **tol(torch.float64))


def test_functional_distance_all_neighbors_equals_neighbors_none():
    # k = n - 1 selects every j != i and the factor 1/(n k) becomes 1/(n (n-1)): the neighbors=None definition.
    s, t = pair(2, 3, 3, 3, 4, 3, 3, seed=6)
    everyone = GF.local_distance_loss(s, t, neighbors=None, reduction="none")
    torch.testing.assert_close(GF.local_distance_loss(s, t, neighbors=8, reduction="none"), everyone)
    torch.testing.assert_close(GF.local_distance_loss(s, t, neighbors=100, reduction="none"), everyone)


@pytest.mark.parametrize("name", ["distance", "rank"])
def test_functional_k_clips_to_n_minus_1(name):
    s, t = pair(2, 2, 2, 3, 3, 2, 3, seed=8)  # n = 6
    fn = LOSS_SPECS[name].function
    torch.testing.assert_close(fn(s, t, neighbors=5, reduction="none"), fn(s, t, neighbors=50, reduction="none"))


def test_functional_float32_matches_reference(loss_name):
    s, t = pair(2, 4, 4, 4, 3, 5, 3, seed=9, dtype=torch.float32)
    spec = LOSS_SPECS[loss_name]
    got = spec.function(s, t, reduction="none")
    want = spec.reference_function()(s, t, reduction="none", **spec.knobs).float()
    torch.testing.assert_close(got, want, **tol(torch.float32))


_shape_strategy = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 4),  # Cs
    st.integers(1, 5),  # Hs
    st.integers(2, 5),  # Ws (>= 2 so every aligned set has >= 2 points)
    st.integers(1, 4),  # Ct
    st.integers(1, 5),  # Ht
    st.integers(2, 5),  # Wt
)


@pytest.mark.parametrize("name", LOSS_NAMES)
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    shape=_shape_strategy,
    seed=st.integers(0, 2**16),
    neighbors=st.integers(1, 12),
    scope=st.sampled_from(["image", "batch"]),
    max_points=st.one_of(st.none(), st.integers(2, 12)),
    scale=st.floats(0.05, 4.0),
    chunk_size=st.sampled_from([None, 1, 2, 3, 5, 8, 64]),
)
def test_functional_matches_reference_hypothesis(name, shape, seed, neighbors, scope, max_points, scale, chunk_size):
    s, t = pair(*shape, seed=seed)
    knobs = knobs_for(name, {"neighbors": neighbors, "scope": scope, "max_points": max_points}, seed=seed)
    spec = LOSS_SPECS[name]
    # chunk_size is an implementation knob (not in docs/losses.md): whatever it is, the value is the definition's.
    if chunk_size is not None and "chunk_size" in inspect.signature(spec.function).parameters:
        knobs["chunk_size"] = chunk_size
    for knob in ("bandwidth", "temperature"):  # the losses' scale knobs
        if knob in knobs:
            knobs[knob] = scale
    got = call(spec.function, s, t, knobs, reduction="none")
    knobs.pop("chunk_size", None)
    want = call(spec.reference_function(), s, t, knobs, reduction="none")
    torch.testing.assert_close(got, want, **tol(torch.float64))


# ----------------------------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------------------------


def test_functional_sampling_is_reproducible_with_a_seeded_generator(loss_name):
    s, t = pair(2, 3, 6, 6, 2, 6, 6, seed=12)
    fn = LOSS_SPECS[loss_name].function
    a = fn(s, t, max_points=9, generator=torch.Generator().manual_seed(1), reduction="none")
    b = fn(s, t, max_points=9, generator=torch.Generator().manual_seed(1), reduction="none")
    c = fn(s, t, max_points=9, generator=torch.Generator().manual_seed(2), reduction="none")
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)


def test_functional_sampling_off_when_n_does_not_exceed_max_points(loss_name):
    s, t = pair(2, 3, 3, 3, 2, 3, 3, seed=13)  # N = 9
    fn = LOSS_SPECS[loss_name].function
    g = torch.Generator().manual_seed(4)
    state = g.get_state()
    torch.testing.assert_close(fn(s, t, max_points=9, generator=g), fn(s, t))
    assert torch.equal(g.get_state(), state)  # no draw at all


def test_functional_sampling_uses_the_same_positions_for_every_image_and_both_networks(loss_name):
    # Images identical up to the batch index must keep identical values after sampling (same positions per image),
    # and student == teacher must stay a zero-loss pair for distance and KL (same positions for both networks).
    x = randn(1, 3, 5, 5, seed=14).expand(3, 3, 5, 5)
    fn = LOSS_SPECS[loss_name].function
    per_image = fn(x, 2.0 * x, max_points=6, generator=torch.Generator().manual_seed(5), reduction="none")
    torch.testing.assert_close(per_image, per_image[:1].expand(3))
    if LOSS_SPECS[loss_name].zero_for_similar_maps:
        assert per_image.abs().max() < 1e-9


# ----------------------------------------------------------------------------------------------------------------
# Hand-derived values
# ----------------------------------------------------------------------------------------------------------------


def line(*coords: float) -> torch.Tensor:
    """1-channel points on a line, as a (1, 1, 1, n) map: point n is coords[n]."""
    return torch.tensor(coords, dtype=torch.float64).view(1, 1, 1, -1)


def test_functional_distance_closed_form_three_points():
    # Teacher on a line at 0, 1, 3: distances d01 = 1, d02 = 3, d12 = 2; mean s = 2, so Dn_t = (0.5, 1.5, 1.0).
    # Student at 0, 1, 2: d = (1, 2, 1), s = 4/3, Dn_s = (0.75, 1.5, 0.75).
    # Differences Dn_s - Dn_t per pair: 01: +0.25, 02: 0, 12: -0.25, all in Huber's quadratic part (x^2 / 2).
    # neighbors=None: 6 ordered pairs, sum = 2 * (0.03125 + 0 + 0.03125) = 0.125, divided by n(n-1) = 6 -> 1/48.
    # neighbors=1: teacher 1-NN of 0 is 1, of 1 is 0 (1 < 2), of 2 is 1 (2 < 3): three pairs each 0.03125,
    # divided by n k = 3 -> 1/32. (The +1e-12 under the square root shifts these by ~1e-13.)
    s, t = line(0, 1, 2), line(0, 1, 3)
    assert GF.local_distance_loss(s, t, neighbors=None).item() == pytest.approx(1 / 48, rel=1e-10)
    assert GF.local_distance_loss(s, t, neighbors=1).item() == pytest.approx(1 / 32, rel=1e-10)


def test_functional_distance_closed_form_huber_linear_part_and_eps():
    # Teacher at 0, 1, 2: Dn_t = (0.75, 1.5, 0.75) for pairs (01, 02, 12).
    # Student at 0, 1, 0: points 0 and 2 coincide, so D02 = sqrt(0 + 1e-12) = eps with eps = 1e-6 (the definition's
    # epsilon), D01 = D12 = 1 (to 1e-12), s = (2 + eps) / 3, Dn_s = (3/(2+eps), 3 eps/(2+eps), 3/(2+eps)).
    # Pair 02 differs by 3 eps/(2+eps) - 1.5, |x| >= 1: Huber's linear part |x| - 0.5.
    # Pairs 01 and 12 differ by a = 3/(2+eps) - 0.75 (quadratic part a^2 / 2).
    # neighbors=None: L = 2 * (a^2/2 + a^2/2 + (1.5 - 3 eps/(2+eps) - 0.5)) / 6, about 25/48.
    eps = 1e-6
    a = 3 / (2 + eps) - 0.75
    expected = 2 * (a * a + (1.0 - 3 * eps / (2 + eps))) / 6
    got = GF.local_distance_loss(line(0, 1, 0), line(0, 1, 2), neighbors=None).item()
    assert got == pytest.approx(expected, rel=1e-9)
    assert got == pytest.approx(25 / 48, rel=1e-5)


def test_functional_kl_closed_form_equilateral_teacher():
    # Teacher: an equilateral triangle in 2-D, every Dn_t = 1, so P_t[.|i] is uniform (1/2, 1/2) on each row.
    # Student at 0, 1, 2 on a line: Dn_s = (0.75, 1.5, 0.75) for pairs (01, 02, 12).
    # Row 0: logits -0.5625/b and -2.25/b; with b = 1.6875 / ln 3 their difference is ln 3, so P_s = (3/4, 1/4).
    # KL(uniform || (3/4, 1/4)) = 1/2 ln(2/3) + 1/2 ln 2 = 1/2 ln(4/3). Row 2 is row 0 mirrored: same value.
    # Row 1: both neighbours at 0.75, P_s uniform, KL = 0.   L = (1/3) * ln(4/3).
    teacher = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]], dtype=torch.float64)
    teacher = teacher.T.reshape(1, 2, 1, 3)
    got = GF.neighbor_kl_loss(line(0, 1, 2), teacher, bandwidth=1.6875 / math.log(3)).item()
    assert got == pytest.approx(math.log(4 / 3) / 3, rel=1e-9)


def test_functional_rank_closed_form_three_points():
    # Teacher at 0, 1, 3: 1-NN sets K(0) = {1}, K(1) = {0}, K(2) = {1}.
    # Student at 0, 1, 2: Dn_s = (0.75, 1.5, 0.75); with T = 0.75 / ln 3 the logits -Dn/T give
    # row 0: q(1|0) = 3/4, q(2|0) = 1/4; row 1: q(0|1) = q(2|1) = 1/2; row 2: q(1|2) = 3/4, q(0|2) = 1/4.
    # k = 1: L = (1/3) * (-ln 1) * 3 - (1/3) * (ln 3/4 + ln 1/2 + ln 3/4) = (2 ln(4/3) + ln 2) / 3.
    # k = 2 (= n - 1, also what neighbors=5 clips to): K(i) is both others, row i gives
    # -ln 2 - (ln q1 + ln q2)/2: row 0 -> -ln 2 - (ln 3/4 + ln 1/4)/2 = 1/2 ln(4/3), row 1 -> 0, row 2 as row 0.
    # L = ln(4/3) / 3.
    s, t = line(0, 1, 2), line(0, 1, 3)
    T = 0.75 / math.log(3)
    assert GF.neighbor_rank_loss(s, t, neighbors=1, temperature=T).item() == pytest.approx(
        (2 * math.log(4 / 3) + math.log(2)) / 3, rel=1e-9
    )
    for k in (2, 5):
        assert GF.neighbor_rank_loss(s, t, neighbors=k, temperature=T).item() == pytest.approx(
            math.log(4 / 3) / 3, rel=1e-9
        )


def test_functional_two_points_have_no_geometry():
    # n = 2: the only distance is its own mean, so Dn = 1 in both networks: distance and KL give 0, and the rank
    # loss with k = 1 has a single candidate, q = 1, L = -ln 1 - ln 1 = 0.
    s, t = line(0, 5), line(0, 0.1)
    for name in LOSS_NAMES:
        assert LOSS_SPECS[name].function(s, t).item() == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------------------------
# Layout, precision and autocast
# ----------------------------------------------------------------------------------------------------------------


def _non_contiguous_views(x: torch.Tensor) -> dict[str, torch.Tensor]:
    B, C, H, W = x.shape
    transposed = x.transpose(2, 3).contiguous().transpose(2, 3)  # same values, W-major strides
    strided = torch.zeros(B, 2 * C, H, 2 * W, dtype=x.dtype)
    strided[:, ::2, :, ::2] = x
    permuted = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    return {
        "channels_last": x.contiguous(memory_format=torch.channels_last),
        "transposed": transposed,
        "strided_slice": strided[:, ::2, :, ::2],
        "permuted": permuted,
    }


@pytest.mark.parametrize("view", ["channels_last", "transposed", "strided_slice", "permuted"])
def test_functional_non_contiguous_input(loss_name, view):
    s, t = pair(2, 3, 4, 5, 2, 5, 4, seed=21)
    s_v, t_v = _non_contiguous_views(s)[view], _non_contiguous_views(t)[view]
    assert not (s_v.is_contiguous() and t_v.is_contiguous())
    fn = LOSS_SPECS[loss_name].function
    torch.testing.assert_close(fn(s_v, t_v, reduction="none"), fn(s, t, reduction="none"), **tol(torch.float64))
    s_v = s_v.detach().requires_grad_(True)
    fn(s_v, t_v).backward()
    assert s_v.grad is not None and torch.isfinite(s_v.grad).all()


def test_functional_autocast_bf16_cpu_gives_the_same_value(loss_name):
    s, t = pair(2, 4, 4, 4, 3, 4, 4, seed=22, dtype=torch.float32)
    fn = LOSS_SPECS[loss_name].function
    plain = fn(s, t, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = fn(s, t, reduction="none")
    assert under.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_functional_low_precision_input_is_computed_in_fp32(loss_name, low):
    s, t = pair(2, 4, 4, 4, 3, 4, 4, seed=23, dtype=low)
    fn = LOSS_SPECS[loss_name].function
    out = fn(s, t, reduction="none")
    assert out.dtype == torch.float32
    # Upcast first, then the whole geometry in fp32: identical to feeding the upcast tensors.
    torch.testing.assert_close(out, fn(s.float(), t.float(), reduction="none"), rtol=1e-6, atol=1e-7)
    mixed = fn(s, t.float(), reduction="none")
    assert mixed.dtype == torch.float32


@pytest.mark.parametrize("dtypes", [(torch.float64, torch.float64), (torch.float64, torch.float32),
                                    (torch.float32, torch.float64), (torch.bfloat16, torch.float64)])
def test_functional_float64_inputs_give_float64_output(loss_name, dtypes):
    s, t = pair(2, 3, 3, 4, 2, 3, 4, seed=24)
    s, t = s.to(dtypes[0]), t.to(dtypes[1])
    out = LOSS_SPECS[loss_name].function(s, t)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, LOSS_SPECS[loss_name].function(s.double(), t.double()), rtol=1e-12, atol=0)


def test_functional_teacher_receives_no_gradient(loss_name):
    s, t = pair(2, 3, 4, 4, 2, 4, 4, seed=25)
    s.requires_grad_(True)
    t.requires_grad_(True)
    LOSS_SPECS[loss_name].function(s, t).backward()
    assert t.grad is None
    assert s.grad is not None and s.grad.abs().sum() > 0


# ----------------------------------------------------------------------------------------------------------------
# gradcheck (float64)
# ----------------------------------------------------------------------------------------------------------------

# Knobs for the tiny gradcheck inputs; a loss not listed here is checked with its defaults.
_GRAD_KNOBS = {"distance": {"neighbors": 3}, "kl": {"bandwidth": 0.5}, "rank": {"neighbors": 3, "temperature": 0.5}}


def _gradcheck(
    name: str, s: torch.Tensor, t: torch.Tensor, *, seed: int | None = None, eps: float = 1e-6, **extra
) -> bool:
    """float64 gradcheck w.r.t. the student; with ``seed``, every evaluation samples the same positions."""
    knobs = {**_GRAD_KNOBS.get(name, {}), **extra}
    return gradcheck_student(LOSS_SPECS[name].function, s, t, seed=seed, eps=eps, **knobs)


def test_functional_gradcheck(loss_name):
    s, t = pair(2, 2, 3, 3, 3, 2, 3, seed=26)  # student pooled 3x3 -> 2x3
    assert _gradcheck(loss_name, s, t)


def test_functional_gradcheck_scope_batch_and_sampling(loss_name):
    s, t = pair(2, 2, 3, 3, 2, 3, 3, seed=27)
    assert _gradcheck(loss_name, s, t, scope="batch")
    assert _gradcheck(loss_name, s, t, max_points=5, seed=0)


def test_functional_gradcheck_distance_neighbors_none():
    s, t = pair(1, 2, 3, 3, 3, 3, 3, seed=28)
    fn = GF.local_distance_loss
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: fn(x, t, neighbors=None), (s,), eps=1e-6, atol=1e-5, rtol=1e-3)


def _degenerate_maps() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    s, t = pair(2, 2, 3, 3, 3, 3, 3, seed=29)
    dup = s.clone()
    dup[..., 1] = dup[..., 0]  # positions (h, 0) and (h, 1) are the same point
    return {
        "zero_student": (torch.zeros_like(s), t),
        "constant_student": (torch.full_like(s, 0.7), t),
        "constant_teacher": (s, torch.full_like(t, -1.3)),
        "both_zero": (torch.zeros_like(s), torch.zeros_like(t)),
        "duplicate_points": (dup, t),
    }


@pytest.mark.parametrize("case", ["zero_student", "constant_student", "constant_teacher", "both_zero",
                                  "duplicate_points"])
def test_functional_gradcheck_near_degenerate(loss_name, case):
    s, t = _degenerate_maps()[case]
    fn = LOSS_SPECS[loss_name].function
    out = fn(s, t, reduction="none", **_GRAD_KNOBS.get(loss_name, {}))
    assert torch.isfinite(out).all()
    # A constant non-zero student is where the definition's eps lives: moving one point by h gives Q = h^2, and
    # D = sqrt(h^2 + 1e-12) is far from linear for h ~ 1e-6, while the expansion ||a||^2 + ||b||^2 - 2<a, b> of
    # O(1) values leaves ~1e-16 of rounding in Q. Central differences with h = 1e-6 then measure that rounding
    # (~1e-4 relative change of D), not the derivative. The exact derivative there is 0 by symmetry (Q = h^2 for
    # +h and -h); h = 1e-3 puts Q far above both the eps and the rounding and checks exactly that. Zero maps are
    # exact in floating point, so they keep h = 1e-6.
    eps = 1e-3 if case == "constant_student" else 1e-6
    assert _gradcheck(loss_name, s, t, eps=eps)


# ----------------------------------------------------------------------------------------------------------------
# Memory: scope "image" never builds a (B*N)^2 matrix
# ----------------------------------------------------------------------------------------------------------------



@pytest.mark.parametrize("scope", ["image", "batch"])
def test_functional_image_scope_never_builds_a_batch_squared_matrix(loss_name, scope):
    # B = 8 images of N = 16 points: per-image matrices hold B*N*N = 2048 entries, a (B*N)^2 matrix 16384.
    # Every ATen output (forward and backward) is inspected, however the distances are computed.
    B, C, H, W = 8, 3, 4, 4
    s, t = pair(B, C, H, W, C, H, W, seed=30)
    s.requires_grad_(True)
    spy = LargestTensorSpy()
    with spy:
        LOSS_SPECS[loss_name].function(s, t, scope=scope).backward()
    BN = B * H * W
    if scope == "image":
        assert spy.largest < BN * BN // 2, f"image scope built a tensor of {spy.largest} elements"
    else:  # positive control: the spy does see the batch-scope (B*N)^2 matrices
        assert spy.largest >= BN * BN


# ----------------------------------------------------------------------------------------------------------------
# Error messages
# ----------------------------------------------------------------------------------------------------------------

_OWNERS = {name: spec.owner for name, spec in LOSS_SPECS.items()}


def _input_errors(owner: str):
    good = randn(2, 3, 4, 4)
    yield [1.0, 2.0], good, TypeError, f"{owner}: the student feature map must be a torch.Tensor, got list."
    yield good, None, TypeError, f"{owner}: the teacher feature map must be a torch.Tensor, got NoneType."
    yield (
        randn(2, 3, 16), good, ValueError,
        f"{owner}: expected 4-D feature maps (B, C, H, W), got student (2, 3, 16) and teacher (2, 3, 4, 4). "
        "Hook a convolutional layer's output, not a pooled or flattened one.",
    )
    yield (
        good, randn(2, 10), ValueError,
        f"{owner}: expected 4-D feature maps (B, C, H, W), got student (2, 3, 4, 4) and teacher (2, 10).",
    )
    yield (
        good, randn(3, 3, 4, 4), ValueError,
        f"{owner}: batch sizes differ, student (2, 3, 4, 4) vs teacher (3, 3, 4, 4). "
        "Both networks must see the same batch.",
    )
    yield (
        torch.ones(2, 3, 4, 4, dtype=torch.int64), good, TypeError,
        f"{owner}: feature maps must be floating point, got student torch.int64 and teacher torch.float64.",
    )
    yield (
        good, torch.ones(2, 3, 4, 4, dtype=torch.bool), TypeError,
        f"{owner}: feature maps must be floating point, got student torch.float64 and teacher torch.bool.",
    )
    yield (
        good, torch.ones(2, 3, 4, 4, dtype=torch.complex64), TypeError,
        f"{owner}: feature maps must be floating point, got student torch.float64 and teacher torch.complex64.",
    )
    yield (
        good.to_sparse(), good, TypeError,
        f"{owner}: the student feature map is a torch.sparse_coo tensor (shape (2, 3, 4, 4)); the losses need a "
        "dense (torch.strided) tensor. Call .to_dense() on it first.",
    )
    yield (
        good, torch.empty(2, 3, 4, 4, device="meta"), ValueError,
        f"{owner}: the teacher feature map is on the meta device (shape (2, 3, 4, 4), no data); pass a tensor on a "
        "real device (cpu, cuda).",
    )
    yield (
        randn(0, 3, 4, 4), randn(0, 3, 4, 4), ValueError,
        f"{owner}: student has batch size 0 (shape (0, 3, 4, 4)); a feature map needs B >= 1.",
    )
    yield (
        randn(2, 0, 4, 4), good, ValueError,
        f"{owner}: student has 0 channels (shape (2, 0, 4, 4)); a feature map needs C >= 1.",
    )
    yield (
        good, randn(2, 0, 4, 4), ValueError,
        f"{owner}: teacher has 0 channels (shape (2, 0, 4, 4)); a feature map needs C >= 1.",
    )
    yield (
        randn(2, 3, 1, 1), randn(2, 3, 4, 4), ValueError,
        f"{owner}: a point set needs at least 2 local features, but student (2, 3, 1, 1) and teacher (2, 3, 4, 4) "
        "align to 1x1 positions (scope='image', batch 2). Hook an earlier layer with a larger feature map, "
        "or use scope 'batch'.",
    )


_INPUT_ERROR_CASES = [(name, *case) for name in LOSS_NAMES for case in _input_errors(_OWNERS[name])]


@pytest.mark.parametrize(
    "name, student, teacher, exc, message",
    _INPUT_ERROR_CASES,
    ids=[f"{c[0]}-{c[4].split(': ', 1)[1][:30]}" for c in _INPUT_ERROR_CASES],
)
def test_functional_input_error_messages(name, student, teacher, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        LOSS_SPECS[name].function(student, teacher)


def test_functional_single_point_batch_scope_error_names_the_scope(loss_name):
    owner = _OWNERS[loss_name]
    message = (
        f"{owner}: a point set needs at least 2 local features, but student (1, 3, 1, 1) and teacher (1, 2, 1, 1) "
        "align to 1x1 positions (scope='batch', batch 1)."
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        LOSS_SPECS[loss_name].function(randn(1, 3, 1, 1), randn(1, 2, 1, 1), scope="batch")
    # Two 1x1 images in one batch-scope set are 2 points: valid.
    assert torch.isfinite(LOSS_SPECS[loss_name].function(randn(2, 3, 1, 1), randn(2, 2, 1, 1), scope="batch"))


def _knob_errors(name: str):
    owner = _OWNERS[name]
    yield {"scope": "pixel"}, ValueError, f"Unknown scope 'pixel' for {owner}; choose one of ['image', 'batch']."
    yield {"scope": None}, ValueError, f"Unknown scope None for {owner}; choose one of ['image', 'batch']."
    yield (
        {"reduction": "avg"}, ValueError, f"Unknown reduction 'avg' for {owner}; choose one of ['mean', 'sum', 'none']."
    )
    yield (
        {"reduction": "batchmean"}, ValueError,
        f"Unknown reduction 'batchmean' for {owner}; choose one of ['mean', 'sum', 'none'].",
    )
    yield (
        {"max_points": 1}, ValueError,
        f"{owner}: max_points must be None or an integer >= 2, got 1. A point set needs at least 2 local features.",
    )
    yield (
        {"max_points": 8.0}, TypeError, f"{owner}: max_points must be None or an integer >= 2, got 8.0 (float)."
    )
    yield (
        {"max_points": True}, TypeError, f"{owner}: max_points must be None or an integer >= 2, got True (bool)."
    )
    yield (
        {"max_points": 4, "generator": 0}, TypeError,
        f"{owner}: generator must be None or a torch.Generator, got int.",
    )
    yield {"generator": "seed"}, TypeError, f"{owner}: generator must be None or a torch.Generator, got str."
    if name in ("distance", "rank"):
        allowed = "an integer >= 1 or None" if name == "distance" else "an integer >= 1"
        yield (
            {"neighbors": 0}, ValueError, f"{owner}: neighbors must be >= 1, got 0. Use a positive neighbourhood size."
        )
        yield {"neighbors": -3}, ValueError, f"{owner}: neighbors must be >= 1, got -3."
        yield {"neighbors": 2.5}, TypeError, f"{owner}: neighbors must be {allowed}, got 2.5 (float)."
        yield {"neighbors": True}, TypeError, f"{owner}: neighbors must be {allowed}, got True (bool)."
    if name == "rank":
        yield {"neighbors": None}, TypeError, f"{owner}: neighbors must be an integer >= 1, got None (NoneType)."
    knob = {"kl": "bandwidth", "rank": "temperature"}.get(name)
    if knob is not None:
        yield {knob: 0.0}, ValueError, f"{owner}: {knob} must be a finite number > 0, got 0.0."
        yield {knob: -1}, ValueError, f"{owner}: {knob} must be a finite number > 0, got -1."
        yield {knob: float("inf")}, ValueError, f"{owner}: {knob} must be a finite number > 0, got inf."
        yield {knob: float("nan")}, ValueError, f"{owner}: {knob} must be a finite number > 0, got nan."
        yield {knob: "0.5"}, TypeError, f"{owner}: {knob} must be a positive number, got '0.5' (str)."
        yield {knob: None}, TypeError, f"{owner}: {knob} must be a positive number, got None (NoneType)."


_KNOB_ERROR_CASES = [(name, *case) for name in LOSS_NAMES for case in _knob_errors(name)]


@pytest.mark.parametrize(
    "name, knobs, exc, message", _KNOB_ERROR_CASES, ids=[f"{c[0]}-{sorted(c[1].items())}" for c in _KNOB_ERROR_CASES]
)
def test_functional_knob_error_messages(name, knobs, exc, message):
    s, t = pair(2, 3, 4, 4, 2, 4, 4)
    with pytest.raises(exc, match=re.escape(message)):
        LOSS_SPECS[name].function(s, t, **knobs)


def test_functional_knobs_are_keyword_only(loss_name):
    s, t = pair(2, 3, 4, 4, 2, 4, 4)
    with pytest.raises(TypeError, match="positional argument"):
        LOSS_SPECS[loss_name].function(s, t, 4)


def test_functional_dense_geometry_matches_reference():
    """The public dense geometry helpers agree with the reference loops (off the diagonal, which callers mask)."""
    from geokt_plugin.functional import normalized_distances, pairwise_sq_distances

    gen = torch.Generator().manual_seed(7)
    points = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    off = ~torch.eye(6, dtype=torch.bool)
    for b in range(2):
        rows = [tuple(float(v) for v in p) for p in points[b]]
        want_d = torch.tensor(reference.distances(rows), dtype=torch.float64)
        want_dn = torch.tensor(reference.normalized(reference.distances(rows)), dtype=torch.float64)
        got_q = pairwise_sq_distances(points[b : b + 1])[0]
        got_dn = normalized_distances(points[b : b + 1])[0]
        torch.testing.assert_close(got_q[off], (want_d**2)[off] - 1e-12, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(got_dn[off], want_dn[off], rtol=1e-9, atol=1e-12)
