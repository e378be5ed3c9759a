"""The kernel paths a loss can run on, chosen by name: one switch for benchmarks, tests and users.

``"auto"`` (the default): the native C++ kernels on CPU where the blocks hold whole sets, ``torch.compile`` where it
was measured worth it (all block functions on CUDA), the eager block kernel elsewhere; ``GEOKT_COMPILE=0`` turns
the compiled paths off. ``"eager"``: the block kernel, eager. ``"compiled"``: the block kernel's functions through
``torch.compile`` at every set size, no native kernels. ``"native"``: the native kernels where they apply (even
under ``GEOKT_COMPILE=0``), the eager block kernel elsewhere.
"""

from __future__ import annotations

from . import native
from .compiled import set_compile

__all__ = ["KERNEL_PATHS", "select_path"]

KERNEL_PATHS = ("auto", "eager", "compiled", "native")
_SWITCHES = {"auto": (None, None), "eager": (False, False), "compiled": (True, False), "native": (False, True)}


def select_path(path: str) -> None:
    """Run every later loss call on ``path`` (one of :data:`KERNEL_PATHS`), process-wide."""
    if path not in _SWITCHES:
        raise ValueError(f"select_path: path must be one of {', '.join(map(repr, KERNEL_PATHS))}, got {path!r}.")
    compile_switch, native_switch = _SWITCHES[path]
    set_compile(compile_switch)
    native.set_native(native_switch)
