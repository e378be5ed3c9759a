"""The suite's evidence: raw per-run data committed under docs/results/v2/raw, and every table of
docs/reproducing.md regenerated from it.

- :func:`collect` copies each finished run's small files (never checkpoints) from ``runs/`` into
  ``raw/<experiment>/<config>/seed<S>/``;
- :func:`report` runs ``geokt-compare`` per group of experiments over ``raw/`` and writes the agreement plot;
- :func:`sections` renders the generated parts of docs/reproducing.md from ``raw/`` and those reports, and
  :func:`with_sections` puts them between their ``<!-- v2:NAME:start/end -->`` markers (a test checks the page).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .. import rundir
from ..probes import AGREEMENT_PREFIX
from ..reporting import write_report
from ..reporting.records import load_run, mean_std
from ..reporting.stats import compare, comparisons_markdown
from .cells import sweep_stem
from .claims import claims, sweep_choice, sweep_table
from .matrix import (
    ALL_LAYERS,
    BEST_GEOKT,
    CONVERGENCE_EPOCHS,
    FMNIST,
    METHOD_TITLES,
    PAPER_KEY,
    ROOT,
    RUNS,
    SWEEP_SEED,
)

__all__ = ["GROUPS", "RAW", "RESULTS", "collect", "report", "sections", "with_sections"]

RESULTS = ROOT / "docs" / "results" / "v2"
RAW = RESULTS / "raw"
KEPT = (rundir.CONFIG, rundir.MANIFEST, rundir.METRICS, rundir.SUMMARY, rundir.DONE)
STUDENT_CELLS = ("smaller_model", "across_architectures", "external_data", "limited_data")
GROUPS: dict[str, tuple[str, ...]] = {"instructors": ("instructors",), "sweep": ("sweep",),
                                      "convergence": ("convergence",), "students": STUDENT_CELLS}
MIN_SEEDS = {"instructors": 1, "sweep": 1, "convergence": 1, "students": 5}


def collect(runs: Path = RUNS, raw: Path = RAW) -> int:
    """Copy the finished runs' small files from ``runs/`` into ``raw/``; returns how many runs were copied."""
    base = runs / FMNIST.name / PAPER_KEY
    copied = 0
    for seed_dir in sorted(base.glob("*/*/seed*")):
        run = rundir.RunDir(seed_dir.resolve())
        if not seed_dir.is_dir() or not run.finished():
            continue
        target = raw / seed_dir.relative_to(base)
        target.mkdir(parents=True, exist_ok=True)
        for name in KEPT:
            if (run.path / name).is_file():
                shutil.copyfile(run.path / name, target / name)
        copied += 1
    return copied


def _run_dirs(group: str, raw: Path = RAW) -> list[Path]:
    return [p for e in GROUPS[group] for p in sorted((raw / e).glob("*/seed*")) if p.is_dir()]


def _shown(path: Path) -> Path:
    """A run directory as the reports show it: relative to the checkout, so the committed files do not depend on
    where it lies."""
    try:
        return path.resolve().relative_to(ROOT)
    except ValueError:
        return path


def report(raw: Path = RAW, out: Path = RESULTS, *, plots: bool = True) -> None:
    """``geokt-compare`` per group (results.md, results.csv, runs.csv, curves) and the agreement plot."""
    for group in GROUPS:
        dirs = _run_dirs(group, raw)
        if dirs:
            records = [dataclasses.replace(load_run(d), run_dir=_shown(d)) for d in dirs]
            write_report(records, out / group, min_seeds=MIN_SEEDS[group], plots=plots)
    curves = _agreement_curves(raw)
    if curves and plots:
        from ..reporting.plots import agreement_plot

        agreement_plot(curves, out / "students")


def _metrics(run_dir: Path) -> list[dict]:
    return rundir.read_metrics(run_dir / rundir.METRICS)


def _agreement_curves(raw: Path) -> dict[str, list[list[dict]]]:
    """Main cell: method -> per seed, the metrics rows (with ``agree/<layer>`` columns)."""
    curves: dict[str, list[list[dict]]] = {}
    for cfg in sorted((raw / "smaller_model").glob("*")):
        rows = [_metrics(s) for s in sorted(cfg.glob("seed*"))]
        if rows and any(k.startswith(AGREEMENT_PREFIX) for k in rows[0][0]):
            curves[cfg.name.split("-")[0]] = rows
    return curves


def _fmt(mean: float | None, sd: float | None, n: int) -> str:
    return "–" if mean is None else f"{mean:.2f} ± {sd or 0.0:.2f} ({n})"


def _instructors_section(results: Path) -> str:
    raw = results / "raw"
    rows = ["| instructor | images | final val | test |", "|---|---:|---:|---:|"]
    for d in _run_dirs("instructors", raw):
        r = load_run(d)
        rows.append(f"| `{r.config}` | {FMNIST.reserve:,} (reserve) | {r.final_val:.2f} | {r.test_acc:.2f} |")
    return "\n".join(rows) + "\n"


