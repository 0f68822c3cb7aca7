"""Real GCM files by others convert into cubes whose values equal netCDF4's own reads."""

from __future__ import annotations

import json

import h5py
import netCDF4
import numpy as np
import pytest

from astrohpc.data import schema
from astrohpc.data.convert import convert
from astrohpc.data.settings import DataSettings
from astrohpc.errors import DataError

pytestmark = pytest.mark.shared


def channel_table(f) -> list[tuple[str, float]]:
    names = [v.decode() for v in f["channels/variable"][()]]
    return list(zip(names, f["channels/level"][()].tolist()))


def test_ncep_climatology_all_fields_equal_netcdf4_reads(geocat, tmp_path):
    src = geocat / "NCEP_06_climo.nc"
    cube = convert([src], tmp_path / "ncep.h5")
    with h5py.File(cube, "r") as f, netCDF4.Dataset(src) as ds:
        assert f.attrs["schema_version"] == schema.SCHEMA_VERSION
        fields = f["fields"]
        assert fields.chunks == (1, 1) + fields.shape[2:]
        table = channel_table(f)
        levels = {"T": "lev", "OMEGA": "lev1", "SHUM": "lev2"}
        for name in ("TS", "PS", "T", "OMEGA", "SHUM"):
            raw = ds[name][0]
            if raw.ndim == 2:
                c = table.index((name, pytest.approx(np.nan, nan_ok=True)))
                np.testing.assert_array_equal(fields[0, 0, c], raw)
            else:
                p_pa = ds[levels[name]][:].astype(np.float64) * 100.0
                for k, p in enumerate(p_pa):
                    c = table.index((name, pytest.approx(p)))
                    np.testing.assert_array_equal(fields[0, 0, c], raw[k])
        assert f["lat"].attrs["units"] == "degrees_north" and np.all(np.diff(f["lat"][()]) > 0)
        np.testing.assert_allclose(f["area_weight"][()].sum(axis=1), ds["gw"][:] / ds["gw"][:].sum(), rtol=1e-6)
        sources = f["sources/sha256"][()]
        assert len(sources) == 1 and len(sources[0]) == 64
        prov = json.loads(f.attrs["provenance"])
        assert prov["git"] is not None and "packages" in prov


def test_cam_hybrid_native_and_pressure_levels(geocat, tmp_path):
    src = geocat / "vinth2p.nc"
    native = convert([src], tmp_path / "native.h5", variables=["T", "PS"])
    targets_hpa = [1000, 850, 500, 200]
    plev = convert([src], tmp_path / "plev.h5", variables=["T"], levels="pressure:" + ",".join(map(str, targets_hpa)))
    with netCDF4.Dataset(src) as ds:
        T = ds["T"][:].astype(np.float64)
        ps = ds["PS"][:].astype(np.float64)
        hyam, hybm = ds["hyam"][:].astype(np.float64), ds["hybm"][:].astype(np.float64)
    with h5py.File(native, "r") as f:
        assert f["fields"].shape == (1, 2, 19, 64, 128)
        np.testing.assert_array_equal(f["fields"][0, :, :18], T.astype(np.float32))
        assert [k.decode() for k in f["channels/level_kind"][()]][:18] == ["hybrid"] * 18
    # independent computation at a few columns: np.interp in log p per column
    with h5py.File(plev, "r") as f:
        got = f["fields"][0]
        for t in range(2):
            for j, i in [(0, 0), (40, 60), (50, 17), (10, 100)]:
                p = hyam * 100000.0 + hybm * ps[t, j, i]
                for k, target in enumerate(targets_hpa):
                    x = np.log(target * 100.0)
                    ref = np.interp(x, np.log(p), T[t, :, j, i]) if np.log(p[0]) <= x <= np.log(p[-1]) else np.nan
                    np.testing.assert_allclose(got[t, k, j, i], ref, rtol=1e-6, equal_nan=True)
        assert np.isnan(got[:, 0]).any(), "1000 hPa must be masked below the surface somewhere (PS min ~ 498 hPa)"
        assert json.loads(f.attrs["provenance"])["notes"], "the P0 default must be recorded"


def test_latitudes_differing_by_7e6_degrees_are_one_grid_and_the_difference_is_recorded(geocat, tmp_path):
    a, b = geocat / "NCEP_06_climo.nc", geocat / "b003_TS_200-299.nc"
    cube = convert([a, b], tmp_path / "two.h5", variables=["TS"])
    with h5py.File(cube, "r") as f, netCDF4.Dataset(b) as ds:
        assert f["fields"].shape == (2, 100, 1, 64, 128)  # no row dropped
        assert f["time_count"][()].tolist() == [1, 100]
        np.testing.assert_array_equal(f["fields"][1, :, 0], ds["TS"][:])
        assert np.isnan(f["fields"][0, 1:]).all()  # past the end of the 1-step run: fill
        assert 5e-6 < f.attrs["grid_max_abs_diff_deg"] < 1e-5
    with pytest.raises(DataError, match=r"differ .* by up to 7.6\de-06 degrees"):
        convert([a, b], tmp_path / "strict.h5", variables=["TS"], settings=DataSettings(grid_tolerance_deg=1e-6))
    assert not (tmp_path / "strict.h5").exists()
