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
SEEDS = (0, 1, 2, 3, 4)  # each seed also draws its own student images (datasets `seed: run`)
SWEEP_SEED = 100  # the sweep's own seed (and images), so the reported seeds are not the ones the choice was made on
SPLIT_SEED = 0  # draws the validation images and the instructors' reserve: fixed for every run

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

# Centres of the weight grids: each method's weight chosen so that at the first batch (seed-100 images, the trained
# resnet20 instructor, an untrained resnet8) the weighted term is as large as CE, rounded to the 1-3-10 ladder
# (scripts/calibrate_weights.py prints the measurement). The grid is the centre x {1/3, 1, 3}.
CENTRES: dict[str, float] = {
    "fitnets": 1.0, "at": 300.0, "pkt": 10000.0, "sp": 10000.0, "rkd": 10.0,
    "geokt_distance": 10.0, "geokt_kl": 1.0, "geokt_rank": 0.3, "geokt_nac": 100.0,
}
LAYERED = {"fitnets": {"layer": "layer2"}, "at": {"layers": ALL_LAYERS}, "sp": {"layer": "layer3"},
           "rkd": {"layer": "avgpool"}, "pkt": {"layer": "fc"},
           **{m: {"layers": ALL_LAYERS} for m in GEOKT_METHODS}}
GRID = (1 / 3, 1.0, 3.0)


def _weight_grid(method: str, factors: Sequence[float] = GRID) -> list[tuple[str, dict[str, Any]]]:
    """``(tag, hyperparameters)`` for the centre's weight times each factor (3 significant digits)."""
    weights = [float(f"{CENTRES[method] * f:.3g}") for f in factors]
    return [(f"w{w:g}", {"weight": w, **LAYERED[method]}) for w in weights]


# The edge rule: a choice at its grid's edge adds one more factor of 3 beyond it (second round of the sweep).
EXTENDED: dict[str, tuple[float, ...]] = {"fitnets": (9.0,), "at": (1 / 9,), "pkt": (1 / 9,), "sp": (1 / 9,),
                                          "rkd": (1 / 9,), "geokt_distance": (9.0,), "geokt_kl": (9.0,),
                                          "geokt_rank": (9.0,), "geokt_nac": (9.0,)}
KD_EXTENDED: tuple[tuple[float, float], ...] = ((2.0, 0.0),)  # (temperature, alpha) settings added to KD's 2 x 3 grid

SWEEP: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "ce": [("base", {})],  # no knob: the reference every setting is read against, and the convergence check's pair
    "kd": [(f"T{t:g}_a{a:g}", {"temperature": t, "alpha": a})
           for t, a in [(t, a) for t in (2.0, 4.0) for a in (0.1, 0.5, 0.9)] + list(KD_EXTENDED)],
    **{m: _weight_grid(m, sorted(GRID + EXTENDED.get(m, ()))) for m in CENTRES},
}

# The sweep's choice per method (highest final validation top-1 of the seed-100 run; docs/reproducing.md, "Sweep"),
# used by every student config, the CIFAR-10 ones included (carried over, not tuned on CIFAR-10).
# Chosen weight of each method (the sweep's final validation top-1 per setting is in docs/reproducing.md, "Sweep";
# `python -m geokt_plugin.experiments check-choice` fails when these differ from it).
_CHOSEN_WEIGHTS = {"fitnets": 9.0, "at": 100.0, "pkt": 3330.0, "sp": 1110.0, "rkd": 3.33, "geokt_distance": 90.0,
                   "geokt_kl": 9.0, "geokt_rank": 2.7, "geokt_nac": 300.0}
CHOSEN: dict[str, dict[str, Any]] = {
    "kd": {"temperature": 2.0, "alpha": 0.1},
    **{m: {"weight": w, **LAYERED[m]} for m, w in _CHOSEN_WEIGHTS.items()},
}
# The GeoKT loss and the feature baseline with the best sweep result: the ones the secondary experiments train.
BEST_GEOKT = "geokt_kl"
BEST_BASELINE = "fitnets"

METHOD_TITLES = {
    "ce": "CE only (no instructor)",
    "ce_reserve": "CE only, trained on the student's images plus the instructor's 5,000 (what the extra labels alone "
                  "buy)",
    "kd": "KD (Hinton et al.), torchdistill `KDLoss`",
    "fitnets": "FitNets, single-stage hint (1x1 conv+BN adapter, `MSELoss`) + CE",
    "at": "AT (Zagoruyko & Komodakis), torchdistill `ATLoss`, `mode: code` + CE",
    "pkt": "PKT (Passalis & Tefas), torchdistill `PKTLoss` on the penultimate features + CE",
    "sp": "SP (Tung & Mori), torchdistill `SPKDLoss` on the last stage + CE",
    "rkd": "RKD (Park et al.), torchdistill `RKDLoss` (distance 1, angle 2) on the penultimate features + CE",
    "geokt_distance": "GeoKT distance loss (`GeoKTDistanceLoss`) + CE",
    "geokt_kl": "GeoKT neighbour-KL loss (`GeoKTNeighborKLLoss`) + CE",
    "geokt_rank": "GeoKT neighbour-rank loss (`GeoKTNeighborRankLoss`) + CE",
    "geokt_nac": "GeoKT neighbourhood affinity contrast (`GeoKTNeighborhoodContrastLoss`, the authors' later "
                 "formulation) + CE",
}
BASELINES = ("fitnets", "at", "pkt", "sp", "rkd")  # torchdistill's built-in feature and relational methods
# "<method>_kd": KD's terms plus the method's own term at its chosen weight (no CE term; KD's alpha holds it).
KD_COMBINED = tuple(dict.fromkeys((BEST_GEOKT, "geokt_rank", "geokt_nac", "fitnets")))
COMBINED_KD = tuple(f"{m}_kd" for m in KD_COMBINED)
# "<method>_random": the method from a randomly initialised instructor (the control for knowledge vs regulariser).
RANDOM_CONTROL = (BEST_GEOKT,)
RANDOM_METHODS = tuple(f"{m}_random" for m in RANDOM_CONTROL)
for _m in KD_COMBINED:
    METHOD_TITLES[f"{_m}_kd"] = METHOD_TITLES[_m].removesuffix(" + CE") + " + KD"
