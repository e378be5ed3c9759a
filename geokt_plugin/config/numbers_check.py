"""Numbers in a config: integers and kwargs that must be numbers, and numbers that YAML read as strings.

YAML 1.1 (PyYAML) reads ``1e-3`` (no dot) as the string ``'1e-3'``; torch then fails far from the config
(``'<' not supported between instances of 'str' and 'float'``) or, for a scheduler's ``gamma``, only at the first
milestone. Every message here names the YAML path, the value and the rule.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from .errors import Report, is_int, is_number, short

__all__ = ["check_int", "check_kwarg_numbers", "number_hint", "numeric_string"]

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_INTEGER = re.compile(r"[-+]?\d+")
_EXPONENT_WITHOUT_DOT = re.compile(r"([-+]?\d+)([eE][-+]?\d+)")


def numeric_string(value: Any) -> bool:
    """``value`` is a string that reads as a number (``'1e-3'``, ``'0.1'``, ``'10'``)."""
    return isinstance(value, str) and _NUMBER.fullmatch(value.strip()) is not None


def number_hint(value: Any) -> str:
    """How to write ``value`` (a numeric string) as a YAML number; ``""`` for any other value."""
    if not numeric_string(value):
        return ""
    text = value.strip()
    match = _EXPONENT_WITHOUT_DOT.fullmatch(text)
    if match:
        return f" Write {match.group(1)}.0{match.group(2)}: YAML 1.1 reads {text} without a dot as a string."
    return f" Write {text} without quotes: a quoted number is a string."


def check_int(report: Report, value: Any, where: str, *, minimum: int, maximum: int | None = None,
              example: str) -> bool:
    """``value`` is an integer in ``[minimum, maximum]``; report it at ``where`` otherwise (``False``)."""
    if is_int(value) and value >= minimum and (maximum is None or value <= maximum):
        return True
    allowed = ("a positive integer" if minimum == 1 else f"an integer >= {minimum}") if maximum is None else \
        f"an integer in [{minimum}, {maximum}]"
    if numeric_string(value) and not _INTEGER.fullmatch(value.strip()):
        fix = f" YAML 1.1 reads {value.strip()} as a string; write the integer itself, e.g. {example}."
    else:
        fix = number_hint(value) or f" Use e.g. {example}."
    report.error(where, f"must be {allowed}, got {short(value)} ({type(value).__name__}).{fix}")
    return False


def check_kwarg_numbers(report: Report, fn: Callable, kwargs: Mapping, where: str) -> bool:
    """Report numbers given as strings in ``kwargs`` (lists included) and non-numbers where ``fn`` defaults to a
    number; ``True`` when there is none.

    Args:
        report: where the problems go.
        fn: the class or function ``kwargs`` are for (its signature's defaults say which arguments are numbers).
        kwargs: the YAML ``kwargs`` mapping.
        where: its YAML path.
    """
    params = _parameters(fn)
    ok = True
    for name, value in kwargs.items():
        param = params.get(name)
        default = param.default if param is not None else inspect.Parameter.empty
        if isinstance(default, str) or str(name).endswith(("path", "_io")):
            continue  # a string argument: module paths such as '0' are legitimate
        strings = [(w, item) for w, item in _items(f"{where}.{name}", value) if numeric_string(item)]
        for item_where, item in strings:
            report.error(item_where, f"{item!r} is a string, not a number.{number_hint(item)}")
        if strings:
            ok = False
        elif is_number(default) and not isinstance(default, bool) and not _numeric(value):
            report.error(f"{where}.{name}", f"must be a number ({_owner(fn)}'s default is {default!r}), got "
                                            f"{short(value)} ({type(value).__name__}).")
            ok = False
    return ok


def _parameters(fn: Callable) -> Mapping[str, inspect.Parameter]:
    try:
        return inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return {}


def _items(where: str, value: Any) -> list[tuple[str, Any]]:
    """``value`` itself, or each item of a list/tuple with its YAML path."""
    if isinstance(value, (list, tuple)):
        return [(f"{where}[{i}]", item) for i, item in enumerate(value)]
    return [(where, value)]


def _numeric(value: Any) -> bool:
    """A number, a tensor, or ``None`` (left to the constructor)."""
    return value is None or is_number(value) or isinstance(value, Tensor)


def _owner(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)
