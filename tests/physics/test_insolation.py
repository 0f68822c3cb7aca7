"""ExoPlaSim's TOA insolation recomputed from the orbit (astrohpc.physics.insolation): the geometry on
its own, then every rsdt snapshot of the real smoke runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from astrohpc.physics.insolation import Orbit, calendar_days, first_step, toa_insolation

S = 1361.0


def gauss_grid(nlat: int = 48, nlon: int = 96) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian latitudes (deg, S -> N), longitudes (deg) and [lat, lon] area weights summing to 1."""
    x, w = np.polynomial.legendre.leggauss(nlat)
    lat = torch.as_tensor(np.degrees(np.arcsin(x)))
    lon = torch.arange(nlon, dtype=torch.float64) * 360.0 / nlon
    area = torch.as_tensor(np.repeat((w / 2.0 / nlon)[:, None], nlon, axis=1))
    return lat, lon, area


def global_mean(field: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    return (field * area).sum(dim=(-2, -1))


def substellar_longitude(orbit: Orbit, time_days: torch.Tensor, nlon: int = 1440) -> torch.Tensor:
    """Longitude (deg) of the equator's brightest point on a 0.25° grid (obliquity 0: the sun is overhead)."""
    lon = torch.arange(nlon, dtype=torch.float64) * 360.0 / nlon
    equator = toa_insolation(time_days, torch.zeros(1, dtype=torch.float64), lon, orbit)[:, 0]
    return lon[equator.argmax(dim=-1)]


def angle_difference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.remainder(a - b + 180.0, 360.0) - 180.0


def test_global_mean_is_a_quarter_of_the_solar_constant_for_a_circular_orbit():
    lat, lon, area = gauss_grid()
    for period in (1.0, 3.7):
        orbit = Orbit(S, rotation_period_days=period, eccentricity=0.0, obliquity_deg=23.44)
        day = torch.arange(orbit.steps_per_clock_cycle, dtype=torch.float64) / orbit.steps_per_day
        daily = toa_insolation(day + 10.0, lat, lon, orbit).mean(dim=0)  # one full clock cycle
        assert abs(float(global_mean(daily, area)) - S / 4) < 0.01  # W m-2: quadrature of the terminator (2e-3)
        # and at every instant, which is what the GCM's snapshots hold
        instant = global_mean(toa_insolation(day, lat, lon, orbit), area)
        assert float((instant - S / 4).abs().max()) < 0.02  # measured 6e-3


def test_eccentric_orbit_distance_factor():
    """Berger's (a/r)²: between (1+e)⁻² and (1−e)⁻², and (1−e²)^(−1/2) averaged over the year."""
    lat, lon, area = gauss_grid(24, 48)
    e = 0.1
    orbit, circular = Orbit(S, eccentricity=e, obliquity_deg=0.0), Orbit(S, eccentricity=0.0, obliquity_deg=0.0)
    times = torch.arange(0, orbit.steps_per_year, 4, dtype=torch.float64) / orbit.steps_per_day
    # obliquity 0: the same sun overhead, only the distance differs (ratio free of quadrature error)
    factor = (global_mean(toa_insolation(times, lat, lon, orbit), area)
              / global_mean(toa_insolation(times, lat, lon, circular), area))
    assert float(factor.max()) == pytest.approx((1 - e) ** -2, rel=1e-5)
    assert float(factor.min()) == pytest.approx((1 + e) ** -2, rel=1e-5)
    assert float(factor.mean()) == pytest.approx((1 - e * e) ** -0.5, rel=1e-5)


def test_night_side_is_dark_and_substellar_point_gets_the_full_flux():
    lat, lon, _ = gauss_grid()
    orbit = Orbit(S, eccentricity=0.0, obliquity_deg=0.0)
    # fresh run: the first snapshot step ≡ 0 (mod steps per day) is at t = 1/32 d: sun over 180° E
    assert orbit.initial_step % orbit.steps_per_clock_cycle == 0
    field = toa_insolation(1.0 / 32.0, lat, lon, orbit)
    assert field.shape == (48, 96)
    away = angle_difference(lon, torch.tensor(180.0)).abs()
    assert float(field[:, away > 90.0].abs().max()) == 0.0
    assert float(field[:, away < 89.0].min()) > 0.0
    expected = S * torch.cos(torch.deg2rad(lat))[:, None] * torch.cos(torch.deg2rad(lon - 180.0)).clamp(min=0)
    torch.testing.assert_close(field, expected, rtol=0, atol=1e-9)


def test_sun_moves_west_by_360_degrees_per_rotation_period():
    for period in (1.0, 2.0):  # P = 2 d: the model's clock cycle is exactly 64 steps = P
        orbit = Orbit(S, rotation_period_days=period, eccentricity=0.0, obliquity_deg=0.0)
        assert orbit.steps_per_clock_cycle * orbit.step_minutes == pytest.approx(1440.0 * period)
        steps = torch.arange(0, 3 * orbit.steps_per_clock_cycle, 5, dtype=torch.float64)
        t = (steps + 1.0) / orbit.steps_per_day  # snapshot t holds step first_step + 32 t − 1
        expected = 180.0 - 360.0 * steps * orbit.step_minutes / (1440.0 * period)
        assert float(angle_difference(substellar_longitude(orbit, t), expected).abs().max()) <= 0.25


def test_non_earth_rotation_follows_the_models_truncated_clock():
    """P = 1.4855 d (a demo run): the hour angle turns at the sidereal rate but restarts every
    N_d = ⌊solar day/Δt⌋ = 47 steps, so once a cycle the sun skips 360°(1 − 47·45/(1440 P)) ≈ 4.1°
    further west than a step takes it."""
    period = 1.4854672
    orbit = Orbit(S, rotation_period_days=period, eccentricity=0.0, obliquity_deg=0.0)
    assert calendar_days(period) == 240 and orbit.steps_per_clock_cycle == 47
    assert orbit.initial_step == first_step(period, 45.0) == 32 * 240
    k = torch.arange(0, 120, dtype=torch.float64)
    t = (k + 1.0) / orbit.steps_per_day  # model steps first_step + k
    sub = substellar_longitude(orbit, t)
    phase = torch.remainder(orbit.initial_step + k, 47.0)
    expected = 180.0 - 360.0 * phase * 45.0 / (1440.0 * period)
    assert float(angle_difference(sub, expected).abs().max()) <= 0.25
    restart = int(torch.nonzero(phase == 0)[0])  # the clock's first restart
    per_step = 360.0 * 45.0 / (1440.0 * period)  # degrees west per step
    jump = float(angle_difference(sub[restart], sub[restart - 1]))
    assert jump == pytest.approx(-per_step - (360.0 - 47 * per_step), abs=0.5)  # back to 180°: 4.1° extra west
    # a continuous sidereal rotation would be > 1° off within two cycles
    sidereal = 180.0 - 360.0 * (orbit.initial_step + k) * 45.0 / (1440.0 * period)
    assert float(angle_difference(sub, sidereal).abs().max()) > 1.0


def test_seasons_and_synchronous_rotation():
    lat = torch.tensor([-90.0, 0.0, 90.0], dtype=torch.float64)
    lon = torch.arange(8, dtype=torch.float64) * 45.0
    orbit = Orbit(S, eccentricity=0.0, obliquity_deg=23.44)
    # a fresh run starts at 11520/11688 of ExoPlaSim's year: 5.5 days after the northern winter solstice
    first = toa_insolation(torch.arange(32, dtype=torch.float64) / 32, lat, lon, orbit)
    assert float(first[:, 2].max()) == 0.0 and float(first[:, 0].min()) > 0.0  # polar night / polar day
    polar = toa_insolation(torch.arange(0, 366, dtype=torch.float64), lat, lon, orbit)[:, 2, 0]
    assert float(polar.max()) == pytest.approx(S * math.sin(math.radians(23.44)), rel=1e-3)

    tidal = Orbit(S, eccentricity=0.0, obliquity_deg=10.0, synchronous=True, substellar_longitude_deg=90.0)
    fields = toa_insolation(torch.tensor([0.5, 3.25, 200.0], dtype=torch.float64), lat, lon, tidal)
    torch.testing.assert_close(fields[0], fields[1], rtol=0, atol=0)
    torch.testing.assert_close(fields[0], fields[2], rtol=0, atol=0)
    # declination = obliquity all year; the substellar point at 90° E
    assert float(fields[0, 1].argmax()) == 2
    assert float(fields[0, 1, 2]) == pytest.approx(S * math.cos(math.radians(10.0)), rel=1e-12)


def test_orbit_from_run_parameters_and_checks():
    params = {"instellation_W_m2": 1300.0, "rotation_period_days": 2.5, "obliquity_deg": 10.0,
              "eccentricity": 0.02, "synchronous": 0.0, "substellar_longitude_deg": 180.0, "radius_m": 6.4e6}
    orbit = Orbit.from_params(params, timestep_minutes=30.0)
    assert (orbit.solar_constant_W_m2, orbit.rotation_period_days, orbit.steps_per_day) == (1300.0, 2.5, 48)
    assert not orbit.synchronous and orbit.initial_step == 48 * calendar_days(2.5)
    with pytest.raises(KeyError, match="eccentricity"):
        Orbit.from_params({k: v for k, v in params.items() if k != "eccentricity"})
    with pytest.raises(ValueError, match="eccentricity"):
        Orbit(S, eccentricity=0.3)


def cube_snapshots(path) -> tuple[object, dict]:
    """Every (run, time) snapshot of the cube: {(run, day): rsdt [lat, lon] float64}."""
    from astrohpc.data.dataset import WindowDataset

    ds = WindowDataset(path, 1, 1, normalize=False)
    try:
        meta = ds.meta
        channel = int(meta.channels_of(["rsdt"])[0])
        snapshots = {}
        for i in range(len(ds)):
            item = ds[i]
            for j, field in enumerate((item["input"][0], item["target"][0])):
                snapshots[(item["run"], float(item["time"][j]))] = field[channel].double()
    finally:
        ds.close()
    return meta, snapshots


def test_reproduces_the_gcms_rsdt_at_every_snapshot(physics_cube):
    """Both smoke runs (1361 and 1300 W m-2, 5 daily snapshots) to float32 rounding: the cube's
    rsdt is rst − rsut, each written in float32 (ulp 1.2e-4 W m-2 at 1024-2048 W m-2); measured
    RMSE 2.5e-5, max 1.3e-4 W m-2. One model step (45 min) later would be tens of W m-2 off."""
    meta, snapshots = cube_snapshots(physics_cube)
    assert len(snapshots) == 10
    lat, lon = torch.as_tensor(meta.lat), torch.as_tensor(meta.lon)
    errors, shifted = [], []
    for run in range(meta.shape[0]):
        orbit = Orbit.from_params({k: v[run] for k, v in meta.params.items()},
                                  timestep_minutes=float(meta.time_step_s[run]) / 60.0)
        later = Orbit.from_params({k: v[run] for k, v in meta.params.items()}, timestep_minutes=orbit.timestep_minutes,
                                  start_step=orbit.initial_step + 1)
        times = sorted(t for r, t in snapshots if r == run)
        gcm = torch.stack([snapshots[(run, t)] for t in times])
        t = torch.tensor(times, dtype=torch.float64)
        errors.append(toa_insolation(t, lat, lon, orbit) - gcm)
        shifted.append(toa_insolation(t, lat, lon, later) - gcm)
    err = torch.cat(errors)
    rmse, worst = float(err.pow(2).mean().sqrt()), float(err.abs().max())
    assert rmse < 1e-4 and worst < 3e-4, (rmse, worst)  # W m-2; S/4 ≈ 340 W m-2
    assert float(torch.cat(shifted).pow(2).mean().sqrt()) > 10.0


def test_a_branched_sweep_task_records_where_its_clock_starts(tmp_path):
    """The sweep writes gcm.start_step for tasks branched from its spin-up; the converter passes
    it on as the run parameter `start_step`, which Orbit.from_params reads."""
    from astrohpc.gcm.calendar import first_step, restart_step, steps_per_day

    assert restart_step(1.0, 45.0, 360) == first_step(1.0, 45.0) + 360 * steps_per_day(45.0) == 23040
    params = {"instellation_W_m2": 1361.0, "rotation_period_days": 3.0, "obliquity_deg": 0.0,
              "eccentricity": 0.0, "start_step": 23040.0}
    assert Orbit.from_params(params).start_step == 23040
    assert Orbit.from_params({**params, "start_step": float("nan")}).start_step is None


def test_the_converter_records_a_fresh_runs_start_step(physics_cube):
    from astrohpc.data.cube import read_meta

    meta = read_meta(physics_cube)
    expected = [first_step(p, 45.0) for p in meta.params["rotation_period_days"]]
    assert meta.params["start_step"].tolist() == expected
