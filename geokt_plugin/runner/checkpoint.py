"""The runner's checkpoint (``last.pt`` / ``best.pt``): written and read back here, and model weights from files.

A checkpoint holds the unwrapped inner student (``model``: it loads strictly into a plain model), the adapters'
state (``extra``), optimizer, scheduler, the progress counters, the metric rows so far and every rank's RNG states,
so that ``--resume`` reproduces an uninterrupted run.
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigError
from ..model_state import read_model_state, state_mismatch
from .atomic import atomic_torch_save

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "load_model_checkpoint", "torch_load"]

CHECKPOINT_FORMAT = "geokt_plugin.checkpoint/1"


def torch_load(path: str | Path) -> Any:
    """``torch.load`` on the CPU with ``weights_only=True`` (plus ``Counter``, where MultiStepLR keeps milestones)."""
    with torch.serialization.safe_globals([collections.Counter]):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def load_model_checkpoint(model: nn.Module, path: str | os.PathLike, *, where: str = "checkpoint") -> None:
    """Load ``{'model': state_dict}`` or a raw state dict strictly; a mismatch names the path and the keys."""
    file = Path(os.path.expanduser(str(path)))
    if not file.is_file():
        raise ConfigError(f"{where}: no checkpoint at {str(path)!r} (resolved to {file.resolve()}). Train the model "
                          "first, or fix the path (relative paths start at the working directory).")
    try:
        state = read_model_state(file)
    except ValueError as exc:
        raise ConfigError(f"{where}: {file} {exc}.") from exc
    problem = state_mismatch(model, state)
    if problem is not None:
        raise ConfigError(f"{where}: {file} does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state, strict=True)


@dataclass
class Checkpoint:
    """One ``geokt_plugin.checkpoint/1`` file; the field names are the file's keys (after ``format``).

    ``epoch`` is the 0-based index of the last finished epoch; ``rng`` holds one state per rank (rank order).
    """

    model: dict[str, Tensor]
    extra: dict[str, Tensor] = field(default_factory=dict)
    optimizer: dict | None = None
    scheduler: dict | None = None
    epoch: int = -1
    stage: int = 1
    stage_grad_count: int = 0
    grad_steps: int = 0
    best_val_acc: float = -1.0
    best_epoch: int = -1
    teacher_val_acc: float | None = None
    rows: list[dict] = field(default_factory=list)
    rng: list[dict] = field(default_factory=list)
    seed: int = 0
    world_size: int = 1

    def save(self, path: Path) -> None:
        """Write atomically: a kill mid-write keeps the previous file."""
        atomic_torch_save({"format": CHECKPOINT_FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}},
                          path)

    @classmethod
    def load(cls, path: Path, *, allow_plain: bool = False) -> Checkpoint | None:
        """Read ``path`` back; ``None`` for a plain model checkpoint when ``allow_plain`` (``--test-only``).

        Raises:
            ConfigError: the file cannot be read, or is not a runner checkpoint (and not plain, or plain refused).
        """
        try:
            data = torch_load(path)
        except Exception as exc:
            raise ConfigError(f"{path} is not loadable: {type(exc).__name__}: {exc}") from exc
        if isinstance(data, dict) and data.get("format") == CHECKPOINT_FORMAT:
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in data.items() if k in names})
        if allow_plain and isinstance(data, dict):
            return None
        raise ConfigError(f"--resume: {path} is not a geokt-train checkpoint (no format {CHECKPOINT_FORMAT!r}).")
