"""Paired ablation statistics against hand-worked values, scipy and statsmodels, and the library
Holm and bootstrap against the hand-written versions they replaced (kept here as references)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from astrohpc.analysis.paired import (
    adjust_family,
    bootstrap_ci,
    cohens_d_paired,
    compare_paired,
    detectable_effect,
    effect_table,
    holm_bonferroni,
    resolution_verdict,
    resolving_power,
    wilcoxon_min_p,
)

# Eight seeds of a made-up validation RMSE: the full model and the model without one component.
FULL = np.array([1.02, 0.98, 1.05, 0.99, 1.01, 1.00, 1.03, 0.97])
ABLATED = np.array([1.10, 1.01, 1.12, 1.04, 1.03, 1.09, 1.08, 0.99])


def test_cohens_d_by_hand_and_its_sign():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]
    # differences 1..4: mean 2.5, sample sd sqrt(5/3)
    assert cohens_d_paired(a, b) == pytest.approx(2.5 / math.sqrt(5.0 / 3.0), rel=1e-12)
    assert cohens_d_paired(b, a) == pytest.approx(-2.5 / math.sqrt(5.0 / 3.0), rel=1e-12)
    assert cohens_d_paired(ABLATED, FULL) > 0  # a larger than b: positive


def test_cohens_d_drops_nan_pairs_and_needs_two():
    assert cohens_d_paired([1.0, np.nan, 3.0, 6.0], [0.0, 5.0, 0.0, 0.0]) == pytest.approx(
        cohens_d_paired([1.0, 3.0, 6.0], [0.0, 0.0, 0.0]))
    with pytest.raises(ValueError, match="at least 2"):
        cohens_d_paired([1.0, np.nan], [0.0, 0.0])
    with pytest.raises(ValueError, match="same length"):
        cohens_d_paired([1.0, 2.0], [0.0])


def test_cohens_d_zero_spread():
    assert cohens_d_paired([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == 0.0
    assert cohens_d_paired([2.0, 3.0], [1.0, 2.0]) == math.inf


def test_holm_hand_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 -> running max
    # 0.02, 0.03, 0.06, 0.06 (the last one lifted to keep the order), back in input order:
    assert holm_bonferroni([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    assert holm_bonferroni([0.5, 0.6]) == [1.0, 1.0]  # 2×0.5 = 1, capped; 0.6 lifted to 1
    assert holm_bonferroni([0.2]) == [0.2]
    assert holm_bonferroni([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm_bonferroni([0.1, float("nan")])


def _holm_by_hand(p):
    """The project's former hand-written Holm, kept as a second implementation to check against."""
    p = np.asarray(p, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    return adjusted.tolist()


def test_holm_matches_the_hand_written_version():
    p = np.random.default_rng(3).uniform(0.0, 0.2, 17)
    p[[2, 9]] = p[5]  # ties
    assert holm_bonferroni(p) == pytest.approx(_holm_by_hand(p), abs=1e-15)


def _bootstrap_by_hand(d, confidence, n_boot, seed):
    """The project's former hand-written percentile bootstrap, kept as a second implementation."""
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    tail = 50.0 * (1.0 - confidence)
    return tuple(np.percentile(means, [tail, 100.0 - tail]))


def test_bootstrap_ci_contains_the_mean_and_matches_the_hand_written_version():
    d = ABLATED - FULL
    low, high = bootstrap_ci(d, n_boot=20_000, seed=1)
    assert low < d.mean() < high
    assert bootstrap_ci(d, n_boot=20_000, seed=1) == (low, high)  # seeded: reproducible
    ref_low, ref_high = _bootstrap_by_hand(d, 0.95, 20_000, seed=7)
    # two independent Monte-Carlo estimates of the same percentiles: means of 8 differences given to
    # 0.01 lie on a grid of 0.00125, and the two agree within one step of it
    assert low == pytest.approx(ref_low, abs=1.3e-3)
    assert high == pytest.approx(ref_high, abs=1.3e-3)
    narrow = bootstrap_ci(d, confidence=0.5, n_boot=20_000, seed=1)
    assert low < narrow[0] < narrow[1] < high


def test_bootstrap_ci_degenerate_and_too_few():
    assert bootstrap_ci([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_ci([1.0, np.inf])


def test_compare_paired_matches_scipy():
    row = compare_paired(ABLATED, FULL, names=("no_corrector", "full"))
    t = stats.ttest_rel(ABLATED, FULL)
    w = stats.wilcoxon(ABLATED - FULL)
    assert row["names"] == ["no_corrector", "full"]
    assert row["n"] == 8 and row["n_dropped"] == 0
    assert row["mean_a"] == pytest.approx(ABLATED.mean())
    assert row["mean_b"] == pytest.approx(FULL.mean())
    assert row["mean_diff"] == pytest.approx((ABLATED - FULL).mean())
    assert row["t"] == pytest.approx(t.statistic) and row["p_t"] == pytest.approx(t.pvalue)
    assert row["wilcoxon"] == pytest.approx(w.statistic) and row["p_wilcoxon"] == pytest.approx(w.pvalue)
    assert row["cohens_d"] == pytest.approx(cohens_d_paired(ABLATED, FULL))
    assert row["ci_low"] < row["mean_diff"] < row["ci_high"]
    assert row["t_reason"] is None and row["wilcoxon_reason"] is None and row["reason"] is None


def test_compare_paired_all_zero_differences():
    row = compare_paired(FULL, FULL.copy())
    assert row["mean_diff"] == 0.0 and row["cohens_d"] == 0.0
    assert row["ci_low"] == 0.0 and row["ci_high"] == 0.0
    assert row["t"] is None and row["p_t"] is None and "zero spread" in row["t_reason"]
    assert row["wilcoxon"] is None and row["p_wilcoxon"] is None and "every difference is 0" in row["wilcoxon_reason"]


def test_compare_paired_too_few_pairs_and_nan():
    row = compare_paired([1.0, np.nan, 2.0], [0.5, 1.0, np.nan])
    assert row["n"] == 1 and row["n_dropped"] == 2
    assert row["t"] is None and row["wilcoxon"] is None and row["cohens_d"] is None
    assert "at least 2" in row["reason"] and "at least 2" in row["wilcoxon_reason"]


def test_effect_table_pairs_by_seed_and_adjusts_with_holm():
    seeds = list(range(100, 108))
    baseline = dict(zip(seeds, FULL))
    rng = np.random.default_rng(5)
    variants = {
        "no_corrector": dict(zip(seeds, ABLATED)),
        # seeds 100 and 101 missing, and a baseline-less seed 999: pairs only 102..107
        "no_fusion": {**dict(zip(seeds[2:], FULL[2:] + rng.normal(0, 0.01, 6))), 999: 1.0},
        "identical": dict(baseline),
        "one_seed": {100: 1.5},
    }
    rows = {r["variant"]: r for r in effect_table(baseline, variants, metric="val_rmse")}
    assert list(rows) == list(variants)
    assert all(r["metric"] == "val_rmse" for r in rows.values())

    fusion = rows["no_fusion"]
    assert fusion["seeds"] == seeds[2:] and fusion["unpaired_seeds"] == [100, 101, 999]
    b = np.array([baseline[s] for s in seeds[2:]])
    v = np.array([variants["no_fusion"][s] for s in seeds[2:]])
    assert fusion["n"] == 6 and fusion["mean_diff"] == pytest.approx((v - b).mean())
    assert fusion["p_t"] == pytest.approx(stats.ttest_rel(v, b).pvalue)

    one = rows["one_seed"]
    assert one["n"] == 1 and "at least 2" in one["reason"] and one["p_holm"] is None and not one["significant"]

    # effect_table leaves the adjustment to the family of the whole study
    assert all(r["p_holm"] is None and not r["significant"] for r in rows.values())
    assert rows["no_corrector"]["cohens_d"] > 0  # variant − baseline: the ablated error is larger


def test_adjust_family_holm_over_every_variant_and_metric():
    seeds = list(range(8))
    baseline = dict(zip(seeds, FULL))
    variants = {"no_corrector": dict(zip(seeds, ABLATED)), "identical": dict(baseline), "one_seed": {0: 1.5}}
    rows = (effect_table(baseline, variants, metric="val_rmse")
            + effect_table({s: 2 * v for s, v in baseline.items()},
                           {"no_corrector": {s: 2 * v + 0.01 * (s % 3) for s, v in variants["no_corrector"].items()}},
                           metric="test_rmse"))
    adjust_family(rows)
    tested = [r for r in rows if r["n"] >= 2]
    assert [(r["variant"], r["metric"]) for r in tested] == [
        ("no_corrector", "val_rmse"), ("identical", "val_rmse"), ("no_corrector", "test_rmse")]
    # one family of three: Holm by hand over (p1, 1 (undefined t-test), p3)
    p1, p3 = tested[0]["p_t"], tested[2]["p_t"]
    low, high = sorted([p1, p3])
    by_hand = {low: min(1.0, 3 * low), high: max(min(1.0, 3 * low), min(1.0, 2 * high))}
    assert tested[0]["p_holm"] == pytest.approx(by_hand[p1], rel=1e-12)
    assert tested[2]["p_holm"] == pytest.approx(by_hand[p3], rel=1e-12)
    assert tested[1]["p_holm"] == 1.0 and not tested[1]["significant"]
    assert tested[1]["p_wilcoxon_holm"] == 1.0  # every difference 0: enters the Wilcoxon family with p = 1
    one = next(r for r in rows if r["variant"] == "one_seed")
    assert one["p_holm"] is None and not one["significant"]
    for row in tested:
        assert row["significant"] == (row["p_holm"] <= 0.05)


def test_wilcoxon_min_p_by_hand_and_against_scipy():
    # n pairs, every difference positive: the exact null puts 1/2^n on that sign pattern, two-sided 2/2^n
    assert wilcoxon_min_p(3) == 0.25 and wilcoxon_min_p(5) == 0.0625 and wilcoxon_min_p(6) == 0.03125
    for n in (3, 5, 8):
        assert stats.wilcoxon(np.arange(1.0, n + 1), method="exact").pvalue == pytest.approx(wilcoxon_min_p(n),
                                                                                             rel=1e-12)


def test_detectable_effect_matches_statsmodels_power():
    power = pytest.importorskip("statsmodels.stats.power")
    for n, alpha in ((5, 0.05), (5, 0.05 / 6), (10, 0.01)):
        expected = power.TTestPower().solve_power(nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
        assert detectable_effect(n, alpha) == pytest.approx(expected, rel=1e-4)


def test_resolving_power_of_three_and_five_seeds():
    three = resolving_power(3, tests=6)
    assert three["wilcoxon_min_p"] == 0.25 and three["wilcoxon_min_p_holm"] == 1.0
    assert not three["wilcoxon_can_reject"]
    five = resolving_power(5, tests=1)
    assert five["wilcoxon_min_p_holm"] == 0.0625 and not five["wilcoxon_can_reject"]  # 2/32 > 0.05
    assert resolving_power(6, tests=1)["wilcoxon_can_reject"]  # 2/64 <= 0.05
    # more tests in the family: a larger effect is needed at Holm's first step alpha/m
    assert resolving_power(5, tests=12)["t_detectable_d"] > five["t_detectable_d"]
    row = {"p_holm": 0.4, "significant": False, "cohens_d": -0.3}
    assert resolution_verdict(row, five["t_detectable_d"]).startswith("not resolved: |d| = 0.3 is below")
    assert resolution_verdict({**row, "p_holm": 0.01, "significant": True}, 1.0).startswith("resolved")
    assert resolution_verdict({"p_holm": None}, 1.0).startswith("untested")
