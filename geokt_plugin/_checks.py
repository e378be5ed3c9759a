"""Checks of a loss module's arguments and io_dict entries, with errors that say where, what and how to fix."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

__all__ = ["io_tensor", "require_str"]


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
