"""The suite's scheduler on fake trainings: instructors before students, skipped orphans, links, resumption."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from geokt_plugin.experiments import scheduler
from geokt_plugin.experiments.scheduler import Run, Scheduler, finished
from geokt_plugin.rundir import BEST, CONFIG, DONE, RunDir

# Stands in for geokt-train (without importing torch): writes what a finished run leaves (the config copy after a
# header line, best.pt, done); a config whose name contains "fail" exits 1 after writing nothing.
FAKE_TRAIN = f"""
import sys
from pathlib import Path
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
config, run = Path(args["--config"]), Path(args["--run-dir"])
if "fail" in config.name:
    sys.exit(1)
run.mkdir(parents=True, exist_ok=True)
(run / {CONFIG!r}).write_text("# header\\n" + config.read_text())
(run / {BEST!r}).write_bytes(b"ckpt")
(run / {DONE!r}).write_text("now\\n")
"""


@pytest.fixture()
def fake_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    real_popen, real_sleep = subprocess.Popen, time.sleep
    monkeypatch.setattr(scheduler, "ROOT", tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(scheduler.time, "sleep", lambda s: real_sleep(0.05))
    monkeypatch.setattr(scheduler.subprocess, "Popen",
                        lambda cmd, **kw: real_popen([sys.executable, "-c", FAKE_TRAIN, *cmd[3:]], **kw))
    (tmp_path / "configs").mkdir()
    for name in ("inst", "inst_fail", "student", "orphan"):
        (tmp_path / "configs" / f"{name}.yaml").write_text(f"# {name}\ntrain: {{}}\n")
    return tmp_path


def _run(name: str, needs: str | None = None) -> Run:
    return Run(Path(f"configs/{name}.yaml"), Path(f"runs/{name}/seed0"), 0,
               (Path(f"runs/{needs}/seed0/best.pt"),) if needs else ())


def test_students_wait_for_their_instructor_and_copies_are_linked(fake_suite: Path):
    inst, student = _run("inst"), _run("student", needs="inst")
    copy = Run(Path("configs/student.yaml"), Path("runs/copy/seed0"), 0, student.needs, same_as=student)
    runs = [student, copy, inst]  # the student is listed first but can only start after its instructor
    assert Scheduler(runs, jobs=2, extra=[]).run() == 0
    assert finished(student.run_dir, student.config) and finished(inst.run_dir, inst.config)
    assert copy.run_dir.is_symlink() and RunDir(copy.run_dir).finished()
    assert student.log_file.is_file() and student.pid_file.is_file()
    # A second pass has nothing to train; an edited config is trained again.
    assert Scheduler(runs, jobs=2, extra=[]).todo == []
    (fake_suite / "configs" / "inst.yaml").write_text("train: {num_epochs: 2}\n")
    assert [r.run_dir for r in Scheduler(runs, jobs=2, extra=[]).todo] == [inst.run_dir]


def test_a_failed_instructor_fails_its_students(fake_suite: Path):
    inst, orphan = _run("inst_fail"), _run("orphan", needs="inst_fail")
    sched = Scheduler([inst, orphan], jobs=1, extra=[])
    assert sched.run() == 1
    assert sched.failures == [inst, orphan]
    assert not orphan.run_dir.exists()


def test_missing_instructor_checkpoints_stop_the_suite(fake_suite: Path):
    orphan = _run("orphan", needs="inst")
    sched = Scheduler([orphan], jobs=2, extra=[])
    assert sched.run() == 1 and sched.failures == [orphan]
