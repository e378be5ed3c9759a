"""Pre-registered paired comparisons of training runs: paired t-test, Holm-Bonferroni, TOST and the verdict words.

Seed ``s`` of method A and seed ``s`` of method B saw the same training data, so runs are paired by seed and every
statistic is computed on the per-seed differences ``d_s = a_s - b_s`` (``n`` pairs, ``n - 1`` degrees of freedom).

**The family.** :func:`compare` treats every measured claim of one call as one family and Holm-adjusts one p-value
per claim: the two-sided paired t-test for a ``"better"`` claim, the TOST p for an ``"equivalent"`` claim. Each
``holds`` is a confirmatory claim, so all of them share the family-wise error rate ``alpha`` (the usual rule for
pre-registered superiority and equivalence hypotheses); the TOST itself needs no adjustment for its two one-sided
tests (it is an intersection-union test).
"""

from __future__ import annotations

import csv
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from scipy import stats as _st

__all__ = ["KINDS", "Comparison", "PairedResult", "compare", "comparisons_markdown", "holm", "paired_difference",
           "tost", "verdict"]

KINDS = ("better", "equivalent")


@dataclass(frozen=True)
class PairedResult:
    """Paired comparison of A and B over the ``n`` seeds both have (means over those seeds only).

    ``p_holm`` is the Holm-adjusted p of the claim's own test (t-test for ``"better"``, TOST for ``"equivalent"``);
    ``tost_p`` is the raw TOST p (None without a margin); both and ``verdict`` are filled by :func:`compare`.
    """

    n: int
    mean_a: float
    mean_b: float
    diff: float
    sd_diff: float
    ci_low: float
    ci_high: float
    p: float
    level: float = 0.95
    p_holm: float | None = None
    tost_p: float | None = None
    verdict: str = ""


@dataclass(frozen=True)
class Comparison:
    """A pre-registered claim about A = ``(experiment, config)`` against B; ``margin`` only for ``"equivalent"``."""

    claim: str
    a: tuple[str, str]
    b: tuple[str, str]
    kind: str
    margin: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        _check_kind(f"Comparison {self.claim!r}", self.kind, self.margin)


def _check_kind(where: str, kind: str, margin: float | None) -> None:
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; choose one of {list(KINDS)}.")
    if kind == "equivalent" and (margin is None or not math.isfinite(margin) or margin <= 0):
        raise ValueError(f"{where}: kind 'equivalent' needs a margin > 0 (got {margin!r}); pass margin=0.5 for "
                         "'A within ±0.5 of B'.")
    if kind == "better" and margin is not None:
        raise ValueError(f"{where}: margin={margin!r} applies only to kind 'equivalent'; drop it for 'better'.")


