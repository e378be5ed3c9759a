"""``geokt-compare RUN_DIR... [--out DIR] [--group-by auto|path|config] [--min-seeds 3]``: the report of some runs.

Outputs in ``--out``: ``results.md`` (per-cell table, a method x experiment table, flags), ``results.csv`` (one row
per cell), ``runs.csv`` (one row per run), ``curves_<experiment>.png`` (validation top-1 per epoch, mean and
min-max band over seeds, one line per config) and ``fraction.png`` (test top-1 against the data fraction, when
some cells have fractions). Cells with fewer than ``--min-seeds`` runs are flagged; runs without the runner's
``done`` marker are listed and, unless ``--include-unfinished``, left out.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .plots import write_plots
from .records import GROUP_BY, Cell, RunRecord, aggregate, load_run
from .tables import markdown, write_csv

__all__ = ["build_parser", "main", "write_report"]


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
    """The ``geokt-compare`` argument parser."""
    parser = argparse.ArgumentParser(prog=prog, description="Compare geokt-train runs: Markdown/CSV tables and PNG "
                                     "plots, mean ± std over seeds per (experiment, config) cell.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="geokt-train run directories")
    parser.add_argument("--out", default="runs/report", help="output folder (default: runs/report)")
    parser.add_argument("--group-by", choices=GROUP_BY, default="auto",
                        help="how runs are grouped into cells (geokt_plugin.reporting.records; default: auto)")
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
