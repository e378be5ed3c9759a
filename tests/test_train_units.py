"""Pieces of the runner that need no training run: sampler, checkpoints, RNG states, model building, parser."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torchdistill.models.registry import get_model

from geokt_plugin import train as T
from geokt_plugin.validate import ConfigError


def test_train_sampler_order_depends_only_on_seed_and_epoch():
    a, b = T.EpochSeededSampler(50, seed=3), T.EpochSeededSampler(50, seed=3)
    a.set_epoch(4)
    b.set_epoch(4)
    torch.manual_seed(0)
    first = list(a)
    torch.manual_seed(1)  # the global RNG plays no part
    assert first == list(b) and sorted(first) == list(range(50))
    b.set_epoch(5)
    assert list(b) != first
    assert list(T.EpochSeededSampler(50, seed=4)) != list(T.EpochSeededSampler(50, seed=3))
    assert list(T.EpochSeededSampler(5, seed=3, shuffle=False)) == [0, 1, 2, 3, 4]


def test_train_rng_state_round_trip_is_plain_data():
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    state = T._rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    T._set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    assert isinstance(state["torch"], bytes) and isinstance(state["numpy"][1], bytes)


def test_train_checkpoint_round_trip_is_atomic_and_weights_only(tmp_path):
    model = get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)
    sched = torch.optim.lr_scheduler.MultiStepLR(torch.optim.SGD(model.parameters(), lr=0.1), milestones=[2])
    path = tmp_path / "last.pt"
    T.atomic_torch_save({"model": model.state_dict(), "scheduler": sched.state_dict(), "rng": [T._rng_state()]},
                        path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    loaded = T._torch_load(path)  # weights_only=True, Counter allowed
    assert loaded["scheduler"]["milestones"] == {2: 1}
    fresh = get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)
    T.load_model_checkpoint(fresh, path)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values(),
                                                  strict=True))


def test_train_bad_checkpoint_names_path_and_keys(tmp_path):
    resnet8 = get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)
    resnet20 = get_model("resnet20", num_classes=10)
    path = tmp_path / "resnet20.pt"
    torch.save({"model": resnet20.state_dict()}, path)
    with pytest.raises(ConfigError, match=r"models.teacher_model.src_ckpt: .*resnet20.pt does not fit ResNet4Cifar: "
                                          r"\d+ unexpected key\(s\) \['layer1.1"):
        T.load_model_checkpoint(resnet8, path, where="models.teacher_model.src_ckpt")
    wrapped = tmp_path / "wrapped.pt"
    torch.save({f"student_model.{k}": v for k, v in resnet8.state_dict().items()}, wrapped)
    with pytest.raises(ConfigError, match=r"wrapper's 'student_model.' prefix: save or load the inner student"):
        T.load_model_checkpoint(resnet8, wrapped)
    with pytest.raises(ConfigError, match=r"no checkpoint at 'nowhere.pt'"):
        T.load_model_checkpoint(resnet8, "nowhere.pt")
    ddp = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in resnet8.state_dict().items()}, ddp)
    T.load_model_checkpoint(resnet8, ddp)  # a DDP-saved state dict loads


def test_train_build_model_registry_torchvision_and_typos():
    assert type(T.build_model({"key": "resnet", "kwargs": {"depth": 8, "num_classes": 10, "pretrained": False,
                                                           "progress": False}}, "student_model")).__name__ \
        == "ResNet4Cifar"
    assert type(T.build_model({"key": "mobilenet_v3_small", "kwargs": {"num_classes": 10}}, "student_model")) \
        .__name__ == "MobileNetV3"
    with pytest.raises(ConfigError, match=r"models.student_model.key 'resnet21' .*did you mean \[.*'resnet20'"):
        T.build_model({"key": "resnet21"}, "student_model")


def test_train_parser_flags_and_defaults():
    args = T.build_parser().parse_args(["--config", "x.yaml"])
    assert (args.mixed_precision, args.nan_policy, args.resume, args.device, args.seed) == (None, "stop", False,
                                                                                              None, None)
    with pytest.raises(SystemExit):
        T.build_parser().parse_args(["--config", "x.yaml", "--mixed-precision", "fp8"])
