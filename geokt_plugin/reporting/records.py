"""Run records: one ``geokt-train`` run directory read, and runs grouped into (experiment, config) cells.

**Grouping rule.** Runs are grouped into cells ``(experiment, config)``:

- ``path``: the run directory is ``.../<experiment>/<config>/seed<S>`` (the layout of the experiment suite,
  :mod:`geokt_plugin.experiments`, and the official READMEs): the experiment is the grandparent folder's name, the
  config the parent's.
- ``config``: from the config path recorded in ``manifest.json`` (or the ``config.yaml`` header): the experiment is
  the config file's folder name, the config its file name without ``.yaml``.
- ``auto`` (default): ``path`` for directories named ``seed<N>``, else ``config``.

A config name ``<method>-<student>_from_<instructor>[_frac<P>]`` gives the *method* (the part before the first
``-``: ``ce``, ``kd``, ``geokt_rank`` ...) and the data fraction ``P`` % (100 % without the suffix). The same run
directory reached twice (a symlink) counts once per cell.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..rundir import METRICS, RunDir, config_path_from_header, read_json, read_metrics

__all__ = ["GROUP_BY", "Cell", "RunRecord", "aggregate", "fraction_of", "load_run", "mean_std", "method_of"]

GROUP_BY = ("auto", "path", "config")
_SEED_DIR = re.compile(r"^seed(\d+)$")
_FRACTION = re.compile(r"_frac(\d+(?:\.\d+)?)$")


def method_of(config: str) -> str:
    """``kd-resnet8_from_resnet20_frac10`` -> ``kd``."""
    return config.split("-", 1)[0]


def fraction_of(config: str) -> float:
    """``..._frac10`` -> 0.1; no suffix -> 1.0."""
    match = _FRACTION.search(config)
    return float(match.group(1)) / 100.0 if match else 1.0


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """Mean and sample standard deviation (n - 1 in the denominator) of the values that are not None or NaN."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not xs:
        return None, None, 0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None), len(xs)


@dataclass
class RunRecord:
    """One run directory, read."""

    run_dir: Path
    experiment: str
    config: str
    seed: int | None
    epochs: list[int]
    val_acc: list[float]
    train_acc: list[float]
    test_acc: float | None
    finished: bool
    epoch_time_s: float | None
    images_per_s: float | None

    @property
    def final_val(self) -> float | None:
        return self.val_acc[-1] if self.val_acc else None

    @property
    def best_val(self) -> float | None:
        finite = [v for v in self.val_acc if not math.isnan(v)]
        return max(finite) if finite else None

    @property
    def method(self) -> str:
        return method_of(self.config)

    @property
    def fraction(self) -> float:
        return fraction_of(self.config)


@dataclass
class Cell:
    """The runs of one (experiment, config), with mean ± std over seeds."""

    experiment: str
    config: str
    runs: list[RunRecord] = field(default_factory=list)

    @property
    def method(self) -> str:
        return method_of(self.config)

    @property
    def fraction(self) -> float:
        return fraction_of(self.config)

    @property
    def n(self) -> int:
        return len(self.runs)

    def stat(self, name: str) -> tuple[float | None, float | None, int]:
        """Mean, sample standard deviation (None for one value) and count of a per-run metric."""
        return mean_std([getattr(r, name) for r in self.runs])


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _config_path(run: RunDir, manifest: dict) -> str | None:
    if isinstance(manifest.get("config"), str):
        return manifest["config"]
    if run.config.is_file():
        first = run.config.read_text().splitlines()[:1]
        return config_path_from_header(first[0]) if first else None
    return None


def _cell_of(run: RunDir, manifest: dict, group_by: str) -> tuple[str, str]:
    """``(experiment, config)`` of a run under the grouping rule."""
    if group_by not in GROUP_BY:
        raise ValueError(f"geokt-compare: unknown --group-by {group_by!r}; choose 'auto', 'path' or 'config'.")
    if group_by == "path" or (group_by == "auto" and _SEED_DIR.match(run.path.name) is not None):
        return run.path.parent.parent.name, run.path.parent.name
    config_path = _config_path(run, manifest)
    if config_path is None:
        raise ValueError(f"geokt-compare: {run.path}: no config path in manifest.json or config.yaml; use "
                         "--group-by path with the layout <experiment>/<config>/seed<S>.")
    return Path(config_path).parent.name, Path(config_path).stem


def load_run(run_dir: str | Path, group_by: str = "auto") -> RunRecord:
    """Read one run directory; raises ``ValueError`` when it holds no ``metrics.csv``."""
    run = RunDir(Path(run_dir))
    if not run.metrics.is_file():
        raise ValueError(f"geokt-compare: {run.path} holds no {METRICS}; pass geokt-train run directories.")
    rows = read_metrics(run.metrics)
    manifest, summary = read_json(run.manifest), read_json(run.summary)
    experiment, config = _cell_of(run, manifest, group_by)
    seed = manifest.get("seed")
    if seed is None and _SEED_DIR.match(run.path.name):
        seed = int(_SEED_DIR.match(run.path.name).group(1))
    times = [_float(r.get("epoch_time_s")) for r in rows]
    speeds = [_float(r.get("images_per_s")) for r in rows]
    test = summary.get("test_acc")
    return RunRecord(
        run_dir=run.path, experiment=experiment, config=config, seed=None if seed is None else int(seed),
        epochs=[int(_float(r.get("epoch"))) for r in rows], val_acc=[_float(r.get("val_acc")) for r in rows],
        train_acc=[_float(r.get("train_acc")) for r in rows], test_acc=None if test is None else float(test),
        finished=run.finished(),
        epoch_time_s=sum(t for t in times if not math.isnan(t)) if times else None,
        images_per_s=mean_std(speeds)[0],
    )


def aggregate(records: Sequence[RunRecord]) -> list[Cell]:
    """Group runs into cells (first-seen order); a directory reached twice counts once per cell."""
    cells: dict[tuple[str, str], Cell] = {}
    seen: set[tuple[str, str, Path]] = set()
    for record in records:
        key = (record.experiment, record.config)
        real = record.run_dir.resolve()
        if (*key, real) in seen:
            continue
        seen.add((*key, real))
        cells.setdefault(key, Cell(*key)).runs.append(record)
    return list(cells.values())
