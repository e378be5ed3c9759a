"""The registered modules: equal to their functions, readable repr, errors at build time and at call time."""

from __future__ import annotations

import re

import pytest
import torch

import geokt_plugin
from geokt_plugin import GeoKTDistanceLoss, GeoKTNeighborKLLoss, GeoKTNeighborRankLoss
from geokt_plugin.losses import LOSS_SPECS
from geokt_plugin.testing import pair, randn

LOSS_NAMES = tuple(LOSS_SPECS)
LOSS_FUNCTIONS = {name: spec.function for name, spec in LOSS_SPECS.items()}
CLASSES = {name: spec.module for name, spec in LOSS_SPECS.items()}
PATHS = {"student_module_path": "layer2", "teacher_module_path": "layer3"}


def io_dicts(student: torch.Tensor, teacher: torch.Tensor) -> tuple[dict, dict]:
    """torchdistill-shaped io_dicts with the maps at the PATHS above (plus the model output at '.')."""
    logits = randn(student.shape[0], 10, seed=99)
    return (
        {".": {"output": logits}, "layer2": {"output": student}},
        {".": {"output": logits}, "layer3": {"output": teacher}},
    )


# ----------------------------------------------------------------------------------------------------------------
# Module == function
# ----------------------------------------------------------------------------------------------------------------

_KNOB_VARIANTS = {
    "distance": [{}, {"neighbors": 3, "scope": "batch"}, {"neighbors": None, "reduction": "none"}],
    "kl": [{}, {"bandwidth": 1.5, "scope": "batch"}, {"bandwidth": 0.25, "reduction": "sum"}],
    "rank": [{}, {"neighbors": 2, "temperature": 0.5, "scope": "batch"}, {"temperature": 0.05, "reduction": "none"}],
}
_COMMON_VARIANTS = [{}, {"scope": "batch"}, {"reduction": "none"}]  # for a loss not listed above


@pytest.mark.parametrize("variant", range(3))
def test_module_equals_function(loss_name, variant):
    knobs = _KNOB_VARIANTS.get(loss_name, _COMMON_VARIANTS)[variant]
    s, t = pair(2, 3, 5, 4, 4, 4, 6, seed=40)
    module = CLASSES[loss_name](**PATHS, **knobs)
    student_io, teacher_io = io_dicts(s, t)
    torch.testing.assert_close(module(student_io, teacher_io, None), LOSS_FUNCTIONS[loss_name](s, t, **knobs),
                               rtol=0, atol=0)


