"""The geokt_agreement section's check: every problem it reports, at its YAML path, and the check in check_config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import TensorDataset

from geokt_plugin.config import ConfigError, check_config, load_config
from geokt_plugin.config.agreement_check import check_agreement
from geokt_plugin.config.context import CheckContext, Datasets
from geokt_plugin.config.errors import Report
from geokt_plugin.config.models_check import check_models
from geokt_plugin.config.registries import Registries

ROOT = Path(__file__).resolve().parents[2]
TEACHER = {"key": "resnet20", "kwargs": {"num_classes": 10}}
STUDENT = {"key": "GeoKTCifarResNet", "kwargs": {"depth": 8, "num_classes": 10}}
GOOD = {"reference": "teacher_model", "layers": ["layer1", "layer2", "layer3"], "k": 8, "images": 32}
REGISTRIES = Registries.load()


def agreement_context(section, *, teacher: bool = True, val: bool = True) -> CheckContext:
    """A context as check_config hands it over: models checked, a validation dataset of 32 items, 32x32 inputs."""
    models = {"student_model": STUDENT, **({"teacher_model": TEACHER} if teacher else {})}
    train = {"val_data_loader": {"dataset_id": "fmnist/val"}} if val else {}
    config = {"models": models, "train": train, "geokt_agreement": section}
    ctx = CheckContext(config=config, config_path="c.yaml", device="cpu", report=Report(), registries=REGISTRIES,
                       input_shape=(3, 32, 32))
    ctx.models = check_models(ctx, models)
    ctx.datasets = Datasets(entries={"fmnist/val": TensorDataset(torch.zeros(32, 1))})
    return ctx


def problems(section, **kwargs) -> list[str]:
    ctx = agreement_context(section, **kwargs)
    check_agreement(ctx, ctx.config)
    return ctx.report.problems


def only(section, **kwargs) -> str:
    found = problems(section, **kwargs)
    assert len(found) == 1, found
    return found[0]


def test_a_good_section_and_no_section_have_no_problems():
    assert problems(GOOD) == []
    assert problems({**GOOD, "max_points": None, "k": 63}) == []  # layer3: 8x8 = 64 points, so k <= 63
    ctx = agreement_context(GOOD)
    del ctx.config["geokt_agreement"]
    check_agreement(ctx, ctx.config)
    assert ctx.report.problems == []


@pytest.mark.parametrize(("change", "message"), [
    ({"k": 0}, "geokt_agreement.k: must be a positive integer, got 0 (int). Use e.g. 8."),
    ({"k": "8"}, "geokt_agreement.k: must be a positive integer, got '8' (str). Write 8 without quotes"),
    ({"k": True}, "geokt_agreement.k: must be a positive integer, got True (bool)."),
    ({"images": 0}, "geokt_agreement.images: must be a positive integer, got 0 (int). Use e.g. 200."),
    ({"images": 2.5}, "geokt_agreement.images: must be a positive integer, got 2.5 (float)."),
    ({"images": 33}, "geokt_agreement.images: 33 images asked for, but the validation dataset 'fmnist/val' holds 32. "
                     "Use images <= 32."),
    ({"max_points": 1}, "geokt_agreement.max_points: must be an integer >= 2, got 1 (int). Use e.g. 128 (or null: "
                        "every position)."),
    ({"layer": ["layer1"]}, "geokt_agreement.layer: unknown key; the section takes ['reference', 'layers', 'k', "
                            "'images', 'max_points']. Did you mean 'layers'?"),
    ({"k": 64, "max_points": None}, "geokt_agreement.k: 64 neighbours need more than 64 points per image, but layer "
                                    "'layer3' (student (1, 64, 8, 8), reference (1, 64, 8, 8)) aligns to 8x8 "
                                    "positions, 64 points. Use k <= 63, or drop 'layer3'."),
    ({"k": 16, "max_points": 16}, "geokt_agreement.k: 16 neighbours need more than 16 points per image, but layer "
                                  "'layer1' (student (1, 16, 32, 32), reference (1, 16, 32, 32)) aligns to 32x32 "
                                  "positions, 16 points (max_points 16). Use k <= 15, or drop 'layer1'."),
    ({"layers": []}, "geokt_agreement.layers: must be a non-empty list of module paths present in the student and "
                     "the reference, got []. Write e.g. `layers: [layer1, layer2, layer3]`."),
    ({"layers": "layer1"}, "geokt_agreement.layers: must be a non-empty list of module paths"),
    ({"layers": ["layer1", 2]}, "geokt_agreement.layers[1]: must be a module path such as 'layer1', got 2."),
    ({"layers": ["layer1", "fc"]}, "geokt_agreement.layers[1]: the student's 'fc' gives (1, 10), not a 4-D feature "
                                   "map (B, C, H, W). Use a convolutional stage."),
    ({"reference": None}, "geokt_agreement.reference: must be 'teacher_model' or a models-style mapping with a key "
                          "(`{key: 'resnet20', kwargs: {num_classes: 10}, src_ckpt: 'teacher.pt'}`), got None."),
    ({"reference": "teacher"}, "geokt_agreement.reference: must be 'teacher_model' or a models-style mapping with a "
                               "key"),
    ({"reference": {"kwargs": {}}}, "geokt_agreement.reference: must be 'teacher_model' or a models-style mapping"),
    ({"reference": {**TEACHER, "src_ckp": "t.pt"}}, "geokt_agreement.reference.src_ckp: unknown key; a reference "
                                                    "entry takes ['key', 'kwargs', 'src_ckpt', 'repo_or_dir']. Did "
                                                    "you mean 'src_ckpt'?"),
    ({"reference": {"key": "resnet2000"}}, "geokt_agreement.reference.key: unknown model key 'resnet2000'."),
    ({"reference": {"key": "resnet20", "kwargs": [10]}}, "geokt_agreement.reference.kwargs: must be a mapping of "
                                                         "constructor arguments, got list."),
    ({"reference": {"key": "resnet20", "kwargs": {"depth": 3}}}, "geokt_agreement.reference.kwargs: building model "
                                                                 "'resnet20' failed: TypeError"),
    ({"reference": {**TEACHER, "src_ckpt": "no/such.pt"}}, "geokt_agreement.reference.src_ckpt: checkpoint file not "
                                                           "found: 'no/such.pt'"),
])
def test_each_problem_names_its_key_path(change, message):
    assert only({**GOOD, **change}).startswith(message)


def test_a_layer_missing_in_one_model_lists_that_models_top_level_modules():
    found = only({**GOOD, "reference": {"key": "resnet18", "kwargs": {"num_classes": 10}},
                  "layers": ["layer1", "layer4"]})
    assert found == ("geokt_agreement.layers[1]: no module 'layer4' in the student (ResNet4Cifar); its top-level "
                     "modules are ['conv1', 'bn1', 'relu', 'layer1', 'layer2', 'layer3', 'avgpool', 'fc']. Did you "
                     "mean 'layer3' or 'layer2' or 'layer1'? Use a path present in both the student and the reference.")
    found = only({**GOOD, "reference": {"key": "alexnet", "kwargs": {"num_classes": 10}}, "layers": ["layer1"]})
    assert found.startswith("geokt_agreement.layers[0]: no module 'layer1' in the reference (AlexNet); its top-level "
                            "modules are ['features', 'avgpool', 'classifier']. Use a path present in "
                            "both the student and the reference.")


def test_teacher_model_without_a_teacher_and_no_validation_loader():
    assert only(GOOD, teacher=False).startswith(
        "geokt_agreement.reference: 'teacher_model' names models.teacher_model, but the config has none. Add a "
        "teacher, or give a models-style entry")
    assert only(GOOD, val=False) == ("geokt_agreement: the probe measures on the first validation images, but the "
                                     "config has no train.val_data_loader. Add a validation loader, or remove the "
                                     "section.")
    assert only([GOOD]).startswith("geokt_agreement: must be a mapping, got list")


def test_a_reference_checkpoint_must_fit_and_torch_hub_is_noted(tmp_path):
    from torchdistill.models.registry import get_model

    torch.save({"model": get_model("resnet32", None, num_classes=10).state_dict()}, tmp_path / "r32.pt")
    found = only({**GOOD, "reference": {**TEACHER, "src_ckpt": str(tmp_path / "r32.pt")}})
    assert found.startswith(f"geokt_agreement.reference.src_ckpt: {str(tmp_path / 'r32.pt')!r} does not load "
                            "strictly into geokt_agreement.reference (resnet20): ")
    torch.save({"model": get_model("resnet20", None, num_classes=10).state_dict()}, tmp_path / "r20.pt")
    assert problems({**GOOD, "reference": {**TEACHER, "src_ckpt": str(tmp_path / "r20.pt")}}) == []
    ctx = agreement_context({**GOOD, "reference": {"key": "x", "repo_or_dir": "org/repo"}})
    check_agreement(ctx, ctx.config)
    assert ctx.report.problems == []
    assert "warning: geokt_agreement.reference: built through torch.hub ('org/repo'); its layers are not checked." \
        in ctx.report.notes


def test_the_docs_snippet_passes_the_check():
    page = (ROOT / "docs" / "configs.md").read_text()
    block = re.search(r"^## Geometric agreement\n.*?^```yaml\n(.*?)^```", page, re.M | re.S)
    assert block is not None, "docs/configs.md lost its geokt_agreement example"
    section = yaml.safe_load(block.group(1))["geokt_agreement"]
    assert set(section) == {"reference", "layers", "k", "images", "max_points"}
    assert problems(section) == []


def test_check_config_runs_the_agreement_check(tmp_path):
    path = tmp_path / "ce.yaml"
    section = {"reference": "teacher_model", "layers": ["layer9"], "k": 0}
    path.write_text((ROOT / "configs" / "smoke" / "ce.yaml").read_text() + "\n" +
                    yaml.safe_dump({"geokt_agreement": section}))
    with pytest.raises(ConfigError) as info:
        check_config(load_config(path), config_path=str(path))
    # images defaults to 200; the smoke validation split holds 32
    assert [p.split(":")[0] for p in info.value.problems] == ["geokt_agreement.k", "geokt_agreement.images",
                                                              "geokt_agreement.reference", "geokt_agreement.layers[0]"]
    assert re.search(r"no module 'layer9' in the student \(ResNet4Cifar\)", str(info.value))
