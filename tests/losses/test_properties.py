"""One hypothesis test per property of docs/losses.md ("Properties"), for each loss where it applies.

All invariance checks run in float64 on random continuous data, which has no kNN ties (almost surely), so the
instructor's neighbourhoods are well defined and survive the transforms exactly.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from geokt_plugin.losses import LOSS_SPECS
from geokt_plugin.testing import randn

LOSS_NAMES = tuple(LOSS_SPECS)
ZERO_FOR_SIMILAR_MAPS = [name for name, spec in LOSS_SPECS.items() if spec.zero_for_similar_maps]

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True)
INVARIANCE_TOL = {"rtol": 1e-6, "atol": 1e-9}


@st.composite
def feature_maps(draw, dtype: torch.dtype = torch.float64):
    """A seeded (student, teacher) pair with free B, Cs, Ct, and independent spatial sizes (N >= 2 after alignment)."""
    B = draw(st.integers(1, 3))
    Cs, Ct = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    Hs, Ht = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    Ws, Wt = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    seed = draw(st.integers(0, 2**20))
    return randn(B, Cs, Hs, Ws, seed=seed, dtype=dtype), randn(B, Ct, Ht, Wt, seed=seed + 1, dtype=dtype)


@st.composite
def knobs(draw, name: str, *, sampling: bool = True):
    """Loss-specific knobs plus scope (and, when ``sampling``, a max_points with a generator seed)."""
    out: dict = {"scope": draw(st.sampled_from(["image", "batch"]))}
    if name == "distance":
        out["neighbors"] = draw(st.one_of(st.none(), st.integers(1, 10)))
    if name == "kl":
        out["bandwidth"] = draw(st.floats(0.2, 2.0))
    if name == "rank":
        out["neighbors"] = draw(st.integers(1, 10))
        out["temperature"] = draw(st.floats(0.05, 1.0))
    if sampling and draw(st.booleans()):
        out["max_points"] = draw(st.integers(2, 8))
        out["generator_seed"] = draw(st.integers(0, 1000))
    return out


def evaluate(name: str, student: torch.Tensor, teacher: torch.Tensor, kn: dict, **extra) -> torch.Tensor:
    """The loss with ``kn``; a fresh generator from ``generator_seed`` on each call, so calls sample alike."""
    kn = dict(kn, **extra)
    seed = kn.pop("generator_seed", None)
    if seed is not None:
        kn["generator"] = torch.Generator().manual_seed(seed)
    return LOSS_SPECS[name].function(student, teacher, **kn)


def random_orthogonal(c: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(randn(c, c, seed=seed))
    return q * torch.sign(torch.diagonal(r))  # a Haar-distributed orthogonal matrix


def channel_transform(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``matrix`` (C_out, C_in) to every local feature of ``x`` (B, C_in, H, W)."""
    return torch.einsum("oc,bchw->bohw", matrix, x)


# ----------------------------------------------------------------------------------------------------------------
# Invariances
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSS_NAMES)
@SETTINGS
@given(data=st.data(), maps=feature_maps(), scale=st.floats(0.25, 8.0), which=st.sampled_from(["student", "teacher"]))
def test_property_positive_scale_invariance(name, data, maps, scale, which):
    s, t = maps
    kn = data.draw(knobs(name))
    base = evaluate(name, s, t, kn, reduction="none")
    scaled = evaluate(name, s * scale, t, kn, reduction="none") if which == "student" else \
        evaluate(name, s, t * scale, kn, reduction="none")
    torch.testing.assert_close(scaled, base, **INVARIANCE_TOL)


@pytest.mark.parametrize("name", LOSS_NAMES)
@SETTINGS
@given(
    data=st.data(),
    maps=feature_maps(),
    seed=st.integers(0, 2**16),
    which=st.sampled_from(["student", "teacher"]),
    kind=st.sampled_from(["orthogonal", "permutation"]),
)
def test_property_channel_orthogonal_transform_invariance(name, data, maps, seed, which, kind):
    s, t = maps
    kn = data.draw(knobs(name))
    x = s if which == "student" else t
    C = x.shape[1]
    if kind == "orthogonal":
        matrix = random_orthogonal(C, seed)
    else:
        matrix = torch.eye(C, dtype=torch.float64)[torch.randperm(C, generator=torch.Generator().manual_seed(seed))]
    y = channel_transform(x, matrix)
    base = evaluate(name, s, t, kn, reduction="none")
    moved = evaluate(name, y, t, kn, reduction="none") if which == "student" else \
        evaluate(name, s, y, kn, reduction="none")
    torch.testing.assert_close(moved, base, **INVARIANCE_TOL)


