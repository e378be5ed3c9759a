"""What the run needs from its environment: the requested device, and the config's ``dependencies``."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

from .errors import Report, short

__all__ = ["check_dependencies", "check_device"]


def check_device(report: Report, device: str) -> None:
    """``device`` parses, and a CUDA device is visible."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        report.error("--device", f"invalid device {device!r} ({exc}). Use 'cpu', 'cuda' or 'cuda:N'.")
        return
    if dev.type == "cuda" and not torch.cuda.is_available():
        report.error("--device", f"{device!r} requested but torch.cuda.is_available() is False. Use "
                                 "--device cpu, or run on a machine with a CUDA GPU.")
    elif dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        report.error("--device", f"{device!r} requested but only {torch.cuda.device_count()} CUDA "
                                 f"device(s) are visible. Use cuda:0..cuda:{torch.cuda.device_count() - 1}.")


def check_dependencies(report: Report, deps: Any) -> bool:
    """Import every entry of ``dependencies``; ``True`` when one of them is geokt_plugin (or a submodule)."""
    if deps is None:
        return False
    items = [deps] if isinstance(deps, str) else deps
    if not isinstance(items, list):
        report.error("dependencies", f"must be a list, got {type(deps).__name__}. Write "
                                     "`dependencies: [{name: geokt_plugin}]`.")
        return False
    uses_geokt = False
    for i, item in enumerate(items):
        name = _import(report, f"dependencies[{i}]", item)
        if name is not None and (name == "geokt_plugin" or name.startswith("geokt_plugin.")):
            uses_geokt = True
    return uses_geokt


def _import(report: Report, where: str, item: Any) -> str | None:
    """Import one ``dependencies`` entry (torchdistill's three forms); its module name, or ``None`` (reported)."""
    if isinstance(item, Mapping):
        name, package = item.get("name"), item.get("package")
    elif isinstance(item, (list, tuple)) and item:
        name, package = item[0], (item[1] if len(item) > 1 else None)
    elif isinstance(item, str):
        name, package = item, None
    else:
        report.error(where, f"cannot read {short(item)}; use a module name, [name, package] or "
                            "{name: ..., package: ...}.")
        return None
    if not isinstance(name, str) or not name:
        report.error(where, f"needs a module name, got {short(item)}. Write {{name: geokt_plugin}}.")
        return None
    try:
        importlib.import_module(name, package)
    except Exception as exc:  # noqa: BLE001  (any import failure is a config problem)
        report.error(where, f"cannot import {name!r} ({type(exc).__name__}: {exc}). Install it in this "
                            "environment, or fix the name.")
        return None
    return name
