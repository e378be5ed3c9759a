"""The GPU check in one call on a CUDA machine (never in CI): losses against float64 CPU, step ratios, a training.

1. ``losses``: every loss of the LossSpec table on CUDA, eager and compiled, without autocast and under fp16 and
   bf16 autocast, against the float64 CPU evaluation of the same maps (values and student gradients).
2. ``steps``: ``bench_step.py`` on CUDA at batch 32 and 128 (GeoKT + KD on the automatic path, i.e. compiled, and
   eager; KD), peak memory by ``torch.cuda.max_memory_allocated``; one subprocess per batch size.
3. ``train``: the quick-start pair (resnet20 -> resnet8, rank loss at three stages) through ``geokt-train`` for a
   few epochs with ``--mixed-precision bf16`` and with ``fp16``, on a small synthetic Fashion-MNIST-shaped dataset
   (written here in the idx format, so the Debian package is not needed) and an untrained instructor: checks that
   the training loss goes down and that nothing is NaN.

Everything is written to ``benchmarks/results/gpu/`` (``gpu_check.json`` plus the step JSONs and run folders),
with the GPU named by ``torch.cuda.get_device_name``. ``--dry-run`` runs the logic on CPU with tiny sizes and
prints the subprocess commands instead of running them (the unit test uses it).

Usage::

    python benchmarks/gpu_check.py                 # about 5-8 minutes on one GPU
    python benchmarks/gpu_check.py --dry-run --out-dir /tmp/gpu_check
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

import _common as C  # noqa: E402

import geokt_plugin  # noqa: E402,F401  (registers the GeoKT* losses)
from geokt_plugin.losses import LOSS_SPECS, compile_report  # noqa: E402
from geokt_plugin.testing.paths import kernel_path  # noqa: E402

AUTOCASTS = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}
# float32 on the device against float64 on CPU; the expansion's cancellation costs a few digits. bf16-rounded maps
# (8-bit mantissa) have exactly tied distances, which float32 and float64 order differently in a kNN: looser grads.
TOLERANCE = {"value": (1e-4, 1e-5), "grad": (1e-3, 1e-4)}
BF16_GRAD_TOLERANCE = (1e-2, 1e-2)
# On CUDA the automatic path (no suffix) is torch.compile of every block function on sets of 64+ points.
STEP_METHODS = ["KD"] + [f"GeoKT-{name}+KD{path}" for name in LOSS_SPECS for path in ("", " eager")]
QUICKSTART = REPO / "configs" / "quickstart" / "geokt_rank-resnet8_from_resnet20.yaml"


# ----------------------------------------------------------------------------------------------------------------
# 1. Losses against float64 CPU
# ----------------------------------------------------------------------------------------------------------------


def _value_and_grad(fn: Any, s: torch.Tensor, t: torch.Tensor, **knobs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    s = s.detach().clone().requires_grad_(True)
    out = fn(s, t, reduction="none", **knobs)
    (grad,) = torch.autograd.grad(out.sum(), s)
    return out.detach().double().cpu(), grad.double().cpu()


def _max_error(got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> tuple[float, bool]:
    err = (got - want).abs()
    bound = atol * float(want.abs().max()) + rtol * want.abs()  # atol relative to the largest entry
    ok = bool(torch.isfinite(got).all()) and bool((err <= bound).all())
    return float(err.max()), ok


def check_losses(device: torch.device, shape: tuple[int, ...], paths: list[str]) -> list[dict[str, Any]]:
    """One row per (loss, path, autocast): the largest value and gradient errors and whether both are in bounds."""
    B, Cs, Ct, H, W = shape
    g = torch.Generator().manual_seed(0)
    # No ReLU: exact duplicate points are where float32's expansion rounding differs from float64 (not the device).
    s = torch.randn(B, Cs, H, W, generator=g)
    t = torch.randn(B, Ct, H, W, generator=g)
    rows = []
    for name, spec in LOSS_SPECS.items():
        knobs = {"max_points": 48} if H * W > 48 else {}
        for path in paths:
            for cast, dtype in AUTOCASTS.items():
                # Under autocast the networks hand over fp16/bf16 maps: the reference sees the same rounded values.
                s_in, t_in = (s, t) if dtype is None else (s.to(dtype), t.to(dtype))
                gen = {"generator": torch.Generator().manual_seed(1)} if knobs else {}
                want_v, want_g = _value_and_grad(spec.function, s_in.double(), t_in.double(), **knobs, **gen)
                gen = {"generator": torch.Generator().manual_seed(1)} if knobs else {}
                with kernel_path(path), torch.autocast(device.type, dtype=dtype or torch.float32,
                                                       enabled=dtype is not None):
                    got_v, got_g = _value_and_grad(spec.function, s_in.to(device), t_in.to(device), **knobs, **gen)
                v_err, v_ok = _max_error(got_v, want_v, *TOLERANCE["value"])
                g_err, g_ok = _max_error(got_g, want_g, *(BF16_GRAD_TOLERANCE if cast == "bf16" else TOLERANCE["grad"]))
                rows.append({"loss": name, "path": path, "autocast": cast, "value_err": v_err, "grad_err": g_err,
                             "ok": v_ok and g_ok})
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 2. Step ratios (bench_step.py in a subprocess per batch size)
# ----------------------------------------------------------------------------------------------------------------


def step_commands(device: str, out_dir: Path, batch_sizes: list[int], repeats: int) -> list[list[str]]:
    return [[sys.executable, str(HERE / "bench_step.py"), "--device", device, "--batch-size", str(b),
             "--repeats", str(repeats), "--only", *STEP_METHODS, "--out", str(out_dir / f"step_{device}_b{b}.json")]
            for b in batch_sizes]


def summarize_steps(out_dir: Path, device: str, batch_sizes: list[int]) -> dict[str, Any]:
    """Per batch size: time / KD and peak / KD of each method, read back from bench_step's JSON."""
    summary = {}
    for b in batch_sizes:
        path = out_dir / f"step_{device}_b{b}.json"
        if not path.exists():
            summary[str(b)] = {"missing": str(path)}
            continue
        rows = json.loads(path.read_text())["rows"]
        summary[str(b)] = {r["method"]: {"time_x_kd": r["time_x_kd"], "peak_x_kd": r["peak_x_kd"],
                                         "first_step_s": r["first_step_s"]} for r in rows}
    return summary


