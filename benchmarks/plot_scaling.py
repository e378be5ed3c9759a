"""Plot how the GeoKT losses' cost grows with N (points per image) and B, from ``bench_losses.py``'s JSON.

Usage::

    python benchmarks/plot_scaling.py benchmarks/results/losses_cpu.json docs/img/scaling_cpu.png
"""

from __future__ import annotations

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from geokt_plugin.losses import LOSS_SPECS  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json_path")
    parser.add_argument("png_path")
    args = parser.parse_args(argv)
    with open(args.json_path) as fh:
        payload = json.load(fh)
    rows = [r for r in payload["rows"] if r["scope"] == "image"]
    methods = [f"GeoKT-{name}" for name in LOSS_SPECS] + ["GeoKT-rank eager", "dense-kl", "SP", "PKT"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for B, style in zip(sorted({r["B"] for r in rows}), ["-", "--", ":"], strict=False):
        for i, method in enumerate(methods):
            colour = f"C{i % 10}"
            pts = sorted((r["N"], r["time_ms"], r["peak_MiB"]) for r in rows if r["B"] == B and r["method"] == method)
            if not pts:
                continue
            label = f"{method}, B={B}"
            axes[0].plot([p[0] for p in pts], [p[1] for p in pts], style, color=colour, marker="o", label=label)
            axes[1].plot([p[0] for p in pts], [p[2] for p in pts], style, color=colour, marker="o", label=label)
    for ax, ylabel in zip(axes, ["forward + backward (ms, median)", "peak allocation (MiB)"], strict=True):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("N = points per image (scope 'image')")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6, ncol=2)
    env = payload["env_before"]
    fig.suptitle(f"GeoKT loss cost vs N and B ({env['date']}, {env['torch_threads']} thread(s), "
                 f"load {env['loadavg'][0]}, 2-vCPU VM)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.png_path)), exist_ok=True)
    fig.savefig(args.png_path, dpi=110)
    print(f"wrote {args.png_path}")


if __name__ == "__main__":
    main()
