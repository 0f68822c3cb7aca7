"""Read one GCM NetCDF file into channels on an oriented grid (xarray at the file boundary).

Three conventions are recognised from the file itself, per variable:
- ExoPlaSim (pyburn): sigma levels (`lev` in (0, 1]), latitude north->south, time in model steps;
- CAM/ExoCAM history files: hybrid levels from `hyam`, `hybm` (`P0`, else the configured
  reference pressure) and `PS`;
- generic CF files: any names, mapped through `data.variable_table`, pressure levels from a
  level coordinate whose units are a pressure.

`inspect_source` opens lazily and checks names, dimensions and units; `load_source` reads the
values, validates them (NaN/inf) and returns [time, channel, lat, lon] float32 south->north.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from astrohpc.data import grid as grid_mod
from astrohpc.data import vertical
from astrohpc.data.derived import DERIVATIONS, Derivation
from astrohpc.data.netcdf_classic import check_complete
from astrohpc.data.schema import LevelSpec
from astrohpc.data.settings import DataSettings
from astrohpc.data.validate import check_finite
from astrohpc.errors import DataError

LAT_NAMES = ("lat", "latitude", "lats")
LON_NAMES = ("lon", "longitude", "lons")
TIME_NAMES = ("time", "t", "Time")
PS_FALLBACK_NAMES = ("PS", "ps", "sp", "psurf")
# Expected-unit conversions we do (source unit, target unit) -> (scale, offset).
UNIT_CONVERSIONS = {("g/kg", "kg/kg"): (1e-3, 0.0), ("g kg-1", "kg kg-1"): (1e-3, 0.0),
                    ("degc", "k"): (1.0, 273.15), ("c", "k"): (1.0, 273.15)}


@dataclass(frozen=True)
class Channel:
    """One row of the cube's channel table."""

    variable: str
    source_name: str
    level: float  # NaN for surface fields; sigma, hybrid coordinate value, or Pa
    level_kind: str  # surface | sigma | hybrid | pressure
    level_units: str
    units: str
    long_name: str

    def key(self) -> tuple:
        return (self.variable, self.level_kind, None if np.isnan(self.level) else round(self.level, 6))


@dataclass
class VariablePlan:
    """How one requested variable is read: its source name, level axis and vertical kind."""

    variable: str
    source_name: str
    level_dim: Optional[str]
    level_kind: str
    level_values: np.ndarray  # native level coordinate values
    level_units: str
    units: str
    long_name: str
    scale: float = 1.0
    offset: float = 0.0
    derivation: Optional[Derivation] = None  # computed from other fields (astrohpc.data.derived)


@dataclass
class SourceInfo:
    """What `inspect_source` learned about one file, without reading field values."""

    path: Path
    model: str
    lat: np.ndarray  # as stored in the file
    lon: np.ndarray
    gw: Optional[np.ndarray]
    orient: grid_mod.Orientation
    time: np.ndarray
    time_units: str
    plans: list[VariablePlan]
    channels: list[Channel]
    levels: LevelSpec
    notes: list[str] = field(default_factory=list)
    static_plans: list[VariablePlan] = field(default_factory=list)  # 2-D fields stored once per run
    sigma_half: Optional[np.ndarray] = None  # model interfaces [lev+1] when fields are on sigma levels
    hybrid_interfaces: Optional[dict] = None  # {"hyai", "hybi", "p0_Pa"} when the file has them

    @property
    def n_time(self) -> int:
        return int(self.time.size)


def open_netcdf(path: Path):
    """xarray Dataset for `path`, times left as numbers (model steps are not calendar dates)."""
    import xarray as xr

    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    check_complete(path)
    try:
        with warnings.catch_warnings():
            # CAM files often declare both _FillValue and missing_value; both decode to NaN, which we check.
            warnings.simplefilter("ignore", category=xr.SerializationWarning)
            return xr.open_dataset(path, decode_times=False, mask_and_scale=True, cache=False)
    except Exception as exc:  # netCDF4/HDF5 raise OSError, ValueError, RuntimeError for bad files
        raise DataError(f"{path}: cannot be read as NetCDF — truncated or corrupt? "
                        f"({type(exc).__name__}: {exc})") from None


