"""Grid helpers: orientation and exact area weights (Gaussian and regular grids)."""

from __future__ import annotations

import numpy as np
import pytest

from astrohpc.data.grid import area_weights, gaussian_latitudes, latitude_bounds, orientation
from astrohpc.errors import DataError


def test_orientation_flips_north_to_south_and_wraps_longitude():
    lat = np.array([60.0, 0.0, -60.0])
    lon = np.array([-90.0, 0.0, 90.0, 180.0])
    o = orientation(lat, lon)
    np.testing.assert_array_equal(o.lat, [-60.0, 0.0, 60.0])
    np.testing.assert_array_equal(o.lon, [0.0, 90.0, 180.0, 270.0])
    data = np.arange(12.0).reshape(3, 4)  # data[i, j] at (lat[i], lon[j])
    out = o.apply(data)
    assert out[0, 0] == data[2, 1]  # (-60, 0)
    assert out[2, 3] == data[0, 0]  # (60, 270 == -90)


def test_orientation_rejects_non_monotonic_latitude():
    with pytest.raises(DataError, match="not strictly monotonic"):
        orientation(np.array([-10.0, 20.0, 5.0]), np.array([0.0, 90.0]))


def test_regular_grid_weights_are_exact_band_areas():
    lat = np.array([-60.0, 0.0, 60.0])  # bounds -90, -30, 30, 90
    w = area_weights(latitude_bounds(lat), nlon=4)
    assert w.shape == (3, 4)
    assert w.sum() == pytest.approx(1.0, abs=1e-15)
    band = w.sum(axis=1)
    np.testing.assert_allclose(band, [(1 - 0.5) / 2, 1.0 / 2, (1 - 0.5) / 2], rtol=1e-14)


def test_gaussian_bounds_reproduce_gauss_weights():
    lat, gw = gaussian_latitudes(32)
    bounds = latitude_bounds(lat)  # no gw given: the Gaussian grid is recognised
    band = np.sin(np.radians(bounds[:, 1])) - np.sin(np.radians(bounds[:, 0]))
    np.testing.assert_allclose(band, gw, rtol=1e-12)
    assert np.all(bounds[:, 0] < lat) and np.all(lat < bounds[:, 1])
    assert area_weights(bounds, 64).sum() == pytest.approx(1.0, abs=1e-14)


@pytest.mark.shared
def test_gw_from_a_real_file_gives_the_same_weights(geocat):
    import netCDF4

    with netCDF4.Dataset(geocat / "NCEP_06_climo.nc") as ds:
        lat, gw = ds["lat"][:].astype(np.float64), ds["gw"][:].astype(np.float64)
    w = area_weights(latitude_bounds(lat, gw), 128)
    np.testing.assert_allclose(w.sum(axis=1), gw / gw.sum(), rtol=1e-12)
    # computed Gauss-Legendre weights agree with the file's float32 gw to float32 precision
    np.testing.assert_allclose(area_weights(latitude_bounds(lat), 128), w, rtol=1e-5)
