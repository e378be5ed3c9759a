"""Models from ``models.<role>`` of a config: the lookup of :func:`geokt_plugin.models.model_factory`, torch.hub for
``repo_or_dir``, then the ``src_ckpt`` weights."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from torch import nn

from ..config import ConfigError
from ..models import known_model_keys, model_factory
from .checkpoint import load_model_checkpoint

__all__ = ["build_model"]


def build_model(model_config: Mapping, role: str) -> nn.Module:
    """A model from ``models.<role>``: torchdistill registry key (``repo_or_dir`` for torch.hub) or torchvision name."""
    where = f"models.{role}"
    key = model_config.get("key")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}.key is required: a torchdistill model key (e.g. 'resnet20') or a torchvision "
                          "model name (e.g. 'resnet18').")
    kwargs = dict(model_config.get("kwargs") or {})
    repo_or_dir = model_config.get("repo_or_dir")
    factory = model_factory(key, repo_or_dir)
    if factory is None and repo_or_dir is None:
        close = difflib.get_close_matches(key, known_model_keys(), n=3)
        raise ConfigError(f"{where}.key {key!r} is neither a torchdistill model nor a torchvision model"
                          + (f"; did you mean {close}?" if close else "."))
    try:
        if factory is None:  # torch.hub, which only torchdistill's get_model reaches
            from torchdistill.models.registry import get_model

            model = get_model(key, repo_or_dir, **kwargs)
        else:
            model = factory(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {key}(**{kwargs}) failed: {exc}. Fix {where}.kwargs.") from exc
    src = model_config.get("src_ckpt")
    if src:
        load_model_checkpoint(model, src, where=f"{where}.src_ckpt")
    return model
