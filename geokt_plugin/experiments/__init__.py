"""The paper's experiments: the matrix of official configs, their generation, the docs tables and the suite.

- :mod:`.matrix`: hyperparameters, models, dataset recipes and the ``Spec`` of a config, as data;
- :mod:`.cells`: one ``Spec`` per official config (the experiments' cells);
- :mod:`.configs` and :mod:`.yaml_io`: a ``Spec``'s torchdistill config as a dict, then YAML;
- :mod:`.docs_writer` and :mod:`.generate`: the READMEs, the docs/reproducing.md table, the files on disk;
- :mod:`.claims`: the pre-registered paired comparisons and the sweep's choice from measured runs;
- :mod:`.scheduler`: the Fashion-MNIST suite's plan and its parallel, resumable trainer;
- :mod:`.cli`: ``python -m geokt_plugin.experiments {configs,plan,run,sweep-table,claims,docs-table}``.
"""

from .cells import all_specs, cifar10_specs, fashion_mnist_specs
from .claims import claims, sweep_choice, sweep_table
from .cli import build_parser, main
from .configs import config_document, render
from .docs_writer import REPRODUCING, readme, reproducing_table, with_reproducing_table
from .generate import generated_files, write_generated
from .matrix import CHOSEN, OFFICIAL, PAPER_KEY, ROOT, SWEEP, Spec
from .scheduler import Run, finished, plan, run_phases
from .yaml_io import Tagged, dump_config, load_config_document

__all__ = [
    "CHOSEN",
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
    "claims",
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
    "sweep_choice",
    "sweep_table",
    "with_reproducing_table",
    "write_generated",
]
