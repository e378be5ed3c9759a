"""Every YAML under configs/ runs through torchdistill's public API the way its example script does.

The route is ``main``/``load_model``/``train``/``evaluate`` of torchdistill's
``examples/torchvision/image_classification.py``: models through ``get_image_classification_model`` (torchvision)
then ``get_model`` (registry), ``load_ckpt`` of each ``src_ckpt``, ``get_training_box`` / ``get_distillation_box``,
one ``forward_process`` / ``post_forward_process`` step, an evaluation batch, ``save_ckpt`` to the student's
``dst_ckpt``, the final strict ``load_ckpt`` of that file and a test batch. Datasets are shrunk as in
``test_configs.py`` (8 random images); released weights (``pretrained: True``) are switched off and every
``src_ckpt`` names a ``{'model': state_dict}`` file (what both tools read) of a random instructor written here,
so nothing is downloaded.

The script saves the student it was given (torchdistill 1.1.x: ``student_model_without_ddp``); its unreleased main
branch saves ``training_box.student_model`` instead, which with an auxiliary wrapper (the FitNets configs) carries
``student_model.`` prefixes that its own final strict reload rejects. The last test pins which configs that is.
"""

from __future__ import annotations

import argparse
import copy
import re
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image
from test_configs import CONFIGS, ROOT, _rel, load, offline_kwargs, shrink_loaders
from torch.utils.data import Dataset
from torchdistill.common import yaml_util
from torchdistill.common.main_util import import_dependencies, load_ckpt, save_ckpt
from torchdistill.core.distillation import get_distillation_box
from torchdistill.core.training import get_training_box
from torchdistill.datasets.util import build_data_loader
from torchdistill.losses.registry import get_high_level_loss
from torchdistill.models.official import get_image_classification_model
from torchdistill.models.registry import get_model

DOC = ROOT / "docs" / "torchdistill.md"

# What torchdistill's script and boxes read; a key outside these would be one only geokt-train understands.
SCRIPT_TOP_LEVEL = {"dependencies", "datasets", "models", "train", "test"}
# geokt-train's agreement probe (logging only): torchdistill's script reads the keys above by name and ignores it.
GEOKT_ONLY_TOP_LEVEL = {"geokt_agreement"}
MODEL_KEYS = {"key", "kwargs", "repo_or_dir", "src_ckpt", "dst_ckpt", "quantized", "sync_bn"}
TRAIN_KEYS = {"log_freq", "num_epochs", "train_data_loader", "val_data_loader", "teacher", "student", "model",
              "optimizer", "scheduler", "criterion"}


def script_load_model(model_config: dict, device: torch.device) -> torch.nn.Module:
    """The script's ``load_model``: torchvision first, then torchdistill's registry, then ``src_ckpt`` strictly."""
    model_config = {**model_config, "kwargs": offline_kwargs(model_config)}
    torch.manual_seed(0)
    model = get_image_classification_model(model_config, False)
    if model is None:
        model = get_model(model_config["key"], model_config.get("repo_or_dir"), **model_config["kwargs"])
    load_ckpt(model_config.get("src_ckpt"), model=model, strict=True)
    return model.to(device)


def write_instructor_ckpts(models: dict, root: Path) -> None:
    """Point every ``src_ckpt`` at a ``{'model': state_dict}`` file of a random model (its run has not happened)."""
    for model_config in models.values():
        if model_config.get("src_ckpt"):
            torch.manual_seed(1)
            model = get_model(model_config["key"], None, **offline_kwargs(model_config))
            path = root / "instructor" / Path(model_config["src_ckpt"]).name
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict()}, path)
            model_config["src_ckpt"] = str(path)


def check_keys(config: dict) -> None:
    assert set(config) <= SCRIPT_TOP_LEVEL | GEOKT_ONLY_TOP_LEVEL, set(config) - SCRIPT_TOP_LEVEL
    assert {"models", "datasets", "train", "test"} <= set(config)
    for model_config in config["models"].values():
        assert set(model_config) <= MODEL_KEYS, set(model_config) - MODEL_KEYS
    assert set(config["train"]) <= TRAIN_KEYS | {k for k in config["train"] if k.startswith("stage")}
    assert "log_freq" in config["train"]  # the script reads train_config['log_freq'] without a default


