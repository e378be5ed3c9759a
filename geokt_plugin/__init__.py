"""Geometric knowledge transfer of local activations, as a torchdistill plugin.

Importing the package registers the ``GeoKT*`` losses, adapters and models in torchdistill's registries, so a YAML
``dependencies: [{name: geokt_plugin}]`` entry is all a config needs.
"""

import torchvision  # noqa: F401  (torchdistill.datasets reads sys.modules['torchvision.datasets'] at import)

from . import adapters, functional, losses, model_zoo  # noqa: F401  (registration side effects)
from .functional import local_distance_loss, neighbor_kl_loss, neighbor_rank_loss, neighborhood_contrast_loss
from .losses import (
    GeoKTDistanceLoss,
    GeoKTNeighborhoodContrastLoss,
    GeoKTNeighborKLLoss,
    GeoKTNeighborRankLoss,
)
from .registry import registered_keys

__version__ = "0.1.0"

__all__ = [
    "GeoKTDistanceLoss",
    "GeoKTNeighborhoodContrastLoss",
    "GeoKTNeighborKLLoss",
    "GeoKTNeighborRankLoss",
    "__version__",
    "functional",
    "local_distance_loss",
    "neighbor_kl_loss",
    "neighbor_rank_loss",
    "neighborhood_contrast_loss",
    "registered_keys",
]
