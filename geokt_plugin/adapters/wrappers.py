"""Auxiliary model wrappers: the instructor behind an input adapter, and the student with named heads.

Neither wrapper wraps anything in DDP: the runner's ``accelerator.prepare`` owns DDP for the whole student wrapper
(student and heads together), and the frozen instructor is never DDP-wrapped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from torchdistill.models.wrapper import AuxiliaryModelWrapper

from ..registry import register_auxiliary_model_wrapper
from ._args import TORCHDISTILL_KWARGS, reject_unknown, require_model
from .head import GeoKTHeadAdapter
from .input import GeoKTInputAdapter

__all__ = ["GeoKTStudentWrapper", "GeoKTTeacherInputWrapper"]


@register_auxiliary_model_wrapper
class GeoKTTeacherInputWrapper(AuxiliaryModelWrapper):
    """The instructor behind a :class:`GeoKTInputAdapter`: ``forward(x) = teacher_model(input_adapter(x))``.

    Hook paths are relative to the wrapper (``teacher_model.layer2``; ``input_adapter`` for the adapted batch).

    Args:
        teacher_model: the instructor (passed by torchdistill).
        input_adapter: keyword arguments of :class:`GeoKTInputAdapter`.

    Example (YAML, under ``train.teacher``)::

        auxiliary_model_wrapper:
          key: 'GeoKTTeacherInputWrapper'
          kwargs:
            input_adapter: {in_channels: 1, out_channels: 3, size: 32, in_mean: 0.2860, in_std: 0.3530,
                            out_mean: [0.4914, 0.4822, 0.4465], out_std: [0.2470, 0.2435, 0.2616]}
        forward_hook: {input: [], output: ['teacher_model.layer2']}
    """

    def __init__(
        self, teacher_model: nn.Module | None = None, *, input_adapter: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        reject_unknown(owner, kwargs, TORCHDISTILL_KWARGS)
        require_model(owner, "teacher", teacher_model)
        if input_adapter is not None and not isinstance(input_adapter, Mapping):
            raise TypeError(f"{owner}: input_adapter must be a mapping of GeoKTInputAdapter kwargs, got "
                            f"{type(input_adapter).__name__}.")
        self.teacher_model = teacher_model
        self.input_adapter = GeoKTInputAdapter(**dict(input_adapter or {}))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if not args:
            raise TypeError(f"{type(self).__name__}: forward needs the input batch as its first argument.")
        x, *rest = args
        return self.teacher_model(self.input_adapter(x), *rest, **kwargs)


_ENTRY_KEYS = ("path", "io", "in_channels", "out_channels", "batch_norm", "relu")
_REQUIRED_KEYS = ("path", "in_channels", "out_channels")


def _head_source(owner: str, name: Any, entry: Any) -> tuple[str, str]:
    """Validate one ``adapters`` entry of :class:`GeoKTStudentWrapper`; return its ``(path, io)``."""
    where = f"{owner}: adapters.{name}"
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"{owner}: adapter name {name!r} must be a non-empty string without '.'.")
    if not isinstance(entry, Mapping):
        raise TypeError(f"{where} must be a mapping with path, io, in_channels, out_channels; got {entry!r}.")
    unknown = sorted(set(entry) - set(_ENTRY_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(_ENTRY_KEYS)}.")
    missing = [k for k in _REQUIRED_KEYS if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing {missing}; e.g. {{path: 'student_model.layer2', io: 'output', "
                         "in_channels: 32, out_channels: 32}.")
    path, io = entry["path"], entry.get("io", "output")
    if not isinstance(path, str) or not path:
        raise ValueError(f"{where}: path must be a hooked module path such as 'student_model.layer2', got {path!r}.")
    if io not in ("input", "output"):
        raise ValueError(f"{where}: io must be 'input' or 'output', got {io!r}.")
    return path, io


@register_auxiliary_model_wrapper
class GeoKTStudentWrapper(AuxiliaryModelWrapper):
    """The student plus named trainable heads that read hooked student tensors.

    ``forward`` is the student's. ``secondary_forward(io_dict)`` (called by the box after the forward) runs
    ``adapters[name]`` on ``io_dict[path][io]``; hook ``adapters.<name>`` to give its output to a loss. Both the
    head's input path and ``adapters.<name>`` must be listed under ``forward_hook``.

    Args:
        student_model: the student (passed by torchdistill).
        adapters: ``{name: {path, io, in_channels, out_channels[, batch_norm, relu]}}``; ``path`` is relative to the
            wrapper (``student_model.layer2``), ``io`` is ``"output"`` (default) or ``"input"``.

    Example (YAML, under ``train.student``)::

        auxiliary_model_wrapper:
          key: 'GeoKTStudentWrapper'
          kwargs:
            adapters:
              hint: {path: 'student_model.layer2', io: 'output', in_channels: 32, out_channels: 32}
        forward_hook: {input: [], output: ['student_model.layer2', 'adapters.hint']}
    """

    def __init__(
        self, student_model: nn.Module | None = None, *, adapters: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        reject_unknown(owner, kwargs, TORCHDISTILL_KWARGS)
        require_model(owner, "student", student_model)
        if adapters is None:
            adapters = {}
        if not isinstance(adapters, Mapping):
            raise TypeError(f"{owner}: adapters must be a mapping {{name: {{path, io, in_channels, out_channels}}}}, "
                            f"got {type(adapters).__name__}.")
        self.student_model = student_model
        self.adapters = nn.ModuleDict()
        self.sources: dict[str, tuple[str, str]] = {}
        for name, entry in adapters.items():
            self.sources[name] = _head_source(owner, name, entry)
            self.adapters[name] = GeoKTHeadAdapter(
                entry["in_channels"], entry["out_channels"], batch_norm=bool(entry.get("batch_norm", True)),
                relu=bool(entry.get("relu", False)),
            )
        self._checked: set[str] = set()

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.student_model(*args, **kwargs)

    def _source_tensor(self, name: str, io_dict: Mapping[str, Any]) -> Tensor:
        owner = type(self).__name__
        path, io = self.sources[name]
        entry = io_dict.get(path) if isinstance(io_dict, Mapping) else None
        if not isinstance(entry, Mapping) or io not in entry:
            hooked = sorted(k for k, v in io_dict.items() if isinstance(v, Mapping) and v) \
                if isinstance(io_dict, Mapping) else []
            hint = ""
            if not path.startswith("student_model.") and f"student_model.{path}" in io_dict:
                hint = f" Paths are relative to the wrapper: use 'student_model.{path}'."
            raise ValueError(
                f"{owner}: adapter {name!r} reads io_dict[{path!r}][{io!r}], which was not captured (hooked: "
                f"{hooked}). Add {path!r} to train.student.forward_hook.{io} in the YAML, next to 'adapters.{name}'."
                f"{hint}"
            )
        value = entry[io]
        if name not in self._checked:
            expected = self.adapters[name].in_channels
            if not isinstance(value, Tensor) or value.dim() != 4 or value.shape[1] != expected:
                got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(
                    f"{owner}: adapter {name!r} expects (B, {expected}, H, W) from {path!r} ({io}) but the hooked "
                    f"tensor is {got}. Set adapters.{name}.in_channels to the layer's channel count, or hook a "
                    "convolutional layer."
                )
            self._checked.add(name)
        return value

    def secondary_forward(self, io_dict: Mapping[str, Any], *args: Any, **kwargs: Any) -> None:
        # The results are discarded on purpose: hooks on `adapters.<name>` put them into the io_dict.
        for name, adapter in self.adapters.items():
            adapter(self._source_tensor(name, io_dict))