for _m in RANDOM_CONTROL:
    METHOD_TITLES[f"{_m}_random"] = METHOD_TITLES[_m] + ", from a randomly initialised instructor (control)"
_missing = [f"{table} lacks {m!r}" for m in GEOKT_METHODS
            for table, entries in (("CHOSEN", CHOSEN), ("SWEEP", SWEEP), ("METHOD_TITLES", METHOD_TITLES))
            if m not in entries]
if _missing:
    raise ValueError(f"geokt_plugin.experiments: the LossSpec table has losses the experiment matrix does not: "
                     f"{'; '.join(_missing)}. Add them to geokt_plugin/experiments/matrix.py.")
# The Fashion-MNIST suite's cells (the CIFAR-10 configs keep the v1 method lists, without the peers).
MAIN_METHODS = ("ce", "ce_reserve", "kd", *BASELINES, *GEOKT_METHODS, f"{BEST_GEOKT}_kd", "fitnets_kd",
                *RANDOM_METHODS)
ACROSS_METHODS = (BEST_GEOKT, BEST_BASELINE, f"{BEST_GEOKT}_kd")
EXTERNAL_METHODS = ("ce", BEST_GEOKT, BEST_BASELINE)
LIMITED_METHODS = ("ce", BEST_GEOKT, f"{BEST_GEOKT}_kd")
FRACTIONS = (50,)
CIFAR_DISTILL = ("kd", "fitnets", "at", *GEOKT_METHODS, "geokt_rank_kd", "geokt_nac_kd")
CIFAR_NO_LOGIT = ("fitnets", "at", *GEOKT_METHODS)
CIFAR_LIMITED = ("ce", "kd", "geokt_rank", "geokt_rank_kd", "geokt_nac", "geokt_nac_kd")
CIFAR_FRACTIONS = (10, 20, 50, 100)

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
    reserve: int = 0  # training images held out for instructors; with it, students draw their images per seed


FMNIST = Recipe(
    name="fashion_mnist",
    title="Fashion-MNIST (sized for 2 CPU cores)",
    builder="geokt_plugin.data.fashion_mnist",
    root_kwargs={},
    student_images=1000,
    val_size=1000,
    epochs=15,
    milestones=(8, 12),
    train_loader={"batch_size": 32, "num_workers": 0, "drop_last": False},
    eval_loader={"batch_size": 200, "num_workers": 0},
    weight_decay=1e-4,
    max_points=128,
    hardware="2 CPU cores, 1 torch thread per run",
    reserve=5000,
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
    """A Fashion-MNIST instructor: trained on the reserve (``Recipe.reserve`` images no student sees), optional
    classes."""

    model: str
    epochs: int = 15
    milestones: tuple[int, ...] = (8, 12)
    classes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class CifarInstructor:
    """A CIFAR instructor: its weight decay and the dataset it is trained on."""

    model: str
    weight_decay: float
    dataset: str = "cifar10"


FMNIST_INSTRUCTORS = {
    "resnet20": FmnistInstructor("resnet20"),
    "wide_resnet10_2": FmnistInstructor("wide_resnet10_2"),
    "resnet20_classes0-4": FmnistInstructor("resnet20", classes=(0, 1, 2, 3, 4)),
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

CE_RESERVE_EPOCHS, CE_RESERVE_MILESTONES = 5, (3, 4)  # 6,000 images: ~2x a student's optimizer steps
CONVERGENCE_EPOCHS, CONVERGENCE_MILESTONES = 30, (16, 24)  # twice the schedule: is the student schedule converged?
CONVERGENCE_METHODS = ("ce", BEST_GEOKT)

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
    pool: str = "student"  # the training images' pool: "student", "reserve" (instructors), "student+reserve"
    random_teacher: bool = False  # the instructor keeps its random initialisation (no src_ckpt)
    agreement_with: str | None = None  # instructor name whose geometry the run's agreement probe measures
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
        seed = SWEEP_SEED if self.experiment in ("sweep", "convergence") else SEEDS[0]
        return f"{RUNS}/{self.run_name}/seed{seed}/best.pt"


def instructor_dir(recipe: Recipe, name: str) -> str:
    """The seed-0 run directory of an instructor config (``ce-<name>``)."""
    return f"{RUNS}/{recipe.name}/{PAPER_KEY}/instructors/ce-{name}/seed0"


def base_method(method: str) -> str:
    """The method inside a "+ KD" or "random instructor" method (``geokt_rank_kd`` -> ``geokt_rank``)."""
    return method.removesuffix("_kd").removesuffix("_random")

