"""The suite's plan (phases, seeds, links between identical configs) and the claim rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from geokt_plugin.experiments import EXTRA_CELLS, plan, verdict
from geokt_plugin.experiments.scheduler import phase_specs


def test_students_plan_is_seed_major_and_links_identical_configs():
    runs = plan(["students"])
    core = [r for r in runs if str(r.config).split("configs/official/")[-1] not in EXTRA_CELLS]
    assert [r.seed for r in core[: len(core) // 3]] == [0] * (len(core) // 3)
    linked = {str(r.run_dir): str(r.same_as.run_dir) for r in runs if r.same_as is not None}
    base = "runs/fashion_mnist/theodorakopoulos2021"
    assert linked[f"{base}/limited_data/ce-resnet8_frac100/seed0"] == f"{base}/smaller_model/ce-resnet8/seed0"
    assert linked[f"{base}/across_architectures/ce-resnet8/seed1"] == f"{base}/smaller_model/ce-resnet8/seed1"
    instructor = Path(f"{base}/instructors/ce-resnet20/seed0/best.pt")
    kd = next(r for r in runs if r.run_dir == Path(f"{base}/smaller_model/kd-resnet8_from_resnet20/seed0"))
    assert kd.needs == (instructor,)


def test_instructor_and_sweep_phases_use_their_own_seeds():
    assert {r.seed for r in plan(["instructors"])} == {0}
    assert {r.seed for r in plan(["sweep"])} == {100}
    assert {s.experiment for s in phase_specs("sweep")} == {"sweep"}
    with pytest.raises(ValueError, match="unknown phase 'student'"):
        phase_specs("student")


@pytest.mark.parametrize(("kind", "d", "se", "n", "expected"), [
    ("better", 1.0, 0.4, 3, "holds"),
    ("better", 0.5, 0.4, 3, "within noise"),
    ("better", -1.0, 0.4, 3, "does not hold"),
    ("matches", -0.5, 0.4, 3, "holds"),
    ("matches", -1.0, 0.4, 3, "does not hold"),
    ("better", 5.0, 0.1, 1, "no verdict: one seed"),
])
def test_claim_verdict_rule(kind: str, d: float, se: float, n: int, expected: str):
    assert verdict(kind, d, se, n, 3) == expected
