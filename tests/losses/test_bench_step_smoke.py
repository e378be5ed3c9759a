"""benchmarks/bench_step.py runs end to end: KD and a GeoKT method on its three kernel paths, side by side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from geokt_plugin.testing.paths import needs_compiler

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_step.py"


@needs_compiler
def test_bench_step_times_every_kernel_path_against_kd(tmp_path):
    out = tmp_path / "step.json"
    methods = ["KD", "GeoKT-rank+KD", "GeoKT-rank+KD eager"]
    cmd = [sys.executable, str(SCRIPT), "--pair", "quickstart", "--batch-size", "4", "--repeats", "1", "--warmup",
           "0", "--threads", "1", "--only", *methods, "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "GEOKT_COMPILE"}  # the automatic path, as a user runs it
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(out.read_text())
    rows = {row["method"]: row for row in payload["rows"]}
    assert list(rows) == methods
    assert rows["KD"]["time_x_kd"] == 1 and all(r["time_ms"] > 0 and r["peak_x_kd"] > 0 for r in rows.values())
    assert payload["compile"]["native"]["path"], "the automatic path on CPU runs the native kernels"
