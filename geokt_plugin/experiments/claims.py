"""What the measured runs say: the pre-registered paired comparisons (docs/reproducing.md, "Protocol") and the
sweep's choice.

The comparisons are :class:`~geokt_plugin.reporting.stats.Comparison` rows over the cells of the Fashion-MNIST suite;
:func:`~geokt_plugin.reporting.stats.compare` pairs them by seed, Holm-corrects the family and words the verdicts.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path

from ..reporting.stats import Comparison
from .cells import MAIN_PAIR, sweep_stem
from .matrix import (
    BASELINES,
    BEST_BASELINE,
    BEST_GEOKT,
    CENTRES,
    CHOSEN,
    EXTENDED,
    GEOKT_METHODS,
    KD_EXTENDED,
    SWEEP,
)

__all__ = ["EQUIVALENCE_MARGIN", "at_edge", "claims", "needs_extension", "same_hp", "sweep_choice", "sweep_finals",
           "sweep_results", "sweep_table"]

EQUIVALENCE_MARGIN = 1.0  # points of test top-1: "the same generalisation"
_SM, _AA, _ED, _LD = "smaller_model", "across_architectures", "external_data", "limited_data"


def _cfg(method: str, teacher: str | None = None, suffix: str = "") -> str:
    student, main_teacher = MAIN_PAIR
    if method in ("ce", "ce_reserve"):
        return f"{method}-{student}{suffix}"
    return f"{method}-{student}_from_{teacher or main_teacher}{suffix}"


def claims(best_geokt: str = BEST_GEOKT, best_baseline: str = BEST_BASELINE) -> list[Comparison]:
    """The pre-registered family: A is the side the paper's claim favours."""
    g, b, kd = best_geokt, best_baseline, f"{best_geokt}_kd"
    wide, other = "wide_resnet10_2", "resnet20_classes0-4"
    ce = (_SM, _cfg("ce"))
    rows = [Comparison("1 smaller model", (_SM, _cfg(m)), ce, "better") for m in GEOKT_METHODS]
    rows += [
        Comparison("1 vs best baseline", (_SM, _cfg(g)), (_SM, _cfg(b)), "better"),
        Comparison("2 across architectures", (_AA, _cfg(g, wide)), ce, "better"),
        Comparison("2 vs best baseline", (_AA, _cfg(g, wide)), (_AA, _cfg(b, wide)), "better"),
        Comparison("3 external data", (_ED, _cfg(g, other)), (_ED, _cfg("ce")), "better"),
        Comparison("3 vs best baseline", (_ED, _cfg(g, other)), (_ED, _cfg(b, other)), "better"),
        Comparison("4 synergy with KD", (_SM, _cfg(kd)), (_SM, _cfg("kd")), "better"),
        Comparison("4 synergy with KD", (_SM, _cfg(kd)), (_SM, _cfg(g)), "better"),
        Comparison("4 FitNets + KD (comparison)", (_SM, _cfg("fitnets_kd")), (_SM, _cfg("kd")), "better"),
        Comparison("4 across architectures", (_AA, _cfg(kd, wide)), (_AA, _cfg(g, wide)), "better"),
        Comparison("5 limited data: 50 % matches 100 %", (_LD, _cfg(kd, suffix="_frac50")), ce, "equivalent",
                   margin=EQUIVALENCE_MARGIN),
        Comparison("5 limited data", (_LD, _cfg(kd, suffix="_frac50")), (_LD, _cfg("ce", suffix="_frac50")),
                   "better"),
        Comparison("5 limited data", (_LD, _cfg(g, suffix="_frac50")), (_LD, _cfg("ce", suffix="_frac50")),
                   "better"),
        Comparison("control: trained vs random instructor", (_SM, _cfg(g)), (_SM, _cfg(f"{g}_random")), "better"),
        Comparison("control: vs CE with the instructor's labels", (_SM, _cfg(g)), (_SM, _cfg("ce_reserve")),
                   "better", note="ce_reserve trains on 6,000 labelled images; the student on 1,000 plus the "
                   "instructor."),
    ]
    return rows


Finals = Mapping[str, float]  # config stem -> final validation top-1 of a finished sweep run


