"""The kernel paths (eager, compiled, native) as pytest parameters and a context manager.

The test suite runs eagerly by default (``GEOKT_COMPILE=0`` in ``tests/conftest.py``); a test parametrised with
:data:`PATHS` also runs on ``torch.compile``'s block functions and on the native CPU kernels, unless this machine
cannot build them (the skip names the reason). The native kernels only take blocks of whole sets: a case that
splits rows (``chunk_size < n``) runs the eager block kernel on that path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from ..losses.compiled import compile_available
from ..losses.paths import select_path

__all__ = ["PATHS", "kernel_path", "needs_compiler"]

_OK, _WHY = compile_available("cpu")
needs_compiler = pytest.mark.skipif(not _OK, reason=f"compiled and native paths: {_WHY}")
PATHS = ["eager", pytest.param("compiled", marks=needs_compiler), pytest.param("native", marks=needs_compiler)]


@contextmanager
def kernel_path(path: str) -> Iterator[None]:
    """Run the losses on ``path`` (see :mod:`geokt_plugin.losses.paths`) inside the block, then ``"auto"``."""
    select_path(path)
    try:
        yield
    finally:
        select_path("auto")
