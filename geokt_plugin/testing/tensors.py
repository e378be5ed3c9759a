"""Seeded test tensors and the comparison tolerances, by the dtype a loss computes in."""

from __future__ import annotations

import torch

__all__ = ["TOLERANCES", "pair", "randn", "tol"]

# float64 is held to a 1e-6 relative bound; float32 geometry goes through ||a||^2 + ||b||^2 - 2<a, b>, whose
# cancellation costs a few digits.
TOLERANCES: dict[torch.dtype, dict[str, float]] = {
    torch.float64: {"rtol": 1e-6, "atol": 1e-9},
    torch.float32: {"rtol": 1e-4, "atol": 1e-5},
}


def tol(dtype: torch.dtype) -> dict[str, float]:
    """Tolerances for ``torch.testing.assert_close`` on values computed in ``dtype``."""
    return TOLERANCES[dtype]


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """A seeded standard-normal tensor, generated on CPU."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)


def pair(
    B: int, Cs: int, Hs: int, Ws: int, Ct: int, Ht: int, Wt: int, *, seed: int = 0, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded (student, teacher) pair of feature maps."""
    return randn(B, Cs, Hs, Ws, seed=seed, dtype=dtype), randn(B, Ct, Ht, Wt, seed=seed + 7919, dtype=dtype)
