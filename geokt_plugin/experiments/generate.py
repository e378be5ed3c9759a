"""The generated files on disk: every file under configs/official and the config table of docs/reproducing.md."""

from __future__ import annotations

import sys
from pathlib import Path

from .cells import all_specs
from .configs import render
from .docs_writer import REPRODUCING, readme, with_reproducing_table
from .matrix import OFFICIAL, PAPER_KEY, RECIPES, ROOT, Spec

__all__ = ["generated_files", "write_generated"]

REGENERATE = "python -m geokt_plugin.experiments configs"


def generated_files() -> dict[Path, str]:
    """Every file under configs/official (the YAMLs and one README per experiment folder): path -> text."""
    files: dict[Path, str] = {}
    groups: dict[tuple[str, str], list[Spec]] = {}
    for spec in all_specs():
        files[OFFICIAL / spec.relpath] = render(spec)
        groups.setdefault((spec.recipe.name, spec.experiment), []).append(spec)
    for (name, experiment), specs in groups.items():
        files[OFFICIAL / name / PAPER_KEY / experiment / "README.md"] = readme(RECIPES[name], experiment, specs)
    return files


def write_generated(check: bool = False) -> int:
    """Write the generated files (removing stale ones under configs/official), or with ``check`` report them.

    Returns:
        The exit code: 0, or 1 when ``check`` found a file out of date.
    """
    files = generated_files()
    if REPRODUCING.is_file():
        files[REPRODUCING] = with_reproducing_table(REPRODUCING.read_text())
    stale = sorted(str(p) for p in OFFICIAL.rglob("*") if p.is_file() and p not in files)
    if check:
        bad = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
        for p in bad + stale:
            print(f"out of date: {p}", file=sys.stderr)
        if bad or stale:
            print(f"Run `{REGENERATE}` to regenerate configs/official.", file=sys.stderr)
            return 1
        return 0
    for p in stale:
        Path(p).unlink()
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
    print(f"wrote {len(files)} files under {OFFICIAL.relative_to(ROOT)}")
    return 0
