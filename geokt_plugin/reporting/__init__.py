"""Compare runs: Markdown/CSV tables and PNG plots from ``geokt-train`` run directories (``geokt-compare``).

Each run directory holds ``metrics.csv`` (one row per epoch), ``manifest.json`` (seed, config path, world size,
...), ``config.yaml`` and, for a finished run, ``summary.json`` (``test_acc`` is the test top-1 of ``best.pt``, the
checkpoint with the best validation top-1); see :mod:`geokt_plugin.rundir`.

- :mod:`.records`: :class:`RunRecord`, :func:`load_run`, the grouping rule and :func:`aggregate` into cells;
- :mod:`.tables`: ``results.md``, ``results.csv``, ``runs.csv``;
- :mod:`.plots`: the PNGs (matplotlib, imported only there);
- :mod:`.stats`: paired comparisons over seeds (t interval, Holm, TOST equivalence) and their verdicts;
- :mod:`.cli`: :func:`write_report`, :func:`build_parser`, :func:`main`.
"""

from .cli import build_parser, main, write_report
from .plots import write_plots
from .records import Cell, RunRecord, aggregate, fraction_of, load_run, mean_std, method_of
from .stats import Comparison, PairedResult, compare, comparisons_markdown, holm, paired_difference, tost, verdict
from .tables import CELL_FIELDS, RUN_FIELDS, markdown, write_csv

__all__ = [
    "CELL_FIELDS",
    "RUN_FIELDS",
    "Cell",
    "Comparison",
    "PairedResult",
    "RunRecord",
    "aggregate",
    "build_parser",
    "compare",
    "comparisons_markdown",
    "fraction_of",
    "holm",
    "load_run",
    "main",
    "markdown",
    "mean_std",
    "method_of",
    "paired_difference",
    "tost",
    "verdict",
    "write_csv",
    "write_plots",
    "write_report",
]
