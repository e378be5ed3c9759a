"""``models.*``: every model key resolves and builds (on the meta device when it can); ``src_ckpt`` files fit."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..model_state import read_model_state, state_mismatch
from ..models import known_model_keys, model_factory
from .context import CheckContext, ModelRecipe
from .errors import short
from .suggest import unknown_key

__all__ = ["build_for_check", "check_checkpoint", "check_models", "model_recipe"]

_META, _CPU = torch.device("meta"), torch.device("cpu")


def check_models(ctx: CheckContext, models: Mapping) -> dict[str, ModelRecipe]:
    """Check ``models.teacher_model`` and ``models.student_model``; return the recipes of those that build."""
    if "student_model" not in models:
        ctx.report.error("models.student_model", "missing; every run trains a student. Add e.g. "
                                                 "`student_model: {key: 'resnet20', kwargs: {num_classes: 10}}`.")
    recipes = {}
    for name in ("teacher_model", "student_model"):
        recipe = _check_model(ctx, models, name)
        if recipe is not None:
            recipes[name] = recipe
    return recipes


def _check_model(ctx: CheckContext, models: Mapping, name: str) -> ModelRecipe | None:
    r = ctx.report
    where = f"models.{name}"
    cfg = r.mapping(models, name, where, required=False, example="{key: 'resnet20', kwargs: {}}")
    if cfg is None:
        return None
    recipe = model_recipe(ctx, cfg, where, unchecked="hooks")
    if recipe is None:
        return None
    key, kwargs = recipe.key, recipe.kwargs
    model = build_for_check(ctx, recipe, f"{where}.kwargs")
    if model is None:
        return None
    r.ok(f"{where}: {key} ({sum(p.numel() for p in model.parameters()):,} parameters)")
    if kwargs.get("pretrained") or kwargs.get("weights") is not None:
        _check_pretrained(ctx, recipe, where)
    if cfg.get("src_ckpt") is not None:
        check_checkpoint(ctx, cfg["src_ckpt"], f"{where}.src_ckpt", model, f"{where} ({key})", weights_only=True)
    return recipe


def model_recipe(ctx: CheckContext, cfg: Mapping, where: str, *, unchecked: str) -> ModelRecipe | None:
    """The recipe of a models-style entry at ``where`` (``key``, ``kwargs``, ``repo_or_dir``), or ``None`` when it is
    reported: bad ``kwargs``, an unknown ``key``, or a torch.hub model (a warning: its ``unchecked`` are not checked).
    """
    r = ctx.report
    key = cfg.get("key")
    kwargs = cfg.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        r.error(f"{where}.kwargs", f"must be a mapping of constructor arguments, got {type(kwargs).__name__}.")
        return None
    if cfg.get("repo_or_dir") is not None:
        r.warn(f"{where}: built through torch.hub ({cfg['repo_or_dir']!r}); its {unchecked} are not checked.")
        return None
    factory = model_factory(key) if isinstance(key, str) else None
    if factory is None:
        r.error(f"{where}.key", unknown_key("model", key, known_model_keys(), uses_geokt=True,
                                            fix="Use a torchdistill model key or a torchvision model name."))
        return None
    return ModelRecipe(key, factory, kwargs)


def build_for_check(ctx: CheckContext, recipe: ModelRecipe, where: str) -> nn.Module | None:
    """``recipe`` built on the meta device, or on CPU when an op has no meta kernel; ``None`` (reported) if it fails."""
    for device in (_META, _CPU):
        try:
            return recipe.build(device)
        except NotImplementedError:
            continue  # an op without a meta kernel: build on CPU
        except Exception as exc:  # noqa: BLE001
            ctx.report.error(where, f"building model {recipe.key!r} failed: {type(exc).__name__}: {exc}. Fix the "
                                    "constructor arguments.")
            return None
    return None


def _check_pretrained(ctx: CheckContext, recipe: ModelRecipe, where: str) -> None:
    """Build the model with its pretrained weights as the run will: from torch's hub cache, else downloaded."""
    arg = "pretrained" if recipe.kwargs.get("pretrained") else "weights"
    at, off = f"{where}.kwargs.{arg}", "False" if arg == "pretrained" else "null"
    local = (f"set {where}.src_ckpt: '/path/to/weights.pt' (a local copy of the weights) and {arg}: {off}, or put "
             f"the file in torch's hub cache ({torch.hub.get_dir()}/checkpoints)")
    try:
        with torch.device(_CPU):
            recipe.factory(**recipe.kwargs)
    except OSError as exc:  # URLError, HTTPError, timeouts, refused connections
        ctx.report.error(at, f"{recipe.kwargs[arg]!r} needs the pretrained weights of {recipe.key!r}, which could not "
                             f"be downloaded ({type(exc).__name__}: {exc}). Offline? Fetch the file on a machine with "
                             f"network access, then {local}.")
        return
    except Exception as exc:  # noqa: BLE001  (a corrupt download, a hash mismatch, weights of another shape)
        ctx.report.error(at, f"loading the pretrained weights of {recipe.key!r} failed ({type(exc).__name__}: {exc}). "
                             f"Delete the cached file to download it again, or {local}.")
        return
    ctx.report.ok(f"{at}: the pretrained weights of {recipe.key} load")


def check_checkpoint(ctx: CheckContext, ckpt: Any, where: str, model: nn.Module, what: str, *,
                     weights_only: bool) -> None:
    """Check that ``src_ckpt`` file ``ckpt`` exists and loads strictly into ``model``.

    Args:
        ctx: the check context (``load_checkpoints=False``: existence only).
        ckpt: the ``src_ckpt`` value.
        where: its YAML path.
        model: the model it must fit.
        what: the model, for messages.
        weights_only: how the file will be read (the runner reads ``models.*.src_ckpt`` with ``weights_only=True``;
            torchdistill reads ``train.*.src_ckpt`` with ``weights_only=False``).
    """
    r = ctx.report
    if not isinstance(ckpt, (str, os.PathLike)):
        r.error(where, f"must be a file path, got {type(ckpt).__name__} {short(ckpt)}.")
        return
    ckpt = str(ckpt)
    if ckpt.startswith(("http://", "https://")):
        r.warn(f"{where}: {ckpt!r} is a URL; it is not downloaded by the checks.")
        return
    file = Path(os.path.expanduser(ckpt))
    if not file.is_file():
        consequence = "the run would stop when it builds the model"
        if where.startswith("train."):
            consequence = "torchdistill would only log this and start from random weights"
        r.error(where, f"checkpoint file not found: {ckpt!r} (resolved to {str(file.resolve())!r}); "
                       f"{consequence}. Train that model first, fix the path (relative paths start at the working "
                       "directory), or remove src_ckpt.")
        return
    if not ctx.load_checkpoints:
        r.ok(f"{where}: {ckpt} exists (not loaded)")
        return
    try:
        state = read_model_state(file, weights_only=weights_only)
    except ValueError as exc:
        r.error(where, f"{ckpt!r} {exc}. Point src_ckpt at a file written by torch.save holding a state_dict or "
                       "{'model': state_dict}.")
        return
    problem = state_mismatch(model, state)
    if problem is None:
        r.ok(f"{where}: {ckpt} fits {what} ({len(state)} tensors)")
        return
    r.error(where, f"{ckpt!r} does not load strictly into {what}: {problem}")
