"""The suite's plan (phases, seeds, links between identical configs), its data protocol and its claims."""

from __future__ import annotations

from pathlib import Path

import pytest

from geokt_plugin.experiments import claims, fashion_mnist_specs, plan
from geokt_plugin.experiments.configs import config_document
from geokt_plugin.experiments.matrix import BASELINES, CENTRES, EXTENDED, GRID, KD_EXTENDED, SEEDS, SWEEP, SWEEP_SEED
from geokt_plugin.experiments.scheduler import phase_specs

BASE = "runs/fashion_mnist/theodorakopoulos2021"


def test_students_plan_is_seed_major_and_every_cell_has_five_seeds():
    runs = plan(["students"])
    cells = {r.config for r in runs}
    assert len(runs) == len(cells) * len(SEEDS) and SEEDS == (0, 1, 2, 3, 4)
    assert [r.seed for r in runs[: len(cells)]] == [0] * len(cells)
    instructor = Path(f"{BASE}/instructors/ce-resnet20/seed0/best.pt")
    kd = next(r for r in runs if r.run_dir == Path(f"{BASE}/smaller_model/kd-resnet8_from_resnet20/seed0"))
    assert kd.needs == (instructor,)
    random = next(r for r in runs if "_random-" in str(r.run_dir))
    assert random.needs == ()  # the control's instructor is never trained


def test_phases_use_their_own_seeds():
    assert {r.seed for r in plan(["instructors"])} == {0}
    assert {r.seed for r in plan(["sweep"])} == {SWEEP_SEED}
    assert {r.seed for r in plan(["convergence"])} == {SWEEP_SEED}
    assert {s.experiment for s in phase_specs("sweep")} == {"sweep"}
    with pytest.raises(ValueError, match="unknown phase 'student'; choose one of instructors, sweep, students"):
        phase_specs("student")


def _train_kwargs(spec) -> dict:
    return config_document(spec)[0]["datasets"]["train"].value["init"]["kwargs"]


def test_instructors_train_on_the_reserve_and_students_draw_per_seed():
    for spec in fashion_mnist_specs():
        kw = _train_kwargs(spec)
        assert kw["reserve"] == 5000 and kw["split_seed"] == 0, spec.relpath
        if spec.experiment == "instructors":
            assert (kw["pool"], kw["seed"]) == ("reserve", 0) and "subset_size" not in kw, spec.relpath
        else:
            assert kw["seed"] == "run" and kw["subset_size"] == 1000, spec.relpath
            assert kw["pool"] == ("student+reserve" if spec.method == "ce_reserve" else "student"), spec.relpath
        test = config_document(spec)[0]["datasets"].get("test")
        assert test is None or test.value["init"]["kwargs"] == {"split": "test", **(
            {"classes": list(spec.classes)} if spec.classes else {})}, spec.relpath  # the full test set


def test_sweep_grids_are_three_points_around_the_centre_plus_one_extension_and_kd_six_plus_its_own():
    assert len(SWEEP["kd"]) == 6 + len(KD_EXTENDED) and SWEEP["ce"] == [("base", {})]
    for method, centre in CENTRES.items():
        factors = sorted(GRID + EXTENDED.get(method, ()))
        assert [hp["weight"] for _, hp in SWEEP[method]] == [float(f"{centre * f:.3g}") for f in factors], method
        assert len(EXTENDED.get(method, ())) <= 1  # one extension, beyond the edge the first round chose
    assert set(BASELINES) <= set(CENTRES)


def test_every_claim_names_configs_the_suite_trains():
    trained = {(s.experiment, s.stem) for s in fashion_mnist_specs()}
    for c in claims():
        assert c.a in trained and c.b in trained, c
    kinds = [c.kind for c in claims()]
    assert kinds.count("equivalent") == 1 and len(kinds) == 18


def test_the_random_instructor_control_has_no_checkpoint_but_keeps_the_probe():
    spec = next(s for s in fashion_mnist_specs() if s.method.endswith("_random"))
    doc = config_document(spec)[0]
    assert "src_ckpt" not in doc["models"]["teacher_model"]
    assert doc["geokt_agreement"]["reference"]["src_ckpt"] == f"{BASE}/instructors/ce-resnet20/seed0/best.pt"
