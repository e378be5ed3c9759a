"""geokt_plugin.adapters: shapes, numerics, errors, registration, and the wrappers inside torchdistill's plumbing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torchdistill.core.forward_hook import register_forward_hook_with_dict
from torchdistill.models import registry as model_registry
from torchdistill.models.registry import get_model
from torchdistill.models.wrapper import AuxiliaryModelWrapper, build_auxiliary_model_wrapper

from geokt_plugin import registered_keys
from geokt_plugin.adapters import GeoKTHeadAdapter, GeoKTInputAdapter, GeoKTStudentWrapper, GeoKTTeacherInputWrapper


def resnet8() -> nn.Module:
    torch.manual_seed(0)
    return get_model("resnet", depth=8, num_classes=10, pretrained=False, progress=False)


# ---- registration ----------------------------------------------------------------------------------------------


def test_adapters_registered_under_their_class_names():
    assert {"GeoKTInputAdapter", "GeoKTHeadAdapter"} <= set(registered_keys("adaptation_module"))
    assert {"GeoKTStudentWrapper", "GeoKTTeacherInputWrapper"} <= set(registered_keys("auxiliary_model_wrapper"))
    assert model_registry.ADAPTATION_MODULE_DICT["GeoKTHeadAdapter"] is GeoKTHeadAdapter
    assert model_registry.AUXILIARY_MODEL_WRAPPER_DICT["GeoKTStudentWrapper"] is GeoKTStudentWrapper
    assert model_registry.get_adaptation_module("GeoKTInputAdapter", in_channels=1, out_channels=3).out_channels == 3


@pytest.mark.parametrize("cls", [GeoKTStudentWrapper, GeoKTTeacherInputWrapper, GeoKTHeadAdapter, GeoKTInputAdapter])
def test_adapters_do_not_override_call(cls):
    # Forward hooks (and so the losses) depend on nn.Module.__call__.
    assert cls.__call__ is nn.Module.__call__


# ---- GeoKTInputAdapter -----------------------------------------------------------------------------------------


def test_input_adapter_repeat_resize_and_renormalise():
    adapter = GeoKTInputAdapter(1, 3, size=32, in_mean=0.5, in_std=0.25, out_mean=[0.1, 0.2, 0.3],
                                out_std=[0.5, 0.5, 1.0])
    raw = torch.rand(2, 1, 32, 32)
    out = adapter((raw - 0.5) / 0.25)
    assert out.shape == (2, 3, 32, 32)
    expected = (raw.expand(-1, 3, -1, -1) - torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.5, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, expected)
    assert adapter(torch.zeros(2, 1, 28, 28)).shape == (2, 3, 32, 32)
    assert list(adapter.parameters()) == []


def test_input_adapter_fixed_and_learnable_mix():
    weight = [[0.299, 0.587, 0.114]]
    grey = GeoKTInputAdapter(3, 1, mix="fixed", weight=weight)
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(grey(x), (x * torch.tensor(weight).view(1, 3, 1, 1)).sum(1, keepdim=True))
    learn = GeoKTInputAdapter(1, 3, mix="learnable")
    assert sum(p.numel() for p in learn.parameters()) == 3
    torch.testing.assert_close(learn(x[:, :1]), x[:, :1].expand(-1, 3, -1, -1))  # starts as a copy
    learn(x[:, :1]).sum().backward()
    assert learn.mixer.weight.grad is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 2, "out_channels": 3}, r"mix 'repeat' maps 1 channel to 3 .* in_channels=2"),
        ({"mix": "fixed"}, r"mix 'fixed' needs weight"),
        ({"mix": "blend"}, r"unknown mix 'blend'; choose one of \['repeat', 'fixed', 'learnable'\]"),
        ({"weight": [[1.0, 0.0]], "mix": "fixed"}, r"weight has shape \(1, 2\), expected .* \(3, 1\)"),
        ({"in_std": 0.0}, r"in_std=\[0.0\] must be positive"),
        ({"out_mean": [0.1, 0.2]}, r"out_mean has 2 values but .* 3 channels"),
        ({"size": [32]}, r"size must be a positive int or \[H, W\]"),
        ({"in_channels": 0}, r"in_channels must be a positive integer"),
    ],
)
def test_input_adapter_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GeoKTInputAdapter(**kwargs)


def test_input_adapter_forward_names_expected_channels():
    with pytest.raises(ValueError, match=r"expected a \(B, 1, H, W\) batch, got \(2, 3, 8, 8\)"):
        GeoKTInputAdapter(1, 3)(torch.zeros(2, 3, 8, 8))


# ---- GeoKTHeadAdapter ------------------------------------------------------------------------------------------


def test_head_adapter_shapes_and_options():
    head = GeoKTHeadAdapter(16, 64)
    assert head(torch.randn(4, 16, 8, 8)).shape == (4, 64, 8, 8)
    assert isinstance(head.bn, nn.BatchNorm2d) and head.conv.bias is None
    plain = GeoKTHeadAdapter(16, 8, batch_norm=False, relu=True)
    assert plain.conv.bias is not None and (plain(torch.randn(2, 16, 4, 4)) >= 0).all()
    with pytest.raises(ValueError, match=r"GeoKTHeadAdapter: out_channels must be a positive integer, got 0"):
        GeoKTHeadAdapter(16, 0)


# ---- GeoKTStudentWrapper ---------------------------------------------------------------------------------------


def _wrapper_via_torchdistill(adapters: dict) -> GeoKTStudentWrapper:
    config = {"auxiliary_model_wrapper": {"key": "GeoKTStudentWrapper", "kwargs": {"adapters": adapters}}}
    wrapper = build_auxiliary_model_wrapper(config, student_model=resnet8(), device=torch.device("cpu"),
                                            device_ids=None, distributed=False)
    assert isinstance(wrapper, GeoKTStudentWrapper) and isinstance(wrapper, AuxiliaryModelWrapper)
    return wrapper


def _hooked_forward(wrapper: nn.Module, paths: list[str], x: torch.Tensor) -> dict:
    """What torchdistill's box does: hooks by path, forward, extract, secondary_forward, extract again."""
    raw: dict = {}
    handles = [register_forward_hook_with_dict(wrapper.get_submodule(p), p, False, True, raw) for p in paths]
    out = wrapper(x)
    io_dict = {p: {"output": raw[p]["output"]["cpu"]} for p in paths if raw[p]}
    wrapper.secondary_forward(io_dict)
    io_dict.update({p: {"output": raw[p]["output"]["cpu"]} for p in paths if raw[p]})
    for handle in handles:
        handle.remove()
    return {"out": out, **io_dict}


