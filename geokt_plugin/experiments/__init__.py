"""The paper's experiments: the matrix of official configs, their generation, the docs tables and the suite.

- :mod:`.matrix`: hyperparameters, models, dataset recipes and one ``Spec`` per official config, as data;
- :mod:`.configs` and :mod:`.yaml_io`: a ``Spec``'s torchdistill config as a dict, then YAML;
- :mod:`.docs_writer` and :mod:`.generate`: the READMEs, the docs/reproducing.md table, the files on disk;
- :mod:`.claims`: the per-claim verdicts and the sweep's choice from measured runs;
- :mod:`.scheduler`: the Fashion-MNIST suite's plan and its parallel, resumable trainer;
- :mod:`.cli`: ``python -m geokt_plugin.experiments {configs,plan,run,sweep-table,claims,docs-table}``.
"""

from .claims import CLAIMS, claims_table, sweep_table, verdict
from .cli import build_parser, main
from .configs import config_document, render
from .docs_writer import REPRODUCING, readme, reproducing_table, with_reproducing_table
from .generate import generated_files, write_generated
from .matrix import (
    CHOSEN,
    EXTRA_CELLS,
    OFFICIAL,
    PAPER_KEY,
    ROOT,
    SWEEP,
    Spec,
    all_specs,
    cifar10_specs,
    fashion_mnist_specs,
)
from .scheduler import Run, finished, plan, run_phases
from .yaml_io import Tagged, dump_config, load_config_document

__all__ = [
    "CHOSEN",
    "CLAIMS",
    "EXTRA_CELLS",
    "OFFICIAL",
    "PAPER_KEY",
    "REPRODUCING",
    "ROOT",
    "SWEEP",
    "Run",
    "Spec",
    "Tagged",
    "all_specs",
    "build_parser",
    "cifar10_specs",
    "claims_table",
    "config_document",
    "dump_config",
    "fashion_mnist_specs",
    "finished",
    "generated_files",
    "load_config_document",
    "main",
    "plan",
    "readme",
    "render",
    "reproducing_table",
    "run_phases",
    "sweep_table",
    "verdict",
    "with_reproducing_table",
    "write_generated",
]
