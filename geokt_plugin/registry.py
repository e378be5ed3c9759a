"""Guarded registration into torchdistill's registries.

torchdistill's own ``register_*`` decorators assign into a plain dict, so a duplicate key silently replaces the
earlier entry (registering ``key='ATLoss'`` would change every config that uses the built-in). These wrappers
require the ``GeoKT`` prefix, refuse any key that is already taken, and remember what this package added. A model
key is also refused when ``torchvision.models`` has the name: torchdistill's example script looks there first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torchvision
from torchdistill.losses import registry as loss_registry
from torchdistill.models import registry as model_registry

__all__ = [
    "KEY_PREFIX",
    "register_adaptation_module",
    "register_auxiliary_model_wrapper",
    "register_mid_level_loss",
    "register_model",
    "registered_class",
    "registered_keys",
    "unregister",
]

KEY_PREFIX = "GeoKT"

T = TypeVar("T", bound=Callable)  # a class, or a model function

# kind -> (torchdistill registry dicts that must not already hold the key, the dict to write into)
_KINDS: dict[str, tuple[tuple[dict, ...], dict]] = {
    "mid_level_loss": (
        (loss_registry.MIDDLE_LEVEL_LOSS_DICT, loss_registry.LOW_LEVEL_LOSS_DICT, loss_registry.LOSS_DICT),
        loss_registry.MIDDLE_LEVEL_LOSS_DICT,
    ),
    "auxiliary_model_wrapper": (
        (model_registry.AUXILIARY_MODEL_WRAPPER_DICT,),
        model_registry.AUXILIARY_MODEL_WRAPPER_DICT,
    ),
    "adaptation_module": (
        (model_registry.ADAPTATION_MODULE_DICT, model_registry.MODULE_DICT),
        model_registry.ADAPTATION_MODULE_DICT,
    ),
    "model": ((model_registry.MODEL_DICT, vars(torchvision.models)), model_registry.MODEL_DICT),
}

_OURS: dict[str, dict[str, type]] = {kind: {} for kind in _KINDS}


def _same_class(a: type, b: type) -> bool:
    # importlib.reload re-creates the class object; same module and qualname is the same definition.
    return a is b or (a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__)


def _register(kind: str) -> Callable[[T], T]:
    def decorator(cls: T) -> T:
        key = cls.__name__
        if not key.startswith(KEY_PREFIX):
            raise ValueError(
                f"geokt_plugin registry: key {key!r} ({kind}) must start with {KEY_PREFIX!r} so it cannot shadow a "
                f"torchdistill built-in. Rename the class to {KEY_PREFIX}{key}."
            )
        guarded, target = _KINDS[kind]
        for registry in guarded:
            existing = registry.get(key)
            if existing is not None and not _same_class(existing, cls):
                raise ValueError(
                    f"geokt_plugin registry: key {key!r} is already registered as a {kind} by "
                    f"{existing.__module__}.{existing.__qualname__}; refusing to replace it with "
                    f"{cls.__module__}.{cls.__qualname__}. Rename one of the classes."
                )
        target[key] = cls
        _OURS[kind][key] = cls
        return cls

    return decorator


register_mid_level_loss = _register("mid_level_loss")
register_auxiliary_model_wrapper = _register("auxiliary_model_wrapper")
register_adaptation_module = _register("adaptation_module")
register_model = _register("model")


def registered_keys(kind: str | None = None) -> list[str]:
    """Sorted keys this package registered, of one ``kind`` or of all kinds.

    Args:
        kind: ``"mid_level_loss"``, ``"auxiliary_model_wrapper"``, ``"adaptation_module"``, ``"model"`` or ``None``.
    """
    if kind is None:
        return sorted(key for keys in _OURS.values() for key in keys)
    if kind not in _OURS:
        raise ValueError(f"Unknown registry kind {kind!r}; choose one of {sorted(_OURS)}.")
    return sorted(_OURS[kind])


def registered_class(kind: str, key: str) -> type:
    """The class this package registered under ``key``."""
    try:
        return _OURS[kind][key]
    except KeyError:
        raise ValueError(f"No {kind} {key!r} registered by geokt_plugin; known: {registered_keys(kind)}.") from None


def unregister(kind: str, key: str) -> None:
    """Remove a key this package registered (tests that register a temporary class clean up with this)."""
    cls = registered_class(kind, key)
    target = _KINDS[kind][1]
    if target.get(key) is cls:
        del target[key]
    del _OURS[kind][key]