@pytest.mark.parametrize("name", LOSS_NAMES)
@SETTINGS
@given(
    data=st.data(),
    maps=feature_maps(),
    pad_before=st.integers(0, 3),
    pad_after=st.integers(0, 3),
    which=st.sampled_from(["student", "teacher", "both"]),
)
def test_property_zero_padding_channels_invariance(name, data, maps, pad_before, pad_after, which):
    s, t = maps
    kn = data.draw(knobs(name))

    def pad(x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        zeros = x.new_zeros
        return torch.cat([zeros(B, pad_before, H, W), x, zeros(B, pad_after, H, W)], dim=1)

    s2 = pad(s) if which in ("student", "both") else s
    t2 = pad(t) if which in ("teacher", "both") else t
    base = evaluate(name, s, t, kn, reduction="none")
    torch.testing.assert_close(evaluate(name, s2, t2, kn, reduction="none"), base, **INVARIANCE_TOL)


_SPATIAL = {
    "flip_h": lambda x: x.flip(2),
    "flip_w": lambda x: x.flip(3),
    "flip_hw": lambda x: x.flip(2, 3),
    "transpose": lambda x: x.transpose(2, 3),
    "transpose_flip": lambda x: x.transpose(2, 3).flip(3),
}


@pytest.mark.parametrize("name", LOSS_NAMES)
@SETTINGS
@given(data=st.data(), maps=feature_maps(), op=st.sampled_from(sorted(_SPATIAL)))
def test_property_same_flip_or_transpose_of_both_maps_invariance(name, data, maps, op):
    # Sampling picks positions by index, so a flip changes which points are drawn: checked without max_points.
    # adaptive_avg_pool2d's bins are mirror-symmetric, so alignment commutes with flips and transposes.
    s, t = maps
    kn = data.draw(knobs(name, sampling=False))
    f = _SPATIAL[op]
    base = evaluate(name, s, t, kn, reduction="none")
    torch.testing.assert_close(evaluate(name, f(s), f(t), kn, reduction="none"), base, **INVARIANCE_TOL)


@pytest.mark.parametrize("name", LOSS_NAMES)
@SETTINGS
@given(data=st.data(), maps=feature_maps(), seed=st.integers(0, 2**16))
def test_property_batch_permutation_invariance_with_mean(name, data, maps, seed):
    s, t = maps
    kn = data.draw(knobs(name))
    perm = torch.randperm(s.shape[0], generator=torch.Generator().manual_seed(seed))
    base = evaluate(name, s, t, kn, reduction="mean")
    torch.testing.assert_close(evaluate(name, s[perm], t[perm], kn, reduction="mean"), base, **INVARIANCE_TOL)
    if kn["scope"] == "image":  # per-image values move with their images
        per_image = evaluate(name, s, t, kn, reduction="none")
        torch.testing.assert_close(evaluate(name, s[perm], t[perm], kn, reduction="none"), per_image[perm])


# ----------------------------------------------------------------------------------------------------------------
# Zeros and non-negativity
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ZERO_FOR_SIMILAR_MAPS)
@SETTINGS
@given(
    data=st.data(),
    B=st.integers(1, 3),
    rank=st.integers(1, 3),
    Cs=st.integers(0, 3),
    Ct=st.integers(0, 3),
    H=st.integers(1, 4),
    W=st.integers(2, 4),
    scales=st.tuples(st.floats(0.25, 8.0), st.floats(0.25, 8.0)),
    upsample=st.sampled_from(["none", "student", "teacher"]),
    seed=st.integers(0, 2**16),
)
def test_property_zero_for_similarity_transforms(name, data, B, rank, Cs, Ct, H, W, scales, upsample, seed):
    # Both maps are similarity images (scale * rotation + translation) of one latent map of `rank` channels, so
    # the student is a similarity transform of the teacher whatever Cs and Ct are (Cs, Ct >= rank; drawn as extra
    # channels above the latent rank, so Cs < Ct, Cs == Ct and Cs > Ct all occur).
    kn = data.draw(knobs(name))
    latent = randn(B, rank, H, W, seed=seed)

    def similar(channels: int, scale: float, sub_seed: int) -> torch.Tensor:
        rotation = random_orthogonal(channels, sub_seed)[:, :rank]  # (channels, rank), orthonormal columns
        shift = randn(1, channels, 1, 1, seed=sub_seed + 1)
        return scale * channel_transform(latent, rotation) + shift

    s = similar(rank + Cs, scales[0], seed + 2)
    t = similar(rank + Ct, scales[1], seed + 5)
    # A map upsampled by repetition pools back to the original exactly: covers Hs != Ht and Ws != Wt.
    if upsample == "student":
        s = s.repeat_interleave(2, dim=2).repeat_interleave(3, dim=3)
    elif upsample == "teacher":
        t = t.repeat_interleave(3, dim=2).repeat_interleave(2, dim=3)
    value = evaluate(name, s, t, kn, reduction="none")
    assert value.abs().max().item() < 1e-9


