"""The ``chunk_size`` knob and the fused, memory-bounded evaluation of every loss of the LossSpec table.

The fused path computes each set's gradient in the forward pass, block by block, and keeps only that gradient
for backward. These tests hold it to: the same values and gradients whatever the blocks (float64), the same as a
plain autograd formulation of docs/losses.md, a saved-for-backward footprint the size of the student points, a largest
intermediate bounded by ``chunk_size``, and clear errors for bad knob values.
"""

from __future__ import annotations

import pytest
import torch

from geokt_plugin.losses import LOSS_SPECS
from geokt_plugin.testing import LargestTensorSpy
from geokt_plugin.testing.paths import PATHS, kernel_path, needs_compiler

LOSS_NAMES = tuple(LOSS_SPECS)
# Knobs of the chunking cases (a loss not listed runs with its defaults); "distance_all" is the distance loss on
# every pair (a separate code path of the kernel).
_KNOBS = {"distance": {"neighbors": 3}, "kl": {"bandwidth": 0.7}, "rank": {"neighbors": 3, "temperature": 0.2}}
CASES = {name: (spec.function, {**spec.knobs, **_KNOBS.get(name, {})}) for name, spec in LOSS_SPECS.items()}
CASES["distance_all"] = (LOSS_SPECS["distance"].function, {"neighbors": None})
ONE_BLOCK = 1 << 30  # a chunk larger than any set: the unchunked evaluation


def maps(
    seed: int, B: int = 3, Cs: int = 4, Ct: int = 6, H: int = 5, W: int = 4, relu: bool = True
) -> tuple[torch.Tensor, ...]:
    """float64 student (ReLU'd by default: duplicate points at 0, as in real activations) and instructor maps."""
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(B, Cs, H, W, generator=g, dtype=torch.float64)
    s = (s.relu() if relu else s).requires_grad_(True)
    t = torch.randn(B, Ct, H, W, generator=g, dtype=torch.float64)
    return s, t


def value_and_grad(fn, s, t, **knobs) -> tuple[torch.Tensor, torch.Tensor]:
    s = s.detach().requires_grad_(True)
    out = fn(s, t, reduction="none", **knobs)
    weights = torch.arange(1, out.numel() + 1, dtype=out.dtype)  # distinct per-set weights: checks every set
    (grad,) = torch.autograd.grad((out * weights).sum(), s)
    return out.detach(), grad


def dense_oracle(name: str, student: torch.Tensor, teacher: torch.Tensor, scope: str) -> torch.Tensor:
    """Plain autograd over full matrices (``LossSpec.dense_function``) with this case's knobs."""
    loss = "distance" if name == "distance_all" else name
    return LOSS_SPECS[loss].dense_function()(student, teacher, scope=scope, **CASES[name][1])


