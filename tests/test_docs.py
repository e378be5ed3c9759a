"""Docs are executable: every YAML criterion snippet builds through torchdistill and runs; every relative link resolves.

Snippet convention (stated at the top of docs/losses.md): a ```yaml block in docs/*.md that holds a ``criterion:``
mapping is a full ``sub_terms`` entry or a whole ``criterion:`` block (possibly inside a full config). Every such
mapping is built with ``get_high_level_loss`` (high-level keys such as ``WeightedSumLoss``) or
``get_mid_level_loss`` (anything else, with its ``criterion_wrapper``), then evaluated on a random io_dict that has
a tensor at every module path the snippet names. Custom tags (``!import_call`` ...) are parsed as opaque
placeholders: only the criterion is built, nothing is imported or downloaded. The YAML examples in the registered
losses' docstrings follow the same route.
"""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from conftest import randn
from torchdistill.losses import registry as loss_registry
from torchdistill.losses.registry import get_high_level_loss, get_mid_level_loss

from geokt_plugin.registry import registered_keys

ROOT = Path(__file__).resolve().parents[1]
DOC_PAGES = sorted((ROOT / "docs").glob("*.md"))
LINKED_PAGES = DOC_PAGES + [p for p in (ROOT / "README.md",) if p.exists()]

_FENCE = re.compile(r"^([ \t]*)```(\w*)[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.M | re.S)
_PATH_KEYS = re.compile(r"(^|_)(module_)?path$")
BATCH = 2


class _DocLoader(yaml.SafeLoader):
    """SafeLoader that turns any ``!tag`` into a placeholder string instead of calling anything."""


def _opaque(loader: yaml.Loader, suffix: str, node: yaml.Node) -> str:
    return f"<!{suffix}>"


_DocLoader.add_multi_constructor("!", _opaque)


# ----------------------------------------------------------------------------------------------------------------
# Collecting snippets
# ----------------------------------------------------------------------------------------------------------------


def yaml_blocks(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every fenced yaml block of a Markdown page (indented fences are dedented)."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start()) + 1, textwrap.dedent(m.group(3)))
        for m in _FENCE.finditer(text)
        if m.group(2).lower() in ("yaml", "yml")
    ]


def docstring_blocks(obj: object) -> list[str]:
    """The reStructuredText literal blocks (after a line ending in ``::``) of an object's docstring."""
    lines = (inspect.getdoc(obj) or "").splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        blocks.append(textwrap.dedent("\n".join(body)))
    return blocks


def criterion_configs(node: object):
    """Yield ``(criterion_config, criterion_wrapper_config)`` for each outermost ``criterion: {key: ...}``."""
    if isinstance(node, dict):
        criterion = node.get("criterion")
        if isinstance(criterion, dict) and "key" in criterion:
            yield criterion, node.get("criterion_wrapper")
            return  # a high-level criterion builds its own sub-terms
        for value in node.values():
            yield from criterion_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from criterion_configs(value)


def loss_keys(node: object) -> set[str]:
    """Every ``key`` of every ``criterion`` mapping, nested ones included."""
    keys: set[str] = set()
    if isinstance(node, dict):
        criterion = node.get("criterion")
        if isinstance(criterion, dict) and isinstance(criterion.get("key"), str):
            keys.add(criterion["key"])
        for value in node.values():
            keys |= loss_keys(value)
    elif isinstance(node, list):
        for value in node:
            keys |= loss_keys(value)
    return keys


def module_paths(node: object) -> set[str]:
    """Every string under a ``*module_path`` / ``path`` key: the hooked paths the snippet reads."""
    paths: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(key, str) and _PATH_KEYS.search(key) and isinstance(value, str):
                paths.add(value)
            else:
                paths |= module_paths(value)
    elif isinstance(node, list):
        for value in node:
            paths |= module_paths(value)
    return paths


def _criterion_snippets() -> list[tuple[str, str]]:
    snippets = []
    for page in DOC_PAGES:
        for line, text in yaml_blocks(page):
            if re.search(r"^\s*criterion\s*:", text, re.M):
                snippets.append((f"{page.relative_to(ROOT)}:{line}", text))
    return snippets


CRITERION_SNIPPETS = _criterion_snippets()


# ----------------------------------------------------------------------------------------------------------------
# Building and running
# ----------------------------------------------------------------------------------------------------------------


def random_io_dicts(paths: set[str], seed: int = 0) -> tuple[dict, dict, list[torch.Tensor]]:
    """Student and teacher io_dicts with a tensor at every path ('.' holds logits), plus the student leaves."""
    student, teacher, leaves = {}, {}, []
    for i, path in enumerate(sorted(paths | {"."})):
        shape = (BATCH, 10) if path == "." else (BATCH, 8, 6, 6)
        s = randn(*shape, seed=seed + 2 * i, dtype=torch.float32).requires_grad_(True)
        t = randn(*shape, seed=seed + 2 * i + 1, dtype=torch.float32)
        leaves.append(s)
        student[path] = {"input": s, "output": s}
        teacher[path] = {"input": t, "output": t}
    return student, teacher, leaves


def build_and_run(criterion: dict, wrapper: dict | None) -> torch.Tensor:
    """Build one criterion the way torchdistill does and evaluate it; returns the loss after backward."""
    paths = module_paths({"criterion": criterion, "criterion_wrapper": wrapper})
    student_io, teacher_io, leaves = random_io_dicts(paths)
    targets = torch.tensor([1, 7])
    if criterion["key"] in loss_registry.HIGH_LEVEL_LOSS_DICT:
        loss_module = get_high_level_loss(criterion)
        value = loss_module({"student": student_io, "teacher": teacher_io}, {}, targets)
    else:
        loss_module = get_mid_level_loss(criterion, wrapper)
        value = loss_module(student_io, teacher_io, targets)
    assert str(loss_module)  # torchdistill logs str(criterion)
    assert isinstance(value, torch.Tensor) and value.shape == () and torch.isfinite(value), value
    value.backward()
    grads = [leaf.grad for leaf in leaves if leaf.grad is not None]
    assert grads, "the loss does not depend on any student tensor"
    assert all(torch.isfinite(g).all() for g in grads)
    return value


def build_snippet(text: str, where: str) -> int:
    """Parse a YAML snippet and build/run every criterion in it; returns how many were built."""
    import geokt_plugin  # noqa: F401  (the snippets' GeoKT keys)

    data = yaml.load(text, Loader=_DocLoader)
    configs = list(criterion_configs(data))
    assert configs, f"{where}: a yaml block with 'criterion:' must hold a criterion mapping with a 'key'"
    for criterion, wrapper in configs:
        build_and_run(criterion, wrapper)
    return len(configs)


def test_docs_losses_page_exists_and_has_snippets():
    assert (ROOT / "docs" / "losses.md").exists()
    assert any(where.startswith("docs/losses.md") for where, _ in CRITERION_SNIPPETS)


@pytest.mark.parametrize("where, text", CRITERION_SNIPPETS, ids=[w for w, _ in CRITERION_SNIPPETS])
def test_docs_yaml_criterion_snippet_builds_and_runs(where, text):
    assert build_snippet(text, where) >= 1


def test_docs_losses_page_has_a_snippet_for_every_registered_loss():
    keys: set[str] = set()
    for _line, text in yaml_blocks(ROOT / "docs" / "losses.md"):
        keys |= loss_keys(yaml.load(text, Loader=_DocLoader))
    missing = sorted(set(registered_keys("mid_level_loss")) - keys)
    assert not missing, f"docs/losses.md has no YAML snippet using {missing}"


@pytest.mark.parametrize("key", registered_keys("mid_level_loss"))
def test_docs_docstring_yaml_of_each_registered_loss_builds_and_runs(key):
    cls = loss_registry.MIDDLE_LEVEL_LOSS_DICT[key]
    snippets = [text for text in docstring_blocks(cls) if re.search(r"^\s*criterion\s*:", text, re.M)]
    assert snippets, f"{key}'s docstring has no YAML sub_terms example"
    for text in snippets:
        assert key in loss_keys(yaml.load(text, Loader=_DocLoader))
        build_snippet(text, f"{key} docstring")


def test_docs_losses_page_states_that_the_formulas_are_not_the_papers():
    text = " ".join((ROOT / "docs" / "losses.md").read_text(encoding="utf-8").split())
    assert "could not be read" in text
    assert "They are not the paper's equations" in text


# ----------------------------------------------------------------------------------------------------------------
# Links
# ----------------------------------------------------------------------------------------------------------------

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"`+[^`\n]*`+")


def relative_links(page: Path) -> list[str]:
    """Link targets of a Markdown page that point into the repository (no scheme, not a bare #anchor)."""
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    text = _INLINE_CODE.sub("", text)
    targets = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target)
    return targets


@pytest.mark.parametrize("page", LINKED_PAGES, ids=[str(p.relative_to(ROOT)) for p in LINKED_PAGES])
def test_docs_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        file_part = target.split("#", 1)[0]
        resolved = (page.parent / file_part).resolve()
        if not resolved.exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_docs_link_extraction_sees_links():
    # The link checker is only as good as its regex: it must see this page's links to the source files.
    targets = relative_links(ROOT / "docs" / "losses.md")
    assert "../geokt_plugin/functional.py" in targets and "../geokt_plugin/testing/reference.py" in targets
    assert not any(t.startswith("http") for t in targets)
