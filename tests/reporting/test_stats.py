"""Paired comparisons: every number against scipy.stats and hand-worked values, the verdict rules, compare() on a
small runs.csv, the Markdown table and every error message."""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

import pytest
from scipy import stats as st

from geokt_plugin.reporting.stats import (
    Comparison,
    PairedResult,
    compare,
    comparisons_markdown,
    holm,
    paired_difference,
    tost,
    verdict,
)
from geokt_plugin.reporting.tables import RUN_FIELDS

A5 = {0: 74.15, 1: 73.30, 2: 74.55, 3: 72.90, 4: 75.05}
B5 = {0: 71.45, 1: 72.10, 2: 72.95, 3: 72.80, 4: 73.20}


def holm_reference(pvalues: list[float]) -> list[float]:
    """Naive Holm: p~_i = max over p_j <= p_i of min(1, (m - #{k: p_k < p_j}) * p_j)."""
    m = len(pvalues)
    return [max(min(1.0, (m - sum(pk < pj for pk in pvalues)) * pj) for pj in pvalues if pj <= pi) for pi in pvalues]


def holm_step_down(pvalues: list[float], alpha: float) -> set[int]:
    """Holm's sequential procedure: reject p_(k) while p_(k) <= alpha / (m - k + 1), stop at the first failure."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    rejected: set[int] = set()
    for k, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - k):
            break
        rejected.add(i)
    return rejected


def tost_reference(diffs: list[float], margin: float) -> float:
    low = st.ttest_1samp(diffs, -margin, alternative="greater").pvalue
    high = st.ttest_1samp(diffs, margin, alternative="less").pvalue
    return float(max(low, high))


# ---------------------------------------------------------------- paired_difference


@pytest.mark.parametrize("level", [0.95, 0.9, 0.99])
def test_paired_difference_matches_scipy(level: float) -> None:
    a, b = [A5[s] for s in range(5)], [B5[s] for s in range(5)]
    d = [x - y for x, y in zip(a, b, strict=True)]
    r = paired_difference(A5, B5, level=level)
    ref = st.ttest_rel(a, b)
    se = st.tstd(d) / math.sqrt(5)
    half = st.t.ppf((1 + level) / 2, 4) * se
    assert r.n == 5 and r.level == level
    assert r.mean_a == pytest.approx(sum(a) / 5, abs=1e-12) and r.mean_b == pytest.approx(sum(b) / 5, abs=1e-12)
    assert r.diff == pytest.approx(sum(d) / 5, abs=1e-12)
    assert r.sd_diff == pytest.approx(st.tstd(d), rel=1e-12)
    assert r.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert (r.ci_low, r.ci_high) == pytest.approx((r.diff - half, r.diff + half), rel=1e-12)
    ci = ref.confidence_interval(confidence_level=level)
    assert (r.ci_low, r.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert r.p_holm is None and r.tost_p is None and r.verdict == ""


def test_paired_difference_hand_worked() -> None:
    # d = [2, 3, 4]: mean 3, sd 1, se = 1/sqrt(3), t = 3 sqrt(3), df = 2. For df = 2 the t CDF is
    # 1/2 + t / (2 sqrt(t^2 + 2)), so p = 1 - t / sqrt(t^2 + 2) = 1 - sqrt(27/29), and t_{0.975} solves
    # t / sqrt(t^2 + 2) = 0.95: t^2 = 2 * 0.9025 / 0.0975, half-width = t_{0.975} / sqrt(3).
    r = paired_difference({0: 3.0, 1: 5.0, 2: 7.0}, {0: 1.0, 1: 2.0, 2: 3.0})
    half = math.sqrt(2 * 0.9025 / 0.0975) / math.sqrt(3)
    assert (r.n, r.mean_a, r.mean_b, r.diff, r.sd_diff) == (3, 5.0, 2.0, 3.0, 1.0)
    assert r.p == pytest.approx(1 - math.sqrt(27 / 29), rel=1e-12)
    assert (r.ci_low, r.ci_high) == pytest.approx((3 - half, 3 + half), rel=1e-12)
    assert half == pytest.approx(2.48414, abs=1e-5)


def test_paired_difference_pairs_by_seed_only() -> None:
    a = {0: 3.0, 1: 5.0, 2: 7.0, 3: 100.0, 4: -50.0}
    b = {2: 3.0, 0: 1.0, 1: 2.0, 9: 0.0}
    r = paired_difference(a, b)
    assert (r.n, r.mean_a, r.mean_b, r.diff) == (3, 5.0, 2.0, 3.0)  # seeds 3, 4 and 9 have no partner


def test_paired_difference_degenerate() -> None:
    same_gap = paired_difference({0: 3.0, 1: 4.0, 2: 5.5}, {0: 1.0, 1: 2.0, 2: 3.5})
    assert (same_gap.sd_diff, same_gap.p, same_gap.ci_low, same_gap.ci_high) == (0.0, 0.0, 2.0, 2.0)
    equal = paired_difference({0: 3.0, 1: 4.0}, {0: 3.0, 1: 4.0})
    assert (equal.diff, equal.sd_diff, equal.p, equal.ci_low, equal.ci_high) == (0.0, 0.0, 1.0, 0.0, 0.0)


def test_paired_difference_margin_gives_tost() -> None:
    d = [A5[s] - B5[s] for s in range(5)]
    assert paired_difference(A5, B5, margin=2.0).tost_p == pytest.approx(tost_reference(d, 2.0), rel=1e-10)


def test_paired_difference_errors() -> None:
    with pytest.raises(ValueError, match=r"paired_difference: 1 seed\(s\) \[1\] present on both sides, need at least "
                       r"2; seeds only in A: \[0\], only in B: \[5, 6\]\. Run the missing seeds\."):
        paired_difference({0: 1.0, 1: 2.0}, {1: 1.0, 5: 2.0, 6: 3.0})
    with pytest.raises(ValueError, match=r"0 seed\(s\) \[\] present on both sides.*only in A: \[\], only in B: \[\]"):
        paired_difference({}, {})
    with pytest.raises(ValueError, match=r"paired_difference: non-finite value at seed\(s\) \[1\]; drop or rerun"):
        paired_difference({0: 1.0, 1: math.nan}, {0: 1.0, 1: 2.0})
    for level in (0.0, 1.0, 95.0):
        with pytest.raises(ValueError, match=r"paired_difference: level must lie in \(0, 1\), got .*level=0\.95"):
            paired_difference(A5, B5, level=level)


# ---------------------------------------------------------------- holm


def test_holm_hand_computed() -> None:
    # sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> running max 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm([0.5, 0.6]) == [1.0, 1.0]  # 0.5 x 2 capped at 1, then monotone
    assert holm([0.02, 0.02]) == [0.04, 0.04]
    assert holm([0.2]) == [0.2] and holm([]) == []


def test_holm_matches_reference_and_step_down() -> None:
    rng = random.Random(0)
    for _ in range(50):
        ps = [rng.random() ** 3 for _ in range(rng.randint(1, 8))]
        adjusted = holm(ps)
        assert adjusted == pytest.approx(holm_reference(ps), abs=1e-15)
        assert all(p <= q <= 1.0 for p, q in zip(ps, adjusted, strict=True))
        for alpha in (0.001, 0.01, 0.05, 0.1, 0.3):
            assert {i for i, q in enumerate(adjusted) if q <= alpha} == holm_step_down(ps, alpha)


def test_holm_errors() -> None:
    with pytest.raises(ValueError, match=r"holm: p-values must lie in \[0, 1\], got \[1\.5, nan\]\."):
        holm([0.1, 1.5, math.nan])


# ---------------------------------------------------------------- tost


@pytest.mark.parametrize(("diffs", "margin"), [([0.1, -0.2, 0.05, 0.3, -0.1], 0.5), ([0.1, -0.2, 0.05], 0.1),
                                               ([1.0, 1.2, 0.9, 1.1], 1.0), ([-3.0, 2.0, 0.5], 10.0)])
def test_tost_matches_two_one_sided_tests(diffs: list[float], margin: float) -> None:
    assert tost(diffs, margin) == pytest.approx(tost_reference(diffs, margin), rel=1e-10)


def test_tost_equals_interval_inclusion() -> None:
    # p < alpha exactly when the 1 - 2 alpha interval lies inside (-margin, margin)
    diffs = [0.1, -0.2, 0.05, 0.3, -0.1]
    n, mean, se = 5, sum(diffs) / 5, st.tstd(diffs) / math.sqrt(5)
    half = st.t.ppf(0.95, n - 1) * se
    for margin in (0.2, 0.3, mean + half - 1e-9, mean + half + 1e-9, 0.5):
        assert (tost(diffs, margin) < 0.05) == (-margin < mean - half and mean + half < margin)


def test_tost_degenerate() -> None:
    assert tost([0.25, 0.25], 0.5) == 0.0
    assert tost([0.5, 0.5], 0.5) == 1.0
    assert tost([-0.75, -0.75, -0.75], 0.5) == 1.0


def test_tost_errors() -> None:
    for margin in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"tost: margin must be a finite number > 0, got "):
            tost([0.1, 0.2], margin)
    with pytest.raises(ValueError, match=r"tost: needs at least 2 paired differences, got 1\."):
        tost([0.1], 0.5)


# ---------------------------------------------------------------- verdict


def result(diff: float, p: float, p_holm: float | None, tost_p: float | None = None) -> PairedResult:
    return PairedResult(n=5, mean_a=70 + diff, mean_b=70.0, diff=diff, sd_diff=1.0, ci_low=diff - 1, ci_high=diff + 1,
                        p=p, p_holm=p_holm, tost_p=tost_p)


@pytest.mark.parametrize(("diff", "p", "p_holm", "words"), [
    (1.5, 0.001, 0.004, "holds"),
    (-1.5, 0.001, 0.004, "reversed"),
    (1.5, 0.01, 0.2, "not shown"),  # significant alone, not after Holm
    (-1.5, 0.01, 0.2, "not shown"),
    (1.5, 0.05, 0.05, "not shown"),  # p_holm < alpha is strict
])
def test_verdict_better(diff: float, p: float, p_holm: float, words: str) -> None:
    assert verdict(result(diff, p, p_holm), "better") == words


@pytest.mark.parametrize(("diff", "p", "p_holm", "words"), [
    (0.1, 0.8, 0.01, "holds"),
    (-1.5, 0.01, 0.7, "A worse"),
    (1.5, 0.01, 0.7, "A better"),
    (0.1, 0.8, 0.3, "not shown"),
    (0.1, 0.8, 0.05, "not shown"),
])
def test_verdict_equivalent(diff: float, p: float, p_holm: float, words: str) -> None:
    assert verdict(result(diff, p, p_holm, tost_p=p_holm), "equivalent", margin=0.5) == words


def test_verdict_alpha() -> None:
    assert verdict(result(1.5, 0.001, 0.02), "better", alpha=0.01) == "not shown"
    assert verdict(result(1.5, 0.001, 0.02), "better", alpha=0.1) == "holds"


def test_verdict_errors() -> None:
    with pytest.raises(ValueError, match=r"verdict: unknown kind 'worse'; choose one of \['better', 'equivalent'\]\."):
        verdict(result(1.0, 0.1, 0.1), "worse")
    with pytest.raises(ValueError, match=r"verdict: kind 'equivalent' needs a margin > 0 \(got None\); pass margin="):
        verdict(result(1.0, 0.1, 0.1, 0.1), "equivalent")
    with pytest.raises(ValueError, match=r"verdict: margin=0\.5 applies only to kind 'equivalent'; drop it"):
        verdict(result(1.0, 0.1, 0.1), "better", margin=0.5)
    with pytest.raises(ValueError, match=r"verdict: result\.p_holm is None; Holm-adjust the family first"):
        verdict(result(1.0, 0.1, None), "better")
    with pytest.raises(ValueError, match=r"verdict: kind 'equivalent' needs result\.tost_p; call paired_difference"):
        verdict(result(1.0, 0.1, 0.1), "equivalent", margin=0.5)


def test_comparison_errors() -> None:
    with pytest.raises(ValueError, match=r"Comparison 'x': unknown kind 'same'; choose one of"):
        Comparison("x", ("e", "a"), ("e", "b"), "same")
    with pytest.raises(ValueError, match=r"Comparison 'x': kind 'equivalent' needs a margin > 0 \(got -1\.0\)"):
        Comparison("x", ("e", "a"), ("e", "b"), "equivalent", margin=-1.0)
    with pytest.raises(ValueError, match=r"Comparison 'x': margin=1\.0 applies only to kind 'equivalent'"):
        Comparison("x", ("e", "a"), ("e", "b"), "better", margin=1.0)


# ---------------------------------------------------------------- compare

CE = [70.0, 71.0, 72.0, 73.0, 74.0]
KD = [72.1, 72.9, 74.2, 75.0, 76.1]
FITNETS = [70.1, 70.9, 72.05, 72.95, 74.0]
AT = {0: 69.5, 1: 71.2, 2: 71.0, 7: 99.0}


def write_runs(path: Path, rows: list[tuple[str, int, float | None, bool]]) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(RUN_FIELDS)
        for config, seed, test, finished in rows:
            writer.writerow(["e", config, config.split("-")[0], "1", seed, f"runs/e/{config}/seed{seed}", 8, "70.0000",
                             "71.0000", "" if test is None else f"{test:.4f}", "60.0", "100.0", finished])
    return path


@pytest.fixture()
def runs_csv(tmp_path: Path) -> Path:
    rows = [("ce-r8", s, v, True) for s, v in enumerate(CE)] + [("ce-r8", 5, None, True)]  # finished, no test
    rows += [("kd-r8", s, v, True) for s, v in enumerate(KD)] + [("kd-r8", 2, 10.0, False), ("kd-r8", 5, 50.0, False)]
    rows += [("fitnets-r8", s, v, True) for s, v in enumerate(FITNETS)]
    rows += [("at-r8", s, v, True) for s, v in AT.items()] + [("at-r8", 3, 10.0, False)]
    rows += [("geo-r8", 0, 99.0, False)]
    return write_runs(tmp_path / "runs.csv", rows)


CLAIMS = [Comparison("KD beats CE", ("e", "kd-r8"), ("e", "ce-r8"), "better"),
          Comparison("AT beats CE", ("e", "at-r8"), ("e", "ce-r8"), "better"),
          Comparison("GeoKT beats CE", ("e", "geo-r8"), ("e", "ce-r8"), "better", note="geo runs still going"),
          Comparison("FitNets matches CE", ("e", "fitnets-r8"), ("e", "ce-r8"), "equivalent", margin=0.5),
          Comparison("KD matches AT", ("e", "kd-r8"), ("e", "at-r8"), "equivalent", margin=1.0)]


def test_compare_numbers_family_and_verdicts(runs_csv: Path) -> None:
    out = compare(runs_csv, CLAIMS)
    assert [c for c, _ in out] == CLAIMS
    kd, at, geo, fit, kd_at = (r for _, r in out)
    assert geo is None  # only an unfinished run: not measured, outside the family
    at3 = [AT[s] for s in range(3)]  # seed 7 has no CE partner, seed 3 is unfinished
    pairs = {"kd": (KD, CE), "at": (at3, CE[:3]), "fit": (FITNETS, CE), "kd_at": (KD[:3], at3)}
    for r, (a, b) in zip((kd, at, fit, kd_at), pairs.values(), strict=True):
        assert r.n == len(a) and r.mean_a == pytest.approx(sum(a) / len(a))
        assert r.mean_b == pytest.approx(sum(b) / len(b))
        assert r.p == pytest.approx(st.ttest_rel(a, b).pvalue, rel=1e-9)
    fit_d = [x - y for x, y in zip(FITNETS, CE, strict=True)]
    kd_at_d = [x - y for x, y in zip(KD[:3], at3, strict=True)]
    assert fit.tost_p == pytest.approx(tost_reference(fit_d, 0.5), rel=1e-9)
    assert kd_at.tost_p == pytest.approx(tost_reference(kd_at_d, 1.0), rel=1e-9)
    assert kd.tost_p is None and at.tost_p is None
    family = [kd.p, at.p, fit.tost_p, kd_at.tost_p]  # each claim's own test, Holm over the 4 measured claims
    assert [kd.p_holm, at.p_holm, fit.p_holm, kd_at.p_holm] == pytest.approx(holm_reference(family), rel=1e-12)
    assert [kd.verdict, at.verdict, fit.verdict, kd_at.verdict] == ["holds", "not shown", "holds", "A better"]


def test_compare_other_metric_and_missing_sides(tmp_path: Path) -> None:
    path = write_runs(tmp_path / "runs.csv", [("ce-r8", 0, 70.0, True), ("ce-r8", 1, 71.0, True)])
    claim = Comparison("x", ("e", "ce-r8"), ("other", "ce-r8"), "better")
    assert compare(path, [claim]) == [(claim, None)]
    [(_, r)] = compare(path, [Comparison("y", ("e", "ce-r8"), ("e", "ce-r8"), "better")], metric="best_val")
    assert (r.n, r.diff, r.p, r.p_holm, r.verdict) == (2, 0.0, 1.0, 1.0, "not shown")
    assert compare(path, []) == []


def test_compare_errors(tmp_path: Path, runs_csv: Path) -> None:
    claim = Comparison("AT beats KD", ("e", "at-r8"), ("e", "kd-r8"), "better")
    short = write_runs(tmp_path / "short.csv", [("at-r8", 0, 70.0, True), ("kd-r8", 0, 71.0, True),
                                                ("kd-r8", 1, 72.0, True), ("at-r8", 4, 60.0, True)])
    with pytest.raises(ValueError, match=r"compare: claim 'AT beats KD' \(e/at-r8 vs e/kd-r8\): paired_difference: 1 "
                       r"seed\(s\) \[0\] present on both sides, need at least 2; seeds only in A: \[4\], only in B: "
                       r"\[1\]"):
        compare(short, [claim])
    twice = write_runs(tmp_path / "twice.csv", [("at-r8", 0, 70.0, True), ("at-r8", 0, 71.0, True)])
    with pytest.raises(ValueError, match=r"twice\.csv:3: seed 0 of e/at-r8 appears twice among the finished runs; "
                       r"keep one run per seed\."):
        compare(twice, [claim])
    with pytest.raises(ValueError, match=r"runs\.csv: no column\(s\) \['top5'\] \(header: \['experiment', .*\]\); "
                       r"expected the runs\.csv written by geokt-compare\."):
        compare(runs_csv, [claim], metric="top5")


# ---------------------------------------------------------------- markdown


def test_comparisons_markdown_exact() -> None:
    better = Comparison("KD beats CE", ("smaller_model", "kd-resnet8"), ("smaller_model", "ce-resnet8"), "better",
                        note="pre-registered in the plan")
    equiv = Comparison("AT matches KD", ("e", "at"), ("e", "kd"), "equivalent", margin=0.5)
    strong = Comparison("KD beats AT", ("e", "kd"), ("e", "at"), "better")
    missing = Comparison("GeoKT beats CE", ("e", "geo"), ("e", "ce"), "better")
    results = [
        (better, PairedResult(5, 74.456, 72.1, 2.356, 0.5, 1.7351, 2.9769, 0.004, p_holm=0.0123456, verdict="holds")),
        (equiv, PairedResult(3, 72.0, 72.3, -0.3, 0.2, -0.797, 0.197, 0.1, p_holm=0.5, tost_p=0.25,
                             verdict="not shown")),
        (strong, PairedResult(5, 75.0, 70.0, 5.0, 0.1, 4.9, 5.1, 1e-6, p_holm=0.0004, verdict="holds")),
        (missing, None),
    ]
    assert comparisons_markdown(results) == (
        "| claim | A | B | n | A mean | B mean | A − B [95 % CI] | p (Holm) | verdict |\n"
        "|---|---|---|---:|---:|---:|---:|---:|---|\n"
        "| KD beats CE | `smaller_model/kd-resnet8` | `smaller_model/ce-resnet8` | 5 | 74.46 | 72.10 | +2.36 "
        "[+1.74, +2.98] | 0.0123 | holds |\n"
        "| AT matches KD | `e/at` | `e/kd` | 3 | 72.00 | 72.30 | -0.30 [-0.80, +0.20] | 0.500 | not shown (±0.50) |\n"
        "| KD beats AT | `e/kd` | `e/at` | 5 | 75.00 | 70.00 | +5.00 [+4.90, +5.10] | <0.001 | holds |\n"
        "| GeoKT beats CE | `e/geo` | `e/ce` | 0 | – | – | – | – | not measured |\n"
        "\n"
        "n: seeds run on both sides, paired by seed (means over those seeds). p (Holm): Holm-Bonferroni over the 3 "
        "measured claims; the two-sided paired t-test for a superiority claim, the TOST within ±margin for an "
        "equivalence claim. \"not shown\" is no evidence of equality.\n"
        "- KD beats CE: pre-registered in the plan\n"
    )


def test_comparisons_markdown_level_and_errors(runs_csv: Path) -> None:
    claim = Comparison("KD beats CE", ("e", "kd-r8"), ("e", "ce-r8"), "better")
    table = comparisons_markdown(compare(runs_csv, [claim], level=0.9))
    assert "| A − B [90 % CI] |" in table.splitlines()[0]
    assert table.splitlines()[2].endswith("| holds |")
    mixed = compare(runs_csv, [claim]) + compare(runs_csv, [claim], level=0.9)
    with pytest.raises(ValueError, match=r"comparisons_markdown: results at several levels \[0\.9, 0\.95\]; use one"):
        comparisons_markdown(mixed)
    assert comparisons_markdown([]).splitlines()[0].endswith("| A − B [95 % CI] | p (Holm) | verdict |")
