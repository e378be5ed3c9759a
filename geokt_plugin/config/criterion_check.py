"""``train.criterion``: the high-level key, every ``sub_terms`` loss (key, kwargs, wrapper) and every weight."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import nn

from .context import CheckContext
from .errors import is_number, short
from .module_paths import IO_NAMES
from .numbers_check import check_kwarg_numbers, number_hint
from .suggest import DEPENDENCY_HINT, kwarg_hints, unknown_key

__all__ = ["Term", "check_criterion", "check_weight"]


@dataclass(frozen=True)
class Term:
    """One mid-level loss term of a criterion, with its YAML path and (when it constructed) the module."""

    where: str  # e.g. "train.criterion.kwargs.sub_terms.geo"
    key: str
    kwargs: Mapping
    module: nn.Module | None

    def reads(self) -> list[tuple[str, str, str, str]]:
        """``(role, path, io, yaml key)`` of every tensor the term reads, where its kwargs say so."""
        reads = []
        for role in ("student", "teacher"):
            path = self.kwargs.get(f"{role}_module_path")
            if isinstance(path, str):
                reads.append((role, path, self.kwargs.get(f"{role}_module_io", "output"), f"{role}_module_path"))
        return reads


def check_criterion(ctx: CheckContext, sp: str, stage: Mapping) -> list[Term]:
    """Check the stage's criterion; return its ``sub_terms`` whose keys exist (in YAML order)."""
    r = ctx.report
    reg = ctx.registries
    where = f"{sp}.criterion"
    crit = r.mapping(stage, "criterion", where, required=True,
                     example="{key: 'WeightedSumLoss', kwargs: {sub_terms: {...}}}")
    if crit is None:
        return []
    key = crit.get("key")
    if key not in reg.high_level:
        msg = unknown_key("high-level criterion", key, sorted(reg.high_level), uses_geokt=True)
        if isinstance(key, str) and key in reg.mid_level_keys():
            msg = (f"{key!r} is a mid-level loss; the top-level criterion must be one of "
                   f"{sorted(reg.high_level)}. Put {key!r} under kwargs.sub_terms.<name>.criterion.")
        r.error(f"{where}.key", msg)
        return []
    kwargs = crit.get("kwargs")
    if not isinstance(kwargs, Mapping):
        r.error(f"{where}.kwargs", f"must be a mapping with sub_terms, got {short(kwargs)}.")
        return []
    model_term = kwargs.get("model_term")
    if isinstance(model_term, Mapping) and "weight" in model_term:
        check_weight(ctx, model_term["weight"], f"{where}.kwargs.model_term.weight")
    sub_terms = kwargs.get("sub_terms")
    if not isinstance(sub_terms, Mapping) or not sub_terms:
        if not (isinstance(model_term, Mapping) and model_term):
            r.error(f"{where}.kwargs.sub_terms", f"must be a non-empty mapping of loss terms, got "
                                                 f"{short(sub_terms)}; with no terms nothing is trained.")
        return []
    terms = [_check_term(ctx, term, f"{where}.kwargs.sub_terms.{name}") for name, term in sub_terms.items()]
    return [t for t in terms if t is not None]


def check_weight(ctx: CheckContext, weight: Any, where: str) -> None:
    """A term's ``weight`` is a finite number >= 0."""
    if not is_number(weight) or not math.isfinite(weight) or weight < 0:
        fix = number_hint(weight) or (" A negative weight would push the geometry apart; use a weight >= 0 (0 "
                                      "disables the term).")
        ctx.report.error(where, f"must be a finite number >= 0, got {short(weight)}.{fix}")


