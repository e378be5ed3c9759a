"""Unit tests of :func:`geokt_plugin.config.load_config`: how YAML failures are attributed, and what it imports."""

from __future__ import annotations

import re

import pytest
from test_broken_inputs import SOURCE

from geokt_plugin.config import ConfigError, load_config


def test_load_config_attributes_a_failing_tag_outside_datasets(tmp_path):
    path = tmp_path / SOURCE
    path.write_text("models:\n  student_model:\n    key: !import_get {key: 'torchvision.models.no_such_model'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert re.search(r"broken\.yaml: line 3: the YAML tag !import_get failed: AttributeError: .*no_such_model",
                     str(info.value)), str(info.value)


def test_load_config_names_an_anchored_dataset_id(tmp_path):
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


def test_load_config_refuses_a_non_mapping_document(tmp_path):
    path = tmp_path / SOURCE
    path.write_text("- models\n- train\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: the config must be a YAML mapping .* got list"):
        load_config(path)


def test_load_config_imports_the_dependencies(tmp_path):
    """The one loader imports ``dependencies`` as torchdistill's scripts do; a failure is a ConfigError."""
    path = tmp_path / SOURCE
    path.write_text("dependencies: [{name: geokt_plugn}]\nmodels: {}\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: dependencies: could not import "
                                          r"\[\{'name': 'geokt_plugn'\}\]: No module named 'geokt_plugn'"):
        load_config(path)
    path.write_text("dependencies: [{name: json}]\nmodels: {}\n")
    assert load_config(path) == {"dependencies": [{"name": "json"}], "models": {}}
