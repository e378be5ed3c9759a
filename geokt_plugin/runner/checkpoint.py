"""The runner's checkpoint (``last.pt`` / ``best.pt``): written and read back here, and model weights from files.

A checkpoint holds the unwrapped inner student (``model``: it loads strictly into a plain model), the adapters'
state (``extra``), optimizer, scheduler, the progress counters, the metric rows so far and every rank's RNG states,
so that ``--resume`` reproduces an uninterrupted run. Each file has a SHA-256 sidecar (:mod:`.checksum`), checked
whenever it is read. :func:`save_torchdistill_ckpt` writes torchdistill's own layout (``dst_ckpt``).
"""

from __future__ import annotations

import argparse
import collections
import io
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigError
from ..model_state import read_model_state, state_mismatch
from .atomic import torch_bytes
from .checksum import read_verified, write_with_checksum

__all__ = ["CHECKPOINT_FORMAT", "FIX_BEST", "FIX_LAST", "Checkpoint", "load_model_checkpoint", "load_state_into",
           "save_torchdistill_ckpt", "torch_load"]

CHECKPOINT_FORMAT = "geokt_plugin.checkpoint/1"
FIX_LAST = ("Resume from the best epoch instead (copy best.pt and best.pt.sha256 over last.pt and last.pt.sha256), "
            "or start again with --overwrite.")
FIX_BEST = ("Delete best.pt and best.pt.sha256 to test the last epoch's weights instead, or start again with "
            "--overwrite.")
_SAFE = [collections.Counter, argparse.Namespace]  # MultiStepLR's milestones; torchdistill's saved `args`

logger = logging.getLogger(__name__)


def torch_load(source: str | Path | bytes) -> Any:
    """``torch.load`` (of a file or its bytes) on the CPU with ``weights_only=True`` (plus ``Counter``)."""
    with torch.serialization.safe_globals(_SAFE):
        data = io.BytesIO(source) if isinstance(source, bytes) else str(source)
        return torch.load(data, map_location="cpu", weights_only=True)


def load_state_into(model: nn.Module, state: Mapping[str, Tensor], *, where: str, file: Path) -> None:
    """Load ``state`` strictly into ``model``; a mismatch is a :class:`ConfigError` naming ``file`` and the keys."""
    problem = state_mismatch(model, state)
    if problem is not None:
        raise ConfigError(f"{where}: {file} does not fit {type(model).__name__}: {problem}")
    model.load_state_dict(state, strict=True)


def load_model_checkpoint(model: nn.Module, path: str | os.PathLike, *, where: str = "checkpoint",
                          fix: str = "Use another checkpoint.") -> None:
    """Load ``{'model': state_dict}`` or a raw state dict strictly (checked against its sidecar when it has one)."""
    file = Path(os.path.expanduser(str(path)))
    if not file.exists():
        raise ConfigError(f"{where}: no checkpoint at {str(path)!r} (resolved to {file.resolve()}). Train the model "
                          "first, or fix the path (relative paths start at the working directory).")
    read_verified(file, where=where, fix=fix)
    try:
        state = read_model_state(file)
    except ValueError as exc:
        raise ConfigError(f"{where}: {file} {exc}.") from exc
    load_state_into(model, state, where=where, file=file)


def save_torchdistill_ckpt(path: Path, model: nn.Module, optimizer: Any, lr_scheduler: Any, best_value: float,
                           args: dict) -> None:
    """torchdistill's ``save_ckpt`` layout (``model``, ``optimizer``, ``lr_scheduler``, ``best_value``, ``args``),
    written atomically with a checksum; ``args`` is a plain dict, so ``weights_only`` loading reads it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}  # as torchdistill's get_full_state_dict
    data = {"model": state, "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict() if lr_scheduler is not None else None,
            "best_value": best_value, "args": args}
    write_with_checksum(path, torch_bytes(data))


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
        """Write atomically, with its checksum: a kill mid-write keeps the previous file (and a matching digest)."""
        data = {"format": CHECKPOINT_FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}
        write_with_checksum(path, torch_bytes(data))

    @classmethod
    def load(cls, path: Path, *, allow_plain: bool = False, where: str = "--resume",
             fix: str = FIX_LAST) -> Checkpoint | None:
        """Read ``path`` back (checksum first); ``None`` for a plain model checkpoint when ``allow_plain``.

        Raises:
            ConfigError: the file is corrupt, cannot be read, or is not a runner checkpoint (and not plain, or plain
                refused); ``fix`` ends the message.
        """
        data, verified = read_verified(Path(path), where=where, fix=fix)
        if not verified and not allow_plain:
            logger.warning("%s: %s has no checksum file; it is read without verification", where, path)
        try:
            obj = torch_load(data)
        except Exception as exc:  # noqa: BLE001 (any unpickling failure means the same thing to the user)
            first = (str(exc).strip().splitlines() or [""])[0]
            raise ConfigError(f"{path} is not loadable: {type(exc).__name__}: {first}. {fix}") from exc
        if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
            names = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in obj.items() if k in names})
        if allow_plain and isinstance(obj, dict):
            return None
        raise ConfigError(f"{where}: {path} is not a geokt-train checkpoint (no format {CHECKPOINT_FORMAT!r}).")
