"""The experiment matrix as data: hyperparameters, models, dataset recipes and one :class:`Spec` per config.

Every official config is a :class:`Spec`; :func:`all_specs` lists them in the order the files and tables show them.
Run directory rule: ``runs/<config path relative to configs/official, without .yaml>/seed<S>``, so an instructor's
``best.pt`` is at ``runs/<dataset>/<paper-key>/instructors/<name>/seed0/best.pt``, the path students' ``src_ckpt``
names. Every student's ``dst_ckpt`` (where torchdistill's example script saves it) is the ``best.pt`` of its first
seed's run directory, so the script alone also chains instructors and students. CIFAR-10 instructors that torchdistill
released (:data:`RELEASED_INSTRUCTORS`) are loaded with ``pretrained: True`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..losses.spec import LOSS_SPECS

ROOT = Path(__file__).resolve().parents[2]  # the source checkout: configs/ and docs/ live beside geokt_plugin/
OFFICIAL = ROOT / "configs" / "official"
RUNS = Path("runs")  # relative: the CLI works from ROOT
PAPER_KEY = "theodorakopoulos2021"
SEEDS = (0, 1, 2)
SWEEP_SEED = 100  # the sweep's own seed, so the reported seeds 0-2 are not the ones the choice was made on

# ------------------------------------------------------------------------------------------------------------------
# Hyperparameters. CHOSEN holds the values picked by the Fashion-MNIST validation sweep (docs/reproducing.md,
# "Sweep"); every student config uses them, the CIFAR-10 ones included (carried over, not tuned on CIFAR-10).
# SWEEP holds the candidates: the same number of settings for every method, baselines and GeoKT alike.
# ------------------------------------------------------------------------------------------------------------------

# The geometric losses, from the LossSpec table: method name -> (registry key, knobs with their defaults). The
# configs write the defaults unchanged (the sweep varies the weight and the hooked layers).
GEOKT_LOSSES: dict[str, tuple[str, dict[str, Any]]] = {f"geokt_{s.name}": (s.key, s.knobs) for s in LOSS_SPECS.values()}
GEOKT_METHODS = tuple(GEOKT_LOSSES)
ALL_LAYERS = ("layer1", "layer2", "layer3")

CHOSEN: dict[str, dict[str, Any]] = {
    "kd": {"temperature": 4.0, "alpha": 0.5},
    "at": {"weight": 250.0, "layers": ("layer2", "layer3")},
    "fitnets": {"weight": 10.0, "layer": "layer2"},
    "geokt_distance": {"weight": 30.0, "layers": ALL_LAYERS},
    "geokt_kl": {"weight": 3.0, "layers": ALL_LAYERS},
    "geokt_rank": {"weight": 1.0, "layers": ALL_LAYERS},
    "geokt_nac": {"weight": 300.0, "layers": ALL_LAYERS},
}

SWEEP: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "kd": [("T4_a0.9", {"temperature": 4.0, "alpha": 0.9}), ("T4_a0.5", {"temperature": 4.0, "alpha": 0.5})],
    "at": [(f"w{w:g}", {"weight": w, "layers": ("layer2", "layer3")}) for w in (250.0, 1000.0)],
    "fitnets": [(f"w{w:g}", {"weight": w, "layer": "layer2"}) for w in (1.0, 10.0)],
    "geokt_distance": [(f"w{w:g}", {"weight": w, "layers": ALL_LAYERS}) for w in (10.0, 30.0)],
    "geokt_kl": [(f"w{w:g}", {"weight": w, "layers": ALL_LAYERS}) for w in (1.0, 3.0)],
    "geokt_rank": [(f"w{w:g}", {"weight": w, "layers": ALL_LAYERS}) for w in (1.0, 3.0)],
    # NAC's values are ~1e-3, so its grid spans two decades; 300 came out inside it (docs/reproducing.md, "Sweep").
    "geokt_nac": [(f"w{w:g}", {"weight": w, "layers": ALL_LAYERS}) for w in (30.0, 100.0, 300.0, 1000.0, 3000.0)],
}

METHOD_TITLES = {
    "ce": "CE only (no instructor)",
    "kd": "KD (Hinton et al.), torchdistill `KDLoss`",
    "fitnets": "FitNets, single-stage hint (1x1 conv+BN adapter, `MSELoss`) + CE",
    "at": "AT (Zagoruyko & Komodakis), torchdistill `ATLoss`, `mode: code` + CE",
    "geokt_distance": "GeoKT distance loss (`GeoKTDistanceLoss`) + CE",
    "geokt_kl": "GeoKT neighbour-KL loss (`GeoKTNeighborKLLoss`) + CE",
    "geokt_rank": "GeoKT neighbour-rank loss (`GeoKTNeighborRankLoss`) + CE",
    "geokt_nac": "GeoKT neighbourhood affinity contrast (`GeoKTNeighborhoodContrastLoss`, the authors' later "
                 "formulation) + CE",
    "geokt_rank_kd": "GeoKT neighbour-rank loss + KD",
    "geokt_nac_kd": "GeoKT neighbourhood affinity contrast + KD",
}
# GeoKT losses that also get a "+ KD" method, named "<method>_kd": KD's terms plus the loss at its chosen weight.
KD_COMBINED = ("geokt_rank", "geokt_nac")
GEOKT_KD_METHODS = tuple(f"{m}_kd" for m in KD_COMBINED)
DISTILL_METHODS = ("kd", "fitnets", "at", *GEOKT_METHODS, *GEOKT_KD_METHODS)
NO_LOGIT_METHODS = ("fitnets", "at", *GEOKT_METHODS)  # usable across label spaces
_missing = [f"{table} lacks {m!r}" for m in GEOKT_METHODS
            for table, entries in (("CHOSEN", CHOSEN), ("SWEEP", SWEEP), ("METHOD_TITLES", METHOD_TITLES))
            if m not in entries]
if _missing:
    raise ValueError(f"geokt_plugin.experiments: the LossSpec table has losses the experiment matrix does not: "
                     f"{'; '.join(_missing)}. Add them to geokt_plugin/experiments/matrix.py.")
LIMITED_METHODS = ("ce", "kd", "geokt_rank", "geokt_rank_kd", "geokt_nac", "geokt_nac_kd")
FRACTIONS = (10, 20, 50, 100)

# ------------------------------------------------------------------------------------------------------------------
# Models and datasets
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """A torchdistill registry model: its key, kwargs (without ``num_classes``) and per-stage channel counts."""

    key: str
    kwargs: dict[str, Any]
    channels: tuple[int, int, int]

    def config(self, num_classes: int) -> dict[str, Any]:
        """The ``models.<name>`` entry of a config (without ``src_ckpt``)."""
        return {"key": self.key, "kwargs": {"num_classes": num_classes, **self.kwargs}}


MODELS = {
    # not torchdistill's own key 'resnet': torchdistill's example script would find the module torchvision.models.resnet
    "resnet8": Model("GeoKTCifarResNet", {"depth": 8, "pretrained": False, "progress": False}, (16, 32, 64)),
    "resnet20": Model("resnet20", {"pretrained": False}, (16, 32, 64)),
    "resnet56": Model("resnet56", {"pretrained": False}, (16, 32, 64)),
    "wide_resnet10_2": Model(
        "wide_resnet", {"depth": 10, "k": 2, "dropout_p": 0.0, "pretrained": False, "progress": False}, (32, 64, 128)),
    "wide_resnet40_4": Model("wide_resnet40_4", {"dropout_p": 0.3, "pretrained": False}, (64, 128, 256)),
}


@dataclass(frozen=True)
class Recipe:
    """Everything a dataset fixes: builder, splits, loader, optimiser, schedule and geometric sampling."""

    name: str  # folder under configs/official
    title: str
    builder: str
    root_kwargs: dict[str, Any]  # put first into every split's kwargs
    student_images: int | None  # class-balanced training images of a student (None: all but val)
    val_size: int
    epochs: int
    milestones: tuple[int, ...]
    train_loader: dict[str, Any]
    eval_loader: dict[str, Any]
    weight_decay: float
    max_points: int
    hardware: str
    test_kwargs: dict[str, Any] = field(default_factory=dict)  # extra kwargs of the test split


FMNIST = Recipe(
    name="fashion_mnist",
    title="Fashion-MNIST (sized for 2 CPU cores)",
    builder="geokt_plugin.data.fashion_mnist",
    root_kwargs={},
    student_images=1000,
    val_size=1000,
    epochs=8,
    milestones=(4, 6),
    train_loader={"batch_size": 32, "num_workers": 0, "drop_last": False},
    eval_loader={"batch_size": 100, "num_workers": 0},
    weight_decay=1e-4,
    max_points=128,
    hardware="2 CPU cores, 1 torch thread per run",
    test_kwargs={"subset_size": 2000, "seed": 0},
)
CIFAR10 = Recipe(
    name="cifar10",
    title="CIFAR-10",
    builder="geokt_plugin.data.cifar10",
    root_kwargs={"root": "~/datasets/cifar10", "download": True},
    student_images=None,
    val_size=5000,
    epochs=182,
    milestones=(91, 136),
    train_loader={"batch_size": 64, "num_workers": 4, "pin_memory": True, "drop_last": False},
    eval_loader={"batch_size": 256, "num_workers": 4, "pin_memory": True},
    weight_decay=1e-4,
    max_points=256,
    hardware="1 GPU (or N with accelerate launch)",
)
RECIPES = {r.name: r for r in (FMNIST, CIFAR10)}


@dataclass(frozen=True)
class FmnistInstructor:
    """A Fashion-MNIST instructor: more images than a student (never the validation images), optional classes."""

    model: str
    images: int
    epochs: int = 8
    milestones: tuple[int, ...] = (4, 6)
    classes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class CifarInstructor:
    """A CIFAR instructor: its weight decay and the dataset it is trained on."""

    model: str
    weight_decay: float
    dataset: str = "cifar10"


FMNIST_INSTRUCTORS = {
    "resnet20": FmnistInstructor("resnet20", images=5000),
    "wide_resnet10_2": FmnistInstructor("wide_resnet10_2", images=4000),
    "resnet20_classes0-4": FmnistInstructor("resnet20", images=2500, classes=(0, 1, 2, 3, 4)),
}
FMNIST_INSTRUCTOR_LOADER = {"batch_size": 64, "num_workers": 0, "drop_last": False}
CIFAR_INSTRUCTORS = {
    "resnet56": CifarInstructor("resnet56", 1e-4),
    "wide_resnet40_4": CifarInstructor("wide_resnet40_4", 5e-4),
    "wide_resnet40_4_cifar100": CifarInstructor("wide_resnet40_4", 5e-4, dataset="cifar100"),
}
# Instructors torchdistill released weights for (``pretrained: True`` downloads ``<file>.pt`` of its v0.1.1 release,
# trained on the full training set with the test set as validation): instructor name -> release file.
RELEASED_INSTRUCTORS = {"resnet56": "cifar10-resnet56", "wide_resnet40_4": "cifar10-wide_resnet40_4",
                        "wide_resnet40_4_cifar100": "cifar100-wide_resnet40_4"}
RELEASED_NOTE = ("The instructor is torchdistill's released {model} (`pretrained: True`, downloaded on first use); "
                 "the instructors folder has a config that trains one on the 45,000-image split instead.")
CIFAR_INSTRUCTOR_NOTE = ("Optional: the students use torchdistill's released weights. This trains an instructor on "
                         "the 45,000-image split only; to use it, give the students' teacher_model `pretrained: "
                         "False` and {ckpt} as its `src_ckpt`.")
CIFAR100_DATA = {"builder": "geokt_plugin.data.cifar100",
                 "root_kwargs": {"root": "~/datasets/cifar100", "download": True}}
EXTERNAL_STUDENT_CLASSES = (5, 6, 7, 8, 9)  # Fashion-MNIST: the student learns the other half of the classes
INSTRUCTOR_NOTE = "Instructor training (CE). Its best.pt is the src_ckpt of the students."

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

# ------------------------------------------------------------------------------------------------------------------
# The configs
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
    released: str | None = None  # instead of teacher_ckpt: torchdistill's release file (pretrained: True)
    teacher_classes: int = 10
    num_classes: int = 10
    classes: tuple[int, ...] | None = None
    fraction: float | None = None
    images: int | None = None  # overrides recipe.student_images (instructors)
    epochs: int | None = None
    milestones: tuple[int, ...] | None = None
    weight_decay: float | None = None
    builder: str | None = None
    root_kwargs: dict[str, Any] | None = None
    hp: dict[str, Any] = field(default_factory=dict)  # method hyperparameters (CHOSEN or a SWEEP setting)
    test: bool = True  # evaluate the test set at the end (sweep runs never do)
    train_loader: dict[str, Any] | None = None  # overrides recipe.train_loader
    notes: tuple[str, ...] = ()

    @property
    def relpath(self) -> str:
        """The config's path under ``configs/official``."""
        return f"{self.recipe.name}/{PAPER_KEY}/{self.experiment}/{self.stem}.yaml"

    @property
    def run_name(self) -> str:
        """The run directory of the config without its ``seed<S>`` folder, relative to ``runs/``."""
        return self.relpath.removesuffix(".yaml")

    @property
    def dst_ckpt(self) -> str:
        """``models.student_model.dst_ckpt``: the ``best.pt`` of the run directory of the config's first seed."""
        seed = SWEEP_SEED if self.experiment == "sweep" else SEEDS[0]
        return f"{RUNS}/{self.run_name}/seed{seed}/best.pt"


