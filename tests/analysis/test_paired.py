"""Paired ablation statistics against hand-worked values, scipy and (if installed) statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from astrohpc.analysis.paired import bootstrap_ci, cohens_d_paired, compare_paired, effect_table, holm_bonferroni

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


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest",
                                    reason="statsmodels not installed: the outside Holm check is skipped")
    p = np.random.default_rng(3).uniform(0.0, 0.2, 17)
    p[[2, 9]] = p[5]  # ties
    _, expected, _, _ = multitest.multipletests(p, alpha=0.05, method="holm")
    assert holm_bonferroni(p) == pytest.approx(expected.tolist(), abs=1e-15)


def test_bootstrap_ci_contains_the_mean_and_matches_scipy():
    d = ABLATED - FULL
    low, high = bootstrap_ci(d, n_boot=20_000, seed=1)
    assert low < d.mean() < high
    assert bootstrap_ci(d, n_boot=20_000, seed=1) == (low, high)  # seeded: reproducible
    ref = stats.bootstrap((d,), np.mean, confidence_level=0.95, n_resamples=20_000, method="percentile",
                          random_state=np.random.default_rng(7)).confidence_interval
    # two independent Monte-Carlo estimates of the same percentiles
    assert low == pytest.approx(ref.low, abs=2e-3)
    assert high == pytest.approx(ref.high, abs=2e-3)
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

    # the family: three tested rows; the identical variant (t-test undefined) enters with p = 1
    expected = holm_bonferroni([rows["no_corrector"]["p_t"], fusion["p_t"], 1.0])
    assert [rows[k]["p_holm"] for k in ("no_corrector", "no_fusion", "identical")] == pytest.approx(expected)
    assert rows["identical"]["p_holm"] == 1.0 and not rows["identical"]["significant"]
    assert rows["no_corrector"]["cohens_d"] > 0  # variant − baseline: the ablated error is larger
    for row in rows.values():
        if row["p_holm"] is not None:
            assert row["significant"] == (row["p_holm"] <= 0.05)
            assert row["p_t"] is None or row["p_holm"] >= row["p_t"]
