"""Hypothesis fuzzing of every functional loss: finite in, finite out; clear errors for invalid shapes.

Valid inputs span shapes (B 1-3, C 1-8, H and W 1-6, independently for student and instructor), the four
dtypes, both scopes, optional sampling, and value regimes from all-zero and constant maps to 1e-30 and 1e30
magnitudes (1e30 only where the dtype holds it). The value and the student's gradient must be finite. Invalid
shapes must raise ``ValueError`` naming both shapes.
"""

from __future__ import annotations

import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geokt_plugin.losses import LOSS_SPECS

LOSS_NAMES = tuple(LOSS_SPECS)

FUZZ = settings(max_examples=80, deadline=None, derandomize=True)

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
# Largest magnitude each dtype holds with room to spare (float16 tops out at 65504).
MAX_SCALE = {torch.float16: 1e4, torch.bfloat16: 1e30, torch.float32: 1e30, torch.float64: 1e30}
REGIMES = ("normal", "huge", "tiny", "constant", "zeros", "mixed", "student_dead")


def n_points(Hs: int, Ws: int, Ht: int, Wt: int, B: int, scope: str) -> int:
    """Points per set after spatial alignment (docs/losses.md, "Inputs", steps 1 and 6)."""
    hw = min(Hs, Ht) * min(Ws, Wt)
    return hw if scope == "image" else B * hw


