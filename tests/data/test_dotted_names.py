"""Every ``geokt_plugin.<...>`` dotted name written in a YAML under configs/ resolves the way torchdistill does it.

torchdistill's ``!import_call`` / ``!import_get`` split the key at its last dot, import the left part and take the
attribute; a package split that moved a builder would break every config naming it, so this walks them all.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_NAME = re.compile(r"\bgeokt_plugin(?:\.[A-Za-z_]\w*)+")


def _dotted_names() -> dict[str, list[str]]:
    """``{dotted name: [config files using it]}`` over every YAML under configs/."""
    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        code = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())  # comments name no builder
        for name in sorted(set(_NAME.findall(code))):
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


NAMES = _dotted_names()


def test_configs_name_the_data_builders():
    """The walk found the builders the configs use (an empty parametrisation would pass vacuously)."""
    assert {"geokt_plugin.data.fashion_mnist", "geokt_plugin.data.cifar10"} <= set(NAMES)


@pytest.mark.parametrize("name", sorted(NAMES))
def test_config_dotted_name_resolves(name: str):
    module_name, _, attribute = name.rpartition(".")
    module = importlib.import_module(module_name)
    assert hasattr(module, attribute), f"{name} (used by {NAMES[name][:3]}...) does not resolve"
    assert callable(getattr(module, attribute)), f"{name} resolves to a non-callable"
