"""The native CPU kernels (``csrc/geokt_kernels.cpp``): each loss on a block of whole point sets in a few fused passes.

On CPU the eager block kernel spends its time in 15-25 elementwise passes over every ``(rows, n)`` block, in
``topk`` and in dispatch, not in arithmetic (docs/performance.md). The native kernel keeps the two batched matmuls
per network that give the squared distances and the one that applies the gradient, and does everything between
them in C++, row by row, with the row in L1: distances, the scale, the instructor's kNN or tree, the softmaxes,
the value and ``dL/dQ``. It needs blocks of whole sets (``chunk_size`` at least ``n``, or automatic with
``n <= MAX_POINTS``); other layouts, other devices and other dtypes run the block kernel of ``kernel.py``.

Build: the first use in a process compiles the source with the system C++ compiler (``c++``/``g++``/``clang++``,
``-O3 -march=native -fopenmp``; about 4 s) into a cache keyed by the source, flags, compiler and CPU
(``$GEOKT_CACHE_DIR`` or ``~/.cache/geokt_plugin``), then loads it with ctypes; later processes only load it.
OpenMP resolves to the runtime torch has already loaded, so the kernel shares torch's threads
(``torch.get_num_threads()``). Any failure (no compiler, a compile error, a read-only cache) logs one line on the
``geokt_plugin.losses`` logger and leaves the block kernel in charge for the rest of the process.

Switches: ``GEOKT_COMPILE=0`` (``set_compile(False)``) turns every compiled path off, this one included;
:func:`set_native` overrides that for this path alone: off (``False``), on (``True``, even under
``GEOKT_COMPILE=0``; still CPU and whole sets only), or back to following ``GEOKT_COMPILE`` (``None``).
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import compiled

__all__ = [
    "MAX_POINTS",
    "SOURCE",
    "distance",
    "kl",
    "library",
    "nac",
    "native_report",
    "rank",
    "reset_native_state",
    "set_native",
    "wanted",
    "whole_set_blocks",
]

LOG = logging.getLogger("geokt_plugin.losses")
SOURCE = Path(__file__).with_name("csrc") / "geokt_kernels.cpp"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-std=c++17", "-shared",
         "-fPIC")
ABI_VERSION = 1
CACHE_ENV = "GEOKT_CACHE_DIR"
MAX_POINTS = 1024  # automatic blocks: whole sets up to this size (one (n, n) matrix per network: 4 MiB in float32)
BLOCK_ENTRIES = 1 << 18  # automatic blocks: about this many distances per network (as kernel.AUTO_BLOCK_ENTRIES)
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}

_switch: bool | None = None
_state: dict[str, Any] = {}  # "lib" (CDLL), "why" (failure), "build_s", "cached", "path"


def set_native(enabled: bool | None) -> None:
    """Turn the native kernels off (``False``), force them where they apply (``True``), or automatic (``None``)."""
    global _switch
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_native: enabled must be True, False or None, got {enabled!r}.")
    _switch = enabled


def reset_native_state() -> None:
    """Forget the loaded library and any failure (tests; a process normally keeps both)."""
    _state.clear()


def native_report() -> dict[str, Any]:
    """Whether the library is loaded, from where, the seconds its build took (``None``: from the cache), and why
    it is not available when it is not."""
    return {key: _state.get(key) for key in ("path", "build_s", "why")}


def _compiler() -> str | None:
    for name in (os.environ.get("CXX") or "c++", "g++", "clang++"):
        if shutil.which(name):
            return name
    return None


def _cache_key(compiler: str) -> str:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    cpu = ""
    if os.path.exists("/proc/cpuinfo"):  # -march=native: a library is only valid on a CPU with the same features
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            cpu = next((line for line in f if line.startswith("flags")), "")
    digest = hashlib.sha256()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode(), platform.machine().encode(),
                 cpu.encode()):
        digest.update(part)
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def _cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "geokt_plugin")
    return Path(root) / "native"


def _build() -> ctypes.CDLL:
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler on PATH (c++, g++ or clang++; set CXX to choose one)")
    target = _cache_dir() / _cache_key(compiler) / "libgeokt_kernels.so"
    _state["build_s"] = None
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        # Build beside the target and rename: processes of one launch may build at once; each rename is atomic.
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            done = subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], capture_output=True, text=True,
                                  timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"{compiler} failed: {(done.stderr or done.stdout).strip().splitlines()[:1]}")
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _state["build_s"] = time.perf_counter() - start
    lib = ctypes.CDLL(str(target))
    if lib.geokt_abi_version() != ABI_VERSION:
        raise RuntimeError(f"{target} has ABI {lib.geokt_abi_version()}, expected {ABI_VERSION}")
    _state["path"] = str(target)
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, built on first use; ``None`` (logged once) where it cannot be built or loaded."""
    if "lib" not in _state and "why" not in _state:
        try:
            _state["lib"] = _build()
        except Exception as exc:  # any build or load failure: the block kernel is always correct
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            _state["why"] = why
            LOG.warning("geokt_plugin: the native CPU kernels are unavailable, the GeoKT losses use the block "
                        "kernel (%s)", why)
    return _state.get("lib")