def _find_coord(ds, names: tuple, units: tuple, standard_name: str, where: str) -> str:
    for name in names:
        if name in ds.variables and ds[name].ndim == 1:
            return name
    for name, var in ds.variables.items():
        if var.ndim == 1 and (var.attrs.get("standard_name") == standard_name
                              or str(var.attrs.get("units", "")).lower() in units):
            return name
    raise DataError(f"{where}: no {standard_name} coordinate found (looked for {', '.join(names)} or "
                    f"units {', '.join(units)}); is this a structured lat-lon grid?")


def _time_dim(ds, var) -> Optional[str]:
    for dim in var.dims:
        if dim in TIME_NAMES or (dim in ds.variables and ds[dim].attrs.get("axis") == "T"):
            return dim
    return None


def _field_variables(ds, lat_dim: str, lon_dim: str) -> list[str]:
    """Names of (time, [lev], lat, lon) data variables, in file order."""
    out = []
    for name, var in ds.data_vars.items():
        dims = var.dims
        if len(dims) in (3, 4) and dims[-2:] == (lat_dim, lon_dim) and _time_dim(ds, var) == dims[0]:
            out.append(name)
    return out


def _detect_model(ds) -> str:
    names = set(ds.variables)
    if {"hyam", "hybm"} <= names:
        return "cam-hybrid"
    if {"ta", "ps"} <= names or {"ts", "ps"} <= names:
        return "exoplasim"
    return "cf"


def _vertical_kind(ds, level_dim: str, where: str, settings: DataSettings) -> tuple[str, np.ndarray, str]:
    """(kind, level values, level units) for a level dimension."""
    if level_dim in ds.variables:
        coord = ds[level_dim]
        values = np.asarray(coord.values, dtype=np.float64)
        units = str(coord.attrs.get("units", ""))
    else:
        values, units, coord = np.arange(ds.sizes[level_dim], dtype=np.float64), "", None
    std = str(coord.attrs.get("standard_name", "")) if coord is not None else ""
    if "hyam" in ds.variables and "hybm" in ds.variables and ds["hyam"].dims == (level_dim,) \
            or "hybrid" in units.lower() or "hybrid" in std:
        return "hybrid", values, units
    if units.strip().lower() in vertical.PRESSURE_UNITS_TO_PA:
        return "pressure", values * vertical.pressure_factor(units, where), "Pa"
    if "sigma" in std or (values.size and np.all(values > 0) and np.all(values <= 1.0 + 1e-9)):
        return "sigma", values, "1"
    raise DataError(f"{where}: level coordinate {level_dim!r} (units {units!r}) is neither sigma (values in (0, 1]), "
                    "CAM hybrid (hyam/hybm) nor pressure; map the variable to a supported file or drop it with --vars")


def _unit_conversion(units: str, expected: Optional[str], where: str) -> tuple[float, float, str]:
    if expected is None or units.strip() == expected.strip():
        return 1.0, 0.0, units
    src, dst = units.strip().lower(), expected.strip().lower()
    if src in vertical.PRESSURE_UNITS_TO_PA and dst in vertical.PRESSURE_UNITS_TO_PA:
        return vertical.PRESSURE_UNITS_TO_PA[src] / vertical.PRESSURE_UNITS_TO_PA[dst], 0.0, expected
    if (src, dst) in UNIT_CONVERSIONS:
        scale, offset = UNIT_CONVERSIONS[(src, dst)]
        return scale, offset, expected
    raise DataError(f"{where}: units are {units!r} but data.expected_units asks for {expected!r} "
                    "(no conversion known; fix the variable table or the expected units)")


def _surface_pressure_name(ds, settings: DataSettings) -> Optional[str]:
    wanted = settings.variable_table.get(settings.surface_pressure, settings.surface_pressure)
    for name in (wanted, *PS_FALLBACK_NAMES):
        if name in ds.variables:
            return name
    return None


