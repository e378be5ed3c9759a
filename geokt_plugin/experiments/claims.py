"""What the measured runs say: the per-claim verdicts from a ``geokt-compare`` results.csv, and the sweep's choice."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ..rundir import RunDir, read_metrics
from .matrix import FMNIST, PAPER_KEY, RUNS, SWEEP, SWEEP_SEED

__all__ = ["CLAIMS", "claims_table", "sweep_table", "verdict"]

# The paper's claims as comparisons of Fashion-MNIST cells: (claim, experiment A, config A, experiment B, config B,
# what "holds" means). A is the GeoKT side.
_SM, _AA, _ED, _LD = "smaller_model", "across_architectures", "external_data", "limited_data"
CLAIMS = [
    ("1 smaller model", _SM, "geokt_rank-resnet8_from_resnet20", _SM, "ce-resnet8", "better"),
    ("1 smaller model", _SM, "geokt_distance-resnet8_from_resnet20", _SM, "ce-resnet8", "better"),
    ("1 smaller model", _SM, "geokt_kl-resnet8_from_resnet20", _SM, "ce-resnet8", "better"),
    ("2 across architectures", _AA, "geokt_rank-resnet8_from_wide_resnet10_2", _AA, "ce-resnet8", "better"),
    ("3 external data", _ED, "geokt_rank-resnet8_from_resnet20_classes0-4", _ED, "ce-resnet8", "better"),
    ("4 synergy with KD", _SM, "geokt_rank_kd-resnet8_from_resnet20", _SM, "kd-resnet8_from_resnet20", "better"),
    ("4 synergy with KD", _SM, "geokt_rank_kd-resnet8_from_resnet20", _SM, "geokt_rank-resnet8_from_resnet20",
     "better"),
    ("4 synergy with KD", _AA, "geokt_rank_kd-resnet8_from_wide_resnet10_2", _AA, "kd-resnet8_from_wide_resnet10_2",
     "better"),
    ("4 synergy with KD", _AA, "geokt_rank_kd-resnet8_from_wide_resnet10_2", _AA,
     "geokt_rank-resnet8_from_wide_resnet10_2", "better"),
    ("5 limited data", _LD, "geokt_rank_kd-resnet8_from_resnet20_frac50", _LD, "ce-resnet8_frac100", "matches"),
    ("5 limited data", _LD, "geokt_rank_kd-resnet8_from_resnet20_frac50", _LD, "ce-resnet8_frac50", "better"),
    ("5 limited data", _LD, "geokt_rank_kd-resnet8_from_resnet20_frac10", _LD, "ce-resnet8_frac10", "better"),
    # context: GeoKT against the strongest tuned feature baseline of the same pair
    ("vs best baseline", _SM, "geokt_rank-resnet8_from_resnet20", _SM, "fitnets-resnet8_from_resnet20", "better"),
    ("vs best baseline", _SM, "geokt_kl-resnet8_from_resnet20", _SM, "fitnets-resnet8_from_resnet20", "better"),
    ("vs best baseline", _AA, "geokt_rank-resnet8_from_wide_resnet10_2", _AA, "fitnets-resnet8_from_wide_resnet10_2",
     "better"),
    ("vs best baseline", _ED, "geokt_rank-resnet8_from_resnet20_classes0-4", _ED,
     "at-resnet8_from_resnet20_classes0-4", "better"),
]


def verdict(kind: str, d: float, se: float, na: int, nb: int) -> str:
    """The verdict on ``d = mean(A) - mean(B)`` with standard error ``se`` (rule in :func:`claims_table`)."""
    if min(na, nb) < 2:
        return "no verdict: one seed"
    if kind == "better":
        return "holds" if d > 2 * se else "does not hold" if d < -2 * se else "within noise"
    return "holds" if d > -2 * se else "does not hold"


def claims_table(results_csv: Path, metric: str = "test") -> str:
    """Verdicts from a geokt-compare results.csv: difference of means, its standard error (Welch), the verdict.

    Rule: d = mean(A) - mean(B), se = sqrt(sd_A^2 / n_A + sd_B^2 / n_B). For "better": holds if d > 2 se, does not
    hold if d < -2 se, else within noise. For "matches" (A is as good as B): holds if d > -2 se, else does not hold.
    A side with one seed gets no verdict.
    """
    with Path(results_csv).open(newline="") as fh:
        cells = {(r["experiment"], r["config"]): r for r in csv.DictReader(fh)}
    rows = [f"| claim | A | B | A {metric} | B {metric} | A - B | 2 se | verdict |",
            "|---|---|---|---:|---:|---:|---:|---|"]
    n_key = "n_test" if metric == "test" else "n"
    for claim, ea, ca, eb, cb, kind in CLAIMS:
        a, b = cells.get((ea, ca)), cells.get((eb, cb))
        if a is None or b is None or not a[f"{metric}_mean"] or not b[f"{metric}_mean"]:
            rows.append(f"| {claim} | `{ca}` | `{cb}` | | | | | not measured |")
            continue
        ma, mb = float(a[f"{metric}_mean"]), float(b[f"{metric}_mean"])
        sa, sb = float(a[f"{metric}_std"] or 0.0), float(b[f"{metric}_std"] or 0.0)
        na, nb = int(a[n_key]), int(b[n_key])
        d, se = ma - mb, math.sqrt(sa ** 2 / na + sb ** 2 / nb)
        few = " (n < 3)" if min(na, nb) < 3 else ""
        rows.append(f"| {claim} | `{ea}/{ca}` (n={na}) | `{eb}/{cb}` (n={nb}) | {ma:.2f} ± {sa:.2f} | "
                    f"{mb:.2f} ± {sb:.2f} | {d:+.2f} | {2 * se:.2f} | {verdict(kind, d, se, na, nb)}{few} |")
    return "\n".join(rows) + "\n"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def sweep_run_dir(method: str, tag: str) -> Path:
    """The run directory of one sweep setting (relative to the checkout)."""
    return RUNS / FMNIST.name / PAPER_KEY / "sweep" / f"{method}-resnet8_from_resnet20__{tag}" / f"seed{SWEEP_SEED}"


def _sweep_results_from_runs(method: str, tag: str) -> tuple[float | None, float | None]:
    """(final, best) validation top-1 of one sweep setting from its run directory under runs/."""
    run = RunDir(sweep_run_dir(method, tag))
    vals = [float(r["val_acc"]) for r in read_metrics(run.metrics)] if run.metrics.is_file() else []
    return (vals[-1] if vals and run.finished() else None), (max(vals) if vals else None)


def _sweep_results_from_csv(runs_csv: Path) -> dict[str, tuple[float | None, float | None]]:
    """``{config stem: (final, best)}`` from a ``geokt-compare`` runs.csv (finished runs only)."""
    with runs_csv.open(newline="") as fh:
        return {r["config"]: (float(r["final_val"]), float(r["best_val"])) for r in csv.DictReader(fh)
                if r.get("finished") == "True"}


def sweep_table(runs_csv: Path | None = None) -> str:
    """The sweep's result per method and setting, and the choice (highest final validation top-1).

    Args:
        runs_csv: read the results from this ``geokt-compare`` runs.csv (the committed data) instead of runs/.
    """
    from_csv = _sweep_results_from_csv(runs_csv) if runs_csv is not None else None
    rows = ["| method | setting | final val top-1 | best val top-1 | chosen |", "|---|---|---:|---:|---|"]
    for method, settings in SWEEP.items():
        results = []
        for tag, _ in settings:
            if from_csv is None:
                final, top = _sweep_results_from_runs(method, tag)
            else:
                final, top = from_csv.get(f"{method}-resnet8_from_resnet20__{tag}", (None, None))
            results.append((tag, final, top))
        done = [r for r in results if r[1] is not None]
        best = max(done, key=lambda r: r[1]) if len(done) == len(results) else None
        for tag, final, top in results:
            mark = "**yes**" if best is not None and tag == best[0] else ""
            rows.append(f"| {method} | {tag} | {_pct(final)} | {_pct(top)} | {mark} |")
    return "\n".join(rows) + "\n"
