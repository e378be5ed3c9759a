"""The official configs and the Fashion-MNIST reproduction suite.

Subcommands:

- ``configs [--check]``: write every file under ``configs/official/`` (YAMLs and the per-experiment READMEs) and the
  config table of ``docs/reproducing.md`` from the tables below, or, with ``--check``, exit 1 if any differs. The
  YAMLs are generated so that ~90 files stay consistent (one recipe per dataset, one set of chosen weights); each is
  still a plain, self-contained torchdistill config that uses YAML anchors for its repeated parts.
- ``plan PHASE...``: print the runs of phases (``instructors``, ``sweep``, ``students`` = ``core`` then ``extra``)
  as ``config run_dir seed state``.
- ``run PHASE... [--jobs N] [--only REGEX] [--train-args ARGS]``: train the runs with ``geokt-train``, ``N``
  processes at a time (one torch thread each), skipping finished runs (their ``done`` marker, with the config's
  current text), so an interrupted suite resumes where it stopped. A student waits until its instructor's run is
  done; a run another suite process is training (live pid file) is waited for, not restarted. Configs whose text
  is identical up to comments are trained once; the other run directories become symlinks to the trained one.
- ``sweep-table``: the sweep's results and the choice per method (highest final validation top-1).
- ``claims [RESULTS_CSV] [--metric test|final_val|best_val]``: the per-claim verdicts from a ``geokt-compare``
  ``results.csv`` (rule in :func:`claims_table`).
- ``docs-table``: the table of official configs for ``docs/reproducing.md``.

Run directory rule: ``runs/<config path relative to configs/official, without .yaml>/seed<S>``; an instructor's
``best.pt`` is therefore at ``runs/<dataset>/<paper-key>/instructors/<name>/seed0/best.pt``, the path the
students' ``src_ckpt`` names.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OFFICIAL = ROOT / "configs" / "official"
RUNS = Path("runs")
PAPER_KEY = "theodorakopoulos2021"
SEEDS = (0, 1, 2)
SWEEP_SEED = 100  # the sweep's own seed, so the reported seeds 0-2 are not the ones the choice was made on

BIBTEX = """@article{theodorakopoulos2021geometric,
  title   = {Geometric Regularization of Local Activations for Knowledge Transfer in Convolutional Neural Networks},
  author  = {Theodorakopoulos, Ilias and Fotopoulou, Foteini and Economou, George},
  journal = {Information},
  volume  = {12},
  number  = {8},
  pages   = {333},
  year    = {2021},
  doi     = {10.3390/info12080333}
}"""

# ------------------------------------------------------------------------------------------------------------------
# Hyperparameters. CHOSEN holds the values picked by the Fashion-MNIST validation sweep (docs/reproducing.md,
# "Sweep"); every student config uses them, the CIFAR-10 ones included (carried over, not tuned on CIFAR-10).
# SWEEP holds the candidates: the same number of settings for every method, baselines and GeoKT alike.
# ------------------------------------------------------------------------------------------------------------------

GEOKT_KEYS = {
    "geokt_distance": "GeoKTDistanceLoss",
    "geokt_kl": "GeoKTNeighborKLLoss",
    "geokt_rank": "GeoKTNeighborRankLoss",
}
# The spec's default knobs, used unchanged (the sweep varies the weight and the hooked layers).
GEOKT_KNOBS = {
    "geokt_distance": "neighbors: 8",
    "geokt_kl": "bandwidth: 0.5",
    "geokt_rank": "neighbors: 8, temperature: 0.1",
}
ALL_LAYERS = ("layer1", "layer2", "layer3")

CHOSEN: dict[str, dict] = {
    "kd": {"temperature": 4.0, "alpha": 0.5},
    "at": {"weight": 250.0, "layers": ("layer2", "layer3")},
    "fitnets": {"weight": 10.0, "layer": "layer2"},
    "geokt_distance": {"weight": 30.0, "layers": ALL_LAYERS},
    "geokt_kl": {"weight": 3.0, "layers": ALL_LAYERS},
    "geokt_rank": {"weight": 1.0, "layers": ALL_LAYERS},
}

SWEEP: dict[str, list[tuple[str, dict]]] = {
    "kd": [("T4_a0.9", {"temperature": 4.0, "alpha": 0.9}), ("T4_a0.5", {"temperature": 4.0, "alpha": 0.5})],
    "at": [(f"w{w:g}", {"weight": w, "layers": ("layer2", "layer3")}) for w in (250.0, 1000.0)],
    "fitnets": [(f"w{w:g}", {"weight": w, "layer": "layer2"}) for w in (1.0, 10.0)],
    "geokt_distance": [(f"w{w:g}", {"weight": w, "layers": ALL_LAYERS}) for w in (10.0, 30.0)],
    "geokt_kl": [(f"w{w:g}", {"weight": w, "layers": ALL_LAYERS}) for w in (1.0, 3.0)],
    "geokt_rank": [(f"w{w:g}", {"weight": w, "layers": ALL_LAYERS}) for w in (1.0, 3.0)],
}

METHOD_TITLES = {
    "ce": "CE only (no instructor)",
    "kd": "KD (Hinton et al.), torchdistill `KDLoss`",
    "fitnets": "FitNets, single-stage hint (1x1 conv+BN adapter, `MSELoss`) + CE",
    "at": "AT (Zagoruyko & Komodakis), torchdistill `ATLoss`, `mode: code` + CE",
    "geokt_distance": "GeoKT distance loss (`GeoKTDistanceLoss`) + CE",
    "geokt_kl": "GeoKT neighbour-KL loss (`GeoKTNeighborKLLoss`) + CE",
    "geokt_rank": "GeoKT neighbour-rank loss (`GeoKTNeighborRankLoss`) + CE",
    "geokt_rank_kd": "GeoKT neighbour-rank loss + KD",
}
DISTILL_METHODS = ("kd", "fitnets", "at", "geokt_distance", "geokt_kl", "geokt_rank", "geokt_rank_kd")
NO_LOGIT_METHODS = ("fitnets", "at", "geokt_distance", "geokt_kl", "geokt_rank")  # usable across label spaces
# Fashion-MNIST: the same methods as CIFAR-10; the suite trains the cells of EXTRA_CELLS last (2 shared CPU cores).
FMNIST_ACROSS_METHODS = ("ce", *DISTILL_METHODS)
FMNIST_EXTERNAL_METHODS = ("ce", *NO_LOGIT_METHODS)
LIMITED_METHODS = ("ce", "kd", "geokt_rank", "geokt_rank_kd")
FMNIST_LIMITED_METHODS = LIMITED_METHODS
FRACTIONS = (10, 20, 50, 100)

# ------------------------------------------------------------------------------------------------------------------
# Models and datasets
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A torchdistill registry model: its key, kwargs (without num_classes) and per-stage channel counts."""

    key: str
    kwargs: str
    channels: tuple[int, int, int]

    def block(self, num_classes: int, indent: str) -> str:
        return f"{indent}key: '{self.key}'\n{indent}kwargs: {{{self.kwargs.format(n=num_classes)}}}\n"


