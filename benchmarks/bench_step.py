"""One full distillation training step per method, as ratios to KD: resnet56 -> resnet20 on CIFAR-shaped input, or
the quick-start pair resnet20 -> resnet8 on Fashion-MNIST-shaped input (``--pair quickstart``).

A step is: instructor forward under ``no_grad`` (not for CE), student forward, the criterion, backward, SGD step.
Every method is built the way a user builds it: torchdistill's ``WeightedSumLoss`` from a ``sub_terms`` config
(the registered ``GeoKT*`` keys, ``KDLoss``, ``ATLoss``, ``MSELoss`` through ``SimpleLossWrapper``), with the
features collected by torchdistill's ``ForwardHookManager``. Each method has its own copy of the two networks (same
initial weights) so hooks never overlap. All methods run in one process, interleaved round-robin; the table shows
medians and ratios to the KD step measured in the same rounds.

Each GeoKT method runs on three kernel paths in the same rounds (``geokt_plugin.losses.paths``): ``GeoKT-<loss>+KD``
on the automatic choice a user gets (on CPU: the native C++ kernels), ``... eager`` on the eager block kernel
(``GEOKT_COMPILE=0``) and ``... compiled`` on ``torch.compile``'s block functions. The first step of every method
is timed on its own before the warm-up (for a compiled method it includes the compilation; for the native kernels,
their build when the cache is cold), and the compile seconds are reported.

Memory (deterministic, measured once per method outside the timed rounds):

* ``saved MiB``: bytes autograd keeps for backward during the step (activations of the student, loss tensors);
* ``peak MiB``: persistent bytes (parameters, gradients, optimizer state, batch) plus the peak of tensor
  allocations during the step above its start (CUDA: ``max_memory_allocated``; CPU: the profiler's memory
  timeline). The peak ratio to KD is the memory target (docs/performance.md).

Usage::

    python benchmarks/bench_step.py --device cpu --batch-size 32 --repeats 15 --out benchmarks/results/step_cpu.json
    python benchmarks/bench_step.py --pair quickstart --batch-size 64 --out benchmarks/results/step_quickstart.json
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402
from torchdistill.core.forward_hook import ForwardHookManager  # noqa: E402
from torchdistill.losses.registry import get_high_level_loss  # noqa: E402
from torchdistill.models.classification.resnet import resnet20, resnet56  # noqa: E402

import geokt_plugin  # noqa: E402,F401  (registers the GeoKT* losses)
from geokt_plugin.losses import LOSS_SPECS, compiled  # noqa: E402
from geokt_plugin.losses.paths import select_path  # noqa: E402
from geokt_plugin.model_zoo import GeoKTCifarResNet  # noqa: E402

# The GeoKT layer pairs: the 32x32 stage sampled (256 positions; the quick start's config samples 128), the 16x16
# and 8x8 stages exact.
GEO_PAIRS = {"layer1": 256, "layer2": None, "layer3": None}
GEO_KEYS = {name: spec.key for name, spec in LOSS_SPECS.items()}
# name -> (instructor, student, input builder, layer1 max_points)
PAIRS: dict[str, tuple[Callable[[], nn.Module], Callable[[], nn.Module], Callable[[int], Tensor], int]] = {
    "resnet56-resnet20": (lambda: resnet56(num_classes=10), lambda: resnet20(num_classes=10),
                          lambda b: torch.randn(b, 3, 32, 32), 256),
    # The quick start: 1x28x28 Fashion-MNIST images padded to 32x32 and repeated to 3 channels (geokt_plugin.data).
    "quickstart": (lambda: resnet20(num_classes=10), lambda: GeoKTCifarResNet(8, num_classes=10),
                   lambda b: torch.nn.functional.pad(torch.randn(b, 1, 28, 28), (2, 2, 2, 2)).expand(-1, 3, -1, -1)
                   .contiguous(), 128),
}


def ce_term() -> dict[str, Any]:
    return {
        "criterion": {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}},
        "criterion_wrapper": {
            "key": "SimpleLossWrapper",
            "kwargs": {
                "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
                "target": {"uses_label": True},
            },
        },
        "weight": 1.0,
    }


def kd_term() -> dict[str, Any]:
    kwargs = {"student_module_path": ".", "student_module_io": "output", "teacher_module_path": ".",
              "teacher_module_io": "output", "temperature": 4.0, "alpha": 0.9, "reduction": "batchmean"}
    return {"criterion": {"key": "KDLoss", "kwargs": kwargs}, "weight": 1.0}


def geo_terms(kind: str, chunk_size: int | None, layer1_points: int) -> dict[str, Any]:
    terms = {}
    for layer, max_points in {**GEO_PAIRS, "layer1": layer1_points}.items():
        kwargs = {"student_module_path": layer, "teacher_module_path": layer, "max_points": max_points}
        if chunk_size is not None:
            kwargs["chunk_size"] = chunk_size
        terms[f"geo_{layer}"] = {"criterion": {"key": GEO_KEYS[kind], "kwargs": kwargs}, "weight": 1.0}
    return terms


def at_term() -> dict[str, Any]:
    pairs = {
        layer: {"teacher": {"path": layer, "io": "output"}, "student": {"path": layer, "io": "output"}, "weight": 1}
        for layer in GEO_PAIRS
    }
    return {"criterion": {"key": "ATLoss", "kwargs": {"at_pairs": pairs, "mode": "code"}}, "weight": 1000.0}


def hint_term() -> dict[str, Any]:
    return {
        "criterion": {"key": "MSELoss", "kwargs": {"reduction": "mean"}},
        "criterion_wrapper": {
            "key": "SimpleLossWrapper",
            "kwargs": {
                "input": {"is_from_teacher": False, "module_path": "hint", "io": "output"},
                "target": {"is_from_teacher": True, "module_path": "layer2", "io": "output"},
            },
        },
        "weight": 1.0,
    }


def method_specs(chunk_size: int | None, layer1_points: int = 256) -> dict[str, dict[str, Any]]:
    """name -> sub_terms, whether the instructor runs, hooked layers, and whether a hint adapter exists."""
    layers = list(GEO_PAIRS)
    specs: dict[str, dict[str, Any]] = {
        "CE": {"terms": {"ce": ce_term()}, "teacher": False, "hooks": []},
        "KD": {"terms": {"kd": kd_term()}, "teacher": True, "hooks": []},
        "AT": {"terms": {"ce": ce_term(), "at": at_term()}, "teacher": True, "hooks": layers},
        "FitNets": {"terms": {"ce": ce_term(), "hint": hint_term()}, "teacher": True, "hooks": ["layer2"],
                    "hint": True},
    }
    for kind in GEO_KEYS:
        for path in ("auto", "eager", "compiled"):
            name = f"GeoKT-{kind}+KD" + ("" if path == "auto" else f" {path}")
            specs[name] = {"terms": {"kd": kd_term(), **geo_terms(kind, chunk_size, layer1_points)},
                           "teacher": True, "hooks": layers, "path": path}
    return specs


class Method:
    """One method's networks, hooks, criterion and optimizer, and its ``step()``."""

    def __init__(self, name: str, spec: dict[str, Any], student: nn.Module, teacher: nn.Module,
                 device: torch.device, batch: tuple[Tensor, Tensor]) -> None:
        self.name = name
        self.path = spec.get("path", "auto")
        self.student = copy.deepcopy(student).to(device).train()
        self.teacher = copy.deepcopy(teacher).to(device).eval() if spec["teacher"] else None
        self.hint = nn.Conv2d(32, 32, kernel_size=1).to(device) if spec.get("hint") else None
        self.x, self.y = batch
        self.s_hooks = ForwardHookManager(device)
        self.t_hooks = ForwardHookManager(device)
        for layer in spec["hooks"]:
            self.s_hooks.add_hook(self.student, layer, requires_input=False, requires_output=True)
            if self.teacher is not None:
                self.t_hooks.add_hook(self.teacher, layer, requires_input=False, requires_output=True)
        if self.hint is not None:
            self.s_hooks.add_hook(self.student, "layer2", requires_input=False, requires_output=True)
            if "layer2" not in spec["hooks"]:
                self.t_hooks.add_hook(self.teacher, "layer2", requires_input=False, requires_output=True)
        self.criterion = get_high_level_loss({"key": "WeightedSumLoss", "kwargs": {"sub_terms": spec["terms"]}})
        params = list(self.student.parameters()) + (list(self.hint.parameters()) if self.hint is not None else [])
        self.optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)

    def forward_loss(self) -> Tensor:
        """Instructor forward (no grad), student forward, adapter, criterion: everything before backward."""
        self.optimizer.zero_grad(set_to_none=True)
        t_io: dict[str, Any] = {}
        if self.teacher is not None:
            with torch.no_grad():
                t_out = self.teacher(self.x)
            t_io = self.t_hooks.pop_io_dict()
            t_io["."] = {"output": t_out}
        s_out = self.student(self.x)
        s_io = self.s_hooks.pop_io_dict()
        s_io["."] = {"output": s_out}
        if self.hint is not None:  # what an auxiliary wrapper's secondary_forward does
            s_io["hint"] = {"output": self.hint(s_io["layer2"]["output"])}
        return self.criterion({"student": s_io, "teacher": t_io}, {}, self.y)

    def step(self) -> float:
        select_path(self.path)  # each method runs its own kernel path, in the same rounds as the others
        loss = self.forward_loss()
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def persistent_bytes(self) -> int:
        tensors: list[Tensor] = [self.x, self.y]
        for module in (self.student, self.teacher, self.hint):
            if module is not None:
                tensors += list(module.parameters()) + list(module.buffers())
        tensors += [p for g in self.optimizer.param_groups for p in g["params"]]  # their gradients
        for state in self.optimizer.state.values():
            tensors += [v for v in state.values() if isinstance(v, Tensor)]
        return sum(t.numel() * t.element_size() for t in tensors)

    def saved_bytes(self) -> int:
        select_path(self.path)
        params = [p for m in (self.student, self.teacher, self.hint) if m is not None for p in m.parameters()]
        loss, nbytes = C.saved_tensor_bytes(self.forward_loss, exclude=params + [self.x])
        loss.backward()
        return nbytes


