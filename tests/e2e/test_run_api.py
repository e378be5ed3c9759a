"""``geokt_plugin.runner.run(RunOptions(...))`` from Python gives the CLI's results, with or without tensorboard."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from geokt_plugin import rundir
from geokt_plugin.runner import RunOptions, run

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke"
TIME_COLUMNS = {"epoch_time_s", "images_per_s"}


def rows_without_times(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in rundir.read_metrics(run_dir /
                                                                                                   rundir.METRICS)]


@pytest.mark.slow
def test_run_api_from_python_equals_the_cli_and_works_without_tensorboard(tmp_path, monkeypatch):
    config = SMOKE / "kd.yaml"
    cli_dir, api_dir = tmp_path / "cli", tmp_path / "api"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    cli = subprocess.run([sys.executable, "-m", "geokt_plugin.train", "--config", str(config), "--run-dir",
                          str(cli_dir), "--device", "cpu", "--seed", "0"], capture_output=True, text=True,
                         timeout=300, env=env, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr[-3000:]

    monkeypatch.chdir(tmp_path)  # relative paths in the config (dst_ckpt) land here, as for the CLI run
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    summary = run(RunOptions(config=config, run_dir=api_dir, device="cpu", seed=0))

    assert summary == json.loads((cli_dir / rundir.SUMMARY).read_text())
    assert rundir.read_json(api_dir / rundir.SUMMARY) == summary
    assert rows_without_times(api_dir) == rows_without_times(cli_dir)
    api_ckpt = torch.load(api_dir / rundir.LAST, map_location="cpu", weights_only=False)
    cli_ckpt = torch.load(cli_dir / rundir.LAST, map_location="cpu", weights_only=False)
    assert api_ckpt.keys() == cli_ckpt.keys()
    for key in cli_ckpt["model"]:
        assert torch.equal(api_ckpt["model"][key], cli_ckpt["model"][key]), key
    assert rundir.RunDir(api_dir).finished() and rundir.RunDir(cli_dir).finished()
    # without tensorboard: no events, one line saying so; the CLI run (tensorboard installed) has its events
    assert list((cli_dir / rundir.TENSORBOARD).glob("events.out.tfevents.*"))
    assert not (api_dir / rundir.TENSORBOARD).exists()
    lines = [line for line in (api_dir / rundir.LOG).read_text().splitlines() if "tensorboard" in line]
    assert len(lines) == 1, lines
    # run() closed the log file it opened
    runner_logger = logging.getLogger("geokt_plugin.runner")
    assert not [h for h in runner_logger.handlers if isinstance(h, logging.FileHandler)]