def inspect_source(path: Path, variables: list[str], settings: DataSettings, levels: LevelSpec) -> SourceInfo:
    """Open `path` lazily and plan how each requested variable is read. Raises DataError."""
    path = Path(path)
    ds = open_netcdf(path)
    try:
        where = str(path)
        lat_name = _find_coord(ds, LAT_NAMES, ("degrees_north", "degree_north", "degrees_n"), "latitude", where)
        lon_name = _find_coord(ds, LON_NAMES, ("degrees_east", "degree_east", "degrees_e"), "longitude", where)
        lat = np.asarray(ds[lat_name].values, dtype=np.float64)
        lon = np.asarray(ds[lon_name].values, dtype=np.float64)
        orient = grid_mod.orientation(lat, lon, where)
        gw = np.asarray(ds["gw"].values, np.float64) if "gw" in ds.variables and ds["gw"].dims == (lat_name,) else None
        available = _field_variables(ds, ds[lat_name].dims[0], ds[lon_name].dims[0])
        if not available:
            raise DataError(f"{where}: no (time, [lev], lat, lon) fields found; variables present: "
                            f"{', '.join(ds.variables)}")
        table = settings.variable_table
        static = set(settings.static_variables)
        requested = variables or [c for c in (next((k for k, v in table.items() if v == n), n) for n in available)
                                  if c not in static]
        if not variables:
            requested += [d for d in settings.derived if d not in requested]
        plans = []
        for name in requested:
            if name in settings.derived:
                plans.append(_derived_plan(ds, DERIVATIONS[name], available, settings, where))
                continue
            source_name = table.get(name, name)
            if source_name not in available:
                hint = f" (table maps {name!r} -> {source_name!r})" if name in table else ""
                raise DataError(f"{where}: variable {name!r}{hint} not found; fields in this file: "
                                f"{', '.join(available)} (choose with --vars or map it in data.variable_table)")
            var = ds[source_name]
            vwhere = f"{where}: variable {source_name!r}"
            units = str(var.attrs.get("units", ""))
            scale, offset, units = _unit_conversion(units, settings.expected_units.get(name), vwhere)
            long_name = str(var.attrs.get("long_name", var.attrs.get("standard_name", "")))
            if var.ndim == 4:
                kind, values, level_units = _vertical_kind(ds, var.dims[1], vwhere, settings)
                plans.append(VariablePlan(name, source_name, var.dims[1], kind, values, level_units, units,
                                          long_name, scale, offset))
            else:
                plans.append(VariablePlan(name, source_name, None, "surface", np.array([np.nan]), "", units,
                                          long_name, scale, offset))
        notes = []
        needs_ps = levels.kind == "pressure" and any(p.level_kind in ("sigma", "hybrid") for p in plans)
        if needs_ps and _surface_pressure_name(ds, settings) is None:
            raise DataError(f"{where}: interpolation to pressure levels needs surface pressure "
                            f"({settings.surface_pressure!r} or one of {', '.join(PS_FALLBACK_NAMES)}); "
                            "none found — map it in data.variable_table or use --levels sigma")
        hybrid = [p.source_name for p in plans if p.level_kind == "hybrid"]
        if levels.kind == "pressure" and hybrid and not {"hyam", "hybm"} <= set(ds.variables):
            raise DataError(f"{where}: {', '.join(hybrid)} on hybrid levels but the file has no hyam/hybm "
                            "coefficients, so pressure cannot be computed; use --levels sigma (native levels)")
        if needs_ps and hybrid and "P0" not in ds.variables:
            notes.append(f"{path.name}: no P0 variable; hybrid levels use "
                         f"data.hybrid_p0_Pa = {settings.hybrid_p0_Pa} Pa")
        static_plans = [_static_plan(ds, name, settings, lat_name, lon_name, where)
                        for name in settings.static_variables]
        sigma_half = None
        sigma = next((p for p in plans if p.level_kind == "sigma"), None)
        if sigma is not None:
            try:
                sigma_half = vertical.sigma_half_levels(sigma.level_values, where)
            except DataError:
                if any(p.derivation is not None and p.derivation.name == "zg" for p in plans):
                    raise
                notes.append(f"{path.name}: sigma interfaces not derivable from the full levels; none stored")
        hybrid_interfaces = None
        if {"hyai", "hybi"} <= set(ds.variables):
            p0 = float(ds["P0"].values) * vertical.pressure_factor(ds["P0"].attrs.get("units", "Pa"), f"{where}: P0") \
                if "P0" in ds.variables else settings.hybrid_p0_Pa
            hybrid_interfaces = {"hyai": np.asarray(ds["hyai"].values, np.float64),
                                 "hybi": np.asarray(ds["hybi"].values, np.float64), "p0_Pa": p0}
        first = next((p.source_name for p in plans if p.derivation is None), None)
        time_var = ds[first] if first else ds[table.get(plans[0].derivation.inputs[0], plans[0].derivation.inputs[0])]
        time_name = _time_dim(ds, time_var)
        time = np.asarray(ds[time_name].values, np.float64) if time_name in ds.variables else \
            np.arange(ds.sizes[time_name], dtype=np.float64)
        time_units = str(ds[time_name].attrs.get("units", "")) if time_name in ds.variables else "index"
        channels = _channels(plans, levels)
        return SourceInfo(path, _detect_model(ds), lat, lon, gw, orient, time, time_units, plans, channels,
                          levels, notes, static_plans, sigma_half, hybrid_interfaces)
    finally:
        ds.close()


