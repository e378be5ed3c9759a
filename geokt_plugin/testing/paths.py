"""The two paths of the block kernel, eager and compiled, as pytest parameters and a context manager.

The test suite runs eagerly by default (``GEOKT_COMPILE=0`` in ``tests/conftest.py``); a test parametrised with
:data:`PATHS` also runs compiled, on tiny shapes, unless this machine cannot compile (the skip names the reason).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ..losses.compiled import compile_available, set_compile

__all__ = ["PATHS", "kernel_path", "needs_compiler"]

_OK, _WHY = compile_available("cpu")
needs_compiler = pytest.mark.skipif(not _OK, reason=f"compiled path: {_WHY}")
PATHS = ["eager", pytest.param("compiled", marks=needs_compiler)]


@contextmanager
def kernel_path(path: str) -> Iterator[None]:
    """Run the block kernel on ``path`` (``"eager"`` or ``"compiled"``, every set size) inside the block."""
    if path not in ("eager", "compiled"):
        raise ValueError(f"kernel_path: path must be 'eager' or 'compiled', got {path!r}.")
    set_compile(path == "compiled")
    try:
        yield
    finally:
        set_compile(None)
