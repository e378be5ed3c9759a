"""What the checks share: the config and its report, the registries, and the facts one check hands to another.

Each fact is set once by :func:`geokt_plugin.config.check.check_config` from the return value of the check that
produces it, before any check that reads it runs; the field docs name both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .errors import Report
from .registries import Registries

__all__ = ["CheckContext", "Datasets", "ModelRecipe"]


@dataclass(frozen=True)
class ModelRecipe:
    """How to build one of ``models.*`` again, on any device, for the checks."""

    key: str
    factory: Callable[..., nn.Module]
    kwargs: Mapping

    def build(self, device: torch.device) -> nn.Module:
        """The model on ``device`` (``meta``: shapes only), never downloading pretrained weights."""
        kwargs = dict(self.kwargs)
        if kwargs.get("pretrained"):
            kwargs["pretrained"] = False
        if kwargs.get("weights") is not None:
            kwargs["weights"] = None
        with torch.device(device):
            return self.factory(**kwargs)


@dataclass(frozen=True)
class Datasets:
    """The ``datasets`` section as checked."""

    entries: Mapping = field(default_factory=dict)  # dataset id -> dataset object (or whatever the YAML built)
    unusable: frozenset = frozenset()  # ids whose entries are no dataset, or empty: no sample is read from them


@dataclass
class CheckContext:
    """The state every check reads and writes.

    Attributes:
        config: the loaded config (never modified).
        config_path: the file it came from, for messages.
        device: the device the run will use.
        report: where every check records its problems and notes.
        registries: torchdistill's registries, read after the config's dependencies were imported.
        load_checkpoints: load each ``src_ckpt`` (``False``: existence only).
        input_shape: the caller's ``(C, H, W)`` for the dummy forward, if any.
        uses_geokt_dependency: the config's ``dependencies`` import geokt_plugin. Produced by
            ``environment_check.check_dependencies``; read by every registry-key check.
        models: the buildable ``models.*`` entries (torch.hub ones excluded). Produced by
            ``models_check.check_models``; read by ``roles_check`` to build what each stage hooks.
        datasets: produced by ``datasets_check.check_datasets``; read by ``loaders_check.check_loader``.
        sample_shape: ``(C, H, W)`` of the first stage's first training sample. Produced by
            ``stages_check.check_loaders``; read by ``forward_check.input_shape``.
        train_batch: the first batch of the latest stage's training loader that was read. Produced by
            ``stages_check.check_loaders``; read by ``exercise_check.exercise_criterion``.
        train_batches: that loader's batches per epoch; read by ``optim_check`` to count scheduler steps.
    """

    config: Mapping
    config_path: str
    device: str
    report: Report
    registries: Registries
    load_checkpoints: bool = True
    input_shape: Sequence[int] | None = None
    uses_geokt_dependency: bool = False
    models: dict[str, ModelRecipe] = field(default_factory=dict)
    datasets: Datasets = field(default_factory=Datasets)
    sample_shape: tuple[int, ...] | None = None
    train_batch: Any = None
    train_batches: int | None = None

    @property
    def has_teacher(self) -> bool:
        """The config has a ``models.teacher_model``."""
        models = self.config.get("models")
        return isinstance(models, Mapping) and models.get("teacher_model") is not None
