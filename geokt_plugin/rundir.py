"""The layout of a geokt-train run directory: one definition of every file name, the ``done`` marker, the
``config.yaml`` header and the ``metrics.csv`` columns, read by the runner, the config checks, the reports, the
experiment suite and the demo.

A run directory holds (all written atomically by the main process):

- ``config.yaml``: a header line (:func:`config_header`) followed by the config's text, byte for byte;
- ``manifest.json``: versions, seed, world size, precision, device, the config path, argv and resumes;
- ``metrics.csv``: one row per epoch (:func:`metrics_columns`);
- ``last.pt`` / ``best.pt``: checkpoints (the last epoch, the best validation epoch);
- ``params.json``: fingerprints of every rank's weights; ``summary.json``: the final numbers;
- ``test.json``: the result of ``--test-only``; ``train.log``; ``tb/``: TensorBoard events;
- ``done``: written last, when the run finished (test phase included);
- ``last.pt.sha256`` / ``best.pt.sha256``: the checkpoints' SHA-256 digests, checked on every load;
- ``config.resume-<k>.yaml``: the config of resume ``k`` when it differs from ``config.yaml`` (which keeps the
  config the run started with);
- ``run.lock``: held while a run uses the folder (pid, host, start time);
- ``.previous-<timestamp>/``: what ``--overwrite`` moved aside, until the new run's first checkpoint.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BEST",
    "CHECKSUM_SUFFIX",
    "CONFIG",
    "DONE",
    "LAST",
    "LOCK",
    "LOG",
    "MANIFEST",
    "METRICS",
    "METRICS_FIRST",
    "METRICS_LAST",
    "PARAMS",
    "PREVIOUS_PREFIX",
    "PREVIOUS_RUN_FILES",
    "RESUMED_CONFIG_GLOB",
    "RUN_DIRS",
    "RUN_FILES",
    "SUMMARY",
    "TENSORBOARD",
    "TEST",
    "RunDir",
    "checksum_path",
    "config_body",
    "config_header",
    "config_path_from_header",
    "config_text_from_copy",
    "metrics_columns",
    "read_json",
    "read_metrics",
    "resumed_config_name",
]

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
METRICS = "metrics.csv"
LAST = "last.pt"
BEST = "best.pt"
PARAMS = "params.json"
SUMMARY = "summary.json"
TEST = "test.json"
LOG = "train.log"
DONE = "done"
TENSORBOARD = "tb"
LOCK = "run.lock"
CHECKSUM_SUFFIX = ".sha256"
PREVIOUS_PREFIX = ".previous-"
RESUMED_CONFIG_GLOB = "config.resume-*.yaml"

# Everything the runner writes (what --overwrite moves aside; nothing else in the folder is touched).
RUN_FILES = (METRICS, CONFIG, MANIFEST, LAST, BEST, SUMMARY, TEST, LOG, PARAMS, DONE, LAST + CHECKSUM_SUFFIX,
             BEST + CHECKSUM_SUFFIX)
RUN_DIRS = (TENSORBOARD,)
# The files whose presence means the folder holds a previous run (a new run there needs --resume or --overwrite).
PREVIOUS_RUN_FILES = (LAST, BEST, METRICS, MANIFEST, DONE)

# metrics.csv: these columns first, then one ``loss/<term>`` column per criterion term (sorted), then these.
METRICS_FIRST = ("epoch", "stage", "lr", "train_loss")
METRICS_LAST = ("train_acc", "val_acc", "epoch_time_s", "images_per_s", "steps", "skipped_steps")
TERM_PREFIX = "loss/"

_HEADER = "# as run by geokt-train from "
_HEADER_RE = re.compile(re.escape(_HEADER) + r"(\S+)")


def metrics_columns(term_names: list[str] | tuple[str, ...] | set[str]) -> list[str]:
    """The ``metrics.csv`` header for a criterion whose terms are ``term_names`` (``loss/`` prefix included)."""
    return [*METRICS_FIRST, *sorted(term_names), *METRICS_LAST]


def config_header(config_path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> str:
    """The first line of a run's ``config.yaml``: where the config came from and the command-line overrides."""
    return f"{_HEADER}{config_path}" + (f" with {' '.join(overrides)}" if overrides else "")


def config_path_from_header(first_line: str) -> str | None:
    """The config path a ``config.yaml`` header line names, or ``None`` when the line is not such a header."""
    match = _HEADER_RE.match(first_line)
    return match.group(1) if match else None


def config_text_from_copy(copy_text: str) -> str:
    """The original config text inside a run's ``config.yaml`` (the header line removed)."""
    return copy_text.split("\n", 1)[-1]


def config_body(text: str) -> str:
    """A config's text without the ``config.yaml`` header lines in front (a copy of a copy has two)."""
    while config_path_from_header(text.split("\n", 1)[0]) is not None:
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text


def resumed_config_name(resume_number: int) -> str:
    """``config.resume-<k>.yaml``: the changed config of the ``k``-th resume (see :data:`RESUMED_CONFIG_GLOB`)."""
    return f"config.resume-{resume_number}.yaml"


def checksum_path(file: Path) -> Path:
    """The sidecar holding ``file``'s SHA-256 digest (``last.pt`` -> ``last.pt.sha256``)."""
    return file.with_name(file.name + CHECKSUM_SUFFIX)


def read_json(path: Path) -> dict:
    """A JSON object from ``path``, or ``{}`` when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(path: Path) -> list[dict[str, str]]:
    """The rows of a ``metrics.csv`` as dicts of strings."""
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (``RunDir(path).last`` is ``path / 'last.pt'``)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def params(self) -> Path:
        return self.path / PARAMS

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def test(self) -> Path:
        return self.path / TEST

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def done(self) -> Path:
        return self.path / DONE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    def finished(self) -> bool:
        """The run completed: its ``done`` marker, written last, exists."""
        return self.done.is_file()

    def previous_run_files(self) -> list[str]:
        """Which of :data:`PREVIOUS_RUN_FILES` the folder holds (empty when it is not a directory)."""
        if not self.path.is_dir():
            return []
        return [name for name in PREVIOUS_RUN_FILES if (self.path / name).exists()]

    def used_config_text(self) -> str | None:
        """The config text this run used (from its ``config.yaml``), or ``None`` when there is none."""
        return config_text_from_copy(self.config.read_text()) if self.config.is_file() else None
