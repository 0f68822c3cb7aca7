"""Paired comparisons for the ablation study: the same seeds run with and without a component.

Pairs are matched by position (or by seed in `effect_table`); a pair counts only where both
values are finite, so a diverged run (NaN metric) drops out with its partner and the number
dropped is reported. The difference is always `a − b` (in `effect_table`: variant − baseline,
so for an error metric a positive difference means removing the component made things worse).

Undefined statistics are never silent NaN: they come back as None with a `*_reason` field
(fewer than 2 pairs, or every difference equal so that the spread is 0).

Holm (statsmodels) runs over one family of every test of a study (`adjust_family`); the
bootstrap is scipy's. `resolving_power` says what a design of n pairs and m tests can show at
all: a handful of seeds cannot make an exact Wilcoxon significant, whatever the effect.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05


def _pairs(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray, int]:
    """float64 a, b with every pair holding a non-finite value removed, and how many were removed."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have the same length, got {x.size} and {y.size}")
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep], int(x.size - keep.sum())


def _finite_diffs(diffs: Any) -> np.ndarray:
    d = np.asarray(diffs, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise ValueError(f"need at least 2 finite paired differences, got {d.size}")
    return d


def cohens_d_paired(a: Any, b: Any) -> float:
    """Cohen's d for paired samples (d_z): mean(a − b) / std(a − b, ddof=1), dimensionless.

    Positive when a is larger. Non-finite pairs are dropped; fewer than 2 left is a ValueError.
    Every difference equal (spread 0): 0.0 if they are all 0, else ±inf (a shift with no noise).
    """
    x, y, _ = _pairs(a, b)
    d = _finite_diffs(x - y)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    if sd == 0.0:
        return 0.0 if mean == 0.0 else math.copysign(math.inf, mean)
    return mean / sd


def holm_bonferroni(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given (statsmodels `multipletests`,
    method "holm").

    Sorted ascending p_(1) ≤ … ≤ p_(m): adj_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)) —
    monotone in the sorted order and capped at 1. Reject at level α where adj ≤ α (controls the
    family-wise error rate).
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(list(pvalues), dtype=np.float64)
    if p.ndim != 1:
        raise ValueError("pvalues must be a flat sequence")
    if p.size == 0:
        return []
    if not (np.isfinite(p) & (p >= 0.0) & (p <= 1.0)).all():
        raise ValueError(f"p-values must be finite and in [0, 1], got {p.tolist()}")
    return [float(v) for v in multipletests(p, alpha=ALPHA, method="holm")[1]]


