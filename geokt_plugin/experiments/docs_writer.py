"""The generated Markdown: one README per experiment folder and the official-configs table of docs/reproducing.md."""

from __future__ import annotations

from .cells import all_specs
from .matrix import (
    FMNIST,
    FMNIST_INSTRUCTORS,
    METHOD_TITLES,
    PAPER_KEY,
    ROOT,
    SEEDS,
    SPLIT_SEED,
    SWEEP_SEED,
    Recipe,
    Spec,
)

__all__ = ["REPRODUCING", "TABLE_END", "TABLE_START", "readme", "reproducing_table", "with_reproducing_table"]

REPRODUCING = ROOT / "docs" / "reproducing.md"
TABLE_START, TABLE_END = "<!-- official-configs:start -->", "<!-- official-configs:end -->"

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

EXPERIMENT_INTRO = {
    "instructors": "Instructor training (CE only). Train these first: every student config's `src_ckpt` names "
                   "the `best.pt` these runs write. Instructors use one seed (0).",
    "smaller_model": "Claim 1, transfer to a smaller model, for every method; claim 4 (synergy with KD) is the "
                     "GeoKT + KD row against KD and the GeoKT row, beside FitNets + KD against KD. `ce_reserve` "
                     "(CE on the instructor's images too) and the randomly initialised instructor are controls.",
    "convergence": "The convergence check: CE and the best GeoKT loss with twice the student schedule, on the "
                   "sweep seed, to compare with the same seed at the standard schedule.",
    "across_architectures": "Claim 2, transfer between different architectures (the instructor's channel counts "
                            "differ from the student's; the geometric losses need no projection, FitNets needs its "
                            "adapter). Claim 4 again through `geokt_rank_kd`.",
    "external_data": "Claim 3, transfer from an instructor trained on other data. KD cannot apply (different label "
                     "spaces), so only feature-based methods are compared with CE.",
    "limited_data": "Claim 5, training with limited data: the methods below on a fraction of the training "
                    "images (nested class-balanced subsets of each seed's images); on Fashion-MNIST 50%, compared "
                    "with CE on all of them (the smaller_model cell). CIFAR-10: 10/20/50/100%.",
    "sweep": "The validation sweep that chose the loss weights and knobs of every method (three weights around a "
             "calibrated centre per method, six KD settings; one seed not used for reporting; chosen by final "
             "validation top-1; the test set is never looked at). Results: `docs/reproducing.md`, section Sweep. "
             "Run with `make suite` (or `python -m geokt_plugin.experiments run sweep`).",
}
CIFAR_INSTRUCTORS_INTRO = (
    "Optional instructor training (CE only, one seed). The student configs load torchdistill's released weights "
    "instead (`pretrained: True`); these configs train the same architectures on the 45,000-image training split "
    "only, for an instructor that never saw the validation images. To use one, give the students' `teacher_model` "
    "`pretrained: False` and the `best.pt` of its run directory as `src_ckpt`.")
RELEASED_TEXT = (
    "Instructors: torchdistill's released weights, loaded with `pretrained: True` (downloaded on first use from "
    "torchdistill's v0.1.1 release: {files}). torchdistill trained them on all 50,000 training images, our 5,000 "
    "validation images included, and picked their epoch on the test set; the `instructors` folder trains them on the "
    "45,000-image split instead.")
CIFAR_RECIPE_TEXT = (
    "Recipe: SGD lr 0.1, momentum 0.9, weight decay 1e-4 (5e-4 for the Wide ResNet instructors), batch 64, 182 "
    "epochs, MultiStepLR [91, 136] x0.1, random crop (padding 4) + horizontal flip; 5,000 training images are held "
    "out as the validation split (the test set is only evaluated at the end). Loss weights come from the "
    "Fashion-MNIST validation sweep and were not tuned on CIFAR-10. The data downloads to `~/datasets/cifar10` (and "
    "`~/datasets/cifar100`).")


def _fmnist_sizing() -> str:
    r = FMNIST
    ins = ", ".join(f"{k} x {v.epochs} epochs" for k, v in FMNIST_INSTRUCTORS.items())
    batch = r.train_loader["batch_size"]
    return (f"{r.val_size} training images are the validation split and {r.reserve:,} more are the instructors' "
            f"reserve (both fixed, seed {SPLIT_SEED}); each student seed draws its own {r.student_images} "
            f"class-balanced images from the rest (`seed: run`), trains for {r.epochs} epochs (MultiStepLR "
            f"{list(r.milestones)}) at batch {batch}, and is tested on the full 10,000-image official test set. "
            f"Instructors train on the reserve only: {ins}. Geometric losses sample `max_points: {r.max_points}` "
            "positions. SGD lr 0.1, momentum 0.9, weight decay 1e-4, crop + flip.")


def _script_commands(rel: str, specs: list[Spec], cpu: str) -> list[str]:
    """The README's block for torchdistill's own example script (one run each, the first seed's ``dst_ckpt``)."""
    lines = ["With torchdistill's own example script (from this checkout's root; it saves the student to the "
             "config's `dst_ckpt`, the `best.pt` of the first seed's run directory):", "", "```bash"]
    lines += [f"python <torchdistill>/examples/torchvision/image_classification.py --config {rel}/{s.stem}.yaml "
              f"--run_log runs/{s.run_name}/torchdistill.log{cpu}" for s in specs]
    return lines + ["```", ""]