def test_student_wrapper_forward_is_the_students_and_adapters_run_on_hooks():
    wrapper = _wrapper_via_torchdistill({"hint": {"path": "student_model.layer2", "in_channels": 32,
                                                  "out_channels": 64}})
    x = torch.randn(2, 3, 32, 32)
    wrapper.eval()
    torch.testing.assert_close(wrapper(x), wrapper.student_model(x))
    io = _hooked_forward(wrapper, ["student_model.layer2", "adapters.hint"], x)
    assert io["adapters.hint"]["output"].shape == (2, 64, 16, 16)
    torch.testing.assert_close(io["adapters.hint"]["output"], wrapper.adapters["hint"](io["student_model.layer2"]
                                                                                        ["output"]))
    names = {n for n, _ in wrapper.named_parameters()}
    assert "adapters.hint.conv.weight" in names and "student_model.conv1.weight" in names


def test_student_wrapper_channel_mismatch_names_path_and_shapes():
    wrapper = _wrapper_via_torchdistill({"hint": {"path": "student_model.layer3", "in_channels": 32,
                                                  "out_channels": 64}})
    with pytest.raises(ValueError, match=r"adapter 'hint' expects \(B, 32, H, W\) from 'student_model.layer3' "
                                         r"\(output\) but the hooked tensor is \(2, 64, 8, 8\)"):
        _hooked_forward(wrapper, ["student_model.layer3", "adapters.hint"], torch.randn(2, 3, 32, 32))


def test_student_wrapper_missing_hook_names_the_yaml_fix():
    wrapper = _wrapper_via_torchdistill({"hint": {"path": "student_model.layer2", "in_channels": 32,
                                                  "out_channels": 32}})
    with pytest.raises(ValueError, match=r"Add 'student_model.layer2' to train.student.forward_hook.output"):
        wrapper.secondary_forward({".": {"output": torch.zeros(1)}, "adapters.hint": {}})
    relative = _wrapper_via_torchdistill({"hint": {"path": "layer2", "in_channels": 32, "out_channels": 32}})
    with pytest.raises(ValueError, match=r"relative to the wrapper: use 'student_model.layer2'"):
        relative.secondary_forward({"student_model.layer2": {"output": torch.zeros(2, 32, 4, 4)}})


