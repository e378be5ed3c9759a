"""torchdistill mid-level losses: thin, parameter-free wrappers around :mod:`geokt_plugin.functional`.

Each module reads one hooked feature map from the student's and the instructor's ``io_dict`` and calls its
function. Combine layers through ``WeightedSumLoss.sub_terms`` (one loss per layer pair).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from . import functional as GF
from ._checks import io_tensor, require_str
from ._registry import register_mid_level_loss

__all__ = ["GeoKTDistanceLoss", "GeoKTNeighborKLLoss", "GeoKTNeighborRankLoss"]


class _GeoKTPairLoss(nn.Module):
    """Shared plumbing: module paths, io names, the common knobs, io_dict access and ``extra_repr``."""

    def __init__(
        self,
        *,
        student_module_path: str | None,
        student_module_io: str,
        teacher_module_path: str | None,
        teacher_module_io: str,
        max_points: int | None,
        scope: str,
        reduction: str,
        generator: torch.Generator | None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.student_module_path = require_str(owner, "student_module_path", student_module_path, example="layer2")
        self.student_module_io = require_str(owner, "student_module_io", student_module_io, example="output")
        self.teacher_module_path = require_str(owner, "teacher_module_path", teacher_module_path, example="layer2")
        self.teacher_module_io = require_str(owner, "teacher_module_io", teacher_module_io, example="output")
        GF.check_common(owner, max_points=max_points, scope=scope, reduction=reduction, generator=generator)
        GF.check_chunk_size(owner, chunk_size)
        self.chunk_size = chunk_size
        self.max_points = max_points
        self.scope = scope
        self.reduction = reduction
        self.generator = generator

    # Set by each subclass: the functional form and the names of its loss-specific knobs.
    _function: Callable[..., Tensor]
    _knob_names: tuple[str, ...]

    def _knobs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._knob_names}

    def forward(
        self, student_io_dict: dict, teacher_io_dict: dict, targets: Tensor | None = None, *args: Any, **kwargs: Any
    ) -> Tensor:
        owner = type(self).__name__
        student = io_tensor(owner, "student", student_io_dict, self.student_module_path, self.student_module_io)
        teacher = io_tensor(owner, "teacher", teacher_io_dict, self.teacher_module_path, self.teacher_module_io)
        try:
            return self._function(
                student,
                teacher,
                max_points=self.max_points,
                scope=self.scope,
                reduction=self.reduction,
                generator=self.generator,
                chunk_size=self.chunk_size,
                **self._knobs(),
            )
        except (ValueError, TypeError) as exc:
            # Name the YAML-visible layers: the functional error only knows the shapes and dtypes.
            raise type(exc)(
                f"{owner} (student {self.student_module_path!r}, teacher {self.teacher_module_path!r}): {exc}"
            ) from exc

    def extra_repr(self) -> str:
        parts = {
            "student": f"{self.student_module_path}:{self.student_module_io}",
            "teacher": f"{self.teacher_module_path}:{self.teacher_module_io}",
            **self._knobs(),
            "max_points": self.max_points,
            "scope": self.scope,
            "reduction": self.reduction,
            "chunk_size": self.chunk_size,
        }
        return ", ".join(f"{k}={v!r}" for k, v in parts.items())


@register_mid_level_loss
class GeoKTDistanceLoss(_GeoKTPairLoss):
    """Huber penalty on normalised local-feature distances along the instructor's kNN graph.

    The math is in :func:`geokt_plugin.functional.local_distance_loss`. The formulation is this project's precise
    reading of Theodorakopoulos, Fotopoulou and Economou, `Geometric Regularization of Local Activations for
    Knowledge Transfer in Convolutional Neural Networks <https://doi.org/10.3390/info12080333>`_, Information
    12(8):333, 2021; it is not the paper's equation, which we could not read.

    Shape:
        student ``io_dict[student_module_path][student_module_io]``: ``(B, Cs, Hs, Ws)``; teacher likewise
        ``(B, Ct, Ht, Wt)``; output: scalar, or ``(B,)`` / ``(1,)`` with ``reduction="none"``.

    Example YAML sub-term::

        geo_layer2:
          criterion:
            key: 'GeoKTDistanceLoss'
            kwargs: {student_module_path: 'layer2', teacher_module_path: 'layer2', neighbors: 8}
          weight: 1.0
    """

    _function = staticmethod(GF.local_distance_loss)
    _knob_names = ("neighbors",)

    def __init__(
        self,
        student_module_path: str | None = None,
        teacher_module_path: str | None = None,
        *,
        student_module_io: str = "output",
        teacher_module_io: str = "output",
        neighbors: int | None = 8,
        max_points: int | None = None,
        scope: str = "image",
        reduction: str = "mean",
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        _reject_unknown(type(self).__name__, kwargs)
        super().__init__(
            student_module_path=student_module_path,
            student_module_io=student_module_io,
            teacher_module_path=teacher_module_path,
            teacher_module_io=teacher_module_io,
            max_points=max_points,
            scope=scope,
            reduction=reduction,
            generator=generator,
            chunk_size=chunk_size,
        )
        GF.check_neighbors(type(self).__name__, neighbors, allow_none=True)
        self.neighbors = neighbors



@register_mid_level_loss
class GeoKTNeighborKLLoss(_GeoKTPairLoss):
    """KL divergence between the instructor's and the student's local-feature neighbourhood distributions.

    The math is in :func:`geokt_plugin.functional.neighbor_kl_loss`. The formulation is this project's precise
    reading of Theodorakopoulos, Fotopoulou and Economou, `Geometric Regularization of Local Activations for
    Knowledge Transfer in Convolutional Neural Networks <https://doi.org/10.3390/info12080333>`_, Information
    12(8):333, 2021; it is not the paper's equation, which we could not read.

    Shape:
        student ``(B, Cs, Hs, Ws)``, teacher ``(B, Ct, Ht, Wt)``; output: scalar, or ``(B,)`` / ``(1,)`` with
        ``reduction="none"``.

    Example YAML sub-term::

        geo_layer3:
          criterion:
            key: 'GeoKTNeighborKLLoss'
            kwargs: {student_module_path: 'layer3', teacher_module_path: 'layer3', bandwidth: 0.5}
          weight: 1.0
    """

    _function = staticmethod(GF.neighbor_kl_loss)
    _knob_names = ("bandwidth",)

    def __init__(
        self,
        student_module_path: str | None = None,
        teacher_module_path: str | None = None,
        *,
        student_module_io: str = "output",
        teacher_module_io: str = "output",
        bandwidth: float = 0.5,
        max_points: int | None = None,
        scope: str = "image",
        reduction: str = "mean",
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        _reject_unknown(type(self).__name__, kwargs)
        super().__init__(
            student_module_path=student_module_path,
            student_module_io=student_module_io,
            teacher_module_path=teacher_module_path,
            teacher_module_io=teacher_module_io,
            max_points=max_points,
            scope=scope,
            reduction=reduction,
            generator=generator,
            chunk_size=chunk_size,
        )
        GF.check_positive(type(self).__name__, "bandwidth", bandwidth)
        self.bandwidth = float(bandwidth)



@register_mid_level_loss
class GeoKTNeighborRankLoss(_GeoKTPairLoss):
    """The instructor's kNN graph as the target of the student's soft neighbour choice.

    The math is in :func:`geokt_plugin.functional.neighbor_rank_loss`. The formulation is this project's precise
    reading of Theodorakopoulos, Fotopoulou and Economou, `Geometric Regularization of Local Activations for
    Knowledge Transfer in Convolutional Neural Networks <https://doi.org/10.3390/info12080333>`_, Information
    12(8):333, 2021; it is not the paper's equation, which we could not read.

    Shape:
        student ``(B, Cs, Hs, Ws)``, teacher ``(B, Ct, Ht, Wt)``; output: scalar, or ``(B,)`` / ``(1,)`` with
        ``reduction="none"``.

    Example YAML sub-term::

        geo_layer1:
          criterion:
            key: 'GeoKTNeighborRankLoss'
            kwargs: {student_module_path: 'layer1', teacher_module_path: 'layer1', neighbors: 8,
                     temperature: 0.1, max_points: 256}
          weight: 1.0
    """

    _function = staticmethod(GF.neighbor_rank_loss)
    _knob_names = ("neighbors", "temperature")

    def __init__(
        self,
        student_module_path: str | None = None,
        teacher_module_path: str | None = None,
        *,
        student_module_io: str = "output",
        teacher_module_io: str = "output",
        neighbors: int = 8,
        temperature: float = 0.1,
        max_points: int | None = None,
        scope: str = "image",
        reduction: str = "mean",
        generator: torch.Generator | None = None,
        chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        _reject_unknown(type(self).__name__, kwargs)
        super().__init__(
            student_module_path=student_module_path,
            student_module_io=student_module_io,
            teacher_module_path=teacher_module_path,
            teacher_module_io=teacher_module_io,
            max_points=max_points,
            scope=scope,
            reduction=reduction,
            generator=generator,
            chunk_size=chunk_size,
        )
        GF.check_neighbors(type(self).__name__, neighbors, allow_none=False)
        GF.check_positive(type(self).__name__, "temperature", temperature)
        self.neighbors = neighbors
        self.temperature = float(temperature)



def _reject_unknown(owner: str, kwargs: dict[str, Any]) -> None:
    """torchdistill passes YAML kwargs verbatim; a typo must not be silently ignored."""
    if kwargs:
        raise TypeError(
            f"{owner}: unknown argument(s) {sorted(kwargs)}. Check the spelling under the loss's kwargs in the YAML "
            "(see docs/losses.md for the accepted knobs)."
        )