def instructor_dir(recipe: Recipe, name: str) -> str:
    """The seed-0 run directory of an instructor config (``ce-<name>``)."""
    return f"{RUNS}/{recipe.name}/{PAPER_KEY}/instructors/ce-{name}/seed0"


def geo_method_of(kd_method: str) -> str:
    """The GeoKT method inside a "+ KD" method (``geokt_rank_kd`` -> ``geokt_rank``)."""
    return kd_method.removesuffix("_kd")


def _method_hp(method: str) -> dict[str, Any]:
    if method in GEOKT_KD_METHODS:
        return {"kd": CHOSEN["kd"], "geo": CHOSEN[geo_method_of(method)]}
    return dict(CHOSEN.get(method, {}))


def student_specs(recipe: Recipe, experiment: str, title: str, student: str, teacher: str, teacher_name: str,
                  methods: Sequence[str], *, teacher_classes: int = 10, num_classes: int = 10,
                  classes: tuple[int, ...] | None = None, fraction: int | None = None,
                  notes: tuple[str, ...] = ()) -> list[Spec]:
    """One experiment's student configs, one per method (``ce`` has no instructor)."""
    specs = []
    suffix = f"_frac{fraction}" if fraction is not None else ""
    released = RELEASED_INSTRUCTORS.get(teacher_name) if recipe is CIFAR10 else None
    ckpt = None if released else f"{instructor_dir(recipe, teacher_name)}/best.pt"
    for method in methods:
        common = dict(recipe=recipe, experiment=experiment, student=student, method=method, num_classes=num_classes,
                      classes=classes, fraction=None if fraction is None else fraction / 100, hp=_method_hp(method),
                      title=title)
        if method == "ce":
            specs.append(Spec(stem=f"ce-{student}{suffix}", notes=notes, **common))
        else:
            more = (RELEASED_NOTE.format(model=released),) if released else ()
            specs.append(Spec(stem=f"{method}-{student}_from_{teacher_name}{suffix}", teacher=teacher,
                              teacher_ckpt=ckpt, released=released, teacher_classes=teacher_classes,
                              notes=notes + more, **common))
    return specs


