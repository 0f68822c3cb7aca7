"""Probabilistic metrics against scoringrules (an outside implementation) and against known
calibration facts on seeded Gaussian samples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scoringrules as sr
import torch
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from astrohpc.analysis import metrics as M

N = 100_000


@pytest.fixture(scope="module")
def calibrated():
    """1e5 Gaussian forecasts with varied mean and σ, and obs drawn from them: (mean, sigma, obs)."""
    rng = np.random.default_rng(1234)
    mean = rng.normal(0.0, 3.0, N)
    sigma = rng.uniform(0.2, 2.0, N)
    return mean, sigma, mean + sigma * rng.standard_normal(N)


def test_crps_gaussian_matches_scoringrules_per_element_and_on_average():
    rng = np.random.default_rng(0)
    mean, sigma, obs = rng.normal(size=200), rng.uniform(0.05, 5.0, 200), rng.normal(scale=3.0, size=200)
    ref = sr.crps_normal(obs, mean, sigma)
    for i in range(0, 200, 37):
        assert M.crps_gaussian(mean[i], sigma[i], obs[i]) == pytest.approx(ref[i], abs=1e-10)
    assert M.crps_gaussian(mean, sigma, obs) == pytest.approx(ref.mean(), abs=1e-10)
    # torch float32 in: converted, same value to float32 precision of the inputs.
    as_t = [torch.as_tensor(a, dtype=torch.float32) for a in (mean, sigma, obs)]
    ref32 = sr.crps_normal(*(t.double().numpy() for t in (as_t[2], as_t[0], as_t[1]))).mean()
    assert M.crps_gaussian(*as_t) == pytest.approx(ref32, abs=1e-10)


@pytest.mark.parametrize("members", [2, 5, 24])
@pytest.mark.parametrize("estimator, sr_name", [("fair", "fair"), ("standard", "nrg")])
def test_crps_ensemble_matches_scoringrules(members, estimator, sr_name):
    rng = np.random.default_rng(members)
    x = rng.normal(size=(members, 6, 8))
    x[:, 0, 0] = 1.0  # ties between members must not change the sort-based estimator
    obs = rng.normal(size=(6, 8))
    ref = sr.crps_ensemble(obs, x, m_axis=0, estimator=sr_name)
    assert M.crps_ensemble(x, obs, estimator=estimator) == pytest.approx(ref.mean(), abs=1e-10)
    assert M.crps_ensemble(x[:, 2, 3], obs[2, 3], estimator=estimator) == pytest.approx(ref[2, 3], abs=1e-10)
    area = np.cos(np.deg2rad(np.linspace(-80, 80, 6)))[:, None] * np.ones(8)  # [lat, lon]
    weighted = M.crps_ensemble(x, obs, weights=area, estimator=estimator)
    assert weighted == pytest.approx(np.average(ref, weights=area), abs=1e-10)


def test_default_ensemble_estimator_is_fair_and_fair_needs_two_members():
    rng = np.random.default_rng(3)
    x, obs = rng.normal(size=(4, 10)), rng.normal(size=10)
    assert M.crps_ensemble(x, obs) == M.crps_ensemble(x, obs, estimator="fair")
    assert M.crps_ensemble(x, obs) < M.crps_ensemble(x, obs, estimator="standard")
    with pytest.raises(ValueError, match="at least 2 members"):
        M.crps_ensemble(x[:1], obs)
    # One member, standard: the CRPS of a point forecast is the absolute error.
    assert M.crps_ensemble(x[:1], obs, estimator="standard") == pytest.approx(np.abs(x[0] - obs).mean())


def test_nan_elements_drop_out_with_their_weights():
    rng = np.random.default_rng(5)
    mean, sigma, obs = rng.normal(size=(4, 5)), rng.uniform(0.5, 1.5, (4, 5)), rng.normal(size=(4, 5))
    weights = rng.uniform(0.1, 1.0, 5)  # broadcast over the first axis
    gappy = obs.copy()
    gappy[1, 2] = np.nan
    gappy[3, :] = np.nan  # a run's NaN fill past its last step
    keep = np.isfinite(gappy)
    ref = np.average(sr.crps_normal(obs, mean, sigma)[keep], weights=np.broadcast_to(weights, (4, 5))[keep])
    assert M.crps_gaussian(mean, sigma, gappy, weights=weights) == pytest.approx(ref, abs=1e-12)

    members = rng.normal(size=(3, 4, 5))
    members[2, 0, 0] = np.nan  # one bad member drops the element
    keep_e = np.isfinite(members).all(axis=0)
    ref_e = sr.crps_ensemble(obs[keep_e], members[:, keep_e], m_axis=0, estimator="fair")
    assert M.crps_ensemble(members, obs) == pytest.approx(ref_e.mean(), abs=1e-12)

    with pytest.raises(ValueError, match="no finite element"):
        M.crps_gaussian(mean, sigma, np.full_like(obs, np.nan))


def test_bad_inputs_are_errors_that_say_what_to_fix():
    with pytest.raises(ValueError, match="do not broadcast"):
        M.coverage(np.zeros((3, 4)), 1.0, np.zeros((3, 4)), weights=np.ones(3))
    with pytest.raises(ValueError, match="sigma must be > 0"):
        M.crps_gaussian(0.0, np.array([1.0, 0.0]), 0.0)
    with pytest.raises(ValueError, match="level"):
        M.coverage(0.0, 1.0, 0.0, level=95)
    with pytest.raises(ValueError, match="reference CRPS"):
        M.crps_skill_score(0.3, 0.0)


@pytest.mark.parametrize("level", [0.68, 0.6827, 0.95])
def test_coverage_of_a_correct_gaussian_is_nominal(calibrated, level):
    mean, sigma, obs = calibrated
    assert abs(M.coverage(mean, sigma, obs, level) - level) < 0.01
    # over-confident: σ/3 covers far less than nominal
    assert M.coverage(mean, sigma / 3, obs, level) < level - 0.2


@pytest.mark.parametrize("level", [0.68, 0.95])
def test_ensemble_coverage_and_ece_of_a_calibrated_ensemble(level):
    rng = np.random.default_rng(7)
    n, m = 20_000, 49  # 49 members resolve levels up to 48/50 = 0.96
    mean, sigma = rng.normal(0.0, 3.0, n), rng.uniform(0.2, 2.0, n)
    members = mean + sigma * rng.standard_normal((m, n))
    obs = mean + sigma * rng.standard_normal(n)
    assert abs(M.coverage_ensemble(members, obs, level) - level) < 0.015
    squeezed = mean + (members - mean) / 3  # over-confident: spread 3× too small
    assert M.coverage_ensemble(squeezed, obs, level) < level - 0.2
    assert M.ece_ensemble(members, obs).ece < 0.01


def test_ece_is_near_zero_when_calibrated_and_large_when_over_confident(calibrated):
    mean, sigma, obs = calibrated
    good = M.ece_regression(mean, sigma, obs)
    assert good.ece < 0.01
    np.testing.assert_allclose(good.levels, np.arange(1, 20) / 20)
    bad = M.ece_regression(mean, sigma / 3, obs)
    # Φ(Φ⁻¹(p)/3) is the frequency a 3× over-confident forecast gets at level p
    np.testing.assert_allclose(bad.observed, norm.cdf(norm.ppf(bad.levels) / 3), atol=0.01)
    assert bad.ece > 0.12
    assert bad.observed[-1] < bad.levels[-1] and bad.observed[0] > bad.levels[0]
    custom = M.ece_regression(mean, sigma, obs, levels=[0.1, 0.5, 0.9])
    assert custom.observed.shape == (3,)


def test_sigma_scaling_fitted_on_validation_recalibrates_a_test_set(calibrated):
    mean, sigma, obs = calibrated
    rng = np.random.default_rng(99)
    # Validation and test sets from the same over-confident model (σ reported 3× too small).
    val_mean, val_sigma = rng.normal(0.0, 3.0, N), rng.uniform(0.2, 2.0, N)
    val_obs = val_mean + val_sigma * rng.standard_normal(N)
    s = M.fit_sigma_scale(val_mean, val_sigma / 3, val_obs)
    assert s == pytest.approx(3.0, rel=0.01)
    assert M.ece_regression(mean, sigma / 3, obs).ece > 0.12
    assert M.ece_regression(mean, M.apply_sigma_scale(sigma / 3, s), obs).ece < 0.01
    # apply keeps torch tensors torch
    assert isinstance(M.apply_sigma_scale(torch.ones(2), s), torch.Tensor)
    with pytest.raises(ValueError):
        M.apply_sigma_scale(sigma, -1.0)


def test_sigma_scale_minimises_the_gaussian_nll():
    rng = np.random.default_rng(11)
    mean, sigma = rng.normal(size=500), rng.uniform(0.5, 2.0, 500)
    obs = mean + 1.7 * sigma * rng.standard_normal(500)
    best = minimize_scalar(lambda s: M.gaussian_nll(mean, s * sigma, obs), bounds=(0.1, 10.0), method="bounded",
                           options={"xatol": 1e-8})
    assert M.fit_sigma_scale(mean, sigma, obs) == pytest.approx(best.x, rel=1e-5)


def test_gaussian_nll_matches_scipy():
    rng = np.random.default_rng(2)
    mean, sigma, obs = rng.normal(size=50), rng.uniform(0.1, 3.0, 50), rng.normal(size=50)
    assert M.gaussian_nll(mean, sigma, obs) == pytest.approx(-norm.logpdf(obs, mean, sigma).mean(), abs=1e-12)


def test_sharpness_statistics_and_weights():
    sigma = np.array([[1.0, 3.0], [1.0, 3.0]])
    assert M.sharpness(sigma) == pytest.approx(math.sqrt(5.0))
    assert M.sharpness(sigma, statistic="mean") == pytest.approx(2.0)
    assert M.sharpness(sigma, weights=np.array([3.0, 1.0]), statistic="mean") == pytest.approx(1.5)
    assert M.sharpness(np.array([2.0, np.nan])) == pytest.approx(2.0)


def test_crps_skill_score_against_climatology(calibrated):
    mean, sigma, obs = calibrated
    crps = M.crps_gaussian(mean, sigma, obs)
    climatology = M.crps_gaussian(obs.mean(), obs.std(), obs)
    skill = M.crps_skill_score(crps, climatology)
    assert 0.0 < skill < 1.0
    assert M.crps_skill_score(climatology, climatology) == 0.0
    assert M.crps_skill_score(0.0, climatology) == 1.0


def test_rank_histogram_by_hand_and_flat_for_a_calibrated_ensemble():
    from astrohpc.analysis.metrics import rank_histogram

    members = np.array([[1.0, 1.0, 5.0, 0.0], [2.0, 3.0, 6.0, 0.0], [3.0, 5.0, 7.0, 0.0]])  # M = 3, 4 cells
    obs = np.array([2.5, 0.0, 9.0, 0.0])  # ranks 2, 0, 3 and a tie with all three members (rank 1.5)
    np.testing.assert_allclose(rank_histogram(members, obs), [0.25, 0.125, 0.375, 0.25])
    # weights: the cells count by their weight
    np.testing.assert_allclose(rank_histogram(members, obs, weights=np.array([1.0, 0.0, 0.0, 0.0])), [0, 0, 1, 0])
    # obs and 9 members drawn from one distribution: each of the 10 ranks has probability 1/10
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(10, 200_000))
    hist = rank_histogram(draws[:9], draws[9])
    assert hist.sum() == pytest.approx(1.0, abs=1e-12)
    # binomial sd of a frequency 0.1 from 200,000 draws is 6.7e-4: 3e-3 is 4.5 of them
    np.testing.assert_allclose(hist, 0.1, atol=3e-3)
    # an ensemble 3x too narrow: the outer ranks take far more than 1/10 (U shape)
    narrow = rank_histogram(draws[:9] / 3.0, draws[9])
    assert narrow[0] > 0.3 and narrow[-1] > 0.3
