"""geokt-compare on synthetic run directories: the numbers in the tables, the CSVs, the PNGs and the flags."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from geokt_plugin import reporting

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, experiment: str, config: str, seed: int, val: list[float], test: float | None,
             *, done: bool = True, manifest_config: str | None = None) -> Path:
    """A run directory as geokt-train leaves it: metrics.csv, manifest.json, config.yaml, summary.json, done."""
    run_dir = root / experiment / config / f"seed{seed}"
    run_dir.mkdir(parents=True)
    with (run_dir / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["epoch", "stage", "lr", "train_loss", "loss/ce", "train_acc", "val_acc", "epoch_time_s",
                         "images_per_s", "steps", "skipped_steps"])
        for epoch, acc in enumerate(val, start=1):
            writer.writerow([epoch, 1, 0.1, 1.0 / epoch, 1.0 / epoch, acc - 1, acc, 10.0, 200.0, 32, 0])
    config_path = manifest_config or f"configs/official/fmnist/key/{experiment}/{config}.yaml"
    (run_dir / "manifest.json").write_text(json.dumps({"seed": seed, "world_size": 1, "config": config_path}))
    (run_dir / "config.yaml").write_text(f"# as run by geokt-train from {config_path}\ntrain: {{num_epochs: 3}}\n")
    summary = {"best_val_acc": max(val), "last_val_acc": val[-1]}
    if test is not None:
        summary["test_acc"] = test
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if done:
        (run_dir / "done").write_text("2026-01-01T00:00:00\n")
    return run_dir


@pytest.fixture()
def runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    dirs = [
        # three seeds: final val 80/82/84 (mean 82, sample std 2), best val 85/82/86, test 70/71/75
        make_run(root, "smaller", "kd-r8_from_r20", 0, [50.0, 85.0, 80.0], 70.0),
        make_run(root, "smaller", "kd-r8_from_r20", 1, [60.0, 81.0, 82.0], 71.0),
        make_run(root, "smaller", "kd-r8_from_r20", 2, [55.0, 86.0, 84.0], 75.0),
        # two seeds only: flagged
        make_run(root, "smaller", "ce-r8", 0, [40.0, 70.0, 78.0], 68.0),
        make_run(root, "smaller", "ce-r8", 1, [45.0, 72.0, 80.0], 69.0, done=False),
        # a limited-data cell (fraction 10 %), one seed
        make_run(root, "limited", "ce-r8_frac10", 0, [30.0, 50.0, 60.0], 58.0),
    ]
    return dirs


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_mean_std_is_the_sample_std():
    mean, std, n = reporting.mean_std([70.0, 71.0, 75.0, None, float("nan")])
    assert (mean, n) == (72.0, 3)
    assert std == pytest.approx(math.sqrt(7.0))  # deviations -2, -1, 3: (4 + 1 + 9) / (3 - 1)
    assert reporting.mean_std([5.0]) == (5.0, None, 1)
    assert reporting.mean_std([]) == (None, None, 0)


def test_method_and_fraction_come_from_the_config_name():
    assert reporting.method_of("geokt_rank_kd-resnet8_from_resnet20_frac20") == "geokt_rank_kd"
    assert reporting.fraction_of("geokt_rank_kd-resnet8_from_resnet20_frac20") == pytest.approx(0.2)
    assert reporting.fraction_of("ce-resnet8") == 1.0


def test_report_tables_hold_the_right_numbers(runs: list[Path], tmp_path: Path):
    out = tmp_path / "report"
    assert reporting.main([str(d) for d in runs] + ["--out", str(out)]) == 0
    md = (out / "results.md").read_text()
    assert "| smaller | `kd-r8_from_r20` | 3 | 82.00 ± 2.00 | 84.33 ± 2.08 | 72.00 ± 2.65 |" in md
    # the unfinished ce-r8 seed 1 is listed but left out: n = 1
    assert "| smaller | `ce-r8` | 1 ⚠ | 78.00 | 78.00 | 68.00 |" in md
    # method x experiment table: the limited-data cell is its own column, tagged with its fraction
    assert "| method | smaller | limited 10% |" in md
    assert "| kd | 72.00 ± 2.65 (3) |  |" in md
    assert "| ce | 68.00 (1 ⚠) | 58.00 (1 ⚠) |" in md
    assert "fewer than 3 seeds: smaller/ce-r8 (n=1), limited/ce-r8_frac10 (n=1)" in md
    assert "left out" in md and "ce-r8/seed1" in md

    cells = {row["config"]: row for row in read_csv(out / "results.csv")}
    kd = cells["kd-r8_from_r20"]
    assert (kd["method"], kd["n"], kd["flag"]) == ("kd", "3", "")
    assert float(kd["final_val_mean"]) == pytest.approx(82.0)
    assert float(kd["final_val_std"]) == pytest.approx(2.0)
    assert float(kd["test_std"]) == pytest.approx(math.sqrt(7.0), abs=1e-4)
    assert float(kd["train_time_s_mean"]) == pytest.approx(30.0)  # 3 epochs x 10 s
    assert cells["ce-r8"]["flag"] == "fewer than 3 seeds"
    assert cells["ce-r8"]["n"] == "1"
    assert cells["ce-r8_frac10"]["fraction"] == "0.1"
    assert cells["ce-r8_frac10"]["final_val_std"] == ""  # one seed: no std

    per_run = read_csv(out / "runs.csv")
    assert len(per_run) == 5
    assert {r["seed"] for r in per_run if r["config"] == "kd-r8_from_r20"} == {"0", "1", "2"}


def test_include_unfinished_counts_running_runs(runs: list[Path], tmp_path: Path):
    out = tmp_path / "report"
    assert reporting.main([str(d) for d in runs] + ["--out", str(out), "--include-unfinished"]) == 0
    md = (out / "results.md").read_text()
    # best val 78 and 80, final val 78 and 80: mean 79, sample std sqrt(2); test 68 and 69
    assert "| smaller | `ce-r8` | 2 ⚠ | 79.00 ± 1.41 | 79.00 ± 1.41 | 68.50 ± 0.71 |" in md
    assert "unfinished runs (no `done` marker), included" in md


def test_report_writes_png_plots(runs: list[Path], tmp_path: Path):
    out = tmp_path / "report"
    reporting.main([str(d) for d in runs] + ["--out", str(out)])
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["curves_limited.png", "curves_smaller.png", "fraction.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and 5_000 < len(data) < 200_000, (name, len(data))


def test_no_fraction_plot_without_fractions(runs: list[Path], tmp_path: Path):
    out = tmp_path / "report"
    reporting.main([str(d) for d in runs[:3]] + ["--out", str(out), "--min-seeds", "3"])
    assert not (out / "fraction.png").exists()
    assert "none: every cell has at least 3 finished seeds" in (out / "results.md").read_text()


def test_group_by_config_reads_the_manifest(tmp_path: Path):
    a = make_run(tmp_path / "x", "ignored", "ignored", 0, [70.0, 80.0], 79.0,
                 manifest_config="configs/official/d/k/external/at-r8_from_r20.yaml")
    records = [reporting.load_run(a, "config")]
    cells = reporting.aggregate(records)
    assert [(c.experiment, c.config, c.method) for c in cells] == [("external", "at-r8_from_r20", "at")]


def test_a_linked_run_counts_once_per_cell(runs: list[Path], tmp_path: Path):
    """The suite links identical configs (limited_data _frac100 -> smaller_model): each cell counts the run once."""
    link = tmp_path / "runs" / "limited" / "kd-r8_from_r20_frac100" / "seed0"
    link.parent.mkdir(parents=True)
    link.symlink_to(runs[0])
    records = [reporting.load_run(d) for d in [runs[0], runs[0], link]]
    cells = {(c.experiment, c.config): c for c in reporting.aggregate(records)}
    assert cells[("smaller", "kd-r8_from_r20")].n == 1
    assert cells[("limited", "kd-r8_from_r20_frac100")].n == 1


def test_bad_input_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert reporting.main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "holds no metrics.csv" in capsys.readouterr().err
