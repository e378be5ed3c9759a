"""Forward+backward cost of each GeoKT loss alone, against baselines, over N points per image and batch size B.

Baselines on the same feature maps (student ``(B, 32, H, W)``, instructor ``(B, 64, H, W)``, N = H*W):

* ``GeoKT-<loss>`` runs on the automatic kernel path (on CPU: the native C++ kernels where a block holds whole
  sets), ``GeoKT-<loss> eager`` on the eager block kernel (``GEOKT_COMPILE=0``), side by side;
* ``dense``: the straightforward autograd formulation of docs/losses.md (full ``(S, n, n)`` matrices, autograd
  keeps the intermediates): what a plain implementation costs (``geokt_plugin.testing.dense`` on the package's
  dense geometry);
* torchdistill's ``ATLoss`` (mode ``code``), ``PKTLoss``, ``SPKDLoss``, ``RKDLoss`` (distance + angle terms,
  ``dist_factor=1, angle_factor=2``), built from the registry and fed the same io_dicts;
* the naive loop reference ``geokt_plugin.testing.reference`` (pure Python, forward only) at B = 1 and small N
  only; its column is the GeoKT forward+backward speed-up over it.

Each grid cell measures its methods round-robin in one process (medians over ``--repeats``), plus the bytes
autograd saves for backward and the peak allocation (see ``_common.py``). Cells whose dense per-network distance
matrix would exceed ``--max-dense-gib`` (default 0.5 GiB, to keep the CPU run to a few minutes; ``2`` gives
the full grid) are skipped and listed; so are RKD cells whose (B, B, C*N) angle tensor would.

Usage::

    python benchmarks/bench_losses.py --out benchmarks/results/losses_cpu.json
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import _common as C  # noqa: E402
from torchdistill.losses.registry import get_mid_level_loss  # noqa: E402

import geokt_plugin  # noqa: E402,F401  (registers the GeoKT* losses)
from geokt_plugin import functional as GF  # noqa: E402
from geokt_plugin.losses import LOSS_SPECS  # noqa: E402
from geokt_plugin.losses.paths import select_path  # noqa: E402

CS, CT = 32, 64
GEO = {name: spec.function for name, spec in LOSS_SPECS.items()}


# ----------------------------------------------------------------------------------------------------------------
# Methods of one grid cell.
# ----------------------------------------------------------------------------------------------------------------


def torchdistill_losses() -> dict[str, Any]:
    io = {"student_module_path": "feat", "student_module_io": "output", "teacher_module_path": "feat",
          "teacher_module_io": "output"}
    pair = {"feat": {"teacher": {"path": "feat", "io": "output"}, "student": {"path": "feat", "io": "output"},
                     "weight": 1}}
    configs = {
        "AT": {"key": "ATLoss", "kwargs": {"at_pairs": pair, "mode": "code"}},
        "PKT": {"key": "PKTLoss", "kwargs": io},
        "SP": {"key": "SPKDLoss", "kwargs": {"student_output_path": "feat", "teacher_output_path": "feat",
                                             "reduction": "batchmean"}},
        "RKD": {"key": "RKDLoss", "kwargs": {"student_output_path": "feat", "teacher_output_path": "feat",
                                             "dist_factor": 1.0, "angle_factor": 2.0, "reduction": "mean"}},
    }
    return {name: get_mid_level_loss(cfg) for name, cfg in configs.items()}


def on_path(path: str, fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """``fn`` run on one kernel path (``geokt_plugin.losses.paths``), then the automatic choice again."""
    def run() -> Tensor:
        select_path(path)
        try:
            return fn()
        finally:
            select_path("auto")

    return run


def _dense_closure(kind: str, student: Tensor, teacher: Tensor, scope: str) -> Callable[[], Tensor]:
    """The plain-autograd formulation of one loss (LossSpec's dense oracle) as a closure."""
    spec = LOSS_SPECS[kind]
    dense = spec.dense_function()
    # the shared dense oracle takes the package's own normalisation; a loss's own oracle needs none
    knobs = {**spec.knobs, **({"normalized": GF.normalized_distances} if spec.dense is None else {})}
    return lambda: dense(student, teacher, scope=scope, **knobs).mean()


def cell_methods(student: Tensor, teacher: Tensor, scope: str, chunk_size: int | None, max_bytes: float,
                 td: dict[str, Any], dense_losses: tuple[str, ...] = tuple(GEO)
                 ) -> tuple[dict[str, Callable[[], Tensor]], list[str]]:
    """Loss closures (forward only; the caller adds backward) and the names skipped for memory."""
    B, _, H, W = student.shape
    n = H * W if scope == "image" else B * H * W
    sets = B if scope == "image" else 1
    methods: dict[str, Callable[[], Tensor]] = {}
    for kind, fn in GEO.items():
        methods[f"GeoKT-{kind}"] = lambda fn=fn: fn(student, teacher, scope=scope, chunk_size=chunk_size)
        methods[f"GeoKT-{kind} eager"] = on_path("eager", methods[f"GeoKT-{kind}"])
    skipped = []
    if sets * n * n * 4 * 6 <= max_bytes:  # the dense path holds about six such matrices
        for kind in dense_losses:
            methods[f"dense-{kind}"] = _dense_closure(kind, student, teacher, scope)
    else:
        skipped.append("dense")
    if scope == "image":  # the torchdistill losses have no scope: they relate whole images
        s_io, t_io = {"feat": {"output": student}}, {"feat": {"output": teacher}}
        for name, loss in td.items():
            if name == "PKT":
                methods[name] = lambda: td["PKT"]({"feat": {"output": student.flatten(1)}},
                                                  {"feat": {"output": teacher.flatten(1)}})
            elif name == "RKD" and B * B * CT * H * W * 4 * 3 > max_bytes:
                skipped.append("RKD")
            else:
                methods[name] = lambda loss=loss: loss(s_io, t_io)
    return methods, skipped


def forward_backward(fn: Callable[[], Tensor], student: Tensor) -> Callable[[], None]:
    def run() -> None:
        student.grad = None
        fn().backward()

    return run


def reference_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """GeoKT vs the naive loop reference at B = 1 (the reference is a forward pass only)."""
    rows = []
    for N in args.reference_n:
        side = int(math.isqrt(N))
        torch.manual_seed(0)
        s = torch.randn(1, CS, side, side).relu().requires_grad_()
        t = torch.randn(1, CT, side, side).relu()
        for kind, fn in GEO.items():
            spec = LOSS_SPECS[kind]
            start = time.perf_counter()
            spec.reference_function()(s.detach().double(), t.double(), **spec.knobs)
            ref_s = time.perf_counter() - start
            times = C.interleaved_times({"geo": forward_backward(lambda fn=fn, s=s, t=t: fn(s, t), s)},
                                        repeats=args.repeats, warmup=1)
            geo_s = C.median(times["geo"])
            rows.append({"loss": kind, "N": N, "B": 1, "reference_ms": 1e3 * ref_s, "geokt_ms": 1e3 * geo_s,
                         "speedup": ref_s / geo_s, "loadavg": os.getloadavg()[0]})
            print(f"  reference N={N} {kind}: {1e3 * ref_s:.0f} ms vs GeoKT fwd+bwd {1e3 * geo_s:.2f} ms")
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device("cpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    env_before = C.environment(device)
    print(f"# bench_losses: Cs={CS}, Ct={CT}, {torch.get_num_threads()} threads, loadavg {env_before['loadavg']}")
    td = torchdistill_losses()
    max_bytes = args.max_dense_gib * (1 << 30)
    rows, skipped_cells = [], []
    for scope in args.scopes:
        for N in args.n:
            for B in args.b:
                n = N if scope == "image" else B * N
                sets = B if scope == "image" else 1
                dense_bytes = sets * n * n * 4
                if dense_bytes > max_bytes:
                    skipped_cells.append({"scope": scope, "N": N, "B": B, "dense_GiB": dense_bytes / (1 << 30)})
                    continue
                side = int(math.isqrt(N))
                torch.manual_seed(0)
                student = torch.randn(B, CS, side, side).relu().requires_grad_()
                teacher = torch.randn(B, CT, side, side).relu()
                methods, skipped = cell_methods(student, teacher, scope, args.chunk_size, max_bytes, td,
                                                tuple(args.dense_losses))
                runs = {name: forward_backward(fn, student) for name, fn in methods.items()}
                load = os.getloadavg()[0]
                times = C.interleaved_times(runs, repeats=args.repeats, warmup=1)
                for name, fn in methods.items():
                    _, saved = C.saved_tensor_bytes(fn, exclude=[student, teacher])
                    peak = C.peak_bytes(runs[name], device)
                    rows.append({"scope": scope, "N": N, "B": B, "method": name,
                                 "time_ms": 1e3 * C.median(times[name]), "saved_MiB": saved / C.MiB,
                                 "peak_MiB": peak / C.MiB, "loadavg": load, "skipped": ",".join(skipped)})
                geo = [r for r in rows[-len(methods):] if r["method"].startswith("GeoKT")]
                print(f"  {scope} N={N} B={B}: " + ", ".join(f"{r['method']} {r['time_ms']:.1f} ms" for r in geo))
    ref_rows = reference_rows(args) if args.reference_n else []
    env_after = C.environment(device)
    table = C.markdown_table(rows, [("scope", "scope"), ("N", "N"), ("B", "B"), ("method", "method"),
                                    ("time_ms", "fwd+bwd ms"), ("saved_MiB", "saved MiB"), ("peak_MiB", "peak MiB"),
                                    ("loadavg", "load")])
    print(table)
    if ref_rows:
        ref_table = C.markdown_table(ref_rows, [("loss", "loss"), ("N", "N"), ("B", "B"),
                                                ("reference_ms", "reference fwd ms"), ("geokt_ms", "GeoKT fwd+bwd ms"),
                                                ("speedup", "speed-up"), ("loadavg", "load")])
        print()
        print(ref_table)
    else:
        ref_table = ""
    if skipped_cells:
        print("skipped (dense matrix over the cap): " + ", ".join(
            f"{c['scope']} N={c['N']} B={c['B']} ({c['dense_GiB']:.2f} GiB)" for c in skipped_cells))
    print(f"loadavg before {env_before['loadavg']}, after {env_after['loadavg']}")
    payload = {"benchmark": "bench_losses", "args": vars(args), "env_before": env_before, "env_after": env_after,
               "rows": rows, "reference_rows": ref_rows, "skipped_cells": skipped_cells, "table": table,
               "reference_table": ref_table}
    C.write_json(args.out, payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[64, 256, 1024, 4096], help="points per image (squares)")
    parser.add_argument("--b", type=int, nargs="+", default=[32, 128, 256], help="batch sizes")
    parser.add_argument("--scopes", nargs="+", default=["image", "batch"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--chunk-size", type=int, default=None)
    parser.add_argument("--max-dense-gib", type=float, default=0.5)
    parser.add_argument("--dense-losses", nargs="*", default=list(GEO), choices=list(GEO),
                        help="losses whose dense autograd oracle is timed too (dense NAC takes seconds per call)")
    parser.add_argument("--reference-n", type=int, nargs="*", default=[64, 256, 1024],
                        help="N for the naive-reference comparison at B = 1 (empty: skip)")
    parser.add_argument("--out", default=None)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
