"""The LossSpec table: one row per registered loss, and every default written once, in the loss function."""

from __future__ import annotations

import inspect
import re

import pytest
import torch

from geokt_plugin.losses import LOSS_SPECS, LossSpec, loss_spec, register_loss_spec
from geokt_plugin.losses.base import COMMON_KNOBS, function_knobs
from geokt_plugin.registry import registered_class, registered_keys

SPECS = list(LOSS_SPECS.values())
IDS = [spec.name for spec in SPECS]


def test_loss_spec_table_covers_every_registered_loss():
    assert {spec.key for spec in SPECS} == set(registered_keys("mid_level_loss"))
    assert [spec.name for spec in SPECS] == list(LOSS_SPECS)
    assert list(LOSS_SPECS)[:3] == ["distance", "kl", "rank"]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_loss_spec_row_names_its_function_module_and_key(spec):
    assert registered_class("mid_level_loss", spec.key) is spec.module
    assert spec.module.function is spec.function
    assert spec.owner == spec.function.__name__
    assert loss_spec(spec.name) is spec


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_loss_spec_module_defaults_are_the_function_defaults(spec):
    # The module's signature and its stored knobs come from the function: one source of truth.
    params = inspect.signature(spec.module).parameters
    for name, default in function_knobs(spec.function).items():
        assert params[name].default == default, name
    module = spec.module("layer2", "layer2")
    assert {name: getattr(module, name) for name in spec.knobs} == spec.knobs
    assert {name: getattr(module, name) for name in COMMON_KNOBS} == {
        name: function_knobs(spec.function)[name] for name in COMMON_KNOBS
    }


def test_loss_spec_common_knobs_have_the_same_defaults_in_every_loss():
    defaults = [{name: function_knobs(spec.function)[name] for name in COMMON_KNOBS} for spec in SPECS]
    assert all(d == defaults[0] for d in defaults)
    assert defaults[0] == {"max_points": None, "scope": "image", "reduction": "mean", "generator": None,
                           "chunk_size": None}


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_loss_spec_reference_takes_the_knobs_without_defaults_of_its_own(spec):
    reference = spec.reference_function()
    params = inspect.signature(reference).parameters
    for name in spec.knobs:
        assert params[name].default is inspect.Parameter.empty, f"{reference.__name__} repeats the default {name}"
    s = torch.randn(1, 2, 2, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    torch.testing.assert_close(reference(s, s * 2.0, **spec.knobs), spec.function(s, s * 2.0), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_loss_spec_module_signature_lists_every_accepted_kwarg(spec):
    # Config checks suggest spellings from inspect.signature(cls); an instance keeps nn.Module's call signature.
    names = list(inspect.signature(spec.module).parameters)
    assert names[:4] == ["student_module_path", "teacher_module_path", "student_module_io", "teacher_module_io"]
    assert names[4:] == list(function_knobs(spec.function))
    assert inspect.signature(spec.module("a", "b")) == inspect.signature(torch.nn.Identity())


def test_loss_spec_register_refuses_a_taken_name_or_key():
    distance = LOSS_SPECS["distance"]
    with pytest.raises(ValueError, match=re.escape("LossSpec 'distance' (GeoKTNeighborKLLoss) collides with")):
        register_loss_spec(LossSpec("distance", distance.function, LOSS_SPECS["kl"].module))
    with pytest.raises(ValueError, match=re.escape("LossSpec 'other' (GeoKTDistanceLoss) collides with the existing "
                                                   "row 'distance' (GeoKTDistanceLoss)")):
        register_loss_spec(LossSpec("other", distance.function, distance.module))
    assert list(LOSS_SPECS)[:3] == ["distance", "kl", "rank"] and "other" not in LOSS_SPECS
    with pytest.raises(ValueError, match=re.escape("Unknown loss 'nope'; choose one of ['distance', 'kl', 'rank'")):
        loss_spec("nope")
