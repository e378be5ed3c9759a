"""``python -m geokt_plugin.experiments``: the official configs and the Fashion-MNIST reproduction suite.

Subcommands:

- ``configs [--check]``: write every file under ``configs/official/`` (YAMLs and the per-experiment READMEs) and the
  config table of ``docs/reproducing.md`` from the experiment matrix, or, with ``--check``, exit 1 if any differs.
  The YAMLs are generated so that ~90 files stay consistent (one recipe per dataset, one set of chosen weights);
  each is still a plain, self-contained torchdistill config.
- ``plan PHASE...``: print the runs of phases (``instructors``, ``sweep``, ``students`` = ``core`` then ``extra``)
  as ``config run_dir seed state``.
- ``run PHASE... [--jobs N] [--only REGEX] [--train-args ARGS]``: train the runs with ``geokt-train``, ``N``
  processes at a time, skipping finished runs (see :mod:`geokt_plugin.experiments.scheduler`).
- ``sweep-table RUNS_CSV``: the sweep's results and the choice per method (highest final validation top-1).
- ``claims RUNS_CSV``: the pre-registered paired comparisons (t intervals, Holm, verdicts) from a ``geokt-compare``
  ``runs.csv`` (:func:`~geokt_plugin.experiments.claims.claims`).
- ``docs-table``: the table of official configs for ``docs/reproducing.md``.
- ``check-choice``: exit 1 unless the sweep's choice (from ``runs/``) is what the configs use (``CHOSEN``,
  ``BEST_GEOKT``, ``BEST_BASELINE``) and no choice sits at its grid's edge; says what to change.
- ``collect``: copy every finished suite run's small files (no checkpoints) into ``docs/results/v2/raw``.
- ``report [--check]``: the tables and plots under ``docs/results/v2`` and the generated sections of
  ``docs/reproducing.md``, all from ``docs/results/v2/raw``; ``--check`` exits 1 if the page differs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from ..reporting.stats import compare, comparisons_markdown
from .claims import claims, sweep_table
from .docs_writer import REPRODUCING, reproducing_table
from .generate import write_generated
from .matrix import ROOT
from .scheduler import finished, plan, run_phases

__all__ = ["build_parser", "main"]


def build_parser(prog: str = "python -m geokt_plugin.experiments") -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = argparse.ArgumentParser(prog=prog, description="The official configs and the Fashion-MNIST "
                                     "reproduction suite.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("configs", help="write configs/official (or --check them)")
    p.add_argument("--check", action="store_true")
    sub.add_parser("docs-table", help="print the docs/reproducing.md table of official configs")
    p = sub.add_parser("sweep-table", help="print the sweep's results and choices (highest final val top-1)")
    p.add_argument("runs_csv", type=Path, help="a geokt-compare runs.csv of the sweep runs")
    p = sub.add_parser("claims", help="print the pre-registered paired comparisons from a geokt-compare runs.csv")
    p.add_argument("runs_csv", type=Path)
    sub.add_parser("check-choice", help="exit 1 unless the configs use the sweep's choice (runs/)")
    sub.add_parser("collect", help="copy finished runs' small files into docs/results/v2/raw")
    p = sub.add_parser("report", help="tables, plots and docs/reproducing.md sections from docs/results/v2/raw")
    p.add_argument("--check", action="store_true", help="only check docs/reproducing.md against the data")
    p = sub.add_parser("plan", help="print the runs of phases (instructors, sweep, students)")
    p.add_argument("phases", nargs="+")
    p = sub.add_parser("run", help="train the runs of phases (instructors, sweep, students), in that order")
    p.add_argument("phases", nargs="+")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--train-args", default="", help="extra geokt-train arguments, e.g. '--epochs 1'")
    p.add_argument("--only", default=None, help="only configs whose path matches this regular expression")
    return parser


def _dispatch(args: argparse.Namespace) -> int:
    if args.cmd == "configs":
        return write_generated(args.check)
    if args.cmd == "claims":
        print(comparisons_markdown(compare(args.runs_csv, claims())), end="")
    elif args.cmd == "sweep-table":
        print(sweep_table(args.runs_csv), end="")
    elif args.cmd in ("check-choice", "collect", "report"):
        return _evidence(args)
    elif args.cmd == "docs-table":
        print(reproducing_table(), end="")
    elif args.cmd == "plan":
        for run in plan(args.phases):
            state = "linked" if run.same_as else "done" if finished(run.run_dir, run.config) else "todo"
            print(run.config, run.run_dir, run.seed, state)
    else:
        return run_phases(args.phases, args.jobs, shlex.split(args.train_args), args.only)
    return 0


def _evidence(args: argparse.Namespace) -> int:
    from . import results
    from .choice import check_choice

    if args.cmd == "check-choice":
        return check_choice()
    if args.cmd == "collect":
        print(f"copied {results.collect()} runs into {results.RAW.relative_to(ROOT)}")
        return 0
    if not args.check:
        results.report()
    text = REPRODUCING.read_text()
    new = results.with_sections(text, results.sections())
    if args.check:
        if new != text:
            print(f"out of date: {REPRODUCING}; run `python -m geokt_plugin.experiments report`", file=sys.stderr)
            return 1
        return 0
    REPRODUCING.write_text(new)
    print(f"wrote {results.RESULTS.relative_to(ROOT)} and the generated sections of {REPRODUCING.relative_to(ROOT)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand from the source checkout's root (run directories are relative to it)."""
    args = build_parser().parse_args(argv)
    if not (ROOT / "configs").is_dir():
        print(f"geokt_plugin.experiments: no configs/ folder in {ROOT}; run it from a source checkout "
              "(pip install -e .).", file=sys.stderr)
        return 2
    os.chdir(ROOT)
    try:
        return _dispatch(args)
    except ValueError as exc:
        print(f"geokt_plugin.experiments: {exc}", file=sys.stderr)
        return 1
