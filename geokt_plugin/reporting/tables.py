"""The report's tables: ``results.md`` (per cell, method x experiment, flags), ``results.csv`` and ``runs.csv``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from .records import Cell, RunRecord

__all__ = ["CELL_FIELDS", "RUN_FIELDS", "markdown", "write_csv"]

CELL_FIELDS = ["experiment", "config", "method", "fraction", "n", "final_val_mean", "final_val_std", "best_val_mean",
               "best_val_std", "test_mean", "test_std", "n_test", "train_time_s_mean", "flag"]
RUN_FIELDS = ["experiment", "config", "method", "fraction", "seed", "run_dir", "epochs", "final_val", "best_val",
              "test_acc", "train_time_s", "images_per_s", "finished"]


def _fmt(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None:
        return "–"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def _column(cell: Cell, with_fractions: set[str] = frozenset()) -> str:
    """Table column of a cell: its experiment, plus the data fraction where the experiment has several."""
    if cell.fraction == 1.0 and cell.experiment not in with_fractions:
        return cell.experiment
    return f"{cell.experiment} {cell.fraction * 100:g}%"


def _cell_rows(cells: Sequence[Cell], min_seeds: int) -> list[str]:
    lines = ["| experiment | config | n | final val | best val | test | train time / run (s) |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for c in cells:
        flag = " ⚠" if c.n < min_seeds else ""
        lines.append(f"| {c.experiment} | `{c.config}` | {c.n}{flag} | {_fmt(*c.stat('final_val')[:2])} | "
                     f"{_fmt(*c.stat('best_val')[:2])} | {_fmt(*c.stat('test_acc')[:2])} | "
                     f"{_fmt(c.stat('epoch_time_s')[0], None, 0)} |")
    return lines


def _method_table(cells: Sequence[Cell], min_seeds: int) -> list[str]:
    """Methods as rows, experiments (split by data fraction where needed) as columns."""
    fractioned = {c.experiment for c in cells if c.fraction != 1.0}
    experiments = list(dict.fromkeys(c.experiment for c in cells))
    ordered = sorted(cells, key=lambda c: (experiments.index(c.experiment), c.fraction))
    columns = list(dict.fromkeys(_column(c, fractioned) for c in ordered))
    has_test = any(c.stat("test_acc")[2] for c in cells)
    metric = "test_acc" if has_test else "final_val"
    lines = [f"## Method x experiment ({'test' if has_test else 'final validation'} top-1, mean ± std (n))", "",
             "| method | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    by_key: dict[tuple[str, str], list[Cell]] = {}
    for c in cells:
        by_key.setdefault((c.method, _column(c, fractioned)), []).append(c)
    for method in dict.fromkeys(c.method for c in cells):
        row = []
        for column in columns:
            group = by_key.get((method, column), [])
            parts = []
            for c in group:
                mean, std, n = c.stat(metric)
                label = f"{c.config.split('-', 1)[-1]}: " if len(group) > 1 else ""
                parts.append(f"{label}{_fmt(mean, std)} ({n}{' ⚠' if n < min_seeds else ''})")
            row.append("<br>".join(parts))
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    return lines


def _flags(cells: Sequence[Cell], min_seeds: int, excluded: Sequence[RunRecord]) -> list[str]:
    few = [c for c in cells if c.n < min_seeds]
    unfinished = [r for c in cells for r in c.runs if not r.finished]
    lines = ["## Flags", ""]
    if few:
        lines += [f"- fewer than {min_seeds} seeds: " + ", ".join(f"{c.experiment}/{c.config} (n={c.n})" for c in few)]
    if unfinished:
        lines += ["- unfinished runs (no `done` marker), included: " + ", ".join(str(r.run_dir) for r in unfinished)]
    if excluded:
        lines += ["- unfinished runs (no `done` marker), left out (`--include-unfinished` keeps them): "
                  + ", ".join(str(r.run_dir) for r in excluded)]
    if not few and not unfinished and not excluded:
        lines += [f"- none: every cell has at least {min_seeds} finished seeds."]
    return lines


def markdown(cells: Sequence[Cell], min_seeds: int, excluded: Sequence[RunRecord] = ()) -> str:
    """The report: per-cell table, method x experiment table, flags."""
    lines = ["# Run comparison", "",
             "Top-1 accuracy (%), mean ± sample std over seeds. *final val*: last epoch; *best val*: best epoch; "
             "*test*: the best-validation checkpoint on the test set. "
             f"Cells with fewer than {min_seeds} seeds are marked ⚠.", ""]
    lines += _cell_rows(cells, min_seeds) + [""] + _method_table(cells, min_seeds) + [""]
    lines += _flags(cells, min_seeds, excluded)
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def write_csv(cells: Sequence[Cell], out: Path, min_seeds: int) -> None:
    """``results.csv`` (one row per cell, :data:`CELL_FIELDS`) and ``runs.csv`` (one per run, :data:`RUN_FIELDS`)."""
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