MODELS = {
    "resnet8": Model("resnet", "depth: 8, num_classes: {n}, pretrained: False, progress: False", (16, 32, 64)),
    "resnet20": Model("resnet20", "num_classes: {n}, pretrained: False", (16, 32, 64)),
    "resnet56": Model("resnet56", "num_classes: {n}, pretrained: False", (16, 32, 64)),
    "wide_resnet10_2": Model(
        "wide_resnet", "depth: 10, k: 2, dropout_p: 0.0, num_classes: {n}, pretrained: False, progress: False",
        (32, 64, 128)),
    "wide_resnet40_4": Model("wide_resnet40_4", "dropout_p: 0.3, num_classes: {n}, pretrained: False",
                             (64, 128, 256)),
}


@dataclass(frozen=True)
class Recipe:
    """Everything a dataset fixes: builder, splits, loader, optimiser, schedule and geometric sampling."""

    name: str  # folder under configs/official
    title: str
    builder: str
    root_kwargs: str  # prepended to every split's kwargs ('' for none)
    student_images: int | None  # class-balanced training images of a student (None: all but val)
    val_size: int
    epochs: int
    milestones: tuple[int, ...]
    train_loader: str
    eval_loader: str
    weight_decay: float
    max_points: int
    hardware: str
    test_kwargs: str = ""  # extra kwargs of the test split (e.g. a class-balanced subset)


FMNIST = Recipe(
    name="fashion_mnist",
    title="Fashion-MNIST (sized for 2 CPU cores)",
    builder="geokt_plugin.data.fashion_mnist",
    root_kwargs="",
    student_images=1000,
    val_size=1000,
    epochs=8,
    milestones=(4, 6),
    train_loader="batch_size: 32, num_workers: 0, drop_last: False",
    eval_loader="batch_size: 100, num_workers: 0",
    weight_decay=1e-4,
    max_points=128,
    hardware="2 CPU cores, 1 torch thread per run",
    test_kwargs="subset_size: 2000, seed: 0",
)
CIFAR10 = Recipe(
    name="cifar10",
    title="CIFAR-10",
    builder="geokt_plugin.data.cifar10",
    root_kwargs="root: '~/datasets/cifar10', download: True, ",
    student_images=None,
    val_size=5000,
    epochs=182,
    milestones=(91, 136),
    train_loader="batch_size: 64, num_workers: 4, pin_memory: True, drop_last: False",
    eval_loader="batch_size: 256, num_workers: 4, pin_memory: True",
    weight_decay=1e-4,
    max_points=256,
    hardware="1 GPU (or N with accelerate launch)",
)

# Instructors: (file stem, model, recipe overrides). Fashion-MNIST instructors see more images than the students
# (a stronger instructor, as in the probe), never the validation images.
FMNIST_INSTRUCTORS = {
    "resnet20": dict(model="resnet20", images=5000, epochs=8, milestones=(4, 6), classes=None),
    "wide_resnet10_2": dict(model="wide_resnet10_2", images=4000, epochs=8, milestones=(4, 6), classes=None),
    "resnet20_classes0-4": dict(model="resnet20", images=2500, epochs=8, milestones=(4, 6), classes=(0, 1, 2, 3, 4)),
}
CIFAR_INSTRUCTORS = {
    "resnet56": dict(model="resnet56", wd=1e-4, dataset="cifar10"),
    "wide_resnet40_4": dict(model="wide_resnet40_4", wd=5e-4, dataset="cifar10"),
    "wide_resnet40_4_cifar100": dict(model="wide_resnet40_4", wd=5e-4, dataset="cifar100"),
}
EXTERNAL_STUDENT_CLASSES = (5, 6, 7, 8, 9)  # Fashion-MNIST: the student learns the other half of the classes


# ------------------------------------------------------------------------------------------------------------------
# YAML rendering
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class Spec:
    """One config: what is trained, from whom, on which data, with which method."""

    recipe: Recipe
    experiment: str
    stem: str
    title: str
    student: str
    method: str
    teacher: str | None = None
    teacher_ckpt: str | None = None
    teacher_classes: int = 10
    num_classes: int = 10
    classes: tuple[int, ...] | None = None
    fraction: float | None = None
    images: int | None = None  # overrides recipe.student_images (instructors)
    epochs: int | None = None
    milestones: tuple[int, ...] | None = None
    weight_decay: float | None = None
    builder: str | None = None
    root_kwargs: str | None = None
    hp: dict = field(default_factory=dict)  # method hyperparameters (CHOSEN or a SWEEP setting)
    test: bool = True  # evaluate the test set at the end (sweep runs never do)
    train_loader: str | None = None  # overrides recipe.train_loader
    notes: tuple[str, ...] = ()

    @property
    def relpath(self) -> str:
        return f"{self.recipe.name}/{PAPER_KEY}/{self.experiment}/{self.stem}.yaml"


def _kv(items: Iterable[str]) -> str:
    return ", ".join(i for i in items if i)


def _data_block(spec: Spec) -> str:
    r = spec.recipe
    builder = spec.builder or r.builder
    root = r.root_kwargs if spec.root_kwargs is None else spec.root_kwargs
    classes = f"classes: {list(spec.classes)}" if spec.classes else ""
    images = spec.images if spec.images is not None else r.student_images
    train = _kv([
        root + "split: 'train'",
        f"subset_size: {images}" if images is not None else "",
        f"fraction: {spec.fraction}" if spec.fraction not in (None, 1.0) else "",  # 100%: same text as no fraction
        f"val_size: {r.val_size}", "seed: 0", "augment: True", classes,
    ])
    val = _kv([root + "split: 'val'", f"val_size: {r.val_size}", "seed: 0", classes])
    test = _kv([root + "split: 'test'", r.test_kwargs, classes])
    splits = [("train", train), ("val", val)] + ([("test", test)] if spec.test else [])
    out = ["datasets:"]
    for split, kwargs in splits:
        out += [f"  {split}: !import_call", f"    key: '{builder}'", "    init:", f"      kwargs: {{{kwargs}}}"]
    return "\n".join(out) + "\n"


