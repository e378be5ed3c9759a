"""The quick-start demo (`make demo`): train an instructor, then four students, on Fashion-MNIST on CPU; print a table.

Runs every config of ``configs/quickstart`` through ``geokt-train`` (one subprocess each, so torchdistill's
process-wide state never leaks between runs), in this order: the resnet20 instructor, then resnet8 students with
cross-entropy only, KD, GeoKTNeighborRankLoss at three stages, and rank + KD. Finished runs are reused unless
``--fresh``, and an interrupted run continues from its last checkpoint (``--resume``). About 7 minutes on 2 CPU
cores.

    python scripts/demo.py                 # everything, then the table
    python scripts/demo.py --fresh         # retrain from scratch
    python scripts/demo.py --epochs 1      # a fast end-to-end check of the pipeline (numbers are meaningless)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from geokt_plugin.rundir import RunDir, read_json, read_metrics

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs" / "quickstart"
RUN_ROOT = "runs/quickstart"
# (config stem, label in the table); the instructor comes first because the students load its best.pt.
RUNS = [
    ("instructor-resnet20", "instructor resnet20, CE (3000 images)"),
    ("ce-resnet8", "student resnet8, CE only"),
    ("kd-resnet8_from_resnet20", "student resnet8, KD"),
    ("geokt_rank-resnet8_from_resnet20", "student resnet8, CE + GeoKT rank (3 stages)"),
    ("geokt_rank_kd-resnet8_from_resnet20", "student resnet8, KD + GeoKT rank (3 stages)"),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true", help="retrain runs that already finished")
    parser.add_argument("--epochs", type=int, default=None, help="override every config's num_epochs")
    parser.add_argument("--only", nargs="*", default=None, help="run only these config stems (the table shows all)")
    return parser.parse_args(argv)


def train(stem: str, run_dir: Path, args: argparse.Namespace, *, may_resume: bool) -> float:
    """One geokt-train subprocess; returns its wall time. Raises SystemExit with the runner's code on failure."""
    cmd = [sys.executable, "-m", "geokt_plugin.train", "--config", str(CONFIGS / f"{stem}.yaml"), "--run-dir",
           str(run_dir), "--device", "cpu", "--mixed-precision", "no"]
    if stem != "instructor-resnet20":
        cmd.append("--student-only")  # the instructor's own accuracy is in its row
    if args.epochs is not None:
        cmd += ["--epochs", str(args.epochs)]
    run = RunDir(run_dir)
    if may_resume and run.last.exists() and not run.finished():
        cmd.append("--resume")  # an interrupted demo continues where it stopped
    elif run_dir.exists():
        cmd.append("--overwrite")
    print(f"\n=== {stem}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0:
        raise SystemExit(f"demo: {stem} failed with exit code {code}; see the messages above.")
    return time.perf_counter() - t0


def read_run(run_dir: Path) -> dict:
    """best val / test accuracy and the epoch count of a finished run (empty dict when it did not finish)."""
    run = RunDir(run_dir)
    if not run.finished() or not run.summary.exists():
        return {}
    summary = read_json(run.summary)
    rows = read_metrics(run.metrics)
    summary["train_time_s"] = sum(float(r["epoch_time_s"]) for r in rows if r.get("epoch_time_s"))
    return summary


def table(run_root: Path) -> str:
    lines = ["| run | best val top-1 (%) | test top-1 (%) | epochs | train time (s) |",
             "|---|---:|---:|---:|---:|"]
    for stem, label in RUNS:
        s = read_run(run_root / stem)
        if not s:
            lines.append(f"| {label} | not run | | | |")
            continue
        val = "" if s.get("best_val_acc") is None else f"{s['best_val_acc']:.2f}"
        test = "" if s.get("test_acc") is None else f"{s['test_acc']:.2f}"
        lines.append(f"| {label} | {val} | {test} | {s.get('epochs', '')} | {s['train_time_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Fixed: the students' configs read the instructor from runs/quickstart/instructor-resnet20/best.pt.
    run_root = ROOT / RUN_ROOT
    t0 = time.perf_counter()
    for stem, _ in RUNS:
        if args.only is not None and stem not in args.only:
            continue
        run_dir = run_root / stem
        if read_run(run_dir) and not args.fresh and args.epochs is None:
            print(f"=== {stem}: finished earlier in {run_dir}, reused (--fresh retrains)", flush=True)
            continue
        train(stem, run_dir, args, may_resume=not args.fresh and args.epochs is None)
    total = time.perf_counter() - t0
    print("\nFashion-MNIST quick start (resnet20 instructor -> resnet8 students, CPU)\n")
    print(table(run_root))
    # The project's comparison tool writes the same runs as Markdown/CSV tables and validation curves.
    from geokt_plugin import reporting

    finished = [str(run_root / stem) for stem, _ in RUNS if RunDir(run_root / stem).finished()]
    if finished:
        print()
        reporting.main([*finished, "--out", str(run_root / "report"), "--min-seeds", "1"])
    print(f"\ndemo wall time: {total / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
