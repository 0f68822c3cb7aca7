"""Predicted fields as CF-1.8 NetCDF through xarray: one variable per GCM variable, its levels on
a `lev` axis, with units, standard names, lat/lon/level coordinates and provenance.

`fields_dataset` turns channel-stacked arrays [N, C, lat, lon] (N planets or N times) into an
xarray.Dataset: a 2-D variable becomes `ts(N, lat, lon)`, a 3-D one `ta(N, lev, lat, lon)` over
the union of its levels (σ, "atmosphere_sigma_coordinate", or pressure in Pa). A predictive
spread becomes `ts_std` beside `ts`, named in its `ancillary_variables`. `write_dataset` writes
it atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from astrohpc.data import schema

LEVEL_ATTRS = {
    "sigma": {"standard_name": "atmosphere_sigma_coordinate", "long_name": "sigma (pressure / surface pressure)",
              "units": "1", "positive": "down", "axis": "Z"},
    "hybrid": {"long_name": "hybrid sigma-pressure level (full level, as sigma)", "units": "1", "positive": "down",
               "axis": "Z"},
    "pressure": {"standard_name": "air_pressure", "long_name": "pressure", "units": "Pa", "positive": "down",
                 "axis": "Z"},
}


LONG_NAMES = {
    "ts": "surface temperature", "tas": "near-surface air temperature", "ta": "air temperature",
    "ua": "eastward wind", "va": "northward wind", "wap": "vertical pressure velocity (omega)",
    "hus": "specific humidity", "zg": "geopotential height", "ps": "surface air pressure",
    "pr": "precipitation", "prw": "precipitable water", "sic": "sea-ice fraction",
    "rsdt": "TOA incoming shortwave flux", "rsut": "TOA outgoing shortwave flux",
    "rlut": "TOA outgoing longwave flux", "rst": "TOA net shortwave flux", "ntr": "TOA net radiative flux",
    "hfss": "surface sensible heat flux", "hfls": "surface latent heat flux",
    "rss": "surface net shortwave flux", "rls": "surface net longwave flux",
}


def cf_attrs(variable: str, units: str, long_name: str = "") -> dict[str, str]:
    """units, standard_name (where CF has one: astrohpc.data.schema.CF_STANDARD_NAMES), long_name."""
    attrs = {"units": units or "1", "long_name": long_name or LONG_NAMES.get(variable, variable)}
    standard = schema.CF_STANDARD_NAMES.get(variable)
    if standard:
        attrs["standard_name"] = standard
    return attrs


def plain_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """NetCDF-storable attributes: strings and numbers as they are, the rest as strings (None left out)."""
    out = {}
    for k, v in attrs.items():
        if v is None:
            continue
        out[k] = v if isinstance(v, (str, int, float, np.integer, np.floating)) else str(v)
    return out


def fields_dataset(values: np.ndarray, variables: Sequence[str], levels: Sequence[float], level_kinds: Sequence[str],
                   units: Sequence[str], lat: np.ndarray, lon: np.ndarray, lead: str,
                   lead_coords: dict[str, tuple], std: Optional[np.ndarray] = None,
                   long_names: Optional[dict[str, str]] = None, attrs: Optional[dict[str, Any]] = None,
                   cell_methods: str = "") -> Any:
    """xarray.Dataset of `values` [N, C, lat, lon] (channel c is `variables[c]` at `levels[c]`,
    NaN for a surface channel) along the leading dimension `lead` with coordinates
    `lead_coords` ({name: (dims, values, attrs)}); `std` the same shape, or None."""
    import xarray as xr

    values = np.asarray(values)
    levels = np.asarray(levels, np.float64)
    three_d = [c for c in range(len(variables)) if np.isfinite(levels[c])]
    lev = np.unique(levels[three_d]) if three_d else np.zeros(0)
    kinds = {level_kinds[c] for c in three_d}
    coords: dict[str, Any] = {
        "lat": ("lat", np.asarray(lat, np.float64), {k: v for k, v in schema.CF_LAT.items() if k != "bounds"}),
        "lon": ("lon", np.asarray(lon, np.float64), dict(schema.CF_LON)),
        **lead_coords,
    }
    if lev.size:
        kind = kinds.pop() if len(kinds) == 1 else "sigma"
        coords["lev"] = ("lev", lev, dict(LEVEL_ATTRS.get(kind, {"long_name": "level", "units": "1"})))
    data: dict[str, Any] = {}
    for var in dict.fromkeys(variables):
        idx = [c for c, v in enumerate(variables) if v == var]
        attrs_v = cf_attrs(var, units[idx[0]], (long_names or {}).get(var, ""))
        if cell_methods:
            attrs_v["cell_methods"] = cell_methods
        parts = [(values, "")] + ([(std, "_std")] if std is not None else [])
        for array, suffix in parts:
            name = f"{var}{suffix}"
            a = dict(attrs_v)
            if suffix:
                a.pop("standard_name", None)
                a["long_name"] = f"predictive standard deviation of {attrs_v['long_name']}"
            elif std is not None:
                a["ancillary_variables"] = f"{var}_std"
            if np.isfinite(levels[idx[0]]):
                block = np.full((values.shape[0], lev.size, *values.shape[2:]), np.nan, values.dtype)
                for c in idx:
                    block[:, int(np.searchsorted(lev, levels[c]))] = array[:, c]
                data[name] = ((lead, "lev", "lat", "lon"), block, a)
            else:
                data[name] = ((lead, "lat", "lon"), array[:, idx[0]], a)
    return xr.Dataset(data, coords=coords, attrs={"Conventions": "CF-1.8", **plain_attrs(attrs or {})})


def write_dataset(path: str | Path, ds: Any) -> Path:
    """Write `ds` as NetCDF-4 (h5netcdf) at `path`: temporary file, fsync, rename."""
    from astrohpc.atomic_write import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return path