def _models_block(spec: Spec) -> str:
    student = MODELS[spec.student]
    if spec.teacher is None:
        return "models:\n  student_model:\n" + student.block(spec.num_classes, "    ")
    teacher = MODELS[spec.teacher]
    return ("models:\n  teacher_model:\n" + teacher.block(spec.teacher_classes, "    ")
            + f"    src_ckpt: '{spec.teacher_ckpt}'\n"
            + "  student_model:\n" + student.block(spec.num_classes, "    "))


def _ce_term() -> str:
    return """        ce:
          criterion: {key: 'CrossEntropyLoss', kwargs: {reduction: 'mean'}}
          criterion_wrapper:
            key: 'SimpleLossWrapper'
            kwargs:
              input: {is_from_teacher: False, module_path: '.', io: 'output'}
              target: {uses_label: True}
          weight: 1.0
"""


def _kd_term(hp: dict) -> str:
    return f"""        kd:
          criterion:
            key: 'KDLoss'
            kwargs: {{student_module_path: '.', student_module_io: 'output', teacher_module_path: '.',
                     teacher_module_io: 'output', temperature: {hp['temperature']}, alpha: {hp['alpha']},
                     reduction: 'batchmean'}}
          weight: 1.0
"""


def _geo_terms(method: str, hp: dict, max_points: int) -> str:
    key, knobs = GEOKT_KEYS[method], GEOKT_KNOBS[method]
    out = []
    for i, layer in enumerate(hp["layers"]):
        if i == 0:
            kwargs = (f"&geo {{student_module_path: '{layer}', teacher_module_path: '{layer}',\n"
                      f"                     {knobs}, max_points: {max_points}}}")
            weight = f"&geo_weight {hp['weight']}"
        else:
            kwargs = f"{{<<: *geo, student_module_path: '{layer}', teacher_module_path: '{layer}'}}"
            weight = "*geo_weight"
        out.append(f"""        geo_{layer}:
          criterion:
            key: '{key}'
            kwargs: {kwargs}
          weight: {weight}
""")
    return "".join(out)


def _at_term(hp: dict) -> str:
    pairs = "".join(
        f"                {layer}: {{teacher: {{path: '{layer}', io: 'output'}}, "
        f"student: {{path: '{layer}', io: 'output'}}, weight: 1}}\n" for layer in hp["layers"])
    return f"""        at:
          criterion:
            key: 'ATLoss'
            kwargs:
              at_pairs:
{pairs}              mode: 'code'
          weight: {hp['weight']}
"""


def _hint_term(hp: dict) -> str:
    return f"""        hint:
          criterion: {{key: 'MSELoss', kwargs: {{reduction: 'mean'}}}}
          criterion_wrapper:
            key: 'SimpleLossWrapper'
            kwargs:
              input: {{is_from_teacher: False, module_path: 'adapters.hint', io: 'output'}}
              target: {{is_from_teacher: True, module_path: '{hp['layer']}', io: 'output'}}
          weight: {hp['weight']}
"""


def _hooks(spec: Spec) -> list[str]:
    m, hp = spec.method, spec.hp
    if m in ("ce", "kd"):
        return []
    if m == "fitnets":
        return [hp["layer"]]
    if m == "at":
        return list(hp["layers"])
    return list(hp["geo"]["layers"] if m == "geokt_rank_kd" else hp["layers"])


def _train_block(spec: Spec) -> str:
    r = spec.recipe
    epochs = spec.epochs or r.epochs
    milestones = list(spec.milestones or r.milestones)
    wd = spec.weight_decay if spec.weight_decay is not None else r.weight_decay
    hooks = _hooks(spec)
    hook_list = "[" + ", ".join(f"'{h}'" for h in hooks) + "]"
    out = f"""train:
  log_freq: 100
  num_epochs: {epochs}
  train_data_loader:
    dataset_id: 'train'
    sampler: {{class_or_func: !import_get {{key: 'torch.utils.data.RandomSampler'}}, kwargs: {{}}}}
    kwargs: {{{spec.train_loader or r.train_loader}}}
  val_data_loader:
    dataset_id: 'val'
    sampler: &eval_sampler {{class_or_func: !import_get {{key: 'torch.utils.data.SequentialSampler'}}, kwargs: {{}}}}
    kwargs: &eval_loader {{{r.eval_loader}}}
"""
    if spec.teacher is None:
        out += """  model:
    forward_proc: 'forward_batch_only'
    sequential: []
    forward_hook: {input: [], output: []}
    wrapper:
    requires_grad: True
"""
    else:
        out += f"""  teacher:
    forward_proc: 'forward_batch_only'
    sequential: []
    forward_hook: &hooks {{input: [], output: {hook_list}}}
    wrapper:
    requires_grad: False
  student:
    forward_proc: 'forward_batch_only'
"""
        if spec.method == "fitnets":
            layer = spec.hp["layer"]
            idx = ALL_LAYERS.index(layer)
            cin, cout = MODELS[spec.student].channels[idx], MODELS[spec.teacher].channels[idx]
            out += f"""    auxiliary_model_wrapper:
      key: 'GeoKTStudentWrapper'
      kwargs:
        adapters:
          hint: {{path: 'student_model.{layer}', io: 'output', in_channels: {cin}, out_channels: {cout}}}
    forward_hook: {{input: [], output: ['student_model.{layer}', 'adapters.hint']}}
"""
        else:
            out += "    sequential: []\n    forward_hook: *hooks\n"
        out += "    wrapper:\n    requires_grad: True\n"
    out += f"""  optimizer: {{key: 'SGD', kwargs: {{lr: 0.1, momentum: 0.9, weight_decay: {wd}}}}}
  scheduler: {{key: 'MultiStepLR', kwargs: {{milestones: {milestones}, gamma: 0.1}}, scheduling_step: 0}}
  criterion:
    key: 'WeightedSumLoss'
    kwargs:
      sub_terms:
"""
    m, hp = spec.method, spec.hp
    if m == "ce":
        out += _ce_term()
    elif m == "kd":
        out += _kd_term(hp)
    elif m == "fitnets":
        out += _ce_term() + _hint_term(hp)
    elif m == "at":
        out += _ce_term() + _at_term(hp)
    elif m == "geokt_rank_kd":
        out += _kd_term(hp["kd"]) + _geo_terms("geokt_rank", hp["geo"], r.max_points)
    else:
        out += _ce_term() + _geo_terms(m, hp, r.max_points)
    return out


