"""The one config loader: the trust rule, torchdistill's YAML tags, the config's ``dependencies``.

Every failure becomes a :class:`ConfigError` naming the file; a YAML tag that fails while the config loads
(``!import_call`` datasets are built here) is traced to its line and, under ``datasets``, to the dataset id.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torchvision  # noqa: F401  (torchdistill.datasets needs sys.modules['torchvision.datasets'])
import yaml

from .errors import ConfigError, short
from .trust import check_config_trust
from .yaml_keys import duplicate_keys

__all__ = ["load_config", "not_a_mapping"]

# The constructors torchdistill's ``load_yaml_file`` installs (it adds them to the global ``FullLoader``).
_TAGS = {
    "!join": "yaml_join", "!pathjoin": "yaml_pathjoin", "!expanduser": "yaml_expanduser",
    "!abspath": "yaml_abspath", "!import_get": "yaml_import_get", "!import_call": "yaml_import_call",
    "!import_call_method": "yaml_import_call_method", "!call_method": "yaml_call_method",
    "!getattr": "yaml_getattr", "!setattr": "yaml_setattr",
    "!access_by_index_or_key": "yaml_access_by_index_or_key",
}


def load_config(path: str | os.PathLike, *, trust_config: bool = False) -> dict:
    """Load a torchdistill YAML config and import its ``dependencies`` (and geokt_plugin, for the GeoKT keys).

    Args:
        path: the YAML file.
        trust_config: skip the world-writable rule of :func:`check_config_trust`.

    Returns:
        The loaded mapping (datasets written with ``!import_call`` are already built objects).

    Raises:
        ConfigError: missing or unreadable file, YAML syntax error, a duplicate mapping key, a tag that failed
            (with the file, the line and, under ``datasets``, the dataset id), a document that is not a mapping, or a
            dependency that does not import.
    """
    source = str(path)
    file = Path(path)
    if not file.is_file():
        hint = " (it is a directory)" if file.is_dir() else ""
        raise ConfigError(f"{source}: config file not found{hint}. Check the --config path.")
    check_config_trust(file, trust_config=trust_config)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the config ({type(exc).__name__}: {exc}).") from exc
    config = _parse(text, source)
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: {not_a_mapping(config)}")
    _import_dependencies(config, source)
    return dict(config)


def not_a_mapping(config: Any) -> str:
    """The problem of a config document that is not a mapping."""
    return (
        f"the config must be a YAML mapping with the sections 'models', 'train' and 'datasets', got "
        f"{type(config).__name__} {short(config)}. Start from a config under configs/."
    )


def _import_dependencies(config: Mapping, source: str) -> None:
    """What torchdistill's scripts do with ``dependencies``; geokt_plugin is imported even when it is not listed."""
    from torchdistill.common.main_util import import_dependencies

    try:
        import_dependencies(config.get("dependencies"))
    except Exception as exc:  # noqa: BLE001  (any import failure is a config problem)
        raise ConfigError(f"{source}: dependencies: could not import {config.get('dependencies')!r}: {exc}") from exc
    import geokt_plugin  # noqa: F401  (registers the GeoKT keys)


class _ConstructionFailed(Exception):
    """Carries the innermost YAML node whose construction raised."""

    def __init__(self, node: yaml.Node, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.node = node
        self.exc = exc


class _TracingLoader(yaml.FullLoader):
    """``FullLoader`` (with torchdistill's tags) that remembers which node failed to construct."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except _ConstructionFailed:
            raise
        except Exception as exc:  # noqa: BLE001  (re-raised with the node attached)
            raise _ConstructionFailed(node, exc) from exc


def _register_torchdistill_tags() -> None:
    from torchdistill.common import yaml_util

    for tag, name in _TAGS.items():
        yaml.add_constructor(tag, getattr(yaml_util, name), Loader=yaml.FullLoader)


def _parse(text: str, source: str) -> Any:
    """The YAML document in ``text``, its tags run; failures name ``source``, the line and the dataset id.

    Duplicate mapping keys are refused first (PyYAML would keep the last one silently).
    """
    _register_torchdistill_tags()
    loader = _TracingLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        duplicates = duplicate_keys(node)
        if duplicates:  # before any tag runs: no dataset is built for a config that cannot be trusted as written
            raise ConfigError.from_problems(source, duplicates)
        return loader.construct_document(node)
    except _ConstructionFailed as failed:
        line = failed.node.start_mark.line
        dataset_id = _dataset_id_at(text, line)
        exc = failed.exc
        cause = f"{type(exc).__name__}: {exc}"
        if dataset_id is not None:
            raise ConfigError(
                f"{source}: datasets.{dataset_id} (line {line + 1}) could not be built: {cause}. Fix the dataset's "
                "root/kwargs, or install the data it needs."
            ) from exc
        raise ConfigError(
            f"{source}: line {line + 1}: the YAML tag {failed.node.tag} failed: {cause}. Fix that entry."
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: {where}invalid YAML ({problem}). Fix the syntax there.") from exc
    finally:
        loader.dispose()


def _dataset_id_at(text: str, line: int) -> str | None:
    """The top-level ``datasets`` entry whose YAML block contains 0-based ``line``, if any."""
    try:
        root = yaml.compose(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    for key_node, value_node in root.value:
        if key_node.value == "datasets" and isinstance(value_node, yaml.MappingNode):
            for ds_key, ds_value in value_node.value:
                if ds_key.start_mark.line <= line <= ds_value.end_mark.line:
                    return str(ds_key.value)
    return None
