"""Measure the centre of every method's weight grid: the weight at which its term is as large as CE at the start.

Protocol (docs/reproducing.md, "Sweep"): the sweep seed's first ``--batches`` training batches of the main cell's
student pool, the trained resnet20 instructor (``runs/.../instructors/ce-resnet20/seed0/best.pt``) and an untrained
resnet8 student seeded like the sweep; each method's term computed as its config computes it (all hooked layers
summed, unweighted), averaged over the batches. The centre is ``CE / term`` rounded in log space to the ladder
1, 3, 10, 30, ... Prints one row per method and the dict to paste into ``CENTRES``
(geokt_plugin/experiments/matrix.py).

    python scripts/calibrate_weights.py [--batches 8]
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geokt_plugin.data import fashion_mnist
from geokt_plugin.experiments.matrix import (
    ALL_LAYERS,
    FMNIST,
    GEOKT_LOSSES,
    LAYERED,
    MODELS,
    SPLIT_SEED,
    SWEEP_SEED,
    instructor_dir,
)
from geokt_plugin.losses.spec import LOSS_SPECS
from geokt_plugin.model_state import read_model_state
from geokt_plugin.models import model_factory

LADDER = (1.0, 3.0)


def ladder(x: float) -> float:
    """The value of 1, 3, 10, 30, ... nearest to ``x`` in log space."""
    candidates = [m * 10.0 ** e for e in range(-4, 7) for m in LADDER]
    return float(f"{min(candidates, key=lambda c: abs(math.log(c) - math.log(x))):.3g}")


def _model(name: str) -> nn.Module:
    m = MODELS[name]
    return model_factory(m.key)(num_classes=10, **m.kwargs)


def _capture(model: nn.Module, names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    io: dict[str, dict[str, torch.Tensor]] = {}
    for name in names:
        def hook(module: nn.Module, inp: tuple, out: torch.Tensor, name: str = name) -> None:
            io[name] = {"input": inp[0], "output": out}
        getattr(model, name).register_forward_hook(hook)
    return io


def _terms(s: dict, t: dict, hint: nn.Module) -> dict[str, float]:
    from torchdistill.losses.mid_level import ATLoss, PKTLoss, RKDLoss, SPKDLoss

    pairs = {layer: {"teacher": {"path": layer, "io": "output"}, "student": {"path": layer, "io": "output"},
                     "weight": 1} for layer in ALL_LAYERS}
    out = {
        "fitnets": F.mse_loss(hint(s[LAYERED["fitnets"]["layer"]]["output"]), t["layer2"]["output"]),
        "at": ATLoss(pairs, mode="code")(s, t),
        "pkt": PKTLoss("fc", "input", "fc", "input")(s, t),
        "sp": SPKDLoss("layer3", "layer3", "batchmean")(s, t),
        "rkd": RKDLoss("avgpool", "avgpool", 1.0, 2.0, "mean")(s, t),
    }
    for method, (key, knobs) in GEOKT_LOSSES.items():
        fn = next(spec.function for spec in LOSS_SPECS.values() if spec.module.__name__ == key)
        out[method] = sum(fn(s[layer]["output"], t[layer]["output"], **{**knobs, "max_points": FMNIST.max_points})
                          for layer in ALL_LAYERS)
    return {k: float(v.detach()) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(SWEEP_SEED)
    os.environ.setdefault("GEOKT_RUN_SEED", str(SWEEP_SEED))
    data = fashion_mnist(split="train", subset_size=FMNIST.student_images, val_size=FMNIST.val_size, seed=SWEEP_SEED,
                         split_seed=SPLIT_SEED, reserve=FMNIST.reserve, augment=False)
    loader = torch.utils.data.DataLoader(data, batch_size=FMNIST.train_loader["batch_size"], shuffle=True)
    student, teacher = _model("resnet8"), _model("resnet20")
    teacher.load_state_dict(read_model_state(Path(instructor_dir(FMNIST, "resnet20")) / "best.pt"))
    teacher.eval()
    hint = nn.Sequential(nn.Conv2d(32, 32, 1), nn.BatchNorm2d(32))
    names = [*ALL_LAYERS, "avgpool", "fc"]
    s_io, t_io = _capture(student, names), _capture(teacher, names)
    totals: dict[str, float] = {}
    for i, (x, y) in enumerate(loader):
        if i == args.batches:
            break
        logits = student(x)
        with torch.no_grad():
            teacher(x)
        values = {"ce": float(F.cross_entropy(logits, y).detach()), **_terms(s_io, t_io, hint)}
        for k, v in values.items():
            totals[k] = totals.get(k, 0.0) + v / args.batches
    centres = {}
    print(f"{'method':16s} {'term':>12s} {'CE/term':>10s} {'centre':>8s}")
    for method, value in totals.items():
        if method == "ce":
            continue
        centres[method] = ladder(totals["ce"] / value)
        print(f"{method:16s} {value:12.6g} {totals['ce'] / value:10.4g} {centres[method]:8g}")
    print(f"CE {totals['ce']:.4f}\nCENTRES = {centres}")


if __name__ == "__main__":
    main()
