"""Module paths as torchdistill resolves them (hooks, ``sequential``, ``frozen_modules``), and what a wrong one says."""

from __future__ import annotations

from typing import Any

from torch import nn

from .suggest import nearest

__all__ = ["IO_NAMES", "SELF_PATH", "path_message", "resolve"]

IO_NAMES = ("input", "output")
SELF_PATH = "."  # torchdistill's path of the model's own output, always present in the io_dict


def resolve(root: nn.Module, path: str) -> nn.Module | None:
    """torchdistill's ``get_module`` without its warning: attribute names, Sequential/ModuleList indices."""
    module: Any = root
    for name in path.split("."):
        if name and hasattr(module, name):
            module = getattr(module, name)
        elif isinstance(module, (nn.Sequential, nn.ModuleList)) and name.lstrip("-").isdigit():
            try:
                module = module[int(name)]
            except IndexError:
                return None
        else:
            return None
    return module if isinstance(module, nn.Module) else None


def path_message(path: Any, root: nn.Module) -> str:
    """The problem of a module ``path`` that ``root`` does not have, with the three nearest valid paths."""
    valid = [name for name, _ in root.named_modules() if name]
    near = nearest(str(path), valid)
    return (f"no module {path!r} in {type(root).__name__}. Nearest valid module paths: {near}. Fix the path "
            "(torchdistill would only log a warning and then fail with AttributeError on None).")