def bootstrap_ci(diffs: Any, confidence: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of `diffs` (same units), by
    `scipy.stats.bootstrap` (method "percentile").

    n_boot resamples of the finite differences with replacement, seeded (numpy default_rng):
    the same inputs and seed give the same interval. Every difference equal: that value at both
    ends. Fewer than 2 finite values is a ValueError.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    d = _finite_diffs(diffs)
    if np.all(d == d[0]):  # no spread to resample (scipy would warn of degenerate data)
        return float(d[0]), float(d[0])
    ci = stats.bootstrap((d,), np.mean, confidence_level=confidence, n_resamples=n_boot, method="percentile",
                         vectorized=True, rng=np.random.default_rng(seed)).confidence_interval
    return float(ci.low), float(ci.high)


def compare_paired(a: Any, b: Any, names: Sequence[str] = ("a", "b"), seed: int = 0) -> dict[str, Any]:
    """Every paired statistic of a against b, as a JSON-ready dict.

    Keys: names, n (pairs used), n_dropped (non-finite pairs), mean_a, mean_b, mean_diff (a − b),
    ci_low, ci_high (95 % percentile bootstrap of mean_diff, `seed`), t, p_t (scipy ttest_rel),
    wilcoxon, p_wilcoxon (scipy wilcoxon signed-rank; zero differences dropped, Wilcoxon's rule),
    cohens_d; undefined statistics are None with `t_reason` / `wilcoxon_reason` / `reason`.
    """
    x, y, dropped = _pairs(a, b)
    d = x - y
    n = int(d.size)
    row: dict[str, Any] = {"names": [str(names[0]), str(names[1])], "n": n, "n_dropped": dropped,
                           "mean_a": float(x.mean()) if n else None, "mean_b": float(y.mean()) if n else None,
                           "mean_diff": float(d.mean()) if n else None,
                           "ci_low": None, "ci_high": None, "t": None, "p_t": None, "t_reason": None,
                           "wilcoxon": None, "p_wilcoxon": None, "wilcoxon_reason": None,
                           "cohens_d": None, "reason": None}
    if n < 2:
        reason = f"{n} finite pair(s): paired statistics need at least 2"
        row.update(reason=reason, t_reason=reason, wilcoxon_reason=reason)
        return row
    row["ci_low"], row["ci_high"] = bootstrap_ci(d, seed=seed)
    if float(d.std(ddof=1)) == 0.0:
        row["t_reason"] = f"every difference equals {float(d[0]):.6g}: zero spread, the t statistic is undefined"
    else:
        res = stats.ttest_rel(x, y)
        row["t"], row["p_t"] = float(res.statistic), float(res.pvalue)
    if not np.any(d != 0.0):
        row["wilcoxon_reason"] = "every difference is 0: the signed-rank test has no non-zero difference to rank"
    else:
        res = stats.wilcoxon(d)
        row["wilcoxon"], row["p_wilcoxon"] = float(res.statistic), float(res.pvalue)
    effect = cohens_d_paired(x, y)
    if math.isfinite(effect):
        row["cohens_d"] = effect
    else:
        row["reason"] = "every difference is the same non-zero value: Cohen's d is infinite"
    return row


def effect_table(baseline: Mapping[int, float], variants: Mapping[str, Mapping[int, float]],
                 metric: str) -> list[dict[str, Any]]:
    """One row per ablated variant: its `metric` against the full model's, paired by seed.

    baseline: seed -> metric of the full model; variants: component name -> {seed: metric}.
    Only seeds present in both are paired (the others are listed in `unpaired_seeds`); the
    difference is variant − baseline. Each row has the `compare_paired` fields plus `variant`,
    `metric`, `seeds`; `p_holm`, `p_wilcoxon_holm` and `significant` are None / False here and set
    by `adjust_family` over every row of the study (all variants and metrics at once).
    """
    rows: list[dict[str, Any]] = []
    for name, values in variants.items():
        seeds = sorted(set(baseline) & set(values))
        unpaired = sorted(set(baseline) ^ set(values))
        stats_row = compare_paired([values[s] for s in seeds], [baseline[s] for s in seeds],
                                   names=(name, "baseline"))
        rows.append({"variant": name, "metric": metric, "seeds": seeds, "unpaired_seeds": unpaired,
                     **stats_row, "p_holm": None, "p_wilcoxon_holm": None, "significant": False})
    return rows


def adjust_family(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Holm over the whole family of tested rows (every variant × metric given), in place and
    returned: `p_holm` of the t-test p-values, `p_wilcoxon_holm` of the Wilcoxon ones, and
    `significant` (p_holm ≤ ALPHA).

    A row with < 2 pairs is untested (p_holm None) and not in the family; a tested row whose
    statistic is undefined (zero spread, every difference 0) enters with p = 1 — it cannot be
    significant and still counts against the others.
    """
    tested = [r for r in rows if r["n"] >= 2]
    for key, out in (("p_t", "p_holm"), ("p_wilcoxon", "p_wilcoxon_holm")):
        for row, p_adj in zip(tested, holm_bonferroni([1.0 if r[key] is None else r[key] for r in tested])):
            row[out] = p_adj
    for row in tested:
        row["significant"] = row["p_holm"] <= ALPHA
    return rows


def wilcoxon_min_p(pairs: int) -> float:
    """The smallest two-sided p-value the exact Wilcoxon signed-rank test can give with `pairs`
    non-zero differences: every sign alike, 2 · (1/2)^n."""
    if pairs < 1:
        raise ValueError(f"pairs must be >= 1, got {pairs}")
    return 2.0 * 0.5 ** pairs


def detectable_effect(pairs: int, alpha: float, power: float = 0.8) -> float:
    """The smallest paired effect |d_z| = |mean(d)| / sd(d) a two-sided paired t-test at level
    `alpha` detects with probability `power` from `pairs` pairs (noncentral t, n − 1 df)."""
    from scipy.optimize import brentq

    if pairs < 2:
        raise ValueError(f"pairs must be >= 2, got {pairs}")
    df = pairs - 1
    crit = stats.t.ppf(1.0 - alpha / 2.0, df)

    def shortfall(d: float) -> float:
        nc = d * math.sqrt(pairs)
        wrong_side = float(stats.nct.cdf(-crit, df, nc))  # vanishing for d > 0; scipy returns NaN far out
        return float(stats.nct.sf(crit, df, nc)) + (wrong_side if math.isfinite(wrong_side) else 0.0) - power

    high = 1.0
    while shortfall(high) < 0.0:  # widen the bracket
        high *= 2.0
    return float(brentq(shortfall, 1e-9, high))


def resolving_power(pairs: int, tests: int, alpha: float = ALPHA, power: float = 0.8) -> dict[str, Any]:
    """What a design of `pairs` paired seeds and `tests` tests in one Holm family can resolve.

    Holm's most lenient step is alpha / tests (the smallest p), so: the exact Wilcoxon's smallest p
    (`wilcoxon_min_p`) and that times `tests` (its smallest Holm-adjusted p), whether it can reach
    `alpha` at all, and the smallest |d_z| the t-test detects at alpha / tests with `power`."""
    if tests < 1:
        raise ValueError(f"tests must be >= 1, got {tests}")
    low = wilcoxon_min_p(pairs)
    out: dict[str, Any] = {"pairs": pairs, "tests": tests, "alpha": alpha, "power": power,
                           "wilcoxon_min_p": low, "wilcoxon_min_p_holm": min(1.0, tests * low),
                           "wilcoxon_can_reject": tests * low <= alpha, "t_detectable_d": None}
    if pairs >= 2:
        out["t_detectable_d"] = detectable_effect(pairs, alpha / tests, power)
    return out


def resolution_verdict(row: Mapping[str, Any], detectable_d: float | None) -> str:
    """One phrase on what a row shows: significant, or not, and then whether its observed effect
    lies below what the design can detect (so 'not significant' is no evidence of no effect)."""
    if row.get("p_holm") is None:
        return "untested (fewer than 2 pairs)"
    if row.get("significant"):
        return "resolved: significant after Holm"
    d = row.get("cohens_d")
    if detectable_d is None or d is None:
        return "not resolved"
    if abs(d) < detectable_d:
        return f"not resolved: |d| = {abs(d):.2g} is below the {detectable_d:.2g} this design detects"
    return f"not significant (|d| = {abs(d):.2g})"
