"""Checkpoints: atomic, weights_only-loadable, strict model loading with precise errors, the Checkpoint format."""

from __future__ import annotations

import pytest
import torch
from torchdistill.models.registry import get_model

from geokt_plugin.config import ConfigError
from geokt_plugin.runner.atomic import atomic_torch_save
from geokt_plugin.runner.checkpoint import CHECKPOINT_FORMAT, Checkpoint, load_model_checkpoint, torch_load
from geokt_plugin.runner.rng import rng_state


def resnet8() -> torch.nn.Module:
    return get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)


def test_train_checkpoint_round_trip_is_atomic_and_weights_only(tmp_path):
    model = resnet8()
    sched = torch.optim.lr_scheduler.MultiStepLR(torch.optim.SGD(model.parameters(), lr=0.1), milestones=[2])
    path = tmp_path / "last.pt"
    atomic_torch_save({"model": model.state_dict(), "scheduler": sched.state_dict(), "rng": [rng_state()]}, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    loaded = torch_load(path)  # weights_only=True, Counter allowed
    assert loaded["scheduler"]["milestones"] == {2: 1}
    fresh = resnet8()
    load_model_checkpoint(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(),
                                                  strict=True))


def test_train_bad_checkpoint_names_path_and_keys(tmp_path):
    small = resnet8()
    resnet20 = get_model("resnet20", num_classes=10)
    path = tmp_path / "resnet20.pt"
    torch.save({"model": resnet20.state_dict()}, path)
    with pytest.raises(ConfigError, match=r"models.teacher_model.src_ckpt: .*resnet20.pt does not fit ResNet4Cifar: "
                                          r"\d+ unexpected key\(s\) \['layer1.1"):
        load_model_checkpoint(small, path, where="models.teacher_model.src_ckpt")
    wrapped = tmp_path / "wrapped.pt"
    torch.save({f"student_model.{k}": v for k, v in small.state_dict().items()}, wrapped)
    with pytest.raises(ConfigError, match=r"wrapper's 'student_model.' prefix: save or load the inner student"):
        load_model_checkpoint(small, wrapped)
    with pytest.raises(ConfigError, match=r"no checkpoint at 'nowhere.pt'"):
        load_model_checkpoint(small, "nowhere.pt")
    ddp = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in small.state_dict().items()}, ddp)
    load_model_checkpoint(small, ddp)  # a DDP-saved state dict loads


def test_checkpoint_save_load_keeps_every_field_and_the_file_layout(tmp_path):
    model = resnet8()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    ckpt = Checkpoint(model=model.state_dict(), optimizer=optimizer.state_dict(), epoch=2, stage=2,
                      stage_grad_count=7, grad_steps=12, best_val_acc=50.0, best_epoch=2, teacher_val_acc=60.0,
                      rows=[{"epoch": 1}], rng=[rng_state()], seed=3, world_size=1)
    path = tmp_path / "last.pt"
    ckpt.save(path)
    raw = torch.load(path, map_location="cpu", weights_only=False)
    assert list(raw) == ["format", "model", "extra", "optimizer", "scheduler", "epoch", "stage", "stage_grad_count",
                         "grad_steps", "best_val_acc", "best_epoch", "teacher_val_acc", "rows", "rng", "seed",
                         "world_size"]
    assert raw["format"] == CHECKPOINT_FORMAT
    back = Checkpoint.load(path)
    assert (back.epoch, back.stage, back.stage_grad_count, back.grad_steps, back.best_val_acc, back.best_epoch,
            back.teacher_val_acc, back.rows, back.seed, back.world_size) == (2, 2, 7, 12, 50.0, 2, 60.0,
                                                                            [{"epoch": 1}], 3, 1)
    assert back.model.keys() == model.state_dict().keys() and back.rng[0]["torch"] == ckpt.rng[0]["torch"]
    plain = resnet8()
    plain.load_state_dict(back.model, strict=True)


def test_checkpoint_load_refuses_foreign_files_unless_plain_is_allowed(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"model": resnet8().state_dict()}, plain)
    with pytest.raises(ConfigError, match=r"--resume: .*plain.pt is not a geokt-train checkpoint \(no format "
                                          r"'geokt_plugin.checkpoint/1'\)"):
        Checkpoint.load(plain)
    assert Checkpoint.load(plain, allow_plain=True) is None
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk.pt is not loadable: "):
        Checkpoint.load(junk, allow_plain=True)