def wanted(device_type: str, dtype: torch.dtype) -> bool:
    """Whether a loss on ``device_type`` in ``dtype`` should run on the native kernels (builds them if needed)."""
    on = _switch if _switch is not None else compiled.mode() is not False
    if not on or device_type != "cpu" or dtype not in _DTYPES:
        return False
    return library() is not None


def whole_set_blocks(num_sets: int, n: int, chunk_size: int | None) -> list[slice] | None:
    """Blocks of whole sets for the native kernels, or ``None`` where the layout splits a set's rows.

    ``chunk_size >= n`` groups ``chunk_size // n`` sets per block (as the block kernel does); ``None`` groups about
    ``BLOCK_ENTRIES`` distances per block, at least one set, for sets of at most ``MAX_POINTS`` points.
    """
    if chunk_size is not None:
        per = chunk_size // n
    elif n <= MAX_POINTS:
        per = max(1, BLOCK_ENTRIES // (n * n))
    else:
        per = 0
    if per < 1:
        return None
    return [slice(a, min(a + per, num_sets)) for a in range(0, num_sets, per)]


def _call(name: str, q_s: Tensor, q_t: Tensor, *args: Any) -> Tensor:
    """Run ``geokt_<name>`` on a block: per-set values; ``q_t`` becomes ``S`` (see the source) when gradients are
    asked for (the last of ``args``)."""
    lib = library()
    if lib is None:  # wanted() said yes, so this is a caller's bug
        raise RuntimeError("geokt_plugin: native kernels called while unavailable")
    b, n, _ = q_s.shape
    value = q_s.new_empty(b)
    fn = getattr(lib, f"geokt_{name}_{_DTYPES[q_s.dtype]}")
    converted = [ctypes.c_double(a) if isinstance(a, float) else ctypes.c_void_p(a) if isinstance(a, _Pointer)
                 else ctypes.c_int64(int(a)) for a in args]
    fn(ctypes.c_void_p(q_s.data_ptr()), ctypes.c_void_p(q_t.data_ptr()), ctypes.c_int64(b), ctypes.c_int64(n),
       *converted, ctypes.c_void_p(value.data_ptr()), ctypes.c_int(torch.get_num_threads()))
    return value


class _Pointer(int):
    """A data pointer among a kernel's arguments (0: null)."""


def _check(q_s: Tensor, q_t: Tensor) -> None:
    if q_s.shape != q_t.shape or q_s.dim() != 3 or q_s.shape[1] != q_s.shape[2] or q_s.dtype != q_t.dtype \
            or not (q_s.is_contiguous() and q_t.is_contiguous()):
        raise ValueError(f"native kernel: expected two contiguous (b, n, n) tensors of one dtype, got "
                         f"{tuple(q_s.shape)} {q_s.dtype} and {tuple(q_t.shape)} {q_t.dtype}")


def rank(q_s: Tensor, q_t: Tensor, *, neighbors: int, temperature: float, need_grad: bool) -> Tensor:
    """Per-set ``neighbor_rank_loss`` of a block of raw squared distances (``neighbors`` already ``<= n - 1``)."""
    _check(q_s, q_t)
    return _call("rank", q_s, q_t, neighbors, float(temperature), need_grad)


def kl(q_s: Tensor, q_t: Tensor, *, bandwidth: float, need_grad: bool) -> Tensor:
    """Per-set ``neighbor_kl_loss`` of a block of raw squared distances."""
    _check(q_s, q_t)
    return _call("kl", q_s, q_t, float(bandwidth), need_grad)


def distance(q_s: Tensor, q_t: Tensor, *, neighbors: int | None, need_grad: bool) -> Tensor:
    """Per-set ``local_distance_loss`` of a block (``neighbors``: ``<= n - 1``, or ``None`` for every pair)."""
    _check(q_s, q_t)
    return _call("distance", q_s, q_t, 0 if neighbors is None else neighbors, need_grad)


def nac(q_s: Tensor, q_t: Tensor, *, mst: bool, radius: int, neighbors: int, representatives: Tensor | None,
        need_grad: bool) -> Tensor:
    """Per-set ``neighborhood_contrast_loss`` of a block; ``representatives``: ``(b, n)`` long first exact copies
    of the instructor's points (see ``tree.duplicate_representatives``), for the tree."""
    _check(q_s, q_t)
    rep = _Pointer(0)
    if representatives is not None:
        representatives = representatives.to(torch.int64).contiguous()
        rep = _Pointer(representatives.data_ptr())
    return _call("nac", q_s, q_t, int(mst), radius, neighbors, rep, need_grad)
