"""A box prepared by Accelerate: the student, optimizer, loaders and scheduler of the current stage, re-prepared at
each stage change, plus the state of the wrapper (adapters) that the plain student does not hold."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor

from ..config import ConfigError
from .boxes import RunnerBox
from .distributed import unwrap
from .loaders import EpochSeededSampler, reseeded_loader

__all__ = ["Session"]

logger = logging.getLogger(__name__)


class Session:
    """One box and the accelerator that runs it; ``seed`` orders the training data (see :class:`EpochSeededSampler`)."""

    def __init__(self, box: RunnerBox, accelerator: Any, seed: int) -> None:
        self.box = box
        self.accelerator = accelerator
        self.seed = seed
        self.sampler: EpochSeededSampler | None = None

    def prepare(self) -> None:
        """accelerator.prepare the current stage's student, optimizer, loaders and scheduler; assign them back."""
        box, acc = self.box, self.accelerator
        if box.optimizer is None:
            raise ConfigError("train.optimizer is required for the first stage (key and kwargs, e.g. SGD lr 0.1).")
        box.install_term_probes()
        train_loader = reseeded_loader(box.train_data_loader, self.seed)
        if train_loader is None:
            raise ConfigError("train.train_data_loader did not build a loader: its dataset_id must name an entry of "
                              f"datasets (have: {sorted(box.dataset_dict)}).")
        sampler = getattr(train_loader, "sampler", None)
        self.sampler = sampler if isinstance(sampler, EpochSeededSampler) else None
        objects: list[Any] = [box.student, box.optimizer, train_loader]
        if box.val_data_loader is not None:
            objects.append(box.val_data_loader)
        if box.lr_scheduler is not None:
            objects.append(box.lr_scheduler)
        prepared = list(acc.prepare(*objects))
        box.student, box.optimizer, box.train_data_loader = prepared[0], prepared[1], prepared[2]
        rest = prepared[3:]
        if box.val_data_loader is not None:
            box.val_data_loader = rest.pop(0)
        if box.lr_scheduler is not None:
            box.lr_scheduler = rest.pop(0)
        self._place_teacher()
        logger.debug("stage %d prepared: student %s, %d process(es), mixed precision %s", box.stage,
                     type(box.student).__name__, acc.num_processes, acc.mixed_precision)

    def _place_teacher(self) -> None:
        box, acc = self.box, self.accelerator
        if box.teacher is None:
            return
        if box.teacher_trainable:
            box.teacher = acc.prepare(box.teacher)
        else:
            # The frozen instructor: on the device, fp32, eval mode, never DDP-wrapped.
            box.teacher = box.teacher.to(acc.device).float().eval()

    def set_epoch(self, epoch: int) -> None:
        """Select the data order of ``epoch`` (the seeded sampler, and accelerate's loader where it has one)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        loader = self.box.train_data_loader
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(epoch)

    def extra_state(self) -> dict[str, Tensor]:
        """State of the trained wrapper that is not the plain student's (adapter heads), keyed as in the wrapper."""
        shared = {id(t) for t in self.box.plain_student.state_dict(keep_vars=True).values()}
        return {k: v.detach().clone() for k, v in unwrap(self.box.student).state_dict(keep_vars=True).items()
                if id(v) not in shared}

    def load_extra_state(self, extra: Mapping[str, Tensor], path: Path) -> None:
        """Load what :meth:`extra_state` saved; a key the config's wrapper lacks is a :class:`ConfigError`."""
        wrapper = unwrap(self.box.student)
        own = wrapper.state_dict()
        unknown = sorted(set(extra) - set(own))
        if unknown:
            raise ConfigError(f"--resume: {path} holds adapter state {unknown[:5]} that the config's wrapper lacks; "
                              "was it written by another config?")
        wrapper.load_state_dict({**own, **dict(extra)}, strict=True)