def sweep_finals(runs_csv: Path) -> dict[str, float]:
    """``{config stem: final val top-1}`` of the finished sweep runs in a ``geokt-compare`` runs.csv."""
    with Path(runs_csv).open(newline="") as fh:
        return {r["config"]: float(r["final_val"]) for r in csv.DictReader(fh) if r.get("finished") == "True"}


def _finals(source: Path | Finals) -> Finals:
    return sweep_finals(source) if isinstance(source, (str, Path)) else source


def sweep_results(source: Path | Finals) -> dict[str, list[tuple[str, float | None]]]:
    """Per method, ``(tag, final val top-1 or None)`` for each setting of :data:`SWEEP`, in grid order.

    Args:
        source: a ``geokt-compare`` runs.csv of the sweep, or its finals as a mapping.
    """
    finals = _finals(source)
    return {m: [(tag, finals.get(sweep_stem(m, tag))) for tag, _ in settings] for m, settings in SWEEP.items()}


def sweep_choice(source: Path | Finals) -> tuple[dict[str, str], str, str]:
    """The sweep's choice: ``({method: tag}, best GeoKT method, best baseline)``; a method with a missing setting
    is left out. Ties go to the first setting in grid order."""
    results = sweep_results(source)
    chosen: dict[str, str] = {}
    best: dict[str, float] = {}
    for method, rows in results.items():
        if method == "ce" or not rows or any(v is None for _, v in rows):
            continue
        tag, value = max(rows, key=lambda r: r[1])
        chosen[method], best[method] = tag, value
    pick = lambda group: max((m for m in group if m in best), key=lambda m: best[m], default="")  # noqa: E731
    return chosen, pick(GEOKT_METHODS), pick(BASELINES)


def at_edge(method: str, tag: str) -> bool:
    """The setting is the smallest or largest weight of its grid (KD: the smallest or largest ``alpha`` that is not
    already 0 or 1; its two temperatures are the prescribed grid, not extended)."""
    settings = dict(SWEEP[method])
    if len(settings) < 2:
        return False
    key = "alpha" if method == "kd" else "weight"
    values = sorted({hp[key] for hp in settings.values()})
    value = settings[tag][key]
    if method == "kd" and value in (0.0, 1.0):
        return False  # alpha's bounds: nothing lies beyond
    return value in (values[0], values[-1])


def needs_extension(method: str, tag: str) -> bool:
    """At the grid's edge, and that edge is still the first round's (the rule extends each side once)."""
    if not at_edge(method, tag):
        return False
    if method == "kd":
        return (dict(SWEEP["kd"])[tag]["temperature"], dict(SWEEP["kd"])[tag]["alpha"]) not in KD_EXTENDED
    factor = dict(SWEEP[method])[tag]["weight"] / CENTRES[method]
    return not any(abs(factor - f) < 0.01 * f for f in EXTENDED.get(method, ()))


def sweep_table(runs_csv: Path) -> str:
    """The sweep's results per method and setting (final validation top-1, seed 100), the choice marked, and
    whether the choice equals the committed :data:`CHOSEN` (the configs' values)."""
    results = sweep_results(runs_csv)
    chosen, best_g, best_b = sweep_choice(runs_csv)
    rows = ["| method | setting | final val top-1 | chosen | in the configs |", "|---|---|---:|---|---|"]
    for method, settings in results.items():
        committed = dict(SWEEP[method]).get(chosen.get(method, ""), None)
        for tag, value in settings:
            mark = "**yes**" if chosen.get(method) == tag else ""
            edge = "" if not (mark and at_edge(method, tag)) else \
                " (grid edge)" if needs_extension(method, tag) else " (grid edge after its one extension)"
            same = ""
            if mark:
                same = "yes" if committed is not None and same_hp(CHOSEN.get(method, {}), committed) else "**no**"
            rows.append(f"| {method} | {tag} | {'–' if value is None else f'{value:.2f}'} | {mark}{edge} | {same} |")
    rows.append("")
    rows.append(f"Best GeoKT loss: `{best_g or '–'}`; best baseline: `{best_b or '–'}` (configs: `{BEST_GEOKT}`, "
                f"`{BEST_BASELINE}`).")
    return "\n".join(rows) + "\n"


def same_hp(a: dict, b: dict) -> bool:
    """Hyperparameters equal up to list/tuple spelling."""
    norm = lambda d: {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in d.items()}  # noqa: E731
    return norm(a) == norm(b)
