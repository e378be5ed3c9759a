"""Model lookup: the one rule, shared by the runner and the config checks, for which callable a
``models.<role>.key`` names.

Order: torchdistill's model registry first (its CIFAR ResNets and WRNs, and anything a config's
``dependencies`` registered), then torchvision's model names. A ``repo_or_dir`` entry means torch.hub, which
only torchdistill's ``get_model`` knows how to reach.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["known_model_keys", "model_factory"]


def model_factory(key: str, repo_or_dir: str | None = None) -> Callable[..., nn.Module] | None:
    """The constructor ``key`` names, or ``None`` when neither registry has it (or it is a torch.hub model).

    Args:
        key: ``models.<role>.key`` of a config.
        repo_or_dir: ``models.<role>.repo_or_dir`` (torch.hub); with it, ``None`` is returned and the caller goes
            through torchdistill's ``get_model``.
    """
    import torchvision
    from torchdistill.models.registry import MODEL_DICT

    if repo_or_dir is not None:
        return None
    if key in MODEL_DICT:
        return MODEL_DICT[key]
    if key in torchvision.models.list_models():
        return lambda **kwargs: torchvision.models.get_model(key, **kwargs)
    return None


def known_model_keys() -> list[str]:
    """Every key :func:`model_factory` resolves, sorted (for did-you-mean messages)."""
    import torchvision
    from torchdistill.models.registry import MODEL_DICT

    return sorted(set(MODEL_DICT) | set(torchvision.models.list_models()))
