"""Shared measurement helpers for the benchmarks: interleaved timing, memory probes, environment, tables.

Timing on a shared machine is noisy, so every benchmark here measures its variants in one process, round-robin
(variant A, B, C, A, B, C, ...), takes medians over repeats and reports ratios to a baseline measured in the same
rounds. The load average is recorded before and after so a reader can judge the noise.

Memory is measured deterministically, not by timing the allocator:

* ``saved_tensor_bytes``: the bytes of distinct storages that autograd keeps for backward (through
  ``torch.autograd.graph.saved_tensors_hooks``), excluding storages that were alive before (parameters, inputs).
* ``peak_bytes``: on CUDA, ``torch.cuda.max_memory_allocated`` above the starting allocation; on CPU, the peak of
  net tensor allocations seen by the PyTorch profiler's memory timeline (``profile_memory=True``) above the start.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = [
    "environment",
    "interleaved_times",
    "markdown_table",
    "peak_bytes",
    "saved_tensor_bytes",
    "synchronize",
    "write_json",
]

MiB = float(1 << 20)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict[str, Any]:
    """Date, machine, library versions, threads and the current load average."""
    env: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} logical CPUs",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    try:
        import torchdistill

        env["torchdistill"] = torchdistill.__version__
    except ImportError:  # pragma: no cover - torchdistill is a hard dependency of the package
        pass
    return env


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def paired_ratio(times: list[float], base: list[float], *, resamples: int = 2000, seed: int = 0) -> dict[str, float]:
    """Median of the per-round ratios ``times[r] / base[r]`` (same round, so load changes cancel) and a 95 %
    percentile-bootstrap interval of that median (rounds resampled with replacement, seeded)."""
    ratios = torch.tensor(times, dtype=torch.float64) / torch.tensor(base, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(ratios), (resamples, len(ratios)), generator=g)
    medians = ratios[picks].median(dim=1).values.sort().values
    return {"median": float(ratios.median()), "low": float(medians[int(0.025 * resamples)]),
            "high": float(medians[int(0.975 * resamples) - 1])}


def interleaved_times(
    variants: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    warmup: int = 2,
    device: torch.device | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each variant, measured round-robin so that load changes hit every variant alike.

    ``clock``: wall time by default; ``time.process_time`` counts this process's CPU seconds instead, which on a
    machine shared with other jobs excludes the time the process waited for a core (use it with one thread: with
    more, OpenMP's spin-waiting is counted too).
    """
    device = device or torch.device("cpu")
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(repeats):
        # Rotate the starting variant each round: no variant always runs right after the same neighbour.
        names = list(variants)
        names = names[r % len(names):] + names[: r % len(names)]
        for name in names:
            synchronize(device)
            start = clock()
            variants[name]()
            synchronize(device)
            times[name].append(clock() - start)
    return times


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def saved_tensor_bytes(fn: Callable[[], Any], *, exclude: Iterable[torch.Tensor] = ()) -> tuple[Any, int]:
    """Run ``fn`` and return ``(its result, bytes autograd saved for backward)``.

    Distinct storages are counted once; storages of ``exclude`` (inputs, parameters) are not counted, since they
    are alive anyway. Call ``backward`` on the result afterwards, outside this function, if needed.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and ptr != 0:
            seen[ptr] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak tensor memory allocated while ``fn`` runs, above what was allocated when it started."""
    if device.type == "cuda":
        synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - start
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import Action, MemoryProfile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for _, action, _, size in MemoryProfile(prof.profiler.kineto_results).timeline:
        if action == Action.CREATE:
            current += size
        elif action == Action.DESTROY:
            current -= size
        peak = max(peak, current)
    return peak


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Rows as a Markdown table; ``columns`` are ``(key, header)`` pairs. Floats get 3 significant digits."""

    def fmt(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(k)) for k, _ in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(payload, fh, indent=1)
        fh.write("\n")
    print(f"wrote {path}")
