"""torchdistill's boxes, subclassed for the runner: the one module that touches torchdistill's internals.

Written against torchdistill 1.1.5. The boxes parse the config, set the hooks and build the criterion, optimizer and
scheduler; they are built with ``accelerator=None`` (their accelerator path reads the ``use_fp16`` attribute that
accelerate removed). The subclasses give the runner one interface for distillation and teacher-free training
(``student``, ``plain_student``, ``teacher``, ``stage``, ``begin_epoch``, ``end_epoch``, ...) and a
``forward_process`` that survives DDP and records every loss term. :data:`RELIED_ON` lists each torchdistill name
used here; tests/runner/test_torchdistill_internals.py checks them, so an upgrade that changes one fails loudly.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torchdistill.core.distillation import DistillationBox, MultiStagesDistillationBox
from torchdistill.core.training import MultiStagesTrainingBox, TrainingBox

from ..config import ConfigError
from ..config.stages import stage_keys
from .distributed import unwrap

__all__ = ["RELIED_ON", "TORCHDISTILL_VERSION", "RunnerBox", "GeoKTDistillationBox", "GeoKTMultiStagesDistillationBox",
           "GeoKTMultiStagesTrainingBox", "GeoKTTrainingBox", "build_box"]

TORCHDISTILL_VERSION = "1.1.5"

# What this module reads or calls on torchdistill's objects (checked by the test named in the docstring):
# methods with their leading parameters (passed positionally, in this order), and the instance attributes a built
# box (or criterion) must have.
_COMMON_ATTRS = ("criterion", "extract_model_loss", "device", "optimizer", "lr_scheduler", "scheduling_step",
                 "train_data_loader", "val_data_loader", "dataset_dict", "grad_accum_step", "max_grad_norm",
                 "stage_grad_count", "num_epochs")
_COMMON_METHODS = {"forward_process": ("sample_batch", "targets", "supp_dict"), "pre_epoch_process": (),
                   "post_epoch_process": (), "clean_modules": ()}
_BOX_ARGS = ("dataset_dict", "train_config", "device", "device_ids", "distributed", "lr_factor", "accelerator")
_DISTILL_INIT = {"__init__": ("teacher_model", "student_model", *_BOX_ARGS)}
_TRAIN_INIT = {"__init__": ("model", *_BOX_ARGS)}
_STAGE_ATTRS = ("stage_number", "stage_end_epoch", "current_epoch")
_STAGE_METHODS = {"advance_to_next_stage": (), "save_stage_ckpt": ("model", "local_model_config")}
_DISTILL_ATTRS = ("teacher_model", "student_model", "org_teacher_model", "org_student_model", "teacher_updatable",
                  "teacher_forward_proc", "student_forward_proc", "teacher_io_dict", "student_io_dict")
_TRAIN_ATTRS = ("model", "org_model", "model_forward_proc", "model_io_dict")
RELIED_ON: dict[str, dict[str, Any]] = {
    "DistillationBox": {"methods": {**_DISTILL_INIT, **_COMMON_METHODS},
                        "attributes": _COMMON_ATTRS + _DISTILL_ATTRS},
    "MultiStagesDistillationBox": {"methods": {**_DISTILL_INIT, **_COMMON_METHODS, **_STAGE_METHODS},
                                   "attributes": _COMMON_ATTRS + _DISTILL_ATTRS + _STAGE_ATTRS},
    "TrainingBox": {"methods": {**_TRAIN_INIT, **_COMMON_METHODS}, "attributes": _COMMON_ATTRS + _TRAIN_ATTRS},
    "MultiStagesTrainingBox": {"methods": {**_TRAIN_INIT, **_COMMON_METHODS, **_STAGE_METHODS},
                               "attributes": _COMMON_ATTRS + _TRAIN_ATTRS + _STAGE_ATTRS},
    "WeightedSumLoss": {"methods": {"forward": ("io_dict", "model_loss_dict", "targets")},
                        "attributes": ("term_dict",)},  # term_dict: {name: (criterion, weight)}
    "AuxiliaryModelWrapper": {"methods": {"secondary_forward": (), "post_epoch_process": ()}, "attributes": ()},
    "torchdistill.core.util": {"functions": {"extract_io_dict": ("model_io_dict", "target_device"),
                                             "update_io_dict": ("main_io_dict", "sub_io_dict")}},
    "torchdistill.common.constant": {"values": {"SELF_MODULE_PATH": "."}},
}


class _TermProbe(nn.Module):
    """Calls one ``WeightedSumLoss`` sub-term and keeps its value so the runner can log and check it."""

    def __init__(self, name: str, inner: nn.Module, sink: dict[str, Tensor]) -> None:
        super().__init__()
        self.name = name
        self.inner = inner
        self.sink = sink

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        value = self.inner(*args, **kwargs)
        self.sink[self.name] = value
        return value

    def __str__(self) -> str:  # WeightedSumLoss.__str__ formats its terms with str()
        return str(self.inner)


class RunnerBox:
    """What the runner needs from a box, the same for distillation and teacher-free training (mixed in first)."""

    term_values: dict[str, Tensor]
    term_weights: dict[str, float]
    last_outputs: Any
    fast_forwarding: bool = False

    # -- the models: the student as trained (aux wrapper, maybe DDP-wrapped), plain, and the instructor --
    student: nn.Module
    plain_student: nn.Module
    teacher: nn.Module | None
    teacher_trainable: bool

    @property
    def teacher_for_eval(self) -> nn.Module | None:
        """The instructor as a classifier: the box's (an input-adapting wrapper included), unless a stage cut it
        into a ``sequential`` feature extractor; then the original model."""
        teacher = self.teacher
        if teacher is None:
            return None
        if isinstance(unwrap(teacher), nn.Sequential) and unwrap(teacher) is not self.org_teacher_model:
            return self.org_teacher_model
        return teacher

    @property
    def stage(self) -> int:
        """The current stage (1 for a single-stage config)."""
        return getattr(self, "stage_number", 1)

    @property
    def grad_accum(self) -> int:
        """Backward passes per optimizer step."""
        return int(self.grad_accum_step or 1)

    def install_term_probes(self) -> None:
        """Wrap each ``WeightedSumLoss`` term so its value lands in ``term_values`` (weights in ``term_weights``)."""
        self.term_values = {}
        self.term_weights = {}
        term_dict = getattr(self.criterion, "term_dict", None)
        if isinstance(term_dict, dict):
            for name, (criterion, weight) in list(term_dict.items()):
                inner = criterion.inner if isinstance(criterion, _TermProbe) else criterion
                term_dict[name] = (_TermProbe(str(name), inner, self.term_values), weight)
                self.term_weights[str(name)] = float(weight)

    @staticmethod
    def _secondary(model: nn.Module, io_dict: dict) -> None:
        from torchdistill.models.wrapper import AuxiliaryModelWrapper

        inner = unwrap(model)
        if isinstance(inner, AuxiliaryModelWrapper):
            inner.secondary_forward(io_dict)

    def _collect(self, model: nn.Module, hooked: dict, outputs: Any) -> dict:
        """The io_dict of one forward pass; ``secondary_forward`` on the unwrapped model (an ``isinstance`` test on a
        DDP-wrapped wrapper, as torchdistill's, would skip it)."""
        from torchdistill.common.constant import SELF_MODULE_PATH
        from torchdistill.core.util import extract_io_dict, update_io_dict

        io_dict = extract_io_dict(hooked, self.device)
        io_dict[SELF_MODULE_PATH]["output"] = outputs
        self._secondary(model, io_dict)
        update_io_dict(io_dict, extract_io_dict(hooked, self.device))  # what hooks on the adapters captured
        return io_dict

    def save_stage_ckpt(self, model: nn.Module, local_model_config: dict) -> None:
        # While --resume replays finished stages, do not overwrite their dst_ckpt files with untrained weights.
        if not self.fast_forwarding:
            super().save_stage_ckpt(model, local_model_config)  # type: ignore[misc]

    def fast_forward(self, completed_epochs: int) -> None:
        """Advance a multi-stage box to the stage that holds epoch ``completed_epochs`` (no training)."""
        if not hasattr(self, "stage_end_epoch"):
            return
        self.fast_forwarding = True
        try:
            while self.stage_end_epoch <= completed_epochs and self.stage_end_epoch < self.num_epochs:
                self.current_epoch = self.stage_end_epoch
                self.advance_to_next_stage()
            self.current_epoch = completed_epochs
        finally:
            self.fast_forwarding = False

    def count_backward(self) -> None:
        """Count one backward pass (torchdistill's step-wise scheduler clock)."""
        self.stage_grad_count += 1

    @property
    def backward_count(self) -> int:
        """Backward passes in this stage (saved in checkpoints as ``stage_grad_count``)."""
        return self.stage_grad_count

    @backward_count.setter
    def backward_count(self, value: int) -> None:
        self.stage_grad_count = int(value)

    def step_scheduler(self) -> None:
        """The step-wise scheduler (``scheduling_step`` > 0), after an optimizer step; epoch-wise ones wait."""
        from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, ReduceLROnPlateau

        scheduler, every = self.lr_scheduler, self.scheduling_step
        if scheduler is None or not every or every <= 0 or self.stage_grad_count % every:
            return
        if isinstance(scheduler, ReduceLROnPlateau):
            return
        inner = getattr(scheduler, "scheduler", scheduler)
        if isinstance(inner, CosineAnnealingWarmRestarts):
            scheduler.step(self.stage_grad_count // every)
        else:
            scheduler.step()

    def begin_epoch(self, epoch: int) -> None:
        """torchdistill's pre-epoch process (train mode); a frozen instructor stays in eval mode."""
        self.pre_epoch_process(epoch=epoch)
        if self.teacher is not None and not self.teacher_trainable:
            self.teacher.eval()

    def end_epoch(self, metrics: float | None) -> bool:
        """torchdistill's post-epoch process (epoch-wise scheduler, stage advance); True when a new stage began."""
        from torchdistill.models.wrapper import AuxiliaryModelWrapper

        before = self.stage
        self.post_epoch_process(metrics=metrics)
        inner = unwrap(self.student)
        if inner is not self.student and isinstance(inner, AuxiliaryModelWrapper):
            inner.post_epoch_process()  # skipped by torchdistill's isinstance test under DDP
        return self.stage != before


class _DistillationForward(RunnerBox):
    @property
    def student(self) -> nn.Module:
        return self.student_model

    @student.setter
    def student(self, value: nn.Module) -> None:
        self.student_model = value

    @property
    def plain_student(self) -> nn.Module:
        return self.org_student_model

    @property
    def teacher(self) -> nn.Module | None:
        return self.teacher_model

    @teacher.setter
    def teacher(self, value: nn.Module) -> None:
        self.teacher_model = value

    @property
    def teacher_trainable(self) -> bool:
        return bool(self.teacher_updatable)

    def forward_process(self, sample_batch: Any, targets: Any = None, supp_dict: dict | None = None,
                        **kwargs: Any) -> Tensor:
        supp = {} if supp_dict is None else supp_dict
        self.term_values.clear()
        if self.teacher_updatable:
            t_out = self.teacher_forward_proc(self.teacher_model, sample_batch, targets, supp, **kwargs)
        else:
            with torch.no_grad():
                t_out = self.teacher_forward_proc(self.teacher_model, sample_batch, targets, supp, **kwargs)
        t_io = self._collect(self.teacher_model, self.teacher_io_dict, t_out)
        s_out = self.student_forward_proc(self.student_model, sample_batch, targets, supp_dict, **kwargs)
        s_io = self._collect(self.student_model, self.student_io_dict, s_out)
        self.last_outputs = s_out
        model_loss_dict = self.extract_model_loss(s_out, targets, supp_dict=supp_dict)
        return self.criterion({"teacher": t_io, "student": s_io}, model_loss_dict, targets)


class _TrainingForward(RunnerBox):
    teacher = None
    teacher_trainable = False

    @property
    def student(self) -> nn.Module:
        return self.model

    @student.setter
    def student(self, value: nn.Module) -> None:
        self.model = value

    @property
    def plain_student(self) -> nn.Module:
        return self.org_model

    def forward_process(self, sample_batch: Any, targets: Any = None, supp_dict: dict | None = None,
                        **kwargs: Any) -> Tensor:
        self.term_values.clear()
        out = self.model_forward_proc(self.model, sample_batch, targets, supp_dict, **kwargs)
        io_dict = self._collect(self.model, self.model_io_dict, out)
        self.last_outputs = out
        model_loss_dict = self.extract_model_loss(out, targets, supp_dict=supp_dict)
        return self.criterion({"student": io_dict, "teacher": {}}, model_loss_dict, targets)


class GeoKTDistillationBox(_DistillationForward, DistillationBox):
    """torchdistill's ``DistillationBox`` with the runner's interface."""


class GeoKTMultiStagesDistillationBox(_DistillationForward, MultiStagesDistillationBox):
    """torchdistill's ``MultiStagesDistillationBox`` with the runner's interface."""


class GeoKTTrainingBox(_TrainingForward, TrainingBox):
    """torchdistill's ``TrainingBox`` (no instructor) with the runner's interface."""


class GeoKTMultiStagesTrainingBox(_TrainingForward, MultiStagesTrainingBox):
    """torchdistill's ``MultiStagesTrainingBox`` with the runner's interface."""


def build_box(config: dict, teacher: nn.Module | None, student: nn.Module, device: torch.device) -> RunnerBox:
    """torchdistill's box, built with accelerator=None (the runner prepares its parts afterwards)."""
    train = config["train"]
    multi = bool(stage_keys(train))
    datasets = config["datasets"]
    try:
        if teacher is not None:
            cls = GeoKTMultiStagesDistillationBox if multi else GeoKTDistillationBox
            return cls(teacher, student, datasets, train, device, None, False, 1, accelerator=None)
        train = copy.copy(train)
        if multi:
            for key in stage_keys(train):
                train[key] = _student_as_model(train[key])
        else:
            train = _student_as_model(train)
        cls = GeoKTMultiStagesTrainingBox if multi else GeoKTTrainingBox
        return cls(student, datasets, train, device, None, False, 1, accelerator=None)
    except ConfigError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ConfigError(f"building torchdistill's box from train: failed with {type(exc).__name__}: {exc}. "
                          "Run `geokt-train --check --config ...` for a precise diagnosis.") from exc


def _student_as_model(section: Mapping) -> dict:
    """TrainingBox reads `model:`; a teacher-free config may call the same block `student:`."""
    section = dict(section)
    if "model" not in section and "student" in section:
        section["model"] = section.pop("student")
    section.pop("teacher", None)
    return section
