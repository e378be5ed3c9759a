"""Dataset builders usable from YAML: offline Fashion-MNIST, CIFAR through torchvision, class-balanced subsets.

Every builder is a plain function, so a torchdistill config reaches it with ``!import_call`` (the dataset id is the
mapping key; data loaders name it in ``dataset_id``)::

    datasets:
      &train_id fmnist/train: !import_call
        key: 'geokt_plugin.data.fashion_mnist'
        init:
          kwargs: {split: 'train', subset_size: 3000, val_size: 1000, seed: 0, augment: True}
      &val_id fmnist/val: !import_call
        key: 'geokt_plugin.data.fashion_mnist'
        init:
          kwargs: {split: 'val', val_size: 1000, seed: 0}

The split semantics shared by all builders (``"train"``, ``"val"``, ``"test"``; nested, seeded, class-balanced
subsets) are described in :mod:`geokt_plugin.data.subsets`.

Modules: ``subsets`` (balanced subsets, splits), ``tensors`` (the in-memory image dataset), ``fmnist``
(Fashion-MNIST files and builder), ``cifar`` (CIFAR builders), ``stats`` (normalisation statistics).
"""

from __future__ import annotations

from .cifar import cifar10, cifar100
from .fmnist import (
    DEBIAN_FASHION_MNIST,
    ENV_FASHION_MNIST,
    fashion_mnist,
    load_fashion_mnist_arrays,
    resolve_fashion_mnist_root,
)
from .stats import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, FASHION_MNIST_MEAN, FASHION_MNIST_STD
from .subsets import SubsetWithTargets, balanced_subset, split_indices, subset_dataset
from .tensors import ImageTensorDataset

__all__ = [
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DEBIAN_FASHION_MNIST",
    "ENV_FASHION_MNIST",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "ImageTensorDataset",
    "SubsetWithTargets",
    "balanced_subset",
    "cifar10",
    "cifar100",
    "fashion_mnist",
    "load_fashion_mnist_arrays",
    "resolve_fashion_mnist_root",
    "split_indices",
    "subset_dataset",
]
