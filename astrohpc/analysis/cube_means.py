"""Area-weighted global means of datacube channels, in the channel's own units."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from astrohpc.data import schema
from astrohpc.data.cube import open_file, read_meta


def global_mean_series(cube: str | Path, variable: str, level: Optional[float] = None) -> np.ndarray:
    """Area-weighted global mean of one channel: [run, time] (NaN past each run's last step)."""
    meta = read_meta(cube)
    channel = meta.channel(variable, level)
    runs, steps = meta.shape[:2]
    out = np.full((runs, steps), np.nan)
    with open_file(cube) as f:
        weights = f[schema.AREA_WEIGHT][()]
        fields = f[schema.FIELDS]
        for r, count in enumerate(meta.time_count.tolist()):
            block = fields[r, :count, channel].astype(np.float64)  # [time, lat, lon]
            out[r, :count] = np.einsum("tij,ij->t", block, weights) / weights.sum()
    return out


def last_days_mask(days: np.ndarray, window_days: float) -> np.ndarray:
    """Mask of the records of the last `window_days` days of a run (t > t_end − window)."""
    valid = np.isfinite(days)
    return valid & (days > np.nanmax(days) - window_days + 1e-9)


def time_mean_fields(cube: str | Path, channels: list[int], window_days: float,
                     runs: Optional[list[int]] = None) -> np.ndarray:
    """The mean of the last `window_days` days of each run, float64 [run, C, lat, lon], for the
    cube's `channels` (every run, or `runs` in that order): astrohpc.studies.baselines.read_time_means
    from each run's first record in the window."""
    from astrohpc.studies.baselines import read_time_means

    meta = read_meta(cube, stats=False)
    runs = list(range(meta.shape[0])) if runs is None else list(runs)
    starts = [int(np.flatnonzero(last_days_mask(meta.time_days[r], window_days))[0]) for r in runs]
    return np.stack([read_time_means(cube, [r], channels, start)[0] for r, start in zip(runs, starts)])
