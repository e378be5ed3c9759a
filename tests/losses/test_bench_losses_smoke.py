"""benchmarks/bench_losses.py runs end to end on a tiny grid, every LossSpec row and its dense oracle included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from geokt_plugin.losses import LOSS_SPECS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_losses.py"


def test_bench_losses_runs_every_loss_and_its_dense_oracle(tmp_path):
    out = tmp_path / "losses.json"
    cmd = [sys.executable, str(SCRIPT), "--n", "16", "--b", "2", "--scopes", "image", "--repeats", "1",
           "--threads", "1", "--reference-n", "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = out.read_text()
    for name in LOSS_SPECS:
        assert f"GeoKT-{name}" in text and f"dense-{name}" in text, name
    assert json.loads(text)
