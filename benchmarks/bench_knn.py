"""The instructor's kNN selection on CPU: the candidates for ``geokt_plugin.losses.geometry.knn``, side by side.

All return the indices of the ``k`` smallest entries per row of a ``(b, r, n)`` block with ``+inf`` on the diagonal
(``sort`` and ``kthvalue`` only as references of cost: ``kthvalue`` gives a threshold, not the indices). Timed
round-robin by this thread's CPU seconds (robust on a shared machine), medians over ``--repeats``.

Usage::

    python benchmarks/bench_knn.py --out benchmarks/results/knn_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common as C  # noqa: E402

from geokt_plugin.losses.geometry import knn  # noqa: E402

SHAPES = [(4, 256, 256), (64, 64, 64), (1, 1024, 1024)]  # a 16x16 block of 4 images, an 8x8 block, a batch-scope set


def candidates(k: int) -> dict[str, Any]:
    return {
        "topk float": lambda d: d.topk(k, dim=-1, largest=False, sorted=False).indices,
        "topk int keys": lambda d: d.view(torch.int32).topk(k, dim=-1, largest=False, sorted=False).indices,
        "knn (two-stage, in use)": lambda d: knn(d, k),
        "sort int keys": lambda d: d.view(torch.int32).sort(dim=-1).indices[..., :k],
        "kthvalue int keys": lambda d: d.view(torch.int32).kthvalue(k, dim=-1).values,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    rows = []
    for b, r, n in SHAPES:
        d = torch.rand(b, r, n, generator=torch.Generator().manual_seed(0))
        d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        variants = {name: (lambda f=f, d=d: f(d)) for name, f in candidates(args.k).items()}
        times = C.interleaved_times(variants, repeats=args.repeats, clock=time.thread_time)
        rows += [{"shape": f"{b}x{r}x{n}", "method": name, "ms": 1e3 * C.median(t)} for name, t in times.items()]
    table = C.markdown_table(rows, [("shape", "block (b, r, n)"), ("method", "method"), ("ms", "median CPU ms")])
    print(table)
    payload = {"benchmark": "bench_knn", "args": vars(args), "env": C.environment(torch.device("cpu")), "rows": rows,
               "table": table}
    C.write_json(args.out, payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", default=None)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
