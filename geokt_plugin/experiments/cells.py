"""The official configs as :class:`~geokt_plugin.experiments.matrix.Spec` lists: one builder per dataset.

Fashion-MNIST (the suite; docs/reproducing.md, "Protocol"): instructors on the reserve, the main cell (every
method), the secondary cells (across architectures, external data, limited data: the best GeoKT loss and the best
baseline of the sweep), the convergence check and the sweep. CIFAR-10: the same experiments, sized for a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .matrix import (
    ACROSS_METHODS,
    CE_RESERVE_EPOCHS,
    CE_RESERVE_MILESTONES,
    CHOSEN,
    CIFAR10,
    CIFAR100_DATA,
    CIFAR_DISTILL,
    CIFAR_FRACTIONS,
    CIFAR_INSTRUCTOR_NOTE,
    CIFAR_INSTRUCTORS,
    CIFAR_LIMITED,
    CIFAR_NO_LOGIT,
    COMBINED_KD,
    CONVERGENCE_EPOCHS,
    CONVERGENCE_METHODS,
    CONVERGENCE_MILESTONES,
    EXTERNAL_METHODS,
    EXTERNAL_STUDENT_CLASSES,
    FMNIST,
    FMNIST_INSTRUCTOR_LOADER,
    FMNIST_INSTRUCTORS,
    FRACTIONS,
    INSTRUCTOR_NOTE,
    LIMITED_METHODS,
    MAIN_METHODS,
    RANDOM_METHODS,
    RELEASED_INSTRUCTORS,
    RELEASED_NOTE,
    SWEEP,
    Recipe,
    Spec,
    base_method,
    instructor_dir,
)

__all__ = ["MAIN_PAIR", "all_specs", "cifar10_specs", "fashion_mnist_specs", "method_hp", "student_specs", "sweep_stem"]

MAIN_PAIR = ("resnet8", "resnet20")  # the Fashion-MNIST main cell's student and instructor


def method_hp(method: str) -> dict[str, Any]:
    """A method's chosen hyperparameters; a "+ KD" method holds KD's and its base method's."""
    if method in COMBINED_KD:
        return {"kd": CHOSEN["kd"], "base": CHOSEN[base_method(method)]}
    return dict(CHOSEN.get(base_method(method), {}))


def _student_kwargs(method: str) -> dict[str, Any]:
    """What a method changes in a student's Spec besides its losses."""
    if method == "ce_reserve":
        return {"pool": "student+reserve", "epochs": CE_RESERVE_EPOCHS, "milestones": CE_RESERVE_MILESTONES}
    return {}


def student_specs(recipe: Recipe, experiment: str, title: str, student: str, teacher: str, teacher_name: str,
                  methods: Sequence[str], *, teacher_classes: int = 10, num_classes: int = 10,
                  classes: tuple[int, ...] | None = None, fraction: int | None = None,
                  notes: tuple[str, ...] = (), probe: bool = False) -> list[Spec]:
    """One experiment's student configs, one per method (``ce`` and ``ce_reserve`` have no instructor).

    Args:
        probe: give every config the geometric-agreement probe against ``teacher_name`` (no-instructor methods too).
    """
    specs = []
    suffix = f"_frac{fraction}" if fraction is not None else ""
    released = RELEASED_INSTRUCTORS.get(teacher_name) if recipe is CIFAR10 else None
    ckpt = None if released else f"{instructor_dir(recipe, teacher_name)}/best.pt"
    for method in methods:
        common = dict(recipe=recipe, experiment=experiment, student=student, method=method, num_classes=num_classes,
                      classes=classes, fraction=None if fraction is None else fraction / 100, hp=method_hp(method),
                      title=title, agreement_with=teacher_name if probe else None, **_student_kwargs(method))
        if method in ("ce", "ce_reserve"):
            specs.append(Spec(stem=f"{method}-{student}{suffix}", notes=notes, **common))
            continue
        random = method in RANDOM_METHODS
        more = (RELEASED_NOTE.format(model=released),) if released else ()
        specs.append(Spec(stem=f"{method}-{student}_from_{teacher_name}{suffix}", teacher=teacher,
                          teacher_ckpt=None if random else ckpt, released=None if random else released,
                          random_teacher=random, teacher_classes=teacher_classes, notes=notes + more, **common))
    return specs


def _fmnist_instructor_specs() -> list[Spec]:
    return [Spec(recipe=FMNIST, experiment="instructors", stem=f"ce-{name}", title=f"instructor {name}",
                 student=ins.model, method="ce", num_classes=len(ins.classes) if ins.classes else 10,
                 classes=ins.classes, pool="reserve", epochs=ins.epochs, milestones=ins.milestones,
                 train_loader=FMNIST_INSTRUCTOR_LOADER, notes=(INSTRUCTOR_NOTE,))
            for name, ins in FMNIST_INSTRUCTORS.items()]