def render(spec: Spec) -> str:
    """The YAML text of one config."""
    head = [f"# {spec.recipe.title}, {spec.title}.", f"# Method: {METHOD_TITLES[spec.method]}."]
    head += [f"# {n}" for n in spec.notes]
    head += ["# Generated by `python scripts/suite.py configs`: edit the generator, not this file."]
    test = """
test:
  test_data_loader:
    dataset_id: 'test'
    sampler: *eval_sampler
    kwargs: *eval_loader
""" if spec.test else ""
    return ("\n".join(head) + "\ndependencies:\n  - name: 'geokt_plugin'\n\n" + _data_block(spec) + "\n"
            + _models_block(spec) + "\n" + _train_block(spec) + test)


# ------------------------------------------------------------------------------------------------------------------
# The experiments
# ------------------------------------------------------------------------------------------------------------------


def instructor_dir(recipe: Recipe, name: str) -> str:
    return f"{RUNS}/{recipe.name}/{PAPER_KEY}/instructors/ce-{name}/seed0"


def _method_hp(method: str) -> dict:
    if method == "geokt_rank_kd":
        return {"kd": CHOSEN["kd"], "geo": CHOSEN["geokt_rank"]}
    return dict(CHOSEN.get(method, {}))


def _student_specs(recipe: Recipe, experiment: str, title: str, student: str, teacher: str, teacher_name: str,
                   methods: Sequence[str], *, teacher_classes: int = 10, num_classes: int = 10,
                   classes: tuple[int, ...] | None = None, fraction: int | None = None,
                   notes: tuple[str, ...] = ()) -> list[Spec]:
    specs = []
    suffix = f"_frac{fraction}" if fraction is not None else ""
    for method in methods:
        common = dict(recipe=recipe, experiment=experiment, student=student, method=method, num_classes=num_classes,
                      classes=classes, fraction=None if fraction is None else fraction / 100, notes=notes,
                      hp=_method_hp(method))
        if method == "ce":
            specs.append(Spec(stem=f"ce-{student}{suffix}", title=title, **common))
        else:
            specs.append(Spec(stem=f"{method}-{student}_from_{teacher_name}{suffix}", title=title, teacher=teacher,
                              teacher_ckpt=f"{instructor_dir(recipe, teacher_name)}/best.pt",
                              teacher_classes=teacher_classes, **common))
    return specs


def fashion_mnist_specs() -> list[Spec]:
    r = FMNIST
    specs = []
    for name, ins in FMNIST_INSTRUCTORS.items():
        classes = ins["classes"]
        specs.append(Spec(
            recipe=r, experiment="instructors", stem=f"ce-{name}", title=f"instructor {name}", student=ins["model"],
            method="ce", num_classes=len(classes) if classes else 10, classes=classes, images=ins["images"],
            epochs=ins["epochs"], milestones=ins["milestones"],
            train_loader="batch_size: 64, num_workers: 0, drop_last: False",
            notes=("Instructor training (CE). Its best.pt is the src_ckpt of the students.",)))
    specs += _student_specs(r, "smaller_model", "smaller model: resnet8 from a resnet20 instructor", "resnet8",
                            "resnet20", "resnet20", ("ce", *DISTILL_METHODS))
    specs += _student_specs(r, "across_architectures", "across architectures: resnet8 from a wide_resnet10_2 "
                            "instructor", "resnet8", "wide_resnet10_2", "wide_resnet10_2", FMNIST_ACROSS_METHODS)
    specs += _student_specs(
        r, "external_data", "external data: a resnet8 student on classes 5-9 from a resnet20 instructor trained on "
        "classes 0-4", "resnet8", "resnet20", "resnet20_classes0-4", FMNIST_EXTERNAL_METHODS, teacher_classes=5,
        num_classes=5, classes=EXTERNAL_STUDENT_CLASSES,
        notes=("KD does not apply: the instructor's 5 classes are not the student's.",))
    for frac in FRACTIONS:
        specs += _student_specs(r, "limited_data", f"limited data: {frac}% of the student images, resnet8 from "
                                "resnet20", "resnet8", "resnet20", "resnet20", FMNIST_LIMITED_METHODS, fraction=frac)
    for method, settings in SWEEP.items():
        for tag, hp in settings:
            teacher = "resnet20"
            specs.append(Spec(
                recipe=r, experiment="sweep", stem=f"{method}-resnet8_from_{teacher}__{tag}",
                title=f"validation sweep, setting {tag}", student="resnet8", method=method, teacher=teacher,
                teacher_ckpt=f"{instructor_dir(r, teacher)}/best.pt", hp=hp, test=False,
                notes=("Sweep run: pick by final validation top-1 (never test); see docs/reproducing.md.",)))
    return specs


def cifar10_specs() -> list[Spec]:
    r = CIFAR10
    specs = []
    for name, ins in CIFAR_INSTRUCTORS.items():
        c100 = ins["dataset"] == "cifar100"
        notes = ["Instructor training (CE). Its best.pt is the src_ckpt of the students."]
        if ins["wd"] != r.weight_decay:
            notes.append(f"Weight decay {ins['wd']} (the Wide ResNet paper's value) instead of {r.weight_decay}.")
        specs.append(Spec(
            recipe=r, experiment="instructors", stem=f"ce-{name}", title=f"instructor {name}"
            + (" on CIFAR-100" if c100 else ""), student=ins["model"], method="ce", num_classes=100 if c100 else 10,
            weight_decay=ins["wd"], builder="geokt_plugin.data.cifar100" if c100 else None,
            root_kwargs="root: '~/datasets/cifar100', download: True, " if c100 else None, notes=tuple(notes)))
    specs += _student_specs(r, "smaller_model", "smaller model: resnet20 from a resnet56 instructor", "resnet20",
                            "resnet56", "resnet56", ("ce", *DISTILL_METHODS))
    specs += _student_specs(r, "across_architectures", "across architectures: resnet20 from a wide_resnet40_4 "
                            "instructor", "resnet20", "wide_resnet40_4", "wide_resnet40_4", ("ce", *DISTILL_METHODS))
    specs += _student_specs(
        r, "external_data", "external data: resnet20 on CIFAR-10 from a wide_resnet40_4 trained on CIFAR-100",
        "resnet20", "wide_resnet40_4", "wide_resnet40_4_cifar100", ("ce", *NO_LOGIT_METHODS), teacher_classes=100,
        notes=("KD does not apply: the instructor predicts CIFAR-100 classes.",))
    for frac in FRACTIONS:
        specs += _student_specs(r, "limited_data", f"limited data: {frac}% of the training images, resnet20 from "
                                "resnet56", "resnet20", "resnet56", "resnet56", LIMITED_METHODS, fraction=frac)
    return specs


