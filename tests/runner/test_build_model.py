"""Models from ``models.<role>``: torchdistill registry, torchvision, did-you-mean on typos."""

from __future__ import annotations

import pytest

from geokt_plugin.config import ConfigError
from geokt_plugin.runner.build import build_model


def test_train_build_model_registry_torchvision_and_typos():
    assert type(build_model({"key": "resnet", "kwargs": {"depth": 8, "num_classes": 10, "pretrained": False,
                                                         "progress": False}}, "student_model")).__name__ \
        == "ResNet4Cifar"
    assert type(build_model({"key": "mobilenet_v3_small", "kwargs": {"num_classes": 10}}, "student_model")) \
        .__name__ == "MobileNetV3"
    with pytest.raises(ConfigError, match=r"models.student_model.key 'resnet21' .*did you mean \[.*'resnet20'"):
        build_model({"key": "resnet21"}, "student_model")


def test_build_model_bad_kwargs_and_missing_key_name_the_yaml_path():
    with pytest.raises(ConfigError, match=r"models.student_model: resnet20\(\*\*\{'nope': 1\}\) failed: .*Fix "
                                          r"models.student_model.kwargs"):
        build_model({"key": "resnet20", "kwargs": {"nope": 1}}, "student_model")
    with pytest.raises(ConfigError, match=r"models.teacher_model.key is required"):
        build_model({}, "teacher_model")
