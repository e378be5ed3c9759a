"""The compiled path's switch, its fallback to the eager path, and its compile-once-per-shape-class behaviour.

Exactness of the compiled path is tested with the chunking and reference tests (parametrised over
``geokt_plugin.testing.paths.PATHS``); here: which path runs, and what happens when compiling fails.
"""

from __future__ import annotations

import logging

import pytest
import torch

from geokt_plugin.losses import LOSS_SPECS, compile_report, compiled, set_compile
from geokt_plugin.testing import pair
from geokt_plugin.testing.paths import kernel_path, needs_compiler


@pytest.fixture(autouse=True)
def _fresh_state():
    set_compile(None)  # whatever path GEOKT_TEST_KERNEL chose: these tests set their own
    compiled.reset_compile_state()
    yield
    set_compile(None)
    compiled.reset_compile_state()


@pytest.mark.parametrize(("env", "switch", "expected"), [
    ("0", None, False), ("off", None, False), ("1", None, True), ("", None, None), (None, None, None),
    ("0", True, True), ("1", False, False),
])
def test_compiled_switch_environment_and_python(monkeypatch, env, switch, expected):
    if env is None:
        monkeypatch.delenv(compiled.ENV, raising=False)
    else:
        monkeypatch.setenv(compiled.ENV, env)
    set_compile(switch)
    assert compiled.mode() is expected


def test_compiled_switch_rejects_non_bool():
    with pytest.raises(TypeError, match="set_compile: enabled must be True, False or None, got 'yes'"):
        set_compile("yes")


def test_compiled_auto_mode_compiles_only_where_worth_it(monkeypatch):
    monkeypatch.delenv(compiled.ENV, raising=False)
    fn = compiled._BlockFunction(lambda x: x, cpu_auto=False)
    auto_fn = compiled._BlockFunction(lambda x: x, cpu_auto=True)
    ok = compiled.compile_available("cpu")[0]
    assert not fn.wanted("cpu", 1024)  # not measured faster on CPU
    assert auto_fn.wanted("cpu", 1024) is ok
    assert not auto_fn.wanted("cpu", compiled.MIN_COMPILED_POINTS - 1)  # tiny sets: guards would dominate
    assert not compiled._BlockFunction(lambda x: x, cpu_auto=True).wanted("meta", 1024)


def _losses_agree_eagerly(caplog) -> None:
    s, t = pair(2, 3, 4, 4, 5, 4, 4, seed=1)
    for spec in LOSS_SPECS.values():
        with kernel_path("eager"):
            want = spec.function(s, t, reduction="none")
        with kernel_path("compiled"), caplog.at_level(logging.WARNING, logger="geokt_plugin.losses"):
            got = spec.function(s, t, reduction="none")
            got_again = spec.function(s, t, reduction="none")
        torch.testing.assert_close(got, want, rtol=0, atol=0)  # the eager path itself: bitwise
        torch.testing.assert_close(got_again, want, rtol=0, atol=0)


def test_compiled_failing_compile_falls_back_to_eager_with_one_log_line_each(monkeypatch, caplog):
    def broken(*args, **kwargs):
        def run(*a, **k):
            raise RuntimeError("simulated: no working C++ compiler\nsecond line")
        return run

    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setattr(compiled, "compile_available", lambda device: (True, ""))  # a compiler that then fails
    _losses_agree_eagerly(caplog)
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("runs eagerly on cpu" in line and "simulated: no working C++ compiler" in line
                         for line in lines)
    assert len(lines) == len(set(lines)), "each block function logs its fallback once"
    assert compile_report()["fallbacks"]


def test_compiled_no_compiler_means_one_log_line(monkeypatch, caplog):
    monkeypatch.setattr(compiled, "compile_available", lambda device: (False, "no C++ compiler on PATH"))
    _losses_agree_eagerly(caplog)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["geokt_plugin: the GeoKT losses run eagerly on cpu (no compiled path: no C++ compiler on PATH)"]


@needs_compiler
def test_compiled_compiles_once_per_shape_class():
    fn, counts = LOSS_SPECS["kl"].function, []
    with kernel_path("compiled"):
        for B, H, W in ((2, 5, 4), (3, 7, 2), (4, 4, 8), (5, 2, 10)):  # n % 3 != 1: no 1-row block
            s, t = pair(B, 3, H, W, 5, H, W, seed=B)
            fn(s.requires_grad_(True), t, bandwidth=0.7, chunk_size=3).backward()
            counts.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    # The second shape may still turn a value the first call specialised dynamic; after that, nothing compiles.
    assert counts[3] == counts[1], f"graphs after each shape: {counts}; one shape class must compile once"