def _mean_sd(diffs: Sequence[float], where: str) -> tuple[int, float, float]:
    n = len(diffs)
    if n < 2:
        raise ValueError(f"{where}: needs at least 2 paired differences, got {n}.")
    return n, statistics.fmean(diffs), statistics.stdev(diffs)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], *, level: float = 0.95,
                      margin: float | None = None) -> PairedResult:
    """Paired t statistics of ``d_s = a_s - b_s`` over the seeds ``s`` in both ``a`` and ``b``.

    ``diff = mean(d)``, ``sd_diff = sd(d)`` (``n - 1`` denominator), ``se = sd_diff / sqrt(n)``, ``t = diff / se``,
    ``p = 2 * P(T_{n-1} >= |t|)``, interval ``diff ± t_{n-1}((1 + level) / 2) * se``. Degenerate ``sd_diff = 0``
    (every seed differs by the same amount): the interval is the point ``[diff, diff]`` and ``p = 0`` when
    ``diff != 0``, ``p = 1`` when every difference is 0. With ``margin``, ``tost_p = tost(d, margin)``.

    Raises:
        ValueError: fewer than 2 common seeds (the message names the unpaired ones), a non-finite value, or
            ``level`` outside (0, 1).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"paired_difference: level must lie in (0, 1), got {level!r}; e.g. level=0.95.")
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        raise ValueError(f"paired_difference: {len(seeds)} seed(s) {seeds} present on both sides, need at least 2; "
                         f"seeds only in A: {sorted(set(a) - set(b))}, only in B: {sorted(set(b) - set(a))}. "
                         "Run the missing seeds.")
    bad = [s for s in seeds if not (math.isfinite(a[s]) and math.isfinite(b[s]))]
    if bad:
        raise ValueError(f"paired_difference: non-finite value at seed(s) {bad}; drop or rerun those runs.")
    diffs = [a[s] - b[s] for s in seeds]
    n, diff, sd = _mean_sd(diffs, "paired_difference")
    if sd == 0.0:
        low = high = diff
        p = 1.0 if all(d == 0.0 for d in diffs) else 0.0
    else:
        se = sd / math.sqrt(n)
        half = float(_st.t.ppf((1.0 + level) / 2.0, n - 1)) * se
        low, high = diff - half, diff + half
        p = float(min(1.0, 2.0 * _st.t.sf(abs(diff / se), n - 1)))
    return PairedResult(n=n, mean_a=statistics.fmean(a[s] for s in seeds), mean_b=statistics.fmean(b[s] for s in seeds),
                        diff=diff, sd_diff=sd, ci_low=low, ci_high=high, p=p, level=level,
                        tost_p=None if margin is None else tost(diffs, margin))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With ``p_(1) <= ... <= p_(m)`` sorted: ``p~_(i) = min(1, max_{j <= i} (m - j + 1) * p_(j))``. Rejecting
    ``p~ < alpha`` controls the family-wise error rate at ``alpha``.
    """
    bad = [p for p in pvalues if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"holm: p-values must lie in [0, 1], got {bad}.")
    m = len(pvalues)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda k: pvalues[k])):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def tost(diffs: Sequence[float], margin: float) -> float:
    """Two one-sided t-tests of equivalence, ``H0: |mean(d)| >= margin``; small p means ``-margin < mean < margin``.

    ``p_low = P(T_{n-1} >= (mean + margin) / se)``, ``p_high = P(T_{n-1} <= (mean - margin) / se)``,
    ``p = max(p_low, p_high)``. ``p < alpha`` exactly when the ``1 - 2 alpha`` t interval lies inside
    ``(-margin, margin)``. Degenerate ``sd = 0``: ``p = 0`` if ``|mean| < margin``, else 1.
    """
    if not (math.isfinite(margin) and margin > 0):
        raise ValueError(f"tost: margin must be a finite number > 0, got {margin!r}.")
    n, mean, sd = _mean_sd(diffs, "tost")
    if sd == 0.0:
        return 0.0 if abs(mean) < margin else 1.0
    se = sd / math.sqrt(n)
    return float(max(_st.t.sf((mean + margin) / se, n - 1), _st.t.cdf((mean - margin) / se, n - 1)))


def verdict(result: PairedResult, kind: str, *, alpha: float = 0.05, margin: float | None = None) -> str:
    """The words for a claim, from its Holm-adjusted p (``result.p_holm``) and, for equivalence, the raw p.

    ``"better"`` (A > B claimed): ``holds`` if ``p_holm < alpha`` and ``diff > 0``; ``reversed`` if
    ``p_holm < alpha`` and ``diff < 0``; else ``not shown``. ``"equivalent"`` (A within ±margin of B):
    ``holds`` if ``p_holm`` (the adjusted TOST p) ``< alpha``; else ``A worse`` / ``A better`` if the ordinary
    two-sided test gives ``p < alpha`` (the ``1 - alpha`` interval excludes 0; this refutes the claim and is not
    multiplicity-adjusted) with ``diff`` below / above 0; else ``not shown``. ``not shown`` never means "equal".
    """
    _check_kind("verdict", kind, margin)
    if result.p_holm is None:
        raise ValueError("verdict: result.p_holm is None; Holm-adjust the family first (compare() does).")
    if kind == "equivalent" and result.tost_p is None:
        raise ValueError("verdict: kind 'equivalent' needs result.tost_p; call paired_difference(..., margin=...).")
    if kind == "better":
        if result.p_holm < alpha and result.diff != 0.0:
            return "holds" if result.diff > 0 else "reversed"
        return "not shown"
    if result.p_holm < alpha:
        return "holds"
    if result.p < alpha and result.diff != 0.0:
        return "A better" if result.diff > 0 else "A worse"
    return "not shown"


