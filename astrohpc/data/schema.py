"""The datacube schema: dataset names, chunk layout, version, CF attributes.

docs/datacube.md is the one place the layout is described for people; this module is the
one place it is described for code. Every writer and reader imports its names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from astrohpc.errors import DataError

SCHEMA_NAME = "astrohpc-datacube"
SCHEMA_VERSION = "1.1"
# 1.1: time in days since the run's start + the model step, static/ fields, vertical/ interfaces,
# cube_id; statistics in a sidecar file. Older cubes are refused with "reconvert".
READABLE_VERSIONS = ("1.1",)

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
TIME, TIME_COUNT = "time", "time_count"  # time: [run, time] float64 days since the run's start
SOURCE_TIME, SOURCE_TIME_UNITS = "source_time", "source_time_units"  # as stored in the GCM files
TIME_STEP = "time_step_s"  # [run] the GCM's integration step in seconds (NaN: unknown)
STATIC_GROUP = "static"  # static/<name>: [run, lat, lon] float64 (surface geopotential, land mask)
VERTICAL_GROUP = "vertical"  # sigma_half [lev+1], or hyai/hybi [lev+1] with attribute p0_Pa

# Runs: parameters (one dataset per parameter, [run]) and the source-file table.
RUN_GROUP = "runs"
RUN_PARAMS_GROUP = "runs/params"
RUN_NAME = "runs/name"
SOURCES_GROUP = "sources"
SOURCE_COLUMNS = ("run", "path", "bytes", "sha256")

# Statistics (written by `astrohpc data stats`) live in a sidecar file CUBE.stats.h5, written
# whole to a temporary file and renamed: the cube itself is never opened for writing again.
STATS_SUFFIX = ".stats.h5"
STATS_SCHEMA = "astrohpc-datacube-stats"
STATS_QUANTITIES = ("count", "mean", "std", "min", "max")
STATS_PARTS = ("fields", "diffs")  # x, and x[t+1] - x[t] within a run

CF_LAT = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y",
          "bounds": LAT_BNDS}
CF_LON = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}
CF_TIME = {"standard_name": "time", "long_name": "time since the start of the run", "units": "days since run start",
           "calendar": "none", "axis": "T"}
CF_TIME_STEP = {"long_name": "integration time step of the GCM", "units": "s"}
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


def stats_path(cube) -> Path:
    """The statistics sidecar of `cube`: runs/cubes/x.h5 -> runs/cubes/x.stats.h5."""
    from pathlib import Path

    cube = Path(cube)
    return cube.with_name(cube.name[: -len(cube.suffix)] + STATS_SUFFIX if cube.suffix else cube.name + STATS_SUFFIX)


def decode_strings(values) -> list[str]:
    """A string dataset's values as str (h5py returns variable-length strings as bytes)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