def all_specs() -> list[Spec]:
    return fashion_mnist_specs() + cifar10_specs()


# ------------------------------------------------------------------------------------------------------------------
# READMEs
# ------------------------------------------------------------------------------------------------------------------

EXPERIMENT_INTRO = {
    "instructors": "Instructor training (CE only). Train these first: every student config's `src_ckpt` names "
                   "the `best.pt` these runs write. Instructors use one seed (0).",
    "smaller_model": "Claim 1, transfer to a smaller model; claim 4 (synergy with KD) is the `geokt_rank_kd` row "
                     "against `kd` and `geokt_rank`.",
    "across_architectures": "Claim 2, transfer between different architectures (the instructor's channel counts "
                            "differ from the student's; the geometric losses need no projection, FitNets needs its "
                            "adapter). Claim 4 again through `geokt_rank_kd`.",
    "external_data": "Claim 3, transfer from an instructor trained on other data. KD cannot apply (different label "
                     "spaces), so only feature-based methods are compared with CE.",
    "limited_data": "Claim 5, training with limited data: the methods below on 10/20/50/100% of the training "
                    "images (nested class-balanced subsets). The `_frac100` configs equal the `smaller_model` ones; "
                    "the Fashion-MNIST suite trains them once and links the run directories.",
    "sweep": "The validation sweep that chose the loss weights and knobs of every method (same number of settings "
             "per method, one seed, chosen by final validation top-1; the test set is never looked at). Results: "
             "`docs/reproducing.md`, section Sweep. Run with `bash scripts/run_fashion_mnist_suite.sh sweep`.",
}


def readme(recipe: Recipe, experiment: str, specs: list[Spec]) -> str:
    rel = f"configs/official/{recipe.name}/{PAPER_KEY}/{experiment}"
    lines = [f"# {recipe.title}: {experiment.replace('_', ' ')}", "", EXPERIMENT_INTRO[experiment], ""]
    if recipe is FMNIST:
        lines += ["Sizing: " + _fmnist_sizing() + " Measured results and the per-claim verdicts are in "
                  "[docs/reproducing.md](../../../../../docs/reproducing.md).", ""]
    else:
        lines += ["Recipe: SGD lr 0.1, momentum 0.9, weight decay 1e-4 (5e-4 for the Wide ResNet instructors), "
                  "batch 64, 182 epochs, MultiStepLR [91, 136] x0.1, random crop (padding 4) + horizontal flip; "
                  "5,000 training images are held out as the validation split (the test set is only evaluated at "
                  "the end). Loss weights come from the Fashion-MNIST validation sweep and were not tuned on "
                  "CIFAR-10. The data downloads to `~/datasets/cifar10` (and `~/datasets/cifar100`).", ""]
    lines += ["## Paper", "", "```bibtex", BIBTEX, "```", "",
              "The geometric losses are this project's formulation of the paper's description "
              "([docs/losses.md](../../../../../docs/losses.md)), not the paper's equations.", "",
              "## Commands", "", "One process" + (" on CPU" if recipe is FMNIST else
                                                     " (GPU if present; add `--device cpu` for CPU)")
              + ", for each seed S in 0 1 2"
              + (" (instructors: seed 0 only)" if experiment == "instructors" else "") + ":", "", "```bash"]
    seed = "0" if experiment == "instructors" else "$S"
    for spec in specs:
        run_dir = f"runs/{spec.relpath[:-5]}/seed{seed}"
        cpu = " --device cpu" if recipe is FMNIST else ""
        lines.append(f"geokt-train --config {rel}/{spec.stem}.yaml --run-dir {run_dir} --seed {seed}{cpu}")
    lines += ["```", "", "Several GPUs (one process per GPU; batch 64 per process, the learning rate is not scaled):",
              "", "```bash"]
    for spec in specs:
        run_dir = f"runs/{spec.relpath[:-5]}/seed{seed}"
        lines.append(f"accelerate launch --multi_gpu --num_processes N -m geokt_plugin.train --config "
                     f"{rel}/{spec.stem}.yaml --run-dir {run_dir} --seed {seed}")
    lines += ["```", "", "Then the table: `geokt-compare runs/" + f"{recipe.name}/{PAPER_KEY}/{experiment}/*/seed* "
              f"--out runs/{recipe.name}/{PAPER_KEY}/report`.", "", "## Results", "",
              "Top-1 accuracy (%), mean ± std over seeds (n). Fill from `geokt-compare`.", "",
              "| config | method | final val | best val | test | n |", "|---|---|---:|---:|---:|---:|"]
    for spec in specs:
        lines.append(f"| `{spec.stem}` | {METHOD_TITLES[spec.method]} | | | | |")
    return "\n".join(lines) + "\n"


def _fmnist_sizing() -> str:
    r = FMNIST
    ins = ", ".join(f"{k} {v['images']} images x {v['epochs']} epochs" for k, v in FMNIST_INSTRUCTORS.items())
    return (f"students train on {r.student_images} class-balanced images for {r.epochs} epochs (MultiStepLR "
            f"{list(r.milestones)}), validated on {r.val_size} held-out training images, tested on a class-balanced "
            f"2000-image subset of the official test set; instructors: {ins}. Geometric losses sample "
            f"`max_points: {r.max_points}` positions (layer1 and layer2). SGD lr 0.1, momentum 0.9, weight decay "
            "1e-4, batch 64, crop + flip.")


