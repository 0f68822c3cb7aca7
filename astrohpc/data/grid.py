"""Horizontal grid: orientation (latitude south->north, longitude 0-360), bounds, area weights.

Pure functions on numpy arrays; no file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from astrohpc.errors import DataError


@dataclass(frozen=True)
class Orientation:
    """How to reorder a source grid: `lat_index` and `lon_index` select rows/columns in order."""

    lat: np.ndarray  # [lat] degrees_north, increasing
    lon: np.ndarray  # [lon] degrees_east in [0, 360), increasing
    lat_index: np.ndarray
    lon_index: np.ndarray

    @property
    def lat_flipped(self) -> bool:
        return bool(self.lat_index[0] != 0)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """Reorder the last two axes ([..., lat, lon]) of `array`."""
        return np.take(np.take(array, self.lat_index, axis=-2), self.lon_index, axis=-1)


def orientation(lat: np.ndarray, lon: np.ndarray, where: str = "") -> Orientation:
    """The reordering that makes latitude increase and longitude run over [0, 360).

    Raises DataError when a coordinate is not strictly monotonic (after wrapping longitude).
    """
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim != 1 or lon.ndim != 1:
        raise DataError(f"{where}: latitude and longitude must be 1-D (unstructured grids are not supported)")
    if np.any(np.abs(lat) > 90.0 + 1e-9):
        raise DataError(f"{where}: latitude outside [-90, 90] (check the latitude units)")
    lat_index = np.arange(lat.size)
    if lat.size > 1 and lat[0] > lat[-1]:
        lat_index = lat_index[::-1]
    lat_sorted = lat[lat_index]
    if lat.size > 1 and not np.all(np.diff(lat_sorted) > 0):
        bad = int(np.argmin(np.diff(lat_sorted)))
        raise DataError(f"{where}: latitude is not strictly monotonic (near index {bad}: "
                        f"{lat_sorted[bad]:.6f}, {lat_sorted[bad + 1]:.6f})")
    lon_wrapped = np.mod(lon, 360.0)
    lon_index = np.argsort(lon_wrapped, kind="stable")
    lon_sorted = lon_wrapped[lon_index]
    if lon.size > 1 and not np.all(np.diff(lon_sorted) > 0):
        raise DataError(f"{where}: longitude has repeated values after wrapping to [0, 360)")
    return Orientation(lat_sorted, lon_sorted, lat_index, lon_index)


def gaussian_latitudes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian latitudes (degrees, south->north) and Gauss weights (sum 2) for `n` rows."""
    x, w = np.polynomial.legendre.leggauss(n)
    return np.degrees(np.arcsin(x)), w


def is_gaussian(lat: np.ndarray, tol_deg: float = 1e-3) -> bool:
    """True when `lat` (south->north) are the Gaussian latitudes of its size, within `tol_deg`."""
    lat = np.asarray(lat, dtype=np.float64)
    return lat.size > 1 and bool(np.max(np.abs(gaussian_latitudes(lat.size)[0] - lat)) < tol_deg)


def latitude_bounds(lat: np.ndarray, gw: np.ndarray | None = None) -> np.ndarray:
    """Cell bounds [lat, 2] in degrees_north for latitudes ordered south->north.

    With Gauss weights (`gw`, given or computed for a Gaussian grid) the bounds are exact:
    sin(upper) - sin(lower) = gw, so the areas reproduce the quadrature weights. Otherwise
    (regular grid) bounds are midpoints, clipped at the poles.
    """
    lat = np.asarray(lat, dtype=np.float64)
    if gw is None and is_gaussian(lat):
        gw = gaussian_latitudes(lat.size)[1]
    if gw is not None:
        gw = np.asarray(gw, dtype=np.float64)
        if gw.shape != lat.shape or np.any(gw <= 0):
            raise DataError(f"Gaussian weights: need {lat.size} positive values, got shape {gw.shape}")
        edges_sin = -1.0 + 2.0 * np.concatenate([[0.0], np.cumsum(gw)]) / gw.sum()
        edges = np.degrees(np.arcsin(np.clip(edges_sin, -1.0, 1.0)))
    else:
        mid = 0.5 * (lat[1:] + lat[:-1])
        edges = np.concatenate([[-90.0], mid, [90.0]])
    return np.stack([edges[:-1], edges[1:]], axis=-1)


def area_weights(lat_bnds: np.ndarray, nlon: int) -> np.ndarray:
    """Fraction of the sphere in each cell [lat, lon] (sums to 1), from latitude bounds.

    Exact for cells bounded by parallels: area ∝ sin(φ_upper) − sin(φ_lower); equal in longitude.
    """
    bounds = np.radians(np.asarray(lat_bnds, dtype=np.float64))
    band = np.sin(bounds[:, 1]) - np.sin(bounds[:, 0])
    if np.any(band <= 0):
        raise DataError("latitude bounds must increase within each cell")
    cell = np.repeat((band / band.sum() / nlon)[:, None], nlon, axis=1)
    return cell / cell.sum()


def grid_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Largest absolute difference between two coordinate vectors of equal length (degrees)."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) if len(a) else 0.0
