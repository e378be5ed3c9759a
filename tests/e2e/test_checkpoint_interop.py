"""Checkpoints cross between torchdistill and geokt-train in both directions: torchdistill's ``save_ckpt`` file is a
``src_ckpt`` for geokt-train; geokt-train's ``best.pt`` and ``models.student_model.dst_ckpt`` load with torchdistill's
``load_ckpt(strict=True)``."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest
import torch
from torchdistill.common.main_util import load_ckpt, save_ckpt
from torchdistill.models.registry import get_model

from geokt_plugin import rundir
from geokt_plugin.runner import main
from geokt_plugin.runner.build import build_model

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke"
pytestmark = pytest.mark.slow


def resnet8() -> torch.nn.Module:
    return get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)


def config_with(tmp_path: Path, line: str) -> Path:
    """configs/smoke/ce.yaml with ``line`` (a ``src_ckpt`` or ``dst_ckpt``) as the student's only checkpoint key."""
    lines = (SMOKE / "ce.yaml").read_text().splitlines(keepends=True)
    lines = [x for x in lines if not x.lstrip().startswith(("src_ckpt:", "dst_ckpt:"))]
    at = lines.index("  student_model:\n") + 1
    path = tmp_path / "ce.yaml"
    path.write_text("".join([*lines[:at], f"    {line}\n", *lines[at:]]))
    return path


def test_checkpoint_interop_torchdistill_save_ckpt_is_a_src_ckpt(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = resnet8()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[2])
    file = tmp_path / "td" / "student.pt"
    save_ckpt(model, optimizer, scheduler, 12.5, argparse.Namespace(config="x.yaml", seed=0), str(file))
    config = config_with(tmp_path, f"src_ckpt: '{file}'")

    built = build_model({"key": "resnet", "kwargs": {"depth": 8, "num_classes": 10, "pretrained": False,
                                                     "progress": False}, "src_ckpt": str(file)}, "student_model")
    for key, value in model.state_dict().items():
        assert torch.equal(built.state_dict()[key], value), key
    # the config checks and the runner both read it (weights_only, with torchdistill's `args` Namespace)
    assert main(["--config", str(config), "--check"]) == 0
    assert main(["--config", str(config), "--run-dir", str(tmp_path / "eval"), "--device", "cpu", "--test-only"]) == 0


def test_checkpoint_interop_best_and_dst_ckpt_load_with_torchdistill(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    dst = tmp_path / "ckpt" / "student.pt"
    config = config_with(tmp_path, f"dst_ckpt: '{dst}'")
    run_dir = tmp_path / "run"
    assert main(["--config", str(config), "--run-dir", str(run_dir), "--device", "cpu", "--epochs", "2"]) == 0
    summary = json.loads((run_dir / rundir.SUMMARY).read_text())

    best = resnet8()
    load_ckpt(str(run_dir / rundir.BEST), model=best, strict=True)
    student = resnet8()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[1])
    best_value, args = load_ckpt(str(dst), model=student, optimizer=optimizer, lr_scheduler=scheduler, strict=True)
    assert best_value == summary["best_val_acc"] and args["best_epoch"] == summary["best_epoch"]
    for key, value in best.state_dict().items():
        assert torch.equal(student.state_dict()[key], value), key  # dst_ckpt holds the best student
    raw = torch.load(dst, map_location="cpu", weights_only=True)
    assert set(raw) == {"model", "optimizer", "lr_scheduler", "best_value", "args"}
    assert rundir.checksum_path(dst).is_file()

    # and it goes back in: the dst_ckpt of one run is the src_ckpt of the next
    (tmp_path / "again").mkdir()
    again = config_with(tmp_path / "again", f"src_ckpt: '{dst}'")
    shutil.rmtree(run_dir)
    assert main(["--config", str(again), "--run-dir", str(run_dir), "--device", "cpu", "--test-only"]) == 0