def run_script_path(config: dict, label: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``main`` of torchdistill's script on a loaded config, one training step, ``dst_ckpt`` written and reloaded."""
    check_keys(config)
    models = copy.deepcopy(config["models"])
    student_config = models["student_model"] if "student_model" in models else models["model"]
    dst = student_config["dst_ckpt"]  # the script: student_model_config['dst_ckpt'] (a KeyError without it)
    assert isinstance(dst, str) and dst.startswith("runs/") and dst.endswith(".pt"), dst
    write_instructor_ckpts(models, tmp_path)
    monkeypatch.chdir(tmp_path)  # dst_ckpt is relative to the working directory
    device = torch.device("cpu")
    teacher = script_load_model(models["teacher_model"], device) if "teacher_model" in models else None
    student = script_load_model(student_config, device)
    train_config = copy.deepcopy(config["train"])
    shrink_loaders(train_config)
    datasets = config["datasets"]
    box = get_training_box(student, datasets, train_config, device, None, False, 1) if teacher is None \
        else get_distillation_box(teacher, student, datasets, train_config, device, None, False, 1)
    try:
        box.pre_epoch_process(epoch=0)
        sample, targets, supp = next(iter(box.train_data_loader))
        loss = box.forward_process(sample, targets, supp)
        assert loss.dim() == 0 and torch.isfinite(loss), loss
        box.post_forward_process(loss=loss)
        wrapped = box.model if teacher is None else box.student_model
        wrapped.eval()
        image, target = next(iter(box.val_data_loader))  # evaluate(): (image, target) batches
        with torch.inference_mode():
            assert wrapped(image).shape[0] == image.shape[0]
        save_ckpt(student, box.optimizer, box.lr_scheduler, 12.5, argparse.Namespace(config=label), dst)
        box.post_epoch_process()
    finally:
        box.clean_modules()
    assert (tmp_path / dst).is_file()

    # main(): reload dst_ckpt strictly into a fresh student, then the test loader
    reloaded = script_load_model(student_config, device)
    best_value, args = load_ckpt(dst, model=reloaded, strict=True)
    assert best_value == 12.5 and args.config == label
    for (name, a), b in zip(student.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    test_loader_config = copy.deepcopy(config["test"]["test_data_loader"])
    test_loader_config["kwargs"] = {**test_loader_config.get("kwargs", {}), "batch_size": 2, "num_workers": 0,
                                    "pin_memory": False}
    test_loader = build_data_loader(datasets[test_loader_config["dataset_id"]], test_loader_config, False)
    image, _ = next(iter(test_loader))
    reloaded.eval()
    with torch.inference_mode():
        assert torch.isfinite(reloaded(image)).all()


@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_config_runs_the_torchdistill_script_path(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    config, _ = load(path, monkeypatch)
    run_script_path(config, _rel(path), tmp_path, monkeypatch)


class FakeCIFAR10(Dataset):
    """torchvision's ``CIFAR10`` signature, 8 random PIL images through the config's ``transform``."""

    def __init__(self, root: str, train: bool = True, transform=None, target_transform=None,
                 download: bool = False) -> None:
        g = torch.Generator().manual_seed(int(train))
        self.images = [Image.fromarray(a.numpy()) for a in torch.randint(0, 256, (8, 32, 32, 3), generator=g,
                                                                           dtype=torch.uint8)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), index % 10


def worked_example() -> str:
    """The full config of docs/torchdistill.md (its one yaml block with a ``models:`` section)."""
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), re.M | re.S)
    configs = [b for b in blocks if re.search(r"^models:", b, re.M)]
    assert len(configs) == 1, f"{DOC} should hold one full config, found {len(configs)}"
    return configs[0]


def test_worked_example_runs_the_torchdistill_script_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    path = tmp_path / "kd_geokt-resnet20_from_resnet56.yaml"
    path.write_text(worked_example())
    config = yaml_util.load_yaml_file(str(path))
    import_dependencies(config.get("dependencies"))
    criterion = get_high_level_loss(config["train"]["criterion"])
    assert {"kd", "geo_layer1", "geo_layer2", "geo_layer3"} <= set(dict(criterion.term_dict))
    assert config["models"]["teacher_model"]["kwargs"]["pretrained"] is True  # switched off by script_load_model
    run_script_path(config, "docs/torchdistill.md", tmp_path, monkeypatch)


def _has_student_wrapper(config: dict) -> bool:
    stages = [v for k, v in config["train"].items() if k.startswith("stage")] or [config["train"]]
    return any((stage.get("student") or {}).get("auxiliary_model_wrapper") for stage in stages)


def test_only_aux_wrapped_students_differ_from_the_unwrapped_student(monkeypatch: pytest.MonkeyPatch):
    """torchdistill's main branch saves ``box.student_model``: plain keys except where an auxiliary wrapper holds the
    student (then its reload fails there, while torchdistill 1.1.x and geokt-train save the plain student)."""
    wrapped = []
    for path in CONFIGS:
        config, _ = load(path, monkeypatch)
        if _has_student_wrapper(config):
            wrapped.append(_rel(path))
    assert wrapped and all("fitnet" in name for name in wrapped), wrapped