def _fmnist_instructor_specs() -> list[Spec]:
    return [Spec(recipe=FMNIST, experiment="instructors", stem=f"ce-{name}", title=f"instructor {name}",
                 student=ins.model, method="ce", num_classes=len(ins.classes) if ins.classes else 10,
                 classes=ins.classes, images=ins.images, epochs=ins.epochs, milestones=ins.milestones,
                 train_loader=FMNIST_INSTRUCTOR_LOADER, notes=(INSTRUCTOR_NOTE,))
            for name, ins in FMNIST_INSTRUCTORS.items()]


def _sweep_specs() -> list[Spec]:
    teacher = "resnet20"
    return [Spec(recipe=FMNIST, experiment="sweep", stem=f"{method}-resnet8_from_{teacher}__{tag}",
                 title=f"validation sweep, setting {tag}", student="resnet8", method=method, teacher=teacher,
                 teacher_ckpt=f"{instructor_dir(FMNIST, teacher)}/best.pt", hp=hp, test=False,
                 notes=("Sweep run: pick by final validation top-1 (never test); see docs/reproducing.md.",))
            for method, settings in SWEEP.items() for tag, hp in settings]


def fashion_mnist_specs() -> list[Spec]:
    """The Fashion-MNIST configs: instructors, the four student experiments, the sweep."""
    r = FMNIST
    specs = _fmnist_instructor_specs()
    specs += student_specs(r, "smaller_model", "smaller model: resnet8 from a resnet20 instructor", "resnet8",
                           "resnet20", "resnet20", ("ce", *DISTILL_METHODS))
    specs += student_specs(r, "across_architectures", "across architectures: resnet8 from a wide_resnet10_2 "
                           "instructor", "resnet8", "wide_resnet10_2", "wide_resnet10_2", ("ce", *DISTILL_METHODS))
    specs += student_specs(
        r, "external_data", "external data: a resnet8 student on classes 5-9 from a resnet20 instructor trained on "
        "classes 0-4", "resnet8", "resnet20", "resnet20_classes0-4", ("ce", *NO_LOGIT_METHODS), teacher_classes=5,
        num_classes=5, classes=EXTERNAL_STUDENT_CLASSES,
        notes=("KD does not apply: the instructor's 5 classes are not the student's.",))
    for frac in FRACTIONS:
        specs += student_specs(r, "limited_data", f"limited data: {frac}% of the student images, resnet8 from "
                               "resnet20", "resnet8", "resnet20", "resnet20", LIMITED_METHODS, fraction=frac)
    return specs + _sweep_specs()


