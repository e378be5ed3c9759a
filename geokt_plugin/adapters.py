"""Adapters: tensor-to-tensor modules and the auxiliary model wrappers that hold them.

- :class:`GeoKTInputAdapter` maps a batch prepared for one network (e.g. 1-channel 28x28 Fashion-MNIST) to what
  another network expects (e.g. 3-channel 32x32 with other normalisation): re-normalise, resize, mix channels.
- :class:`GeoKTTeacherInputWrapper` runs the instructor behind a :class:`GeoKTInputAdapter`, so an instructor
  trained on other data or at another resolution can teach this student. Hook paths are relative to the wrapper:
  ``teacher_model.layer2``.
- :class:`GeoKTHeadAdapter` is a 1x1 conv + BatchNorm head with explicit channel counts.
- :class:`GeoKTStudentWrapper` holds the student and named :class:`GeoKTHeadAdapter` heads; ``forward`` is the
  student's, ``secondary_forward(io_dict)`` runs each head on a hooked student tensor, and losses read the head
  outputs through hooks on ``adapters.<name>``. This is how FitNets runs single-stage (``MSELoss`` between
  ``adapters.hint`` and the instructor's layer).

The wrappers never wrap anything in DDP themselves: the runner's ``accelerator.prepare`` owns DDP for the whole
student wrapper (student and heads together), and the frozen instructor is never DDP-wrapped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchdistill.models.wrapper import AuxiliaryModelWrapper

from ._registry import register_adaptation_module, register_auxiliary_model_wrapper

__all__ = ["GeoKTHeadAdapter", "GeoKTInputAdapter", "GeoKTStudentWrapper", "GeoKTTeacherInputWrapper"]

_MIX_MODES = ("repeat", "fixed", "learnable")
# The keyword arguments torchdistill's build_auxiliary_model_wrapper always passes; the wrappers accept and ignore
# them (DDP is the runner's job, and modules follow the wrapper when it is moved).
_TORCHDISTILL_KWARGS = ("device", "device_ids", "distributed")


def _per_channel(owner: str, name: str, value: float | Sequence[float] | None, channels: int) -> Tensor | None:
    if value is None:
        return None
    values = [float(value)] if isinstance(value, (int, float)) else [float(v) for v in value]
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{owner}: {name} has {len(values)} values but the tensor it applies to has {channels} "
                         f"channels; give one value or {channels}.")
    if name.endswith("std") and any(v <= 0 for v in values):
        raise ValueError(f"{owner}: {name}={values} must be positive.")
    return torch.tensor(values, dtype=torch.float32).view(1, channels, 1, 1)


def _positive_int(owner: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}.")
    return value


@register_adaptation_module
class GeoKTInputAdapter(nn.Module):
    """Map an input batch normalised for one network to another network's input convention.

    In order: undo ``in_mean``/``in_std``, resize to ``size``, map ``in_channels`` to ``out_channels``, apply
    ``out_mean``/``out_std``. Means and stds are per channel (one value is broadcast).

    Args:
        in_channels: channels of the incoming batch.
        out_channels: channels the receiving network expects.
        size: output ``H = W`` (or ``[H, W]``); ``None`` keeps the input size.
        mix: ``"repeat"`` (1 -> N channels by copying; also the identity when channels match), ``"fixed"``
            (a constant ``out_channels x in_channels`` matrix ``weight``) or ``"learnable"`` (a trainable 1x1
            convolution initialised to ``weight`` or to an average/copy).
        weight: the mixing matrix for ``"fixed"`` / the initial one for ``"learnable"``.
        in_mean, in_std: normalisation of the incoming batch (``None``: the batch is not normalised).
        out_mean, out_std: normalisation the receiving network expects (``None``: leave unnormalised).
        interpolation: ``"bilinear"`` (with antialias when shrinking) or ``"nearest"``.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, *size)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 3,
        *,
        size: int | Sequence[int] | None = None,
        mix: str = "repeat",
        weight: Sequence[Sequence[float]] | None = None,
        in_mean: float | Sequence[float] | None = None,
        in_std: float | Sequence[float] | None = None,
        out_mean: float | Sequence[float] | None = None,
        out_std: float | Sequence[float] | None = None,
        interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _positive_int(owner, "in_channels", in_channels)
        self.out_channels = _positive_int(owner, "out_channels", out_channels)
        if size is None:
            self.size = None
        else:
            pair = [size, size] if isinstance(size, int) else list(size)
            if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in pair):
                raise ValueError(f"{owner}: size must be a positive int or [H, W], got {size!r}.")
            self.size = (pair[0], pair[1])
        if mix not in _MIX_MODES:
            raise ValueError(f"{owner}: unknown mix {mix!r}; choose one of {list(_MIX_MODES)}.")
        if interpolation not in ("bilinear", "nearest"):
            raise ValueError(f"{owner}: unknown interpolation {interpolation!r}; choose 'bilinear' or 'nearest'.")
        self.mix = mix
        self.interpolation = interpolation
        if mix == "repeat" and in_channels not in (1, out_channels):
            raise ValueError(f"{owner}: mix 'repeat' maps 1 channel to {out_channels} (or keeps equal counts), but "
                             f"in_channels={in_channels}. Use mix: 'fixed' with a weight matrix, or 'learnable'.")
        if weight is None and mix == "fixed":
            raise ValueError(f"{owner}: mix 'fixed' needs weight: an out_channels x in_channels matrix "
                             f"({out_channels} x {in_channels}).")
        matrix = None
        if weight is not None:
            matrix = torch.tensor(weight, dtype=torch.float32)
            if matrix.shape != (out_channels, in_channels):
                raise ValueError(f"{owner}: weight has shape {tuple(matrix.shape)}, expected (out_channels, "
                                 f"in_channels) = ({out_channels}, {in_channels}).")
        elif mix == "learnable":
            # Copy when one side has a single channel, else average: a neutral start.
            matrix = torch.full((out_channels, in_channels), 1.0 / in_channels)
        if mix == "learnable":
            self.mixer: nn.Conv2d | None = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False)
            with torch.no_grad():
                self.mixer.weight.copy_(matrix.view(out_channels, in_channels, 1, 1))
            self.register_buffer("mix_weight", None)
        else:
            self.mixer = None
            self.register_buffer("mix_weight", None if matrix is None else matrix.view(out_channels, in_channels, 1, 1))
        for name, value, channels in (("in_mean", in_mean, in_channels), ("in_std", in_std, in_channels),
                                      ("out_mean", out_mean, out_channels), ("out_std", out_std, out_channels)):
            self.register_buffer(name, _per_channel(owner, name, value, channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected a (B, {self.in_channels}, H, W) batch, got "
                             f"{tuple(x.shape)}. Set in_channels to the channels of the data the student sees.")
        if self.in_std is not None:
            x = x * self.in_std.to(x.dtype)
        if self.in_mean is not None:
            x = x + self.in_mean.to(x.dtype)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            if self.interpolation == "nearest":
                x = F.interpolate(x, size=self.size, mode="nearest")
            else:
                x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        if self.mixer is not None:
            x = self.mixer(x)
        elif self.mix_weight is not None:
            x = F.conv2d(x, self.mix_weight.to(x.dtype))
        elif self.in_channels != self.out_channels:
            x = x.expand(-1, self.out_channels, -1, -1)
        if self.out_mean is not None:
            x = x - self.out_mean.to(x.dtype)
        if self.out_std is not None:
            x = x / self.out_std.to(x.dtype)
        return x

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, size={self.size}, "
                f"mix={self.mix!r}, interpolation={self.interpolation!r}")


