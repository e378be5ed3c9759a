"""The run's effective settings, checked before anything is built: seed and log frequency (flag, else config), and
whether the device can run the asked precision."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ConfigError
from ..data.subsets import RUN_SEED_ENV
from .options import MAX_SEED, RunOptions

__all__ = ["DEFAULT_SEED", "RunSettings", "check_device_and_precision", "check_effective_precision",
           "publish_run_seed"]

DEFAULT_SEED = 0  # without --seed and without a config `seed:`

_FP16_CPU = ("fp16 needs a GPU: on the CPU accelerate would silently train in fp32 while the run records fp16. Use "
             "--mixed-precision bf16 (CPU autocast) or 'no', or run on a GPU.")


@dataclass(frozen=True)
class RunSettings:
    """``seed``: ``--seed``, else the config's ``seed``, else 0; ``log_every``: ``--log-every``, else
    ``train.log_freq``, else 50."""

    seed: int
    log_every: int

    @classmethod
    def resolve(cls, options: RunOptions, config: Mapping) -> RunSettings:
        """The settings of ``options`` over ``config``; a bad config value is a :class:`ConfigError`."""
        seed = options.seed if options.seed is not None else _config_int(config, "seed", DEFAULT_SEED, 0, MAX_SEED)
        train = config.get("train") if isinstance(config.get("train"), Mapping) else {}
        log_freq = _config_int(train, "log_freq", 0, 0, None, where="train.log_freq")
        return cls(seed=seed, log_every=options.log_every or log_freq or 50)


def publish_run_seed(seed: int) -> bool:
    """Put the run's seed where ``seed: run`` datasets read it (``GEOKT_RUN_SEED``); True if it changed."""
    changed = os.environ.get(RUN_SEED_ENV) != str(seed)
    os.environ[RUN_SEED_ENV] = str(seed)
    return changed


def _config_int(section: Mapping, key: str, default: int, low: int, high: int | None, where: str | None = None) -> int:
    value = section.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ConfigError(f"config {where or key}: {value!r} is not {allowed}. Fix `{key}:` in the YAML"
                          + (" or pass --seed." if key == "seed" else "."))
    return value


def check_device_and_precision(options: RunOptions) -> None:
    """Refuse what the device cannot run, before the accelerator exists (``--check`` included)."""
    if options.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is visible (torch.cuda.is_available() is False). Drop "
                          "--device, or pass --device cpu.")
    on_cpu = options.device == "cpu" or not torch.cuda.is_available()
    if options.mixed_precision is not None:
        if options.mixed_precision == "fp16" and on_cpu:
            raise ConfigError(f"--mixed-precision {_FP16_CPU}")
    elif os.environ.get("ACCELERATE_MIXED_PRECISION") == "fp16" and on_cpu:
        raise ConfigError(f"ACCELERATE_MIXED_PRECISION (accelerate config) {_FP16_CPU}")


def check_effective_precision(accelerator: Any) -> None:
    """What the accelerator chose: fp16 on a CPU would run fp32 and record fp16."""
    if str(accelerator.mixed_precision) == "fp16" and accelerator.device.type == "cpu":
        raise ConfigError(f"mixed precision (accelerate's choice) {_FP16_CPU}")
