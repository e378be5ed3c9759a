"""The public functional API of the geometric local-activation losses (implemented in :mod:`geokt_plugin.losses`).

The normative definition is ``docs/losses.md``. It is this project's precise formulation of what
Theodorakopoulos, Fotopoulou and Economou describe in "Geometric Regularization of Local Activations for
Knowledge Transfer in Convolutional Neural Networks" (Information 12(8):333, 2021); it is not the paper's own
equations, which we could not read.

Every loss compares two feature maps, the student's ``(B, Cs, Hs, Ws)`` and the instructor's ``(B, Ct, Ht, Wt)``.
Each spatial position is a *local feature* (a point in channel space); the losses compare the neighbourhood
geometry of those points, so ``Cs`` and ``Ct`` are free. Nothing here knows about torchdistill.
"""

from __future__ import annotations

from .losses.checks import (
    REDUCTIONS,
    SCOPES,
    check_choice,
    check_chunk_size,
    check_common,
    check_generator,
    check_max_points,
    check_neighbors,
    check_positive,
)
from .losses.distance import local_distance_loss
from .losses.geometry import normalized_distances, pairwise_sq_distances, point_sets
from .losses.neighbor_kl import neighbor_kl_loss
from .losses.neighbor_rank import neighbor_rank_loss
from .losses.neighborhood_contrast import neighborhood_contrast_loss

__all__ = [
    "REDUCTIONS",
    "SCOPES",
    "check_choice",
    "check_chunk_size",
    "check_common",
    "check_generator",
    "check_max_points",
    "check_neighbors",
    "check_positive",
    "local_distance_loss",
    "neighbor_kl_loss",
    "neighbor_rank_loss",
    "neighborhood_contrast_loss",
    "normalized_distances",
    "pairwise_sq_distances",
    "point_sets",
]