def generated_files() -> dict[Path, str]:
    """Every file under configs/official: path -> text."""
    files: dict[Path, str] = {}
    groups: dict[tuple[str, str], list[Spec]] = {}
    for spec in all_specs():
        files[OFFICIAL / spec.relpath] = render(spec)
        groups.setdefault((spec.recipe.name, spec.experiment), []).append(spec)
    for (name, experiment), specs in groups.items():
        recipe = FMNIST if name == FMNIST.name else CIFAR10
        files[OFFICIAL / name / PAPER_KEY / experiment / "README.md"] = readme(recipe, experiment, specs)
    return files


def reproducing_table() -> str:
    """The docs/reproducing.md table: one row per official config (experiment, metric, seeds, hardware, logs)."""
    rows = ["| config | experiment | metric | seeds | hardware | run dir and log |", "|---|---|---|---|---|---|"]
    for spec in all_specs():
        fm = spec.recipe is FMNIST
        if spec.experiment == "sweep":
            seeds, metric = f"{SWEEP_SEED}", "final val top-1 (no test)"
        elif spec.experiment == "instructors":
            seeds, metric = "0", "val top-1 (final, best); test top-1 of best.pt"
        else:
            seeds, metric = "0, 1, 2", "val top-1 (final, best); test top-1 of best.pt"
        state = "ran" if fm else "not run here"
        where = f"`runs/{spec.relpath[:-5]}/seed<S>[.log]`"
        rows.append(f"| [`{spec.stem}`](../configs/official/{spec.relpath}) | {spec.recipe.name}/{spec.experiment} | "
                    f"{metric} | {seeds} ({state}) | {spec.recipe.hardware} | {where} |")
    return "\n".join(rows) + "\n"


# The paper's claims as comparisons of Fashion-MNIST cells: (claim, experiment A, config A, experiment B, config B,
# what "holds" means). A is the GeoKT side.
_SM, _AA, _ED, _LD = "smaller_model", "across_architectures", "external_data", "limited_data"
CLAIMS = [
    ("1 smaller model", _SM, "geokt_rank-resnet8_from_resnet20", _SM, "ce-resnet8", "better"),
    ("1 smaller model", _SM, "geokt_distance-resnet8_from_resnet20", _SM, "ce-resnet8", "better"),
    ("1 smaller model", _SM, "geokt_kl-resnet8_from_resnet20", _SM, "ce-resnet8", "better"),
    ("2 across architectures", _AA, "geokt_rank-resnet8_from_wide_resnet10_2", _AA, "ce-resnet8", "better"),
    ("3 external data", _ED, "geokt_rank-resnet8_from_resnet20_classes0-4", _ED, "ce-resnet8", "better"),
    ("4 synergy with KD", _SM, "geokt_rank_kd-resnet8_from_resnet20", _SM, "kd-resnet8_from_resnet20", "better"),
    ("4 synergy with KD", _SM, "geokt_rank_kd-resnet8_from_resnet20", _SM, "geokt_rank-resnet8_from_resnet20",
     "better"),
    ("4 synergy with KD", _AA, "geokt_rank_kd-resnet8_from_wide_resnet10_2", _AA, "kd-resnet8_from_wide_resnet10_2",
     "better"),
    ("4 synergy with KD", _AA, "geokt_rank_kd-resnet8_from_wide_resnet10_2", _AA,
     "geokt_rank-resnet8_from_wide_resnet10_2", "better"),
    ("5 limited data", _LD, "geokt_rank_kd-resnet8_from_resnet20_frac50", _LD, "ce-resnet8_frac100", "matches"),
    ("5 limited data", _LD, "geokt_rank_kd-resnet8_from_resnet20_frac50", _LD, "ce-resnet8_frac50", "better"),
    ("5 limited data", _LD, "geokt_rank_kd-resnet8_from_resnet20_frac10", _LD, "ce-resnet8_frac10", "better"),
    # context: GeoKT against the strongest tuned feature baseline of the same pair
    ("vs best baseline", _SM, "geokt_rank-resnet8_from_resnet20", _SM, "fitnets-resnet8_from_resnet20", "better"),
    ("vs best baseline", _SM, "geokt_kl-resnet8_from_resnet20", _SM, "fitnets-resnet8_from_resnet20", "better"),
    ("vs best baseline", _AA, "geokt_rank-resnet8_from_wide_resnet10_2", _AA, "fitnets-resnet8_from_wide_resnet10_2",
     "better"),
    ("vs best baseline", _ED, "geokt_rank-resnet8_from_resnet20_classes0-4", _ED,
     "at-resnet8_from_resnet20_classes0-4", "better"),
]


def claims_table(results_csv: Path, metric: str = "test") -> str:
    """Verdicts from a geokt-compare results.csv: difference of means, its standard error (Welch), the verdict.

    Rule: d = mean(A) - mean(B), se = sqrt(sd_A^2 / n_A + sd_B^2 / n_B). For "better": holds if d > 2 se, does not
    hold if d < -2 se, else within noise. For "matches" (A is as good as B): holds if d > -2 se, else does not hold.
    A side with one seed gets no verdict.
    """
    import csv
    import math

    with results_csv.open(newline="") as fh:
        cells = {(r["experiment"], r["config"]): r for r in csv.DictReader(fh)}
    rows = [f"| claim | A | B | A {metric} | B {metric} | A - B | 2 se | verdict |",
            "|---|---|---|---:|---:|---:|---:|---|"]
    for claim, ea, ca, eb, cb, kind in CLAIMS:
        a, b = cells.get((ea, ca)), cells.get((eb, cb))
        if a is None or b is None or not a[f"{metric}_mean"] or not b[f"{metric}_mean"]:
            rows.append(f"| {claim} | `{ca}` | `{cb}` | | | | | not measured |")
            continue
        n_key = "n_test" if metric == "test" else "n"
        ma, mb = float(a[f"{metric}_mean"]), float(b[f"{metric}_mean"])
        sa, sb = float(a[f"{metric}_std"] or 0.0), float(b[f"{metric}_std"] or 0.0)
        na, nb = int(a[n_key]), int(b[n_key])
        d, se = ma - mb, math.sqrt(sa ** 2 / na + sb ** 2 / nb)
        if min(na, nb) < 2:
            verdict = "no verdict: one seed"
        elif kind == "better":
            verdict = "holds" if d > 2 * se else "does not hold" if d < -2 * se else "within noise"
        else:
            verdict = "holds" if d > -2 * se else "does not hold"
        few = " (n < 3)" if min(na, nb) < 3 else ""
        rows.append(f"| {claim} | `{ea}/{ca}` (n={na}) | `{eb}/{cb}` (n={nb}) | {ma:.2f} ± {sa:.2f} | "
                    f"{mb:.2f} ± {sb:.2f} | {d:+.2f} | {2 * se:.2f} | {verdict}{few} |")
    return "\n".join(rows) + "\n"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def sweep_table() -> str:
    """The sweep's result per method and setting, and the choice (highest final validation top-1)."""
    import csv

    rows = ["| method | setting | final val top-1 | best val top-1 | chosen |", "|---|---|---:|---:|---|"]
    for method, settings in SWEEP.items():
        results = []
        for tag, hp in settings:
            run_dir = RUNS / FMNIST.name / PAPER_KEY / "sweep" / f"{method}-resnet8_from_resnet20__{tag}" / \
                f"seed{SWEEP_SEED}"
            vals: list[float] = []
            if (run_dir / "metrics.csv").is_file():
                with (run_dir / "metrics.csv").open(newline="") as fh:
                    vals = [float(r["val_acc"]) for r in csv.DictReader(fh)]
            results.append((tag, hp, vals[-1] if vals and finished(run_dir) else None, max(vals) if vals else None))
        done = [r for r in results if r[2] is not None]
        best = max(done, key=lambda r: r[2]) if len(done) == len(results) else None
        for tag, _, final, top in results:
            mark = "**yes**" if best is not None and tag == best[0] else ""
            rows.append(f"| {method} | {tag} | {_pct(final)} | {_pct(top)} | {mark} |")
    return "\n".join(rows) + "\n"


