"""Parity maps are CF NetCDF that xarray opens: one variable per channel over (source, lat, lon)."""

from __future__ import annotations

import numpy as np
import pytest

xr = pytest.importorskip("xarray")


def _maps():
    rng = np.random.default_rng(0)
    lat, lon = np.linspace(-80.0, 80.0, 4), np.arange(0.0, 360.0, 60.0)
    gcm = rng.normal(280.0, 5.0, (2, 4, 6))
    means = {"surrogate": gcm + 1.0, "climatology": gcm.mean(axis=(1, 2))[:, None, None]}  # broadcast [C, 1, 1]
    return ["ts", "rlut"], ["K", "W m-2"], gcm, means, lat, lon


def test_maps_open_in_xarray_with_units_and_coordinates(tmp_path):
    from astrohpc.studies.parity_maps import MAPS_FILE, maps_dataset, read_maps, write_maps

    names, units, gcm, means, lat, lon = _maps()
    path = write_maps(tmp_path / MAPS_FILE, maps_dataset(names, units, gcm, means, lat, lon, {"run": "r1"}))
    assert sorted(p.name for p in tmp_path.iterdir()) == [MAPS_FILE]  # no temporary file left
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds["ts"].dims == ("source", "lat", "lon") and list(ds["source"].values) == ["gcm", *means]
        assert ds["ts"].attrs["units"] == "K" and ds["ts"].attrs["standard_name"] == "surface_temperature"
        assert ds["rlut"].attrs["units"] == "W m-2" and "standard_name" not in ds["rlut"].attrs  # a net flux
        assert ds["lat"].attrs["units"] == "degrees_north" and ds["lon"].attrs["standard_name"] == "longitude"
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["run"] == "r1"
        np.testing.assert_array_equal(ds["lat"].values, lat)
        np.testing.assert_array_equal(ds["ts"].sel(source="gcm").values, gcm[0])
        np.testing.assert_array_equal(ds["rlut"].sel(source="surrogate").values, gcm[1] + 1.0)
        np.testing.assert_array_equal(ds["ts"].sel(source="climatology").values, np.full((4, 6), gcm[0].mean()))
    assert read_maps(tmp_path)["ts"].identical(xr.open_dataset(path, engine="h5netcdf")["ts"])


def test_maps_of_an_older_study_are_read_from_npz(tmp_path):
    from astrohpc.studies.parity_maps import read_maps

    names, _, gcm, means, lat, lon = _maps()
    np.savez(tmp_path / "maps.npz", channels=np.asarray(names), gcm=gcm, lat=lat, lon=lon,
             **{f"method_{m}": np.broadcast_to(f, gcm.shape) for m, f in means.items()})
    ds = read_maps(tmp_path)
    assert list(ds["source"].values) == ["gcm", "surrogate", "climatology"]
    np.testing.assert_array_equal(ds["rlut"].sel(source="surrogate").values, gcm[1] + 1.0)
    assert read_maps(tmp_path / "absent") is None


@pytest.mark.parametrize("legacy", [False, True])
def test_the_report_draws_the_maps_of_new_and_older_studies(tmp_path, legacy):
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.parity_report import _plot_maps
    from astrohpc.studies.parity_maps import maps_dataset, write_maps
    from astrohpc.studies.tasks import task_dir

    names, units, gcm, means, lat, lon = _maps()
    folder = task_dir(tmp_path / "study", 0)
    if legacy:
        folder.mkdir(parents=True)
        np.savez(folder / "maps.npz", channels=np.asarray(names), gcm=gcm, lat=lat, lon=lon,
                 **{f"method_{m}": np.broadcast_to(f, gcm.shape) for m, f in means.items()})
    else:
        write_maps(folder / "maps.nc", maps_dataset(names, units, gcm, means, lat, lon))
    report = MarkdownReport(tmp_path / "report", "parity")
    _plot_maps(report, tmp_path / "study", [{"run": "r1", "channels": names, "units": units}], [0])
    assert [p.name for p in report.figures] == ["parity_maps.png"] and report.figures[0].stat().st_size > 0