@register_adaptation_module
class GeoKTHeadAdapter(nn.Module):
    """A trainable 1x1 convolution + BatchNorm head mapping ``in_channels`` to ``out_channels`` feature maps.

    Args:
        in_channels: channels of the hooked student tensor.
        out_channels: channels of the target (e.g. the instructor's layer, for a FitNets hint).
        batch_norm: append ``BatchNorm2d(out_channels)``.
        relu: append a ReLU.

    Shape:
        ``(B, in_channels, H, W) -> (B, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, batch_norm: bool = True, relu: bool = False) -> None:
        super().__init__()
        owner = type(self).__name__
        self.in_channels = _positive_int(owner, "in_channels", in_channels)
        self.out_channels = _positive_int(owner, "out_channels", out_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else nn.Identity()
        self.relu = nn.ReLU(inplace=False) if relu else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.bn(self.conv(x)))


def _reject_unknown(owner: str, kwargs: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError(f"{owner}: unknown keyword argument(s) {unknown}; allowed: {sorted(allowed)}.")


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
        _reject_unknown(owner, kwargs, _TORCHDISTILL_KWARGS)
        if not isinstance(teacher_model, nn.Module):
            raise TypeError(f"{owner}: teacher_model must be an nn.Module (torchdistill passes it when the wrapper is "
                            "configured under train.teacher.auxiliary_model_wrapper), got "
                            f"{type(teacher_model).__name__}.")
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

    _ENTRY_KEYS = ("path", "io", "in_channels", "out_channels", "batch_norm", "relu")

    def __init__(
        self, student_model: nn.Module | None = None, *, adapters: Mapping[str, Mapping[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        _reject_unknown(owner, kwargs, _TORCHDISTILL_KWARGS)
        if not isinstance(student_model, nn.Module):
            raise TypeError(f"{owner}: student_model must be an nn.Module (torchdistill passes it when the wrapper is "
                            "configured under train.student.auxiliary_model_wrapper), got "
                            f"{type(student_model).__name__}.")
        if adapters is None:
            adapters = {}
        if not isinstance(adapters, Mapping):
            raise TypeError(f"{owner}: adapters must be a mapping {{name: {{path, io, in_channels, out_channels}}}}, "
                            f"got {type(adapters).__name__}.")
        self.student_model = student_model
        self.adapters = nn.ModuleDict()
        self.sources: dict[str, tuple[str, str]] = {}
        for name, entry in adapters.items():
            where = f"{owner}: adapters.{name}"
            if not isinstance(name, str) or not name or "." in name:
                raise ValueError(f"{owner}: adapter name {name!r} must be a non-empty string without '.'.")
            if not isinstance(entry, Mapping):
                raise TypeError(f"{where} must be a mapping with path, io, in_channels, out_channels; got {entry!r}.")
            unknown = sorted(set(entry) - set(self._ENTRY_KEYS))
            if unknown:
                raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {list(self._ENTRY_KEYS)}.")
            missing = [k for k in ("path", "in_channels", "out_channels") if k not in entry]
            if missing:
                raise ValueError(f"{where}: missing {missing}; e.g. {{path: 'student_model.layer2', io: 'output', "
                                 "in_channels: 32, out_channels: 32}.")
            path, io = entry["path"], entry.get("io", "output")
            if not isinstance(path, str) or not path:
                raise ValueError(f"{where}: path must be a hooked module path such as 'student_model.layer2', got "
                                 f"{path!r}.")
            if io not in ("input", "output"):
                raise ValueError(f"{where}: io must be 'input' or 'output', got {io!r}.")
            self.adapters[name] = GeoKTHeadAdapter(
                entry["in_channels"], entry["out_channels"], batch_norm=bool(entry.get("batch_norm", True)),
                relu=bool(entry.get("relu", False)),
            )
            self.sources[name] = (path, io)
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
