"""The runner's fault table: each row damages a run directory, a config or the environment, runs ``geokt-train``
(in-process through :func:`geokt_plugin.runner.main`, or in a subprocess where a second process or a kill is
needed) and asserts the exit code, the message, that no traceback escapes and, for refused input, that every file
already in the run directory is byte-for-byte unchanged. See docs/reliability.md ("Runs, resumes and the run
directory").

The runs train resnet8 on 64 Fashion-MNIST images (configs/smoke/ce.yaml) for 2 epochs of 4 steps.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from geokt_plugin import rundir
from geokt_plugin.runner import atomic, main
from geokt_plugin.runner.lock import _process_start

pytestmark = pytest.mark.slow

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke"
LR = "kwargs: {lr: 0.05, momentum: 0.9, weight_decay: 0.0005}"


@dataclass
class Ctx:
    """One row's world: its run directory, its config copy, and what it started."""

    tmp: Path
    run: Path
    config: Path
    monkeypatch: pytest.MonkeyPatch
    argv: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen] = field(default_factory=list)
    pid: int | None = None

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1))


def cli(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """``main(argv)`` in this process; the exit code and everything it printed or logged."""
    runner = logging.getLogger("geokt_plugin.runner")
    saved = runner.handlers[:]
    stream = io.StringIO()
    runner.handlers = [logging.StreamHandler(stream)]
    try:
        code = main(argv)
    finally:
        runner.handlers = saved
    captured = capsys.readouterr()
    return code, captured.err + captured.out + stream.getvalue()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


def base_argv(ctx: Ctx) -> list[str]:
    return ["--config", str(ctx.config), "--run-dir", str(ctx.run), "--device", "cpu", "--epochs", "2"]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return env


def start_process(ctx: Ctx, *extra: str) -> subprocess.Popen:
    """A second geokt-train on the row's run dir (a long run), once it holds the lock."""
    cmd = [sys.executable, "-m", "geokt_plugin.train", "--config", str(ctx.config), "--run-dir", str(ctx.run),
           "--device", "cpu", "--epochs", "40", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(), cwd=ctx.tmp)
    ctx.procs.append(proc)
    deadline = time.monotonic() + 180
    while not (ctx.run / rundir.LOCK).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (ctx.run / rundir.LOCK).exists(), f"the second run never took the lock (exit {proc.poll()})"
    return proc


# -- the rows' set-ups: each damages something and returns the extra flags -------------------------------------


def flip_bytes(name: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        path = ctx.run / name
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(b ^ 0xFF for b in data[middle:middle + 64])
        path.write_bytes(bytes(data))
        return ["--resume"]
    return setup


def empty_last(ctx: Ctx) -> list[str]:
    (ctx.run / rundir.LAST).write_bytes(b"")
    return ["--resume"]


def directory_last(ctx: Ctx) -> list[str]:
    (ctx.run / rundir.LAST).unlink()
    (ctx.run / rundir.LAST).mkdir()
    return ["--resume"]


def edit(old: str, new: str, *flags: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        ctx.edit_config(old, new)
        return list(flags)
    return setup


def flags(*extra: str) -> Callable[[Ctx], list[str]]:
    return lambda ctx: list(extra)


def manifest_text(text: str, *extra: str) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        (ctx.run / rundir.MANIFEST).write_text(text)
        return list(extra)
    return setup


def changed_data(ctx: Ctx) -> list[str]:
    manifest = json.loads((ctx.run / rundir.MANIFEST).read_text())
    manifest["data"]["fmnist/train"]["targets"] = "0" * 16  # as if the data files changed under the same config
    (ctx.run / rundir.MANIFEST).write_text(json.dumps(manifest))
    return ["--resume"]


def changed_precision(ctx: Ctx) -> list[str]:
    manifest = json.loads((ctx.run / rundir.MANIFEST).read_text())
    manifest["mixed_precision"] = "bf16"
    (ctx.run / rundir.MANIFEST).write_text(json.dumps(manifest))
    return ["--resume"]


def lock_of(pid: int, host: str | None = None, process_start: str | None = None) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        owner = {"pid": pid, "host": host or socket.gethostname(), "started": "2026-01-01T00:00:00+00:00",
                 "process_start": process_start}
        (ctx.run / rundir.LOCK).write_text(json.dumps(owner))
        ctx.pid = pid
        return ["--resume"]
    return setup


def live_lock(ctx: Ctx) -> list[str]:
    return lock_of(os.getpid(), process_start=_process_start(os.getpid()))(ctx)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def stale_lock(ctx: Ctx) -> list[str]:
    return lock_of(dead_pid())(ctx)


def reused_pid_lock(ctx: Ctx) -> list[str]:
    return lock_of(os.getpid(), process_start="1")(ctx)  # our pid, but another process's start time


def second_run(ctx: Ctx) -> list[str]:
    ctx.pid = start_process(ctx).pid
    return []


def killed_run(ctx: Ctx) -> list[str]:
    proc = start_process(ctx)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    ctx.pid = proc.pid
    return ["--overwrite"]


def unfinished_after_last_epoch(ctx: Ctx) -> list[str]:
    for name in (rundir.DONE, rundir.SUMMARY, rundir.PARAMS):
        (ctx.run / name).unlink()
    return ["--resume"]


def broken_test_loader_then_resume(ctx: Ctx) -> list[str]:
    from geokt_plugin.runner import finish

    def broken(*args, **kwargs):
        raise OSError("the test data cannot be read")

    ctx.monkeypatch.setattr(finish, "build_test_loader", broken)
    with pytest.raises(OSError, match="the test data cannot be read"):
        main([*base_argv(ctx), "--resume"])
    ctx.monkeypatch.undo()
    assert not (ctx.run / rundir.DONE).exists()
    return ["--resume"]


def disk_error(code: int) -> Callable[[Ctx], list[str]]:
    def setup(ctx: Ctx) -> list[str]:
        real = os.replace
        calls = {"last": 0}

        def replace(src, dst, *args, **kwargs):
            if Path(dst).name == rundir.LAST:
                calls["last"] += 1
                if calls["last"] == 2:  # the end of epoch 2
                    raise OSError(code, os.strerror(code))
            return real(src, dst, *args, **kwargs)

        ctx.monkeypatch.setattr(atomic.os, "replace", replace)
        return ["--overwrite"]
    return setup


def run_dir_is_a_file(ctx: Ctx) -> list[str]:
    ctx.run.write_text("not a folder")
    return []


def file_kept(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    assert ctx.run.read_text() == "not a folder"


def config_in_run_dir(ctx: Ctx) -> list[str]:
    ctx.config = ctx.run / rundir.CONFIG
    return ["--overwrite"]


def overwrite_then_fail(ctx: Ctx) -> list[str]:
    ctx.edit_config("lr: 0.05", "lr: 1.0e+30")
    ctx.edit_config("    max_grad_norm: 5.0\n", "")
    return ["--overwrite"]


def resume_elsewhere(ctx: Ctx) -> list[str]:
    ctx.edit_config(LR, LR.replace("0.05", "0.01"))
    return ["--resume", "--allow-config-change"]


# -- the rows' extra checks after the run ---------------------------------------------------------------------


def finished_like_before(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    assert (ctx.run / rundir.DONE).is_file()
    assert json.loads((ctx.run / rundir.SUMMARY).read_text()) == json.loads((reference / rundir.SUMMARY).read_text())
    for name in (rundir.LAST, rundir.BEST, rundir.METRICS, rundir.CONFIG):
        assert (ctx.run / name).read_bytes() == before[name], name
    resumes = json.loads((ctx.run / rundir.MANIFEST).read_text())["resumes"]
    assert resumes[-1]["phase"] == "finish"


def lock_still_held(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    assert json.loads((ctx.run / rundir.LOCK).read_text())["pid"] == ctx.pid


def trained_and_unlocked(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    assert (ctx.run / rundir.DONE).is_file() and not (ctx.run / rundir.LOCK).exists()
    assert not list(ctx.run.glob(rundir.PREVIOUS_PREFIX + "*"))


def previous_last_intact(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    from geokt_plugin.runner import Checkpoint

    ckpt = Checkpoint.load(ctx.run / rundir.LAST)  # checksum verified
    assert ckpt is not None and ckpt.epoch == 0
    assert not (ctx.run / rundir.LOCK).exists() and not (ctx.run / rundir.DONE).exists()
    assert not [p for p in ctx.run.iterdir() if ".tmp-" in p.name]


def config_copy_rewritten(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    trained_and_unlocked(ctx, before, reference)
    copy = (ctx.run / rundir.CONFIG).read_text()
    assert rundir.config_body(copy) == rundir.config_body(before[rundir.CONFIG].decode())


def previous_restored(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    assert snapshot(ctx.run) == before
    assert not list(ctx.run.glob(rundir.PREVIOUS_PREFIX + "*"))


def change_recorded(ctx: Ctx, before: dict[str, bytes], reference: Path) -> None:
    assert (ctx.run / rundir.CONFIG).read_bytes() == before[rundir.CONFIG]  # the original config is kept
    changed = ctx.run / rundir.resumed_config_name(1)
    assert "lr: 0.01" in changed.read_text()
    entry = json.loads((ctx.run / rundir.MANIFEST).read_text())["resumes"][-1]
    assert entry["config"] == changed.name and "config differs" in entry["changes"][0]
    assert (ctx.run / rundir.DONE).is_file()


@dataclass(frozen=True)
class Row:
    id: str
    start: str  # "finished", "unfinished" (1 of 2 epochs) or "empty"
    setup: Callable[[Ctx], list[str]]
    code: int
    fragment: str
    unchanged: bool = True
    after: Callable[[Ctx, dict[str, bytes], Path], None] | None = None


ROWS = [
    # 1. runs that could never be finished: --resume finishes the phase that is left
    Row("killed-before-test-phase", "finished", unfinished_after_last_epoch, 0,
        "all 2 epochs are trained but the run did not finish: finishing it", False, finished_like_before),
    Row("broken-test-loader-then-resume", "unfinished", broken_test_loader_then_resume, 0, "finishing it", False,
        lambda ctx, before, ref: finished_like_before(ctx, snapshot(ctx.run), ref)),
    Row("corrupt-best-before-test-phase", "unfinished", flip_bytes(rundir.BEST), 2,
        "best.pt does not match its checksum in best.pt.sha256"),
    # 2. resume trusts nothing it reads
    Row("last-64-bytes-flipped", "unfinished", flip_bytes(rundir.LAST), 2,
        "last.pt does not match its checksum in last.pt.sha256"),
    Row("last-64-bytes-flipped-suggests-best", "unfinished", flip_bytes(rundir.LAST), 2,
        "copy best.pt and best.pt.sha256 over last.pt and last.pt.sha256), or start again with --overwrite"),
    Row("last-empty", "unfinished", empty_last, 2, "last.pt is empty (0 bytes)"),
    Row("last-is-a-directory", "unfinished", directory_last, 2, "last.pt is a directory, not a checkpoint file"),
    Row("resume-changed-lr", "unfinished", edit(LR, LR.replace("0.05", "0.01"), "--resume"), 2,
        "the config differs from the one the run started with"),
    Row("resume-changed-lr-names-the-line", "unfinished", edit(LR, LR.replace("0.05", "0.01"), "--resume"), 2,
        "'kwargs: {lr: 0.01, momentum: 0.9, weight_decay: 0.0005}'"),
    Row("resume-changed-loss-weight", "unfinished", edit("weight: 1.0", "weight: 0.5", "--resume"), 2,
        "pass --allow-config-change if the change is intended"),
    Row("resume-changed-data-subset", "unfinished",
        edit("subset_size: 64, val_size: 32", "subset_size: 48, val_size: 32", "--resume"), 2,
        "the config differs"),
    Row("resume-changed-data-files", "unfinished", changed_data, 2, "the data differ from the run's"),
    Row("resume-changed-seed", "unfinished", flags("--resume", "--seed", "5"), 2, "the seed is 5, the run's is 0"),
    Row("resume-changed-precision", "unfinished", changed_precision, 2, "mixed precision is no, the run's is bf16"),
    Row("resume-changed-optimizer-class", "unfinished",
        edit("key: 'SGD'\n    " + LR, "key: 'Adam'\n    kwargs: {lr: 0.001}", "--resume", "--allow-config-change"),
        2, "the optimizer state in"),
    Row("resume-changed-optimizer-class-names-it", "unfinished",
        edit("key: 'SGD'\n    " + LR, "key: 'Adam'\n    kwargs: {lr: 0.001}", "--resume", "--allow-config-change"),
        2, "this config's optimizer (Adam) needs"),
    Row("resume-change-allowed-is-recorded", "unfinished", resume_elsewhere, 0, "--allow-config-change", False,
        change_recorded),
    Row("corrupt-manifest-unfinished", "unfinished", manifest_text("{not json", "--resume"), 2,
        "manifest.json is not readable JSON"),
    Row("corrupt-manifest-finished-keeps-done", "finished", manifest_text("{not json", "--resume", "--epochs", "3"),
        2, "manifest.json is not readable JSON"),
    Row("manifest-not-an-object", "unfinished", manifest_text("[1, 2]", "--resume"), 2,
        "manifest.json is not a geokt-train manifest"),
    # 3. the run directory
    Row("live-lock", "unfinished", live_lock, 2, f"is in use by another geokt-train run (pid {os.getpid()}"),
    Row("lock-of-another-host", "unfinished", lock_of(1, host="elsewhere.invalid"), 2,
        "is locked by pid 1 on host elsewhere.invalid"),
    Row("stale-lock-taken-over", "unfinished", stale_lock, 0, "which no longer runs", False, trained_and_unlocked),
    Row("reused-pid-lock-taken-over", "unfinished", reused_pid_lock, 0, "which no longer runs", False,
        trained_and_unlocked),
    Row("two-runs-one-directory", "empty", second_run, 2, "is in use by another geokt-train run (pid", False,
        lock_still_held),
    Row("sigkilled-run-lock-taken-over", "empty", killed_run, 0, "taking over run.lock left by pid", False,
        trained_and_unlocked),
    Row("overwrite-reads-run-dir-config", "finished", config_in_run_dir, 0, "done:", False, config_copy_rewritten),
    Row("overwrite-failing-run-restores-previous", "finished", overwrite_then_fail, 3, "the previous outputs are back",
        False, previous_restored),
    Row("disk-full-at-epoch-end", "empty", disk_error(errno.ENOSPC), 4,
        "last.pt: No space left on device (ENOSPC); any previous last.pt is intact", False, previous_last_intact),
    Row("permission-denied-at-epoch-end", "empty", disk_error(errno.EACCES), 4, "(EACCES)", False,
        previous_last_intact),
    Row("read-only-fs-at-epoch-end", "empty", disk_error(errno.EROFS), 4, "(EROFS)", False, previous_last_intact),
    Row("run-dir-is-a-file", "empty", run_dir_is_a_file, 2, "exists but is not a directory", True, file_kept),
    Row("plain-run-on-unfinished", "unfinished", flags(), 2, "--resume to continue it"),
    # 4. results that are not what they say
    Row("fp16-on-cpu", "unfinished", flags("--mixed-precision", "fp16"), 2, "--mixed-precision fp16 needs a GPU"),
    Row("test-only-without-checkpoint", "empty", flags("--test-only"), 2, "--test-only: nothing to evaluate"),
    Row("test-only-corrupt-best", "finished", lambda ctx: [*flip_bytes(rundir.BEST)(ctx)[1:], "--test-only"], 2,
        "best.pt does not match its checksum"),
    # 5. run-time flags, also under --check
    Row("seed-negative", "unfinished", flags("--seed", "-1"), 2, "--seed must be in [0, 4294967295]"),
    Row("seed-beyond-numpy", "unfinished", flags("--seed", str(2**32)), 2, "--seed must be in [0, 4294967295]"),
    Row("config-seed-not-int", "empty", edit("dependencies:", "seed: 'abc'\ndependencies:"), 2, "'abc'"),
    Row("config-log-freq-not-int", "empty", edit("log_freq: 2", "log_freq: 'x'"), 2, "'x'"),
    Row("check-seed-negative", "empty", flags("--check", "--seed", "-1"), 2, "--seed must be in"),
    Row("check-epochs-zero", "empty", flags("--check", "--epochs", "0"), 2, "--epochs must be >= 1"),
    Row("check-fp16-on-cpu", "empty", flags("--check", "--mixed-precision", "fp16"), 2, "fp16 needs a GPU"),
    Row("check-resume-without-last", "empty", flags("--check", "--resume"), 2, "no last.pt to resume from"),
    Row("check-resume-corrupt-last", "unfinished", lambda ctx: ["--check", *flip_bytes(rundir.LAST)(ctx)], 2,
        "does not match its checksum"),
    Row("check-resume-changed-config", "unfinished", edit(LR, LR.replace("0.05", "0.01"), "--check", "--resume"), 2,
        "the config differs"),
    Row("check-plain-run-on-finished", "finished", flags("--check"), 2, "already holds a finished run"),
    Row("check-test-only-without-checkpoint", "empty", flags("--check", "--test-only"), 2, "nothing to evaluate"),
]


@pytest.fixture(scope="module")
def base_runs(tmp_path_factory) -> dict[str, Path]:
    """A finished 2-epoch run and one stopped after its first epoch (each copied per row)."""
    root = tmp_path_factory.mktemp("fault-base")
    config = root / "ce.yaml"
    shutil.copy(SMOKE / "ce.yaml", config)
    common = ["--config", str(config), "--device", "cpu", "--epochs", "2"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # relative paths in the config (dst_ckpt) land here
        patch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
        assert main([*common, "--run-dir", str(root / "finished")]) == 0
        assert main([*common, "--run-dir", str(root / "unfinished"), "--stop-after-epochs", "1"]) == 0
    return {"finished": root / "finished", "unfinished": root / "unfinished", "config": config}


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_fault_table(row: Row, base_runs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    config = tmp_path / "ce.yaml"
    shutil.copy(base_runs["config"], config)
    run_dir = tmp_path / "run"
    if row.start != "empty":
        shutil.copytree(base_runs[row.start], run_dir)
    ctx = Ctx(tmp_path, run_dir, config, monkeypatch)
    try:
        extra = row.setup(ctx)
        before = snapshot(run_dir)
        capsys.readouterr()
        code, out = cli([*base_argv(ctx), *extra], capsys)
    finally:
        for proc in ctx.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert code == row.code, out[-3000:]
    assert row.fragment in out, out[-3000:]
    assert "Traceback" not in out
    if row.code == 2:
        errors = [line for line in out.splitlines() if line.startswith("geokt-train: error:")]
        assert len(errors) == 1, out[-3000:]
    if row.unchanged:
        assert snapshot(run_dir) == before
    if row.after is not None:
        row.after(ctx, before, base_runs["finished"])


def test_fault_table_has_a_row_per_class():
    assert len(ROWS) >= 40 and len({row.id for row in ROWS}) == len(ROWS)
