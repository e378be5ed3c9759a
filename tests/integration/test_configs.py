"""Every YAML under configs/ parses with torchdistill's loader, builds its models, wrappers and criterion, and trains.

Datasets are replaced before the YAML is parsed (torchdistill's ``!import_call`` builds them while loading): the
three builders of :mod:`geokt_plugin.data` become a fake that first checks the config's kwargs against the real
builder's signature, then returns 8 random images of the right shape and class count. Nothing is downloaded:
instructor checkpoints (``src_ckpt``) are dropped and ``pretrained: True`` (torchdistill's released weights) becomes
``False``, so instructors are randomly initialised. Each config then runs
one training step at batch 2 through torchdistill's own box, on CPU, with ``accelerator=None``. Timed on 2 cores:
about 1 s per config, so every config runs its step (no subset).
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from torchdistill.common import yaml_util
from torchdistill.common.main_util import import_dependencies
from torchdistill.core.distillation import get_distillation_box
from torchdistill.core.training import get_training_box
from torchdistill.losses.registry import get_high_level_loss
from torchdistill.models.registry import get_model

import geokt_plugin.data as gdata

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
BUILDERS = {"fashion_mnist": 10, "cifar10": 10, "cifar100": 100}  # builder -> classes when `classes` is not given


class TinyImages(Dataset):
    """8 seeded random images ``(3, 32, 32)`` (or the config's channels/size) with labels covering the classes."""

    def __init__(self, num_classes: int, channels: int = 3, size: int = 32, n: int = 8) -> None:
        g = torch.Generator().manual_seed(0)
        self.images = torch.randn(n, channels, size, size, generator=g)
        self.targets = [i % num_classes for i in range(n)]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], self.targets[index]


def _fake(name: str, seen: list[dict]):
    real = getattr(gdata, name)

    def build(*args, **kwargs):
        inspect.signature(real).bind(*args, **kwargs)  # a misspelt dataset kwarg fails here, as it would for real
        classes = kwargs.get("classes")
        seen.append({"builder": name, **kwargs})
        return TinyImages(len(classes) if classes else BUILDERS[name], kwargs.get("channels", 3),
                          kwargs.get("size", 32))

    return build


def load(path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, list[dict]]:
    seen: list[dict] = []
    for name in BUILDERS:
        monkeypatch.setattr(gdata, name, _fake(name, seen))
    config = yaml_util.load_yaml_file(str(path))
    import_dependencies(config.get("dependencies"))
    return config, seen


def offline_kwargs(model_config: dict) -> dict:
    """The model's kwargs with ``pretrained`` off (no download of released weights)."""
    kwargs = dict(model_config.get("kwargs") or {})
    if kwargs.get("pretrained"):
        kwargs["pretrained"] = False
    return kwargs


def build_model(model_config: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model(model_config["key"], model_config.get("repo_or_dir"), **offline_kwargs(model_config))


def shrink_loaders(train_config: dict) -> None:
    """Batch 2, no worker processes, no pinned memory: one fast step on CPU."""
    stages = [v for k, v in train_config.items() if k.startswith("stage")] or [train_config]
    for stage in stages:
        for name in ("train_data_loader", "val_data_loader"):
            if isinstance(stage.get(name), dict):
                stage[name]["kwargs"] = {**stage[name].get("kwargs", {}), "batch_size": 2, "num_workers": 0,
                                         "pin_memory": False}
        for role in ("teacher", "student", "model"):
            if isinstance(stage.get(role), dict):
                stage[role].pop("src_ckpt", None)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT / "configs"))


@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_config_builds_and_trains_one_step(path: Path, monkeypatch: pytest.MonkeyPatch):
    config, seen = load(path, monkeypatch)
    assert {"models", "train", "datasets"} <= set(config), f"{_rel(path)} lacks a top-level section"
    assert seen, "no dataset went through geokt_plugin.data"
    models = config["models"]
    teacher_config = copy.deepcopy(models.get("teacher_model"))
    student = build_model(models["student_model"])
    train_config = copy.deepcopy(config["train"])
    shrink_loaders(train_config)
    device = torch.device("cpu")

    # The criterion builds on its own (errors in loss kwargs surface here with the loss's own message).
    stage = train_config.get("stage1", train_config)
    assert get_high_level_loss(stage["criterion"]) is not None

    if teacher_config is None:
        box = get_training_box(student, config["datasets"], train_config, device, None, False, 1, accelerator=None)
        trained = box.model
    else:
        teacher_config.pop("src_ckpt", None)  # random instructor weights stand in for the checkpoint
        teacher = build_model(teacher_config)
        box = get_distillation_box(teacher, student, config["datasets"], train_config, device, None, False, 1,
                                   accelerator=None)
        trained = box.student_model
    before = {n: p.detach().clone() for n, p in trained.named_parameters() if p.requires_grad}
    assert before, "nothing to train"
    try:
        box.pre_epoch_process(epoch=0)
        sample, targets, supp = next(iter(box.train_data_loader))
        assert sample.shape[0] == 2
        loss = box.forward_process(sample, targets, supp)
        assert loss.dim() == 0 and torch.isfinite(loss), f"loss {loss}"
        box.post_forward_process(loss=loss)
        after = dict(trained.named_parameters())
        moved = [n for n, p in before.items() if not torch.equal(p, after[n].detach())]
        # The classifier and, for FitNets, the hint adapter must have been updated by the step.
        assert any(n.endswith("fc.weight") for n in moved), moved[:5]
        if "adapters.hint.conv.weight" in before:
            assert "adapters.hint.conv.weight" in moved
        assert box.val_data_loader is not None
        if "test" in config:
            assert config["test"]["test_data_loader"]["dataset_id"] in config["datasets"]
    finally:
        box.clean_modules()
