"""Unit tests of :mod:`geokt_plugin.validate` beyond the broken-input table: what passes, where shapes come from,
how YAML failures are attributed, and that the checks themselves write nothing."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import torch
from test_broken_inputs import SOURCE, base_config, geo, hooks
from torch import nn

from geokt_plugin.validate import ConfigError, check_config, check_run_dir, load_config

ROOT = Path(__file__).resolve().parents[1]
SMOKE = sorted((ROOT / "configs" / "smoke").glob("*.yaml"))


def test_validate_configerror_is_a_value_error_with_problems():
    error = ConfigError.from_problems("x.yaml", ["a: one", "b: two"])
    assert isinstance(error, ValueError)
    assert error.problems == ["a: one", "b: two"]
    assert str(error) == "x.yaml: 2 problems:\n  1. a: one\n  2. b: two"
    assert str(ConfigError.from_problems("x.yaml", ["a: one"])) == "x.yaml: a: one"


@pytest.mark.parametrize("path", SMOKE, ids=[p.stem for p in SMOKE])
def test_validate_smoke_configs_pass_without_warnings(path):
    notes = check_config(load_config(path), config_path=str(path))
    assert notes and all(n.startswith("ok: ") for n in notes), notes
    assert any("dummy forward" in n for n in notes)


def test_validate_hook_path_inside_an_auxiliary_wrapper_suggests_the_wrapped_path():
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


def test_validate_input_shape_sources_in_order():
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


def test_validate_meta_forward_falls_back_to_cpu(monkeypatch):
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


def test_validate_kwarg_hint_works_for_torchdistill_losses_too():
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


def test_validate_check_config_does_not_modify_the_config():
    config = base_config()
    hooks(config).append("layer1")
    before = copy.deepcopy({k: v for k, v in config.items() if k != "datasets"})
    check_config(config, config_path=SOURCE)
    assert {k: v for k, v in config.items() if k != "datasets"} == before


def test_validate_load_config_attributes_a_failing_tag_outside_datasets(tmp_path):
    path = tmp_path / SOURCE
    path.write_text("models:\n  student_model:\n    key: !import_get {key: 'torchvision.models.no_such_model'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert re.search(r"broken\.yaml: line 3: the YAML tag !import_get failed: AttributeError: .*no_such_model",
                     str(info.value)), str(info.value)


def test_validate_load_config_names_an_anchored_dataset_id(tmp_path):
    path = tmp_path / SOURCE
    path.write_text(
        "datasets:\n"
        "  &ok_id fmnist/ok: !import_call {key: 'geokt_plugin.data.fashion_mnist', init: {kwargs: {subset_size: 8}}}\n"
        "  &bad_id fmnist/bad: !import_call\n"
        "    key: 'geokt_plugin.data.fashion_mnist'\n"
        "    init: {kwargs: {split: 'tran'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert re.search(r"datasets\.fmnist/bad \(line 3\) could not be built: ValueError: fashion_mnist: unknown split "
                     r"'tran'", str(info.value)), str(info.value)


def test_validate_load_config_refuses_a_non_mapping_document(tmp_path):
    path = tmp_path / SOURCE
    path.write_text("- models\n- train\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: the config must be a YAML mapping .* got list"):
        load_config(path)


def test_validate_check_run_dir_writes_nothing(tmp_path):
    fresh = tmp_path / "a" / "b" / "run"
    assert check_run_dir(fresh, resume=False, overwrite=False) == [f"ok: run dir {fresh} is writable"]
    assert not (tmp_path / "a").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("kept\n")
    check_run_dir(existing, resume=False, overwrite=False)
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]


def test_validate_check_run_dir_allows_resume_and_overwrite_of_a_previous_run(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"x")
    assert check_run_dir(tmp_path, resume=True, overwrite=False) == [f"ok: resuming from {tmp_path / 'last.pt'}"]
    notes = check_run_dir(tmp_path, resume=False, overwrite=True)
    assert notes == [f"warning: {tmp_path} holds a previous run (last.pt); --overwrite replaces it"]
    assert (tmp_path / "last.pt").read_bytes() == b"x"
