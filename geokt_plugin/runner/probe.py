"""The geometric-agreement probe of a config's ``geokt_agreement`` section: after each epoch's validation, how far
the student's local geometry agrees with a fixed reference network's, layer by layer, on fixed validation images.

The values are :func:`geokt_plugin.probes.knn_agreement`; they land in ``metrics.csv`` as ``agree/<layer>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..config import ConfigError
from ..config.agreement_check import AGREEMENT_DEFAULTS, AGREEMENT_SECTION
from ..config.module_paths import resolve
from ..config.stages import stage_keys
from ..probes import AGREEMENT_PREFIX, knn_agreement
from .build import build_model
from .rng import rng_state, set_rng_state

__all__ = ["AgreementProbe", "build_probe"]

CHUNK = 64  # images per forward of a measurement: bounds the memory of the hooked maps
SAMPLING_SEED = 0  # the sampled positions (max_points) are the same at every measurement


class AgreementProbe:
    """Measures ``agree/<layer>`` of a student against a frozen ``reference`` on a fixed batch of ``images``.

    Args:
        reference: the instructor-like network; kept in eval mode, without gradients.
        layers: module paths present in both the student and ``reference``.
        images: ``(N, C, H, W)`` inputs, on CPU (moved to the student's device in chunks of :data:`CHUNK`).
        k: neighbours per point.
        max_points: positions sampled per image (``None``: all).
    """

    def __init__(self, reference: nn.Module, layers: Sequence[str], images: Tensor, *, k: int,
                 max_points: int | None) -> None:
        self.reference = reference.eval().requires_grad_(False)
        self.layers = list(layers)
        self.images = images
        self.k = k
        self.max_points = max_points

    @torch.no_grad()
    def measure(self, student: nn.Module) -> dict[str, float]:
        """``{"agree/<layer>": value}`` for ``student`` (in eval mode meanwhile; each module's mode is restored)."""
        modes = [(m, m.training) for m in student.modules()]
        student.eval()
        device = next(iter(student.parameters()), torch.empty(0)).device
        totals = dict.fromkeys(self.layers, 0.0)
        try:
            for start in range(0, len(self.images), CHUNK):
                x = self.images[start:start + CHUNK].to(device)
                s_maps = _hooked(student, self.layers, "student", lambda m, x=x: m(x))
                t_maps = _hooked(self.reference, self.layers, "reference", lambda m, x=x: m(x))
                for layer in self.layers:
                    totals[layer] += len(x) * self._agreement(layer, s_maps[layer], t_maps[layer])
        finally:
            for module, mode in modes:
                module.training = mode
        return {f"{AGREEMENT_PREFIX}{layer}": total / len(self.images) for layer, total in totals.items()}

    def _agreement(self, layer: str, s: Tensor, t: Tensor) -> float:
        generator = torch.Generator().manual_seed(SAMPLING_SEED)
        try:
            return float(knn_agreement(s, t, k=self.k, max_points=self.max_points, generator=generator))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{AGREEMENT_SECTION}: layer {layer!r}: {exc}") from exc


def _hooked(model: nn.Module, layers: Sequence[str], role: str, forward: Callable[[nn.Module], Any]) -> dict:
    """The output of each of ``layers`` during ``forward(model)``; the hooks are removed afterwards."""
    outputs: dict[str, Any] = {}
    handles = []
    try:
        for layer in layers:
            module = resolve(model, layer)
            if module is None:
                names = [name for name, _ in model.named_children()]
                raise ConfigError(f"{AGREEMENT_SECTION}.layers: the {role} ({type(model).__name__}) has no module "
                                  f"{layer!r}; its top-level modules are {names}.")
            handles.append(module.register_forward_hook(_keep(outputs, layer)))
        forward(model)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def _keep(outputs: dict, layer: str) -> Callable:
    def hook(module: nn.Module, args: Any, output: Any) -> None:
        outputs[layer] = output[0] if isinstance(output, tuple) and len(output) == 1 else output

    return hook


def build_probe(config: Mapping, box: Any, device: torch.device) -> AgreementProbe | None:
    """The probe of ``config``'s ``geokt_agreement`` section (``None`` without one), built once per run.

    The reference is built again from its models-style entry (``models.teacher_model`` for ``teacher_model``) by
    :func:`~geokt_plugin.runner.build.build_model`, ``src_ckpt`` included; the images are the first ``images`` items
    of the first stage's validation dataset, as it returns them (the same after a resume in a later stage).
    """
    section = config.get(AGREEMENT_SECTION)
    if section is None:
        return None
    settings = {**AGREEMENT_DEFAULTS, **section}
    reference_cfg = settings["reference"]
    state = rng_state()  # initialising the reference draws random numbers: a resumed run must not see that
    try:
        if reference_cfg == "teacher_model":
            reference = build_model(config["models"]["teacher_model"], "teacher_model")
        else:
            reference = build_model(reference_cfg, f"{AGREEMENT_SECTION}.reference")
        images = first_images(_val_dataset(config, box.dataset_dict), int(settings["images"]))
    finally:
        set_rng_state(state)
    return AgreementProbe(reference.to(device).float(), settings["layers"], images, k=int(settings["k"]),
                          max_points=settings["max_points"])


def _val_dataset(config: Mapping, dataset_dict: Mapping) -> Any:
    """The dataset of the first stage's ``val_data_loader``."""
    train = config["train"]
    keys = stage_keys(train)
    loader = (train[keys[0]] if keys else train).get("val_data_loader")
    dataset = dataset_dict.get(loader.get("dataset_id")) if isinstance(loader, Mapping) else None
    if dataset is None:
        where = "train.stage1.val_data_loader" if keys else "train.val_data_loader"
        raise ConfigError(f"{AGREEMENT_SECTION}: the probe measures on the first validation images, but {where} "
                          "names no dataset of the config. Add a validation loader, or remove the section.")
    return dataset


def first_images(dataset: Any, count: int) -> Tensor:
    """The inputs of ``dataset[0]`` .. ``dataset[count - 1]`` (the first element of each item), stacked on CPU."""
    if len(dataset) < count:
        raise ConfigError(f"{AGREEMENT_SECTION}.images: {count} images asked for, the validation dataset holds "
                          f"{len(dataset)}. Lower images to at most {len(dataset)}.")
    items = [dataset[i] for i in range(count)]
    return torch.stack([item[0] if isinstance(item, (tuple, list)) else item for item in items]).cpu()
