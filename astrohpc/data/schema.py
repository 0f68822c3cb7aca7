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
SCHEMA_VERSION = "1.2"
# 1.1: time in days since the run's start + the model step, static/ fields, vertical/ interfaces,
# cube_id; statistics in a sidecar file. Older cubes are refused with "reconvert".
# 1.2: HDF5 dimension scales and CF attributes, so that xarray (engine h5netcdf) opens the cube with
# named dimensions and coordinates; the days of each step moved from `time` to `time_days`, `time`
# being the time dimension's coordinate. 1.1 cubes are still read (xarray sees no dimensions there).
READABLE_VERSIONS = ("1.1", "1.2")

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
# time_days: [run, time] float64 days since the run's start (schema 1.1 kept it at `time`: see
# `time_days_path`); time: [time] int64 the step index, the time dimension's coordinate (1.2)
TIME, TIME_DAYS, TIME_COUNT = "time", "time_days", "time_count"
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

# Dimension scales (1.2): the FIELDS_DIMS are root datasets of these names (run: the run names,
# channel: the channel labels 'variable' or 'variable@level', time: the step index, lat, lon); the
# others are dimensions without values (netCDF's "dimension but not a variable").
RUN, CHANNEL = "run", "channel"
BNDS_DIM = "bnds"  # lat_bnds [lat, bnds]
FILE_DIM = "file"  # sources/* [file]
INTERFACE_DIM = "interface"  # vertical/* [interface]: the model's layer interfaces, top to surface
# xarray's view of the channel table at the root: per-channel units and standard names as
# auxiliary coordinates of `channel` (fields mixes variables, so no one `units` attribute fits it)
CHANNEL_UNITS, CHANNEL_STANDARD_NAME = "channel_units", "channel_standard_name"

CF_LAT = {"standard_name": "latitude", "long_name": "latitude", "units": "degrees_north", "axis": "Y",
          "bounds": LAT_BNDS}
CF_LON = {"standard_name": "longitude", "long_name": "longitude", "units": "degrees_east", "axis": "X"}
# "days", not "days since run start": xarray refuses to open a file whose reference time is no date
CF_TIME = {"standard_name": "time", "long_name": "time since the start of the run", "units": "days"}
CF_TIME_INDEX = {"long_name": "output step within the run (its days since the run's start: time_days)",
                 "units": "1", "axis": "T"}
CF_RUN = {"long_name": "run (GCM run folder or file stem)"}
CF_CHANNEL = {"long_name": "channel: variable, or variable@level for one level of a 3-D variable"}
# CF standard names of canonical variable names, where one fits whatever model the cube came from.
# Net fluxes have none: their sign is the source model's (ExoPlaSim: positive down, docs/datacube.md;
# CMIP-style files: hfss, rlut positive up), and the converter keeps it.
CF_STANDARD_NAMES = {
    "ts": "surface_temperature", "tas": "air_temperature", "ta": "air_temperature", "ps": "surface_air_pressure",
    "ua": "eastward_wind", "va": "northward_wind", "wap": "lagrangian_tendency_of_air_pressure",
    "hus": "specific_humidity", "zg": "geopotential_height", "pr": "lwe_precipitation_rate",
    "prw": "atmosphere_mass_content_of_water_vapor", "sic": "sea_ice_area_fraction",
    "rsdt": "toa_incoming_shortwave_flux", "sg": "surface_geopotential", "lsm": "land_binary_mask",
}
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


# The dimensions of every dataset of a 1.2 cube, by path (groups: every dataset in them).
CUBE_DIMS = {
    FIELDS: FIELDS_DIMS, TIME_DAYS: (RUN, TIME), SOURCE_TIME: (RUN, TIME), SOURCE_TIME_UNITS: (RUN,),
    TIME_STEP: (RUN,), TIME_COUNT: (RUN,), LAT_BNDS: (LAT, BNDS_DIM), AREA_WEIGHT: (LAT, LON),
    CHANNEL_UNITS: (CHANNEL,), CHANNEL_STANDARD_NAME: (CHANNEL,), RUN_NAME: (RUN,),
}
GROUP_DIMS = {CHANNEL_GROUP: (CHANNEL,), RUN_PARAMS_GROUP: (RUN,), STATIC_GROUP: (RUN, LAT, LON),
              SOURCES_GROUP: (FILE_DIM,), VERTICAL_GROUP: (INTERFACE_DIM,)}
# where each dimension's scale is: a dimension of one group only is defined in that group
SCALES = {RUN: RUN, TIME: TIME, CHANNEL: CHANNEL, LAT: LAT, LON: LON, BNDS_DIM: BNDS_DIM,
          FILE_DIM: f"{SOURCES_GROUP}/{FILE_DIM}", INTERFACE_DIM: f"{VERTICAL_GROUP}/{INTERFACE_DIM}"}


def cube_dims(path: str) -> Optional[tuple[str, ...]]:
    """The dimension names of the cube's dataset at `path` ('channels/units'); None for a dimension
    scale itself. ValueError for a dataset the schema does not know (add it to CUBE_DIMS)."""
    path = path.strip("/")
    if path in SCALES.values():
        return None
    if path in CUBE_DIMS:
        return CUBE_DIMS[path]
    group = path.rpartition("/")[0]
    if group in GROUP_DIMS:
        return GROUP_DIMS[group]
    raise ValueError(f"datacube schema: no dimensions declared for dataset {path!r} (astrohpc/data/schema.py)")


def time_days_path(f) -> str:
    """Where an open cube keeps the days of each step, [run, time]: `time_days` (1.2), `time` (1.1)."""
    return TIME if str(f.attrs.get("schema_version")) == "1.1" else TIME_DAYS


def netcdf_dimension(f, name: str, size: int):
    """A dimension scale `name` of `size` without values (netCDF's "dimension but not a variable")."""
    dset = f.create_dataset(name, shape=(size,), dtype="f4")
    dset.make_scale(f"This is a netCDF dimension but not a netCDF variable.{size:10d}")
    return dset


def attach_dims(dset, scales) -> None:
    """Attach one dimension scale per axis of `dset` (h5py datasets, in axis order)."""
    for axis, scale in enumerate(scales):
        dset.dims[axis].attach_scale(scale)


def decode_strings(values) -> list[str]:
    """A string dataset's values as str (h5py returns variable-length strings as bytes)."""
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]
