"""Model lookup: the one rule, shared by the runner and the config checks, for which callable a
``models.<role>.key`` names.

The order is the one of torchdistill's example script (``load_model`` in
``examples/torchvision/image_classification.py``), so that a config builds the same model there and in ``geokt-train``:
a callable of ``torchvision.models`` first (what ``torchdistill.models.official.get_image_classification_model``
returns), then torchdistill's model registry (its CIFAR ResNets and WRNs, our ``GeoKT*`` models, anything a config's
``dependencies`` registered). A ``repo_or_dir`` entry
means torch.hub, which only torchdistill's ``get_model`` knows how to reach.

One difference remains, where the script fails: a registry key that ``torchvision.models`` holds as a *module*
(``resnet``, ``densenet``) stops the script with ``TypeError: 'module' object is not callable``, while here it still
names the registry's model. :func:`script_unreachable_keys` lists those keys; shipped configs use none of them
(``GeoKTCifarResNet`` replaces ``resnet``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["known_model_keys", "model_factory", "script_unreachable_keys"]


def _torchvision_callable(key: str) -> Callable[..., nn.Module] | None:
    import torchvision

    entry = vars(torchvision.models).get(key)
    return entry if callable(entry) else None


def model_factory(key: str, repo_or_dir: str | None = None) -> Callable[..., nn.Module] | None:
    """The constructor ``key`` names, or ``None`` when neither lookup has it (or it is a torch.hub model).

    Args:
        key: ``models.<role>.key`` of a config.
        repo_or_dir: ``models.<role>.repo_or_dir`` (torch.hub); unless torchvision has ``key``, ``None`` is returned
            and the caller goes through torchdistill's ``get_model``.
    """
    from torchdistill.models.registry import MODEL_DICT

    factory = _torchvision_callable(key)
    if factory is not None:
        return factory
    if repo_or_dir is not None:
        return None
    return MODEL_DICT.get(key)


def script_unreachable_keys() -> list[str]:
    """Registry keys torchdistill's example script cannot build: ``torchvision.models`` has the name, not callable."""
    import torchvision
    from torchdistill.models.registry import MODEL_DICT

    return sorted(key for key in MODEL_DICT if key in vars(torchvision.models) and _torchvision_callable(key) is None)


def known_model_keys() -> list[str]:
    """The model keys :func:`model_factory` resolves, sorted (for did-you-mean messages): torchvision's
    classification models and torchdistill's registry."""
    import torchvision
    from torchdistill.models.registry import MODEL_DICT

    return sorted(set(MODEL_DICT) | set(torchvision.models.list_models(module=torchvision.models)))
