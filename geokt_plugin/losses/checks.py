"""Argument checks shared by the loss functions and their modules: knobs, feature maps and io_dict entries.

Every error says where (the function or class), what was received, what is allowed and how to fix it. The
modules call the same checks in ``__init__``, so a bad YAML value fails when the config is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

__all__ = [
    "REDUCTIONS",
    "SCOPES",
    "check_choice",
    "check_chunk_size",
    "check_common",
    "check_feature_maps",
    "check_generator",
    "check_int",
    "check_max_points",
    "check_neighbors",
    "check_positive",
    "io_tensor",
    "reject_unknown",
    "require_str",
]

REDUCTIONS = ("mean", "sum", "none")
SCOPES = ("image", "batch")


# ----------------------------------------------------------------------------------------------------------------
# Knobs
# ----------------------------------------------------------------------------------------------------------------


def check_choice(owner: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"Unknown {name} {value!r} for {owner}; choose one of {list(choices)}.")


def check_int(owner: str, name: str, value: object, *, minimum: int, allowed: str, hint: str,
              type_allowed: str | None = None, allow_none: bool = False) -> None:
    """Raise unless ``value`` is an integer ``>= minimum`` (or ``None`` when allowed); the one rule for integer knobs.

    Args:
        allowed: what the value message says is allowed (``"an integer >= 1"``); ``type_allowed`` the type
            message's wording when it differs. ``hint``: the fix, appended to the value message.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner}: {name} must be {type_allowed or allowed}, got {value!r} ({type(value).__name__}).")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be {allowed}, got {value}. {hint}")


def check_neighbors(owner: str, neighbors: object, *, allow_none: bool) -> None:
    """Raise unless ``neighbors`` is an integer >= 1 (or ``None`` when allowed)."""
    check_int(owner, "neighbors", neighbors, minimum=1, allowed=">= 1", hint="Use a positive neighbourhood size.",
              type_allowed="an integer >= 1 or None" if allow_none else "an integer >= 1", allow_none=allow_none)


def check_positive(owner: str, name: str, value: object) -> None:
    """Raise unless ``value`` is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {name} must be a positive number, got {value!r} ({type(value).__name__}).")
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{owner}: {name} must be a finite number > 0, got {value}.")


def check_max_points(owner: str, max_points: object) -> None:
    """Raise unless ``max_points`` is ``None`` or an integer >= 2."""
    check_int(owner, "max_points", max_points, minimum=2, allowed="None or an integer >= 2",
              hint="A point set needs at least 2 local features.", allow_none=True)


def check_generator(owner: str, generator: object) -> None:
    """Raise unless ``generator`` is ``None`` or a ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{owner}: generator must be None or a torch.Generator, got {type(generator).__name__}.")


def check_chunk_size(owner: str, chunk_size: object) -> None:
    """Raise unless ``chunk_size`` is ``None`` or an integer >= 1."""
    check_int(owner, "chunk_size", chunk_size, minimum=1, allowed="None (automatic) or an integer >= 1",
              type_allowed="None (automatic) or an integer >= 1 (distance-matrix rows per block)",
              hint="It is the number of distance-matrix rows materialised at once; smaller values use less memory.",
              allow_none=True)


def check_common(
    owner: str, *, max_points: object, scope: object, reduction: object, generator: object = None
) -> None:
    """Validate the knobs every loss shares: ``max_points``, ``scope``, ``reduction``, ``generator``."""
    check_max_points(owner, max_points)
    check_choice(owner, "scope", scope, SCOPES)
    check_choice(owner, "reduction", reduction, REDUCTIONS)
    check_generator(owner, generator)


def reject_unknown(owner: str, names: Iterable[str]) -> None:
    """torchdistill passes YAML kwargs verbatim; a typo must not be silently ignored."""
    unknown = sorted(names)
    if unknown:
        raise TypeError(
            f"{owner}: unknown argument(s) {unknown}. Check the spelling under the loss's kwargs in the YAML "
            "(see docs/losses.md for the accepted knobs)."
        )


# ----------------------------------------------------------------------------------------------------------------
# Feature maps
# ----------------------------------------------------------------------------------------------------------------


def check_feature_maps(owner: str, student: Tensor, teacher: Tensor, *, scope: str) -> None:
    """Raise unless both maps are dense, floating-point ``(B, C, H, W)`` tensors that align to sets of >= 2 points."""
    for role, x in (("student", student), ("teacher", teacher)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{owner}: the {role} feature map must be a torch.Tensor, got {type(x).__name__}.")
        if x.layout != torch.strided:
            raise TypeError(
                f"{owner}: the {role} feature map is a {x.layout} tensor (shape {tuple(x.shape)}); the losses need a "
                "dense (torch.strided) tensor. Call .to_dense() on it first."
            )
    if student.dim() != 4 or teacher.dim() != 4:
        raise ValueError(
            f"{owner}: expected 4-D feature maps (B, C, H, W), got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}. Hook a convolutional layer's output, not a pooled or flattened one."
        )
    if student.shape[0] != teacher.shape[0]:
        raise ValueError(
            f"{owner}: batch sizes differ, student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}. "
            "Both networks must see the same batch."
        )
    if not (student.is_floating_point() and teacher.is_floating_point()):
        raise TypeError(
            f"{owner}: feature maps must be floating point, got student {student.dtype} and teacher {teacher.dtype}."
        )
    for role, x in (("student", student), ("teacher", teacher)):
        _check_map_contents(owner, role, x)
    B = student.shape[0]
    H = min(student.shape[2], teacher.shape[2])
    W = min(student.shape[3], teacher.shape[3])
    if (H * W if scope == "image" else B * H * W) < 2:
        raise ValueError(
            f"{owner}: a point set needs at least 2 local features, but student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)} align to {H}x{W} positions (scope={scope!r}, batch {B}). Hook an earlier layer "
            "with a larger feature map, or use scope 'batch'."
        )


def _check_map_contents(owner: str, role: str, x: Tensor) -> None:
    """Raise for a map with no data: on the meta device, an empty batch or no channels."""
    if x.device.type == "meta":
        raise ValueError(
            f"{owner}: the {role} feature map is on the meta device (shape {tuple(x.shape)}, no data); pass a tensor "
            "on a real device (cpu, cuda)."
        )
    if x.shape[0] == 0:
        raise ValueError(f"{owner}: {role} has batch size 0 (shape {tuple(x.shape)}); a feature map needs B >= 1.")
    if x.shape[1] == 0:
        raise ValueError(f"{owner}: {role} has 0 channels (shape {tuple(x.shape)}); a feature map needs C >= 1.")


# ----------------------------------------------------------------------------------------------------------------
# Module arguments and io_dict entries
# ----------------------------------------------------------------------------------------------------------------


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
        raise TypeError(
            f"{owner}: the {role} io_dict must be a mapping of hooked module paths, got {type(io_dict).__name__}."
        )
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
