"""The datacube schema: dataset names, chunk layout, version, CF attributes.

docs/datacube.md is the one place the layout is described for people; this module is the
one place it is described for code. Every writer and reader imports its names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from astrohpc.errors import DataError

SCHEMA_NAME = "astrohpc-datacube"
SCHEMA_VERSION = "1.0"

# fields[run, time, channel, lat, lon] float32; one chunk = one time step of one run.
FIELDS = "fields"
FIELDS_DIMS = ("run", "time", "channel", "lat", "lon")
FILL_VALUE = float("nan")  # time steps past a run's end, and pressure levels outside the column

# Channel table: one row per channel, so 2-D (level_kind "surface") and 3-D variables coexist.
CHANNEL_GROUP = "channels"
CHANNEL_COLUMNS = ("variable", "source_name", "level", "level_kind", "level_units", "units", "long_name")
LEVEL_KINDS = ("surface", "sigma", "hybrid", "pressure")

# Coordinates and grid.
LAT, LON, LAT_BNDS, AREA_WEIGHT = "lat", "lon", "lat_bnds", "area_weight"
TIME, TIME_COUNT, TIME_UNITS = "time", "time_count", "time_units"

# Runs: parameters (one dataset per parameter, [run]) and the source-file table.
RUN_GROUP = "runs"
RUN_PARAMS_GROUP = "runs/params"
RUN_NAME = "runs/name"
SOURCES_GROUP = "sources"
SOURCE_COLUMNS = ("run", "path", "bytes", "sha256")

# Statistics (written by `astrohpc data stats`).
STATS_GROUP = "stats"
STATS_TMP_PREFIX = "_stats_tmp"
STATS_QUANTITIES = ("count", "mean", "std", "min", "max")

CF_LAT = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y",
          "bounds": LAT_BNDS}
CF_LON = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}
CF_AREA = {"long_name": "fraction of the sphere's area in each cell (sums to 1)", "units": "1",
           "cell_methods": "area: sum"}


@dataclass(frozen=True)
class LevelSpec:
    """Parsed `levels` option: native model levels, or target pressures in Pa."""

    kind: str  # "native" or "pressure"
    pressures_Pa: tuple[float, ...] = ()

    @property
    def text(self) -> str:
        if self.kind == "native":
            return "sigma"
        return "pressure:" + ",".join(f"{p / 100:g}" for p in self.pressures_Pa)


def parse_levels(text: Optional[str]) -> LevelSpec:
    """`sigma` / `native` -> native levels; `pressure:1000,850,500` (hPa) -> pressure levels."""
    if text is None or text.strip().lower() in ("", "sigma", "native", "model"):
        return LevelSpec("native")
    head, _, tail = text.partition(":")
    if head.strip().lower() != "pressure" or not tail.strip():
        raise DataError(f"levels {text!r}: expected 'sigma' or 'pressure:1000,850,500' (hPa)")
    try:
        hpa = [float(v) for v in tail.split(",") if v.strip()]
    except ValueError:
        raise DataError(f"levels {text!r}: pressure levels must be numbers in hPa, e.g. pressure:1000,850") from None
    if not hpa or any(not p > 0 for p in hpa) or len(set(hpa)) != len(hpa):
        raise DataError(f"levels {text!r}: need distinct positive pressures in hPa")
    return LevelSpec("pressure", tuple(p * 100.0 for p in hpa))


def decode_strings(values) -> list[str]:
    """A string dataset's values as str (h5py returns variable-length strings as bytes)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
