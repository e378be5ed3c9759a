"""The shared base of the registered loss modules: torchdistill's vocabulary around one loss function.

A loss module is a thin, parameter-free wrapper: it names the hooked layers (``student_module_path``,
``teacher_module_path``, ``*_module_io``), validates every knob at construction time, reads the two feature maps
from the ``io_dict`` and calls its function. The knobs, their order and their defaults are the function's own
keyword-only parameters, so a module never restates them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

from .checks import check_chunk_size, check_common, io_tensor, reject_unknown, require_str

__all__ = ["COMMON_KNOBS", "GeoKTLoss", "function_knobs", "specific_knobs"]

# The knobs every loss function takes after its own; the modules store and show them all alike.
COMMON_KNOBS = ("max_points", "scope", "reduction", "generator", "chunk_size")


def function_knobs(function: Callable[..., Tensor]) -> dict[str, Any]:
    """Every keyword-only parameter of a loss function with its default, in signature order."""
    params = inspect.signature(function).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def specific_knobs(function: Callable[..., Tensor]) -> dict[str, Any]:
    """The loss-specific knobs of a loss function (all but :data:`COMMON_KNOBS`) with their defaults."""
    return {name: value for name, value in function_knobs(function).items() if name not in COMMON_KNOBS}


class _ConstructorSignature:
    """``inspect.signature(cls)`` of a loss module: the paths and io names, then its function's knobs.

    Config checks suggest spellings from it. Instances fall back to the usual signature (``forward``'s).
    """

    def __get__(self, obj: object, cls: type) -> inspect.Signature | None:
        function = getattr(cls, "function", None)
        if obj is not None or function is None:
            return None
        init = inspect.signature(GeoKTLoss.__init__).parameters.values()
        own = [p for p in init if p.kind is not p.VAR_KEYWORD and p.name != "self"]
        knobs = [p for p in inspect.signature(function).parameters.values() if p.kind is p.KEYWORD_ONLY]
        return inspect.Signature(own + knobs)


class GeoKTLoss(nn.Module):
    """Base of the ``GeoKT*`` mid-level losses: set ``function`` and ``check_knobs`` in a subclass.

    ``function(student, teacher, **knobs)`` is the pure loss; ``check_knobs(owner, **specific)`` validates the
    loss-specific knobs and returns them as stored (for example a float). Unknown keyword arguments raise
    ``TypeError``: torchdistill passes the YAML ``kwargs`` verbatim, and a typo must not be ignored.
    """

    function: ClassVar[Callable[..., Tensor]]
    check_knobs: ClassVar[Callable[..., dict[str, Any]]]
    __signature__ = _ConstructorSignature()

    def __init__(
        self,
        student_module_path: str | None = None,
        teacher_module_path: str | None = None,
        *,
        student_module_io: str = "output",
        teacher_module_io: str = "output",
        **knobs: Any,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        defaults = function_knobs(self.function)
        reject_unknown(owner, set(knobs) - set(defaults))
        knobs = {**defaults, **knobs}
        self.student_module_path = require_str(owner, "student_module_path", student_module_path, example="layer2")
        self.student_module_io = require_str(owner, "student_module_io", student_module_io, example="output")
        self.teacher_module_path = require_str(owner, "teacher_module_path", teacher_module_path, example="layer2")
        self.teacher_module_io = require_str(owner, "teacher_module_io", teacher_module_io, example="output")
        common = {name: knobs[name] for name in COMMON_KNOBS}
        check_common(owner, **{name: common[name] for name in ("max_points", "scope", "reduction", "generator")})
        check_chunk_size(owner, common["chunk_size"])
        specific = self.check_knobs(owner, **{name: knobs[name] for name in defaults if name not in COMMON_KNOBS})
        self._knob_names = tuple(specific)
        for name, value in {**specific, **common}.items():
            setattr(self, name, value)

    def knobs(self) -> dict[str, Any]:
        """The keyword arguments this module passes to its function."""
        return {name: getattr(self, name) for name in (*self._knob_names, *COMMON_KNOBS)}

    def forward(
        self, student_io_dict: dict, teacher_io_dict: dict, targets: Tensor | None = None, *args: Any, **kwargs: Any
    ) -> Tensor:
        owner = type(self).__name__
        student = io_tensor(owner, "student", student_io_dict, self.student_module_path, self.student_module_io)
        teacher = io_tensor(owner, "teacher", teacher_io_dict, self.teacher_module_path, self.teacher_module_io)
        try:
            return self.function(student, teacher, **self.knobs())
        except (ValueError, TypeError) as exc:
            # Name the YAML-visible layers: the functional error only knows the shapes and dtypes.
            raise type(exc)(
                f"{owner} (student {self.student_module_path!r}, teacher {self.teacher_module_path!r}): {exc}"
            ) from exc

    def extra_repr(self) -> str:
        parts = {
            "student": f"{self.student_module_path}:{self.student_module_io}",
            "teacher": f"{self.teacher_module_path}:{self.teacher_module_io}",
            **{name: getattr(self, name) for name in self._knob_names},
            "max_points": self.max_points,
            "scope": self.scope,
            "reduction": self.reduction,
            "chunk_size": self.chunk_size,
        }
        return ", ".join(f"{k}={v!r}" for k, v in parts.items())