def _read_runs(runs_csv: Path, metric: str) -> dict[tuple[str, str], dict[int, float]]:
    """``{(experiment, config): {seed: metric}}`` from the finished rows with a value for ``metric``."""
    with runs_csv.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        missing = [c for c in ("experiment", "config", "seed", "finished", metric) if c not in header]
        if missing:
            raise ValueError(f"{runs_csv}: no column(s) {missing} (header: {reader.fieldnames}); expected the "
                             "runs.csv written by geokt-compare.")
        runs: dict[tuple[str, str], dict[int, float]] = {}
        for line, row in enumerate(reader, start=2):
            if row["finished"] != "True" or not row[metric]:
                continue
            cell = runs.setdefault((row["experiment"], row["config"]), {})
            seed = int(row["seed"])
            if seed in cell:
                raise ValueError(f"{runs_csv}:{line}: seed {seed} of {row['experiment']}/{row['config']} appears "
                                 "twice among the finished runs; keep one run per seed.")
            cell[seed] = float(row[metric])
    return runs


def compare(runs_csv: Path, comparisons: Sequence[Comparison], *, metric: str = "test_acc", level: float = 0.95,
            alpha: float = 0.05) -> list[tuple[Comparison, PairedResult | None]]:
    """One :class:`PairedResult` per comparison from a ``geokt-compare`` ``runs.csv``, Holm-adjusted and judged.

    Only rows with ``finished == "True"`` and a ``metric`` value count. A side with no such rows gives None (not
    measured, outside the family). The family is every measured comparison of this call (module docstring).

    Raises:
        ValueError: a missing column, a seed twice in one cell, or a comparison with fewer than 2 paired seeds.
    """
    runs = _read_runs(Path(runs_csv), metric)
    raw: list[PairedResult | None] = []
    for c in comparisons:
        a, b = runs.get(tuple(c.a), {}), runs.get(tuple(c.b), {})
        if not a or not b:
            raw.append(None)
            continue
        try:
            raw.append(paired_difference(a, b, level=level, margin=c.margin))
        except ValueError as err:
            raise ValueError(f"compare: claim {c.claim!r} ({'/'.join(c.a)} vs {'/'.join(c.b)}): {err}") from None
    family = [(i, r) for i, r in enumerate(raw) if r is not None]
    own_p = [r.tost_p if comparisons[i].kind == "equivalent" and r.tost_p is not None else r.p for i, r in family]
    adjusted = dict(zip((i for i, _ in family), holm(own_p), strict=True))
    out: list[tuple[Comparison, PairedResult | None]] = []
    for i, (c, r) in enumerate(zip(comparisons, raw, strict=True)):
        if r is not None:
            r = replace(r, p_holm=adjusted[i])
            r = replace(r, verdict=verdict(r, c.kind, alpha=alpha, margin=c.margin))
        out.append((c, r))
    return out


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:#.3g}"


def comparisons_markdown(results: Sequence[tuple[Comparison, PairedResult | None]]) -> str:
    """Markdown table of :func:`compare`'s results (two decimals, p to 3 significant digits), legend and notes."""
    levels = {r.level for _, r in results if r is not None}
    if len(levels) > 1:
        raise ValueError(f"comparisons_markdown: results at several levels {sorted(levels)}; use one level.")
    level = f"{(levels.pop() if levels else 0.95) * 100:g} %"
    lines = [f"| claim | A | B | n | A mean | B mean | A − B [{level} CI] | p (Holm) | verdict |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for c, r in results:
        a, b = f"`{'/'.join(c.a)}`", f"`{'/'.join(c.b)}`"
        if r is None:
            lines.append(f"| {c.claim} | {a} | {b} | 0 | – | – | – | – | not measured |")
            continue
        words = r.verdict + (f" (±{c.margin:.2f})" if c.kind == "equivalent" else "")
        lines.append(f"| {c.claim} | {a} | {b} | {r.n} | {r.mean_a:.2f} | {r.mean_b:.2f} | {r.diff:+.2f} "
                     f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}] | {'–' if r.p_holm is None else _p(r.p_holm)} | "
                     f"{words} |")
    m = sum(r is not None for _, r in results)
    lines += ["", f"n: seeds run on both sides, paired by seed (means over those seeds). p (Holm): Holm-Bonferroni "
              f"over the {m} measured claims; the two-sided paired t-test for a superiority claim, the TOST within "
              "±margin for an equivalence claim. \"not shown\" is no evidence of equality."]
    lines += [f"- {c.claim}: {c.note}" for c, _ in results if c.note]
    return "\n".join(lines) + "\n"
