"""Duplicate mapping keys in a composed YAML document.

PyYAML keeps the last of two equal keys without a word: a duplicated ``num_epochs`` trains the second value, two
``sub_terms`` of one name drop a loss term. A key given explicitly next to a merge key (``<<: *base``) legitimately
overrides the merged one and is not a duplicate; two explicit equal keys are.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["duplicate_keys"]

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NOT_A_KEY = object()  # a key that cannot be compared (a mapping or sequence used as a key)


def duplicate_keys(root: yaml.Node) -> list[str]:
    """One problem per duplicated key of any mapping under ``root``: its YAML path, the key and both lines."""
    problems: list[str] = []
    constructor = yaml.constructor.SafeConstructor()
    visited: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in visited:  # an alias: its anchor was checked where it is defined
            continue
        visited.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((item, f"{path}[{i}]") for i, item in reversed(list(enumerate(node.value))))
        elif isinstance(node, yaml.MappingNode):
            children = _check_mapping(node, path, constructor, problems)
            stack.extend(reversed(children))
    return problems


def _check_mapping(node: yaml.MappingNode, path: str, constructor: yaml.constructor.SafeConstructor,
                   problems: list[str]) -> list[tuple[yaml.Node, str]]:
    """Record the duplicates among ``node``'s explicit keys; return its values with their YAML paths."""
    first_line: dict[Any, int] = {}
    children = []
    for key_node, value_node in node.value:
        if key_node.tag == _MERGE_TAG:
            children.append((value_node, path))
            continue
        key = _key(key_node, constructor)
        child = f"{path}.{key_node.value}" if path else str(key_node.value)
        children.append((value_node, child))
        if key is _NOT_A_KEY:
            continue
        line = key_node.start_mark.line + 1
        if key in first_line:
            problems.append(
                f"{child}: duplicate key {key!r} at lines {first_line[key]} and {line}; YAML keeps only the last "
                f"one, so the value at line {first_line[key]} would be silently ignored. Keep one of them (to "
                "override a merged mapping, use `<<:` and give the key once)."
            )
        else:
            first_line[key] = line
    return children


def _key(node: yaml.Node, constructor: yaml.constructor.SafeConstructor) -> Any:
    """The key as PyYAML's dict would hold it (``1`` and ``0x1`` are one key), or ``_NOT_A_KEY``."""
    if not isinstance(node, yaml.ScalarNode):
        return _NOT_A_KEY
    if not node.tag.startswith("tag:yaml.org,2002:"):
        return (node.tag, node.value)  # a custom tag: compare as written
    try:
        key = constructor.construct_object(node)
        hash(key)
    except Exception:  # noqa: BLE001  (an unusual scalar: compare as written)
        return (node.tag, node.value)
    return key
