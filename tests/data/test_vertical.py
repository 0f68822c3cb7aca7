"""Vertical interpolation, linear in log p, against independent per-column np.interp."""

from __future__ import annotations

import numpy as np
import pytest

from astrohpc.data.schema import parse_levels
from astrohpc.data.vertical import hybrid_pressure, interp_log_pressure, sigma_pressure
from astrohpc.errors import DataError


def reference_interp(values, pressure, targets):
    """Column by column with np.interp in log p; NaN outside the column's levels."""
    out = np.full((len(targets),) + values.shape[1:], np.nan)
    for j in range(values.shape[1]):
        for i in range(values.shape[2]):
            logp = np.log(pressure[:, j, i])
            order = np.argsort(logp)
            x, y = logp[order], values[order, j, i].astype(np.float64)
            for k, t in enumerate(np.log(targets)):
                if x[0] <= t <= x[-1]:
                    out[k, j, i] = np.interp(t, x, y)
    return out


def test_field_linear_in_log_p_is_reproduced_and_below_surface_is_nan():
    sigma = np.array([0.1, 0.3, 0.6, 0.9, 0.99])
    ps = np.array([[[100000.0, 70000.0]]])  # [time, lat, lon]: the second column is a mountain
    p = sigma_pressure(sigma, ps)
    values = 3.0 * np.log(p) + 7.0
    targets = np.array([85000.0, 50000.0, 20000.0, 5000.0])
    out = interp_log_pressure(values, p, targets)
    np.testing.assert_allclose(out[0, :3, 0, 0], 3.0 * np.log(targets[:3]) + 7.0, rtol=1e-13)
    assert np.isnan(out[0, 0, 0, 1])  # 850 hPa below the 700 hPa surface
    assert np.isnan(out[0, 3, 0, 0])  # 50 hPa above the top level (10 % of 1000 hPa)


def test_levels_option_parsing():
    assert parse_levels("sigma").kind == "native"
    spec = parse_levels("pressure:1000,850,500")
    assert spec.pressures_Pa == (100000.0, 85000.0, 50000.0) and spec.text == "pressure:1000,850,500"
    with pytest.raises(DataError, match="expected 'sigma' or 'pressure"):
        parse_levels("height:10")


@pytest.mark.shared
def test_real_cam_hybrid_file_interpolates_like_an_independent_computation(geocat):
    import netCDF4

    with netCDF4.Dataset(geocat / "vinth2p.nc") as ds:
        T = ds["T"][0].astype(np.float64)
        ps = ds["PS"][0].astype(np.float64)
        hyam, hybm = ds["hyam"][:].astype(np.float64), ds["hybm"][:].astype(np.float64)
    p = hybrid_pressure(hyam, hybm, 100000.0, ps)
    # independent: p by explicit loops over columns
    sub = np.s_[:, ::8, ::16]
    p_ref = hyam[:, None, None] * 100000.0 + hybm[:, None, None] * ps[None]
    np.testing.assert_allclose(p, p_ref, rtol=1e-15)
    targets = np.array([100000.0, 85000.0, 50000.0, 20000.0, 1000.0])
    got = interp_log_pressure(T[sub], p[sub], targets)
    np.testing.assert_allclose(got, reference_interp(T[sub], p[sub], targets), rtol=1e-12, equal_nan=True)
    assert np.isnan(got[0]).any() and not np.isnan(got[2]).any()  # 1000 hPa is under ground somewhere
