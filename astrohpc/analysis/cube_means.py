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