def first_steps(methods: dict[str, Method]) -> dict[str, float]:
    """Seconds of each method's first step (a compiled method's includes its compilation), in method order."""
    first = {}
    for name, m in methods.items():
        start = time.perf_counter()
        m.step()
        first[name] = time.perf_counter() - start
    return first


def result_rows(methods: dict[str, Method], times: dict[str, list[float]], first: dict[str, float],
                device: torch.device) -> list[dict[str, Any]]:
    """One row per method: medians, spread, ratios to KD, memory, first-step seconds."""
    rows = []
    for name, m in methods.items():
        peak = m.persistent_bytes() + C.peak_bytes(m.step, device)
        spread = sorted(times[name])
        rows.append({"method": name, "time_ms": 1e3 * C.median(times[name]), "first_step_s": first[name],
                     "iqr_ms": 1e3 * (spread[(3 * len(spread)) // 4] - spread[len(spread) // 4]),
                     "saved_MiB": m.saved_bytes() / C.MiB, "peak_MiB": peak / C.MiB})
    base = next((r for r in rows if r["method"] == "KD"), rows[0])
    for row in rows:
        ratio = C.paired_ratio(times[row["method"]], times[base["method"]])
        row["time_x_kd"] = ratio["median"]  # the median of per-round ratios: each round's KD step is its baseline
        row["time_x_kd_ci"] = f"{ratio['low']:.3g}-{ratio['high']:.3g}"
        row["peak_x_kd"] = row["peak_MiB"] / base["peak_MiB"]
    return rows


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    make_teacher, make_student, make_input, layer1_points = PAIRS[args.pair]
    student, teacher = make_student(), make_teacher()
    x = make_input(args.batch_size).to(device)
    y = torch.randint(0, 10, (args.batch_size,), device=device)
    env_before = C.environment(device)
    methods = {name: Method(name, spec, student, teacher, device, (x, y))
               for name, spec in method_specs(args.chunk_size, layer1_points).items()
               if not args.only or name in args.only}
    print(f"# bench_step: {args.pair}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads, "
          f"loadavg {env_before['loadavg']}", flush=True)
    first = first_steps(methods)
    steps: dict[str, Callable[[], Any]] = {name: m.step for name, m in methods.items()}
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times = C.interleaved_times(steps, repeats=args.repeats, warmup=args.warmup, device=device, clock=clock)
    env_after = C.environment(device)
    rows = result_rows(methods, times, first, device)
    table = C.markdown_table(rows, [("method", "method"), ("time_ms", "median ms"), ("iqr_ms", "IQR ms"),
                                    ("time_x_kd", "time / KD"), ("time_x_kd_ci", "95% CI"),
                                    ("first_step_s", "first step s"),
                                    ("saved_MiB", "saved MiB"), ("peak_MiB", "peak MiB"), ("peak_x_kd", "peak / KD")])
    report = compiled.compile_report()
    print(table)
    print(f"compile seconds per block function: {report}")
    print(f"loadavg before {env_before['loadavg']}, after {env_after['loadavg']}")
    payload = {"benchmark": "bench_step", "args": vars(args), "env_before": env_before, "env_after": env_after,
               "geo_pairs": {**GEO_PAIRS, "layer1": layer1_points}, "rows": rows, "times_s": times,
               "compile": report, "table": table}
    C.write_json(args.out, payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--pair", choices=list(PAIRS), default="resnet56-resnet20",
                        help="instructor-student pair (quickstart: resnet20 -> resnet8 on 1x28x28 padded inputs)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (medians are reported)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall time, or this process's CPU seconds (robust to a shared machine; one thread)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--chunk-size", type=int, default=None, help="GeoKT chunk_size (default: automatic)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="subset of methods, e.g. KD 'GeoKT-rank+KD' 'GeoKT-rank+KD compiled'")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
