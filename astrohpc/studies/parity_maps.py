"""The time-mean maps of one parity task — the GCM's and every method's — as CF-1.8 NetCDF.

One variable per channel, `ts(source, lat, lon)`, with the channel's units and standard name;
`source` is "gcm" then the methods. Written through xarray to a temporary file, fsynced and
renamed (STUDY/tasks/<id>/maps.nc); `read_maps` also reads the maps.npz of studies run before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

MAPS_FILE = "maps.nc"
LEGACY_MAPS_FILE = "maps.npz"  # {"channels", "gcm", "lat", "lon", "method_<name>"}: studies before maps.nc
GCM = "gcm"


def maps_dataset(names: list[str], units: list[str], gcm_mean: np.ndarray, means: dict[str, np.ndarray],
                 lat: np.ndarray, lon: np.ndarray, attrs: Optional[dict[str, Any]] = None) -> Any:
    """xarray.Dataset of time-mean maps: gcm_mean [C, lat, lon] and each method's [C, lat, lon]
    (or [lat, lon]-broadcastable), in the units of each channel `units[c]`; lat, lon in degrees."""
    import xarray as xr

    from astrohpc.data import schema

    sources = [GCM, *means]
    coords = {"source": ("source", np.array(sources, dtype=object),
                         {"long_name": "gcm: the GCM's own time mean; else the method's prediction of it"}),
              "lat": ("lat", np.asarray(lat, np.float64), {k: v for k, v in schema.CF_LAT.items() if k != "bounds"}),
              "lon": ("lon", np.asarray(lon, np.float64), dict(schema.CF_LON))}
    data = {}
    for c, name in enumerate(names):
        stack = np.stack([np.asarray(gcm_mean[c], np.float64),
                          *(np.broadcast_to(m, np.shape(gcm_mean))[c] for m in means.values())])
        cf = {"units": units[c], "long_name": f"time mean of {name}", "cell_methods": "time: mean"}
        standard = schema.CF_STANDARD_NAMES.get(name.split("@")[0])
        if standard:
            cf["standard_name"] = standard
        data[name] = (("source", "lat", "lon"), stack, cf)
    return xr.Dataset(data, coords=coords, attrs={"Conventions": "CF-1.8",
                                                  "title": "parity: time-mean maps of the GCM and every method",
                                                  **{k: v if isinstance(v, (str, int, float)) else str(v)
                                                     for k, v in (attrs or {}).items()}})


def write_maps(path: str | Path, ds: Any) -> Path:
    """Write `ds` (from `maps_dataset`) as NetCDF-4 at `path`: temporary file, fsync, rename."""
    from astrohpc.atomic_write import atomic_path

    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="h5netcdf")
    return Path(path)


def read_maps(folder: str | Path) -> Optional[Any]:
    """The maps of the task folder `folder` as an xarray.Dataset (loaded, file closed); a legacy
    maps.npz is read into the same form (units unknown: empty); None when there are none."""
    import xarray as xr

    folder = Path(folder)
    if (folder / MAPS_FILE).is_file():
        with xr.open_dataset(folder / MAPS_FILE, engine="h5netcdf") as ds:
            return ds.load()
    if not (folder / LEGACY_MAPS_FILE).is_file():
        return None
    with np.load(folder / LEGACY_MAPS_FILE) as npz:
        names = [str(n) for n in npz["channels"]]
        means = {key[len("method_"):]: npz[key] for key in npz.files if key.startswith("method_")}
        return maps_dataset(names, [""] * len(names), npz["gcm"], means, npz["lat"], npz["lon"],
                            {"source_file": LEGACY_MAPS_FILE})