# ----------------------------------------------------------------------------------------------------------------
# Exactness
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("scope", ["image", "batch"])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 20, 41, None])
def test_chunking_values_and_gradients_do_not_depend_on_chunk_size(name, scope, chunk_size):
    fn, knobs = CASES[name]
    s, t = maps(seed=1)
    ref_value, ref_grad = value_and_grad(fn, s, t, scope=scope, chunk_size=ONE_BLOCK, **knobs)
    value, grad = value_and_grad(fn, s, t, scope=scope, chunk_size=chunk_size, **knobs)
    torch.testing.assert_close(value, ref_value, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("chunk_size", [3])
@pytest.mark.parametrize("path", PATHS)
def test_chunking_compiled_path_equals_eager(name, chunk_size, path):
    # Same formulas in the same order; the compiler may fuse and reorder float64 sums, so not bitwise.
    fn, knobs = CASES[name]
    s, t = maps(seed=1)
    ref_value, ref_grad = value_and_grad(fn, s, t, chunk_size=ONE_BLOCK, **knobs)
    with kernel_path(path):
        value, grad = value_and_grad(fn, s, t, chunk_size=chunk_size, **knobs)
    torch.testing.assert_close(value, ref_value, rtol=1e-11, atol=1e-13)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


# The compiled path on a subset: split rows (one set per block), so every compiled case shares one shape class.
# The native kernels on whole sets (automatic blocks), in both scopes.
_ORACLE_PATHS = [(scope, chunk, "eager") for scope in ("image", "batch") for chunk in (2, None)] + [
    pytest.param("image", 2, "compiled", marks=needs_compiler, id="image-2-compiled")] + [
    pytest.param(scope, None, "native", marks=needs_compiler, id=f"{scope}-None-native")
    for scope in ("image", "batch")]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(("scope", "chunk_size", "path"), _ORACLE_PATHS)
def test_chunking_matches_plain_autograd_of_the_definition(name, scope, chunk_size, path):
    fn, knobs = CASES[name]
    s, t = maps(seed=2)
    with kernel_path(path):
        value, grad = value_and_grad(fn, s, t, scope=scope, chunk_size=chunk_size, **knobs)
    oracle_value, oracle_grad = value_and_grad(lambda a, b, **_: dense_oracle(name, a, b, scope), s, t)
    torch.testing.assert_close(value, oracle_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, oracle_grad, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("name", list(CASES))
def test_chunking_with_sampling_and_pooling(name):
    fn, knobs = CASES[name]
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64)
    t = torch.randn(2, 5, 4, 4, generator=g, dtype=torch.float64)  # the student is pooled to 4x4
    results = []
    for chunk_size in (ONE_BLOCK, 5):
        gen = torch.Generator().manual_seed(0)
        results.append(value_and_grad(fn, s, t, max_points=9, generator=gen, chunk_size=chunk_size, **knobs))
    torch.testing.assert_close(results[0], results[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(CASES))
def test_chunking_float32_agrees_with_float64(name):
    fn, knobs = CASES[name]
    # No ReLU: exact duplicates are where float32's expansion rounding (not chunking) differs from float64.
    s, t = maps(seed=4, B=4, H=8, W=8, relu=False)
    v64, g64 = value_and_grad(fn, s, t, chunk_size=16, **knobs)
    v32, g32 = value_and_grad(fn, s.float(), t.float(), chunk_size=16, **knobs)
    torch.testing.assert_close(v32.double(), v64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(g32.double(), g64, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", list(CASES))
def test_chunking_no_grad_gives_the_same_value(name):
    fn, knobs = CASES[name]
    s, t = maps(seed=5)
    with_grad = fn(s, t, chunk_size=4, **knobs)
    with torch.no_grad():
        without = fn(s, t, chunk_size=4, **knobs)
    torch.testing.assert_close(without, with_grad.detach(), rtol=1e-12, atol=0)
    assert not without.requires_grad


# ----------------------------------------------------------------------------------------------------------------
# Memory: what is kept for backward, and the largest intermediate
# ----------------------------------------------------------------------------------------------------------------


def saved_bytes(fn) -> int:
    """Bytes of distinct storages autograd saves for backward while ``fn`` runs (deterministic)."""
    seen: dict[int, int] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        storage = x.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn()
    return sum(seen.values())


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("chunk_size", [8, None])
def test_chunking_saves_only_a_point_sized_gradient_for_backward(name, chunk_size):
    fn, knobs = CASES[name]
    B, C, H, W = 4, 3, 8, 8  # n = 64 points per image; one (B, n, n) float64 matrix is 131072 bytes
    g = torch.Generator().manual_seed(6)
    s = torch.randn(B, C, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(B, C, H, W, generator=g, dtype=torch.float64)
    fused = saved_bytes(lambda: fn(s, t, chunk_size=chunk_size, **knobs))
    dense = saved_bytes(lambda: dense_oracle(name, s, t, "image"))
    points = B * H * W * C * 8
    matrix = B * (H * W) ** 2 * 8
    assert fused <= 2 * points + 4096, f"fused path saved {fused} bytes, points are {points}"
    assert dense >= matrix > 10 * fused  # the plain autograd formulation keeps whole matrices



@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("scope", ["image", "batch"])
def test_chunking_bounds_the_largest_intermediate(name, scope):
    fn, knobs = CASES[name]
    B, C, H, W = 4, 2, 8, 8
    g = torch.Generator().manual_seed(7)
    s = torch.randn(B, C, H, W, generator=g, requires_grad=True)
    t = torch.randn(B, C, H, W, generator=g)
    n = H * W if scope == "image" else B * H * W
    sets = B if scope == "image" else 1
    sizes = {}
    for chunk_size in (ONE_BLOCK, 4):
        spy = LargestTensorSpy()
        with spy:
            fn(s, t, scope=scope, chunk_size=chunk_size, **knobs).backward()
        sizes[chunk_size] = spy.largest
    assert sizes[ONE_BLOCK] >= sets * n * n  # positive control: one block is the whole matrix
    # Chunked: a block of 4 rows, or a per-point array (points, k neighbours), whichever is larger; a loss with
    # LossSpec.whole_set_memory (the instructor's tree needs a whole set's distances) holds one set's (n, n) at most.
    whole_set = n * n if LOSS_SPECS.get(name) is not None and LOSS_SPECS[name].whole_set_memory else 0
    assert sizes[4] <= max(4 * n, sets * n * max(C, 8), whole_set)
    assert sizes[4] * 4 <= max(sizes[ONE_BLOCK], 4 * whole_set)


# ----------------------------------------------------------------------------------------------------------------
# The knob itself
# ----------------------------------------------------------------------------------------------------------------

MODULES = {name: spec.module for name, spec in LOSS_SPECS.items()}


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize(
    ("bad", "exc", "message"),
    [(0, ValueError, "got 0"), (-3, ValueError, "got -3"),
     (2.5, TypeError, r"got 2.5 \(float\)"), (True, TypeError, r"got True \(bool\)"),
     ("64", TypeError, r"got '64' \(str\)")],
)
def test_chunking_rejects_bad_chunk_size(name, bad, exc, message):
    fn, knobs = CASES[name]
    s, t = maps(seed=8)
    with pytest.raises(exc, match=f"{fn.__name__}: chunk_size.*{message}"):
        fn(s, t, chunk_size=bad, **knobs)
    with pytest.raises(exc, match=f"{MODULES[name].__name__}: chunk_size.*{message}"):
        MODULES[name]("layer2", "layer2", chunk_size=bad)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_chunking_module_passes_chunk_size_and_shows_it(name):
    fn, knobs = CASES[name]
    s, t = maps(seed=9)
    module = MODULES[name]("layer2", "layer2", chunk_size=5, **knobs)
    assert "chunk_size=5" in repr(module)
    out = module({"layer2": {"output": s}}, {"layer2": {"output": t}})
    torch.testing.assert_close(out, fn(s, t, chunk_size=5, **knobs), rtol=1e-12, atol=0)
