"""Registry contract (every registered mid-level loss builds through torchdistill and trains) and the guard."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from torch import nn
from torchdistill.losses import mid_level as td_mid_level
from torchdistill.losses import registry as loss_registry
from torchdistill.losses.registry import get_mid_level_loss
from torchdistill.models import registry as model_registry

import geokt_plugin
from geokt_plugin import registry
from geokt_plugin.registry import (
    register_adaptation_module,
    register_auxiliary_model_wrapper,
    register_mid_level_loss,
    registered_keys,
)
from geokt_plugin.testing import assert_module_contract

# ----------------------------------------------------------------------------------------------------------------
# Contract, over every registered mid-level loss
# ----------------------------------------------------------------------------------------------------------------


def test_registry_lists_the_three_losses():
    assert {"GeoKTDistanceLoss", "GeoKTNeighborKLLoss", "GeoKTNeighborRankLoss"} <= set(
        registered_keys("mid_level_loss")
    )
    assert all(key.startswith("GeoKT") for key in registered_keys())
    assert set(registered_keys("mid_level_loss")) <= set(registered_keys())


@pytest.mark.parametrize("key", registered_keys("mid_level_loss"))
def test_registry_contract_mid_level_loss(key):
    # Built from minimal kwargs through torchdistill; no parameters, finite scalar, student gradient, repr.
    assert_module_contract(key)


@pytest.mark.parametrize("key", registered_keys("mid_level_loss"))
def test_registry_contract_empty_kwargs_names_the_missing_path(key):
    # torchdistill requires `kwargs:`; with it present but empty our class explains what is missing.
    with pytest.raises(ValueError, match=re.escape(f"{key}: student_module_path is required")):
        get_mid_level_loss({"key": key, "kwargs": {}})


# ----------------------------------------------------------------------------------------------------------------
# The guard
# ----------------------------------------------------------------------------------------------------------------


def test_registry_refuses_a_builtin_name():
    builtin = loss_registry.MIDDLE_LEVEL_LOSS_DICT["ATLoss"]

    class ATLoss(nn.Module):
        pass

    message = (
        "geokt_plugin registry: key 'ATLoss' (mid_level_loss) must start with 'GeoKT' so it cannot shadow a "
        "torchdistill built-in. Rename the class to GeoKTATLoss."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        register_mid_level_loss(ATLoss)
    assert loss_registry.MIDDLE_LEVEL_LOSS_DICT["ATLoss"] is builtin is td_mid_level.ATLoss
    assert "ATLoss" not in registered_keys()


@pytest.mark.parametrize(
    "register, kind",
    [(register_mid_level_loss, "mid_level_loss"), (register_auxiliary_model_wrapper, "auxiliary_model_wrapper"),
     (register_adaptation_module, "adaptation_module")],
)
def test_registry_refuses_a_name_without_the_prefix(register, kind):
    class MyFancyThing(nn.Module):
        pass

    message = (
        f"geokt_plugin registry: key 'MyFancyThing' ({kind}) must start with 'GeoKT' so it cannot shadow a "
        "torchdistill built-in. Rename the class to GeoKTMyFancyThing."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        register(MyFancyThing)
    assert "MyFancyThing" not in loss_registry.MIDDLE_LEVEL_LOSS_DICT
    assert "MyFancyThing" not in model_registry.AUXILIARY_MODEL_WRAPPER_DICT
    assert "MyFancyThing" not in model_registry.ADAPTATION_MODULE_DICT


def test_registry_refuses_a_geokt_name_taken_by_another_class():
    original = loss_registry.MIDDLE_LEVEL_LOSS_DICT["GeoKTDistanceLoss"]

    class GeoKTDistanceLoss(nn.Module):
        pass

    message = (
        "geokt_plugin registry: key 'GeoKTDistanceLoss' is already registered as a mid_level_loss by "
        "geokt_plugin.losses.distance.GeoKTDistanceLoss; refusing to replace it with "
        f"{GeoKTDistanceLoss.__module__}.{GeoKTDistanceLoss.__qualname__}. Rename one of the classes."
    )
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        register_mid_level_loss(GeoKTDistanceLoss)
    assert loss_registry.MIDDLE_LEVEL_LOSS_DICT["GeoKTDistanceLoss"] is original is geokt_plugin.GeoKTDistanceLoss
    assert registry.registered_class("mid_level_loss", "GeoKTDistanceLoss") is original


def test_registry_refuses_a_geokt_name_someone_else_put_in_a_torchdistill_dict(monkeypatch):
    # A foreign low-level loss under a GeoKT name also blocks the key: get_mid_level_loss falls back to it.
    class Foreign(nn.Module):
        pass

    monkeypatch.setitem(loss_registry.LOW_LEVEL_LOSS_DICT, "GeoKTProbeLoss", Foreign)

    class GeoKTProbeLoss(nn.Module):
        pass

    taken = "key 'GeoKTProbeLoss' is already registered as a mid_level_loss by"
    with pytest.raises(ValueError, match=re.escape(taken)):
        register_mid_level_loss(GeoKTProbeLoss)
    assert "GeoKTProbeLoss" not in loss_registry.MIDDLE_LEVEL_LOSS_DICT
    assert "GeoKTProbeLoss" not in registered_keys()


def test_registry_accepts_a_new_geokt_name_and_the_same_class_twice(monkeypatch):
    # Work on copies so nothing leaks into other tests.
    monkeypatch.setattr(registry, "_OURS", {kind: dict(keys) for kind, keys in registry._OURS.items()})
    monkeypatch.setattr(
        registry, "_KINDS", {**registry._KINDS, "mid_level_loss": (registry._KINDS["mid_level_loss"][0], {})}
    )
    target = registry._KINDS["mid_level_loss"][1]

    class GeoKTProbeLoss(nn.Module):
        pass

    assert register_mid_level_loss(GeoKTProbeLoss) is GeoKTProbeLoss
    assert target["GeoKTProbeLoss"] is GeoKTProbeLoss
    assert "GeoKTProbeLoss" in registry.registered_keys("mid_level_loss")
    # Re-registering the same definition (what importlib.reload does) is not a collision.
    assert register_mid_level_loss(GeoKTProbeLoss) is GeoKTProbeLoss


def test_registry_unknown_kind_and_key_errors():
    with pytest.raises(ValueError, match=re.escape("Unknown registry kind 'loss'; choose one of ['adaptation_module', "
                                                   "'auxiliary_model_wrapper', 'mid_level_loss', 'model'].")):
        registered_keys("loss")
    with pytest.raises(ValueError, match=re.escape("No mid_level_loss 'GeoKTNope' registered by geokt_plugin; known:")):
        registry.registered_class("mid_level_loss", "GeoKTNope")


def test_registry_torchdistill_atloss_entry_is_unchanged_after_import():
    assert loss_registry.MIDDLE_LEVEL_LOSS_DICT["ATLoss"] is td_mid_level.ATLoss
    for key, value in loss_registry.MIDDLE_LEVEL_LOSS_DICT.items():
        if not key.startswith("GeoKT"):
            assert value.__module__.startswith("torchdistill."), (key, value)


_SNAPSHOT = r"""
import json, sys
import torchvision
import torchdistill.core.distillation  # imports every torchdistill module that registers built-ins
import torchdistill.losses.high_level, torchdistill.losses.mid_level
import torchdistill.models.adaptation, torchdistill.models.classification, torchdistill.models.wrapper
from torchdistill.losses import registry as L
from torchdistill.models import registry as M
dicts = {"mid": L.MIDDLE_LEVEL_LOSS_DICT, "low": L.LOW_LEVEL_LOSS_DICT, "high": L.HIGH_LEVEL_LOSS_DICT,
         "loss": L.LOSS_DICT, "wrapper": L.LOSS_WRAPPER_DICT, "aux": M.AUXILIARY_MODEL_WRAPPER_DICT,
         "adapt": M.ADAPTATION_MODULE_DICT, "model": M.MODEL_DICT}
