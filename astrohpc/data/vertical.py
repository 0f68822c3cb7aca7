"""Vertical coordinates: sigma, CAM hybrid and pressure levels; interpolation linear in log p.

Pure functions on numpy arrays. Pressures are in Pa throughout.
"""

from __future__ import annotations

import numpy as np

from astrohpc.errors import DataError

# CF/UDUNITS spellings of pressure units seen in GCM output, and their factor to Pa.
PRESSURE_UNITS_TO_PA = {"pa": 1.0, "pascal": 1.0, "pascals": 1.0, "hpa": 100.0, "mb": 100.0, "mbar": 100.0,
                        "millibar": 100.0, "millibars": 100.0, "kpa": 1000.0, "bar": 1.0e5, "bars": 1.0e5}


def pressure_factor(units: str | None, where: str) -> float:
    """Factor taking pressure in `units` to Pa; DataError for anything not a pressure unit."""
    key = (units or "").strip().lower()
    if key not in PRESSURE_UNITS_TO_PA:
        raise DataError(f"{where}: units {units!r} are not a pressure unit "
                        f"(expected one of {', '.join(sorted(PRESSURE_UNITS_TO_PA))})")
    return PRESSURE_UNITS_TO_PA[key]


def sigma_pressure(sigma: np.ndarray, ps: np.ndarray) -> np.ndarray:
    """p = σ·ps. sigma: [lev]; ps: [..., lat, lon] in Pa -> [..., lev, lat, lon] in Pa."""
    ps = np.asarray(ps, dtype=np.float64)
    return np.asarray(sigma, np.float64)[:, None, None] * ps[..., None, :, :]


def hybrid_pressure(hyam: np.ndarray, hybm: np.ndarray, p0: float, ps: np.ndarray) -> np.ndarray:
    """CAM hybrid levels: p = A·P0 + B·ps. hyam, hybm: [lev]; ps: [..., lat, lon] Pa -> [..., lev, lat, lon]."""
    ps = np.asarray(ps, dtype=np.float64)
    a = np.asarray(hyam, np.float64)[:, None, None] * p0
    b = np.asarray(hybm, np.float64)[:, None, None]
    return a + b * ps[..., None, :, :]


def interp_log_pressure(values: np.ndarray, pressure: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Interpolate linearly in log p onto `targets` (Pa), column by column.

    values, pressure: [..., lev, lat, lon] (any level order; p may vary per column);
    targets: [k] Pa. Returns float64 [..., k, lat, lon]; NaN where a target lies outside the
    column's range of model levels (below the lowest level, which includes below the surface,
    or above the top) — never extrapolated.
    """
    values = np.asarray(values, dtype=np.float64)
    logp = np.log(np.broadcast_to(np.asarray(pressure, dtype=np.float64), values.shape))
    if values.shape[-3] < 2:
        raise DataError("pressure interpolation needs at least 2 model levels")
    order = np.argsort(logp, axis=-3, kind="stable")  # increasing pressure along the level axis
    logp = np.take_along_axis(logp, order, axis=-3)
    values = np.take_along_axis(values, order, axis=-3)
    nlev = values.shape[-3]
    out_shape = values.shape[:-3] + (len(targets),) + values.shape[-2:]
    out = np.full(out_shape, np.nan)
    for k, target in enumerate(np.log(np.asarray(targets, dtype=np.float64))):
        # upper = index of the first level with log p >= target, per column
        upper = np.sum(logp < target, axis=-3, keepdims=True)
        at_top = (upper == 0) & (logp[..., :1, :, :] == target)  # exactly on the top level
        inside = (upper > 0) & (upper < nlev) | at_top
        hi = np.clip(upper, 1, nlev - 1)
        lo = hi - 1
        p_lo, p_hi = np.take_along_axis(logp, lo, -3), np.take_along_axis(logp, hi, -3)
        v_lo, v_hi = np.take_along_axis(values, lo, -3), np.take_along_axis(values, hi, -3)
        frac = (target - p_lo) / (p_hi - p_lo)
        column = v_lo + frac * (v_hi - v_lo)
        out[..., k, :, :] = np.where(inside, column, np.nan)[..., 0, :, :]
    return out


def sigma_half_levels(sigma_full: np.ndarray, where: str = "") -> np.ndarray:
    """Interfaces σ_{k+1/2} [lev+1] (top 0 -> bottom 1) of full levels that are their midpoints.

    PlaSim/ExoPlaSim define σ_k = (σ_{k-1/2} + σ_{k+1/2}) / 2 with σ_{1/2} = 0 (plasim.f90), so
    the interfaces follow from the full levels by recursion; the files' own `levp` is not the
    model's interfaces. Float32 levels give interfaces to ~1e-6; the bottom one is set to 1.
    """
    full = np.asarray(sigma_full, dtype=np.float64)
    half = np.zeros(full.size + 1)
    for k, s in enumerate(full):
        half[k + 1] = 2.0 * s - half[k]
    if not np.all(np.diff(half) > 0) or abs(half[-1] - 1.0) > 1e-4:
        raise DataError(f"{where}: sigma levels {np.round(full, 5).tolist()} are not the midpoints of interfaces "
                        f"from 0 to 1 (recursion ends at {half[-1]:.6f}); cannot derive half levels — "
                        "store hybrid interfaces (hyai/hybi) or use a model with PlaSim's vertical grid")
    half[-1] = 1.0
    return half
