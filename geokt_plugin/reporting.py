"""Compare runs: Markdown/CSV tables and PNG plots from ``geokt-train`` run directories.

``geokt-compare RUN_DIR... [--out DIR] [--group-by auto|path|config] [--min-seeds 3]``

Each run directory holds ``metrics.csv`` (one row per epoch), ``manifest.json`` (seed, config path, world size,
...), ``config.yaml`` and, for a finished run, ``summary.json`` (``test_acc`` is the test top-1 of ``best.pt``, the
checkpoint with the best validation top-1).

**Grouping rule.** Runs are grouped into cells ``(experiment, config)``:

- ``path``: the run directory is ``.../<experiment>/<config>/seed<S>`` (the layout ``scripts/suite.py`` and the
  official READMEs use): the experiment is the grandparent folder's name, the config the parent's.
- ``config``: from the config path recorded in ``manifest.json``: the experiment is the config file's folder name,
  the config its file name without ``.yaml``.
- ``auto`` (default): ``path`` for directories named ``seed<N>``, else ``config``.

A config name ``<method>-<student>_from_<instructor>[_frac<P>]`` gives the *method* (the part before the first
``-``: ``ce``, ``kd``, ``geokt_rank`` ...) and the data fraction ``P`` % (100 % without the suffix). The same run
directory reached twice (a symlink) counts once per cell.

Outputs in ``--out``: ``results.md`` (per-cell table, a method x experiment table, flags), ``results.csv`` (one row
per cell), ``runs.csv`` (one row per run), ``curves_<experiment>.png`` (validation top-1 per epoch, mean and
min-max band over seeds, one line per config) and ``fraction.png`` (test top-1 against the data fraction, when
some cells have fractions). Cells with fewer than ``--min-seeds`` runs are flagged; runs without the runner's
``done`` marker are listed and, unless ``--include-unfinished``, left out.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Cell", "RunRecord", "aggregate", "build_parser", "load_run", "main", "mean_std", "write_report"]

_SEED_DIR = re.compile(r"^seed(\d+)$")
_FRACTION = re.compile(r"_frac(\d+(?:\.\d+)?)$")


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


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _config_path(run_dir: Path, manifest: dict) -> str | None:
    if isinstance(manifest.get("config"), str):
        return manifest["config"]
    header = (run_dir / "config.yaml")
    if header.is_file():
        first = header.read_text().splitlines()[:1]
        match = re.match(r"# as run by geokt-train from (\S+)", first[0]) if first else None
        if match:
            return match.group(1)
    return None


def load_run(run_dir: str | Path, group_by: str = "auto") -> RunRecord:
    """Read one run directory; raises ``ValueError`` when it holds no ``metrics.csv``."""
    run_dir = Path(run_dir)
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        raise ValueError(f"geokt-compare: {run_dir} holds no metrics.csv; pass geokt-train run directories.")
    with metrics.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    manifest = _read_json(run_dir / "manifest.json")
    summary = _read_json(run_dir / "summary.json")
    if group_by not in ("auto", "path", "config"):
        raise ValueError(f"geokt-compare: unknown --group-by {group_by!r}; choose 'auto', 'path' or 'config'.")
    by_path = group_by == "path" or (group_by == "auto" and _SEED_DIR.match(run_dir.name) is not None)
    if by_path:
        experiment, config = run_dir.parent.parent.name, run_dir.parent.name
    else:
        config_path = _config_path(run_dir, manifest)
        if config_path is None:
            raise ValueError(f"geokt-compare: {run_dir}: no config path in manifest.json or config.yaml; use "
                             "--group-by path with the layout <experiment>/<config>/seed<S>.")
        experiment, config = Path(config_path).parent.name, Path(config_path).stem
    seed = manifest.get("seed")
    if seed is None and _SEED_DIR.match(run_dir.name):
        seed = int(_SEED_DIR.match(run_dir.name).group(1))
    times = [_float(r.get("epoch_time_s")) for r in rows]
    speeds = [_float(r.get("images_per_s")) for r in rows]
    test = summary.get("test_acc")
    return RunRecord(
        run_dir=run_dir, experiment=experiment, config=config, seed=None if seed is None else int(seed),
        epochs=[int(_float(r.get("epoch"))) for r in rows], val_acc=[_float(r.get("val_acc")) for r in rows],
        train_acc=[_float(r.get("train_acc")) for r in rows], test_acc=None if test is None else float(test),
        finished=(run_dir / "done").is_file(),
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


def _fmt(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _column(cell: Cell, with_fractions: set[str] = frozenset()) -> str:
    """Table column of a cell: its experiment, plus the data fraction where the experiment has several."""
    if cell.fraction == 1.0 and cell.experiment not in with_fractions:
        return cell.experiment
    return f"{cell.experiment} {cell.fraction * 100:g}%"


def markdown(cells: Sequence[Cell], min_seeds: int, excluded: Sequence[RunRecord] = ()) -> str:
    """The report: per-cell table, method x experiment table, flags."""
    lines = ["# Run comparison", "",
             "Top-1 accuracy (%), mean ± sample std over seeds. *final val*: last epoch; *best val*: best epoch; "
             "*test*: the best-validation checkpoint on the test set. "
             f"Cells with fewer than {min_seeds} seeds are marked ⚠.", "",
             "| experiment | config | n | final val | best val | test | train time / run (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for c in cells:
        flag = " ⚠" if c.n < min_seeds else ""
        lines.append(f"| {c.experiment} | `{c.config}` | {c.n}{flag} | {_fmt(*c.stat('final_val')[:2])} | "
                     f"{_fmt(*c.stat('best_val')[:2])} | {_fmt(*c.stat('test_acc')[:2])} | "
                     f"{_fmt(c.stat('epoch_time_s')[0], None, 0)} |")
    fractioned = {c.experiment for c in cells if c.fraction != 1.0}
    experiments = list(dict.fromkeys(c.experiment for c in cells))
    ordered = sorted(cells, key=lambda c: (experiments.index(c.experiment), c.fraction))
    columns = list(dict.fromkeys(_column(c, fractioned) for c in ordered))
    methods = list(dict.fromkeys(c.method for c in cells))
    has_test = any(c.stat("test_acc")[2] for c in cells)
    metric = "test_acc" if has_test else "final_val"
    lines += ["", f"## Method x experiment ({'test' if has_test else 'final validation'} top-1, mean ± std (n))", "",
              "| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    by_key: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        by_key.setdefault((c.method, _column(c, fractioned)), []).append(c)
    for method in methods:
        row = []
        for column in columns:
            group = by_key.get((method, column), [])
            if not group:
                row.append("")
                continue
            parts = []
            for c in group:
                mean, std, n = c.stat(metric)
                label = f"{c.config.split('-', 1)[-1]}: " if len(group) > 1 else ""
                parts.append(f"{label}{_fmt(mean, std)} ({n}{' ⚠' if n < min_seeds else ''})")
            row.append("<br>".join(parts))
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    few = [c for c in cells if c.n < min_seeds]
    unfinished = [r for c in cells for r in c.runs if not r.finished]
    lines += ["", "## Flags", ""]
    if few:
        lines += [f"- fewer than {min_seeds} seeds: " + ", ".join(f"{c.experiment}/{c.config} (n={c.n})" for c in few)]
    if unfinished:
        lines += ["- unfinished runs (no `done` marker), included: " + ", ".join(str(r.run_dir) for r in unfinished)]
    if excluded:
        lines += ["- unfinished runs (no `done` marker), left out (`--include-unfinished` keeps them): "
                  + ", ".join(str(r.run_dir) for r in excluded)]
    if not few and not unfinished and not excluded:
        lines += [f"- none: every cell has at least {min_seeds} finished seeds."]
    return "\n".join(lines) + "\n"


CELL_FIELDS = ["experiment", "config", "method", "fraction", "n", "final_val_mean", "final_val_std", "best_val_mean",
               "best_val_std", "test_mean", "test_std", "n_test", "train_time_s_mean", "flag"]
RUN_FIELDS = ["experiment", "config", "method", "fraction", "seed", "run_dir", "epochs", "final_val", "best_val",
              "test_acc", "train_time_s", "images_per_s", "finished"]


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_csv(cells: Sequence[Cell], out: Path, min_seeds: int) -> None:
    with (out / "results.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(CELL_FIELDS)
        for c in cells:
            fv, bv, te, tt = c.stat("final_val"), c.stat("best_val"), c.stat("test_acc"), c.stat("epoch_time_s")
            writer.writerow([c.experiment, c.config, c.method, f"{c.fraction:g}", c.n, _num(fv[0]), _num(fv[1]),
                             _num(bv[0]), _num(bv[1]), _num(te[0]), _num(te[1]), te[2], _num(tt[0]),
                             f"fewer than {min_seeds} seeds" if c.n < min_seeds else ""])
    with (out / "runs.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(RUN_FIELDS)
        for c in cells:
            for r in c.runs:
                writer.writerow([c.experiment, c.config, c.method, f"{c.fraction:g}", r.seed, r.run_dir,
                                 len(r.epochs), _num(r.final_val), _num(r.best_val), _num(r.test_acc),
                                 _num(r.epoch_time_s), _num(r.images_per_s), r.finished])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_plots(cells: Sequence[Cell], out: Path) -> list[Path]:
    """Accuracy curves per experiment, and accuracy against the data fraction; returns the PNGs written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    experiments = list(dict.fromkeys(c.experiment for c in cells))
    for experiment in experiments:
        group = [c for c in cells if c.experiment == experiment and any(r.val_acc for r in c.runs)]
        if not group:
            continue
        fig, ax = plt.subplots(figsize=(9.0, 4.0), dpi=80)
        if len(group) > 10:  # the default cycle repeats after 10 colours
            ax.set_prop_cycle(color=[plt.get_cmap("tab20")(i % 20) for i in range(len(group))])
        for c in group:
            length = min(len(r.val_acc) for r in c.runs)
            if length == 0:
                continue
            epochs = c.runs[0].epochs[:length]
            per_epoch = [[r.val_acc[i] for r in c.runs] for i in range(length)]
            means = [statistics.fmean(v) for v in per_epoch]
            (line,) = ax.plot(epochs, means, marker=".", label=f"{c.config} (n={c.n})")
            if c.n > 1:
                ax.fill_between(epochs, [min(v) for v in per_epoch], [max(v) for v in per_epoch],
                                color=line.get_color(), alpha=0.15)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation top-1 (%)")
        ax.set_title(f"{experiment}: validation accuracy (mean, min-max over seeds)", fontsize=9)
        finals = [m for c in group for m in [c.stat("final_val")[0]] if m is not None]
        if finals:
            ax.set_ylim(max(0.0, min(finals) - 15.0), min(100.0, max(finals) + 3.0))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        path = out / f"curves_{_safe(experiment)}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    with_fraction = [c for c in cells if c.fraction != 1.0]
    if with_fraction:
        experiments_f = {c.experiment for c in with_fraction}
        group = [c for c in cells if c.experiment in experiments_f]
        has_test = any(c.stat("test_acc")[2] for c in group)
        metric = "test_acc" if has_test else "final_val"
        fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=80)
        for method in dict.fromkeys(c.method for c in group):
            points = sorted((c.fraction, *c.stat(metric)) for c in group if c.method == method)
            points = [p for p in points if p[1] is not None]
            if not points:
                continue
            xs = [100 * p[0] for p in points]
            ax.errorbar(xs, [p[1] for p in points], yerr=[p[2] or 0.0 for p in points], marker="o", capsize=3,
                        label=method)
        ax.set_xscale("log")
        ax.set_xticks([10, 20, 50, 100])
        ax.set_xticklabels(["10", "20", "50", "100"])
        ax.set_xlabel("training data (%)")
        ax.set_ylabel(("test" if has_test else "final validation") + " top-1 (%)")
        ax.set_title("accuracy vs data fraction (mean ± std over seeds)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "fraction.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def write_report(
    records: Sequence[RunRecord], out: str | Path, *, min_seeds: int = 3, plots: bool = True,
    include_unfinished: bool = False,
) -> list[Cell]:
    """Aggregate ``records`` and write results.md, results.csv, runs.csv and the plots into ``out``.

    Runs without the ``done`` marker (still training, or stopped) are left out of the cells unless
    ``include_unfinished``; either way the flags list them.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    excluded = [] if include_unfinished else [r for r in records if not r.finished]
    cells = aggregate([r for r in records if include_unfinished or r.finished])
    (out / "results.md").write_text(markdown(cells, min_seeds, excluded))
    write_csv(cells, out, min_seeds)
    if plots:
        write_plots(cells, out)
    return cells


def build_parser(prog: str = "geokt-compare") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Compare geokt-train runs: Markdown/CSV tables and PNG "
                                     "plots, mean ± std over seeds per (experiment, config) cell.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="geokt-train run directories")
    parser.add_argument("--out", default="runs/report", help="output folder (default: runs/report)")
    parser.add_argument("--group-by", choices=("auto", "path", "config"), default="auto",
                        help="how runs are grouped into cells (module docstring; default: auto)")
    parser.add_argument("--min-seeds", type=int, default=3, help="flag cells with fewer runs (default: 3)")
    parser.add_argument("--no-plots", action="store_true", help="write only the tables")
    parser.add_argument("--include-unfinished", action="store_true",
                        help="count runs without the `done` marker (default: list them, leave them out)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``geokt-compare``; returns the exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    if args.min_seeds < 1:
        print("geokt-compare: --min-seeds must be >= 1", file=sys.stderr)
        return 2
    try:
        records = [load_run(d, args.group_by) for d in args.run_dirs]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    cells = write_report(records, args.out, min_seeds=args.min_seeds, plots=not args.no_plots,
                         include_unfinished=args.include_unfinished)
    few = sum(c.n < args.min_seeds for c in cells)
    print(f"geokt-compare: {len(records)} runs in {len(cells)} cells -> {args.out}/results.md"
          + (f" ({few} cells with fewer than {args.min_seeds} seeds)" if few else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
