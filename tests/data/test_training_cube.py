"""Schema 1.1 on a cube converted from the real smoke ExoPlaSim run: fluxes, derived variables,
static fields, σ interfaces, time in days, run parameters per window, channel selection,
crash-safe area-weighted statistics, and the errors of bad input. Runs in every clone."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from astrohpc.config import load_config
from astrohpc.data.convert import convert, convert_run_dirs
from astrohpc.data.cube import open_file, read_meta
from astrohpc.data.dataset import WindowDataset
from astrohpc.errors import DataError

REPO = Path(__file__).resolve().parents[2]
EXOPLASIM_DATA = REPO / "configs" / "data" / "exoplasim.yaml"
pytestmark = pytest.mark.exoplasim


@pytest.fixture(scope="module")
def settings():
    return load_config(EXOPLASIM_DATA).data


@pytest.fixture(scope="module")
def plain_settings():
    """For the run's NetCDF file converted on its own: the model step and record interval."""
    return load_config(EXOPLASIM_DATA, ["data.source_step_minutes=45", "data.source_output_interval_days=1"]).data


@pytest.fixture(scope="module")
def cube(smoke_gcm_run, settings, tmp_path_factory) -> Path:
    return convert_run_dirs([smoke_gcm_run], tmp_path_factory.mktemp("c") / "smoke.h5", settings=settings)


@pytest.fixture(scope="module")
def summary(smoke_gcm_run) -> dict:
    import json

    return json.loads((smoke_gcm_run / "summary.json").read_text())


def _values(cube: Path, variable: str) -> np.ndarray:
    """float64 [time, level(s), lat, lon] of one variable, all levels."""
    meta = read_meta(cube)
    with open_file(cube) as f:
        return f["fields"][0, : meta.time_count[0]][:, meta.channels_of([variable])].astype(np.float64)


