"""The native CPU kernels (``csrc/geokt_kernels.cpp``): each loss on a block of whole point sets in a few fused passes.

On CPU the eager block kernel spends its time in 15-25 elementwise passes over every ``(rows, n)`` block, in
``topk`` and in dispatch, not in arithmetic (docs/performance.md). The native kernel keeps one batched matmul per
network (the Gram matrices) and two that apply the gradient, and does everything between them in C++, row by
row, with the row in L1: squared distances, the scale, the instructor's kNN or tree, the softmaxes, the value and
``dL/dQ``. It needs blocks of whole sets (``chunk_size`` at least ``n``, or automatic with
``n <= MAX_POINTS``); other layouts, other devices and other dtypes run the block kernel of ``kernel.py``.

Build: the first use on a machine compiles the source with the system C++ compiler (``c++``/``g++``/``clang++``,
``-O3 -march=native -fopenmp``; 4-6 s) into a cache keyed by the source, flags, compiler and CPU
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
from .geometry import AUTO_BLOCK_ENTRIES

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
    ``AUTO_BLOCK_ENTRIES`` distances per block, at least one set, for sets of at most ``MAX_POINTS`` points.
    """
    if chunk_size is not None:
        per = chunk_size // n
    elif n <= MAX_POINTS:
        per = max(1, AUTO_BLOCK_ENTRIES // (n * n))
    else:
        per = 0
    if per < 1:
        return None
    return [slice(a, min(a + per, num_sets)) for a in range(0, num_sets, per)]


def _call(name: str, g_s: Tensor, g_t: Tensor, sq_s: Tensor, sq_t: Tensor, *args: Any) -> Tensor:
    """Run ``geokt_<name>`` on a block of Gram matrices and squared norms; per-set values. ``g_s`` and ``g_t`` are
    overwritten: ``g_t`` by ``C'`` with ``dL/dX_s = -2 (C' X_s + C'^T X_s)`` when gradients are asked for (the last
    of ``args``)."""
    _check(g_s, g_t, sq_s, sq_t)
    lib = library()
    if lib is None:  # wanted() said yes, so this is a caller's bug
        raise RuntimeError("geokt_plugin: native kernels called while unavailable")
    b, n, _ = g_s.shape
    value = g_s.new_empty(b)
    fn = getattr(lib, f"geokt_{name}_{_DTYPES[g_s.dtype]}")
    converted = [ctypes.c_double(a) if isinstance(a, float) else ctypes.c_void_p(a) if isinstance(a, _Pointer)
                 else ctypes.c_int64(int(a)) for a in args]
    fn(*(ctypes.c_void_p(x.data_ptr()) for x in (g_s, g_t, sq_s, sq_t)), ctypes.c_int64(b), ctypes.c_int64(n),
       *converted, ctypes.c_void_p(value.data_ptr()), ctypes.c_int(torch.get_num_threads()))
    return value


class _Pointer(int):
    """A data pointer among a kernel's arguments (0: null)."""


def _check(g_s: Tensor, g_t: Tensor, sq_s: Tensor, sq_t: Tensor) -> None:
    b, n = g_s.shape[:2]
    ok = (g_s.dim() == 3 and g_s.shape == g_t.shape == (b, n, n) and sq_s.shape == sq_t.shape == (b, n)
          and len({x.dtype for x in (g_s, g_t, sq_s, sq_t)}) == 1 and g_s.dtype in _DTYPES
          and all(x.is_contiguous() and x.device.type == "cpu" for x in (g_s, g_t, sq_s, sq_t)))
    if not ok:
        raise ValueError(f"native kernel: expected contiguous CPU (b, n, n) Gram matrices and (b, n) squared norms "
                         f"of one float dtype, got {tuple(g_s.shape)}, {tuple(g_t.shape)}, {tuple(sq_s.shape)}, "
                         f"{tuple(sq_t.shape)} ({g_s.dtype}, {g_t.dtype}, {sq_s.dtype}, {sq_t.dtype})")


Side = tuple[Tensor, Tensor, Tensor, Tensor]  # (G_s, G_t, |x_s|^2, |x_t|^2) of one block


def rank(block: Side, *, neighbors: int, temperature: float, need_grad: bool) -> Tensor:
    """Per-set ``neighbor_rank_loss`` of a block (``neighbors`` already ``<= n - 1``)."""
    return _call("rank", *block, neighbors, float(temperature), need_grad)


def kl(block: Side, *, bandwidth: float, need_grad: bool) -> Tensor:
    """Per-set ``neighbor_kl_loss`` of a block."""
    return _call("kl", *block, float(bandwidth), need_grad)


def distance(block: Side, *, neighbors: int | None, need_grad: bool) -> Tensor:
    """Per-set ``local_distance_loss`` of a block (``neighbors``: ``<= n - 1``, or ``None`` for every pair)."""
    return _call("distance", *block, 0 if neighbors is None else neighbors, need_grad)


def nac(block: Side, *, mst: bool, radius: int, neighbors: int, points: Tensor | None, need_grad: bool) -> Tensor:
    """Per-set ``neighborhood_contrast_loss`` of a block; ``points``: the instructor's ``(b, n, C)`` points, for the
    tree (its exact copies tie exactly, as in ``tree.minimum_spanning_tree``); ``None`` with the kNN graph."""
    ptr, channels = _Pointer(0), 0
    if mst:
        if points is None or points.shape[:2] != block[0].shape[:2] or points.dtype != block[0].dtype:
            raise ValueError("native nac: the tree needs the instructor's (b, n, C) points in the distances' dtype")
        points = points.contiguous()
        ptr, channels = _Pointer(points.data_ptr()), points.shape[2]
    return _call("nac", *block, int(mst), radius, neighbors, ptr, channels, need_grad)
