"""End to end: ``geokt-train`` on configs/smoke in subprocesses, on CPU.

Each run trains resnet8 (with a random resnet20 instructor) on 64 Fashion-MNIST images for 1-2 epochs of 4 steps.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torchdistill.models.registry import get_model

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "configs" / "smoke"
BIN = Path(sys.executable).parent
TIME_COLUMNS = {"epoch_time_s", "images_per_s"}


def geokt_train(*args: str, cwd: Path, console_script: bool = False, timeout: int = 300,
                launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    if launcher is not None:
        cmd = [*launcher, "-m", "geokt_plugin.train", *args]
    elif console_script:
        cmd = [str(BIN / "geokt-train"), *args]
    else:
        cmd = [sys.executable, "-m", "geokt_plugin.train", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("ACCELERATE_MIXED_PRECISION", None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def read_metrics(run_dir: Path) -> list[dict]:
    with open(run_dir / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def without_times(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in rows]


def plain_resnet8() -> torch.nn.Module:
    return get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)


def smoke_copy(tmp_path: Path, name: str, edit=None) -> Path:
    """A private copy of a smoke config, optionally edited as a dict (its tags survive: the text is edited)."""
    text = (SMOKE / name).read_text()
    if edit is not None:
        text = edit(text)
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.slow
def test_train_cli_console_script_kd_outputs_and_plain_checkpoint(tmp_path):
    run_dir = tmp_path / "kd"
    result = geokt_train("--config", str(SMOKE / "kd.yaml"), "--run-dir", str(run_dir), "--device", "cpu",
                         cwd=tmp_path, console_script=True)
    assert result.returncode == 0, result.stderr
    for name in ("metrics.csv", "config.yaml", "manifest.json", "last.pt", "best.pt", "summary.json", "done",
                 "train.log", "params.json"):
        assert (run_dir / name).is_file(), name
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    rows = read_metrics(run_dir)
    assert len(rows) == 1
    expected = {"epoch", "stage", "lr", "train_loss", "loss/kd", "train_acc", "val_acc", "epoch_time_s",
                "images_per_s", "steps", "skipped_steps"}
    assert set(rows[0]) == expected
    assert rows[0]["steps"] == "4" and rows[0]["skipped_steps"] == "0"
    assert float(rows[0]["loss/kd"]) == pytest.approx(float(rows[0]["train_loss"]), rel=1e-5)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in ("torch", "torchdistill", "accelerate", "geokt_plugin", "git_sha", "argv"):
        assert key in manifest
    assert (manifest["seed"], manifest["world_size"], manifest["mixed_precision"], manifest["device"]) == (
        0, 1, "no", "cpu")
    assert "kd.yaml" in (run_dir / "config.yaml").read_text().splitlines()[0]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 <= summary["test_acc"] <= 100 and summary["teacher_val_acc"] is not None
    # the checkpoint holds the unwrapped student: it loads strictly into a plain torchdistill resnet8
    ckpt = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=False)
    student = plain_resnet8()
    student.load_state_dict(ckpt["model"], strict=True)
    assert ckpt["epoch"] == 0 and "optimizer" in ckpt and len(ckpt["rng"]) == 1

    # a finished run is never overwritten without --overwrite, and nothing in it changes
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    again = geokt_train("--config", str(SMOKE / "kd.yaml"), "--run-dir", str(run_dir), "--device", "cpu",
                        cwd=tmp_path)
    assert again.returncode == 2
    assert "finished run" in again.stderr and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


@pytest.mark.slow
def test_train_cli_resume_matches_uninterrupted_run(tmp_path):
    # the auxiliary-wrapper config with augmentation: model, adapter, data order and RNG must all be restored
    config = str(SMOKE / "fitnet-hint.yaml")
    full, part = tmp_path / "full", tmp_path / "part"
    common = ("--config", config, "--device", "cpu", "--epochs", "2")
    assert geokt_train(*common, "--run-dir", str(full), cwd=tmp_path).returncode == 0
    stopped = geokt_train(*common, "--run-dir", str(part), "--stop-after-epochs", "1", cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert len(read_metrics(part)) == 1 and not (part / "done").exists()
    refused = geokt_train(*common, "--run-dir", str(part), cwd=tmp_path)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = geokt_train(*common, "--run-dir", str(part), "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert without_times(read_metrics(part)) == without_times(read_metrics(full))
    a = torch.load(full / "last.pt", map_location="cpu", weights_only=False)
    b = torch.load(part / "last.pt", map_location="cpu", weights_only=False)
    assert a["model"].keys() == b["model"].keys() and set(a["extra"]) == set(b["extra"]) != set()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k in a["extra"]:
        assert torch.equal(a["extra"][k], b["extra"][k]), k
    assert json.loads((part / "summary.json").read_text())["test_acc"] == json.loads(
        (full / "summary.json").read_text())["test_acc"]
    assert json.loads((part / "manifest.json").read_text())["resumes"][0]["from_epoch"] == 1


# Two-stage FitNets (torchdistill's MultiStagesDistillationBox): stage 1 cuts both networks after layer2 with
# `sequential` and trains a ConvReg hint; stage 2 trains the whole student with KD. Datasets, models and the test
# loader come from configs/smoke/kd.yaml.
TWO_STAGE_TRAIN = """\
train:
  log_freq: 2
  stage1:
    num_epochs: 1
    train_data_loader:
      dataset_id: *train_id
      sampler: {class_or_func: !import_get {key: 'torch.utils.data.RandomSampler'}, kwargs: {}}
      kwargs: {batch_size: 16, num_workers: 0, drop_last: False}
    val_data_loader:
      dataset_id: *val_id
      sampler: {class_or_func: !import_get {key: 'torch.utils.data.SequentialSampler'}, kwargs: {}}
      kwargs: {batch_size: 32, num_workers: 0}
    teacher:
      forward_proc: 'forward_batch_only'
      sequential: ['conv1', 'bn1', 'relu', 'layer1', 'layer2']
      forward_hook: {input: [], output: ['layer2']}
      requires_grad: False
    student:
      forward_proc: 'forward_batch_only'
      adaptations:
        convreg: {key: 'ConvReg', kwargs: {num_input_channels: 32, num_output_channels: 32, kernel_size: 1,
                                           stride: 1, padding: 0, uses_relu: True}}
      sequential: ['conv1', 'bn1', 'relu', 'layer1', 'layer2', '+convreg']
      forward_hook: {input: [], output: ['+convreg']}
      requires_grad: True
    optimizer:
      key: 'Adam'
      kwargs: {lr: 0.001}
    criterion:
      key: 'WeightedSumLoss'
      kwargs:
        sub_terms:
          hint:
            criterion: {key: 'MSELoss', kwargs: {reduction: 'mean'}}
            criterion_wrapper:
              key: 'SimpleLossWrapper'
              kwargs:
                input: {is_from_teacher: False, module_path: '+convreg', io: 'output'}
                target: {is_from_teacher: True, module_path: 'layer2', io: 'output'}
            weight: 1.0
  stage2:
    num_epochs: 1
    train_data_loader:
      dataset_id: *train_id
      sampler: {class_or_func: !import_get {key: 'torch.utils.data.RandomSampler'}, kwargs: {}}
      kwargs: {batch_size: 16, num_workers: 0, drop_last: False}
    val_data_loader:
      dataset_id: *val_id
      sampler: {class_or_func: !import_get {key: 'torch.utils.data.SequentialSampler'}, kwargs: {}}
      kwargs: {batch_size: 32, num_workers: 0}
    teacher:
      forward_proc: 'forward_batch_only'
      sequential: []
      forward_hook: {input: [], output: []}
      requires_grad: False
    student:
      forward_proc: 'forward_batch_only'
      sequential: []
      forward_hook: {input: [], output: []}
      requires_grad: True
    optimizer:
      key: 'SGD'
      kwargs: {lr: 0.05, momentum: 0.9, weight_decay: 0.0005}
      max_grad_norm: 5.0
    criterion:
      key: 'WeightedSumLoss'
      kwargs:
        sub_terms:
          kd:
            criterion:
              key: 'KDLoss'
              kwargs: {student_module_path: '.', student_module_io: 'output', teacher_module_path: '.',
                       teacher_module_io: 'output', temperature: 4.0, alpha: 0.9, reduction: 'batchmean'}
            weight: 1.0
