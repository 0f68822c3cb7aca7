"""The cube and its statistics sidecar open in xarray (engine h5netcdf) with named dimensions,
coordinates and units; a cube of the previous schema (1.1, no dimension scales) is still read."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

xr = pytest.importorskip("xarray")
pytest.importorskip("h5netcdf")


def test_cube_opens_in_xarray_with_named_dimensions_coordinates_and_units(physics_cube):
    from astrohpc.data.cube import LazyCube, read_meta

    meta = read_meta(physics_cube)
    reader = LazyCube(physics_cube)
    expected = reader.read(1, 2, 1)[0, meta.channel("ts")]
    reader.close()
    with xr.open_dataset(physics_cube, engine="h5netcdf") as ds:
        assert ds["fields"].dims == ("run", "time", "channel", "lat", "lon")
        assert ds["fields"].shape == meta.shape
        assert list(ds["run"].values) == meta.run_names
        assert list(ds["channel"].values) == meta.channel_names
        assert list(ds["channel_units"].values) == meta.units and "channel_units" in ds["fields"].coords
        assert ds["channel_standard_name"].sel(channel="ts").item() == "surface_temperature"
        np.testing.assert_array_equal(ds["time"].values, np.arange(meta.shape[1]))
        assert ds["time_days"].dims == ("run", "time") and ds["time_days"].attrs["units"] == "days"
        np.testing.assert_array_equal(ds["time_days"].values, meta.time_days)
        for name, units, standard, axis in (("lat", "degrees_north", "latitude", "Y"),
                                            ("lon", "degrees_east", "longitude", "X")):
            assert ds[name].attrs["units"] == units and ds[name].attrs["standard_name"] == standard
            assert ds[name].attrs["axis"] == axis and name in ds.indexes
        np.testing.assert_array_equal(ds["lat"].values, meta.lat)
        assert ds["lat_bnds"].dims == ("lat", "bnds") and ds["area_weight"].dims == ("lat", "lon")
        assert ds["area_weight"].attrs["units"] == "1"
        assert ds["time_count"].dims == ("run",) and ds["time_step_s"].attrs["units"] == "s"
        assert ds.attrs["Conventions"] == "CF-1.8"
        # the same values the training reader reads, found by label
        np.testing.assert_array_equal(ds["fields"].sel(run=meta.run_names[1], channel="ts").isel(time=2), expected)


def test_xarray_and_the_reader_share_a_process_when_xarray_opens_without_locks(physics_cube):
    from astrohpc.data.cube import LazyCube

    # the readers open read-only without HDF5 file locks; HDF5 refuses a second open of the same file
    # with other locking flags, hence driver_kwds (docs/datacube.md)
    reader = LazyCube(physics_cube)
    try:
        first = reader.read(0, 0, 1)[0]
        with xr.open_dataset(physics_cube, engine="h5netcdf", driver_kwds={"locking": False}) as ds:
            np.testing.assert_array_equal(ds["fields"].isel(run=0, time=0).values, first)
            np.testing.assert_array_equal(reader.read(0, 1, 1)[0], ds["fields"].isel(run=0, time=1).values)
    finally:
        reader.close()


def test_cube_groups_open_with_the_cubes_dimensions(physics_cube):
    from astrohpc.data.cube import read_meta

    meta = read_meta(physics_cube)
    tree = xr.open_datatree(physics_cube, engine="h5netcdf")
    try:
        static = tree["static"].to_dataset()
        assert static["sg"].dims == ("run", "lat", "lon") and static["sg"].attrs["units"] == "m2 s-2"
        assert static["sg"].attrs["standard_name"] == "surface_geopotential"
        assert list(static["run"].values) == meta.run_names  # the root's coordinates, inherited
        params = tree["runs/params"].to_dataset()
        assert all(params[name].dims == ("run",) for name in meta.param_names)
        table = tree["channels"].to_dataset()
        assert list(table["units"].values) == meta.units and list(table["channel"].values) == meta.channel_names
        vertical = tree["vertical"].to_dataset()
        assert vertical["sigma_half"].dims == ("interface",) and vertical["sigma_half"].attrs["units"] == "1"
        assert tree["sources"].to_dataset()["sha256"].dims == ("file",)
    finally:
        tree.close()


def test_stats_sidecar_opens_in_xarray_with_named_dimensions_and_units(physics_cube):
    from astrohpc.data.cube import read_meta
    from astrohpc.data.schema import stats_path

    meta = read_meta(physics_cube)
    tree = xr.open_datatree(stats_path(physics_cube), engine="h5netcdf")
    try:
        root = tree.to_dataset()
        assert list(root["channel"].values) == meta.channel_names
        assert list(root["channel_units"].values) == meta.units and "channel_units" in root.coords
        fields = tree["fields"].to_dataset()
        assert fields["mean"].dims == ("channel",) and fields["count"].attrs["units"] == "1"
        assert "area-weighted mean" in fields["mean"].attrs["long_name"]
        np.testing.assert_array_equal(fields["mean"].sel(channel="ts").item(),
                                      meta.stats["fields"]["mean"][meta.channel("ts")])
        per_run = tree["runs/diffs"].to_dataset()
        assert per_run["std"].dims == ("run", "channel") and list(per_run["run"].values) == meta.run_names
        np.testing.assert_array_equal(per_run["std"].values, meta.stats["runs"]["diffs"]["std"])
    finally:
        tree.close()


def _as_schema_1_1(cube, out):
    """A copy of `cube` laid out as schema 1.1 wrote it: days at `time` [run, time], no scales."""
    shutil.copy(cube, out)
    with h5py.File(out, "r+") as f:
        for name in ("run", "time", "channel", "channel_units", "channel_standard_name", "bnds"):
            del f[name]
        f.move("time_days", "time")
        f["time"].attrs.update({"units": "days since run start", "calendar": "none"})
        f.attrs["schema_version"] = "1.1"
    return out


def test_a_cube_of_schema_1_1_is_still_read(physics_cube, tmp_path):
    from astrohpc.data.cube import read_meta
    from astrohpc.data.dataset import WindowDataset

    old = _as_schema_1_1(physics_cube, tmp_path / "old.h5")
    new_meta, old_meta = read_meta(physics_cube, stats=False), read_meta(old, stats=False)
    np.testing.assert_array_equal(old_meta.time_days, new_meta.time_days)
    assert old_meta.run_names == new_meta.run_names and old_meta.units == new_meta.units
    a, b = WindowDataset(physics_cube, 1, 2)[3], WindowDataset(old, 1, 2)[3]
    for key in ("input", "target", "time"):
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_every_dataset_of_a_cube_has_its_dimensions(physics_cube):
    from astrohpc.data import schema

    with h5py.File(physics_cube, "r") as f:
        assert f.attrs["schema_version"] == schema.SCHEMA_VERSION
        found = []

        def check(name, obj):
            if isinstance(obj, h5py.Dataset) and schema.cube_dims(name) is not None:
                found.append(name)
                names = [obj.dims[i][0].name.rpartition("/")[2] for i in range(obj.ndim)]
                assert tuple(names) == schema.cube_dims(name), name

        f.visititems(check)
    assert {"fields", "time_days", "static/sg", "channels/units", "runs/name"} <= set(found)
    with pytest.raises(ValueError, match="no dimensions declared"):
        schema.cube_dims("something_new")