def sweep_stem(method: str, tag: str) -> str:
    """The config stem of one sweep setting."""
    student, teacher = MAIN_PAIR
    return f"ce-{student}__{tag}" if method == "ce" else f"{method}-{student}_from_{teacher}__{tag}"


def _sweep_specs() -> list[Spec]:
    student, teacher = MAIN_PAIR
    note = ("Sweep run: pick by final validation top-1 (never test); see docs/reproducing.md.",)
    specs = []
    for method, settings in SWEEP.items():
        for tag, hp in settings:
            if method == "ce":
                specs.append(Spec(recipe=FMNIST, experiment="sweep", stem=sweep_stem(method, tag), student=student,
                                  title="validation sweep, CE reference", method=method, test=False, notes=note))
                continue
            specs.append(Spec(recipe=FMNIST, experiment="sweep", stem=sweep_stem(method, tag),
                              title=f"validation sweep, setting {tag}", student=student, method=method,
                              teacher=teacher, teacher_ckpt=f"{instructor_dir(FMNIST, teacher)}/best.pt", hp=hp,
                              test=False, notes=note))
    return specs


def _convergence_specs() -> list[Spec]:
    student, teacher = MAIN_PAIR
    specs = student_specs(FMNIST, "convergence", f"convergence check: twice the student schedule "
                          f"({CONVERGENCE_EPOCHS} epochs), {student} from {teacher}", student, teacher, teacher,
                          CONVERGENCE_METHODS, notes=("Convergence check on the sweep seed: compare its final "
                                                      "validation top-1 with the 15-epoch run of the same seed.",))
    for spec in specs:
        spec.epochs, spec.milestones, spec.test = CONVERGENCE_EPOCHS, CONVERGENCE_MILESTONES, False
    return specs


def fashion_mnist_specs() -> list[Spec]:
    """The Fashion-MNIST configs: instructors, the four student experiments, the convergence check, the sweep."""
    r = FMNIST
    student, teacher = MAIN_PAIR
    specs = _fmnist_instructor_specs()
    specs += student_specs(r, "smaller_model", f"smaller model: {student} from a {teacher} instructor", student,
                           teacher, teacher, MAIN_METHODS, probe=True)
    specs += student_specs(r, "across_architectures", f"across architectures: {student} from a wide_resnet10_2 "
                           "instructor", student, "wide_resnet10_2", "wide_resnet10_2", ACROSS_METHODS, probe=True)
    specs += student_specs(
        r, "external_data", f"external data: a {student} student on classes 5-9 from a {teacher} instructor trained "
        "on classes 0-4", student, teacher, f"{teacher}_classes0-4", EXTERNAL_METHODS, teacher_classes=5,
        num_classes=5, classes=EXTERNAL_STUDENT_CLASSES, probe=True,
        notes=("KD does not apply: the instructor's 5 classes are not the student's.",))
    for frac in FRACTIONS:
        specs += student_specs(r, "limited_data", f"limited data: {frac}% of the student images, {student} from "
                               f"{teacher}", student, teacher, teacher, LIMITED_METHODS, fraction=frac, probe=True)
    return specs + _convergence_specs() + _sweep_specs()


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
                           "resnet56", "resnet56", ("ce", *CIFAR_DISTILL))
    specs += student_specs(r, "across_architectures", "across architectures: resnet20 from a wide_resnet40_4 "
                           "instructor", "resnet20", "wide_resnet40_4", "wide_resnet40_4", ("ce", *CIFAR_DISTILL))
    specs += student_specs(
        r, "external_data", "external data: resnet20 on CIFAR-10 from a wide_resnet40_4 trained on CIFAR-100",
        "resnet20", "wide_resnet40_4", "wide_resnet40_4_cifar100", ("ce", *CIFAR_NO_LOGIT), teacher_classes=100,
        notes=("KD does not apply: the instructor predicts CIFAR-100 classes.",))
    for frac in CIFAR_FRACTIONS:
        specs += student_specs(r, "limited_data", f"limited data: {frac}% of the training images, resnet20 from "
                               "resnet56", "resnet20", "resnet56", "resnet56", CIFAR_LIMITED, fraction=frac)
    return specs


def all_specs() -> list[Spec]:
    """Every official config, Fashion-MNIST first."""
    return fashion_mnist_specs() + cifar10_specs()
