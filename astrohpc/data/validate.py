"""Validation: non-finite values in inputs, and the structure of a cube when it is opened.

Each check raises one DataError that names the file, the variable and the first bad place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from astrohpc.data import schema
from astrohpc.errors import DataError


def check_finite(values: np.ndarray, where: str, dims: Sequence[str] = ()) -> None:
    """Raise DataError when `values` holds NaN or ±inf: the count and the first location."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = ~np.isfinite(values)
    count = int(bad.sum())
    if count == 0:
        return
    first = np.unravel_index(int(np.argmax(bad)), values.shape)
    names = list(dims) if len(dims) == values.ndim else [f"axis{i}" for i in range(values.ndim)]
    location = ", ".join(f"{n}={i}" for n, i in zip(names, first))
    kind = "NaN" if np.isnan(values[first]) else "inf"
    raise DataError(f"{where}: {count} non-finite value(s) (NaN or inf, or the file's fill value); "
                    f"first is {kind} at {location} (0-based indices in the file)")


def check_same_grid(reference, other, tolerance_deg: float) -> float:
    """Largest lat/lon difference between two SourceInfo grids; DataError when beyond tolerance."""
    from astrohpc.data.grid import grid_difference

    a, b = reference.orient, other.orient
    if a.lat.size != b.lat.size or a.lon.size != b.lon.size:
        raise DataError(f"{other.path}: grid {b.lat.size}x{b.lon.size} (lat x lon) differs from "
                        f"{reference.path}: {a.lat.size}x{a.lon.size}; regrid the inputs to one grid first")
    diff = max(grid_difference(a.lat, b.lat), grid_difference(a.lon, b.lon))
    if diff > tolerance_deg:
        raise DataError(f"{other.path}: latitude/longitude differ from {reference.path} by up to {diff:.3g} degrees "
                        f"(> data.grid_tolerance_deg = {tolerance_deg:g}); the files are on different grids")
    return diff


def check_same_channels(reference, other) -> None:
    """DataError unless two SourceInfos give the same channel table (variable, level)."""
    ref = [c.key() for c in reference.channels]
    got = [c.key() for c in other.channels]
    if ref != got:
        missing = [k for k in ref if k not in got][:5]
        extra = [k for k in got if k not in ref][:5]
        raise DataError(f"{other.path}: channels differ from {reference.path} "
                        f"(missing {missing}, extra {extra}); convert the same variables and levels from every file")


def check_cube(f, path: Path) -> None:
    """Structural checks of an open h5py File: schema, dataset shapes, chunks, coordinates."""
    attrs = f.attrs
    if attrs.get("schema") != schema.SCHEMA_NAME:
        raise DataError(f"{path}: not an astrohpc datacube (no schema attribute); "
                        "make one with `astrohpc data convert`")
    version = str(attrs.get("schema_version"))
    if version not in schema.READABLE_VERSIONS:
        raise DataError(f"{path}: datacube schema {version}, this astrohpc reads {', '.join(schema.READABLE_VERSIONS)} "
                        "(time in days, static fields, run parameters); reconvert it from the GCM output with "
                        "`astrohpc data convert` (or `astrohpc gcm aggregate SWEEP_DIR`)")
    days = schema.time_days_path(f)
    for name in (schema.FIELDS, schema.LAT, schema.LON, days, schema.TIME_COUNT, schema.TIME_STEP,
                 schema.AREA_WEIGHT, schema.RUN_NAME, schema.CHANNEL_GROUP):
        if name not in f:
            raise DataError(f"{path}: missing '{name}' — incomplete or damaged cube; reconvert")
    fields = f[schema.FIELDS]
    n_run, n_time, n_chan, n_lat, n_lon = fields.shape
    if fields.chunks != (1, 1, n_chan, n_lat, n_lon):
        raise DataError(f"{path}: fields chunks {fields.chunks}, expected one time step per chunk "
                        f"{(1, 1, n_chan, n_lat, n_lon)}")
    if f[schema.LAT].shape != (n_lat,) or f[schema.LON].shape != (n_lon,):
        raise DataError(f"{path}: coordinate shapes do not match fields {fields.shape}")
    lat, lon = f[schema.LAT][()], f[schema.LON][()]
    if n_lat > 1 and not np.all(np.diff(lat) > 0) or n_lon > 1 and not np.all(np.diff(lon) > 0):
        raise DataError(f"{path}: coordinates not strictly increasing (cube must be south->north, 0-360)")
    if f[days].shape != (n_run, n_time):
        raise DataError(f"{path}: '{days}' shape {f[days].shape} does not match fields {fields.shape}; reconvert")
    counts = f[schema.TIME_COUNT][()]
    if counts.shape != (n_run,) or np.any(counts > n_time) or np.any(counts < 1):
        raise DataError(f"{path}: time_count {counts} inconsistent with fields {fields.shape}")
    if f[f"{schema.CHANNEL_GROUP}/variable"].shape != (n_chan,):
        raise DataError(f"{path}: channel table length differs from the channel axis ({n_chan})")


def scan_values(f, path: Path) -> None:
    """Full read: non-finite values are allowed only in pressure-level channels (outside the column)."""
    fields = f[schema.FIELDS]
    kinds = schema.decode_strings(f[f"{schema.CHANNEL_GROUP}/level_kind"][()])
    strict = np.array([k != "pressure" for k in kinds])
    names = schema.decode_strings(f[f"{schema.CHANNEL_GROUP}/variable"][()])
    for run, count in enumerate(f[schema.TIME_COUNT][()]):
        for t in range(int(count)):
            step = fields[run, t]
            bad = ~np.isfinite(step[strict]) if strict.any() else np.zeros((0,), bool)
            if bad.any():
                c, y, x = np.unravel_index(int(np.argmax(bad)), bad.shape)
                channel = int(np.flatnonzero(strict)[c])
                raise DataError(f"{path}: {int(bad.sum())} non-finite value(s) in run {run} time {t}; first in "
                                f"channel {channel} ({names[channel]}) at lat index {y}, lon index {x}")
            if np.isinf(step).any():
                raise DataError(f"{path}: inf in run {run} time {t}")


def read_provenance(f) -> dict:
    try:
        return json.loads(f.attrs.get("provenance", "{}"))
    except json.JSONDecodeError:
        return {}