"""


def two_stage_config(tmp_path: Path) -> Path:
    kd = (SMOKE / "kd.yaml").read_text()
    path = tmp_path / "fitnet-two-stage.yaml"
    path.write_text(kd[:kd.index("train:\n")] + TWO_STAGE_TRAIN + kd[kd.index("\ntest:"):])
    return path


@pytest.mark.slow
def test_train_cli_multi_stage_resume_across_the_stage_change(tmp_path):
    config = str(two_stage_config(tmp_path))
    full, part = tmp_path / "full", tmp_path / "part"
    assert geokt_train("--config", config, "--run-dir", str(full), "--device", "cpu", cwd=tmp_path).returncode == 0
    rows = read_metrics(full)
    assert [r["stage"] for r in rows] == ["1", "2"]
    assert rows[0]["loss/hint"] and not rows[0]["loss/kd"] and rows[0]["train_acc"] == ""  # stage 1: no logits
    assert rows[1]["loss/kd"] and not rows[1]["loss/hint"] and rows[1]["val_acc"]
    stopped = geokt_train("--config", config, "--run-dir", str(part), "--device", "cpu", "--stop-after-epochs", "1",
                          cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    resumed = geokt_train("--config", config, "--run-dir", str(part), "--device", "cpu", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert without_times(read_metrics(part)) == without_times(rows)
    a = torch.load(full / "last.pt", map_location="cpu", weights_only=False)["model"]
    b = torch.load(part / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_train_cli_teacher_free_bf16_then_test_only(tmp_path):
    run_dir = tmp_path / "ce"
    result = geokt_train("--config", str(SMOKE / "ce.yaml"), "--run-dir", str(run_dir), "--device", "cpu",
                         "--mixed-precision", "bf16", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((run_dir / "manifest.json").read_text())["mixed_precision"] == "bf16"
    rows = read_metrics(run_dir)
    assert "loss/ce" in rows[0] and float(rows[0]["train_loss"]) > 0
    test = geokt_train("--config", str(SMOKE / "ce.yaml"), "--run-dir", str(run_dir), "--device", "cpu",
                       "--mixed-precision", "bf16", "--test-only", cwd=tmp_path)
    assert test.returncode == 0, test.stderr
    result = json.loads((run_dir / "test.json").read_text())
    assert result["checkpoint"].endswith("best.pt")
    assert result["test_acc"] == json.loads((run_dir / "summary.json").read_text())["test_acc"]


@pytest.mark.slow
def test_train_cli_two_cpu_processes_keep_ranks_identical(tmp_path):
    run_dir = tmp_path / "ddp"
    launcher = [str(BIN / "torchrun"), "--nproc_per_node", "2", "--master_port", "29517"]
    result = geokt_train("--config", str(SMOKE / "fitnet-hint.yaml"), "--run-dir", str(run_dir), "--device", "cpu",
                         cwd=tmp_path, launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and "MULTI_CPU" in manifest["distributed_type"]
    params = json.loads((run_dir / "params.json").read_text())
    assert params["world_size"] == 2 and len(params["ranks"]) == 2
    assert params["ranks"][0]["parameters"] == params["ranks"][1]["parameters"]  # student and adapter weights
    assert params["ranks"][0]["buffers"] == params["ranks"][1]["buffers"]
    rows = read_metrics(run_dir)
    assert rows[0]["steps"] == "4" and float(rows[0]["loss/hint"]) > 0  # 2 steps on each rank, adapters trained
    ckpt = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    plain_resnet8().load_state_dict(ckpt["model"], strict=True)
    assert len(ckpt["rng"]) == 2 and ckpt["extra"]["adapters.hint.conv.weight"].shape == (32, 32, 1, 1)


def _huge_lr(text: str) -> str:
    # lr 1e30 without clipping: the first step blows the weights up and every later loss is non-finite
    return text.replace("lr: 0.05", "lr: 1.0e+30").replace("    max_grad_norm: 5.0\n", "")


@pytest.mark.slow
def test_train_cli_nan_guard_stop_and_skip(tmp_path):
    config = smoke_copy(tmp_path, "ce.yaml", _huge_lr)
    stop = geokt_train("--config", str(config), "--run-dir", str(tmp_path / "stop"), "--device", "cpu",
                       cwd=tmp_path)
    assert stop.returncode == 3
    assert "non-finite loss term" in stop.stderr and "step 2" in stop.stderr and "no checkpoint yet" in stop.stderr
    assert "Traceback" not in stop.stderr
    skip = geokt_train("--config", str(config), "--run-dir", str(tmp_path / "skip"), "--device", "cpu",
                       "--nan-policy", "skip", cwd=tmp_path)
    assert skip.returncode == 0, skip.stderr
    row = read_metrics(tmp_path / "skip")[0]
    assert row["skipped_steps"] == "3" and row["steps"] == "1"


def test_train_cli_check_config_errors_and_trust(tmp_path):
    ok = geokt_train("--config", str(SMOKE / "geokt-rank.yaml"), "--check", "--run-dir", str(tmp_path / "r"),
                     cwd=tmp_path)
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stderr
    assert not (tmp_path / "r").exists()
    missing = geokt_train("--config", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert missing.returncode == 2 and "not found" in missing.stderr and "Traceback" not in missing.stderr
    shared = tmp_path / "shared"
    shared.mkdir()
    config = shutil.copy(SMOKE / "ce.yaml", shared / "ce.yaml")
    os.chmod(config, 0o666)
    refused = geokt_train("--config", str(config), "--check", cwd=tmp_path)
    assert refused.returncode == 2 and "world-writable" in refused.stderr and "--trust-config" in refused.stderr
    trusted = geokt_train("--config", str(config), "--check", "--trust-config", cwd=tmp_path)
    assert trusted.returncode == 0, trusted.stderr


def test_train_cli_bad_config_is_one_line_and_debug_shows_traceback(tmp_path):
    config = smoke_copy(tmp_path, "kd.yaml", lambda t: t.replace("key: 'KDLoss'", "key: 'KDLos'"))
    result = geokt_train("--config", str(config), "--run-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2 and "KDLos" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r").exists()
    debug = geokt_train("--config", str(config), "--run-dir", str(tmp_path / "r"), "--debug", cwd=tmp_path)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_smoke_configs_are_valid_yaml_with_the_runner_sections():
    names = sorted(p.name for p in SMOKE.glob("*.yaml"))
    assert names == ["ce.yaml", "fitnet-hint.yaml", "geokt-rank.yaml", "kd.yaml", "teacher-input.yaml"]
    for name in names:
        text = (SMOKE / name).read_text()
        structure = yaml.compose(text)  # tags are not run here
        keys = {k.value for k, _ in structure.value}
        assert {"dependencies", "datasets", "models", "train", "test"} <= keys, name
