"""torchdistill's registry dicts, as the checks read them (model keys come from :mod:`geokt_plugin.models`)."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torchvision  # noqa: F401  (torchdistill.datasets needs sys.modules['torchvision.datasets'])

__all__ = ["PROCESS_NAMES", "Registries", "public_keys"]

# The per-stage process keys besides forward_proc, in the order they are checked.
PROCESS_NAMES = ("pre_epoch_process", "pre_forward_process", "post_forward_process", "post_epoch_process")


@dataclass(frozen=True)
class Registries:
    """torchdistill's registries; :meth:`load` them after the config's dependencies are imported."""

    high_level: Mapping[str, Any]
    mid_level: Mapping[str, Any]
    low_level: Mapping[str, Any]
    loss_wrapper: Mapping[str, Any]
    func2extract: Mapping[str, Any]
    aux_wrapper: Mapping[str, Any]
    optimizer: Mapping[str, Any]
    scheduler: Mapping[str, Any]
    procs: Mapping[str, Mapping[str, Any]]  # "forward_proc" and each of PROCESS_NAMES

    @classmethod
    def load(cls) -> Registries:
        """Read the registries as they are now (what is imported so far has registered its keys)."""
        import torchdistill.core  # noqa: F401  (fills the forward/pre/post process registries)
        import torchdistill.losses  # noqa: F401
        import torchdistill.models  # noqa: F401
        from torchdistill.core.interfaces import registry as proc
        from torchdistill.losses import registry as loss
        from torchdistill.models import registry as model
        from torchdistill.optim import registry as optim

        return cls(
            high_level=loss.HIGH_LEVEL_LOSS_DICT,
            mid_level=loss.MIDDLE_LEVEL_LOSS_DICT,
            low_level={**loss.LOSS_DICT, **loss.LOW_LEVEL_LOSS_DICT},
            loss_wrapper=loss.LOSS_WRAPPER_DICT,
            func2extract=loss.FUNC2EXTRACT_MODEL_OUTPUT_DICT,
            aux_wrapper=model.AUXILIARY_MODEL_WRAPPER_DICT,
            optimizer=optim.OPTIM_DICT,
            scheduler=optim.SCHEDULER_DICT,
            procs={
                "forward_proc": proc.FORWARD_PROC_FUNC_DICT,
                "pre_epoch_process": proc.PRE_EPOCH_PROC_FUNC_DICT,
                "pre_forward_process": proc.PRE_FORWARD_PROC_FUNC_DICT,
                "post_forward_process": proc.POST_FORWARD_PROC_FUNC_DICT,
                "post_epoch_process": proc.POST_EPOCH_PROC_FUNC_DICT,
            },
        )

    def mid_level_keys(self) -> list[str]:
        """Keys a ``sub_terms`` criterion may use: mid-level losses and torch's losses."""
        # torch.nn.modules.loss also exports helpers (Module, Tensor, ...); only suggest real losses.
        low = [k for k in self.low_level if k.endswith("Loss") and not k.startswith("_")]
        return sorted(set(self.mid_level) | set(low))

    def loss_class(self, key: str) -> Any:
        """The class a ``sub_terms`` criterion key names (``None`` when neither level has it)."""
        return self.mid_level.get(key) or self.low_level.get(key)


def public_keys(registry: Mapping[str, Any], base: type | None = None) -> list[str]:
    """The keys of ``registry`` worth suggesting: no ``_`` prefix and, with ``base``, only its subclasses."""
    keys = []
    for k, v in registry.items():
        if k.startswith("_"):
            continue
        if base is not None and inspect.isclass(v) and not issubclass(v, base):
            continue
        keys.append(k)
    return sorted(keys)
