"""Field comparison of two GCM outputs: explicit alignment, weights and scores against numpy by hand,
on files the tests write, on real CAM-convention files from ../shared and on a real ExoPlaSim run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from astrohpc.analysis.compare_fields import compare_fields, comparison_table
from astrohpc.errors import DataError

REPO = Path(__file__).resolve().parents[2]
NLAT, NLON, NT, NLEV = 16, 32, 3, 4
LAT = np.linspace(-84.375, 84.375, NLAT)  # south -> north, 11.25° apart
LON = np.arange(NLON) * 11.25  # 0 .. 348.75
LEV = np.array([100.0, 300.0, 600.0, 900.0])


def field(lat, lon, time, lev=None):
    """A smooth field in K on physical coordinates (degrees): [time, (lev,) lat, lon]."""
    t, la, lo = np.meshgrid(time, np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    base = 250.0 + 40.0 * np.cos(la) ** 2 + 5.0 * np.sin(2 * lo) * np.cos(la) + 0.3 * t
    if lev is None:
        return base
    return base[:, None] * (np.asarray(lev) / 1000.0)[None, :, None, None] ** 0.2


def perturbation(lat, lon, time, lev=None):
    """The known difference candidate − reference (K)."""
    t, la, lo = np.meshgrid(time, np.deg2rad(lat), np.deg2rad(lon), indexing="ij")
    p = 0.5 + 0.1 * t + 2.0 * np.sin(la) * np.cos(lo)
    return p if lev is None else p[:, None] + 0.01 * np.asarray(lev)[None, :, None, None]


def write_file(path, lat, lon, perturbed=False, time=None, gw=None, lat_bnds=None, cf_names=True, units="K"):
    """A small GCM-like file with ts [time, lat, lon] and ta [time, lev, lat, lon] (float64);
    time defaults to 0 .. NT-1."""
    time = np.arange(NT, dtype=np.float64) if time is None else time
    ts, ta = field(lat, lon, time), field(lat, lon, time, LEV)
    if perturbed:
        ts, ta = ts + perturbation(lat, lon, time), ta + perturbation(lat, lon, time, LEV)
    lat_attrs = {"units": "degrees_north"} if cf_names else {"units": "deg", "standard_name": "latitude"}
    lon_attrs = {"units": "degrees_east"} if cf_names else {"units": "deg", "standard_name": "longitude"}
    lat_name, lon_name = ("lat", "lon") if cf_names else ("y_coord", "x_coord")
    data = {"ts": (("time", lat_name, lon_name), ts, {"units": units}),
            "ta": (("time", "lev", lat_name, lon_name), ta, {"units": units})}
    if gw is not None:
        data["gw"] = ((lat_name,), gw, {"long_name": "gauss weights"})
    if lat_bnds is not None:
        data["lat_bnds"] = ((lat_name, "nbnd"), lat_bnds)
        lat_attrs = {**lat_attrs, "bounds": "lat_bnds"}
    ds = xr.Dataset({k: xr.Variable(*v) for k, v in data.items()},
                    coords={"time": ("time", time, {"units": "days since 2000-01-01"}),
                            "lev": ("lev", LEV, {"units": "hPa", "positive": "down"}),
                            lat_name: (lat_name, np.asarray(lat, np.float64), lat_attrs),
                            lon_name: (lon_name, np.asarray(lon, np.float64), lon_attrs)})
    ds.to_netcdf(path, engine="netcdf4")
    return path


def expected_scores(diff, ref, cand, w_lat):
    """RMSE, bias, max |diff| and the pattern correlation of the time means, by hand.
    diff, ref, cand: [time, lat, lon] on the reference grid; w_lat: [lat]."""
    w = np.broadcast_to(w_lat[None, :, None], diff.shape)
    rmse = np.sqrt((w * diff**2).sum() / w.sum())
    bias = (w * diff).sum() / w.sum()
    rm, cm, w2 = ref.mean(0), cand.mean(0), np.broadcast_to(w_lat[:, None], ref.shape[1:])
    ra, ca = rm - np.average(rm, weights=w2), cm - np.average(cm, weights=w2)
    corr = (w2 * ra * ca).sum() / np.sqrt((w2 * ra**2).sum() * (w2 * ca**2).sum())
    return rmse, bias, np.abs(diff).max(), corr


@pytest.fixture
def flipped_pair(tmp_path):
    """Reference: lat S→N, lon 0..360. Candidate: lat N→S, lon −180..180, CF standard_names
    under other names, plus the known perturbation."""
    ref = write_file(tmp_path / "ref.nc", LAT, LON)
    cand_lon = np.concatenate([LON[NLON // 2:] - 360.0, LON[:NLON // 2]])  # -180 .. 168.75
    cand = write_file(tmp_path / "cand.nc", LAT[::-1], cand_lon, perturbed=True, cf_names=False)
    return ref, cand


def test_flip_and_roll_are_reported_and_the_perturbation_recovered(flipped_pair):
    ref, cand = flipped_pair
    result = compare_fields(ref, cand, "ts")
    actions = {(s["axis"], s["action"]) for s in result["method"]["alignment"]}
    assert actions == {("lat", "flip"), ("lon", "convention"), ("lon", "roll")}
    assert result["method"]["weights"] == "cos(latitude)"
    assert result["method"]["time"] == {"mode": "paired", "steps_reference": NT, "steps_candidate": NT,
                                        "compared": NT, "time_values_equal": True}
    time = np.arange(NT, dtype=np.float64)
    r = field(LAT, LON, time)
    p = perturbation(LAT, LON, time)
    rmse, bias, max_abs, corr = expected_scores(p, r, r + p, np.cos(np.deg2rad(LAT)))
    assert result["rmse"] == pytest.approx(rmse, rel=1e-12)
    assert result["bias"] == pytest.approx(bias, rel=1e-12)
    assert result["max_abs_diff"] == pytest.approx(max_abs, rel=1e-12)
    assert result["pattern_correlation"] == pytest.approx(corr, rel=1e-12)
    assert result["units"] == "K" and result["levels"] == [] and result["masked_values"] == 0
    assert "flip" in comparison_table(result)


def test_levels_get_one_row_each(flipped_pair):
    ref, cand = flipped_pair
    result = compare_fields(ref, cand, "ta", time_mean=True)
    assert result["method"]["time"]["mode"] == "time-mean"
    assert [row["value"] for row in result["levels"]] == LEV.tolist()
    time = np.arange(NT, dtype=np.float64)
    r, p = field(LAT, LON, time, LEV).mean(0), perturbation(LAT, LON, time, LEV).mean(0)
    w = np.cos(np.deg2rad(LAT))
    for k, row in enumerate(result["levels"]):
        rmse, bias, max_abs, corr = expected_scores(p[None, k], r[None, k], r[None, k] + p[None, k], w)
        assert (row["rmse"], row["bias"], row["max_abs_diff"], row["pattern_correlation"]) == pytest.approx(
            (rmse, bias, max_abs, corr), rel=1e-12)
    # overall: every level counted with equal weight
    rmse, bias, _, _ = expected_scores(p, r, r + p, w)
    assert (result["rmse"], result["bias"]) == pytest.approx((rmse, bias), rel=1e-12)


def test_gw_weights_are_used_when_present(tmp_path):
    x, gw = np.polynomial.legendre.leggauss(NLAT)  # a Gaussian grid, south -> north
    lat = np.rad2deg(np.arcsin(x))
    ref = write_file(tmp_path / "ref.nc", lat, LON, gw=gw)
    cand = write_file(tmp_path / "cand.nc", lat[::-1], LON, perturbed=True, gw=gw[::-1])
    result = compare_fields(ref, cand, "ts")
    assert result["method"]["weights"] == "gw (reference file)"
    assert not result["method"]["notes"]  # the candidate's gw agrees once flipped
    time = np.arange(NT, dtype=np.float64)
    r, p = field(lat, LON, time), perturbation(lat, LON, time)
    rmse, bias, _, _ = expected_scores(p, r, r + p, gw)
    assert (result["rmse"], result["bias"]) == pytest.approx((rmse, bias), rel=1e-12)
    # the weights matter: cos(lat) would give another answer here
    cos_rmse, _, _, _ = expected_scores(p, r, r + p, np.cos(np.deg2rad(lat)))
    assert abs(rmse - cos_rmse) > 1e-6


def test_latitude_bounds_give_the_weights_without_gw(tmp_path):
    edges = np.linspace(-90.0, 90.0, NLAT + 1)
    bnds = np.stack([edges[:-1], edges[1:]], axis=1)
    ref = write_file(tmp_path / "ref.nc", LAT, LON, lat_bnds=bnds)
    cand = write_file(tmp_path / "cand.nc", LAT, LON, perturbed=True)
    result = compare_fields(ref, cand, "ts")
    assert result["method"]["weights"] == "latitude bounds 'lat_bnds'"
    w = np.sin(np.deg2rad(edges[1:])) - np.sin(np.deg2rad(edges[:-1]))
    time = np.arange(NT, dtype=np.float64)
    r, p = field(LAT, LON, time), perturbation(LAT, LON, time)
    assert result["rmse"] == pytest.approx(expected_scores(p, r, r + p, w)[0], rel=1e-12)


def test_coordinates_within_tolerance_are_equal_and_reported(tmp_path):
    ref = write_file(tmp_path / "ref.nc", LAT, LON)
    cand = write_file(tmp_path / "cand.nc", LAT + 1e-6, LON)
    result = compare_fields(ref, cand, "ts")
    [step] = result["method"]["alignment"]
    assert step["axis"] == "lat" and step["action"] == "within_tolerance"
    assert step["max_diff_deg"] == pytest.approx(1e-6, rel=1e-6)
    assert result["method"]["coordinates"]["lat"] == {"size": NLAT, "max_diff_deg": step["max_diff_deg"]}
    # the values are the field at the shifted points, compared on the reference's grid
    time = np.arange(NT, dtype=np.float64)
    r, c = field(LAT, LON, time), field(LAT + 1e-6, LON, time)
    assert result["rmse"] == pytest.approx(expected_scores(c - r, r, c, np.cos(np.deg2rad(LAT)))[0], rel=1e-9)


@pytest.mark.parametrize("axis", ["lat", "lon"])
def test_coordinates_beyond_tolerance_are_an_error_naming_the_axis(tmp_path, axis):
    ref = write_file(tmp_path / "ref.nc", LAT, LON)
    shifted = {"lat": (LAT + 0.5, LON), "lon": (LAT, LON + 0.5)}[axis]
    cand = write_file(tmp_path / "cand.nc", *shifted)
    with pytest.raises(DataError) as err:
        compare_fields(ref, cand, "ts")
    message = str(err.value)
    assert message.startswith(f"{axis}:") and "0.5" in message and "regrid" in message
    assert str(ref) in message and str(cand) in message


def test_other_sizes_times_and_units_are_errors(tmp_path):
    ref = write_file(tmp_path / "ref.nc", LAT, LON)
    coarse = write_file(tmp_path / "coarse.nc", LAT[::2], LON)
    with pytest.raises(DataError, match="lat: .* 16 points, .* 8"):
        compare_fields(ref, coarse, "ts")
    longer = write_file(tmp_path / "longer.nc", LAT, LON, time=np.arange(5.0))
    with pytest.raises(DataError, match="--time-mean"):
        compare_fields(ref, longer, "ts")
    assert compare_fields(ref, longer, "ts", time_mean=True)["method"]["time"]["steps_candidate"] == 5
    celsius = write_file(tmp_path / "celsius.nc", LAT, LON, units="degC")
    with pytest.raises(DataError, match="'K' .* 'degC'"):
        compare_fields(ref, celsius, "ts")
    with pytest.raises(DataError, match="no variable 'pr'"):
        compare_fields(ref, ref, "pr")


def test_time_steps_with_other_values_are_paired_by_position_and_said_so(tmp_path):
    ref = write_file(tmp_path / "ref.nc", LAT, LON)
    later = write_file(tmp_path / "later.nc", LAT, LON, time=np.arange(NT) + 365.0)
    result = compare_fields(ref, later, "ts")
    assert result["method"]["time"]["time_values_equal"] is False
    assert "paired by position" in result["method"]["time"]["detail"]


@pytest.mark.shared
def test_real_cam_files_with_latitudes_off_by_float_noise(shared_real):
    """NCEP_06_climo.nc and b003_TS_200-299.nc: both T42 with gw, latitudes ~7.6e-6° apart —
    the trap where label alignment silently drops rows (see ../shared/data/real/MANIFEST.md)."""
    ref, cand = shared_real / "earth/geocat/NCEP_06_climo.nc", shared_real / "earth/geocat/b003_TS_200-299.nc"
    result = compare_fields(ref, cand, "TS", time_mean=True)
    [step] = result["method"]["alignment"]
    assert step["axis"] == "lat" and step["action"] == "within_tolerance"
    assert 1e-6 < step["max_diff_deg"] < 1e-5
    assert result["method"]["weights"] == "gw (reference file)"
    assert result["method"]["time"]["steps_candidate"] == 100
    # raw values (neither file has a fill value in TS: masked_values 0 below)
    with xr.open_dataset(ref, decode_cf=False) as a, xr.open_dataset(cand, decode_cf=False) as b:
        # label-based alignment would have lost rows; the comparison kept all 64
        assert xr.align(a.lat, b.lat, join="inner")[0].size < 64
        r, c = a.TS.values[0].astype(np.float64), b.TS.values.astype(np.float64).mean(0)
        gw = a.gw.values.astype(np.float64)
    assert result["method"]["coordinates"]["lat"]["size"] == 64 and result["masked_values"] == 0
    rmse, bias, max_abs, corr = expected_scores((c - r)[None], r[None], c[None], gw)
    assert (result["rmse"], result["bias"], result["max_abs_diff"], result["pattern_correlation"]) == pytest.approx(
        (rmse, bias, max_abs, corr), rel=1e-6)
    assert result["units"] == "K" and 0.5 < result["pattern_correlation"] < 1.0


def test_cli_writes_json_and_fails_with_exit_2_on_a_missing_file(flipped_pair, tmp_path):
    ref, cand = flipped_pair
    out = tmp_path / "parity.json"
    cmd = [sys.executable, "-m", "astrohpc", "parity", "compare", str(ref), str(cand), "--var", "ts",
           "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result == json.loads(json.dumps(compare_fields(ref, cand, "ts")))
    assert "rmse" in proc.stdout and "flip" in proc.stdout

    missing = tmp_path / "nowhere.nc"
    proc = subprocess.run([*cmd[:5], str(missing), str(cand), "--var", "ts"], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 2
    assert str(missing) in proc.stderr and "astrohpc: error:" in proc.stderr


@pytest.mark.exoplasim
def test_a_real_exoplasim_output_against_itself_scores_zero(smoke_gcm_run):
    nc = smoke_gcm_run / "output" / "exoplasim.nc"
    assert nc.is_file(), f"the smoke run has no {nc.name}: {sorted(p.name for p in nc.parent.iterdir())}"
    result = compare_fields(nc, nc, "ta")
    assert result["method"]["alignment"] == []
    assert result["method"]["weights"] == "cos(latitude)"  # ExoPlaSim writes neither gw nor bounds
    assert result["rmse"] == 0.0 and result["bias"] == 0.0 and result["max_abs_diff"] == 0.0
    assert result["pattern_correlation"] == pytest.approx(1.0, abs=1e-12)
    assert len(result["levels"]) == 10 and all(row["rmse"] == 0.0 for row in result["levels"])
    surface = compare_fields(nc, nc, "ts", time_mean=True)
    assert surface["rmse"] == 0.0 and surface["levels"] == [] and surface["units"] == "K"