def _commands(recipe: Recipe, experiment: str, specs: list[Spec]) -> list[str]:
    """The README's command blocks: one process per run, one ``accelerate launch`` per run, torchdistill's script."""
    rel = f"configs/official/{recipe.name}/{PAPER_KEY}/{experiment}"
    fm = recipe is FMNIST
    seed = "0" if experiment == "instructors" else "$S"
    seeds = " ".join(str(s) for s in SEEDS) if fm else "0 1 2"
    lines = ["## Commands", "", "One process" + (" on CPU" if fm else " (GPU if present; add `--device cpu` for CPU)")
             + f", for each seed S in {seeds}" + (" (instructors: seed 0 only)" if experiment == "instructors" else "")
             + ":", "", "```bash"]
    cpu = " --device cpu" if fm else ""
    lines += [f"geokt-train --config {rel}/{s.stem}.yaml --run-dir runs/{s.run_name}/seed{seed} --seed {seed}{cpu}"
              for s in specs]
    batch = recipe.train_loader["batch_size"]
    lines += ["```", "", f"Several GPUs (one process per GPU; students at batch {batch} per process, the learning rate "
              "is not scaled):",
              "", "```bash"]
    lines += [f"accelerate launch --multi_gpu --num_processes N -m geokt_plugin.train --config {rel}/{s.stem}.yaml "
              f"--run-dir runs/{s.run_name}/seed{seed} --seed {seed}" for s in specs]
    return lines + ["```", ""] + _script_commands(rel, specs, cpu)


def readme(recipe: Recipe, experiment: str, specs: list[Spec]) -> str:
    """The README of one experiment folder: intro, sizing, paper, commands and an empty results table."""
    cifar_instructors = recipe is not FMNIST and experiment == "instructors"
    intro = CIFAR_INSTRUCTORS_INTRO if cifar_instructors else EXPERIMENT_INTRO[experiment]
    lines = [f"# {recipe.title}: {experiment.replace('_', ' ')}", "", intro, ""]
    released = sorted({s.released for s in specs if s.released})
    if released:
        lines += [RELEASED_TEXT.format(files=", ".join(f"`{f}.pt`" for f in released)), ""]
    if recipe is FMNIST:
        lines += ["Sizing: " + _fmnist_sizing() + " Measured results and the per-claim verdicts are in "
                  "[docs/reproducing.md](../../../../../docs/reproducing.md).", ""]
    else:
        lines += [CIFAR_RECIPE_TEXT, ""]
    lines += ["## Paper", "", "```bibtex", BIBTEX, "```", "",
              "The geometric losses are this project's formulation of the paper's description "
              "([docs/losses.md](../../../../../docs/losses.md)), not the paper's equations.", ""]
    lines += _commands(recipe, experiment, specs)
    lines += ["Then the table: `geokt-compare runs/" + f"{recipe.name}/{PAPER_KEY}/{experiment}/*/seed* "
              f"--out runs/{recipe.name}/{PAPER_KEY}/report`.", "", "## Results", "",
              "Top-1 accuracy (%), mean ± std over seeds (n). Fill from `geokt-compare`.", "",
              "| config | method | final val | best val | test | n |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| `{spec.stem}` | {METHOD_TITLES[spec.method]} | | | | |" for spec in specs]
    return "\n".join(lines) + "\n"


def reproducing_table() -> str:
    """The docs/reproducing.md table: one row per official config (experiment, metric, seeds, hardware, logs)."""
    rows = ["| config | experiment | metric | seeds | hardware | run dir and log |", "|---|---|---|---|---|---|"]
    for spec in all_specs():
        if spec.experiment in ("sweep", "convergence"):
            seeds, metric = f"{SWEEP_SEED}", "final val top-1 (no test)"
        elif spec.experiment == "instructors":
            seeds, metric = "0", "val top-1 (final, best); test top-1 of best.pt"
        else:
            seeds = ", ".join(str(s) for s in SEEDS) if spec.recipe is FMNIST else "0, 1, 2"
            metric = "val top-1 (final, best); test top-1 of best.pt"
        state = "ran" if spec.recipe is FMNIST else "not run here"
        rows.append(f"| [`{spec.stem}`](../configs/official/{spec.relpath}) | {spec.recipe.name}/{spec.experiment} | "
                    f"{metric} | {seeds} ({state}) | {spec.recipe.hardware} | `runs/{spec.run_name}/seed<S>[.log]` |")
    return "\n".join(rows) + "\n"


def with_reproducing_table(text: str) -> str:
    """docs/reproducing.md with the official-configs table between its markers replaced by the current one."""
    head, sep, rest = text.partition(TABLE_START)
    _, sep2, tail = rest.partition(TABLE_END)
    if not sep or not sep2:
        raise ValueError(f"{REPRODUCING} lacks the markers {TABLE_START} ... {TABLE_END}; put them around the "
                         "official-configs table.")
    return head + TABLE_START + "\n" + reproducing_table() + TABLE_END + tail