REPRODUCING = ROOT / "docs" / "reproducing.md"
TABLE_START, TABLE_END = "<!-- official-configs:start -->", "<!-- official-configs:end -->"


def with_reproducing_table(text: str) -> str:
    """docs/reproducing.md with the official-configs table between its markers replaced by the current one."""
    head, sep, rest = text.partition(TABLE_START)
    _, sep2, tail = rest.partition(TABLE_END)
    if not sep or not sep2:
        raise SystemExit(f"{REPRODUCING} lacks the markers {TABLE_START} ... {TABLE_END}")
    return head + TABLE_START + "\n" + reproducing_table() + TABLE_END + tail


def cmd_configs(check: bool) -> int:
    files = generated_files()
    if REPRODUCING.is_file():
        files[REPRODUCING] = with_reproducing_table(REPRODUCING.read_text())
    stale = sorted(str(p) for p in OFFICIAL.rglob("*") if p.is_file() and p not in files)
    if check:
        bad = [str(p) for p, text in files.items() if not p.exists() or p.read_text() != text]
        for p in bad + stale:
            print(f"out of date: {p}", file=sys.stderr)
        if bad or stale:
            print("Run `python scripts/suite.py configs` to regenerate configs/official.", file=sys.stderr)
            return 1
        return 0
    for p in stale:
        Path(p).unlink()
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
    print(f"wrote {len(files)} files under {OFFICIAL.relative_to(ROOT)}")
    return 0


# ------------------------------------------------------------------------------------------------------------------
# Running the suite
# ------------------------------------------------------------------------------------------------------------------


@dataclass
class Run:
    config: Path
    run_dir: Path
    seed: int
    needs: tuple[Path, ...]  # checkpoints that must exist first
    same_as: Run | None = None  # an identical config's run: link instead of training


def _phase_specs(phase: str) -> list[Spec]:
    specs = fashion_mnist_specs()
    if phase == "instructors":
        return [s for s in specs if s.experiment == "instructors"]
    if phase == "sweep":
        return [s for s in specs if s.experiment == "sweep"]
    if phase in ("students", "core", "extra"):  # most important first: a cut-short suite still covers every claim
        order = ("smaller_model", "limited_data", "across_architectures", "external_data")
        students = sorted((s for s in specs if s.experiment in order), key=lambda s: order.index(s.experiment))
        if phase == "students":
            return students
        return [s for s in students if (s.relpath in EXTRA_CELLS) == (phase == "extra")]
    raise SystemExit(f"unknown phase {phase!r}; choose instructors, sweep or students (= core, then extra)")


# The suite trains these after every other cell has its 3 seeds (phase "students" = "core" then "extra"), so on a
# busy machine the main comparison finishes first.
EXTRA_CELLS = {
    f"{FMNIST.name}/{PAPER_KEY}/{e}/{stem}.yaml" for e, stem in [
        ("smaller_model", "geokt_distance-resnet8_from_resnet20"),
        ("smaller_model", "geokt_kl-resnet8_from_resnet20"),
        ("across_architectures", "fitnets-resnet8_from_wide_resnet10_2"),
        ("limited_data", "ce-resnet8_frac20"),
        ("limited_data", "kd-resnet8_from_resnet20_frac20"),
        ("limited_data", "geokt_rank_kd-resnet8_from_resnet20_frac20"),
        ("across_architectures", "at-resnet8_from_wide_resnet10_2"),
        ("across_architectures", "geokt_distance-resnet8_from_wide_resnet10_2"),
        ("across_architectures", "geokt_kl-resnet8_from_wide_resnet10_2"),
        ("external_data", "fitnets-resnet8_from_resnet20_classes0-4"),
        ("external_data", "geokt_distance-resnet8_from_resnet20_classes0-4"),
        ("external_data", "geokt_kl-resnet8_from_resnet20_classes0-4"),
        *(("limited_data", f"geokt_rank-resnet8_from_resnet20_frac{f}") for f in (10, 20, 50)),
    ]
}


def _normalised(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))


def plan(phases: Sequence[str]) -> list[Run]:
    """The runs of the phases in order; students seed-major (every cell gets seed 0 before any gets seed 1)."""
    runs: list[Run] = []
    first: dict[tuple[str, int], Run] = {}
    phases = [q for p in phases for q in (("core", "extra") if p == "students" else (p,))]
    for phase in phases:
        seeds = {"instructors": (0,), "sweep": (SWEEP_SEED,)}.get(phase, SEEDS)
        specs = _phase_specs(phase)
        for seed in seeds:
            for spec in specs:
                config = Path("configs/official") / spec.relpath
                text = (ROOT / config).read_text()
                digest = hashlib.sha256(_normalised(text).encode()).hexdigest()
                needs = tuple(Path(p) for p in re.findall(r"src_ckpt: '([^']+)'", text))
                run = Run(config, RUNS / spec.relpath[:-5] / f"seed{seed}", seed, needs)
                run.same_as = first.get((digest, seed))
                first.setdefault((digest, seed), run)
                runs.append(run)
    return runs


