"""Data order and batches: a sampler seeded by ``(seed, epoch)``, training loaders rebuilt around it, the test loader
and the unpacking of a batch."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler

from ..config import ConfigError

__all__ = ["EpochSeededSampler", "batch_size", "build_test_loader", "reseeded_loader", "unpack"]

logger = logging.getLogger(__name__)


class EpochSeededSampler(Sampler[int]):
    """Shuffled (or sequential) order of ``n`` items that depends only on ``(seed, epoch)``.

    Every rank builds the same order (accelerate then gives each rank its share of the batches), and a resumed run
    sees the same order for an epoch as an uninterrupted one.
    """

    def __init__(self, n: int, seed: int, shuffle: bool = True) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.shuffle = bool(shuffle)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        generator = torch.Generator()
        generator.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63 - 1))
        return iter(torch.randperm(self.n, generator=generator).tolist())


def reseeded_loader(loader: DataLoader | None, seed: int) -> DataLoader | None:
    """The same loader with its sampler replaced by an :class:`EpochSeededSampler` (custom batch samplers are kept)."""
    if loader is None:
        return None
    sampler = loader.sampler
    if loader.batch_size is None or not isinstance(sampler, (RandomSampler, SequentialSampler)):
        logger.warning("train_data_loader uses %s; --resume reproduces the data order only with RandomSampler or "
                       "SequentialSampler", type(sampler).__name__)
        return loader
    if isinstance(sampler, RandomSampler) and sampler.replacement:
        logger.warning("RandomSampler(replacement=True) is replaced by a seeded permutation")
    kwargs = dict(batch_size=loader.batch_size, num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                  pin_memory=loader.pin_memory, drop_last=loader.drop_last, timeout=loader.timeout,
                  worker_init_fn=loader.worker_init_fn, persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(loader.dataset, sampler=EpochSeededSampler(len(loader.dataset), seed,
                                                                  shuffle=isinstance(sampler, RandomSampler)),
                      **kwargs)


def build_test_loader(config: Mapping, accelerator: Any) -> Any:
    """The prepared loader of ``test.test_data_loader``, or ``None`` when the config has none."""
    test_cfg = config.get("test")
    loader_cfg = test_cfg.get("test_data_loader") if isinstance(test_cfg, Mapping) else None
    if not isinstance(loader_cfg, Mapping):
        return None
    from torchdistill.datasets.util import build_data_loader

    dataset_id = loader_cfg.get("dataset_id")
    if dataset_id not in config["datasets"]:
        raise ConfigError(f"test.test_data_loader.dataset_id {dataset_id!r} is not in datasets "
                          f"(have: {sorted(config['datasets'])}).")
    loader = build_data_loader(config["datasets"][dataset_id], dict(loader_cfg), False, None)
    return accelerator.prepare(loader)


def unpack(batch: Any) -> tuple[Any, Tensor, dict | None]:
    """``(sample, targets, supp_dict)`` of a batch of 2 or 3 items."""
    if isinstance(batch, (list, tuple)):
        if len(batch) == 3:
            return batch[0], batch[1], batch[2]
        if len(batch) == 2:
            return batch[0], batch[1], None
    raise ConfigError(f"a data loader yielded {type(batch).__name__} of length {len(batch)}; expected (sample, "
                      "target) or (sample, target, supp_dict).")


def batch_size(sample: Any) -> int:
    """The number of samples in a (possibly nested) batch, 0 when it holds no tensor."""
    if isinstance(sample, Tensor):
        return int(sample.shape[0])
    if isinstance(sample, (list, tuple)) and sample:
        return batch_size(sample[0])
    if isinstance(sample, Mapping) and sample:
        return batch_size(next(iter(sample.values())))
    return 0
