"""The Gaussian-process climate surrogate (astrohpc/models/gp_climate.py) and the parametric
baselines (astrohpc/analysis/parametric_baselines.py), against closed forms.

The fields here are analytic functions of two parameters on a small lat-lon grid — a check of
the mathematics (EOF reduction, per-component GPs, the mapping back, the variance), not a
stand-in for GCM output; the climate study is tested on real ExoPlaSim runs in
tests/studies/test_climate_loo.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from astrohpc.analysis import parametric_baselines as base
from astrohpc.errors import ConfigError
from astrohpc.models.gp_climate import GPClimate
from astrohpc.studies.baselines import nearest_run

NAMES = ["rotation_period_days", "instellation_W_m2"]
TRANSFORMS = ["log10", "identity"]
LAT = np.linspace(-78.75, 78.75, 8)
LON = np.arange(16) * 22.5
PHI, _ = np.meshgrid(np.radians(LAT), np.radians(LON), indexing="ij")
AREA = np.cos(PHI) / np.cos(PHI).sum()


def design(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.c_[10 ** rng.uniform(0.0, 1.0, n), rng.uniform(1100.0, 1450.0, n)]


def fields_of(x: np.ndarray) -> np.ndarray:
    """Two variables, [run, 3 channels (a 2-level variable and a surface one), lat, lon]: smooth,
    nonlinear in log rotation period, linear and quadratic in instellation."""
    u = np.log10(x[:, 0])[:, None, None]
    s = ((x[:, 1] - 1275.0) / 175.0)[:, None, None]
    surface = 260.0 + 30.0 * s * np.cos(PHI) + 8.0 * np.sin(3.0 * u) * np.sin(PHI) + 4.0 * u * s
    upper = 220.0 + 10.0 * s + 6.0 * np.cos(2.0 * u) * np.cos(2 * PHI)
    lower = 250.0 + 20.0 * s * np.cos(PHI) + 3.0 * s ** 2
    return np.stack([upper, lower, surface], axis=1)


VARS = ["ta", "ta", "ts"]


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt((AREA * (a - b) ** 2).sum() / AREA.sum()))


def test_leave_one_out_beats_nearest_and_regression_on_a_smooth_nonlinear_climate():
    x = design(16, 0)
    f = fields_of(x)
    errors = {"gp": [], "nearest": [], "linear": []}
    for i in range(len(x)):
        train = [j for j in range(len(x)) if j != i]
        gp = GPClimate(restarts=0).fit(x[train], NAMES, TRANSFORMS, f[train], VARS, AREA)
        mean, std = gp.predict(x[i:i + 1])
        assert mean.shape == std.shape == (1, 3, 8, 16)
        z_train, z_test = gp._inputs(x[train]), gp._inputs(x[i:i + 1])
        errors["gp"].append(rmse(mean[0, 2], f[i, 2]))
        errors["nearest"].append(rmse(f[train][nearest_run(z_train, z_test[0])][2], f[i, 2]))
        errors["linear"].append(rmse(base.regression(z_train, f[train], z_test, 1)[0, 2], f[i, 2]))
    gp_rmse, nearest, linear = (float(np.sqrt(np.mean(np.square(errors[k])))) for k in ("gp", "nearest", "linear"))
    # the surface field's nonlinear part (8 K sin 3u) is what regression cannot follow and the GP must
    assert gp_rmse < 0.25 * nearest and gp_rmse < 0.5 * linear


def test_training_runs_are_reproduced_and_sigma_is_small_there_and_grows_away():
    x = design(16, 1)
    f = fields_of(x)
    gp = GPClimate(restarts=2).fit(x, NAMES, TRANSFORMS, f, VARS, AREA)
    mean, std = gp.predict(x[:3])
    # at a training run: off by no more than what the dropped EOFs and the white noise carry, which
    # the predictive σ includes (3σ), and by under 5 % of the runs' spread
    assert np.all(np.abs(mean - f[:3]) <= 3 * std)
    assert np.abs(mean - f[:3]).max() < 0.05 * f[:, 2].std(axis=0).max()
    far = np.array([[40.0, 1900.0]])  # log10(40) and 1900 W m-2 lie far outside the design
    _, std_far = gp.predict(far)
    assert (AREA * std_far[0, 2]).sum() > 5 * (AREA * std[:, 2]).sum(axis=(-2, -1)).max()


def test_parameters_given_by_name_in_any_order():
    x = design(12, 2)
    gp = GPClimate(restarts=0).fit(x, NAMES, TRANSFORMS, fields_of(x), VARS, AREA)
    a, _ = gp.predict(x[:2])
    b, _ = gp.predict(x[:2, ::-1], param_names=NAMES[::-1])
    np.testing.assert_array_equal(a, b)


def test_leave_one_out_scale_equals_refitting_without_each_run():
    """The closed-form leave-one-out scale equals refitting the GP (same hyperparameters) without
    each training run and standardising its error there; predict's variance carries it."""
    from sklearn.gaussian_process import GaussianProcessRegressor

    from astrohpc.models.gp_climate import loo_variance_scale

    x = design(12, 5)
    gp = GPClimate(restarts=0, max_components=2).fit(x, NAMES, TRANSFORMS, fields_of(x), VARS, AREA)
    one = gp.blocks["ts"].gps[0]
    z, y = one.X_train_, one.y_train_ * one._y_train_std + one._y_train_mean
    squares = []
    for i in range(len(z)):
        keep = np.arange(len(z)) != i
        refit = GaussianProcessRegressor(kernel=one.kernel_, normalize_y=False, optimizer=None)
        # the same normalisation as the full fit (normalize_y rescales by all runs; kept fixed here)
        mu, sd = refit.fit(z[keep], (y[keep] - one._y_train_mean) / one._y_train_std).predict(z[i:i + 1],
                                                                                              return_std=True)
        # the closed form's K carries sklearn's jitter `alpha` on its diagonal; predict's σ does not
        squares.append(((y[i] - one._y_train_mean) / one._y_train_std - mu[0]) ** 2 / (sd[0] ** 2 + one.alpha))
    assert loo_variance_scale(one) == pytest.approx(np.mean(squares), rel=1e-6)
    plain = GPClimate(restarts=0, max_components=2, loo_calibration=False).fit(x, NAMES, TRANSFORMS, fields_of(x),
                                                                               VARS, AREA)
    np.testing.assert_allclose(plain.blocks["ts"].variance_scale, 1.0)
    assert not np.allclose(gp.blocks["ts"].variance_scale, 1.0)
    mean_a, std_a = gp.predict(x[:2])
    mean_b, std_b = plain.predict(x[:2])
    np.testing.assert_allclose(mean_a, mean_b)  # the calibration changes the spread only
    assert not np.allclose(std_a, std_b)


