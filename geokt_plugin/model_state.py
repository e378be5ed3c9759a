"""Model weights in files: read a checkpoint's state dict, and say why it would not load strictly into a model.

Shared by the runner (``src_ckpt``, ``--resume``, ``best.pt``) and the config checks, so both read checkpoints and
word a mismatch the same way.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["read_model_state", "state_mismatch"]


def read_model_state(file: Path, *, weights_only: bool = True) -> Mapping[str, Tensor]:
    """Read a checkpoint holding ``{'model': state_dict}`` or a raw state dict; strip a DDP ``module.`` prefix.

    Raises:
        ValueError: the file is not a torch checkpoint, or holds no mapping of tensors; the message says which.
    """
    try:
        # MultiStepLR keeps its milestones in a Counter, torchdistill's save_ckpt its `args` in a Namespace;
        # weights_only keeps arbitrary pickles out.
        with torch.serialization.safe_globals([collections.Counter, argparse.Namespace]):
            obj = torch.load(file, map_location="cpu", weights_only=weights_only)
    except Exception as exc:  # noqa: BLE001 (any unpickling failure means the same thing to the user)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ValueError(f"is not a readable torch checkpoint ({type(exc).__name__}: {first})") from exc
    state = obj.get("model", obj) if isinstance(obj, Mapping) else obj
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"holds no state_dict (found {type(state).__name__}); expected a mapping of tensors, or "
                         "{'model': state_dict}")
    if state and all(str(k).startswith("module.") for k in state):
        state = {str(k)[len("module."):]: v for k, v in state.items()}  # saved from DDP/DataParallel
    return state


def state_mismatch(model: nn.Module, state: Mapping[str, Tensor]) -> str | None:
    """Why ``model.load_state_dict(state, strict=True)`` would fail, or ``None`` when it would not."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
                  for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if not (missing or unexpected or mismatched):
        return None
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) {missing[:5]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) {unexpected[:5]}")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatch(es) (checkpoint vs model) {mismatched[:5]}")
    hint = "Use a checkpoint of the same architecture and kwargs (e.g. num_classes)."
    if unexpected and all(str(k).startswith(("student_model.", "adapters.")) for k in unexpected):
        hint = ("Its keys carry an auxiliary wrapper's 'student_model.' prefix: save or load the inner student "
                "(geokt-train's last.pt/best.pt already hold the unwrapped student).")
    return f"{'; '.join(parts)}. {hint}"
