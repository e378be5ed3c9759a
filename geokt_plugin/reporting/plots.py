"""The report's PNGs: validation curves per experiment and accuracy against the data fraction.

matplotlib (the ``plots`` extra) is imported inside :func:`write_plots` only, so the rest of the package never
needs it.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .records import Cell

__all__ = ["write_plots"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _curves(plt: Any, experiment: str, group: Sequence[Cell], out: Path) -> Path:
    """Validation top-1 per epoch of one experiment: mean and min-max band over seeds, one line per config."""
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
    return _save(plt, fig, out / f"curves_{_safe(experiment)}.png")


def _fraction(plt: Any, group: Sequence[Cell], out: Path) -> Path:
    """Test (else final validation) top-1 against the data fraction, one line per method."""
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
    return _save(plt, fig, out / "fraction.png")


def write_plots(cells: Sequence[Cell], out: Path) -> list[Path]:
    """Accuracy curves per experiment, and accuracy against the data fraction; returns the PNGs written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for experiment in dict.fromkeys(c.experiment for c in cells):
        group = [c for c in cells if c.experiment == experiment and any(r.val_acc for r in c.runs)]
        if group:
            written.append(_curves(plt, experiment, group, out))
    experiments_f = {c.experiment for c in cells if c.fraction != 1.0}
    if experiments_f:
        written.append(_fraction(plt, [c for c in cells if c.experiment in experiments_f], out))
    return written
