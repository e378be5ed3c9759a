"""``geokt_agreement``: the optional section of the geometric-agreement probe (see docs/configs.md).

Checked: its keys; ``reference`` (``teacher_model``, which the config must have, or a models-style entry that
builds and whose ``src_ckpt`` fits); every layer in both the student and the reference, with a 4-D output on the
dummy input; ``k`` below the points per image of every layer; ``images`` within the validation dataset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from .context import CheckContext
from .errors import Report, is_int, short
from .forward_check import input_shape
from .models_check import build_for_check, check_checkpoint, model_recipe
from .module_paths import resolve
from .numbers_check import check_int
from .stages import stage_keys
from .suggest import did_you_mean

__all__ = ["AGREEMENT_DEFAULTS", "AGREEMENT_SECTION", "check_agreement"]

AGREEMENT_SECTION = "geokt_agreement"
AGREEMENT_DEFAULTS: Mapping[str, Any] = {"k": 8, "images": 200, "max_points": 128}
_KEYS = ("reference", "layers", "k", "images", "max_points")
_REFERENCE_KEYS = ("key", "kwargs", "src_ckpt", "repo_or_dir")
_EXAMPLE = "`geokt_agreement: {reference: teacher_model, layers: [layer1, layer2], k: 8, images: 200}`"
_S = AGREEMENT_SECTION


def check_agreement(ctx: CheckContext, config: Mapping) -> None:
    """Check the ``geokt_agreement`` section when the config has one (run after the models and stages checks)."""
    if _S not in config:
        return
    r = ctx.report
    section = r.mapping(config, _S, _S, required=True, example=_EXAMPLE)
    if section is None:
        return
    for key in section:
        if key not in _KEYS:
            r.error(f"{_S}.{key}", f"unknown key; the section takes {list(_KEYS)}.{did_you_mean(str(key), _KEYS)}")
    settings = {**AGREEMENT_DEFAULTS, **section}
    k_ok = check_int(r, settings["k"], f"{_S}.k", minimum=1, example="8")
    check_int(r, settings["images"], f"{_S}.images", minimum=1, example="200")
    k_ok &= settings["max_points"] is None or check_int(r, settings["max_points"], f"{_S}.max_points", minimum=2,
                                                         example="128 (or null: every position)")
    _check_images(ctx, settings["images"])
    reference = _check_reference(ctx, section.get("reference"))
    recipe = ctx.models.get("student_model")  # absent: its problem is reported under models.student_model
    student = build_for_check(ctx, recipe, "models.student_model.kwargs") if recipe is not None else None
    layers = _check_layers(ctx, section.get("layers"), student, reference)
    if layers and k_ok and student is not None and reference is not None:
        _check_points(ctx, layers, student, reference, settings["k"], settings["max_points"])


def _check_reference(ctx: CheckContext, ref: Any) -> nn.Module | None:
    """The reference built for the checks (meta device when it can), or ``None`` (reported, or not checkable)."""
    r, where = ctx.report, f"{_S}.reference"
    if ref == "teacher_model":
        if not ctx.has_teacher:
            r.error(where, "'teacher_model' names models.teacher_model, but the config has none. Add a teacher, or "
                           "give a models-style entry: `reference: {key: 'resnet20', kwargs: {num_classes: 10}, "
                           "src_ckpt: 'path/to/teacher.pt'}`.")
            return None
        recipe = ctx.models.get("teacher_model")  # absent: its problem is reported under models.teacher_model
        return build_for_check(ctx, recipe, "models.teacher_model.kwargs") if recipe is not None else None
    if not isinstance(ref, Mapping) or "key" not in ref:
        r.error(where, f"must be 'teacher_model' or a models-style mapping with a key (`{{key: 'resnet20', kwargs: "
                       f"{{num_classes: 10}}, src_ckpt: 'teacher.pt'}}`), got {short(ref)}.")
        return None
    for key in ref:
        if key not in _REFERENCE_KEYS:
            r.error(f"{where}.{key}", f"unknown key; a reference entry takes {list(_REFERENCE_KEYS)}."
                                      f"{did_you_mean(str(key), _REFERENCE_KEYS)}")
    recipe = model_recipe(ctx, ref, where, unchecked="layers")
    if recipe is None:
        return None
    model = build_for_check(ctx, recipe, f"{where}.kwargs")
    if model is not None and ref.get("src_ckpt") is not None:
        check_checkpoint(ctx, ref["src_ckpt"], f"{where}.src_ckpt", model, f"{where} ({ref['key']})",
                         weights_only=True)
    return model


def _check_layers(ctx: CheckContext, layers: Any, student: nn.Module | None, reference: nn.Module | None) -> list[str]:
    """The layers when every one is a module path of both models (as far as they built), else ``[]``."""
    r, where = ctx.report, f"{_S}.layers"
    if not isinstance(layers, list) or not layers:
        r.error(where, f"must be a non-empty list of module paths present in the student and the reference, got "
                       f"{short(layers)}. Write e.g. `layers: [layer1, layer2, layer3]`.")
        return []
    ok = True
    for i, layer in enumerate(layers):
        if not isinstance(layer, str) or not layer:
            r.error(f"{where}[{i}]", f"must be a module path such as 'layer1', got {short(layer)}.")
            ok = False
            continue
        for role, model in (("student", student), ("reference", reference)):
            if model is not None and resolve(model, layer) is None:
                names = [name for name, _ in model.named_children()]
                r.error(f"{where}[{i}]", f"no module {layer!r} in the {role} ({type(model).__name__}); its top-level "
                                         f"modules are {names}.{did_you_mean(layer, names)} Use a path present in "
                                         "both the student and the reference.")
                ok = False
    return list(layers) if ok else []


def _check_points(ctx: CheckContext, layers: list[str], student: nn.Module, reference: nn.Module, k: int,
                  max_points: Any) -> None:
    """Each layer's output is a 4-D map, and its aligned points per image exceed ``k``."""
    shape, _ = input_shape(dataclasses.replace(ctx, report=Report()))  # a bad check_input_shape is reported already
    maps = {role: _layer_outputs(model, layers, shape) for role, model in (("student", student),
                                                                           ("reference", reference))}
    if maps["student"] is None or maps["reference"] is None:
        ctx.report.warn(f"{_S}: the layers' shapes were not checked (a dummy forward on {(1, *shape)} failed).")
        return
    fewest: tuple[int, str, str] | None = None  # (points per image, layer, what it aligns to)
    for i, layer in enumerate(layers):
        s, t = maps["student"].get(layer), maps["reference"].get(layer)
        bad = [(role, x) for role, x in (("student", s), ("reference", t)) if not (isinstance(x, Tensor) and
                                                                                   x.dim() == 4)]
        if bad:
            role, x = bad[0]
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            ctx.report.error(f"{_S}.layers[{i}]", f"the {role}'s {layer!r} gives {got}, not a 4-D feature map (B, C, "
                                                  "H, W). Use a convolutional stage.")
            continue
        H, W = min(s.shape[2], t.shape[2]), min(s.shape[3], t.shape[3])
        n = H * W if max_points is None else min(H * W, max_points)
        if fewest is None or n < fewest[0]:
            fewest = (n, layer, f"(student {tuple(s.shape)}, reference {tuple(t.shape)}) aligns to {H}x{W} positions")
    if fewest is not None and k >= fewest[0]:
        n, layer, aligned = fewest
        limit = "" if max_points is None else f" (max_points {max_points})"
        ctx.report.error(f"{_S}.k", f"{k} neighbours need more than {k} points per image, but layer {layer!r} "
                                    f"{aligned}, {n} points{limit}. Use k <= {n - 1}, or drop {layer!r}.")


