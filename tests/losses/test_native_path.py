"""The native CPU kernels (``losses/native.py``, ``losses/csrc/geokt_kernels.cpp``): where they run, that they equal
the eager block kernel, and what happens when they cannot be built.

Exactness is also covered by the tests parametrised with ``geokt_plugin.testing.paths.PATHS`` (chunking, the loop
reference) and by ``make test``'s second pass, which runs all of tests/losses with ``GEOKT_TEST_KERNEL=native``.
"""

from __future__ import annotations

import ctypes
import logging

import pytest
import torch

from geokt_plugin.losses import LOSS_SPECS, compile_report, compiled, native
from geokt_plugin.losses.paths import KERNEL_PATHS, select_path
from geokt_plugin.testing import randn
from geokt_plugin.testing.paths import kernel_path, needs_compiler

# Every kernel of the C++ file: the four losses, the distance loss on every pair, NAC on its kNN graph, and k above
# the threshold selection's 16 lanes (a full selection) and k = n - 1.
CASES = {
    "distance": ("distance", {}), "distance_all": ("distance", {"neighbors": None}),
    "distance_k20": ("distance", {"neighbors": 20}), "kl": ("kl", {}), "rank": ("rank", {}),
    "rank_k_all": ("rank", {"neighbors": 1000}), "nac": ("nac", {}), "nac_knn": ("nac", {"graph": "knn"}),
    "nac_r1": ("nac", {"radius": 1}),
}


@pytest.fixture(autouse=True)
def _automatic():
    select_path("auto")
    native.reset_native_state()
    yield
    select_path("auto")
    native.reset_native_state()


# Gradients on post-ReLU maps: a pair of exact copies has Q = +-rounding, so W = [Q >= 0] / D is 0 or 1e6 depending
# on how each path rounds; its term W (x_i - x_j) vanishes, but only to rounding times 1e6 in the matrix form
# -2 (C' X + C'^T X) both paths use. Hence an absolute tolerance of about 1e6 float64 ulps on those entries.
GRAD_TOL = {"rtol": 1e-8, "atol": 1e-9}