before = {name: dict(d) for name, d in dicts.items()}
import geokt_plugin
report = {}
for name, d in dicts.items():
    changed = sorted(k for k in before[name] if d.get(k) is not before[name][k])
    added = sorted(set(d) - set(before[name]))
    report[name] = {"changed": changed, "added": added}
print(json.dumps(report))
"""


def test_registry_import_only_adds_geokt_keys_in_a_fresh_process():
    # A fresh interpreter sees torchdistill's dicts before and after `import geokt_plugin`.
    result = subprocess.run([sys.executable, "-c", _SNAPSHOT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for name, entry in report.items():
        assert entry["changed"] == [], f"import geokt_plugin replaced {name} entries {entry['changed']}"
        assert all(key.startswith("GeoKT") for key in entry["added"]), (name, entry["added"])
    assert {"GeoKTDistanceLoss", "GeoKTNeighborKLLoss", "GeoKTNeighborRankLoss"} <= set(report["mid"]["added"])


def test_registry_unregister_removes_only_what_it_registered(monkeypatch):
    monkeypatch.setattr(registry, "_OURS", {kind: dict(keys) for kind, keys in registry._OURS.items()})
    target: dict = {}
    monkeypatch.setattr(
        registry, "_KINDS", {**registry._KINDS, "mid_level_loss": (registry._KINDS["mid_level_loss"][0], target)}
    )

    class GeoKTTemporaryLoss(nn.Module):
        pass

    register_mid_level_loss(GeoKTTemporaryLoss)
    assert target["GeoKTTemporaryLoss"] is GeoKTTemporaryLoss
    registry.unregister("mid_level_loss", "GeoKTTemporaryLoss")
    assert "GeoKTTemporaryLoss" not in target and "GeoKTTemporaryLoss" not in registered_keys()
    with pytest.raises(ValueError, match=re.escape("No mid_level_loss 'GeoKTTemporaryLoss' registered")):
        registry.unregister("mid_level_loss", "GeoKTTemporaryLoss")
