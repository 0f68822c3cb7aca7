"""Long rollouts (astrohpc.studies.rollout) of a tiny emulator trained on the real smoke-run cube:
the orbit forcing against the GCM's rsdt, conservation over 200 batched steps, a segmented
restart that is bit-identical, the divergence detector, the series statistics and the file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import xarray as xr

from astrohpc.config import Config, from_dict
from astrohpc.data.cube import read_meta
from astrohpc.studies.rollout import (
    DIAGNOSTICS,
    DivergenceLimits,
    RolloutState,
    adf_test,
    check_forcing,
    drift_per_1000,
    forcing_fn,
    initial_conditions,
    last_window_climatology,
    lyapunov_estimate,
    lyapunov_from_distance,
    rollout,
    write_diagnostics_netcdf,
)
from astrohpc.train.export import load_exported
from astrohpc.train.trainer import train

log = logging.getLogger(__name__)
STEPS = 200
CORRECTORS = ["humidity", "dry_mass"]


def make_cfg(cube, root, name="roll"):
    """A tiny U-Net emulator (every corrector on), trained on run 0 of the cube for 2 epochs."""
    meta = read_meta(cube)
    model = {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1, "dropout": 0.0},
             "physics": {"correctors": CORRECTORS}}
    settings = {"cube": str(cube), "validation_runs": [meta.run_names[1]], "epochs": 2, "batch_size": 2,
                "checkpoint_every": 0, "log_every": 1, "lr": 1e-3}
    return from_dict(Config, {"run": {"root": str(root), "name": name, "seed": 3}, "model": model,
                              "train": settings}, source="test")


@pytest.fixture(scope="module")
def emulator(physics_cube, tmp_path_factory):
    """(model, exported info, rollout inputs of members (run 0, t0 0) and (run 1, t0 0))."""
    root = tmp_path_factory.mktemp("rollout")
    assert train(make_cfg(physics_cube, root))["status"] == "finished"
    model, info = load_exported(root / "roll" / "export" / "last.pt")
    inputs = initial_conditions(physics_cube, model, info["param_norm"], [(0, 0), (1, 0)])
    return model, info, inputs


@pytest.fixture(scope="module")
def long_run(emulator):
    model, _, inputs = emulator
    return rollout(model, **inputs, steps=STEPS, climatology_steps=20)


def test_orbit_forcing_reproduces_the_cubes_rsdt(physics_cube, emulator):
    model = emulator[0]
    meta = read_meta(physics_cube)
    for run in range(meta.shape[0]):
        fn = forcing_fn(meta, run, model)
        assert fn(1).shape == (1, len(meta.lat), len(meta.lon))
        assert check_forcing(meta, run, fn) < 1e-3  # W m-2 (float32 rounding of the cube: ~1e-4)
        # a rollout started one day in sees the same sun at the same dates
        assert check_forcing(meta, run, forcing_fn(meta, run, model, t0=1), steps=[1, 2, 3]) < 1e-3
    # past the cube's end it goes on (the point of computing it); a step the cube lacks is skipped
    assert torch.isfinite(fn(10_000)).all()
    with pytest.raises(ValueError, match="none of the steps"):
        check_forcing(meta, 0, fn, steps=[50, 60])


def test_only_rsdt_can_be_computed(physics_cube, emulator):
    model = emulator[0]
    meta = read_meta(physics_cube)

    class Other:
        table, forcing, step_s = model.table, torch.tensor([model.table.index("rlut")[0], 6]), model.step_s

    with pytest.raises(ValueError, match="rlut"):
        forcing_fn(meta, 0, Other())


def test_batched_rollout_conserves_dry_mass_and_stays_finite(emulator, long_run, record_property, physics_cube):
    model, _, inputs = emulator
    result = long_run
    assert result.steps_done == result.steps_run == STEPS and result.flags == [None, None]
    assert set(result.diagnostics) >= {"ts", "ta", "toa_net", "energy", "energy_drift", "energy_before",
                                       "energy_after", "water_before", "water_after", "dry_mass_before",
                                       "dry_mass_after", "dry_mass", "dry_mass_rel_error", "state_norm"}
    for name, series in result.diagnostics.items():
        assert series.shape == (STEPS, 2) and series.dtype == np.float64, name
        assert np.isfinite(series).all(), name
    assert np.abs(result.diagnostics["dry_mass_rel_error"]).max() <= 1e-10
    # energy bound on each step's change of the mass-weighted air temperature: the air cannot gain more
    # than the whole instellation S/4 plus the whole surface emission σ⟨ts⁴⟩ (≤ 1.2 σ⟨ts⟩⁴ for an
    # equator-pole contrast under 40 K), nor lose more than that, over its heat capacity cp·ps/g
    meta = read_meta(physics_cube)
    planet, d = inputs["planet"], result.diagnostics
    ps = model.table.index("ps")[0]
    area = model.grid.area_weight.double()
    ps_mean = (inputs["x0"][:, ps] * area).sum(dim=(-2, -1)) / area.sum()
    capacity = (planet.cp_J_kg_K * ps_mean / planet.gravity_m_s2).numpy()  # [members] J m-2 K-1
    stellar = np.asarray(meta.params["instellation_W_m2"][:2], np.float64) / 4.0
    heating = stellar + 1.2 * 5.670374419e-8 * d["ts"].max(axis=0) ** 4
    step_limit = heating * model.step_s / capacity  # K per step, ~6 K for an Earth-like day
    assert (np.abs(np.diff(d["ta"], axis=0)).max(axis=0) <= step_limit).all()
    assert result.state.x.dtype == torch.float64 and result.state.x.shape == inputs["x0"].shape
    assert not model.training  # load_exported's eval mode, kept
    record_property("steps_per_s", result.steps_per_s)
    log.info("rollout speed: %.1f steps/s (%d steps x %d members, wall %.2f s, cpu %.2f s)", result.steps_per_s,
             STEPS, 2, result.wall_s, result.cpu_s)


def test_segmented_restart_is_bit_identical(emulator, long_run, tmp_path):
    model, _, inputs = emulator
    saved = []
    first = rollout(model, **inputs, steps=STEPS // 2, segment=50, climatology_steps=20,
                    on_segment=lambda st: saved.append(st.step))
    assert saved == [50, 100] and first.steps_done == 100
    # through a file, as a requeued job would read it (weights_only: plain tensors and lists)
    torch.save(first.state.to_dict(), tmp_path / "state.pt")
    state = RolloutState.from_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    second = rollout(model, **inputs, steps=STEPS, state=state, climatology_steps=20)
    assert second.steps_run == 100 and second.steps_done == STEPS
    for name, series in long_run.diagnostics.items():
        np.testing.assert_array_equal(second.diagnostics[name], series, err_msg=name)
    assert torch.equal(second.state.x, long_run.state.x)
    assert torch.equal(second.state.climatology_sum, long_run.state.climatology_sum)
    with pytest.raises(ValueError, match="past"):
        rollout(model, **inputs, steps=50, state=state)


def test_divergence_detector_flags_and_freezes_a_member(emulator, long_run):
    model, _, inputs = emulator
    assert long_run.flags == [None, None]  # the trained model is stable
    ts = model.table.index("ts")[0]
    calls = {"n": 0, "batch": []}
    original = model.forward

    def hot_at_five(x, *args):
        calls["n"] += 1
        calls["batch"].append(x.shape[0])
        nxt = original(x, *args)
        if calls["n"] == 5:
            nxt[0, ts] = 2000.0  # K
        return nxt

    model.forward = hot_at_five
    try:
        result = rollout(model, **inputs, steps=20)
    finally:
        del model.forward
    assert result.flags == [(5, "temperature"), None]
    assert calls["batch"] == [2] * 5 + [1] * 15  # frozen: member 0 takes no further step
    ts_series = result.diagnostics["ts"]
    assert np.isfinite(ts_series[:4, 0]).all() and np.isnan(ts_series[4:, 0]).all()
    # member 1 steps alone from step 6: the same trajectory up to the rounding of a batch of one
    np.testing.assert_array_equal(ts_series[:5, 1], long_run.diagnostics["ts"][:5, 1])
    np.testing.assert_allclose(ts_series[:, 1], long_run.diagnostics["ts"][:20, 1], rtol=1e-9)


def test_growing_tendency_trips_the_detector(emulator):
    model, _, inputs = emulator
    original = model.forward
    calls = {"n": 0}

    def amplified(x, *args):
        calls["n"] += 1
        return x + (original(x, *args) - x) * 1.5 ** calls["n"]

    model.forward = amplified
    try:
        result = rollout(model, **inputs, steps=60, limits=DivergenceLimits(growth_window=5))
    finally:
        del model.forward
    assert all(f is not None and f[1] in ("non-finite", "temperature", "growth") for f in result.flags)
    for member, (step, _) in enumerate(result.flags):
        assert np.isnan(result.diagnostics["ts"][step - 1:, member]).all()
        assert np.isfinite(result.diagnostics["ts"][:step - 1, member]).all()
    # growth alone: the temperature limits out of the way
    wide = DivergenceLimits(t_min_K=0.0, t_max_K=1e30, growth_window=5)
    calls["n"] = 0
    model.forward = amplified
    try:
        result = rollout(model, **inputs, steps=60, limits=wide)
    finally:
        del model.forward
    assert {f[1] for f in result.flags} <= {"growth", "non-finite"} and "growth" in {f[1] for f in result.flags}


def test_last_window_climatology(emulator, long_run):
    model, _, inputs = emulator
    clim = last_window_climatology(long_run, inputs["x0"], model.grid.area_weight)
    assert clim["count"].tolist() == [20, 20]
    assert clim["mean"].shape == tuple(inputs["x0"].shape) and clim["rmse"].shape == (2, len(model.table))
    ts = model.table.index("ts")[0]
    area = model.grid.area_weight.double().numpy()
    x0 = inputs["x0"].numpy()
    # another route to the same window: the per-step global-mean ts diagnostic averaged over the last 20
    # steps equals the area-weighted global mean of the window's mean field (both are linear means)
    by_step = long_run.diagnostics["ts"][-20:].mean(axis=0)
    by_field = (clim["mean"][:, ts] * area).sum(axis=(-2, -1)) / area.sum()
    np.testing.assert_allclose(by_field, by_step, rtol=1e-12)
    # the scores by hand with numpy, against the initial state
    err = clim["mean"][:, ts] - x0[:, ts]
    rmse = np.sqrt((area * err**2).sum(axis=(-2, -1)) / area.sum())
    bias = (area * err).sum(axis=(-2, -1)) / area.sum()
    np.testing.assert_allclose(clim["rmse"][:, ts], rmse, rtol=1e-12)
    np.testing.assert_allclose(clim["bias"][:, ts], bias, rtol=1e-12)
    assert (clim["rmse"][:, ts] >= np.abs(bias)).all()  # RMSE ≥ |bias| (Cauchy–Schwarz)


def test_drift_adf_and_lyapunov_on_synthetic_series():
    t = np.arange(1, 501, dtype=np.float64)
    series = np.stack([2.0 + 3e-3 * t, -1.0 - 5e-4 * t], axis=1)
    np.testing.assert_allclose(drift_per_1000(series), [3.0, -0.5], rtol=1e-10)

    noise = np.random.default_rng(0).normal(size=500)
    walk = np.cumsum(np.random.default_rng(1).normal(size=500))
    white, random_walk = adf_test(noise), adf_test(walk)
    assert white["stationary"] and white["pvalue"] < 0.01
    assert not random_walk["stationary"] and random_walk["pvalue"] > 0.1

    rates = np.array([0.05, 0.2])
    steps = np.arange(1, 301, dtype=np.float64)
    distance = 1e-8 * np.exp(rates[None, :] * steps[:, None])
    distance = distance / (1.0 + distance)  # saturates at 1 (logistic)
    a = np.random.default_rng(2).normal(size=(300, 2, 4, 3))
    direction = np.ones((4, 3))
    b = a + distance[:, :, None, None] * direction
    est = lyapunov_estimate(a, b, step_days=0.5)
    np.testing.assert_allclose(est["rate_per_step"], rates, rtol=0.01)
    np.testing.assert_allclose(est["efolding_days"], 0.5 / rates, rtol=0.01)
    assert (est["r2"] > 0.999).all() and (est["fit_end"] < 299).all()  # the saturated tail left out


def test_diagnostics_netcdf_carries_units_and_flags(physics_cube, emulator, long_run, tmp_path):
    model, _, inputs = emulator
    path = write_diagnostics_netcdf(tmp_path / "rollout.nc", long_run, read_meta(physics_cube),
                                    members=["run0 t0=0", "run1 t0=0"])
    with xr.open_dataset(path) as ds:
        assert ds.sizes == {"step": STEPS, "member": 2}
        for name in long_run.diagnostics:
            assert ds[name].attrs["units"] == DIAGNOSTICS[name][0] and ds[name].attrs["long_name"]
            np.testing.assert_array_equal(ds[name].values, long_run.diagnostics[name])
        assert ds["lead_days"].attrs["units"] == "days" and float(ds["lead_days"][-1]) == STEPS
        assert ds["diverged_step"].values.tolist() == [-1, -1]
        assert ds.attrs["flags"] == "member 0: stable; member 1: stable"
        assert ds["ts_initial"].attrs["units"] == "K"
    assert not list(tmp_path.glob(".*.tmp"))


def test_twin_runs_record_their_distance(physics_cube, emulator):
    model, info, _ = emulator
    inputs = initial_conditions(physics_cube, model, info["param_norm"], [(0, 0), (0, 0)])
    std = model.normalizer.std[0, :, 0, 0].to(torch.float64)
    kick = torch.randn(inputs["x0"].shape[1:], generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    inputs["x0"][1, model.predicted] += 1e-6 * (std[:, None, None] * kick)[model.predicted]
    result = rollout(model, **inputs, steps=30, twins=[(0, 1)])
    distance = result.diagnostics["twin_distance"]
    assert np.isnan(distance[:, 0]).all() and (distance[:, 1] > 0).all()
    # normalised units: the kick was ~1e-6 sigma, times this barely trained net's one-step gain (~160)
    assert distance[0, 1] < 1e-3
    est = lyapunov_from_distance(distance[:, 1], step_days=model.step_s / 86400.0)
    # the least-squares slope of ln d on equally spaced steps is a positively weighted mean of its
    # consecutive differences: it lies between their extremes over the fitted rows
    start, end = int(est["fit_start"][0]), int(est["fit_end"][0])
    growth = np.diff(np.log(distance[start:end + 1, 1]))
    assert growth.min() <= est["rate_per_step"][0] <= growth.max()
    assert est["efolding_days"][0] == pytest.approx(model.step_s / 86400.0 / est["rate_per_step"][0], rel=1e-12)
    assert 0.0 <= est["r2"][0] <= 1.0


def test_conservation_before_and_after_the_correctors(emulator, long_run):
    """The per-step errors the rollout records: the network's own (before) and the corrected step's
    (after), here recomputed for step 1 straight from the model's prediction."""
    from astrohpc.physics.grid import global_mean
    from astrohpc.physics.mass import column_dry_mass
    from astrohpc.studies.conservation import summarize

    model, _, inputs = emulator
    d = long_run.diagnostics
    assert np.abs(d["dry_mass_after"]).max() <= 1e-12  # the corrector: rounding by construction
    assert np.abs(d["dry_mass_before"]).max() > 1e-8  # the network alone does not conserve
    x0, planet = inputs["x0"].double(), inputs["planet"]
    static = inputs["static"].double()
    with torch.no_grad():
        raw = model(x0, inputs["forcing"](1).double().expand(2, -1, -1, -1), inputs["params"], static, planet, False)
    grid = model.grid.to(torch.float64)
    mass = [global_mean(column_dry_mass(model.physics_state(s, static)["ps"], model.physics_state(s, static)["hus"],
                                        grid, planet), grid) for s in (x0, raw.double())]
    np.testing.assert_allclose(d["dry_mass_before"][0], ((mass[1] - mass[0]) / mass[0]).numpy(), rtol=1e-9)
    assert np.isfinite(d["energy_before"]).all() and np.isfinite(d["water_after"]).all()
    s = summarize(np.array([1.0, -3.0, np.nan, 0.5]))
    assert s == {"mean_abs": 1.5, "max_abs": 3.0, "cumulative": -1.5, "steps": 3}
