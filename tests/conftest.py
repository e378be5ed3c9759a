"""Shared test configuration: per-dtype tolerances, loss tables, seeded data helpers, the ``gpu`` marker skip."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import reference as ref
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import geokt_plugin  # noqa: F401  (registers the GeoKT* keys before any test builds through torchdistill)
from geokt_plugin import functional as GF

# The tests use tiny tensors: intra-op threads only add synchronisation, and on a shared 2-core machine OpenMP's
# spin-waiting made a 1 ms loss call cost ~17 ms of CPU. One thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)

# Comparison tolerances by the dtype the loss computes in. float64 is held to the brief's 1e-6 relative bound;
# float32 geometry goes through ||a||^2 + ||b||^2 - 2<a, b>, whose cancellation costs a few digits.
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"rtol": 1e-6, "atol": 1e-9},
    torch.float32: {"rtol": 1e-4, "atol": 1e-5},
}

# name -> (functional form, reference form, the loss-specific knobs and their spec defaults)
LOSSES: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor], dict]] = {
    "distance": (GF.local_distance_loss, ref.local_distance_loss, {"neighbors": 8}),
    "kl": (GF.neighbor_kl_loss, ref.neighbor_kl_loss, {"bandwidth": 0.5}),
    "rank": (GF.neighbor_rank_loss, ref.neighbor_rank_loss, {"neighbors": 8, "temperature": 0.1}),
}
LOSS_NAMES = tuple(LOSSES)
LOSS_FUNCTIONS = {name: fn for name, (fn, _, _) in LOSSES.items()}
REFERENCES = {name: fn for name, (_, fn, _) in LOSSES.items()}

# Registry key of the module twin of each functional loss (spec, "The three losses").
MODULE_KEYS = {"distance": "GeoKTDistanceLoss", "kl": "GeoKTNeighborKLLoss", "rank": "GeoKTNeighborRankLoss"}


def tol(dtype: torch.dtype) -> dict[str, float]:
    """Tolerances for ``torch.testing.assert_close`` on values computed in ``dtype``."""
    return TOLERANCES[dtype]


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A seeded standard-normal tensor, generated on CPU."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def pair(
    B: int, Cs: int, Hs: int, Ws: int, Ct: int, Ht: int, Wt: int, *, seed: int = 0, dtype=torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (student, teacher) pair of feature maps."""
    return randn(B, Cs, Hs, Ws, seed=seed, dtype=dtype), randn(B, Ct, Ht, Wt, seed=seed + 7919, dtype=dtype)


@pytest.fixture(params=LOSS_NAMES)
def loss_name(request) -> str:
    """Each of the three losses by its short name."""
    return request.param


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` need CUDA; skip them, with the reason, where it is absent."""
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (marker 'gpu'); torch.cuda.is_available() is False")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


class LargestTensorSpy(TorchDispatchMode):
    """Records the largest element count of any tensor an ATen op returns (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for leaf in tree_flatten(out)[0]:
            if isinstance(leaf, torch.Tensor):
                self.largest = max(self.largest, leaf.numel())
        return out
