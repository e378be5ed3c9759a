"""The report's PNGs: validation curves per experiment, accuracy against the data fraction, and the geometric
agreement per layer.

matplotlib (the ``plots`` extra) is imported inside :func:`write_plots` and :func:`agreement_plot` only, so the rest
of the package never needs it.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..probes import AGREEMENT_PREFIX
from .records import Cell

__all__ = ["agreement_plot", "write_plots"]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # keeps a legend placed outside the axes
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
    plt = _pyplot()
    written = []
    for experiment in dict.fromkeys(c.experiment for c in cells):
        group = [c for c in cells if c.experiment == experiment and any(r.val_acc for r in c.runs)]
        if group:
            written.append(_curves(plt, experiment, group, out))
    experiments_f = {c.experiment for c in cells if c.fraction != 1.0}
    if experiments_f:
        written.append(_fraction(plt, [c for c in cells if c.experiment in experiments_f], out))
    return written


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _number(value: Any) -> float | None:
    """A metrics cell as a float; ``None`` for an empty or non-numeric cell."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def agreement_plot(records_by_method: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], out: Path) -> Path:
    """``agreement.png`` in ``out``: one panel per ``agree/<layer>`` column, per method the mean over its runs (seeds)
    at each epoch, with the min-max band when there are several.

    Args:
        records_by_method: method -> its runs -> each run's metrics rows (as :func:`geokt_plugin.rundir.read_metrics`
            returns them, or dicts of numbers).
        out: the folder to write into.

    Raises:
        ValueError: no row has an ``agree/`` column (the runs had no ``geokt_agreement`` section).
    """
    rows = [row for runs in records_by_method.values() for run in runs for row in run]
    layers = list(dict.fromkeys(k for row in rows for k in row if k.startswith(AGREEMENT_PREFIX)))
    if not layers:
        raise ValueError(f"agreement_plot: no {AGREEMENT_PREFIX}<layer> column in any metrics row; train with a "
                         "geokt_agreement section (docs/configs.md) to record them.")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.4), dpi=80, squeeze=False)
    for ax, column in zip(axes[0], layers, strict=True):
        for i, (method, runs) in enumerate(records_by_method.items()):
            by_epoch: dict[int, list[float]] = {}
            for run in runs:
                for row in run:
                    epoch, value = _number(row.get("epoch")), _number(row.get(column))
                    if epoch is not None and value is not None:
                        by_epoch.setdefault(int(epoch), []).append(value)
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            # more methods than colours: the line style tells the second round of colours apart
            (line,) = ax.plot(epochs, [statistics.fmean(by_epoch[e]) for e in epochs], marker=".",
                              linestyle=("-", "--", ":")[i // 10 % 3], label=f"{method} (n={len(runs)})")
            if len(runs) > 1:
                ax.fill_between(epochs, [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs],
                                color=line.get_color(), alpha=0.15)
        ax.set_title(column[len(AGREEMENT_PREFIX):], fontsize=9)
        ax.set_xlabel("epoch")
        ax.set_ylim(0.0, 1.0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("kNN agreement with the reference")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("geometric agreement per layer (mean, min-max over seeds)", fontsize=9)
    return _save(plt, fig, Path(out) / "agreement.png")
