"""Test helpers, importable like ``kornia.testing``: references, seeded tensors, tolerances, contract checks.

- :mod:`~geokt_plugin.testing.reference`: naive float64 loops written from docs/losses.md;
- :mod:`~geokt_plugin.testing.dense`: the losses by plain autograd over full matrices (the chunking oracle);
- :func:`randn`, :func:`pair`, :func:`tol`, :data:`TOLERANCES`: seeded maps and per-dtype tolerances;
- :class:`LargestTensorSpy`: the largest tensor any op returns, for memory tests;
- :mod:`~geokt_plugin.testing.contract`: the checks every loss must pass.
"""

from . import contract, dense, reference
from .contract import assert_matches_reference, assert_module_contract, gradcheck_student, minimal_kwargs
from .dense import dense_loss
from .spy import LargestTensorSpy
from .tensors import TOLERANCES, pair, randn, tol

__all__ = [
    "TOLERANCES",
    "LargestTensorSpy",
    "assert_matches_reference",
    "assert_module_contract",
    "contract",
    "dense",
    "dense_loss",
    "gradcheck_student",
    "minimal_kwargs",
    "pair",
    "randn",
    "reference",
    "tol",
]
