"""Bad input gives one clear DataError and leaves no output (not even a temporary file).

Inputs: copies of the cached ExoPlaSim smoke run's files, modified by each test
(tests/data/smoke_files.py); the classic-format checks use the real NetCDF-3 files in ../shared.
"""

from __future__ import annotations

import netCDF4
import numpy as np
import pytest
from smoke_files import copy_run, snapshot_file, subset_netcdf

from astrohpc.data.convert import convert, convert_run_dirs
from astrohpc.data.cube import open_file
from astrohpc.errors import DataError


def assert_no_output(folder):
    assert [p.name for p in folder.iterdir() if p.suffix in (".h5", ".tmp") or p.name.startswith(".")] == []


def test_nan_injected_into_a_real_field_is_counted_and_located(smoke_gcm_run, tmp_path):
    def inject(nc):
        with netCDF4.Dataset(nc, "a") as ds:
            ds["ta"][1, 3, 10, 20] = np.nan

    run = copy_run(smoke_gcm_run, tmp_path / "in", inject)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=r"exoplasim_snapshot.nc: variable 'ta': 1 non-finite .* first is NaN at "
                                        r"time=1, lev=3, lat=10, lon=20"):
        convert_run_dirs([run], out / "cube.h5")
    assert_no_output(out)


def test_missing_variable_lists_what_exists(smoke_gcm_run, tmp_path):
    with pytest.raises(DataError, match=r"variable 'ta_typo' not found; fields in this file: ts, tas, ps, .*\bta\b"):
        convert([smoke_gcm_run], tmp_path / "cube.h5", variables=["ta_typo"])
    assert_no_output(tmp_path)


def test_files_on_different_grids_are_refused(smoke_gcm_run, tmp_path):
    coarse = copy_run(smoke_gcm_run, tmp_path / "coarse",
                      lambda nc: subset_netcdf(nc, {"lat": slice(None, None, 2), "lon": slice(None, None, 2)}))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=r"coarse/output/exoplasim_snapshot.nc: grid 16x32 \(lat x lon\) differs from "
                                        r".*exoplasim_snapshot.nc: 32x64"):
        convert_run_dirs([smoke_gcm_run, coarse], dest / "cube.h5")
    assert_no_output(dest)


def test_truncated_netcdf_input_names_the_file(smoke_gcm_run, tmp_path):
    size = snapshot_file(smoke_gcm_run).stat().st_size
    run = copy_run(smoke_gcm_run, tmp_path / "short", lambda nc: nc.write_bytes(nc.read_bytes()[: size // 2]))
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=r"short/output/exoplasim_snapshot.nc: cannot be read as NetCDF — truncated"):
        convert_run_dirs([run], dest / "cube.h5")
    assert_no_output(dest)


def test_a_source_changed_after_the_run_is_refused(smoke_gcm_run, tmp_path):
    def edit(nc):
        with netCDF4.Dataset(nc, "a") as ds:
            ds["ts"][0, 0, 0] = 300.0

    run = copy_run(smoke_gcm_run, tmp_path / "edited", edit, reseal=False)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=r"exoplasim_snapshot.nc: sha256 differs from the one in .*summary.json"):
        convert_run_dirs([run], dest / "cube.h5")
    assert_no_output(dest)


def test_truncated_cube_is_refused_at_open(smoke_gcm_run, tmp_path):
    cube = convert_run_dirs([smoke_gcm_run], tmp_path / "cube.h5")
    data = cube.read_bytes()
    short = tmp_path / "short.h5"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"short.h5: cannot be opened as HDF5 — truncated or corrupt"):
        open_file(short)


def test_a_file_that_is_not_a_cube_is_refused(tmp_path):
    import h5py

    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(DataError, match="not an astrohpc datacube"):
        open_file(other)


@pytest.mark.shared
def test_truncated_classic_netcdf_says_how_short_it_is(geocat, tmp_path):
    """NetCDF-3 (classic) files state their size in the header; ExoPlaSim writes NetCDF-4, so
    this check needs the real classic files in ../shared."""
    src = tmp_path / "in" / "80.nc"
    src.parent.mkdir()
    src.write_bytes((geocat / "80.nc").read_bytes()[:200_000])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(DataError, match=r"80.nc: file is truncated — 200000 bytes, its header describes 1871004"):
        convert([src], dest / "cube.h5")
    assert_no_output(dest)


@pytest.mark.shared
def test_classic_header_size_matches_every_real_file(geocat):
    from astrohpc.data.netcdf_classic import expected_size

    for path in sorted(geocat.glob("*.nc")):
        assert expected_size(path) == path.stat().st_size, path.name