@SETTINGS
@given(data=st.data(), maps=feature_maps(), constant=st.sampled_from(["none", "student", "teacher", "both"]))
def test_property_rank_loss_is_non_negative(data, maps, constant):
    s, t = maps
    if constant in ("student", "both"):
        s = torch.full_like(s, 0.3)
    if constant in ("teacher", "both"):
        t = torch.zeros_like(t)
    kn = data.draw(knobs("rank"))
    value = evaluate("rank", s, t, kn, reduction="none")
    assert value.min().item() >= -1e-12


@SETTINGS
@given(
    clusters=st.integers(2, 4),
    neighbors=st.integers(1, 4),
    B=st.integers(1, 2),
    C=st.integers(1, 4),
    seed=st.integers(0, 2**16),
)
def test_property_rank_loss_reaches_zero_for_collapsed_neighbourhoods(clusters, neighbors, B, C, seed):
    # Each cluster holds neighbors + 1 copies of one point, so every point's k = neighbors nearest instructor
    # neighbours are its copies. With student == teacher the student's soft choice concentrates uniformly on those
    # copies as the temperature drops, and the loss decreases to its lower bound 0.
    # Centres 10 apart along channel 0 (plus a jitter below 1): clusters stay separated on the normalised scale.
    centres = randn(B, C, 1, clusters, seed=seed).clamp(-0.45, 0.45)
    centres[:, 0] += 10.0 * torch.arange(clusters, dtype=torch.float64)
    x = centres.repeat_interleave(neighbors + 1, dim=3)  # (B, C, 1, clusters * (neighbors + 1))
    values = [
        LOSS_SPECS["rank"].function(x, x, neighbors=neighbors, temperature=temperature).item()
        for temperature in (0.3, 0.1, 0.01)
    ]
    assert values[0] >= values[1] >= values[2] >= -1e-12
    assert values[2] < 1e-9


# ----------------------------------------------------------------------------------------------------------------
# Autocast and dead maps
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", LOSS_NAMES)
@SETTINGS
@given(data=st.data(), maps=feature_maps(dtype=torch.float32))
def test_property_autocast_gives_the_same_value(name, data, maps):
    s, t = maps
    kn = data.draw(knobs(name))
    plain = evaluate(name, s, t, kn, reduction="none")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = evaluate(name, s, t, kn, reduction="none")
    assert under.dtype == plain.dtype == torch.float32
    torch.testing.assert_close(under, plain, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", LOSS_NAMES)
@SETTINGS
@given(
    data=st.data(),
    maps=feature_maps(),
    dead=st.sampled_from(["student", "teacher", "both"]),
    value=st.sampled_from([0.0, 0.0, 1.0, -2.5, 1e-3]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_property_finite_value_and_gradient_on_constant_or_zero_maps(name, data, maps, dead, value, dtype):
    s, t = (x.to(dtype) for x in maps)
    if dead in ("student", "both"):
        s = torch.full_like(s, value)
    if dead in ("teacher", "both"):
        t = torch.full_like(t, value)
    s = s.requires_grad_(True)
    kn = data.draw(knobs(name))
    loss = evaluate(name, s, t, kn)
    assert torch.isfinite(loss)
    loss.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()