@pytest.mark.parametrize(
    ("adapters", "error", "match"),
    [
        ({"hint": {"path": "student_model.layer2", "in_channels": 32}}, ValueError, r"missing \['out_channels'\]"),
        ({"hint": {"path": "student_model.layer2", "in_channels": 32, "out_channels": 32, "stride": 2}}, ValueError,
         r"unknown key\(s\) \['stride'\]"),
        ({"hint": {"path": "student_model.layer2", "io": "out", "in_channels": 32, "out_channels": 32}}, ValueError,
         r"io must be 'input' or 'output'"),
        ({"a.b": {"path": "student_model.layer2", "in_channels": 32, "out_channels": 32}}, ValueError,
         r"without '\.'"),
        ({"hint": "student_model.layer2"}, TypeError, r"adapters.hint must be a mapping"),
        (["hint"], TypeError, r"adapters must be a mapping"),
    ],
)
def test_student_wrapper_config_errors(adapters, error, match):
    with pytest.raises(error, match=match):
        GeoKTStudentWrapper(student_model=resnet8(), adapters=adapters)


def test_student_wrapper_rejects_unknown_kwargs_and_missing_student():
    with pytest.raises(TypeError, match=r"unknown keyword argument\(s\) \['adapter'\]"):
        GeoKTStudentWrapper(student_model=resnet8(), adapter={})
    with pytest.raises(TypeError, match=r"student_model must be an nn.Module"):
        GeoKTStudentWrapper(adapters={})


# ---- GeoKTTeacherInputWrapper ----------------------------------------------------------------------------------


def test_teacher_input_wrapper_adapts_then_runs_the_teacher_and_hooks_work():
    config = {"auxiliary_model_wrapper": {"key": "GeoKTTeacherInputWrapper", "kwargs": {
        "input_adapter": {"in_channels": 1, "out_channels": 3, "size": 32, "in_mean": 0.286, "in_std": 0.353,
                          "out_mean": [0.49, 0.48, 0.45], "out_std": [0.25, 0.24, 0.26]}}}}
    wrapper = build_auxiliary_model_wrapper(config, teacher_model=resnet8(), device=torch.device("cpu"),
                                            device_ids=None, distributed=False).eval()
    x = torch.randn(2, 1, 28, 28)
    io = _hooked_forward(wrapper, ["teacher_model.layer2"], x)
    torch.testing.assert_close(io["out"], wrapper.teacher_model(wrapper.input_adapter(x)))
    assert io["teacher_model.layer2"]["output"].shape == (2, 32, 16, 16)
    with pytest.raises(TypeError, match=r"input_adapter must be a mapping"):
        GeoKTTeacherInputWrapper(teacher_model=resnet8(), input_adapter=[1, 3])


# ---- docs/adapters.md: every wrapper snippet builds and runs on real CIFAR ResNets -------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "adapters.md"
_FENCE = re.compile(r"^```yaml\n(.*?)^```", re.M | re.S)
WRAPPER_SNIPPETS = [m.group(1) for m in _FENCE.finditer(DOC.read_text()) if "auxiliary_model_wrapper" in m.group(1)]


def test_adapters_doc_has_wrapper_snippets_for_both_roles():
    text = "".join(WRAPPER_SNIPPETS)
    assert len(WRAPPER_SNIPPETS) >= 4
    assert "GeoKTStudentWrapper" in text and "GeoKTTeacherInputWrapper" in text


@pytest.mark.parametrize("snippet", WRAPPER_SNIPPETS, ids=[f"block{i}" for i in range(len(WRAPPER_SNIPPETS))])
def test_adapters_doc_snippet_builds_and_every_hook_fires(snippet):
    import geokt_plugin  # noqa: F401  (registers the keys)

    config = yaml.safe_load(snippet)
    built = 0
    for role, section in config["train"].items():
        if not isinstance(section, dict) or "auxiliary_model_wrapper" not in section:
            continue
        torch.manual_seed(0)
        if role == "teacher":
            base = {"teacher_model": get_model("resnet20", num_classes=10, pretrained=False)}
            channels = section["auxiliary_model_wrapper"]["kwargs"]["input_adapter"]["in_channels"]
        else:
            base = {"student_model": resnet8()}
            channels = 3
        wrapper = build_auxiliary_model_wrapper(section, **base, device=torch.device("cpu"), device_ids=None,
                                                distributed=False)
        paths = section["forward_hook"]["output"]
        io = _hooked_forward(wrapper, paths, torch.randn(2, channels, 32, 32))
        assert all(io[p]["output"].dim() == 4 for p in paths), paths
        built += 1
    assert built >= 1
