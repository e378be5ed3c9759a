"""Shared test configuration: the ``loss_name`` fixture over the LossSpec table and the ``gpu`` marker skip.

Helpers live in :mod:`geokt_plugin.testing`; the names below are re-exported for tests that still import them
from here (``randn``, ``pair``, ``tol``, ``TOLERANCES``, ``LargestTensorSpy``, the ``LOSS_*`` tables).
"""

from __future__ import annotations

import os

import pytest
import torch

import geokt_plugin  # noqa: F401  (registers the GeoKT* keys before any test builds through torchdistill)
from geokt_plugin.losses import LOSS_SPECS
from geokt_plugin.testing import TOLERANCES, LargestTensorSpy, pair, randn, tol

__all__ = [
    "LOSSES",
    "LOSS_FUNCTIONS",
    "LOSS_NAMES",
    "MODULE_KEYS",
    "REFERENCES",
    "TOLERANCES",
    "LargestTensorSpy",
    "pair",
    "randn",
    "tol",
]

# The tests use tiny tensors: intra-op threads only add synchronisation, and on a shared 2-core machine OpenMP's
# spin-waiting made a 1 ms loss call cost ~17 ms of CPU. One thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)
os.environ.setdefault("GEOKT_COMPILE", "0")  # eager losses: compile time stays out of the suite (subprocesses too)

# Views of the LossSpec table, under the names older tests import.
LOSS_NAMES = tuple(LOSS_SPECS)
LOSSES = {name: (spec.function, spec.reference_function(), spec.knobs) for name, spec in LOSS_SPECS.items()}
LOSS_FUNCTIONS = {name: spec.function for name, spec in LOSS_SPECS.items()}
REFERENCES = {name: spec.reference_function() for name, spec in LOSS_SPECS.items()}
MODULE_KEYS = {name: spec.key for name, spec in LOSS_SPECS.items()}


@pytest.fixture(params=LOSS_NAMES)
def loss_name(request) -> str:
    """Each loss of the LossSpec table by its short name."""
    return request.param


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA; skip them, with the reason, where it is absent."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (marker 'gpu'); torch.cuda.is_available() is False")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _kernel_path_from_environment():
    """``GEOKT_TEST_KERNEL=native`` (or ``compiled``) runs every test on that kernel path; default: eager."""
    path = os.environ.get("GEOKT_TEST_KERNEL", "eager")
    if path == "eager":
        yield
        return
    from geokt_plugin.testing.paths import kernel_path

    with kernel_path(path):
        yield
