"""What a run leaves in its directory besides checkpoints: manifest, config copy, metrics, TensorBoard events,
fingerprints, summary and the ``done`` marker. File names and metrics columns come from :mod:`geokt_plugin.rundir`."""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import rundir
from ..probes import AGREEMENT_PREFIX
from .atomic import atomic_write_text

__all__ = ["MetricsLog", "fingerprint", "git_sha", "new_manifest", "open_tensorboard", "utc_now", "write_config_copy",
           "write_done", "write_json", "write_manifest"]

logger = logging.getLogger(__name__)


def utc_now(timespec: str = "auto") -> str:
    """The current UTC time in ISO format."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec=timespec)


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def write_done(run_dir: Path) -> None:
    """The ``done`` marker, written last: the run finished."""
    atomic_write_text(rundir.RunDir(run_dir).done, utc_now() + "\n")


def git_sha() -> str | None:
    """The checkout's commit (``-dirty`` with uncommitted changes), or ``None`` outside a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def new_manifest(argv: list[str], accelerator: Any, seed: int, config_path: Path, data: dict | None = None) -> dict:
    """Versions, seed, world size, precision, device, config path, argv, host and data fingerprint of a new run."""
    import accelerate
    import torchdistill
    import torchvision

    import geokt_plugin

    return {
        "geokt_plugin": geokt_plugin.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torchdistill": getattr(torchdistill, "__version__", None),
        "accelerate": accelerate.__version__,
        "python": sys.version.split()[0],
        "git_sha": git_sha(),
        "seed": seed,
        "world_size": accelerator.num_processes,
        "mixed_precision": str(accelerator.mixed_precision),
        "device": str(accelerator.device),
        "distributed_type": str(accelerator.distributed_type),
        "config": str(config_path),
        "argv": argv,
        "host": socket.gethostname(),
        "started": utc_now("seconds"),
        "data": data,
        "resumes": [],
    }


def write_manifest(run_dir: Path, manifest: dict, resume: dict | None = None) -> None:
    """``manifest`` (a new one, or the previous one read before anything was written), with ``resume`` appended."""
    if resume is not None:
        manifest.setdefault("resumes", []).append({**resume, "time": utc_now("seconds")})
    write_json(rundir.RunDir(run_dir).manifest, manifest)


def write_config_copy(path: Path, config_path: Path, text: str, overrides: list[str]) -> None:
    """A config copy (``config.yaml``): the header naming the source and the overrides, then the text as read."""
    atomic_write_text(path, rundir.config_header(config_path, overrides) + "\n" + text)


class MetricsLog:
    """metrics.csv rewritten atomically from all rows each epoch (the rows also live in the checkpoint)."""

    def __init__(self, path: Path, rows: list[dict] | None = None) -> None:
        self.path = path
        self.rows = list(rows or [])

    def append(self, row: dict) -> None:
        """Add one epoch's row (written by the next :meth:`write`)."""
        self.rows.append(row)

    def last(self, key: str) -> Any:
        """``key`` of the last row, or ``None`` without rows."""
        return self.rows[-1].get(key) if self.rows else None

    def write(self) -> None:
        """Rewrite the whole file atomically."""
        terms = {k for row in self.rows for k in row if k.startswith(rundir.TERM_PREFIX)}
        agreements = dict.fromkeys(k for row in self.rows for k in row if k.startswith(AGREEMENT_PREFIX))
        columns = [*rundir.metrics_columns(terms), *agreements]  # agree/<layer> last, in the config's layer order
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})
        atomic_write_text(self.path, out.getvalue())


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return "" if value is None else value


class _NoTensorBoard:
    """Stands in for ``SummaryWriter`` when tensorboard is not installed."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_tensorboard(run_dir: Path, purge_step: int | None) -> Any:
    """A ``SummaryWriter`` on ``<run_dir>/tb``, or a no-op writer (and one log line) without tensorboard."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        logger.info("tensorboard is not available (%s); no %s/ events are written (pip install tensorboard)", exc,
                    rundir.TENSORBOARD)
        return _NoTensorBoard()
    return SummaryWriter(log_dir=str(rundir.RunDir(run_dir).tensorboard), purge_step=purge_step)


def fingerprint(model: nn.Module) -> dict[str, str]:
    """SHA-256 of the trained model's parameters and of its buffers (student and adapters), in state-dict order."""
    digests = {"parameters": hashlib.sha256(), "buffers": hashlib.sha256()}
    names = {name for name, _ in model.named_parameters()}
    for name, tensor in model.state_dict().items():
        digest = digests["parameters" if name in names else "buffers"]
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {kind: digest.hexdigest() for kind, digest in digests.items()}
