"""The suite's evidence: docs/reproducing.md equals what the committed raw data gives, the configs use the committed
sweep's choice, and collect copies what it should."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geokt_plugin import rundir
from geokt_plugin.experiments import results
from geokt_plugin.experiments.claims import same_hp, sweep_choice
from geokt_plugin.experiments.matrix import BEST_BASELINE, BEST_GEOKT, CHOSEN, SWEEP

PAGE = results.ROOT / "docs" / "reproducing.md"


def test_every_generated_section_of_the_page_equals_the_committed_data():
    text = PAGE.read_text()
    assert results.with_sections(text, results.sections()) == text


@pytest.mark.parametrize("group", list(results.GROUPS))
def test_the_committed_reports_are_what_the_raw_data_gives(group: str, tmp_path: Path):
    results.report(results.RAW, tmp_path, plots=False)
    for name in ("runs.csv", "results.csv", "results.md"):
        assert (tmp_path / group / name).read_text() == (results.RESULTS / group / name).read_text(), name


def test_the_configs_use_the_committed_sweeps_choice():
    chosen, best_g, best_b = sweep_choice(results.RESULTS / "sweep" / "runs.csv")
    assert (best_g, best_b) == (BEST_GEOKT, BEST_BASELINE)
    for method, tag in chosen.items():
        assert same_hp(CHOSEN[method], dict(SWEEP[method])[tag]), method


def test_the_committed_raw_data_has_no_checkpoints_and_five_seeds_per_student_cell():
    files = [p for p in results.RAW.rglob("*") if p.is_file()]
    assert files and {p.name for p in files} <= set(results.KEPT)
    for experiment in results.STUDENT_CELLS:
        for cfg in (results.RAW / experiment).iterdir():
            assert sorted(p.name for p in cfg.iterdir()) == [f"seed{s}" for s in range(5)], cfg


def _fake_run(path: Path, done: bool) -> None:
    path.mkdir(parents=True)
    for name in (rundir.CONFIG, rundir.METRICS, rundir.LAST, rundir.BEST):
        (path / name).write_text("x\n")
    (path / rundir.MANIFEST).write_text(json.dumps({"seed": 0}))
    if done:
        (path / rundir.DONE).write_text("")


def test_collect_copies_the_small_files_of_finished_runs_only(tmp_path: Path):
    base = tmp_path / "runs" / "fashion_mnist" / "theodorakopoulos2021"
    _fake_run(base / "smaller_model" / "ce-resnet8" / "seed0", done=True)
    _fake_run(base / "smaller_model" / "ce-resnet8" / "seed1", done=False)
    linked = base / "limited_data" / "ce-resnet8" / "seed0"
    linked.parent.mkdir(parents=True)
    linked.symlink_to(base / "smaller_model" / "ce-resnet8" / "seed0")
    raw = tmp_path / "raw"
    assert results.collect(tmp_path / "runs", raw) == 2
    got = sorted(str(p.relative_to(raw)) for p in raw.rglob("*") if p.is_file())
    assert got == [f"{cell}/ce-resnet8/seed0/{name}" for cell in ("limited_data", "smaller_model")
                   for name in sorted((rundir.CONFIG, rundir.DONE, rundir.MANIFEST, rundir.METRICS))]


def test_a_page_without_markers_is_refused_by_name():
    with pytest.raises(ValueError, match=r"lacks the markers <!-- v2:claims:start --> \.\.\. <!-- v2:claims:end -->"):
        results.with_sections("no markers", {"claims": "x\n"})