def _cifar_instructor_specs() -> list[Spec]:
    r = CIFAR10
    specs = []
    for name, ins in CIFAR_INSTRUCTORS.items():
        c100 = ins.dataset == "cifar100"
        notes = [CIFAR_INSTRUCTOR_NOTE.format(ckpt=f"{instructor_dir(r, name)}/best.pt")]
        if ins.weight_decay != r.weight_decay:
            notes.append(f"Weight decay {ins.weight_decay} (the Wide ResNet paper's value) instead of "
                         f"{r.weight_decay}.")
        data = CIFAR100_DATA if c100 else {}
        specs.append(Spec(
            recipe=r, experiment="instructors", stem=f"ce-{name}",
            title=f"instructor {name}" + (" on CIFAR-100" if c100 else ""), student=ins.model, method="ce",
            num_classes=100 if c100 else 10, weight_decay=ins.weight_decay, notes=tuple(notes), **data))
    return specs


def cifar10_specs() -> list[Spec]:
    """The CIFAR-10 configs: instructors (one on CIFAR-100) and the four student experiments."""
    r = CIFAR10
    specs = _cifar_instructor_specs()
    specs += student_specs(r, "smaller_model", "smaller model: resnet20 from a resnet56 instructor", "resnet20",
                           "resnet56", "resnet56", ("ce", *DISTILL_METHODS))
    specs += student_specs(r, "across_architectures", "across architectures: resnet20 from a wide_resnet40_4 "
                           "instructor", "resnet20", "wide_resnet40_4", "wide_resnet40_4", ("ce", *DISTILL_METHODS))
    specs += student_specs(
        r, "external_data", "external data: resnet20 on CIFAR-10 from a wide_resnet40_4 trained on CIFAR-100",
        "resnet20", "wide_resnet40_4", "wide_resnet40_4_cifar100", ("ce", *NO_LOGIT_METHODS), teacher_classes=100,
        notes=("KD does not apply: the instructor predicts CIFAR-100 classes.",))
    for frac in FRACTIONS:
        specs += student_specs(r, "limited_data", f"limited data: {frac}% of the training images, resnet20 from "
                               "resnet56", "resnet20", "resnet56", "resnet56", LIMITED_METHODS, fraction=frac)
    return specs


def all_specs() -> list[Spec]:
    """Every official config, Fashion-MNIST first."""
    return fashion_mnist_specs() + cifar10_specs()
