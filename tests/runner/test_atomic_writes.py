"""Crash safety of the runner's writes: a crash mid-write keeps the previous file whole."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from geokt_plugin.runner import atomic
from geokt_plugin.runner.atomic import atomic_torch_save
from geokt_plugin.runner.records import MetricsLog


def test_kill_resume_atomic_checkpoint_survives_a_crash_mid_write(tmp_path, monkeypatch):
    """The runner's atomic save: a crash between writing the temp file and the rename leaves the old file whole."""
    path = tmp_path / "last.pt"
    atomic_torch_save({"epoch": 1, "w": torch.arange(4.0)}, path)
    old = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill between fsync and rename")

    monkeypatch.setattr(atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_torch_save({"epoch": 2, "w": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == old
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"], "the temp file was left behind"


def test_kill_resume_metrics_csv_is_replaced_atomically(tmp_path, monkeypatch):
    """metrics.csv goes through the same temp-file-and-rename path: a crash keeps the previous complete file."""
    log = MetricsLog(tmp_path / "metrics.csv", [{"epoch": 1, "stage": 1, "lr": 0.1, "train_loss": 1.5}])
    log.write()
    old = (tmp_path / "metrics.csv").read_text()
    log.append({"epoch": 2, "stage": 1, "lr": 0.1, "train_loss": 1.25})
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(OSError):
        log.write()
    monkeypatch.undo()
    assert (tmp_path / "metrics.csv").read_text() == old
    assert list(csv.DictReader(io.StringIO(old)))[0]["train_loss"] == "1.5"
