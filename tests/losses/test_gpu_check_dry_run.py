"""The CPU-side logic of ``benchmarks/gpu_check.py`` (``--dry-run``): no CUDA needed, no subprocess started."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from geokt_plugin.losses import LOSS_SPECS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_dry_run_checks_every_loss_and_writes_json(tmp_path):
    gpu_check = _load_script()
    result = gpu_check.main(["--dry-run", "--out-dir", str(tmp_path)])
    assert {r["loss"] for r in result["losses"]} == set(LOSS_SPECS)
    assert {r["autocast"] for r in result["losses"]} == {"none", "fp16", "bf16"}
    assert all(r["ok"] for r in result["losses"]), [r for r in result["losses"] if not r["ok"]]
    assert result["ok"]
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["dry_run"] is True and written["env"]["device"] == "cpu"
    # The subprocesses it would start: bench_step at two batch sizes, geokt-train under bf16 and fp16.
    assert [s["command"][s["command"].index("--batch-size") + 1] for s in written["steps"]] == ["32", "128"]
    assert {p: "--mixed-precision" in r["command"] for p, r in written["train"].items()} == {"bf16": True,
                                                                                               "fp16": True}
    config = (tmp_path / "quickstart_gpu_check.yaml").read_text()
    assert "src_ckpt" not in config.split("student_model")[0]  # an untrained instructor: no checkpoint needed
    assert (tmp_path / "synthetic_fmnist" / "train-images-idx3-ubyte.gz").exists()


def test_gpu_check_synthetic_data_reads_as_fashion_mnist(tmp_path, monkeypatch):
    gpu_check = _load_script()
    folder = gpu_check.write_synthetic_fashion_mnist(tmp_path / "fm", train=60, test=20)
    from geokt_plugin.data import fashion_mnist

    monkeypatch.setenv("GEOKT_FASHION_MNIST", str(folder))
    train = fashion_mnist(split="train", subset_size=20, val_size=10)
    x, y = train[0]
    assert tuple(x.shape) == (3, 32, 32) and 0 <= y < 10
    assert len(fashion_mnist(split="test")) == 20


def test_gpu_check_summarizes_training_metrics(tmp_path):
    gpu_check = _load_script()
    (tmp_path / "metrics.csv").write_text("epoch,stage,lr,train_loss,loss/rank1\n0,0,0.05,2.3,0.5\n1,0,0.05,1.9,0.4\n")
    assert gpu_check.summarize_training(tmp_path)["ok"]
    (tmp_path / "metrics.csv").write_text("epoch,stage,lr,train_loss,loss/rank1\n0,0,0.05,2.3,nan\n1,0,0.05,1.9,0.4\n")
    assert not gpu_check.summarize_training(tmp_path)["ok"]
