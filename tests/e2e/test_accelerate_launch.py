"""End to end: ``accelerate launch`` with two CPU processes runs ``geokt-train`` on a smoke config.

In accelerate 1.x ``--cpu --num_processes 2`` starts a single process (the simple launcher). Two CPU ranks come from
the multi-process launcher with ``--device cpu`` for the runner: ``accelerate launch --multi_gpu --num_processes 2
--num_machines 1 --mixed_precision no --dynamo_backend no -m geokt_plugin.train ... --device cpu`` on a machine with
no visible GPU gives DDP over gloo (``MULTI_CPU``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from geokt_plugin.rundir import BEST, PARAMS

ROOT = Path(__file__).resolve().parents[2]
ACCELERATE = Path(sys.executable).parent / "accelerate"


@pytest.mark.slow
def test_accelerate_launch_two_cpu_ranks_train_identical_weights(tmp_path: Path):
    run_dir = tmp_path / "run"
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29533",
           "-m", "geokt_plugin.train", "--config", str(ROOT / "configs" / "smoke" / "geokt-rank.yaml"),
           "--run-dir", str(run_dir), "--device", "cpu"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    params = json.loads((run_dir / PARAMS).read_text())
    assert params["world_size"] == 2
    ranks = params["ranks"]
    assert len(ranks) == 2 and ranks[0] == ranks[1] and params["identical"] is True, ranks
    assert (run_dir / BEST).is_file()