def _layer_outputs(model: nn.Module, layers: list[str], shape: tuple[int, ...]) -> dict | None:
    """Each layer's output on a zero batch of one (meta device: shapes only), or ``None`` when the forward fails."""
    outputs: dict[str, Any] = {}

    def keep(layer: str) -> Any:
        return lambda module, args, output: outputs.__setitem__(layer, output)

    handles = [resolve(model, layer).register_forward_hook(keep(layer)) for layer in layers]
    device = next(iter(model.parameters()), torch.empty(0, device="meta")).device
    try:
        with torch.no_grad():
            model.eval()(torch.zeros((1, *shape), device=device))
    except Exception:  # noqa: BLE001  (an op without a meta kernel, a model that needs other inputs)
        return None
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _check_images(ctx: CheckContext, images: Any) -> None:
    """A validation loader exists, and its dataset (when checked) holds ``images`` items."""
    train = ctx.config.get("train")
    if not isinstance(train, Mapping):
        return
    keys = stage_keys(train)
    stage = train.get(keys[0]) if keys else train
    loader = stage.get("val_data_loader") if isinstance(stage, Mapping) else None
    where = "train.stage1.val_data_loader" if keys else "train.val_data_loader"
    if not isinstance(loader, Mapping):
        ctx.report.error(_S, f"the probe measures on the first validation images, but the config has no {where}. "
                             "Add a validation loader, or remove the section.")
        return
    dataset = ctx.datasets.entries.get(loader.get("dataset_id"))
    try:
        size = len(dataset) if dataset is not None else None
    except TypeError:
        size = None
    if is_int(images) and size is not None and images > size:
        ctx.report.error(f"{_S}.images", f"{images} images asked for, but the validation dataset "
                                         f"{loader.get('dataset_id')!r} holds {size}. Use images <= {size}.")
