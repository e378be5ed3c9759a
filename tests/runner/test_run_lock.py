"""``run.lock``: one run per run directory; stale locks of dead processes are taken over, live ones refuse."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from geokt_plugin import rundir
from geokt_plugin.config import ConfigError
from geokt_plugin.runner.lock import RunLock, _process_start


def test_run_lock_is_exclusive_and_released(tmp_path):
    run_dir = tmp_path / "a" / "b"
    with RunLock(run_dir):
        owner = json.loads((run_dir / rundir.LOCK).read_text())
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(ConfigError, match=rf"is in use by another geokt-train run \(pid {os.getpid()} on"):
            RunLock(run_dir).__enter__()
    assert not (tmp_path / "a").exists()  # the folders it created are removed again when empty


def test_run_lock_takes_over_a_dead_process_lock(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    tmp_path.joinpath(rundir.LOCK).write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname()}))
    with RunLock(tmp_path):
        assert json.loads((tmp_path / rundir.LOCK).read_text())["pid"] == os.getpid()
    assert not (tmp_path / rundir.LOCK).exists()


def test_run_lock_refuses_another_host_and_a_fresh_unreadable_lock(tmp_path):
    lock = tmp_path / rundir.LOCK
    lock.write_text(json.dumps({"pid": 7, "host": "elsewhere.invalid", "started": "t"}))
    with pytest.raises(ConfigError, match=r"locked by pid 7 on host elsewhere.invalid .* delete .*run.lock"):
        RunLock(tmp_path).__enter__()
    lock.write_text("")
    with pytest.raises(ConfigError, match=r"run.lock is being created by another geokt-train run"):
        RunLock(tmp_path).__enter__()
    assert _process_start(os.getpid()) is not None or not os.path.exists("/proc")
