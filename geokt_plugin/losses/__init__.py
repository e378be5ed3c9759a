"""The geometric local-activation losses: one file per loss, each a pure function plus its registered module.

Layout: ``checks`` (argument checks), ``geometry`` (point sets, distances), ``kernel`` (the row-blocked fused
autograd kernel every loss runs on), ``base`` (the shared module base), ``distance`` / ``neighbor_kl`` /
``neighbor_rank`` / ``neighborhood_contrast`` (the losses; ``tree``: the last one's instructor graph), ``spec`` (the
:class:`LossSpec` table), ``compiled`` (``torch.compile`` of the per-block work and the switch every compiled path
obeys), ``native`` (the C++ kernels on CPU, source in ``csrc/``), ``paths`` (the kernel paths by name).
The definitions are in docs/losses.md.
Importing this package registers the ``GeoKT*`` keys in torchdistill's registry.
"""

from .base import GeoKTLoss
from .compiled import compile_report, set_compile
from .distance import GeoKTDistanceLoss, local_distance_loss
from .kernel import BlockLoss, Blocks
from .native import set_native
from .neighbor_kl import GeoKTNeighborKLLoss, neighbor_kl_loss
from .neighbor_rank import GeoKTNeighborRankLoss, neighbor_rank_loss
from .neighborhood_contrast import GeoKTNeighborhoodContrastLoss, neighborhood_contrast_loss
from .paths import KERNEL_PATHS, select_path
from .spec import LOSS_SPECS, LossSpec, loss_spec, register_loss_spec

__all__ = [
    "KERNEL_PATHS",
    "LOSS_SPECS",
    "BlockLoss",
    "Blocks",
    "GeoKTDistanceLoss",
    "GeoKTLoss",
    "GeoKTNeighborhoodContrastLoss",
    "GeoKTNeighborKLLoss",
    "GeoKTNeighborRankLoss",
    "LossSpec",
    "local_distance_loss",
    "loss_spec",
    "neighbor_kl_loss",
    "neighbor_rank_loss",
    "neighborhood_contrast_loss",
    "compile_report",
    "register_loss_spec",
    "select_path",
    "set_compile",
    "set_native",
]
