"""The compiled path of the block kernel: each loss's per-block math through ``torch.compile``, or eager.

Every loss writes its per-block work as one pure tensor function (inputs: a block's points and norms; outputs:
that block's contributions). :func:`block_function` wraps such a function: the same function runs compiled
(inductor: C++/OpenMP on CPU, Triton on CUDA) or eagerly, so both paths compute the same formulas in the same
order, and the compiler fuses the 15-25 elementwise passes of a block into a few loops.

When the compiled path is used (see docs/performance.md, "Compiled path"):

* ``GEOKT_COMPILE=0`` (or ``set_compile(False)``) turns it off; ``GEOKT_COMPILE=1`` (``set_compile(True)``) uses it
  for every function and set size; unset (``set_compile(None)``) is automatic: sets of at least
  ``MIN_COMPILED_POINTS`` points on a device with a compiler (CPU: a C++ compiler on ``PATH``; CUDA: Triton), and on
  CPU only the functions declared ``cpu_auto`` (those measured faster compiled, benchmarks/bench_step.py).
* A function that cannot compile (no compiler, an unsupported device, any exception while compiling or running the
  compiled code) falls back to the eager path for the rest of the process, with one log line.
* Shapes are dynamic (``dynamic=True``): one compilation per function, knob values and dtype, plus at most a few
  for size-1 and equal sizes, which the compiler specialises. :func:`compile_report` lists the seconds each took.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

__all__ = [
    "MIN_COMPILED_POINTS",
    "block_function",
    "compile_available",
    "compile_report",
    "eager",
    "mode",
    "reset_compile_state",
    "set_compile",
]

LOG = logging.getLogger("geokt_plugin.losses")
ENV = "GEOKT_COMPILE"
MIN_COMPILED_POINTS = 64  # below this a block is a handful of microseconds: guards and launches would dominate

_switch: bool | None = None  # set_compile's value; None defers to the environment variable
_failed: dict[tuple[str, str], str] = {}  # (function, device type) -> why it fell back
_unavailable: dict[str, str] = {}  # device type -> why nothing compiles there (logged once per device)
_report: dict[str, list[float]] = {}  # function -> seconds of each call that compiled
_functions: list[Any] = []  # every block function, for reset_compile_state


def set_compile(enabled: bool | None) -> None:
    """Force the compiled path on (``True``) or off (``False``), or restore the automatic choice (``None``)."""
    global _switch
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_compile: enabled must be True, False or None, got {enabled!r}.")
    _switch = enabled


@contextmanager
def eager() -> Iterator[None]:
    """The eager path inside the ``with`` block (e.g. a one-off evaluation that must not pay a compile), then the
    previous setting again."""
    previous = _switch
    set_compile(False)
    try:
        yield
    finally:
        set_compile(previous)


def mode() -> bool | None:
    """The switch in force: ``set_compile``'s value, else ``GEOKT_COMPILE`` (``False``: off, ``True``: forced,
    ``None``: automatic)."""
    if _switch is not None:
        return _switch
    value = os.environ.get(ENV, "").strip().lower()
    if value in ("0", "false", "off", "no"):
        return False
    if value in ("1", "true", "on", "yes"):
        return True
    return None


def compile_available(device_type: str) -> tuple[bool, str]:
    """Whether this process can compile for ``device_type``, and the reason when it cannot."""
    if device_type == "cpu":
        compiler = os.environ.get("CXX") or "c++"
        if shutil.which(compiler) is None and shutil.which("g++") is None and shutil.which("clang++") is None:
            return False, "no C++ compiler on PATH (inductor needs one on CPU)"
        return True, ""
    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return False, "Triton is not installed (inductor needs it on CUDA)"
        return True, ""
    return False, f"device type {device_type!r} is not compiled (only cpu and cuda)"


def compile_report() -> dict[str, Any]:
    """Seconds spent in the calls that compiled, per block function, the functions that fell back, and the native
    kernels' library (its path, its build seconds, ``None`` when it came from the cache, or why it is missing)."""
    from . import native  # native imports this module

    return {"compile_s": {name: list(times) for name, times in _report.items()},
            "fallbacks": {**{f"{name} ({device})": why for (name, device), why in _failed.items()},
                          **{f"all ({device})": why for device, why in _unavailable.items()}},
            "native": native.native_report()}


def reset_compile_state() -> None:
    """Forget fallbacks, compile times and compiled functions (tests; a process normally keeps them)."""
    from . import native

    native.reset_native_state()
    _failed.clear()
    _unavailable.clear()
    _report.clear()
    for function in _functions:
        function._compiled = None


def _graph_count() -> int:
    return int(torch._dynamo.utils.counters["stats"]["unique_graphs"])


class _BlockFunction:
    """A pure per-block function with its compiled twin, chosen per call (see the module docstring)."""

    def __init__(self, fn: Callable[..., Any], cpu_auto: bool) -> None:
        self.fn = fn
        self.name = fn.__name__
        self.cpu_auto = cpu_auto
        self._compiled: Callable[..., Any] | None = None
        _functions.append(self)

    def wanted(self, device_type: str, n: int) -> bool:
        """Whether a call on ``device_type`` for sets of ``n`` points should run compiled."""
        switch = mode()
        if switch is False or (self.name, device_type) in _failed or device_type in _unavailable:
            return False
        if switch is None and (n < MIN_COMPILED_POINTS or (device_type == "cpu" and not self.cpu_auto)):
            return False
        ok, why = compile_available(device_type)
        if not ok:
            _unavailable[device_type] = why
            LOG.warning("geokt_plugin: the GeoKT losses run eagerly on %s (no compiled path: %s)", device_type, why)
        return ok

    def _fall_back(self, device_type: str, why: str) -> None:
        _failed[(self.name, device_type)] = why
        LOG.warning("geokt_plugin: %s runs eagerly on %s (compiled path unavailable: %s)", self.name, device_type, why)

    def __call__(self, device_type: str, n: int, *args: Any) -> Any:
        if not self.wanted(device_type, n):
            return self.fn(*args)
        if self._compiled is None:
            self._compiled = torch.compile(self.fn, dynamic=True)
        graphs, start = _graph_count(), time.perf_counter()
        try:
            out = self._compiled(*args)
        except Exception as exc:  # any compiler or runtime failure: the eager path is always correct
            self._fall_back(device_type, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
            return self.fn(*args)
        if _graph_count() > graphs:
            _report.setdefault(self.name, []).append(time.perf_counter() - start)
        return out


def block_function(fn: Callable[..., Any] | None = None, *, cpu_auto: bool = False) -> Any:
    """Decorate a pure per-block function; call it as ``f(device_type, n, *args)``.

    ``cpu_auto``: compile it on CPU in the automatic mode too (CUDA always compiles in that mode).
    """
    if fn is None:
        return lambda f: _BlockFunction(f, cpu_auto)
    return _BlockFunction(fn, cpu_auto)
