"""Argument checks shared by the adapters and wrappers; each error names the class and the argument."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

# The keyword arguments torchdistill's build_auxiliary_model_wrapper always passes; the wrappers accept and ignore
# them (DDP is the runner's job, and modules follow the wrapper when it is moved).
TORCHDISTILL_KWARGS = ("device", "device_ids", "distributed")


def positive_int(owner: str, name: str, value: Any) -> int:
    """``value`` if it is an ``int`` >= 1 (not a bool), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")
    return value


def per_channel(owner: str, name: str, value: float | Sequence[float] | None, channels: int) -> Tensor | None:
    """``value`` (one number or one per channel) as a ``(1, channels, 1, 1)`` float32 tensor; ``None`` stays ``None``.

    Names ending in ``std`` must be positive.
    """
    if value is None:
        return None
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{owner}: {name} has {len(values)} values but the tensor it applies to has {channels} "
                         f"channels; give one value or {channels}.")
    if name.endswith("std") and any(v <= 0 for v in values):
        raise ValueError(f"{owner}: {name}={values} must be positive.")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


def reject_unknown(owner: str, kwargs: Mapping[str, Any], allowed: Sequence[str]) -> None:
    """``TypeError`` listing every key of ``kwargs`` not in ``allowed``."""
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{owner}: unknown keyword argument(s) {unknown}; allowed: {sorted(allowed)}.")


def require_model(owner: str, role: str, model: Any) -> nn.Module:
    """``model`` if it is an ``nn.Module``; ``role`` (``"teacher"`` or ``"student"``) names the YAML section."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{owner}: {role}_model must be an nn.Module (torchdistill passes it when the wrapper is "
                        f"configured under train.{role}.auxiliary_model_wrapper), got {type(model).__name__}.")
    return model
