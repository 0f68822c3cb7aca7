"""Bad input gives one clear DataError and leaves no output (not even a temporary file)."""

from __future__ import annotations

import shutil

import netCDF4
import numpy as np
import pytest

from astrohpc.data.convert import convert
from astrohpc.data.cube import open_file
from astrohpc.errors import DataError

pytestmark = pytest.mark.shared


def assert_no_output(folder):
    assert [p.name for p in folder.iterdir() if p.suffix in (".h5", ".tmp") or p.name.startswith(".")] == []


def test_nan_injected_into_a_real_field_is_counted_and_located(geocat, tmp_path):
    src = tmp_path / "in" / "vinth2p.nc"
    src.parent.mkdir()
    shutil.copy(geocat / "vinth2p.nc", src)
    src.chmod(0o644)
    with netCDF4.Dataset(src, "a") as ds:
        ds["T"][1, 3, 10, 20] = np.nan
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=r"vinth2p.nc: variable 'T': 1 non-finite .* first is NaN at "
                                        r"time=1, lev=3, lat=10, lon=20"):
        convert([src], out / "cube.h5")
    assert_no_output(out)


def test_missing_variable_lists_what_exists(geocat, tmp_path):
    with pytest.raises(DataError, match=r"variable 'ta' not found; fields in this file: T, PS"):
        convert([geocat / "vinth2p.nc"], tmp_path / "cube.h5", variables=["ta"])
    assert_no_output(tmp_path)


def test_files_on_different_grids_are_refused(geocat, tmp_path):
    coarse = tmp_path / "in" / "coarse.nc"
    coarse.parent.mkdir()
    with netCDF4.Dataset(geocat / "b003_TS_200-299.nc") as ds, netCDF4.Dataset(coarse, "w") as out:
        out.createDimension("time", None)
        out.createDimension("lat", 32)
        out.createDimension("lon", 64)
        for name, dims, data in (("time", ("time",), ds["time"][:3]),
                                 ("lat", ("lat",), ds["lat"][::2]),
                                 ("lon", ("lon",), ds["lon"][::2]),
                                 ("TS", ("time", "lat", "lon"), ds["TS"][:3, ::2, ::2])):
            var = out.createVariable(name, "f4", dims)
            var[:] = data
            if name in ("lat", "lon", "TS"):
                var.units = ds[name].units
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=r"coarse.nc: grid 32x64 \(lat x lon\) differs from .*b003_TS_200-299.nc: "
                                        r"64x128"):
        convert([geocat / "b003_TS_200-299.nc", coarse], dest / "cube.h5")
    assert_no_output(dest)


def test_truncated_netcdf_input_names_the_file(geocat, tmp_path):
    src = tmp_path / "in" / "80.nc"
    src.parent.mkdir()
    src.write_bytes((geocat / "80.nc").read_bytes()[:200_000])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=r"80.nc: file is truncated — 200000 bytes, its header describes 1871004"):
        convert([src], dest / "cube.h5")
    assert_no_output(dest)


def test_truncated_cube_is_refused_at_open(geocat, tmp_path):
    cube = convert([geocat / "b003_TS_200-299.nc"], tmp_path / "cube.h5")
    data = cube.read_bytes()
    short = tmp_path / "short.h5"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"short.h5: cannot be opened as HDF5 — truncated or corrupt"):
        open_file(short)


def test_a_file_that_is_not_a_cube_is_refused(geocat, tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not an astrohpc datacube"):
        open_file(other)


def test_classic_header_size_matches_every_real_file(geocat):
    from astrohpc.data.netcdf_classic import expected_size

    for path in sorted(geocat.glob("*.nc")):
        assert expected_size(path) == path.stat().st_size, path.name
