"""How far each run of a cube still is from equilibrium, over its last days.

The global-mean net TOA flux (`ntr`, positive down: a positive value means the planet is
still taking up energy) averaged over the window, and the linear trend of the global-mean
surface temperature over the same window. Use the cube of interval means for the flux where
there is one: daily instantaneous snapshots sample the diurnal cycle at one phase.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.analysis.cube_means import global_mean_series
from astrohpc.analysis.cube_means import last_days_mask as _window
from astrohpc.data.cube import read_meta

DAYS_PER_YEAR = 365.25


def equilibrium_rows(cube: str | Path, window_days: float = 10.0, flux_cube: Optional[str | Path] = None
                     ) -> list[dict[str, Any]]:
    """One row per run: TOA imbalance (W m⁻²) and surface-temperature trend (K/day, K/yr) over the
    last `window_days` days. `flux_cube`: a cube of interval means for the imbalance (default `cube`)."""
    meta = read_meta(cube)
    ts = global_mean_series(cube, "ts")
    flux_source = Path(flux_cube) if flux_cube is not None else Path(cube)
    flux_meta = read_meta(flux_source)
    flux_meta.require(["ntr"], "the TOA imbalance")
    ntr = global_mean_series(flux_source, "ntr")
    flux_index = {name: r for r, name in enumerate(flux_meta.run_names)}
    rows = []
    for r, name in enumerate(meta.run_names):
        days = meta.time_days[r]
        last = _window(days, window_days)
        slope = float(np.polyfit(days[last], ts[r][last], 1)[0]) if last.sum() >= 2 else float("nan")
        imbalance = float("nan")
        if name in flux_index:
            f = flux_index[name]
            flast = _window(flux_meta.time_days[f], window_days)
            imbalance = float(np.mean(ntr[f][flast])) if flast.any() else float("nan")
        rows.append({"run": name, "days": float(np.nanmax(days)), "window_days": window_days,
                     "toa_imbalance_W_m2": imbalance, "ts_trend_K_per_day": slope,
                     "ts_trend_K_per_yr": slope * DAYS_PER_YEAR, "final_global_ts_K": float(ts[r][last][-1])})
    return rows
