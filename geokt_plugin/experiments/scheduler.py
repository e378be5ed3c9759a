"""The Fashion-MNIST suite's scheduler: which runs a phase has, and training them ``jobs`` processes at a time.

A run is skipped when finished from its config's current text, so an interrupted suite resumes where it stopped.
A student waits until its instructor's run is done; a run another suite process is training (its
``<run_dir>.pid`` names a live process) is waited for, not restarted. Configs whose text is identical up to
comments are trained once; the other run directories become symlinks to the trained one.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..rundir import RunDir
from .cells import fashion_mnist_specs
from .matrix import ROOT, RUNS, SEEDS, SWEEP_SEED, Spec

__all__ = ["PHASES", "Run", "Scheduler", "finished", "phase_specs", "plan", "run_phases"]

PHASES = ("instructors", "sweep", "students", "convergence")
# Students, most important first: a cut-short suite still covers every claim.
STUDENT_ORDER = ("smaller_model", "limited_data", "across_architectures", "external_data")


@dataclass
class Run:
    """One (config, seed) of the suite."""

    config: Path  # relative to the checkout
    run_dir: Path
    seed: int
    needs: tuple[Path, ...]  # checkpoints that must exist first
    same_as: Run | None = None  # an identical config's run: link instead of training

    @property
    def pid_file(self) -> Path:
        return self.run_dir.parent / f"{self.run_dir.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir.parent / f"{self.run_dir.name}.log"


def phase_specs(phase: str) -> list[Spec]:
    """The configs of one phase: ``instructors``, ``sweep``, ``students`` or ``convergence``."""
    specs = fashion_mnist_specs()
    if phase in ("instructors", "sweep", "convergence"):
        return [s for s in specs if s.experiment == phase]
    if phase == "students":
        return sorted((s for s in specs if s.experiment in STUDENT_ORDER),
                      key=lambda s: STUDENT_ORDER.index(s.experiment))
    raise ValueError(f"unknown phase {phase!r}; choose one of {', '.join(PHASES)}")


def _normalised(text: str) -> str:
    """The config text that decides what is trained: no comments, no ``dst_ckpt`` (it names the config's own run
    directory, where torchdistill's script saves the student; ``geokt-train`` ignores it)."""
    return "\n".join(line for line in text.splitlines()
                     if line.strip() and not line.lstrip().startswith(("#", "dst_ckpt:")))


def plan(phases: Sequence[str]) -> list[Run]:
    """The runs of the phases in order; students seed-major (every cell gets seed 0 before any gets seed 1)."""
    runs: list[Run] = []
    first: dict[tuple[str, int], Run] = {}
    for phase in phases:
        seeds = {"instructors": (0,), "sweep": (SWEEP_SEED,), "convergence": (SWEEP_SEED,)}.get(phase, SEEDS)
        specs = phase_specs(phase)
        for seed in seeds:
            for spec in specs:
                config = Path("configs/official") / spec.relpath
                digest = hashlib.sha256(_normalised((ROOT / config).read_text()).encode()).hexdigest()
                needs = (Path(spec.teacher_ckpt),) if spec.teacher_ckpt else ()
                run = Run(config, RUNS / spec.run_name / f"seed{seed}", seed, needs)
                run.same_as = first.get((digest, seed))
                first.setdefault((digest, seed), run)
                runs.append(run)
    return runs


def finished(run_dir: Path, config: Path | None = None) -> bool:
    """The run's ``done`` marker exists; with ``config``, the run must also have used that config's current text
    (so an edited config reruns)."""
    run = RunDir(run_dir)
    if not run.finished():
        return False
    return config is None or run.used_config_text() == (ROOT / config).read_text()


def _ready(ckpt: Path) -> bool:
    """An instructor checkpoint is usable once its run has finished (best.pt exists from epoch 1 on)."""
    return ckpt.is_file() and finished(ckpt.parent)


def alive_elsewhere(run: Run) -> bool:
    """Another suite process is training this run (its pid file names a live process)."""
    try:
        os.kill(int(run.pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _clear(run_dir: Path) -> None:
    """Empty an unfinished run's folder: it starts over (the runner refuses to overwrite without --overwrite)."""
    for child in sorted(run_dir.rglob("*"), reverse=True):
        child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()


class Scheduler:
    """Trains ``runs`` with ``geokt-train``, ``jobs`` processes at a time, one torch thread each."""

    def __init__(self, runs: list[Run], jobs: int, extra: Sequence[str]) -> None:
        self.runs, self.jobs, self.extra = runs, jobs, list(extra)
        self.todo = [r for r in runs if r.same_as is None and not finished(r.run_dir, r.config)]
        self.elsewhere = [r for r in self.todo if alive_elsewhere(r)]
        self.pending = [r for r in self.todo if r not in self.elsewhere]
        self.active: list[tuple[Run, subprocess.Popen, float]] = []
        self.failures: list[Run] = []
        self.env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def _poll_elsewhere(self) -> None:
        for run in list(self.elsewhere):
            if not alive_elsewhere(run):
                self.elsewhere.remove(run)
                if not finished(run.run_dir, run.config):
                    self.pending.insert(0, run)

    def _poll_active(self) -> None:
        for run, proc, start in list(self.active):
            if proc.poll() is not None:
                self.active.remove((run, proc, start))
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                _log(f"{status} in {time.time() - start:.0f}s: {run.run_dir}")
                if proc.returncode != 0:
                    self.failures.append(run)

    def _drop_orphans(self) -> None:
        """Pending runs whose instructor (or identical config's run) failed fail too."""
        failed_ckpts = {RunDir(r.run_dir).best for r in self.failures}
        for run in list(self.pending):
            if any(n in failed_ckpts for n in run.needs) or run.same_as in self.failures:
                self.pending.remove(run)
                self.failures.append(run)
                _log(f"skipped (its instructor failed): {run.run_dir}")

    def _start(self, run: Run) -> None:
        if run.run_dir.exists() and not run.run_dir.is_symlink():
            _clear(run.run_dir)
        run.run_dir.parent.mkdir(parents=True, exist_ok=True)
        # geokt-train's entry point; --student-only: the instructor's accuracy is its own run's business.
        cmd = [sys.executable, "-m", "geokt_plugin.train", "--config", str(run.config), "--run-dir",
               str(run.run_dir), "--seed", str(run.seed), "--device", "cpu", "--student-only", *self.extra]
        _log("start: " + " ".join(cmd))
        with run.log_file.open("w") as fh:
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT)
        run.pid_file.write_text(f"{proc.pid}\n")
        self.active.append((run, proc, time.time()))

    def _start_ready(self) -> None:
        while len(self.active) + len(self.elsewhere) < self.jobs:
            ready = next((r for r in self.pending if all(_ready(n) for n in r.needs)), None)
            if ready is None:
                return
            self.pending.remove(ready)
            self._start(ready)

    def _link_identical(self) -> None:
        for run in self.runs:
            if run.same_as is not None and finished(run.same_as.run_dir) and not run.run_dir.exists():
                run.run_dir.parent.mkdir(parents=True, exist_ok=True)
                run.run_dir.symlink_to(os.path.relpath(run.same_as.run_dir.resolve(), run.run_dir.parent.resolve()))
                _log(f"linked {run.run_dir} -> {run.same_as.run_dir} (identical config)")

    def run(self) -> int:
        """Train until nothing is left or nothing can start; link identical configs. Returns the exit code."""
        if self.elsewhere:
            _log(f"{len(self.elsewhere)} runs are being trained by another process; waiting for them")
        while self.pending or self.active or self.elsewhere:
            self._poll_elsewhere()
            self._poll_active()
            self._drop_orphans()
            self._start_ready()
            if not self.active and not self.elsewhere:
                if self.pending:  # nothing runs and nothing can start
                    missing = sorted({str(n) for r in self.pending for n in r.needs if not _ready(n)})
                    _log(f"cannot start {len(self.pending)} runs: missing instructor checkpoints {missing}; run the "
                         "instructors phase first")
                    self.failures += self.pending
                break
            time.sleep(2)
        self._link_identical()
        return 1 if self.failures else 0


def run_phases(phases: Sequence[str], jobs: int, extra: Sequence[str], only: str | None = None) -> int:
    """Train the runs of ``phases`` (those whose config path matches ``only``); returns 1 if any failed."""
    phase = "+".join(phases)
    runs = [r for r in plan(phases) if only is None or re.search(only, str(r.config))]
    scheduler = Scheduler(runs, jobs, extra)
    _log(f"{phase}: {len(runs)} runs, {len(scheduler.todo)} to train, {jobs} at a time")
    code = scheduler.run()
    _log(f"{phase}: {len(scheduler.failures)} failed")
    return code
