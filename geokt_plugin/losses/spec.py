"""The table of losses: the one place tests, benchmarks, docs checks and the experiment suite read them from.

Each :class:`LossSpec` row names a loss (``"distance"``), its function, its registered module (whose class name is
the registry key) and, optionally, its float64 loop reference. The loss-specific knobs and their defaults are
read from the function's signature, so they are written exactly once, in the function.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from torch import Tensor

from .base import GeoKTLoss, specific_knobs
from .distance import GeoKTDistanceLoss, local_distance_loss
from .neighbor_kl import GeoKTNeighborKLLoss, neighbor_kl_loss
from .neighbor_rank import GeoKTNeighborRankLoss, neighbor_rank_loss
from .neighborhood_contrast import GeoKTNeighborhoodContrastLoss, neighborhood_contrast_loss

__all__ = ["LOSS_SPECS", "LossSpec", "loss_spec", "register_loss_spec"]


@dataclass(frozen=True)
class LossSpec:
    """One loss of the table.

    Attributes:
        name: short name used by tests and benchmarks (``"distance"``).
        function: the pure loss function (``local_distance_loss``).
        module: the registered ``GeoKT*`` module class; its name is the registry key.
        zero_for_similar_maps: whether the loss is 0 when the student's points are a similarity transform of the
            instructor's (docs/losses.md, "Properties").
        reference: the float64 loop reference, as a callable or a dotted path (imported only when asked for);
            ``None`` means the function of the same name in :mod:`geokt_plugin.testing.reference`.
        dense: the plain-autograd formulation over full matrices (per-set values, the chunking oracle), as a callable
            or a dotted path; ``None`` means :func:`geokt_plugin.testing.dense.dense_loss` called with ``name``.
        whole_set_memory: whether the loss holds one set's full ``(n, n)`` matrix whatever ``chunk_size`` is (the
            instructor's spanning tree needs every distance of a set), so ``chunk_size`` bounds memory down to one set.
    """

    name: str
    function: Callable[..., Tensor]
    module: type[GeoKTLoss]
    zero_for_similar_maps: bool = True
    reference: Callable[..., Tensor] | str | None = None
    dense: Callable[..., Tensor] | str | None = None
    whole_set_memory: bool = False

    @property
    def key(self) -> str:
        """The registry key, equal to the module's class name."""
        return self.module.__name__

    @property
    def owner(self) -> str:
        """The function's name, which its error messages start with."""
        return self.function.__name__

    @property
    def knobs(self) -> dict[str, Any]:
        """The loss-specific knobs and their defaults, in signature order (``{"neighbors": 8}``)."""
        return specific_knobs(self.function)

    def reference_function(self) -> Callable[..., Tensor]:
        """The float64 loop reference of this loss."""
        return _load(self.reference or f"geokt_plugin.testing.reference.{self.owner}")

    def dense_function(self) -> Callable[..., Tensor]:
        """The plain-autograd formulation: ``dense(student, teacher, *, scope, **knobs)`` -> per-set values."""
        if self.dense is None:
            return partial(_load("geokt_plugin.testing.dense.dense_loss"), self.name)
        return _load(self.dense)


def _load(target: Callable[..., Tensor] | str) -> Callable[..., Tensor]:
    """A callable as is, or the object a dotted path names (imported only now: the losses never import testing)."""
    if callable(target):
        return target
    module, _, name = target.rpartition(".")
    return getattr(importlib.import_module(module), name)


LOSS_SPECS: dict[str, LossSpec] = {}


def register_loss_spec(spec: LossSpec) -> LossSpec:
    """Add a row to :data:`LOSS_SPECS`; a name or a key already in the table raises ``ValueError``."""
    for other in LOSS_SPECS.values():
        if spec.name == other.name or spec.key == other.key:
            raise ValueError(
                f"LossSpec {spec.name!r} ({spec.key}) collides with the existing row {other.name!r} ({other.key}); "
                "give the new loss its own name and GeoKT class."
            )
    LOSS_SPECS[spec.name] = spec
    return spec


def loss_spec(name: str) -> LossSpec:
    """The row called ``name``."""
    if name not in LOSS_SPECS:
        raise ValueError(f"Unknown loss {name!r}; choose one of {list(LOSS_SPECS)}.")
    return LOSS_SPECS[name]


for _row in (
    LossSpec("distance", local_distance_loss, GeoKTDistanceLoss),
    LossSpec("kl", neighbor_kl_loss, GeoKTNeighborKLLoss),
    LossSpec("rank", neighbor_rank_loss, GeoKTNeighborRankLoss, zero_for_similar_maps=False),
    LossSpec("nac", neighborhood_contrast_loss, GeoKTNeighborhoodContrastLoss,
             reference="geokt_plugin.testing.nac_reference.neighborhood_contrast_loss_reference",
             dense="geokt_plugin.testing.nac_reference.dense_neighborhood_contrast", whole_set_memory=True),
):
    register_loss_spec(_row)
