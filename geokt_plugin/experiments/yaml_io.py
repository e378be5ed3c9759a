"""YAML for generated torchdistill configs: tagged nodes, named anchors, torchdistill's quoting habit.

:class:`Tagged` stands for a torchdistill tag (``!import_call``, ``!import_get``) on a mapping; :func:`dump_config`
writes a document with only the anchors it is asked for (named, so ``*eval_loader`` reads as what it is);
:func:`load_config_document` reads a file back into the same structure without importing or calling anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Tagged", "dump_config", "load_config_document"]


@dataclass
class Tagged:
    """A mapping under a YAML tag, e.g. ``Tagged('!import_get', {'key': 'torch.utils.data.RandomSampler'})``."""

    tag: str
    value: dict[str, Any]


class _Dumper(yaml.SafeDumper):
    """Anchors only the objects in ``anchor_names`` (``id -> name``); string values single-quoted, keys plain;
    collections of scalars in flow style (``{batch_size: 32, num_workers: 0}``), others in block style."""

    anchor_names: dict[int, str] = {}  # not ``anchors``: the Serializer owns that attribute

    def ignore_aliases(self, data: Any) -> bool:
        return id(data) not in self.anchor_names

    def generate_anchor(self, node: yaml.Node) -> str:
        for key, name in self.anchor_names.items():
            if self.represented_objects.get(key) is node:
                return name
        raise ValueError(f"dump_config: node {node.tag} is repeated but has no anchor name")

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # block sequences indented under their key, as torchdistill writes them

    def represent_mapping(self, tag: str, mapping: Any, flow_style: bool | None = None) -> yaml.MappingNode:
        node = super().represent_mapping(tag, mapping, flow_style)
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                key.style = None
        node.flow_style = all(isinstance(v, yaml.ScalarNode) for _, v in node.value)
        return node

    def represent_sequence(self, tag: str, sequence: Any, flow_style: bool | None = None) -> yaml.SequenceNode:
        node = super().represent_sequence(tag, sequence, flow_style)
        node.flow_style = all(isinstance(v, yaml.ScalarNode) for v in node.value)
        return node


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="'")


def _represent_tagged(dumper: yaml.SafeDumper, data: Tagged) -> yaml.MappingNode:
    return dumper.represent_mapping(data.tag, data.value)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(Tagged, _represent_tagged)


def dump_config(document: dict[str, Any], *, anchors: dict[str, object] | None = None,
                header: tuple[str, ...] | list[str] = ()) -> str:
    """YAML text of ``document``: ``header`` as ``#`` comment lines, a blank line between top-level sections.

    Args:
        document: the config (tuples are written as lists).
        anchors: ``name -> object`` for objects that appear more than once and should be written once
            (``&name`` then ``*name``); any other repeated object is written out again.
        header: comment lines put first.
    """
    names = {id(obj): name for name, obj in (anchors or {}).items()}
    dumper = type("_ConfigDumper", (_Dumper,), {"anchor_names": names})
    body = yaml.dump(document, Dumper=dumper, sort_keys=False, default_flow_style=None, width=100,
                     allow_unicode=True)
    lines = body.splitlines()
    spaced = [line if i == 0 or line.startswith(" ") else "\n" + line for i, line in enumerate(lines)]
    return "".join(f"# {h}\n" for h in header) + "\n".join(spaced) + "\n"


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads any ``!tag`` on a mapping as :class:`Tagged` (nothing is imported or called)."""


def _construct_tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Tagged:
    if not isinstance(node, yaml.MappingNode):
        raise ValueError(f"load_config_document: tag !{suffix} at {node.start_mark} is not on a mapping")
    return Tagged(f"!{suffix}", loader.construct_mapping(node, deep=True))


_Loader.add_multi_constructor("!", _construct_tagged)


def load_config_document(path: str | Path) -> dict[str, Any]:
    """A config file as plain data, its torchdistill tags as :class:`Tagged` (the inverse of :func:`dump_config`)."""
    return yaml.load(Path(path).read_text(), Loader=_Loader)