def _check_term(ctx: CheckContext, term: Any, where: str) -> Term | None:
    r = ctx.report
    if not isinstance(term, Mapping):
        r.error(where, f"must be a mapping {{criterion: {{key, kwargs}}, weight}}, got {short(term)}.")
        return None
    if "weight" not in term:
        r.error(f"{where}.weight", "missing (torchdistill requires it). Add e.g. `weight: 1.0`.")
    else:
        check_weight(ctx, term["weight"], f"{where}.weight")
    if isinstance(term.get("criterion"), nn.Module):
        return None  # a loss module built in the YAML (torchdistill accepts one as is): nothing to check here
    crit = r.mapping(term, "criterion", f"{where}.criterion", required=True,
                     example="{key: 'GeoKTDistanceLoss', kwargs: {student_module_path: 'layer2', ...}}")
    key = _term_key(ctx, crit, where) if crit is not None else None
    if key is None:
        return None
    kw_where = f"{where}.criterion.kwargs"
    if "kwargs" not in crit:
        r.error(kw_where, "missing; torchdistill requires `kwargs:` on every criterion (it fails with "
                          "KeyError('kwargs') otherwise). Add `kwargs: {}` or the loss's arguments.")
        return None
    kwargs = crit["kwargs"] if crit["kwargs"] is not None else {}
    if not isinstance(kwargs, Mapping):
        r.error(kw_where, f"must be a mapping of the loss's arguments, got {type(kwargs).__name__} {short(kwargs)}.")
        return None
    if not check_kwarg_numbers(r, ctx.registries.loss_class(key), kwargs, kw_where):
        return None
    module = _construct(ctx, key, kwargs, kw_where)
    wrapper = term.get("criterion_wrapper")
    if wrapper is not None and module is not None:
        _check_wrapper(ctx, wrapper, f"{where}.criterion_wrapper", module)
    if key.startswith("GeoKT"):
        for role in ("student", "teacher"):
            io = kwargs.get(f"{role}_module_io", "output")
            if io not in IO_NAMES:
                r.error(f"{kw_where}.{role}_module_io", f"{io!r} is not an io name; torchdistill hooks record "
                                                        f"only {list(IO_NAMES)}. Use 'output' (or 'input').")
    return Term(where, key, kwargs, module)


def _term_key(ctx: CheckContext, crit: Mapping, where: str) -> str | None:
    """The term's criterion key if a registry holds it (``None``: reported); a GeoKT key needs the dependency."""
    reg = ctx.registries
    key = crit.get("key")
    if not isinstance(key, str) or (key not in reg.mid_level and key not in reg.low_level):
        ctx.report.error(f"{where}.criterion.key", unknown_key("criterion", key, reg.mid_level_keys(),
                                                               uses_geokt=ctx.uses_geokt_dependency))
        return None
    if key.startswith("GeoKT") and not ctx.uses_geokt_dependency:
        ctx.report.error(f"{where}.criterion.key", f"{key!r} is provided by geokt_plugin, which the config does not "
                                                   f"import; torchdistill's own scripts would not find it. "
                                                   f"{DEPENDENCY_HINT[0].upper()}{DEPENDENCY_HINT[1:]}.")
    return key


def _construct(ctx: CheckContext, key: str, kwargs: Mapping, where: str) -> nn.Module | None:
    """The loss ``key(**kwargs)``, or ``None`` with its own error message (and a did-you-mean for kwargs)."""
    cls = ctx.registries.loss_class(key)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        text = str(exc).rstrip()
        ctx.report.error(where, f"{text}{'' if text.endswith(('.', '?', '!')) else '.'}{kwarg_hints(cls, kwargs)}")
    except Exception as exc:  # noqa: BLE001
        ctx.report.error(where, f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the arguments.")
    return None


def _check_wrapper(ctx: CheckContext, wrapper: Any, where: str, module: nn.Module) -> None:
    r = ctx.report
    reg = ctx.registries
    if not isinstance(wrapper, Mapping):
        r.error(where, f"must be a mapping {{key, kwargs}}, got {short(wrapper)}.")
        return
    if not wrapper:
        return
    key = wrapper.get("key")
    if key not in reg.loss_wrapper:
        r.error(f"{where}.key", unknown_key("criterion_wrapper", key, sorted(reg.loss_wrapper),
                                            uses_geokt=ctx.uses_geokt_dependency))
        return
    kwargs = wrapper.get("kwargs") or {}
    try:
        reg.loss_wrapper[key](module, **kwargs)
    except Exception as exc:  # noqa: BLE001
        r.error(f"{where}.kwargs", f"{key}(**kwargs) failed: {type(exc).__name__}: {exc}. Fix the arguments.")