def test_the_cube_holds_what_the_physics_needs(cube, settings, summary):
    meta = read_meta(cube)
    assert set(meta.variables) == set(settings.variables)
    assert set(meta.static) == {"sg", "lsm"} and meta.static["sg"].shape == (1, 32, 64)
    assert meta.static_units["sg"] == "m2 s-2"
    units = {v: meta.units[meta.channel(v)] for v in ("ps", "rsdt", "rlut", "hfss", "zg", "ta")}
    assert units == {"ps": "Pa", "rsdt": "W m-2", "rlut": "W m-2", "hfss": "W m-2", "zg": "m", "ta": "K"}
    # time: days since the run's start (daily snapshots, the first one day in), and the model step
    np.testing.assert_array_equal(meta.time_days[0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert meta.time_step_s.tolist() == [summary["gcm"]["timestep_minutes"] * 60.0]


def test_sigma_interfaces_reproduce_the_full_levels(cube):
    meta = read_meta(cube)
    half = meta.vertical["sigma_half"]
    sigma = meta.levels[meta.channels_of(["ta"])]
    assert half[0] == 0.0 and half[-1] == 1.0 and np.all(np.diff(half) > 0)
    np.testing.assert_allclose(0.5 * (half[:-1] + half[1:]), sigma, atol=2e-6)
    # PlaSim's default vertical grid (plasim.f90): σ_{k+1/2} = 0.75 z + 1.75 z³ − 1.5 z⁴, z = k/N
    z = np.arange(1, sigma.size + 1) / sigma.size
    np.testing.assert_allclose(half[1:], 0.75 * z + 1.75 * z**3 - 1.5 * z**4, atol=3e-6)


def test_incoming_shortwave_is_the_orbit_s_insolation(cube, summary):
    """rsdt = rst − rsut; its global mean at each step is S/4 × (a/r)², with r within the orbit."""
    meta = read_meta(cube)
    np.testing.assert_allclose(_values(cube, "rsdt"), _values(cube, "rst") - _values(cube, "rsut"), atol=1e-3)
    w = meta.area_weight
    mean = np.einsum("tij,ij->t", _values(cube, "rsdt")[:, 0], w)
    planet = summary["planet"]
    quarter, e = planet["instellation_W_m2"] / 4, planet["eccentricity"]
    assert np.all(mean > quarter / (1 + e) ** 2 - 0.5) and np.all(mean < quarter / (1 - e) ** 2 + 0.5)
    # net TOA flux = absorbed shortwave + (negative) outgoing longwave, as ExoPlaSim writes it
    np.testing.assert_allclose(_values(cube, "ntr"), _values(cube, "rst") + _values(cube, "rlut"), atol=0.05)


def test_geopotential_height_is_hydrostatic(cube, summary):
    """zg rises upward from the surface geopotential, and each layer's thickness matches the
    hypsometric equation with the layer's mean virtual temperature to within 2.5 % (a different
    discretisation from Simmons-Burridge's: they differ most in the thick top and bottom layers)."""
    planet = summary["planet"]
    meta = read_meta(cube)
    zg, ta, hus = _values(cube, "zg"), _values(cube, "ta"), _values(cube, "hus")
    sigma = meta.levels[meta.channels_of(["ta"])]
    assert np.all(np.diff(zg, axis=1) < 0)  # levels run top -> bottom
    assert np.all(zg[:, -1] > meta.static["sg"][0] / planet["gravity_m_s2"])
    tv = ta * (1 + (461.51 / planet["gas_constant_J_kg_K"] - 1) * hus)
    thickness = zg[:, :-1] - zg[:, 1:]
    expected = planet["gas_constant_J_kg_K"] / planet["gravity_m_s2"] * 0.5 * (tv[:, :-1] + tv[:, 1:]) \
        * np.log(sigma[1:] / sigma[:-1])[None, :, None, None]
    np.testing.assert_allclose(thickness, expected, rtol=0.025)


def test_geopotential_height_uses_the_run_s_gravity(smoke_gcm_run, plain_settings, tmp_path):
    nc = smoke_gcm_run / "output" / "exoplasim_snapshot.nc"
    params = [{"gas_constant_J_kg_K": 287.05, "gravity_m_s2": g} for g in (9.8, 4.9)]
    path = convert([nc, nc], tmp_path / "g.h5", settings=plain_settings, run_params=params)
    meta = read_meta(path)
    with open_file(path) as f:
        zg = f["fields"][:, :, meta.channels_of(["zg"])].astype(np.float64)
    np.testing.assert_allclose(zg[1], 2 * zg[0], rtol=1e-6)


def test_windows_carry_parameters_static_fields_and_time(cube):
    ds = WindowDataset(cube, input_steps=2, target_steps=1, static=True)
    item = ds[1]
    meta = ds.meta
    assert item["params"].shape == (len(meta.param_names),) and item["params"].dtype.is_floating_point
    assert item["static"].shape == (2, 32, 64)
    assert item["time"].tolist() == [2.0, 3.0, 4.0]
    norm = ds.param_norm
    # partial pressures are read on a log scale; a one-run cube centres everything at 0
    assert norm["transform"][norm["names"].index("pCO2_bar")] == "log10"
    assert norm["transform"][norm["names"].index("instellation_W_m2")] == "identity"
    assert np.all(item["params"].numpy() == 0)


def test_channel_selection_returns_the_same_values(cube):
    full = WindowDataset(cube, 1, 1)
    some = WindowDataset(cube, 1, 1, variables=["ps", "ta"])
    picks = full.meta.channels_of(["ps", "ta"])
    assert len(picks) == 11 and some.channel_names[0] == "ps" and some.channel_names[1].startswith("ta@")
    np.testing.assert_array_equal(some[3]["input"].numpy(), full[3]["input"].numpy()[:, picks])
    with pytest.raises(DataError, match="no variable 'rsds'"):
        WindowDataset(cube, 1, 1, variables=["rsds"])


def test_parameters_across_runs_are_normalised_over_the_runs(smoke_gcm_run, plain_settings, tmp_path):
    nc = smoke_gcm_run / "output" / "exoplasim_snapshot.nc"
    params = [{"gas_constant_J_kg_K": 287.0, "gravity_m_s2": 9.8, "pCO2_bar": 1e-4},
              {"gas_constant_J_kg_K": 287.0, "gravity_m_s2": 9.8, "pCO2_bar": 1e-2}]
    path = convert([nc, nc], tmp_path / "two.h5", settings=plain_settings, run_params=params)
    ds = WindowDataset(path, 1, 1)
    assert ds.param_norm["names"] == ["gas_constant_J_kg_K", "gravity_m_s2", "pCO2_bar"]
    first, second = ds[0]["params"].numpy(), ds[len(ds) - 1]["params"].numpy()
    np.testing.assert_allclose(first, [0, 0, -1], atol=1e-6)  # log10: -4 and -2, z-scored
    np.testing.assert_allclose(second, [0, 0, 1], atol=1e-6)
    assert ds.meta.time_days[1].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_a_parameter_missing_for_some_runs_is_one_clear_error(smoke_gcm_run, plain_settings, tmp_path):
    nc = smoke_gcm_run / "output" / "exoplasim_snapshot.nc"
    base = {"gas_constant_J_kg_K": 287.0, "gravity_m_s2": 9.8}
    path = convert([nc, nc], tmp_path / "gap.h5", settings=plain_settings,
                   run_params=[{**base, "pCO2_bar": 1e-4}, dict(base)])
    with pytest.raises(DataError, match=r"pCO2_bar missing for run\(s\) exoplasim_snapshot.*params="):
        WindowDataset(path, 1, 1)
    assert WindowDataset(path, 1, 1, params=["gravity_m_s2"])[0]["params"].shape == (1,)


def test_derived_variables_need_their_inputs_and_constants(smoke_gcm_run, plain_settings, tmp_path):
    nc = smoke_gcm_run / "output" / "exoplasim_snapshot.nc"
    with pytest.raises(DataError, match=r"derived variables need the planet's gas_constant_J_kg_K, gravity_m_s2"):
        convert([nc], tmp_path / "x.h5", settings=plain_settings)
    means = smoke_gcm_run / "output" / "exoplasim.nc"
    from dataclasses import replace

    with pytest.raises(DataError, match=r"static variable 'orog' not found"):
        convert([means], tmp_path / "y.h5", settings=replace(plain_settings, static_variables=["orog"],
                                                              source_output_interval_days=5),
                run_params=[{"gas_constant_J_kg_K": 287.0, "gravity_m_s2": 9.8}])
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


def test_an_energy_loss_on_a_cube_without_fluxes_names_what_is_missing(smoke_gcm_run, tmp_path):
    path = convert_run_dirs([smoke_gcm_run], tmp_path / "state.h5",
                            settings=load_config(None, ["data.variables=[ts,ps,ta]"]).data)
    meta = read_meta(path)
    with pytest.raises(DataError, match=r"energy budget needs rsdt, rsut, rlut; the cube lacks rsdt, rsut, rlut"):
        meta.require(["rsdt", "rsut", "rlut"], "the energy budget")


def test_a_schema_1_0_cube_is_refused_with_reconvert(cube, tmp_path):
    import h5py

    old = tmp_path / "old.h5"
    shutil.copy(cube, old)
    with h5py.File(old, "r+", locking=False) as f:
        f.attrs["schema_version"] = "1.0"
    with pytest.raises(DataError, match=r"schema 1.0, this astrohpc reads 1.1.*reconvert"):
        WindowDataset(old, 1, 1)


# ---------------------------------------------------------------------------- statistics


def _serial_weighted(cube: Path, weighted: bool) -> tuple[np.ndarray, np.ndarray]:
    meta = read_meta(cube)
    with open_file(cube) as f:
        x = f["fields"][0, : meta.time_count[0]].astype(np.float64)  # [t, C, lat, lon]
    w = meta.area_weight if weighted else np.ones(meta.area_weight.shape)
    w = np.broadcast_to(w, x[:, 0].shape)
    mean = np.einsum("tcij,tij->c", x, w) / w.sum()
    var = np.einsum("tcij,tij->c", (x - mean[None, :, None, None]) ** 2, w) / w.sum()
    return mean, np.sqrt(var)


@pytest.mark.parametrize("weighting", ["area", "none"])
def test_statistics_equal_a_serial_float64_computation(cube, tmp_path, weighting):
    from astrohpc.data.stats import run_stats

    path = tmp_path / "s.h5"
    shutil.copy(cube, path)
    run_stats(path, weighting=weighting)
    stats = read_meta(path).stats
    assert stats["weighting"] == weighting
    mean, std = _serial_weighted(path, weighting == "area")
    np.testing.assert_allclose(stats["fields"]["mean"], mean, rtol=1e-12, atol=1e-12 * np.abs(mean).max())
    np.testing.assert_allclose(stats["fields"]["std"], std, rtol=1e-9, atol=1e-12)
    # one run: the per-run statistics are the cube's
    np.testing.assert_allclose(stats["runs"]["fields"]["mean"][0], stats["fields"]["mean"], rtol=1e-14)


def test_area_weighting_changes_what_a_polar_field_averages_to(cube, tmp_path):
    from astrohpc.data.stats import compute_stats

    area, flat = compute_stats(cube, weighting="area"), compute_stats(cube, weighting="none")
    c = read_meta(cube).channel("rsdt")  # insolation is low at the poles: equal-cell means underweight the tropics
    assert area["fields"]["mean"][c] > flat["fields"]["mean"][c] + 10


def test_stats_go_to_a_sidecar_and_never_touch_the_cube(cube, tmp_path):
    from astrohpc.checksum import sha256_file
    from astrohpc.data.schema import stats_path
    from astrohpc.data.stats import run_stats

    path = tmp_path / "side.h5"
    shutil.copy(cube, path)
    before = sha256_file(path)
    run_stats(path)
    assert stats_path(path) == tmp_path / "side.stats.h5" and stats_path(path).is_file()
    assert sha256_file(path) == before


def test_a_killed_stats_run_leaves_the_cube_and_the_previous_statistics(cube, tmp_path):
    """SIGKILL inside the write, after the new statistics are written and before the rename."""
    from astrohpc.checksum import sha256_file
    from astrohpc.data.schema import stats_path
    from astrohpc.data.stats import run_stats

    path = tmp_path / "k.h5"
    shutil.copy(cube, path)
    run_stats(path, weighting="none")
    cube_sum, stats_sum = sha256_file(path), sha256_file(stats_path(path))
    script = ("import os, signal, sys\nimport astrohpc.atomic_write as aw\n"
              "aw.os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
              "from astrohpc.data.stats import run_stats\nrun_stats(sys.argv[1], weighting='area')\n")
    proc = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert sha256_file(path) == cube_sum and sha256_file(stats_path(path)) == stats_sum
    assert read_meta(path).stats["weighting"] == "none"


def test_statistics_of_a_reconverted_cube_are_refused(smoke_gcm_run, settings, tmp_path):
    from astrohpc.data.stats import run_stats

    path = convert_run_dirs([smoke_gcm_run], tmp_path / "r.h5", settings=settings)
    run_stats(path)
    os.replace(convert_run_dirs([smoke_gcm_run], tmp_path / "r2.h5", settings=settings), path)
    with pytest.raises(DataError, match="statistics of another cube.*run `astrohpc data stats"):
        read_meta(path)
