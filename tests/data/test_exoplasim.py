"""ExoPlaSim output from the GCM runner (configs/gcm/smoke.yaml) converts with the right
orientation, units and per-run parameters."""

from __future__ import annotations

import json
import shutil

import h5py
import netCDF4
import numpy as np
import pytest

from astrohpc.data.convert import convert, convert_run_dirs
from astrohpc.errors import DataError

pytestmark = pytest.mark.exoplasim


def snapshot_file(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    return run_dir / next(e["path"] for e in summary["files"] if e["kind"] == "snapshots"), summary


def test_snapshots_convert_south_to_north_with_units_and_planet(smoke_gcm_run, tmp_path):
    src, summary = snapshot_file(smoke_gcm_run)
    cube = convert_run_dirs([smoke_gcm_run], tmp_path / "cube.h5", kind="snapshots")
    with h5py.File(cube, "r") as f, netCDF4.Dataset(src) as ds:
        lat_src = ds["lat"][:]
        assert lat_src[0] > lat_src[-1], "ExoPlaSim writes latitude north->south"
        np.testing.assert_allclose(f["lat"][()], lat_src[::-1], rtol=0, atol=1e-5)
        assert f["lat"].attrs["units"] == "degrees_north"
        names = [v.decode() for v in f["channels/variable"][()]]
        units = dict(zip(names, (u.decode() for u in f["channels/units"][()])))
        assert units["ta"] == "K" and units["ps"] == "hPa"
        kinds = dict(zip(names, (k.decode() for k in f["channels/level_kind"][()])))
        assert kinds["ta"] == "sigma" and kinds["ts"] == "surface"
        t = names.index("ts")
        np.testing.assert_array_equal(f["fields"][0, :, t], ds["ts"][:, ::-1, :])
        c = names.index("ta") + 3
        np.testing.assert_array_equal(f["fields"][0, :, c], ds["ta"][:, 3, ::-1, :])
        assert f["source_time_units"][0].decode() == "timesteps"
        np.testing.assert_array_equal(f["source_time"][0], ds["time"][:])
        # daily snapshots: days 1..5 since the run's start, 45-minute model steps
        np.testing.assert_array_equal(f["time_days"][0], np.arange(1, ds["time"].size + 1))
        assert f["time_days"].attrs["units"] == "days" and f["time_step_s"][0] == 2700.0
        for key, value in summary["planet"].items():
            if isinstance(value, float):
                assert f[f"runs/params/{key}"][0] == value
        assert json.loads(f.attrs["provenance"])["latitude_flipped"] is True
        assert f["area_weight"][()].sum() == pytest.approx(1.0, abs=1e-12)
        assert "Gauss" in f["area_weight"].attrs["source"]


def test_sigma_to_pressure_uses_ps_in_hpa(smoke_gcm_run, tmp_path):
    src, _ = snapshot_file(smoke_gcm_run)
    cube = convert([smoke_gcm_run], tmp_path / "p.h5", variables=["ta"], levels="pressure:850,500,100")
    with h5py.File(cube, "r") as f, netCDF4.Dataset(src) as ds:
        sigma = ds["lev"][:].astype(np.float64)
        ps_pa = ds["ps"][0, 5, 7] * 100.0  # source row 5 is cube row 31 - 5
        ta = ds["ta"][0, :, 5, 7].astype(np.float64)
        for k, p in enumerate([85000.0, 50000.0, 10000.0]):
            expect = np.interp(np.log(p), np.log(sigma * ps_pa), ta)
            assert f["fields"][0, 0, k, f["lat"].shape[0] - 1 - 5, 7] == pytest.approx(expect, rel=1e-6)


def test_unfinished_runs_are_skipped_and_truncated_netcdf4_is_named(smoke_gcm_run, tmp_path):
    failed = tmp_path / "failed"
    shutil.copytree(smoke_gcm_run, failed)
    summary = json.loads((failed / "summary.json").read_text())
    summary["status"] = "failed"
    (failed / "summary.json").write_text(json.dumps(summary))
    cube = convert_run_dirs([smoke_gcm_run, failed], tmp_path / "one.h5")
    with h5py.File(cube, "r") as f:
        assert f["fields"].shape[0] == 1
    src, _ = snapshot_file(smoke_gcm_run)
    short = tmp_path / "short.nc"
    short.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(DataError, match="short.nc"):
        convert([short], tmp_path / "bad.h5")
    assert not (tmp_path / "bad.h5").exists()


@pytest.mark.shared
def test_exoplasim_and_cam_grids_do_not_mix(smoke_gcm_run, geocat, tmp_path):
    src, _ = snapshot_file(smoke_gcm_run)
    with pytest.raises(DataError, match=r"grid 64x128 \(lat x lon\) differs from .*: 32x64"):
        convert([src, geocat / "b003_TS_200-299.nc"], tmp_path / "mixed.h5")
    assert not (tmp_path / "mixed.h5").exists()