def test_saved_state_rebuilds_the_same_predictions_without_refitting():
    """state_dict -> torch.save -> torch.load(weights_only) -> from_state_dict: the same mean and σ
    (the GPs are rebuilt with the saved hyperparameters, no optimiser), far from the runs too."""
    import io

    import torch

    x = design(14, 4)
    gp = GPClimate(restarts=1, smoothness=(0.5, 2.5)).fit(x, NAMES, TRANSFORMS, fields_of(x), VARS, AREA)
    buffer = io.BytesIO()
    torch.save(gp.state_dict(), buffer)
    buffer.seek(0)
    again = GPClimate.from_state_dict(torch.load(buffer, weights_only=True))
    probe = np.r_[design(5, 9), [[40.0, 1900.0]]]
    for a, b in zip(gp.predict(probe), again.predict(probe)):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)
    assert again.describe() == gp.describe()
    with pytest.raises(ConfigError, match="not a saved GP climate surrogate"):
        GPClimate.from_state_dict({"kind": "something else"})


@pytest.mark.parametrize("case, message", [
    ("few_runs", "6 training run(s) cannot support up to 8 EOF components"),
    ("constant", "take one value across the training runs"),
    ("nan", "NaN or inf in the time mean of run(s) r3"),
    ("nonpositive_log", "transform log10 needs values > 0"),
])
def test_bad_training_input_gets_one_clear_error(case, message):
    x = design(6, 3)
    f = fields_of(x)
    if case == "few_runs":
        pass
    elif case == "constant":
        x[:, 1] = 1361.0
    elif case == "nan":
        f[3, 1, 2, 2] = np.nan
    elif case == "nonpositive_log":
        x[0, 0] = 0.0
    with pytest.raises((ConfigError, Exception), match=message.replace("(", r"\(").replace(")", r"\)")):
        GPClimate(max_components=8 if case == "few_runs" else 3, restarts=0).fit(
            x, NAMES, TRANSFORMS, f, VARS, AREA, [f"r{i}" for i in range(len(x))])


