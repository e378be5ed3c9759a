"""The losses of docs/losses.md by plain autograd over full ``(S, n, n)`` matrices, vectorised.

Two users: ``tests/losses/test_chunking.py`` (the oracle for values *and* gradients of the fused kernel) and
``benchmarks/bench_losses.py`` (the "dense" baseline: what a straightforward implementation costs). Nothing is
imported from the rest of ``geokt_plugin``; the benchmark passes the package's own dense geometry through
``normalized``.

Inputs are already aligned maps of equal ``H, W`` (no pooling, no sampling); see
:mod:`geokt_plugin.testing.reference` for the full input pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["dense_loss", "normalized_by_differences"]

# The knobs each loss reads here; callers pass them all (``LossSpec.knobs`` holds the defaults).
_KNOBS = {"distance": ("neighbors",), "kl": ("bandwidth",), "rank": ("neighbors", "temperature")}


def normalized_by_differences(points: Tensor) -> Tensor:
    """``Dn`` from explicit differences ``x_i - x_j`` (exact zeros for duplicate points, unlike the expansion)."""
    diff = points.unsqueeze(2) - points.unsqueeze(1)
    d = (diff.pow(2).sum(-1) + 1e-12).sqrt()
    n = points.shape[1]
    off = ~torch.eye(n, dtype=torch.bool, device=points.device)
    scale = (d * off).sum((1, 2)) / (n * (n - 1))
    return d / scale.clamp_min(1e-12)[:, None, None]


def dense_loss(
    name: str,
    student: Tensor,
    teacher: Tensor,
    *,
    scope: str = "image",
    normalized: Callable[[Tensor], Tensor] = normalized_by_differences,
    **knobs: float | int | None,
) -> Tensor:
    """Per-set values of ``name`` in ``{"distance", "kl", "rank"}`` with the loss's ``knobs``.

    ``neighbors=None`` gives the distance loss on every pair.
    """
    if name not in _KNOBS:
        raise ValueError(f"dense_loss: unknown loss {name!r}; choose one of {list(_KNOBS)}.")
    missing = [knob for knob in _KNOBS[name] if knob not in knobs]
    if missing:
        raise ValueError(f"dense_loss: {name!r} needs the knob(s) {missing}; pass LossSpec.knobs.")
    s = student.flatten(2).transpose(1, 2)
    t = teacher.detach().flatten(2).transpose(1, 2)
    if scope == "batch":
        s, t = s.reshape(1, -1, s.shape[-1]), t.reshape(1, -1, t.shape[-1])
    n = s.shape[1]
    diag = torch.eye(n, dtype=torch.bool, device=s.device)
    dn_s, dn_t = normalized(s), normalized(t)
    if name == "kl":
        bw = knobs["bandwidth"]
        lp_s = (-dn_s.pow(2) / bw).masked_fill(diag, -math.inf).log_softmax(-1).masked_fill(diag, 0.0)
        lp_t = (-dn_t.pow(2) / bw).masked_fill(diag, -math.inf).log_softmax(-1).masked_fill(diag, 0.0)
        return (lp_t.exp() * (lp_t - lp_s)).sum((1, 2)) / n
    if name == "distance" and knobs["neighbors"] is None:
        err = F.huber_loss(dn_s, dn_t, reduction="none", delta=1.0).masked_fill(diag, 0.0)
        return err.sum((1, 2)) / (n * (n - 1))
    k = min(knobs["neighbors"], n - 1)
    with torch.no_grad():
        idx = dn_t.masked_fill(diag, math.inf).topk(k, dim=-1, largest=False).indices
    if name == "distance":
        err = F.huber_loss(dn_s.gather(2, idx), dn_t.gather(2, idx), reduction="none", delta=1.0)
        return err.sum((1, 2)) / (n * k)
    log_q = (-dn_s / knobs["temperature"]).masked_fill(diag, -math.inf).log_softmax(-1).masked_fill(diag, 0.0)
    return (-math.log(k) - log_q.gather(2, idx).mean(-1)).mean(-1)