def make_map(shape: tuple[int, ...], regime: str, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """A finite feature map of ``dtype`` in the given value regime, generated on CPU in float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if regime == "huge":
        x = x * MAX_SCALE[dtype]
    elif regime == "tiny":
        x = x * 1e-30
    elif regime == "constant":
        x = torch.full(shape, 3.5 if dtype == torch.float16 else 7.25e3, dtype=torch.float64)
    elif regime == "zeros":
        x = torch.zeros(shape, dtype=torch.float64)
    elif regime == "mixed":  # one huge position among ordinary ones: the scale comes from a single outlier
        x = x.clone()
        x.view(shape[0], shape[1], -1)[:, :, 0] *= MAX_SCALE[dtype]
    x = x.to(dtype)
    assert torch.isfinite(x).all(), f"test bug: the {regime} map does not fit in {dtype}"
    return x


@st.composite
def valid_case(draw):
    B = draw(st.integers(1, 3))
    Cs, Ct = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    Hs, Ws, Ht, Wt = (draw(st.integers(1, 6)) for _ in range(4))
    scope = draw(st.sampled_from(["image", "batch"]))
    if n_points(Hs, Ws, Ht, Wt, B, scope) < 2:
        # Too few points for this scope: widen the smaller map's width so the case stays valid.
        Ws = Wt = max(Ws, Wt, 2)
    dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    regime = draw(st.sampled_from(REGIMES))
    seed = draw(st.integers(0, 2**16))
    max_points = draw(st.one_of(st.none(), st.integers(2, 12)))
    return dict(B=B, Cs=Cs, Ct=Ct, Hs=Hs, Ws=Ws, Ht=Ht, Wt=Wt, scope=scope, dtype=dtype, regime=regime, seed=seed,
                max_points=max_points)


def build(case: dict) -> tuple[torch.Tensor, torch.Tensor]:
    regime = case["regime"]
    student_regime = "zeros" if regime == "student_dead" else regime
    teacher_regime = "normal" if regime == "student_dead" else regime
    s = make_map((case["B"], case["Cs"], case["Hs"], case["Ws"]), student_regime, case["dtype"], case["seed"])
    t = make_map((case["B"], case["Ct"], case["Ht"], case["Wt"]), teacher_regime, case["dtype"], case["seed"] + 1)
    return s, t


@pytest.mark.parametrize("name", LOSS_NAMES)
@FUZZ
@given(case=valid_case(), reduction=st.sampled_from(["mean", "sum", "none"]))
def test_fuzz_finite_inputs_give_finite_value_and_gradient(name, case, reduction):
    s, t = build(case)
    s.requires_grad_(True)
    t.requires_grad_(True)
    generator = torch.Generator().manual_seed(case["seed"]) if case["max_points"] is not None else None
    value = LOSS_SPECS[name].function(s, t, scope=case["scope"], reduction=reduction, max_points=case["max_points"],
                                 generator=generator)
    label = f"{name} {case} reduction={reduction}"
    assert torch.isfinite(value).all(), f"non-finite value {value} for {label}"
    expected_shape = (case["B"],) if case["scope"] == "image" else (1,)
    assert value.shape == (expected_shape if reduction == "none" else ()), label
    value.sum().backward()
    assert s.grad is not None and s.grad.dtype == s.dtype, label
    assert torch.isfinite(s.grad).all(), f"non-finite student gradient for {label}"
    assert t.grad is None, f"gradient reached the instructor for {label}"


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("dtype", list(DTYPES.values()), ids=list(DTYPES))
def test_fuzz_huge_constant_and_outlier_maps_are_finite(name, dtype):
    """The regimes that overflow ``||a||^2 + ||b||^2 - 2<a, b>`` first, checked directly for every dtype."""
    for regime in ("huge", "mixed", "constant", "tiny"):
        s = make_map((2, 8, 6, 6), regime, dtype, seed=3).requires_grad_(True)
        t = make_map((2, 8, 6, 6), regime, dtype, seed=4)
        value = LOSS_SPECS[name].function(s, t)
        value.backward()
        assert torch.isfinite(value), f"{name} {dtype} {regime}: value {value}"
        assert torch.isfinite(s.grad).all(), f"{name} {dtype} {regime}: gradient not finite"


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_fuzz_huge_inputs_match_the_rescaled_loss(name):
    """Every loss is scale invariant (docs/losses.md, "Properties"), so a 1e30 map must give the 1.0 map's value."""
    s = make_map((2, 4, 5, 5), "normal", torch.float32, seed=11)
    t = make_map((2, 6, 5, 5), "normal", torch.float32, seed=12)
    ref = LOSS_SPECS[name].function(s, t)
    huge = LOSS_SPECS[name].function(s * 1e30, t * 1e30)
    torch.testing.assert_close(huge, ref, rtol=1e-4, atol=1e-5)


@st.composite
def invalid_case(draw):
    """A pair that violates exactly one input rule of docs/losses.md."""
    kind = draw(st.sampled_from(["ndim", "batch", "points"]))
    B = draw(st.integers(1, 3))
    C = draw(st.integers(1, 8))
    if kind == "ndim":
        s_shape = tuple(draw(st.integers(1, 4)) for _ in range(draw(st.sampled_from([1, 2, 3, 5]))))
        t_shape = (B, C, draw(st.integers(2, 6)), draw(st.integers(2, 6)))
        if draw(st.booleans()):
            s_shape, t_shape = t_shape, s_shape
        return kind, s_shape, t_shape, "image"
    if kind == "batch":
        other = draw(st.integers(1, 3).filter(lambda b: b != B))
        return kind, (B, C, 3, 3), (other, C, 3, 3), draw(st.sampled_from(["image", "batch"]))
    # fewer than 2 points per set: one aligned position per image ("image"), or per batch of 1 ("batch")
    scope = draw(st.sampled_from(["image", "batch"]))
    B = 1 if scope == "batch" else B
    k = draw(st.integers(1, 6))
    s_hw, t_hw = draw(st.sampled_from([(1, k), (k, 1)])), (1, 1)
    if draw(st.booleans()):
        s_hw, t_hw = t_hw, s_hw
    return kind, (B, C, *s_hw), (B, draw(st.integers(1, 8)), *t_hw), scope


@pytest.mark.parametrize("name", LOSS_NAMES)
@settings(max_examples=60, deadline=None, derandomize=True)
@given(case=invalid_case(), dtype=st.sampled_from(list(DTYPES.values())))
def test_fuzz_invalid_shapes_raise_value_error_naming_both_shapes(name, case, dtype):
    kind, s_shape, t_shape, scope = case
    s = torch.zeros(s_shape, dtype=dtype)
    t = torch.ones(t_shape, dtype=dtype)
    with pytest.raises(ValueError) as info:
        LOSS_SPECS[name].function(s, t, scope=scope)
    message = str(info.value)
    assert str(tuple(s_shape)) in message, message
    assert str(tuple(t_shape)) in message, message
    expected = {"ndim": r"4-D feature maps", "batch": r"batch sizes differ", "points": r"at least 2 local features"}
    assert re.search(expected[kind], message), message
