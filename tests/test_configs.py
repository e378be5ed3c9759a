"""Every YAML under configs/ parses with torchdistill's loader, builds its models, wrappers and criterion, and trains.

Datasets are replaced before the YAML is parsed (torchdistill's ``!import_call`` builds them while loading): the
three builders of :mod:`geokt_plugin.data` become a fake that first checks the config's kwargs against the real
builder's signature, then returns 8 random images of the right shape and class count. Nothing is downloaded and
instructor checkpoints (``src_ckpt``) are dropped, so instructors are randomly initialised. Each config then runs
one training step at batch 2 through torchdistill's own box, on CPU, with ``accelerator=None``. Timed on 2 cores:
about 1 s per config, so every config runs its step (no subset).
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import sys
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

ROOT = Path(__file__).resolve().parent.parent
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


def build_model(model_config: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return get_model(model_config["key"], model_config.get("repo_or_dir"), **model_config.get("kwargs", {}))


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


def test_configs_exist():
    """The glob found every official config (an empty parametrisation would pass vacuously)."""
    names = {_rel(p) for p in CONFIGS}
    official = {f"official/{spec.relpath}" for spec in _suite_module().all_specs()}
    assert official <= names
    assert {n.split("/")[1] for n in official} == {"cifar10", "fashion_mnist"}


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


def _suite_module():
    spec = importlib.util.spec_from_file_location("geokt_suite", ROOT / "scripts" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve string annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_official_configs_match_their_generator():
    """configs/official is written by scripts/suite.py; a hand edit (or a generator change not re-run) fails."""
    suite = _suite_module()
    files = suite.generated_files()
    on_disk = {p for p in (ROOT / "configs" / "official").rglob("*") if p.is_file()}
    assert on_disk == set(files), sorted(str(p) for p in on_disk ^ set(files))[:5]
    stale = [str(p) for p, text in files.items() if p.read_text() != text]
    assert not stale, f"regenerate with `python scripts/suite.py configs`: {stale[:5]}"
    # docs/reproducing.md lists every official config, one row each
    reproducing = suite.REPRODUCING.read_text()
    assert suite.with_reproducing_table(reproducing) == reproducing, "regenerate with `python scripts/suite.py configs`"
    for path in on_disk:
        if path.suffix == ".yaml":
            assert f"(../{path.relative_to(ROOT)})" in reproducing, path


def test_official_students_name_their_instructor_run_dir():
    """Every src_ckpt points at the best.pt of an instructor config of the same dataset, seed 0."""
    official = ROOT / "configs" / "official"
    for path in official.rglob("*.yaml"):
        text = path.read_text()
        for line in text.splitlines():
            if "src_ckpt:" not in line:
                continue
            ckpt = Path(line.split("'")[1])
            assert ckpt.name == "best.pt" and ckpt.parent.name == "seed0", (path, ckpt)
            instructor = official / ckpt.parent.parent.relative_to("runs").with_suffix(".yaml")
            assert instructor.is_file() and instructor.parent.name == "instructors", (path, instructor)


def test_limited_data_fractions_are_nested_subsets(monkeypatch: pytest.MonkeyPatch):
    """The limited-data configs differ only in `fraction`, so their training sets are nested (data.py)."""
    official = ROOT / "configs" / "official"
    for dataset in ("fashion_mnist", "cifar10"):
        kwargs = {}
        for path in sorted((official / dataset / "theodorakopoulos2021" / "limited_data").glob("ce-*.yaml")):
            _, seen = load(path, monkeypatch)
            train = next(s for s in seen if s["split"] == "train")
            kwargs[train.pop("fraction", 1.0)] = train  # 100 %: no fraction, the same text as smaller_model
        assert sorted(kwargs) == [0.1, 0.2, 0.5, 1.0]
        assert all(k == kwargs[1.0] for k in kwargs.values())