def _derived_plan(ds, derivation: Derivation, available: list[str], settings: DataSettings,
                  where: str) -> VariablePlan:
    """Plan of a derived variable: its inputs must be in the file (zg also needs a static sg)."""
    table = settings.variable_table
    missing = [name for name in derivation.inputs if table.get(name, name) not in ds.variables]
    if missing:
        raise DataError(f"{where}: derived variable {derivation.name!r} needs {', '.join(derivation.inputs)}; "
                        f"missing {', '.join(missing)} (add them to the GCM's output variables, e.g. "
                        "gcm.snapshot_variables, or drop it from data.derived)")
    if derivation.levels_of is None:
        return VariablePlan(derivation.name, f"derived:{derivation.name}", None, "surface", np.array([np.nan]), "",
                            derivation.units, derivation.long_name, derivation=derivation)
    var = ds[table.get(derivation.levels_of, derivation.levels_of)]
    if var.ndim != 4:
        raise DataError(f"{where}: derived {derivation.name!r} takes its levels from {derivation.levels_of!r}, "
                        f"which is not a (time, lev, lat, lon) field")
    kind, values, level_units = _vertical_kind(ds, var.dims[1], f"{where}: variable {var.name!r}", settings)
    return VariablePlan(derivation.name, f"derived:{derivation.name}", var.dims[1], kind, values, level_units,
                        derivation.units, derivation.long_name, derivation=derivation)


def _static_plan(ds, name: str, settings: DataSettings, lat_name: str, lon_name: str, where: str) -> VariablePlan:
    source_name = settings.variable_table.get(name, name)
    if source_name not in ds.variables:
        raise DataError(f"{where}: static variable {name!r} not found (add it to the GCM's output, e.g. "
                        "gcm.snapshot_variables, or drop it from data.static_variables)")
    var = ds[source_name]
    if var.dims[-2:] != (ds[lat_name].dims[0], ds[lon_name].dims[0]) or var.ndim not in (2, 3):
        raise DataError(f"{where}: static variable {source_name!r} has dims {var.dims}, expected ([time,] lat, lon)")
    return VariablePlan(name, source_name, None, "surface", np.array([np.nan]), "", str(var.attrs.get("units", "")),
                        str(var.attrs.get("long_name", var.attrs.get("standard_name", ""))))


def _channels(plans: list[VariablePlan], levels: LevelSpec) -> list[Channel]:
    out = []
    for p in plans:
        if p.level_kind == "surface":
            out.append(Channel(p.variable, p.source_name, float("nan"), "surface", "", p.units, p.long_name))
        elif levels.kind == "pressure":
            out.extend(Channel(p.variable, p.source_name, float(pa), "pressure", "Pa", p.units, p.long_name)
                       for pa in levels.pressures_Pa)
        else:
            out.extend(Channel(p.variable, p.source_name, float(v), p.level_kind, p.level_units, p.units, p.long_name)
                       for v in p.level_values)
    return out