# ----------------------------------------------------------------------------------------------------------------
# 3. Quick-start training under mixed precision, on synthetic idx data
# ----------------------------------------------------------------------------------------------------------------


def _write_idx(path: Path, array: torch.Tensor) -> None:
    """An idx file (gzip) as Fashion-MNIST ships it: magic (0, 0, 8 = uint8, ndim), big-endian sizes, bytes."""
    header = struct.pack(">BBBB", 0, 0, 8, array.dim()) + struct.pack(f">{array.dim()}I", *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.to(torch.uint8).contiguous().numpy().tobytes())


def write_synthetic_fashion_mnist(folder: Path, train: int, test: int) -> Path:
    """Learnable 28x28 uint8 images: class c is a bright 7x7 square at one of ten positions, plus noise."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for split, count in (("train", train), ("t10k", test)):
        labels = torch.arange(count) % 10
        images = torch.randint(0, 60, (count, 28, 28), generator=g)
        for c in range(10):
            r, col = 3 + 7 * (c // 5), 2 + 5 * (c % 5)
            images[labels == c, r:r + 7, col:col + 7] += 150
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images.clamp_(0, 255))
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return folder


def training_config(out_dir: Path, subset: int) -> Path:
    """The quick-start rank config with an untrained instructor (no checkpoint) and ``subset`` training images."""
    replacements = {
        "    src_ckpt: 'runs/quickstart/instructor-resnet20/best.pt'": "",
        "subset_size: 1000, val_size: 1000": f"subset_size: {subset}, val_size: 200",
        "split: 'val', val_size: 1000": "split: 'val', val_size: 200",
        "'runs/quickstart/geokt_rank-resnet8_from_resnet20/best.pt'": repr(str(out_dir / "student.pt")),
    }
    text = QUICKSTART.read_text()
    for old, new in replacements.items():
        if old not in text:
            raise ValueError(f"gpu_check: {QUICKSTART} no longer contains {old!r}; update training_config.")
        text = text.replace(old, new)
    path = out_dir / "quickstart_gpu_check.yaml"
    path.write_text(text)
    return path


def train_commands(config: Path, out_dir: Path, device: str, epochs: int) -> dict[str, list[str]]:
    return {p: [sys.executable, "-m", "geokt_plugin.train", "--config", str(config), "--run-dir",
                str(out_dir / f"train_{p}"), "--mixed-precision", p, "--device", device, "--epochs", str(epochs),
                "--student-only", "--overwrite", "--trust-config"] for p in ("bf16", "fp16")}


def summarize_training(run_dir: Path) -> dict[str, Any]:
    """The per-epoch training losses, whether they went down, and whether any metric is NaN."""
    from geokt_plugin.rundir import METRICS, read_metrics

    path = run_dir / METRICS
    if not path.exists():
        return {"ok": False, "reason": f"no {path}"}
    rows = read_metrics(path)
    losses = [float(r["train_loss"]) for r in rows]
    values = [float(v) for r in rows for k, v in r.items() if k.startswith("loss/") and v not in ("", None)]
    finite = all(math.isfinite(v) for v in losses + values)
    down = len(losses) >= 2 and losses[-1] < losses[0]
    return {"train_loss": losses, "finite": finite, "loss_went_down": down, "ok": finite and down}


# ----------------------------------------------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------------------------------------------


def _run(command: list[str], env: dict[str, str], dry_run: bool, timeout: int) -> dict[str, Any]:
    if dry_run:
        print("would run:", " ".join(command))
        return {"command": command, "ran": False}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    return {"command": command, "ran": True, "returncode": done.returncode, "seconds": time.perf_counter() - start,
            "stderr_tail": done.stderr[-2000:]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    dry = args.dry_run
    if not dry and not torch.cuda.is_available():
        raise SystemExit("gpu_check: CUDA is not available; use --dry-run to test the script on CPU.")
    device = torch.device("cpu" if dry else "cuda")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"env": C.environment(device), "dry_run": dry}
    shape = (2, 3, 4, 4, 4) if dry else (8, 16, 32, 16, 16)
    result["losses"] = check_losses(device, shape, ["eager"] if dry else ["eager", "compiled"])
    result["compile"] = compile_report()
    env = {**os.environ, "GEOKT_FASHION_MNIST": str(write_synthetic_fashion_mnist(
        out_dir / "synthetic_fmnist", 400 if dry else 3000, 100 if dry else 1000))}
    result["steps"] = [_run(c, env, dry, 240) for c in step_commands(device.type, out_dir, [32, 128], 10)]
    result["step_ratios"] = summarize_steps(out_dir, device.type, [32, 128])
    config = training_config(out_dir, 100 if dry else 1000)
    result["train"] = {}
    for precision, command in train_commands(config, out_dir, device.type, 4).items():
        result["train"][precision] = {**_run(command, env, dry, 150),
                                      **({} if dry else summarize_training(out_dir / f"train_{precision}"))}
    result["ok"] = all(r["ok"] for r in result["losses"]) and all(
        t.get("ok", dry) for t in result["train"].values())
    C.write_json(str(out_dir / "gpu_check.json"), result)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", default=str(HERE / "results" / "gpu"))
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, print the subprocesses only")
    result = run(parser.parse_args(argv))
    passed = sum(r["ok"] for r in result["losses"])
    print(f"gpu_check: {passed}/{len(result['losses'])} loss checks passed; ok={result['ok']}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