def _students_section(results: Path) -> str:
    raw = results / "raw"
    """Test top-1 mean ± sd (n) per method and cell."""
    table: dict[str, dict[str, str]] = {}
    for experiment in STUDENT_CELLS:
        for cfg in sorted((raw / experiment).glob("*")):
            records = [load_run(s) for s in sorted(cfg.glob("seed*"))]
            mean, sd, n = mean_std([r.test_acc for r in records if r.finished])
            table.setdefault(cfg.name.split("-")[0], {})[experiment] = _fmt(mean, sd, n)
    head = "| method | " + " | ".join(STUDENT_CELLS) + " |"
    rows = [head, "|---|" + "---:|" * len(STUDENT_CELLS)]
    for method, cells in table.items():
        rows.append(f"| {method} | " + " | ".join(cells.get(e, "") for e in STUDENT_CELLS) + " |")
    rows += ["", "Methods: " + "; ".join(f"`{m}`: {METHOD_TITLES[m]}" for m in table if m in METHOD_TITLES) + "."]
    return "\n".join(rows) + "\n"


def _claims_section(results: Path) -> str:
    runs_csv = results / "students" / "runs.csv"
    if not runs_csv.is_file():
        return "Not measured yet.\n"
    return comparisons_markdown(compare(runs_csv, claims()))


def _final_val(run_dir: Path) -> float | None:
    rows = _metrics(run_dir) if (run_dir / rundir.METRICS).is_file() else []
    return float(rows[-1]["val_acc"]) if rows else None


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _convergence_section(results: Path) -> str:
    raw = results / "raw"
    rows = [f"| method | seed | {FMNIST.epochs} epochs: final val | {CONVERGENCE_EPOCHS} epochs: final val | "
            "difference |",
            "|---|---:|---:|---:|---:|"]
    sweep_csv = results / "sweep" / "runs.csv"
    chosen = sweep_choice(sweep_csv)[0] if sweep_csv.is_file() else {}
    for method in ("ce", BEST_GEOKT):
        tag = "base" if method == "ce" else chosen.get(method)
        short = _final_val(raw / "sweep" / sweep_stem(method, tag or "") / f"seed{SWEEP_SEED}")
        longer = _final_val(next(iter(sorted(raw.glob(f"convergence/{method}-*/seed{SWEEP_SEED}"))), raw / "none"))
        diff = f"{longer - short:+.2f}" if short is not None and longer is not None else "–"
        rows.append(f"| {method} | {SWEEP_SEED} | {_num(short)} | {_num(longer)} | {diff} |")
    ce_runs = [_metrics(s) for s in sorted((raw / "smaller_model" / "ce-resnet8").glob("seed*"))]
    if ce_runs:
        epochs = len(ce_runs[0])
        means = [mean_std([float(r[e]["val_acc"]) for r in ce_runs if len(r) > e])[0] for e in range(epochs)]
        rows += ["", "CE (main cell) validation top-1 per epoch, mean over seeds: "
                 + ", ".join(f"{e + 1}: {m:.1f}" for e, m in enumerate(means)) + f" ({len(ce_runs)} seeds)."]
    return "\n".join(rows) + "\n"


def _agreement_section(results: Path) -> str:
    raw = results / "raw"
    curves = _agreement_curves(raw)
    cols = [f"{AGREEMENT_PREFIX}{layer}" for layer in ALL_LAYERS]
    rows = ["| method | " + " | ".join(ALL_LAYERS) + " |", "|---|" + "---:|" * len(cols)]
    for method, seeds in curves.items():
        finals = [mean_std([float(s[-1][c]) for s in seeds])[0] for c in cols]
        rows.append(f"| {method} | " + " | ".join(f"{v:.3f}" for v in finals) + " |")
    return "\n".join(rows) + "\n"


SECTIONS: dict[str, Callable[[Path], str]] = {
    "instructors": _instructors_section, "sweep": lambda results: sweep_table(results / "sweep" / "runs.csv"),
    "convergence": _convergence_section, "students": _students_section, "claims": _claims_section,
    "agreement": _agreement_section,
}


def sections(results: Path = RESULTS) -> dict[str, str]:
    """Every generated section of docs/reproducing.md from ``results`` (its ``raw/`` and the reports of it)."""
    return {name: render(results) for name, render in SECTIONS.items()}


def with_sections(text: str, generated: Mapping[str, str], names: Sequence[str] | None = None) -> str:
    """``text`` with each ``<!-- v2:NAME:start -->`` ... ``<!-- v2:NAME:end -->`` block replaced."""
    for name in names or list(generated):
        start, end = f"<!-- v2:{name}:start -->", f"<!-- v2:{name}:end -->"
        head, sep, rest = text.partition(start)
        _, sep2, tail = rest.partition(end)
        if not sep or not sep2:
            raise ValueError(f"docs/reproducing.md lacks the markers {start} ... {end}.")
        text = head + start + "\n" + generated[name] + end + tail
    return text