def _column_pressure(ds, plan: VariablePlan, settings: DataSettings, where: str) -> np.ndarray:
    """Pressure (Pa) of every point of a 3-D variable: [time, lev, lat, lon] or [lev, 1, 1]."""
    if plan.level_kind == "pressure":
        return plan.level_values[:, None, None]
    ps_name = _surface_pressure_name(ds, settings)
    ps_var = ds[ps_name]
    ps = np.asarray(ps_var.values, np.float64) * vertical.pressure_factor(ps_var.attrs.get("units", "Pa"),
                                                                          f"{where}: surface pressure {ps_name!r}")
    check_finite(ps, f"{where}: surface pressure {ps_name!r}", ps_var.dims)
    if plan.level_kind == "sigma":
        return vertical.sigma_pressure(plan.level_values, ps)
    p0 = float(ds["P0"].values) * vertical.pressure_factor(ds["P0"].attrs.get("units", "Pa"), f"{where}: P0") \
        if "P0" in ds.variables else settings.hybrid_p0_Pa
    return vertical.hybrid_pressure(ds["hyam"].values, ds["hybm"].values, p0, ps)


def _read_values(ds, name: str, where: str) -> np.ndarray:
    var = ds[name]
    try:
        values = np.asarray(var.values)
    except Exception as exc:
        raise DataError(f"{where}: values cannot be read — truncated or corrupt file? ({exc})") from None
    check_finite(values, where, var.dims)
    return values


def _derive(ds, info: SourceInfo, plan: VariablePlan, settings: DataSettings, constants: dict) -> np.ndarray:
    derivation = plan.derivation
    missing = [c for c in derivation.constants if not isinstance(constants.get(c), (int, float))]
    if missing:
        raise DataError(f"{info.path}: derived {derivation.name!r} needs the planet's {', '.join(missing)} "
                        "(from the run's summary.json, or run_params when converting plain files)")
    table = settings.variable_table
    inputs = {name: _read_values(ds, table.get(name, name), f"{info.path}: variable {table.get(name, name)!r}")
              .astype(np.float64) for name in derivation.inputs}
    return derivation.compute(inputs, constants, info.sigma_half, f"{info.path}: derived {derivation.name!r}")


def load_static(info: SourceInfo, tolerance: float = 1e-6) -> dict[str, np.ndarray]:
    """The static fields of a file: name -> float64 [lat, lon] (first record), south->north, 0-360.

    DataError when a "static" field changes between records by more than `tolerance` (relative
    to its largest magnitude): then it is not static and belongs in `data.variables`.
    """
    if not info.static_plans:
        return {}
    ds = open_netcdf(info.path)
    try:
        out = {}
        for plan in info.static_plans:
            where = f"{info.path}: static variable {plan.source_name!r}"
            values = _read_values(ds, plan.source_name, where).astype(np.float64)
            if values.ndim == 3:
                spread = float(np.max(np.abs(values - values[:1]))) if values.shape[0] > 1 else 0.0
                if spread > tolerance * max(1.0, float(np.max(np.abs(values)))):
                    raise DataError(f"{where}: changes by up to {spread:.3g} between records, so it is not static; "
                                    "list it under data.variables instead of data.static_variables")
                values = values[0]
            out[plan.variable] = info.orient.apply(values)
        return out
    finally:
        ds.close()


def load_source(info: SourceInfo, settings: DataSettings, constants: Optional[dict] = None) -> np.ndarray:
    """Read, validate and orient every channel: float32 [time, channel, lat, lon], south->north, 0-360.

    constants: the run's planet parameters, for derived variables that need them (zg: R, g).
    """
    ds = open_netcdf(info.path)
    try:
        parts = []
        for plan in info.plans:
            if plan.derivation is not None:
                values = _derive(ds, info, plan, settings, constants or {})
                where = f"{info.path}: derived {plan.variable!r}"
            else:
                where = f"{info.path}: variable {plan.source_name!r}"
                values = _read_values(ds, plan.source_name, where)
                values = values.astype(np.float64) * plan.scale + plan.offset \
                    if (plan.scale, plan.offset) != (1.0, 0.0) else values
            if plan.level_kind == "surface":
                parts.append(values[:, None])
            elif info.levels.kind == "pressure":
                pressure = _column_pressure(ds, plan, settings, where)
                parts.append(vertical.interp_log_pressure(values, pressure, np.array(info.levels.pressures_Pa)))
            else:
                parts.append(values)
        cube = np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1)
        return info.orient.apply(cube)
    finally:
        ds.close()