def finished(run_dir: Path, config: Path | None = None) -> bool:
    """geokt-train writes the `done` marker last, after the test evaluation; with ``config``, the run must also have
    used that config's current text (its config.yaml is a header line plus the text), so an edited config reruns."""
    if not (run_dir / "done").is_file():
        return False
    if config is None:
        return True
    used = run_dir / "config.yaml"
    return used.is_file() and used.read_text().split("\n", 1)[-1] == (ROOT / config).read_text()


def _ready(ckpt: Path) -> bool:
    """An instructor checkpoint is usable once its run has finished (best.pt exists from epoch 1 on)."""
    return ckpt.is_file() and finished(ckpt.parent)


def _alive_elsewhere(run: Run) -> bool:
    """Another suite process is training this run (its pid file names a live process)."""
    pid_file = run.run_dir.parent / f"{run.run_dir.name}.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    return True


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_phases(phases: Sequence[str], jobs: int, extra: Sequence[str], only: str | None = None) -> int:
    phase = "+".join(phases)
    runs = [r for r in plan(phases) if only is None or re.search(only, str(r.config))]
    todo = [r for r in runs if r.same_as is None and not finished(r.run_dir, r.config)]
    _log(f"{phase}: {len(runs)} runs, {len(todo)} to train, {jobs} at a time")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    active: list[tuple[Run, subprocess.Popen, float]] = []
    failures: list[Run] = []
    elsewhere = [r for r in todo if _alive_elsewhere(r)]
    pending = [r for r in todo if r not in elsewhere]
    if elsewhere:
        _log(f"{len(elsewhere)} runs are being trained by another process; waiting for them")
    while pending or active or elsewhere:
        for run in list(elsewhere):
            if not _alive_elsewhere(run):
                elsewhere.remove(run)
                if not finished(run.run_dir, run.config):
                    pending.insert(0, run)
        for run, proc, start in list(active):
            if proc.poll() is not None:
                active.remove((run, proc, start))
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                _log(f"{status} in {time.time() - start:.0f}s: {run.run_dir}")
                if proc.returncode != 0:
                    failures.append(run)
        failed_ckpts = {r.run_dir / "best.pt" for r in failures}
        for run in list(pending):
            if any(n in failed_ckpts for n in run.needs) or run.same_as in failures:
                pending.remove(run)
                failures.append(run)
                _log(f"skipped (its instructor failed): {run.run_dir}")
        while len(active) + len(elsewhere) < jobs:
            ready = next((r for r in pending if all(_ready(n) for n in r.needs)), None)
            if ready is None:
                break
            pending.remove(ready)
            if ready.run_dir.exists() and not ready.run_dir.is_symlink():
                # An unfinished run: start over (the runner refuses to overwrite without --overwrite).
                for child in sorted(ready.run_dir.rglob("*"), reverse=True):
                    child.unlink() if child.is_file() or child.is_symlink() else child.rmdir()
            ready.run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = ready.run_dir.parent / f"{ready.run_dir.name}.log"
            # geokt-train's entry point; --student-only: the instructor's accuracy is its own run's business.
            cmd = [sys.executable, "-m", "geokt_plugin.train", "--config", str(ready.config), "--run-dir",
                   str(ready.run_dir), "--seed", str(ready.seed), "--device", "cpu", "--student-only", *extra]
            _log("start: " + " ".join(cmd))
            with log.open("w") as fh:
                proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            (ready.run_dir.parent / f"{ready.run_dir.name}.pid").write_text(f"{proc.pid}\n")
            active.append((ready, proc, time.time()))
        if not active and not elsewhere:
            if pending:  # nothing runs and nothing can start
                missing = sorted({str(n) for r in pending for n in r.needs if not _ready(n)})
                _log(f"cannot start {len(pending)} runs: missing instructor checkpoints {missing}; run the "
                     "instructors phase first")
                failures += pending
            break
        time.sleep(2)
    for run in runs:
        if run.same_as is not None and finished(run.same_as.run_dir):
            if not run.run_dir.exists():
                run.run_dir.parent.mkdir(parents=True, exist_ok=True)
                run.run_dir.symlink_to(os.path.relpath(run.same_as.run_dir.resolve(), run.run_dir.parent.resolve()))
                _log(f"linked {run.run_dir} -> {run.same_as.run_dir} (identical config)")
    _log(f"{phase}: {len(failures)} failed")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("configs", help="write configs/official (or --check them)")
    p.add_argument("--check", action="store_true")
    sub.add_parser("docs-table", help="print the docs/reproducing.md table of official configs")
    sub.add_parser("sweep-table", help="print the sweep's results and choices (highest final val top-1)")
    p = sub.add_parser("claims", help="print the per-claim verdicts from a geokt-compare results.csv")
    p.add_argument("results_csv", nargs="?", default="docs/results/fashion_mnist/results.csv")
    p.add_argument("--metric", choices=("test", "final_val", "best_val"), default="test")
    p = sub.add_parser("plan", help="print the runs of phases (instructors, sweep, students)")
    p.add_argument("phases", nargs="+")
    p = sub.add_parser("run", help="train the runs of phases (instructors, sweep, students), in that order")
    p.add_argument("phases", nargs="+")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--train-args", default="", help="extra geokt-train arguments, e.g. '--epochs 1'")
    p.add_argument("--only", default=None, help="only configs whose path matches this regular expression")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    if args.cmd == "configs":
        return cmd_configs(args.check)
    if args.cmd == "claims":
        print(claims_table(Path(args.results_csv), args.metric), end="")
        return 0
    if args.cmd == "sweep-table":
        print(sweep_table(), end="")
        return 0
    if args.cmd == "docs-table":
        print(reproducing_table(), end="")
        return 0
    if args.cmd == "plan":
        for run in plan(args.phases):
            state = "linked" if run.same_as else "done" if finished(run.run_dir, run.config) else "todo"
            print(run.config, run.run_dir, run.seed, state)
        return 0
    return run_phases(args.phases, args.jobs, shlex.split(args.train_args), args.only)


if __name__ == "__main__":
    sys.exit(main())
