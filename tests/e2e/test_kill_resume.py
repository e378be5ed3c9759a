"""Crash safety of ``geokt-train``: SIGKILL mid-training, ``--resume``, and the same results as an uninterrupted run.

Written against the CLI contract (``python -m geokt_plugin.train --config X --run-dir D --seed S --device cpu
[--resume]``; outputs ``metrics.csv``, ``last.pt``, ``best.pt``, ``manifest.json``, ``done``). The fixture config
(``tests/fixtures/reliability/kill_resume.yaml``) runs 4 short epochs on 48 Fashion-MNIST images, with
augmentation and an epoch-wise scheduler, so data order, RNG, optimizer and scheduler state must all survive.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from geokt_plugin import rundir
from geokt_plugin.config import ConfigError, check_run_dir
from geokt_plugin.runner import CHECKPOINT_FORMAT

CONFIG = Path(__file__).parents[1] / "fixtures" / "reliability" / "kill_resume.yaml"
TIMING_COLUMNS = {"epoch_time_s", "images_per_s"}  # wall-clock measurements, never reproducible
NUM_EPOCHS = 4
pytestmark = pytest.mark.slow


def command(run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "geokt_plugin.train", "--config", str(CONFIG), "--run-dir", str(run_dir),
            "--seed", "0", "--device", "cpu", *extra]


def run_cli(run_dir: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(command(run_dir, *extra), capture_output=True, text=True, timeout=timeout,
                          env=_env())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONHASHSEED="0")  # 2 shared cores: stay polite
    return env


def metric_rows(path: Path) -> list[dict[str, str]]:
    """metrics.csv rows without the timing columns."""
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(fh)]


def assert_rows_equal(got: list[dict[str, str]], want: list[dict[str, str]]) -> None:
    assert [r["epoch"] for r in got] == [r["epoch"] for r in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), (g.keys(), w.keys())
        for key in w:
            if g[key] == w[key]:
                continue
            a, b = float(g[key]), float(w[key])
            assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), f"epoch {w['epoch']} {key}: {a} != {b}"


def load_checkpoint(path: Path) -> dict:
    # Our own file from a trusted run: the full pickle is fine (it holds RNG states and metric rows).
    return torch.load(path, map_location="cpu", weights_only=False)


def completed_rows(run_dir: Path) -> int:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return 0
    try:
        return len(metric_rows(path))
    except (OSError, csv.Error):
        return 0


def plain_student() -> torch.nn.Module:
    from torchdistill.models.registry import get_model

    return get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)


def test_kill_resume_sigkill_after_first_epoch_then_resume_equals_uninterrupted_run(tmp_path):
    # The uninterrupted reference runs alongside (one thread each), to keep the test short.
    reference = tmp_path / "reference"
    ref_log = open(tmp_path / "reference.log", "wb")
    ref_proc = subprocess.Popen(command(reference), stdout=ref_log, stderr=subprocess.STDOUT, env=_env())

    # Start the same run, wait for the first finished epoch (last.pt is written before metrics.csv), then SIGKILL.
    killed = tmp_path / "killed"
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen(command(killed), stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        deadline = time.monotonic() + 240
        while completed_rows(killed) < 1 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        ref_proc.wait(timeout=240)
    finally:
        for p in (proc, ref_proc):
            if p.poll() is None:
                p.kill()
                p.wait()
        log.close()
        ref_log.close()
    assert ref_proc.returncode == 0, (tmp_path / "reference.log").read_text()[-3000:]
    want = metric_rows(reference / "metrics.csv")
    assert len(want) == NUM_EPOCHS
    killed_log = (tmp_path / "killed.log").read_text()[-3000:]
    assert proc.returncode == -signal.SIGKILL, f"not killed mid-training (exit {proc.returncode}):\n{killed_log}"
    assert not (killed / rundir.DONE).exists()

    # What the kill left behind: a loadable last.pt whose rows match the reference so far, and its model loads into
    # a plain student.
    ckpt = load_checkpoint(killed / "last.pt")
    assert ckpt["format"] == CHECKPOINT_FORMAT
    saved_epochs = int(ckpt["epoch"]) + 1
    assert 1 <= saved_epochs < NUM_EPOCHS
    plain_student().load_state_dict(ckpt["model"], strict=True)
    partial = metric_rows(killed / "metrics.csv")
    assert len(partial) in (saved_epochs, saved_epochs - 1)  # killed between the two atomic writes: one row behind
    assert_rows_equal(partial, want[: len(partial)])

    resumed = run_cli(killed, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_rows_equal(metric_rows(killed / "metrics.csv"), want)
    assert (killed / rundir.DONE).exists()

    # The final weights are the uninterrupted run's (CPU, same seed).
    got_state = load_checkpoint(killed / "last.pt")["model"]
    want_state = load_checkpoint(reference / "last.pt")["model"]
    assert got_state.keys() == want_state.keys()
    for key in want_state:
        torch.testing.assert_close(got_state[key], want_state[key], rtol=0, atol=1e-6, msg=key)

    # A finished run is never overwritten without --overwrite, and the refusal changes nothing.
    before = {p.name: p.read_bytes() for p in killed.iterdir() if p.is_file()}
    again = run_cli(killed)
    assert again.returncode == 2, again.stderr[-3000:]
    assert "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert {p.name: p.read_bytes() for p in killed.iterdir() if p.is_file()} == before


def test_kill_resume_kill_before_the_first_checkpoint_is_reported_clearly(tmp_path):
    """Killed before any epoch finished: nothing to resume; the CLI says so instead of failing obscurely."""
    run_dir = tmp_path / "early"
    log = open(tmp_path / "early.log", "wb")
    proc = subprocess.Popen(command(run_dir), stdout=log, stderr=subprocess.STDOUT, env=_env())
    try:
        deadline = time.monotonic() + 240
        while not (run_dir / "manifest.json").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "early.log").read_text()[-3000:]
    assert not (run_dir / "last.pt").exists(), "the first epoch finished before the kill; the test needs a slower run"

    with pytest.raises(ConfigError, match=r"never finished an epoch \(manifest\.json\).*--overwrite"):
        check_run_dir(run_dir, resume=False, overwrite=False)  # a plain rerun would be refused too

    resumed = run_cli(run_dir, "--resume")
    assert resumed.returncode == 2
    lines = [line for line in resumed.stderr.splitlines() if line.startswith("geokt-train: error:")]
    assert len(lines) == 1, resumed.stderr[-3000:]
    assert "last.pt" in lines[0] and "--resume" in lines[0]
    assert "Traceback" not in resumed.stderr


NAN_CONFIG = Path(__file__).parents[1] / "fixtures" / "reliability" / "nan_input.yaml"


def test_kill_resume_non_finite_loss_stops_the_run_or_skips_the_step(tmp_path):
    """The NaN guard: stop (default, exit 3, naming the term and the step) or skip and count (--nan-policy skip)."""
    base = [sys.executable, "-m", "geokt_plugin.train", "--config", str(NAN_CONFIG), "--seed", "0", "--device", "cpu"]
    stopped = subprocess.run([*base, "--run-dir", str(tmp_path / "stop")], capture_output=True, text=True,
                             timeout=240, env=_env())
    assert stopped.returncode == 3, stopped.stderr[-3000:]
    lines = [line for line in stopped.stderr.splitlines() if line.startswith("geokt-train: stopped:")]
    assert len(lines) == 1, stopped.stderr[-3000:]
    assert "non-finite loss term 'geo' at epoch 1, step 1" in lines[0] and "no checkpoint yet" in lines[0], lines[0]
    assert "--nan-policy skip" in lines[0] and "Traceback" not in stopped.stderr
    assert not (tmp_path / "stop" / "last.pt").exists()

    skipped = subprocess.run([*base, "--run-dir", str(tmp_path / "skip"), "--nan-policy", "skip"],
                             capture_output=True, text=True, timeout=240, env=_env())
    assert skipped.returncode == 0, skipped.stderr[-3000:]
    rows = metric_rows(tmp_path / "skip" / "metrics.csv")
    assert [(r["steps"], r["skipped_steps"]) for r in rows] == [("0", "2")]
    # Every step was skipped, so the saved student equals the initial one, BatchNorm running statistics included
    # (the forward pass updates them before the loss is known; the runner restores them on a skip).
    ckpt = load_checkpoint(tmp_path / "skip" / "last.pt")
    state = ckpt["model"]
    assert all(torch.isfinite(v.float()).all() for v in state.values()), "a skipped step must leave no NaN behind"
    running = [k for k in state if k.endswith("running_mean")]
    assert running and all(torch.equal(state[k], torch.zeros_like(state[k])) for k in running)
    assert all(int(state[k]) == 0 for k in state if k.endswith("num_batches_tracked"))
