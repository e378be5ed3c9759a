"""torchdistill's example script and geokt-train build the same model from every model key under configs/.

The script's ``load_model`` asks torchvision first (``get_image_classification_model``: ``torchvision.models``
by name) and torchdistill's registry second (``get_model``); :func:`geokt_plugin.models.model_factory` follows the
same order. Here both routes run on every ``models.*`` entry of every config and must give the same class and the
same state-dict keys and shapes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from test_configs import CONFIGS, _rel, load, offline_kwargs
from torchdistill.models.official import get_image_classification_model
from torchdistill.models.registry import MODEL_DICT, get_model

from geokt_plugin import registry
from geokt_plugin.model_zoo import GeoKTCifarResNet
from geokt_plugin.models import known_model_keys, model_factory, script_unreachable_keys


def script_model(model_config: dict) -> torch.nn.Module:
    model = get_image_classification_model(model_config, False)
    if model is None:
        model = get_model(model_config["key"], model_config.get("repo_or_dir"), **model_config["kwargs"])
    return model


def layout(model: torch.nn.Module) -> tuple[str, list[tuple[str, tuple[int, ...]]]]:
    return type(model).__qualname__, [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize("path", CONFIGS, ids=_rel)
def test_script_and_geokt_train_build_the_same_models(path: Path, monkeypatch: pytest.MonkeyPatch):
    config, _ = load(path, monkeypatch)
    for role, model_config in config["models"].items():
        model_config = {**model_config, "kwargs": offline_kwargs(model_config)}
        assert model_config["key"] not in script_unreachable_keys(), (role, model_config["key"])
        factory = model_factory(model_config["key"], model_config.get("repo_or_dir"))
        assert factory is not None, (role, model_config["key"])
        assert layout(script_model(model_config)) == layout(factory(**model_config["kwargs"])), role


def test_model_factory_prefers_torchvision_as_the_script_does(monkeypatch: pytest.MonkeyPatch):
    """A registry key that is also a torchvision model resolves to torchvision's in both tools."""
    monkeypatch.setitem(MODEL_DICT, "resnet18", lambda **kwargs: torch.nn.Linear(1, 1))
    assert model_factory("resnet18") is torchvision.models.resnet18
    assert model_factory("resnet18", "some/hub-repo") is torchvision.models.resnet18  # torchvision first, as the script
    assert model_factory("resnet20", "some/hub-repo") is None  # torch.hub, as get_model does with repo_or_dir
    assert model_factory("resnet20") is MODEL_DICT["resnet20"]
    assert model_factory("no_such_model") is None


def test_script_unreachable_keys_are_the_torchvision_modules():
    """torchdistill's ``resnet`` and ``densenet`` keys are torchvision modules to the script; ours is not."""
    unreachable = script_unreachable_keys()
    assert {"resnet", "densenet"} <= set(unreachable)
    assert not [k for k in unreachable if k.startswith(registry.KEY_PREFIX)]
    assert "GeoKTCifarResNet" in known_model_keys() and "resnet18" in known_model_keys()


@pytest.mark.parametrize("depth", [8, 20, 56])
def test_geokt_cifar_resnet_is_torchdistills_resnet(depth: int):
    """Same class, same parameters from the same seed: GeoKTCifarResNet only renames torchdistill's ``resnet``."""
    torch.manual_seed(0)
    ours = GeoKTCifarResNet(depth=depth, num_classes=10, pretrained=False, progress=False)
    torch.manual_seed(0)
    theirs = get_model("resnet", depth=depth, num_classes=10, pretrained=False, progress=False)
    assert layout(ours) == layout(theirs)
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert get_model("GeoKTCifarResNet", depth=depth).fc.out_features == 10


def test_geokt_cifar_resnet_rejects_a_bad_depth():
    with pytest.raises(ValueError, match=r"GeoKTCifarResNet: depth 9 is not 6n \+ 2 .*kwargs.depth"):
        GeoKTCifarResNet(depth=9)


def test_model_registration_is_guarded(monkeypatch: pytest.MonkeyPatch):
    """A model key must carry the GeoKT prefix, must not replace a registry entry nor shadow a torchvision name."""
    def resnet_probe(**kwargs):
        return torch.nn.Linear(1, 1)

    with pytest.raises(ValueError, match=r"key 'resnet_probe' \(model\) must start with 'GeoKT'"):
        registry.register_model(resnet_probe)

    def GeoKTCifarResNet(**kwargs):  # noqa: N802 (same name as ours, another function)
        return torch.nn.Linear(1, 1)

    with pytest.raises(ValueError, match=r"'GeoKTCifarResNet' is already registered as a model"):
        registry.register_model(GeoKTCifarResNet)

    def GeoKTProbeNet(**kwargs):  # noqa: N802
        return torch.nn.Linear(1, 1)

    monkeypatch.setitem(vars(torchvision.models), "GeoKTProbeNet", torchvision.models.resnet18)
    with pytest.raises(ValueError, match=r"'GeoKTProbeNet' is already registered as a model by torchvision"):
        registry.register_model(GeoKTProbeNet)
    assert "GeoKTProbeNet" not in MODEL_DICT