def value_and_grad(name: str, s: torch.Tensor, t: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    loss, knobs = CASES[name]
    s = s.detach().requires_grad_(True)
    out = LOSS_SPECS[loss].function(s, t, reduction="none", **{**knobs, **kwargs})
    weights = torch.arange(1, out.numel() + 1, dtype=out.dtype)
    (grad,) = torch.autograd.grad((out * weights).sum(), s)
    return out.detach(), grad


def on(path: str, name: str, s: torch.Tensor, t: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    with kernel_path(path):
        return value_and_grad(name, s, t, **kwargs)


TREE_CASES = ("nac", "nac_r1")


def relu_pair(seed: int, name: str, B: int = 3, C: int = 5, H: int = 7, W: int = 9, dtype=torch.float64):
    """Post-ReLU maps (copies of 0 in the student). The tree's instructor gets a row of exact copies: its tie-break
    is strict (docs/losses.md). A kNN's ties are unordered, so its instructor has distinct points."""
    s = randn(B, C, H, W, seed=seed, dtype=dtype).relu()
    t = randn(B, C + 2, H, W, seed=seed + 1, dtype=dtype)
    if name in TREE_CASES:
        t = t.relu()
        t[:, :, 1, :] = t[:, :, 0, :]
    return s, t


# ----------------------------------------------------------------------------------------------------------------
# Exactness against the eager block kernel
# ----------------------------------------------------------------------------------------------------------------


@needs_compiler
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("scope", ["image", "batch"])
def test_native_path_equals_eager_float64(name, scope):
    s, t = relu_pair(3, name)
    want = on("eager", name, s, t, scope=scope)
    got = on("native", name, s, t, scope=scope)
    assert compile_report()["native"]["path"], "the native kernels did not run"
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(got[1], want[1], **GRAD_TOL)


@needs_compiler
@pytest.mark.parametrize("name", list(CASES))
def test_native_path_equals_eager_float32_on_distinct_points(name):
    # Distinct points: float32 rounding of Q near 0 (copies) is amplified by 1/D on both paths alike, not compared.
    s, t = randn(2, 6, 8, 8, seed=5, dtype=torch.float32), randn(2, 4, 8, 8, seed=6, dtype=torch.float32)
    want, got = on("eager", name, s, t), on("native", name, s, t)
    torch.testing.assert_close(got[0], want[0], rtol=2e-5, atol=1e-7)
    torch.testing.assert_close(got[1], want[1], rtol=2e-4, atol=2e-6)


@needs_compiler
@pytest.mark.parametrize("name", ["rank", "nac", "kl"])
@pytest.mark.parametrize("chunk_size", [63, 64, 130, 1 << 20])
def test_native_path_does_not_depend_on_how_whole_sets_are_grouped(name, chunk_size):
    s, t = relu_pair(7, name, B=4, H=8, W=8)  # n = 64: the block kernel, then one, two and all four sets per block
    want = on("eager", name, s, t)
    got = on("native", name, s, t, chunk_size=chunk_size)
    torch.testing.assert_close(got[0], want[0], rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(got[1], want[1], **GRAD_TOL)


@needs_compiler
@pytest.mark.parametrize("name", ["rank", "nac", "distance"])
def test_native_path_gives_the_same_bits_on_one_and_two_threads(name):
    s, t = relu_pair(9, name, dtype=torch.float32)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(on("native", name, s, t))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@needs_compiler
def test_native_path_without_gradients_gives_the_same_values():
    for name in CASES:
        s, t = relu_pair(11, name)
        loss, knobs = CASES[name]
        with kernel_path("native"), torch.no_grad():
            value = LOSS_SPECS[loss].function(s, t, reduction="none", **knobs)
        torch.testing.assert_close(value, on("eager", name, s, t)[0], rtol=1e-10, atol=1e-14)


@needs_compiler
def test_native_path_keeps_non_finite_sets_non_finite_and_the_others_exact():
    for name in CASES:
        s, t = relu_pair(13, name)
        s[1, 0, 2, 2] = float("nan")
        t[2, 1, 0, 0] = float("inf")
        want, got = on("eager", name, s, t), on("native", name, s, t)
        assert got[0][1:].isnan().all() and got[1][1:].isnan().all(), name
        torch.testing.assert_close(got[0][0], want[0][0], rtol=1e-10, atol=1e-14)
        torch.testing.assert_close(got[1][0], want[1][0], **GRAD_TOL)


# ----------------------------------------------------------------------------------------------------------------
# Where the native kernels run
# ----------------------------------------------------------------------------------------------------------------


def test_native_whole_set_blocks_layouts():
    assert native.whole_set_blocks(10, 256, None) == [slice(0, 4), slice(4, 8), slice(8, 10)]  # 2^18 entries
    assert native.whole_set_blocks(3, 1024, None) == [slice(0, 1), slice(1, 2), slice(2, 3)]  # one set per block
    assert native.whole_set_blocks(2, 1025, None) is None  # larger sets: the block kernel
    assert native.whole_set_blocks(5, 20, 41) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert native.whole_set_blocks(5, 20, 19) is None  # rows split: the block kernel


@pytest.mark.parametrize(("env", "native_switch", "expected"), [
    ("0", None, False), ("", None, True), ("1", None, True), ("0", True, True), ("1", False, False),
])
def test_native_switches(monkeypatch, env, native_switch, expected):
    monkeypatch.setenv(compiled.ENV, env)
    monkeypatch.setattr(native, "library", lambda: object())  # a library that is there
    compiled.set_compile(None)
    native.set_native(native_switch)
    assert native.wanted("cpu", torch.float32) is expected
    assert not native.wanted("cuda", torch.float32)
    assert not native.wanted("cpu", torch.float16)


def test_native_switch_rejects_non_bool():
    with pytest.raises(TypeError, match="set_native: enabled must be True, False or None, got 1"):
        native.set_native(1)


def test_native_select_path_names_the_paths():
    assert KERNEL_PATHS == ("auto", "eager", "compiled", "native")
    with pytest.raises(ValueError, match="select_path: path must be one of 'auto', 'eager', 'compiled', 'native', "
                                         "got 'fast'"):
        select_path("fast")


# ----------------------------------------------------------------------------------------------------------------
# Build, cache and fallback
# ----------------------------------------------------------------------------------------------------------------


def _eager_equal_with_one_log_line(caplog, message: str) -> None:
    s, t = relu_pair(17, "nac")
    with caplog.at_level(logging.WARNING, logger="geokt_plugin.losses"):
        got = [on("native", name, s, t) for name in ("rank", "nac")]
    want = [on("eager", name, s, t) for name in ("rank", "nac")]
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g[0], w[0], rtol=0, atol=0)  # the eager block kernel itself ran
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "native CPU kernels are unavailable" in lines[0] and message in lines[0], lines
    assert message in compile_report()["native"]["why"]


def test_native_without_a_compiler_falls_back_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(native.shutil, "which", lambda name: None)
    monkeypatch.setenv(native.CACHE_ENV, "/nonexistent-cache-never-built")
    _eager_equal_with_one_log_line(caplog, "no C++ compiler on PATH (c++, g++ or clang++; set CXX to choose one)")


@needs_compiler
def test_native_compile_error_falls_back_with_one_log_line(monkeypatch, caplog, tmp_path):
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    _eager_equal_with_one_log_line(caplog, "failed")
    assert not list((tmp_path / "cache").rglob("*.so")), "a failed build leaves no library behind"


@needs_compiler
def test_native_library_is_built_once_then_loaded_from_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    assert native.library() is not None
    first = compile_report()["native"]
    assert first["build_s"] > 0 and first["path"].startswith(str(tmp_path))
    native.reset_native_state()
    assert native.library() is not None
    again = compile_report()["native"]
    assert again["build_s"] is None and again["path"] == first["path"]  # cached: no second build


@needs_compiler
def test_native_library_with_another_abi_is_refused(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path))
    monkeypatch.setattr(native, "ABI_VERSION", 999)
    with caplog.at_level(logging.WARNING, logger="geokt_plugin.losses"):
        assert native.library() is None
    assert "has ABI 1, expected 999" in compile_report()["native"]["why"]


@needs_compiler
def test_native_kernel_rejects_tensors_it_cannot_read():
    g = torch.zeros(2, 5, 5)
    sq = torch.zeros(2, 5)
    bad = [(g, g[:, :4, :4].contiguous(), sq, sq), (g, g.transpose(1, 2), sq, sq), (g, g.double(), sq, sq),
           (g, g, sq[:, :4], sq)]
    for block in bad:
        with pytest.raises(ValueError, match=r"native kernel: expected contiguous CPU \(b, n, n\) Gram matrices"):
            native.rank(block, neighbors=2, temperature=0.1, need_grad=False)
    with pytest.raises(ValueError, match=r"native nac: the tree needs the instructor's \(b, n, C\) points"):
        native.nac((g, g, sq, sq), mst=True, radius=2, neighbors=2, points=None, need_grad=False)


@needs_compiler
def test_native_library_exports_every_kernel_in_both_dtypes():
    lib = native.library()
    for name in ("rank", "kl", "distance", "nac"):
        for dtype in ("f32", "f64"):
            assert isinstance(getattr(lib, f"geokt_{name}_{dtype}"), ctypes._CFuncPtr)
