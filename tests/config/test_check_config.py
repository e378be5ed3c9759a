"""Unit tests of :func:`geokt_plugin.config.check_config` beyond the broken-input table: what passes, where the
dummy forward's input shape comes from, the CPU fallback, and that the checks leave the config as it was."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from test_broken_inputs import SOURCE, base_config, geo, hooks
from torch import nn

from geokt_plugin.config import ConfigError, check_config, load_config

ROOT = Path(__file__).resolve().parents[2]
SMOKE = sorted((ROOT / "configs" / "smoke").glob("*.yaml"))


def test_config_error_is_a_value_error_with_problems():
    error = ConfigError.from_problems("x.yaml", ["a: one", "b: two"])
    assert isinstance(error, ValueError)
    assert error.problems == ["a: one", "b: two"]
    assert str(error) == "x.yaml: 2 problems:\n  1. a: one\n  2. b: two"
    assert str(ConfigError.from_problems("x.yaml", ["a: one"])) == "x.yaml: a: one"


@pytest.mark.parametrize("path", SMOKE, ids=[p.stem for p in SMOKE])
def test_check_config_smoke_configs_pass_without_warnings(path):
    notes = check_config(load_config(path), config_path=str(path))
    assert notes and all(n.startswith("ok: ") for n in notes), notes
    assert any("dummy forward" in n for n in notes)


def test_check_config_hook_path_inside_an_auxiliary_wrapper_suggests_the_wrapped_path():
    """With an instructor input wrapper, paths gain a 'teacher_model.' prefix; forgetting it is a common mistake."""
    config = load_config(ROOT / "configs" / "smoke" / "teacher-input.yaml")
    teacher_hooks = config["train"]["teacher"]["forward_hook"]["output"]
    assert teacher_hooks == ["teacher_model.layer2"]
    config["train"]["teacher"]["forward_hook"]["output"] = ["layer2"]
    with pytest.raises(ConfigError) as info:
        check_config(config, config_path=SOURCE)
    message = str(info.value)
    assert re.search(r"train\.teacher\.forward_hook\.output: no module 'layer2' in GeoKTTeacherInputWrapper\. "
                     r"Nearest valid module paths: \['teacher_model\.layer2'", message), message


def test_check_config_input_shape_sources_in_order():
    def source(config, **kwargs):
        notes = check_config(config, config_path=SOURCE, **kwargs)
        return next(n for n in notes if n.startswith("ok: train.student: dummy forward"))

    config = base_config()
    assert "(2, 3, 32, 32) (the training dataset's first sample)" in source(config)
    assert "(2, 3, 30, 30) (input_shape argument)" in source(config, input_shape=(3, 30, 30))
    config["check_input_shape"] = [3, 30, 30]
    assert "(2, 3, 30, 30) (check_input_shape)" in source(config)
    config = base_config()
    config["datasets"]["train"] = [("not a tensor", 0)]  # a sample without a tensor: fall back to the default
    assert "(2, 3, 32, 32) (the default" in source(config)


def test_check_config_meta_forward_falls_back_to_cpu(monkeypatch):
    """A model whose forward needs real values (``.item()``) cannot run on the meta device; the check uses CPU."""
    from torchdistill.models import registry

    class ItemNet(nn.Module):
        def __init__(self, num_classes: int = 10) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.head = nn.Linear(8, num_classes)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.stem(x)
            if float(y.abs().sum().item()) >= 0:  # data-dependent: no meta kernel can answer this
                y = y.relu()
            return self.head(y.mean((2, 3)))

    monkeypatch.setitem(registry.MODEL_DICT, "geokt_test_item_net", ItemNet)
    config = base_config()
    for name in ("teacher_model", "student_model"):
        config["models"][name] = {"key": "geokt_test_item_net", "kwargs": {"num_classes": 10}}
    for role in ("teacher", "student"):
        config["train"][role]["forward_hook"]["output"] = ["stem"]
    geo(config).update(student_module_path="stem", teacher_module_path="stem", max_points=16)
    notes = check_config(config, config_path=SOURCE)
    assert any(re.search(r"GeoKTDistanceLoss on student \(2, 8, 32, 32\) / teacher \(2, 8, 32, 32\), 16 points", n)
               for n in notes), notes


def test_check_config_kwarg_hint_works_for_torchdistill_losses_too():
    config = base_config()
    config["train"]["criterion"]["kwargs"]["sub_terms"]["kd"] = {
        "criterion": {"key": "KDLoss", "kwargs": {"student_module_path": ".", "student_module_io": "output",
                                                  "teacher_module_path": ".", "teacher_module_io": "output",
                                                  "temprature": 4.0, "alpha": 0.5}},
        "weight": 1.0,
    }
    with pytest.raises(ConfigError) as info:
        check_config(config, config_path=SOURCE)
    assert re.search(r"sub_terms\.kd\.criterion\.kwargs: KDLoss\.__init__\(\) missing 1 required positional "
                     r"argument: 'temperature'\. Did you mean 'temperature' for 'temprature'\?", str(info.value)), \
        str(info.value)


def test_check_config_does_not_modify_the_config():
    config = base_config()
    hooks(config).append("layer1")
    before = copy.deepcopy({k: v for k, v in config.items() if k != "datasets"})
    check_config(config, config_path=SOURCE)
    assert {k: v for k, v in config.items() if k != "datasets"} == before


def test_check_config_wrapper_that_needs_real_tensors_is_built_on_cpu(monkeypatch):
    """An auxiliary wrapper that fails on the meta device asks for CPU (``NEEDS_CPU``), and the checks pass there."""
    from torchdistill.models import registry

    from geokt_plugin.config.context import CheckContext
    from geokt_plugin.config.errors import Report
    from geokt_plugin.config.models_check import check_models
    from geokt_plugin.config.registries import Registries
    from geokt_plugin.config.roles_check import BuildStatus, RoleSection, build_role

    class CPUOnlyWrapper(nn.Module):
        def __init__(self, student_model: nn.Module, device: torch.device, **kwargs: object) -> None:
            super().__init__()
            if torch.device(device).type == "meta":
                raise RuntimeError("needs real tensors")
            self.student_model = student_model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.student_model(x)

    monkeypatch.setitem(registry.AUXILIARY_MODEL_WRAPPER_DICT, "GeoKTTestCPUOnlyWrapper", CPUOnlyWrapper)
    config = base_config()
    config["train"]["student"]["auxiliary_model_wrapper"] = {"key": "GeoKTTestCPUOnlyWrapper", "kwargs": {}}
    config["train"]["student"]["forward_hook"]["output"] = ["student_model.layer2"]
    geo(config)["student_module_path"] = "student_model.layer2"
    notes = check_config(config, config_path=SOURCE)
    assert any(re.search(r"GeoKTDistanceLoss on student \(2, 32, 16, 16\)", n) for n in notes), notes

    ctx = CheckContext(config=config, config_path=SOURCE, device="cpu", report=Report(),
                       registries=Registries.load(), uses_geokt_dependency=True)
    ctx.models = check_models(ctx, config["models"])
    section = RoleSection("student", "train.student", config["train"]["student"])
    assert build_role(ctx, section, torch.device("meta")).status is BuildStatus.NEEDS_CPU
    built = build_role(ctx, section, torch.device("cpu"))
    assert built.status is BuildStatus.BUILT and isinstance(built.models.ref, CPUOnlyWrapper)
    assert ctx.report.problems == []
