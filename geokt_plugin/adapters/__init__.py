"""Adapters: tensor-to-tensor modules and the auxiliary model wrappers that hold them.

- :class:`GeoKTInputAdapter` (``input``) maps a batch prepared for one network (e.g. 1-channel 28x28
  Fashion-MNIST) to what another network expects (e.g. 3-channel 32x32 with other normalisation): re-normalise,
  resize, mix channels.
- :class:`GeoKTTeacherInputWrapper` (``wrappers``) runs the instructor behind a :class:`GeoKTInputAdapter`, so an
  instructor trained on other data or at another resolution can teach this student. Hook paths are relative to the
  wrapper: ``teacher_model.layer2``.
- :class:`GeoKTHeadAdapter` (``head``) is a 1x1 conv + BatchNorm head with explicit channel counts.
- :class:`GeoKTStudentWrapper` (``wrappers``) holds the student and named :class:`GeoKTHeadAdapter` heads;
  ``forward`` is the student's, ``secondary_forward(io_dict)`` runs each head on a hooked student tensor, and losses
  read the head outputs through hooks on ``adapters.<name>``. This is how FitNets runs single-stage (``MSELoss``
  between ``adapters.hint`` and the instructor's layer).

Importing this package registers all four under their class names. The wrappers never wrap anything in DDP
themselves: the runner's ``accelerator.prepare`` owns DDP for the whole student wrapper (student and heads
together), and the frozen instructor is never DDP-wrapped.
"""

from __future__ import annotations

from .head import GeoKTHeadAdapter
from .input import GeoKTInputAdapter
from .wrappers import GeoKTStudentWrapper, GeoKTTeacherInputWrapper

__all__ = ["GeoKTHeadAdapter", "GeoKTInputAdapter", "GeoKTStudentWrapper", "GeoKTTeacherInputWrapper"]
