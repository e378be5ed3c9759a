"""Did-you-mean hints: the closest registry keys, module paths and keyword arguments to a misspelt one."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import short

__all__ = ["DEPENDENCY_HINT", "did_you_mean", "kwarg_hints", "nearest", "suggest", "unknown_key"]

DEPENDENCY_HINT = "add `dependencies: [{name: geokt_plugin}]` at the top level of the config"


def suggest(word: str, candidates: Sequence[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Closest spellings of ``word`` (case-insensitive match first)."""
    exact = [c for c in candidates if c.lower() == str(word).lower()]
    close = difflib.get_close_matches(str(word), list(candidates), n=n, cutoff=cutoff)
    return list(dict.fromkeys(exact + close))[:n]


def did_you_mean(word: str, candidates: Sequence[str]) -> str:
    """`` Did you mean 'a' or 'b'?``, or ``""`` when nothing is close."""
    close = suggest(word, candidates)
    if not close:
        return ""
    return " Did you mean " + " or ".join(repr(c) for c in close) + "?"


def nearest(word: str, candidates: Sequence[str], n: int = 3) -> list[str]:
    """The ``n`` nearest candidates, however far (used for module paths, where any hint helps)."""
    return suggest(word, candidates, n=n, cutoff=0.0)


def kwarg_hints(cls: Callable, kwargs: Mapping) -> str:
    """`` Did you mean 'neighbors' for 'neighbours'?`` for keyword arguments the constructor does not name."""
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return ""
    names = [n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    hints = []
    for key in kwargs:
        if key not in params:
            close = suggest(str(key), names, n=1)
            if close:
                hints.append(f"{close[0]!r} for {key!r}")
    return f" Did you mean {', '.join(hints)}?" if hints else ""


def unknown_key(kind: str, key: Any, known: Sequence[str], *, uses_geokt: bool, fix: str = "Fix the spelling.") -> str:
    """Message for a key that no registry holds.

    Args:
        kind: what the key names, e.g. ``"optimizer"``.
        key: the key the config gives.
        known: the registered keys.
        uses_geokt: the config imports geokt_plugin (else a ``GeoKT*`` key gets the dependency hint).
        fix: the advice when a close spelling exists.
    """
    if not isinstance(key, str):
        return f"{kind} key must be a string, got {type(key).__name__} {short(key)}. Use a registered name."
    msg = f"unknown {kind} key {key!r}.{did_you_mean(key, known)}"
    if key.startswith("GeoKT") and not uses_geokt:
        msg += f" GeoKT* keys are registered when geokt_plugin is imported: {DEPENDENCY_HINT}."
    elif not suggest(key, known):
        msg += f" Registered keys include {sorted(known)[:8]} ({len(known)} in all)."
    else:
        msg += f" {fix}"
    return msg