def test_module_equals_function_with_sampling(loss_name):
    s, t = pair(2, 3, 6, 6, 4, 6, 6, seed=41)
    module = CLASSES[loss_name](**PATHS, max_points=10, generator=torch.Generator().manual_seed(3))
    expected = LOSS_FUNCTIONS[loss_name](s, t, max_points=10, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(module(*io_dicts(s, t)), expected, rtol=0, atol=0)


def test_module_reads_custom_io_and_ignores_targets(loss_name):
    s, t = pair(2, 3, 4, 4, 2, 4, 4, seed=42)
    module = CLASSES[loss_name]("blk", "blk", student_module_io="input", teacher_module_io="input")
    value = module({"blk": {"input": s}}, {"blk": {"input": t}}, torch.tensor([1, 2]), "extra", flag=True)
    torch.testing.assert_close(value, LOSS_FUNCTIONS[loss_name](s, t), rtol=0, atol=0)


def test_module_has_no_parameters_and_teacher_gets_no_gradient(loss_name):
    module = CLASSES[loss_name](**PATHS)
    assert list(module.parameters()) == [] and list(module.buffers()) == []
    s, t = pair(2, 3, 4, 4, 2, 4, 4, seed=43)
    s.requires_grad_(True)
    t.requires_grad_(True)
    module(*io_dicts(s, t)).backward()
    assert t.grad is None and s.grad is not None


def test_module_is_exported_and_named_by_its_registry_key(loss_name):
    cls = CLASSES[loss_name]
    assert cls.__name__ == LOSS_SPECS[loss_name].key
    assert getattr(geokt_plugin, cls.__name__) is cls


# ----------------------------------------------------------------------------------------------------------------
# extra_repr
# ----------------------------------------------------------------------------------------------------------------


def test_module_repr_lists_every_knob():
    assert repr(GeoKTDistanceLoss("layer2", "layer3")) == (
        "GeoKTDistanceLoss(student='layer2:output', teacher='layer3:output', neighbors=8, max_points=None, "
        "scope='image', reduction='mean', chunk_size=None)"
    )
    assert repr(GeoKTNeighborKLLoss("a.b", "c", student_module_io="input", bandwidth=2, scope="batch")) == (
        "GeoKTNeighborKLLoss(student='a.b:input', teacher='c:output', bandwidth=2.0, max_points=None, "
        "scope='batch', reduction='mean', chunk_size=None)"
    )
    rank = GeoKTNeighborRankLoss("layer1", "layer1", max_points=256, reduction="sum", neighbors=4, chunk_size=64)
    assert repr(rank) == (
        "GeoKTNeighborRankLoss(student='layer1:output', teacher='layer1:output', neighbors=4, temperature=0.1, "
        "max_points=256, scope='image', reduction='sum', chunk_size=64)"
    )
    assert "neighbors=None" in repr(GeoKTDistanceLoss("a", "b", neighbors=None))


# ----------------------------------------------------------------------------------------------------------------
# Constructor validation (errors at config-build time)
# ----------------------------------------------------------------------------------------------------------------


def _constructor_errors():
    for name, cls in CLASSES.items():
        owner = cls.__name__
        yield (
            name, {"scope": "global"}, ValueError,
            f"Unknown scope 'global' for {owner}; choose one of ['image', 'batch'].",
        )
        yield (
            name, {"reduction": "avg"}, ValueError,
            f"Unknown reduction 'avg' for {owner}; choose one of ['mean', 'sum', 'none'].",
        )
        yield (
            name, {"max_points": 1}, ValueError,
            f"{owner}: max_points must be None or an integer >= 2, got 1. A point set needs at least 2 local features.",
        )
        yield (
            name, {"max_points": "256"}, TypeError,
            f"{owner}: max_points must be None or an integer >= 2, got '256' (str).",
        )
        yield (
            name, {"generator": 1234}, TypeError, f"{owner}: generator must be None or a torch.Generator, got int."
        )
        yield (
            name, {"student_module_path": None}, ValueError,
            f"{owner}: student_module_path is required (e.g. student_module_path: 'layer2'); add it under the loss's "
            "kwargs in the YAML.",
        )
        yield (
            name, {"teacher_module_path": None}, ValueError,
            f"{owner}: teacher_module_path is required (e.g. teacher_module_path: 'layer2'); add it under the loss's "
            "kwargs in the YAML.",
        )
        yield (
            name, {"student_module_path": ""}, TypeError,
            f"{owner}: student_module_path must be a non-empty string such as 'layer2', got ''.",
        )
        yield (
            name, {"teacher_module_io": 0}, TypeError,
            f"{owner}: teacher_module_io must be a non-empty string such as 'output', got 0.",
        )
        typo = {"distance": "neighbours", "kl": "bandwith", "rank": "temprature"}.get(name, "neighbours")
        yield (
            name, {typo: 1}, TypeError,
            f"{owner}: unknown argument(s) ['{typo}']. Check the spelling under the loss's kwargs in the YAML "
            "(see docs/losses.md for the accepted knobs).",
        )
        if name in ("distance", "rank"):
            yield (
                name, {"neighbors": 0}, ValueError,
                f"{owner}: neighbors must be >= 1, got 0. Use a positive neighbourhood size.",
            )
        if name == "rank":
            must_be = f"{owner}: temperature must be a finite number > 0"
            yield (
                name, {"neighbors": None}, TypeError,
                f"{owner}: neighbors must be an integer >= 1, got None (NoneType).",
            )
            yield name, {"temperature": 0}, ValueError, f"{must_be}, got 0."
            yield name, {"temperature": -0.1}, ValueError, f"{must_be}, got -0.1."
        if name == "distance":
            yield (
                name, {"neighbors": 1.0}, TypeError,
                f"{owner}: neighbors must be an integer >= 1 or None, got 1.0 (float).",
            )
        if name == "kl":
            yield name, {"bandwidth": 0.0}, ValueError, f"{owner}: bandwidth must be a finite number > 0, got 0.0."
            yield name, {"bandwidth": -2}, ValueError, f"{owner}: bandwidth must be a finite number > 0, got -2."


_CONSTRUCTOR_CASES = list(_constructor_errors())


@pytest.mark.parametrize(
    "name, kwargs, exc, message", _CONSTRUCTOR_CASES, ids=[f"{c[0]}-{sorted(c[1])[0]}-{c[1][sorted(c[1])[0]]!r}"
                                                          for c in _CONSTRUCTOR_CASES]
)
def test_module_constructor_errors(name, kwargs, exc, message):
    with pytest.raises(exc, match=re.escape(message) + "$"):
        CLASSES[name](**{**PATHS, **kwargs})


def test_module_builds_from_the_paths_alone(loss_name):
    # Every knob has a default that constructs: the paths alone build a working loss.
    module = CLASSES[loss_name](student_module_path="layer2", teacher_module_path="layer3")
    assert torch.isfinite(module(*io_dicts(*pair(2, 3, 4, 4, 2, 4, 4))))


# ----------------------------------------------------------------------------------------------------------------
# Call-time errors (what a wrong hook or YAML path produces)
# ----------------------------------------------------------------------------------------------------------------


def test_module_missing_io_dict_entry_lists_hooked_keys_and_the_yaml_fix(loss_name):
    cls = CLASSES[loss_name]
    module = cls(student_module_path="layer3", teacher_module_path="layer3")
    s, t = pair(2, 3, 4, 4, 2, 4, 4)
    student_io = {".": {"output": s}, "layer1": {"output": s}, "layer2": {"output": s}}
    message = (
        f"{cls.__name__}: student io_dict has no entry 'layer3' (hooked: ['.', 'layer1', 'layer2']). Add 'layer3' to "
        "train.student.forward_hook.output in the YAML, or fix student_module_path."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        module(student_io, {"layer3": {"output": t}})
    message = (
        f"{cls.__name__}: teacher io_dict has no entry 'layer3' (hooked: []). Add 'layer3' to "
        "train.teacher.forward_hook.output in the YAML, or fix teacher_module_path."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        module({"layer3": {"output": s}}, {})


def test_module_missing_output_entry(loss_name):
    cls = CLASSES[loss_name]
    module = cls(**PATHS)
    s, t = pair(2, 3, 4, 4, 2, 4, 4)
    message = (
        f"{cls.__name__}: student io_dict['layer2'] has no 'output' (has: ['input']). Add 'layer2' to "
        "train.student.forward_hook.output in the YAML, or set student_module_io to one of ['input']."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        module({"layer2": {"input": s}}, {"layer3": {"output": t}})


def test_module_non_tensor_entry(loss_name):
    cls = CLASSES[loss_name]
    module = cls(**PATHS)
    s, t = pair(2, 3, 4, 4, 2, 4, 4)
    message = (
        f"{cls.__name__}: teacher io_dict['layer3']['output'] is a tuple, not a tensor. Hook a module whose output "
        "is a single feature map (B, C, H, W)."
    )
    with pytest.raises(TypeError, match=re.escape(message) + "$"):
        module({"layer2": {"output": s}}, {"layer3": {"output": (t, t)}})


def test_module_io_dict_entry_that_is_not_a_mapping(loss_name):
    cls = CLASSES[loss_name]
    module = cls(**PATHS)
    s, t = pair(2, 3, 4, 4, 2, 4, 4)
    message = (
        f"{cls.__name__}: student io_dict['layer2'] is a Tensor, not a mapping of 'input'/'output' to tensors. "
        "Pass the io_dict torchdistill's forward hooks fill (io_dict[path][io] is the tensor)."
    )
    with pytest.raises(TypeError, match=re.escape(message) + "$"):
        module({"layer2": s}, {"layer3": {"output": t}})
    message = f"{cls.__name__}: the teacher io_dict must be a mapping of hooked module paths, got list."
    with pytest.raises(TypeError, match=re.escape(message) + "$"):
        module({"layer2": {"output": s}}, [t])


def test_module_two_dimensional_hooked_tensor_names_path_and_shape(loss_name):
    cls = CLASSES[loss_name]
    module = cls(student_module_path="fc", teacher_module_path="layer3")
    s, t = randn(2, 10), randn(2, 3, 4, 4)
    message = (
        f"{cls.__name__}: student layer 'fc' (output) has shape (2, 10); a 4-D feature map (B, C, H, W) is required. "
        "Set student_module_path to a convolutional stage (e.g. 'layer2'), not a pooled or linear layer."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        module({"fc": {"output": s}}, {"layer3": {"output": t}})


def test_module_batch_mismatch_names_the_layers(loss_name):
    cls = CLASSES[loss_name]
    module = cls(**PATHS)
    s, t = randn(2, 3, 4, 4), randn(4, 3, 4, 4)
    function = LOSS_FUNCTIONS[loss_name].__name__
    message = (
        f"{cls.__name__} (student 'layer2', teacher 'layer3'): {function}: batch sizes differ, student (2, 3, 4, 4) "
        "vs teacher (4, 3, 4, 4). Both networks must see the same batch."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        module(*io_dicts(s, t))


def test_module_one_by_one_maps_name_the_layers(loss_name):
    cls = CLASSES[loss_name]
    module = cls(student_module_path="layer4", teacher_module_path="avgpool")
    s, t = randn(2, 8, 1, 1), randn(2, 16, 1, 1)
    function = LOSS_FUNCTIONS[loss_name].__name__
    message = (
        f"{cls.__name__} (student 'layer4', teacher 'avgpool'): {function}: a point set needs at least 2 local "
        "features, but student (2, 8, 1, 1) and teacher (2, 16, 1, 1) align to 1x1 positions (scope='image', "
        "batch 2). Hook an earlier layer with a larger feature map, or use scope 'batch'."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        module({"layer4": {"output": s}}, {"avgpool": {"output": t}})


def test_module_integer_feature_map_names_the_layers(loss_name):
    cls = CLASSES[loss_name]
    module = cls(**PATHS)
    s, t = torch.ones(2, 3, 4, 4, dtype=torch.int32), randn(2, 3, 4, 4, dtype=torch.float32)
    function = LOSS_FUNCTIONS[loss_name].__name__
    message = (
        f"{cls.__name__} (student 'layer2', teacher 'layer3'): {function}: feature maps must be floating point, got "
        "student torch.int32 and teacher torch.float32."
    )
    with pytest.raises(TypeError, match=re.escape(message) + "$"):
        module(*io_dicts(s, t))


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_module_low_precision_hooks_are_upcast(name):
    # Under Accelerate bf16, forward-hook captures stay bf16; the loss computes in fp32 (docs/losses.md, Precision).
    s, t = pair(2, 3, 4, 4, 2, 4, 4, dtype=torch.bfloat16)
    module = CLASSES[name](**PATHS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = module(*io_dicts(s, t))
    assert value.dtype == torch.float32
    torch.testing.assert_close(value, LOSS_FUNCTIONS[name](s.float(), t.float()), rtol=1e-6, atol=1e-7)
