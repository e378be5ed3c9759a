"""Validation helpers that turn bad input into actionable errors (see STYLE.md, section 6)."""

from __future__ import annotations

import collections
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["io_tensor", "read_model_state", "require_str", "state_mismatch"]


def require_str(owner: str, name: str, value: object, *, example: str) -> str:
    """Return ``value`` if it is a non-empty string, else raise naming the argument and an example."""
    if value is None:
        raise ValueError(
            f"{owner}: {name} is required (e.g. {name}: {example!r}); add it under the loss's kwargs in the YAML."
        )
    if not isinstance(value, str) or not value:
        raise TypeError(f"{owner}: {name} must be a non-empty string such as {example!r}, got {value!r}.")
    return value


def io_tensor(owner: str, role: str, io_dict: object, path: str, io: str) -> Tensor:
    """Read ``io_dict[path][io]`` and explain precisely what is missing when it is not there.

    Args:
        owner: the loss class name, for messages.
        role: ``"student"`` or ``"teacher"``; names the YAML section to fix.
        io_dict: torchdistill's ``{module_path: {"input"|"output": tensor}}`` dict.
        path: the hooked module path.
        io: ``"input"`` or ``"output"``.
    """
    if not isinstance(io_dict, Mapping):
        raise TypeError(f"{owner}: the {role} io_dict must be a mapping of hooked module paths, got "
                        f"{type(io_dict).__name__}.")
    if path not in io_dict:
        hooked = sorted(str(k) for k in io_dict)
        raise ValueError(
            f"{owner}: {role} io_dict has no entry {path!r} (hooked: {hooked}). Add {path!r} to "
            f"train.{role}.forward_hook.{io} in the YAML, or fix {role}_module_path."
        )
    entry = io_dict[path]
    if not isinstance(entry, Mapping):
        raise TypeError(
            f"{owner}: {role} io_dict[{path!r}] is a {type(entry).__name__}, not a mapping of 'input'/'output' to "
            f"tensors. Pass the io_dict torchdistill's forward hooks fill (io_dict[path][io] is the tensor)."
        )
    if io not in entry:
        have = sorted(entry)
        raise ValueError(
            f"{owner}: {role} io_dict[{path!r}] has no {io!r} (has: {have}). Add {path!r} to "
            f"train.{role}.forward_hook.{io} in the YAML, or set {role}_module_io to one of {have}."
        )
    value = entry[io]
    if not isinstance(value, Tensor):
        raise TypeError(
            f"{owner}: {role} io_dict[{path!r}][{io!r}] is a {type(value).__name__}, not a tensor. Hook a module "
            "whose output is a single feature map (B, C, H, W)."
        )
    if value.dim() != 4:
        raise ValueError(
            f"{owner}: {role} layer {path!r} ({io}) has shape {tuple(value.shape)}; a 4-D feature map (B, C, H, W) is "
            f"required. Set {role}_module_path to a convolutional stage (e.g. 'layer2'), not a pooled or linear layer."
        )
    return value


def read_model_state(file: Path, *, weights_only: bool = True) -> Mapping[str, Tensor]:
    """Read a checkpoint holding ``{'model': state_dict}`` or a raw state dict; strip a DDP ``module.`` prefix.

    Raises:
        ValueError: the file is not a torch checkpoint, or holds no mapping of tensors; the message says which.
    """
    try:
        # MultiStepLR keeps its milestones in a Counter; weights_only keeps arbitrary pickles out.
        with torch.serialization.safe_globals([collections.Counter]):
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
