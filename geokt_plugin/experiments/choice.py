"""Is the sweep's choice the one the configs use? (``python -m geokt_plugin.experiments check-choice``)

The suite stops between the sweep and the students when it is not: the student configs are generated from
``CHOSEN``, ``BEST_GEOKT`` and ``BEST_BASELINE`` (geokt_plugin/experiments/matrix.py), which a person updates from
the sweep's result and commits, so the choice stays visible in the history.
"""

from __future__ import annotations

from ..rundir import RunDir, read_metrics
from .cells import sweep_stem
from .claims import needs_extension, same_hp, sweep_choice, sweep_results
from .matrix import BEST_BASELINE, BEST_GEOKT, CHOSEN, FMNIST, PAPER_KEY, RUNS, SWEEP, SWEEP_SEED

__all__ = ["check_choice", "finals_from_runs"]


def finals_from_runs() -> dict[str, float]:
    """``{sweep config stem: final val top-1}`` of the finished sweep runs under ``runs/``."""
    finals = {}
    for method, settings in SWEEP.items():
        for tag, _ in settings:
            run = RunDir(RUNS / FMNIST.name / PAPER_KEY / "sweep" / sweep_stem(method, tag) / f"seed{SWEEP_SEED}")
            if run.finished() and run.metrics.is_file():
                finals[sweep_stem(method, tag)] = float(read_metrics(run.metrics)[-1]["val_acc"])
    return finals


def check_choice() -> int:
    """Print every difference between the sweep's choice and the configs; 0 when there is none."""
    finals = finals_from_runs()
    results = sweep_results(finals)
    chosen, best_g, best_b = sweep_choice(finals)
    problems = [f"{m}: the sweep has no result for {[t for t, v in rows if v is None]}" for m, rows in results.items()
                if any(v is None for _, v in rows)]
    for method, tag in chosen.items():
        if needs_extension(method, tag):
            problems.append(f"{method}: the choice {tag} is at the grid's edge; extend the grid (EXTENDED or "
                            "KD_EXTENDED in matrix.py) and run the sweep again")
        if not same_hp(CHOSEN.get(method, {}), dict(SWEEP[method])[tag]):
            problems.append(f"{method}: the sweep chose {tag} = {dict(SWEEP[method])[tag]}, the configs use "
                            f"{CHOSEN.get(method)}; set CHOSEN[{method!r}]")
    if best_g != BEST_GEOKT or best_b != BEST_BASELINE:
        problems.append(f"best GeoKT loss / baseline: the sweep says {best_g} / {best_b}, the configs use "
                        f"{BEST_GEOKT} / {BEST_BASELINE}; set BEST_GEOKT / BEST_BASELINE")
    for line in problems:
        print(f"check-choice: {line}")
    if problems:
        print("Then run `python -m geokt_plugin.experiments configs` and commit before training the students.")
        return 1
    print("check-choice: the configs use the sweep's choice")
    return 0
