"""``--resume`` continues the *same* run: what the run directory recorded (config text, seed, precision, data, the
manifest) is compared with this invocation before anything is written. A difference is refused unless
``--allow-config-change`` says it is intended; then it is recorded (see :func:`record_changes`)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import rundir
from ..config import ConfigError
from .checkpoint import FIX_BEST, Checkpoint
from .checksum import read_verified

__all__ = ["Previous", "check_previous", "check_same_run", "config_difference", "data_fingerprint",
           "read_manifest"]

logger = logging.getLogger("geokt_plugin.runner")


@dataclass
class Previous:
    """The run being continued: its ``last.pt``, its manifest, and what differs (accepted) in this invocation."""

    path: Path
    checkpoint: Checkpoint
    manifest: dict | None
    changes: list[str] = field(default_factory=list)
    config_changed: bool = False


def read_manifest(run_dir: rundir.RunDir) -> dict | None:
    """``manifest.json``, or ``None`` when there is none; a corrupt one is a :class:`ConfigError` (nothing written)."""
    path = run_dir.manifest
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"run dir {str(run_dir.path)!r}: {rundir.MANIFEST} is not readable JSON ({exc}); it "
                          "records the run's versions and resumes. Restore it, delete it to start a new record, or "
                          "start again with --overwrite.") from exc
    if not isinstance(data, dict) or not isinstance(data.get("resumes", []), list):
        raise ConfigError(f"run dir {str(run_dir.path)!r}: {rundir.MANIFEST} is not a geokt-train manifest (a JSON "
                          "object with a 'resumes' list). Restore it, delete it to start a new record, or start "
                          "again with --overwrite.")
    return data


def config_difference(old: str, new: str) -> str | None:
    """Where two config texts first differ (header lines aside), or ``None`` when they are the same."""
    a, b = rundir.config_body(old).splitlines(), rundir.config_body(new).splitlines()
    if a == b:
        return None
    i = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    before = a[i].strip() if i < len(a) else "<end of file>"
    after = b[i].strip() if i < len(b) else "<end of file>"
    return f"line {i + 1}: {before!r} -> {after!r}"


def _used_config_text(run_dir: rundir.RunDir) -> str | None:
    try:
        return run_dir.used_config_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"run dir {str(run_dir.path)!r}: {rundir.CONFIG} cannot be read ({exc}); it is the config "
                          "the run started with. Restore it, or start again with --overwrite.") from exc


def check_previous(run_dir: Path, config_text: str, seed: int, *, allow_change: bool) -> Previous:
    """The run in ``run_dir`` to continue: manifest, ``last.pt`` (checksum verified), config text and seed compared."""
    folder = rundir.RunDir(run_dir)
    manifest = read_manifest(folder)
    ckpt = Checkpoint.load(folder.last)
    if ckpt is None:  # not reached: allow_plain is False
        raise ConfigError(f"--resume: {folder.last} is not a geokt-train checkpoint.")
    if folder.best.exists():  # the test phase reads it: find out now, not after the last epoch
        read_verified(folder.best, where="--resume", fix=FIX_BEST)
    changes = []
    used = _used_config_text(folder)
    difference = config_difference(used, config_text) if used is not None else None
    if difference is not None:
        changes.append(f"the config differs from the one the run started with ({folder.config}), first at "
                       f"{difference}")
    if int(ckpt.seed) != seed:
        changes.append(f"the seed is {seed}, the run's is {ckpt.seed}")
    _refuse_or_accept(changes, allow_change, folder)
    return Previous(folder.last, ckpt, manifest, changes, difference is not None)


def _refuse_or_accept(changes: list[str], allow_change: bool, folder: rundir.RunDir) -> None:
    if not changes:
        return
    if allow_change:
        logger.warning("--resume --allow-config-change: %s (recorded in %s)", "; ".join(changes), rundir.MANIFEST)
        return
    raise ConfigError(f"--resume: {'; '.join(changes)}. Resume with the run's own config and flags (its copy is "
                      f"{folder.config}), pass --allow-config-change if the change is intended, or start again "
                      "with --overwrite.")


def data_fingerprint(datasets: Mapping[str, Any]) -> dict[str, dict]:
    """Per dataset id: its length and a SHA-256 of its ``targets`` (where it has them); reads no sample."""
    result = {}
    for name, dataset in datasets.items():
        try:
            length = len(dataset)
        except TypeError:
            length = None
        result[str(name)] = {"length": length, "targets": _targets_digest(dataset)}
    return result


def _targets_digest(dataset: Any) -> str | None:
    targets = getattr(dataset, "targets", None)
    if targets is None:
        return None
    try:
        tensor = torch.as_tensor(targets).detach().cpu().contiguous()
    except (TypeError, ValueError, RuntimeError):
        return None
    return hashlib.sha256(tensor.to(torch.int64).numpy().tobytes()).hexdigest()[:16]


def check_same_run(previous: Previous, data: dict, mixed_precision: str, *, allow_change: bool) -> None:
    """Data and precision as the manifest recorded them (runs without a record pass)."""
    manifest = previous.manifest or {}
    changes = []
    recorded = manifest.get("data")
    if isinstance(recorded, dict) and recorded != data:
        names = sorted(k for k in set(recorded) | set(data) if recorded.get(k) != data.get(k))
        changes.append(f"the data differ from the run's (datasets {names}: lengths or targets)")
    if manifest.get("mixed_precision") not in (None, mixed_precision):
        changes.append(f"mixed precision is {mixed_precision}, the run's is {manifest['mixed_precision']}")
    _refuse_or_accept(changes, allow_change, rundir.RunDir(previous.path.parent))
    previous.changes.extend(changes)
