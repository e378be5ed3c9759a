"""The error every config check raises, the report the checks fill (problems raised together, notes), and the
small value helpers their messages use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

__all__ = ["ConfigError", "Report", "is_int", "is_number", "shape_of", "short"]


class ConfigError(ValueError):
    """A config, run directory or input that cannot work; the message says where, what, what is allowed, the fix.

    Attributes:
        problems: one line per problem (``"<yaml path>: <what>. <fix>"``), in the order found.
    """

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]

    @classmethod
    def from_problems(cls, source: str, problems: Sequence[str]) -> ConfigError:
        """One error for all ``problems`` of ``source`` (a config file or a run directory)."""
        if len(problems) == 1:
            return cls(f"{source}: {problems[0]}", problems)
        lines = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, 1))
        return cls(f"{source}: {len(problems)} problems:\n{lines}", problems)


class Report:
    """Collects problems (raised together at the end) and notes (returned to the caller), in the order found."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []

    def error(self, where: str, message: str) -> None:
        """Record a problem at YAML path ``where`` (``""``: the config as a whole)."""
        self.problems.append(f"{where}: {message}" if where else message)

    def ok(self, message: str) -> None:
        self.notes.append(f"ok: {message}")

    def warn(self, message: str) -> None:
        self.notes.append(f"warning: {message}")

    def mapping(self, parent: Mapping, key: str, where: str, *, required: bool, example: str) -> Mapping | None:
        """``parent[key]`` if it is a mapping; record a problem when it is missing (and required) or not a mapping."""
        if key not in parent or parent[key] is None:
            if required:
                self.error(where, f"missing. Add it, e.g. {example}")
            return None
        value = parent[key]
        if not isinstance(value, Mapping):
            self.error(where, f"must be a mapping, got {type(value).__name__} {short(value)}. Write it as {example}")
            return None
        return value

    def raise_if_problems(self, source: str) -> None:
        """Raise one :class:`ConfigError` listing every problem of ``source``, if there is any."""
        if self.problems:
            raise ConfigError.from_problems(source, self.problems)


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shape_of(x: Any) -> str:
    """A tensor's shape as a tuple, else the value's type name (for messages)."""
    return str(tuple(x.shape)) if isinstance(x, Tensor) else type(x).__name__


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
