"""Compare one variable of two GCM outputs on the same grid: explicit alignment, area-weighted scores.

The candidate is brought onto the reference's grid by position, never by coordinate labels
(label alignment silently drops rows whose latitudes differ by float noise), and every step is
reported: a latitude flip, a longitude convention change (−180..180 ↔ 0..360) and roll, a
level flip, coordinates equal only within `tolerance_deg`. Anything more — other sizes, other
coordinates, other units — is a DataError: regrid first.

Area weights come from the reference file: `gw` (CAM convention), else latitude bounds, else
cos(latitude); uniform in longitude. Scores count an element only where both files are finite.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np
import xarray as xr

from astrohpc.errors import DataError

log = logging.getLogger(__name__)

DEFAULT_TOLERANCE_DEG = 1e-3
_LAT_UNITS = {"degrees_north", "degree_north", "degrees_n", "degree_n", "degreesn", "degreen"}
_LON_UNITS = {"degrees_east", "degree_east", "degrees_e", "degree_e", "degreese", "degreee"}
_REGRID = "regrid the candidate onto the reference grid first (e.g. `cdo remapbil,REF.nc CAND.nc out.nc`)"


@dataclass(frozen=True)
class GridField:
    """One variable of one file as read. values: [time, lev, lat, lon] float64 (time and lev of
    size 1 when the variable has no such axis); lat, lon: [lat], [lon] degrees in file order;
    time: [time] raw values or None; level: [lev] coordinate values or None (no axis, or an axis
    without a coordinate: see `level_dim`); gw: [lat] CAM Gaussian weights; lat_bounds: [lat, 2]."""

    path: str
    name: str
    units: Optional[str]
    values: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    lat_name: str
    lon_name: str
    time: Optional[np.ndarray]
    level_dim: Optional[str]
    level: Optional[np.ndarray]
    gw: Optional[np.ndarray]
    lat_bounds: Optional[np.ndarray]
    lat_bounds_name: Optional[str]
    decode_notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------------------- reading


def _norm_units(units: Any) -> str:
    return str(units).strip().lower().replace(" ", "_")


def _is_axis(name: str, attrs: dict, axis: str) -> bool:
    """CF: standard_name, else units, else the usual names (axis 'lat' or 'lon')."""
    standard = {"lat": "latitude", "lon": "longitude"}[axis]
    units = _LAT_UNITS if axis == "lat" else _LON_UNITS
    return (attrs.get("standard_name") == standard or _norm_units(attrs.get("units", "")) in units
            or name.lower() in (axis, standard))


def _is_time(name: str, attrs: dict) -> bool:
    return (name.lower() == "time" or attrs.get("axis") == "T" or attrs.get("standard_name") == "time"
            or " since " in str(attrs.get("units", "")))


def _coordinate_of(ds: xr.Dataset, dim: str) -> list[str]:
    """Names of the 1-D variables along `dim`, the dimension coordinate first."""
    names = [n for n, v in ds.variables.items() if v.dims == (dim,)]
    return sorted(names, key=lambda n: n != dim)


def _find_axis(ds: xr.Dataset, dims: tuple, axis: str, path: Path, var: str) -> tuple[str, str]:
    """(dim, coordinate name) of the latitude or longitude axis among `dims`."""
    found = []
    for d in dims:
        names = [n for n in _coordinate_of(ds, d) if _is_axis(n, ds.variables[n].attrs, axis)]
        found += [(d, names[0])] if names else []
    if len(found) != 1:
        word = {"lat": "latitude", "lon": "longitude"}[axis]
        raise DataError(f"{path}: {'no' if not found else 'more than one'} {word} axis among the dimensions {dims} "
                        f"of {var!r} (looked for a coordinate with standard_name {word}, units "
                        f"{'degrees_north' if axis == 'lat' else 'degrees_east'} or the name {axis}/{word}); "
                        "an unstructured or curvilinear grid must be regridded to lat-lon first")
    return found[0]


def _lat_bounds_name(ds: xr.Dataset, lat_name: str, lat_dim: str) -> Optional[str]:
    named = ds.variables[lat_name].attrs.get("bounds")
    for name in [named, "lat_bnds", "lat_bounds", f"{lat_name}_bnds", f"{lat_name}_bounds"]:
        if name and name in ds.variables:
            v = ds.variables[name]
            if v.ndim == 2 and v.dims[0] == lat_dim and v.shape[1] == 2:
                return name
    return None


def read_field(path: str | Path, var: str) -> GridField:
    """Read `var` of a NetCDF file (netCDF4 engine, CF masking and scaling, raw time values)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file (give the path of a NetCDF GCM output)")
    try:
        with xr.open_dataset(path, engine="netcdf4", decode_cf=False) as raw:
            if var not in raw.data_vars:
                raise DataError(f"{path}: no variable {var!r}; it has {', '.join(sorted(map(str, raw.data_vars)))}")
            dims = raw[var].dims
            lat_dim, lat_name = _find_axis(raw, dims, "lat", path, var)
            lon_dim, lon_name = _find_axis(raw, dims, "lon", path, var)
            if lat_dim == lon_dim:
                raise DataError(f"{path}: latitude and longitude of {var!r} share the dimension {lat_dim!r} "
                                "(an unstructured grid): regrid to a lat-lon grid first")
            time_dims = [d for d in dims if d not in (lat_dim, lon_dim) and (
                d.lower() == "time" or any(_is_time(n, raw.variables[n].attrs) for n in _coordinate_of(raw, d)))]
            other = [d for d in dims if d not in (lat_dim, lon_dim, *time_dims)]
            if len(time_dims) > 1 or len(other) > 1:
                raise DataError(f"{path}: {var!r} has dimensions {dims}: expected at most one time and one "
                                "vertical axis besides latitude and longitude")
            time_dim = time_dims[0] if time_dims else None
            level_dim = other[0] if other else None
            gw_ok = "gw" in raw.variables and raw.variables["gw"].dims == (lat_dim,)
            bounds = _lat_bounds_name(raw, lat_name, lat_dim)
            wanted = [var, lat_name, lon_name, *[n for n in (time_dim, level_dim, bounds) if n in raw.variables]]
            wanted += ["gw"] if gw_ok else []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = xr.decode_cf(raw[list(dict.fromkeys(wanted))], decode_times=False)
                da = ds[var].transpose(*[d for d in (time_dim, level_dim, lat_dim, lon_dim) if d])
                values = np.asarray(da.values, dtype=np.float64)
            notes = tuple(dict.fromkeys(f"{path.name}: {w.message}" for w in caught))
            values = values if time_dim else values[None]
            values = values if level_dim else values[:, None]
            level = ds[level_dim].values.astype(np.float64) if level_dim in ds.variables else None
            return GridField(
                path=str(path), name=var, units=da.attrs.get("units"), values=values,
                lat=ds[lat_name].values.astype(np.float64), lon=ds[lon_name].values.astype(np.float64),
                lat_name=lat_name, lon_name=lon_name,
                time=ds[time_dim].values if time_dim in ds.variables else None,
                level_dim=level_dim, level=level,
                gw=ds["gw"].values.astype(np.float64) if gw_ok else None,
                lat_bounds=ds[bounds].values.astype(np.float64) if bounds else None, lat_bounds_name=bounds,
                decode_notes=notes)
    except (OSError, ValueError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read as NetCDF ({exc})") from exc


# --------------------------------------------------------------------------------------- alignment


def _matching_order(ref: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """Indices p with cand[p] in the same rank order as ref (the i-th smallest onto the i-th smallest)."""
    p = np.empty(ref.size, dtype=np.intp)
    p[np.argsort(ref, kind="stable")] = np.argsort(cand, kind="stable")
    return p


def _describe_order(p: np.ndarray) -> Optional[str]:
    """'flip', 'roll by k', 'reorder', or None for the identity."""
    n = p.size
    if np.array_equal(p, np.arange(n)):
        return None
    if np.array_equal(p, np.arange(n)[::-1]):
        return "flip"
    if np.array_equal(p, np.roll(np.arange(n), -int(p[0]))):
        return f"roll by {-int(p[0])}"
    return "reorder"


def _lon_convention(lon: np.ndarray) -> str:
    return "-180..180" if lon.min() < 0 else "0..360"


def _check_sizes(axis: str, n_ref: int, n_cand: int, ref: GridField, cand: GridField) -> None:
    if n_ref != n_cand:
        raise DataError(f"{axis}: {ref.path} has {n_ref} points, {cand.path} has {n_cand}: not the same grid "
                        f"(rows are never dropped to make them fit); {_REGRID}")


def _check_unique(axis: str, values: np.ndarray, path: str) -> None:
    if np.unique(values).size != values.size:
        raise DataError(f"{path}: the {axis} coordinate has repeated values; cannot match it point by point")


def align_candidate(ref: GridField, cand: GridField,
                    tolerance_deg: float = DEFAULT_TOLERANCE_DEG) -> tuple[GridField, list[dict[str, Any]], dict]:
    """The candidate on the reference's grid (lat, lon, level order), the alignment steps taken
    ([{axis, action, detail, ...}]) and per-axis coordinate facts {axis: {size, max_diff_deg}}."""
    steps: list[dict[str, Any]] = []
    coords: dict[str, dict[str, Any]] = {}
    values = cand.values
    lat_order = np.arange(cand.lat.size)
    for axis, ref_c, cand_c, dim in (("lat", ref.lat, cand.lat, 2), ("lon", ref.lon, cand.lon, 3)):
        _check_sizes(axis, ref_c.size, cand_c.size, ref, cand)
        _check_unique(axis, ref_c, ref.path)
        if axis == "lon":
            start = float(ref_c.min())
            # Onto the reference's 360° window; a point within tolerance below its start wraps to it.
            wrapped = start + np.mod(cand_c - start + tolerance_deg, 360.0) - tolerance_deg
            if _lon_convention(ref_c) != _lon_convention(cand_c):
                steps.append({"axis": "lon", "action": "convention",
                              "detail": f"candidate longitudes {_lon_convention(cand_c)} mapped onto the "
                                        f"reference's {_lon_convention(ref_c)}"})
            cand_c = wrapped
        _check_unique(axis, cand_c, cand.path)
        p = _matching_order(ref_c, cand_c)
        order = _describe_order(p)
        if order is not None:
            values = np.take(values, p, axis=dim)
            original = cand.lat if axis == "lat" else cand.lon
            steps.append({"axis": axis, "action": order.split()[0],
                          "detail": f"candidate {axis} {order} to the reference order (reference "
                                    f"{_direction(ref_c)}, candidate {_direction(original)} in its file)"})
        diff = np.abs(ref_c - cand_c[p])
        if axis == "lon":
            diff = np.abs(np.mod(diff + 180.0, 360.0) - 180.0)
        max_diff = float(diff.max()) if diff.size else 0.0
        if max_diff > tolerance_deg:
            raise DataError(f"{axis}: the coordinates of {ref.path} and {cand.path} differ by up to {max_diff:.6g} "
                            f"degrees after alignment (tolerance {tolerance_deg:g}): different grids; {_REGRID}")
        if max_diff > 0:
            steps.append({"axis": axis, "action": "within_tolerance", "max_diff_deg": max_diff,
                          "detail": f"{axis} coordinates differ by up to {max_diff:.3g} degrees (<= tolerance "
                                    f"{tolerance_deg:g}): treated as equal, the reference's are used"})
        coords[axis] = {"size": int(ref_c.size), "max_diff_deg": max_diff}
        lat_order = p if axis == "lat" else lat_order
    values, level_steps = _align_levels(ref, cand, values)
    steps += level_steps
    aligned = replace(cand, values=values, lat=ref.lat, lon=ref.lon, level=ref.level,
                      gw=None if cand.gw is None else cand.gw[lat_order],
                      lat_bounds=None if cand.lat_bounds is None else cand.lat_bounds[lat_order])
    return aligned, steps, coords


def _direction(c: np.ndarray) -> str:
    return "ascending" if c.size < 2 or c[-1] > c[0] else "descending"


def _align_levels(ref: GridField, cand: GridField, values: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    if (ref.level_dim is None) != (cand.level_dim is None):
        has, lacks = (ref, cand) if ref.level_dim else (cand, ref)
        raise DataError(f"{ref.name} has a vertical axis {has.level_dim!r} in {has.path} but none in {lacks.path}: "
                        "compare a single level (select it first)")
    if ref.level_dim is None:
        return values, []
    _check_sizes("level", ref.values.shape[1], values.shape[1], ref, cand)
    if ref.level is None or cand.level is None:
        return values, [{"axis": "level", "action": "by_position",
                         "detail": "a file has no level coordinate: levels paired by position"}]
    if np.allclose(ref.level, cand.level, rtol=1e-6, atol=0.0):
        return values, []
    if np.allclose(ref.level, cand.level[::-1], rtol=1e-6, atol=0.0):
        return values[:, ::-1], [{"axis": "level", "action": "flip",
                                  "detail": "candidate levels flipped to the reference order"}]
    raise DataError(f"levels differ: {ref.path} has {ref.level.tolist()}, {cand.path} has {cand.level.tolist()}; "
                    "interpolate the candidate to the reference levels first")


# ------------------------------------------------------------------------------------------ weights


def area_weights(ref: GridField) -> tuple[np.ndarray, str]:
    """[lat, lon] area weights summing to 1 on the reference grid, and their source."""
    if ref.gw is not None:
        w_lat, source = ref.gw, "gw (reference file)"
    elif ref.lat_bounds is not None:
        b = np.deg2rad(ref.lat_bounds)
        w_lat, source = np.abs(np.sin(b[:, 1]) - np.sin(b[:, 0])), f"latitude bounds {ref.lat_bounds_name!r}"
    else:
        w_lat, source = np.clip(np.cos(np.deg2rad(ref.lat)), 0.0, None), "cos(latitude)"
    if not np.isfinite(w_lat).all() or (w_lat < 0).any() or w_lat.sum() <= 0:
        raise DataError(f"{ref.path}: the area weights from {source} are not finite and >= 0 with a positive sum")
    w = np.broadcast_to(w_lat[:, None], (ref.lat.size, ref.lon.size))
    return w / w.sum(), source


# ------------------------------------------------------------------------------------------- scores


def _nanmean_time(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN and drop out later
        return np.nanmean(x, axis=0, keepdims=True)


def _weighted_corr(r: np.ndarray, c: np.ndarray, w: np.ndarray) -> Optional[float]:
    valid = np.isfinite(r) & np.isfinite(c)
    ww = np.where(valid, w, 0.0)
    if ww.sum() <= 0:
        return None
    r, c = np.where(valid, r, 0.0), np.where(valid, c, 0.0)
    ra, ca = r - (ww * r).sum() / ww.sum(), c - (ww * c).sum() / ww.sum()
    var_r, var_c = (ww * ra * ra).sum(), (ww * ca * ca).sum()
    if var_r <= 0 or var_c <= 0:
        return None  # a spatially constant field: correlation undefined
    return float((ww * ra * ca).sum() / math.sqrt(var_r * var_c))


def field_scores(ref: np.ndarray, cand: np.ndarray, weights: np.ndarray) -> dict[str, Any]:
    """Scores of cand − ref over [time, ..., lat, lon] with [lat, lon] weights: area-weighted RMSE
    and bias, max |diff| (units of the field), the area-weighted pattern correlation of the time
    means, and how many elements were left out for a non-finite value in either field."""
    valid = np.isfinite(ref) & np.isfinite(cand)
    w = np.where(valid, np.broadcast_to(weights, ref.shape), 0.0)
    if not valid.any() or w.sum() <= 0:
        return {"rmse": None, "bias": None, "max_abs_diff": None, "pattern_correlation": None,
                "masked_values": int(valid.size)}
    diff = np.where(valid, cand - ref, 0.0)
    return {"rmse": float(math.sqrt((w * diff * diff).sum() / w.sum())),
            "bias": float((w * diff).sum() / w.sum()),
            "max_abs_diff": float(np.abs(diff).max()),
            "pattern_correlation": _weighted_corr(_nanmean_time(ref)[0], _nanmean_time(cand)[0],
                                                  np.broadcast_to(weights, ref.shape[1:])),
            "masked_values": int(valid.size - valid.sum())}


def _time_pairing(ref: GridField, cand: GridField, time_mean: bool) -> dict[str, Any]:
    n_ref, n_cand = ref.values.shape[0], cand.values.shape[0]
    info: dict[str, Any] = {"mode": "time-mean" if time_mean else "paired",
                            "steps_reference": n_ref, "steps_candidate": n_cand}
    if time_mean:
        return info
    if n_ref != n_cand:
        raise DataError(f"{ref.name} has {n_ref} time step(s) in {ref.path} and {n_cand} in {cand.path}: "
                        "pass --time-mean to compare time means, or cut both files to the same steps")
    info["compared"] = n_ref
    same = (ref.time is not None and cand.time is not None and np.shape(ref.time) == np.shape(cand.time)
            and np.array_equal(ref.time, cand.time))
    info["time_values_equal"] = bool(same)
    if not same:
        info["detail"] = f"{n_ref} step(s) paired by position; their time values differ or are absent"
    return info


def compare_fields(reference: str | Path, candidate: str | Path, var: str, time_mean: bool = False,
                   tolerance_deg: float = DEFAULT_TOLERANCE_DEG) -> dict[str, Any]:
    """Compare `var` of two NetCDF files on the same grid (candidate − reference).

    Returns a JSON-ready dict: variable, units, reference, candidate, method {alignment: steps,
    coordinates, weights, time, notes}, the overall rmse, bias, max_abs_diff, pattern_correlation
    (over every time step and level, levels weighted equally), masked_values, and `levels`: one
    row per level ({index, value, rmse, bias, max_abs_diff, pattern_correlation}), [] if none.
    """
    if not tolerance_deg >= 0:
        raise DataError(f"tolerance_deg must be >= 0, got {tolerance_deg}")
    ref, cand = read_field(reference, var), read_field(candidate, var)
    if ref.units != cand.units:
        raise DataError(f"{var} is in {ref.units!r} in {ref.path} but {cand.units!r} in {cand.path}: "
                        "convert one file to the other's units first")
    cand, steps, coords = align_candidate(ref, cand, tolerance_deg)
    weights, source = area_weights(ref)
    notes = [*ref.decode_notes, *cand.decode_notes]
    if ref.gw is not None and cand.gw is not None and not np.allclose(ref.gw, cand.gw, rtol=1e-4, atol=0.0):
        notes.append("the candidate's gw differs from the reference's by more than 1e-4 (relative): "
                     "the reference's is used")
    time = _time_pairing(ref, cand, time_mean)
    r, c = (ref.values, cand.values) if not time_mean else (_nanmean_time(ref.values), _nanmean_time(cand.values))
    overall = field_scores(r, c, weights)
    if overall["rmse"] is None:
        raise DataError(f"{var}: no element is finite in both {ref.path} and {cand.path}")
    if overall["masked_values"]:
        notes.append(f"{overall['masked_values']} of {r.size} values left out (non-finite in either file)")
    levels = []
    if ref.level_dim is not None:
        for k in range(r.shape[1]):
            row = field_scores(r[:, k], c[:, k], weights)
            levels.append({"index": k, "value": None if ref.level is None else float(ref.level[k]), **row})
    for step in steps:
        log.info("%s: %s", var, step["detail"])
    return {"variable": var, "units": ref.units, "reference": ref.path, "candidate": cand.path,
            "method": {"alignment": steps, "coordinates": coords, "weights": source, "time": time,
                       "level_axis": ref.level_dim, "notes": notes},
            **overall, "levels": levels}


def comparison_table(result: dict[str, Any]) -> str:
    """A short plain-text summary of a `compare_fields` result (for the CLI)."""
    m = result["method"]
    lines = [f"{result['variable']} [{result['units']}]: {result['candidate']} - {result['reference']}",
             f"weights: {m['weights']}; time: {m['time']['mode']} "
             f"({m['time']['steps_reference']} vs {m['time']['steps_candidate']} step(s))"]
    lines += [f"aligned: {s['detail']}" for s in m["alignment"]] or ["aligned: nothing to do (same grid and order)"]
    lines += [f"time: {m['time']['detail']}"] if "detail" in m["time"] else []
    lines += [f"note: {n}" for n in m["notes"]]
    fmt = lambda v: "-" if v is None else f"{v:.6g}"  # noqa: E731
    lines.append(f"{'level':>12} {'rmse':>12} {'bias':>12} {'max|diff|':>12} {'corr':>10}")
    rows = [(f"{row['index']}" + ("" if row["value"] is None else f" ({row['value']:.4g})"), row)
            for row in result["levels"]]
    for label, row in [*rows, ("all", result)]:
        lines.append(f"{label:>12} {fmt(row['rmse']):>12} {fmt(row['bias']):>12} {fmt(row['max_abs_diff']):>12} "
                     f"{fmt(row['pattern_correlation']):>10}")
    return "\n".join(lines)