def test_unknown_or_missing_parameter_names_are_refused():
    x = design(10, 4)
    gp = GPClimate(restarts=0).fit(x, NAMES, TRANSFORMS, fields_of(x), VARS, AREA)
    with pytest.raises(ConfigError, match="unknown parameter.*obliquity_deg"):
        gp.predict(np.c_[x[:1], [[23.0]]], param_names=[*NAMES, "obliquity_deg"])
    with pytest.raises(ConfigError, match="instellation_W_m2 not given"):
        gp.predict(x[:1, :1], param_names=NAMES[:1])


def test_regression_baselines_recover_polynomials_exactly():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(12, 2))
    grid = rng.normal(size=(3, 4))
    linear = (1.0 + 2.0 * z[:, 0] - 3.0 * z[:, 1])[:, None, None] * grid
    quadratic = linear + (0.5 * z[:, 0] * z[:, 1] - z[:, 1] ** 2)[:, None, None] * grid
    z_new = np.array([[0.3, -1.2]])
    expect_lin = (1.0 + 2.0 * 0.3 + 3.0 * 1.2) * grid
    expect_quad = expect_lin + (0.5 * 0.3 * -1.2 - 1.44) * grid
    np.testing.assert_allclose(base.regression(z, linear, z_new, 1)[0], expect_lin, rtol=1e-10)
    np.testing.assert_allclose(base.regression(z, quadratic, z_new, 2)[0], expect_quad, rtol=1e-10)
    assert base.design_matrix(z_new, 2).shape == (1, 6)  # 1, z1, z2, z1², z1 z2, z2²
    fields = np.arange(12.0)[:, None, None] * np.ones((12, 3, 4))
    np.testing.assert_allclose(base.ensemble_mean(fields, 2), np.full((2, 3, 4), 5.5))


def test_a_cell_that_never_varies_gets_a_positive_sigma():
    x = design(8, 6)
    f = fields_of(x)
    f[:, 2, 0, 0] = 250.0  # the same in every run
    gp = GPClimate(max_components=3, restarts=0).fit(x, NAMES, TRANSFORMS, f, VARS, AREA)
    mean, std = gp.predict(x[:2])
    assert np.all(std > 0) and np.allclose(mean[:, 2, 0, 0], 250.0, atol=1e-6)


def test_truncation_at_an_unseen_run_is_what_the_other_runs_eofs_leave():
    """Leave-one-out truncation: for each run, its part outside the span of the other runs' first k
    EOFs, checked against sklearn's PCA refitted without it; larger than the in-sample residual."""
    from sklearn.decomposition import PCA

    from astrohpc.models.gp_climate import loo_truncation_residual

    rng = np.random.default_rng(7)
    a = rng.normal(size=(9, 40)) @ np.diag(np.linspace(3, 0.1, 40))
    a -= a.mean(axis=0)
    got = loo_truncation_residual(a, 3)
    for i in (0, 4, 8):
        pca = PCA(n_components=3, svd_solver="full").fit(np.delete(a, i, axis=0))
        x = a[i] - pca.mean_
        np.testing.assert_allclose(got[i], x - (x @ pca.components_.T) @ pca.components_, atol=1e-10)
    own = PCA(n_components=3, svd_solver="full").fit(a)
    inside = a - own.inverse_transform(own.transform(a))
    assert (got ** 2).mean() > (inside ** 2).mean()
