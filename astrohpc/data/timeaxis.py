"""Source time values -> days since the run's start (the cube's `time`).

- ExoPlaSim (`units: timesteps`, the step counter of the model year): days = (t − t₀) · step /
  86 400 + one output interval, because the first record is written one output interval after
  the run starts. The counter restarts each model year; a drop is unwrapped assuming evenly
  spaced records. Needs the step length and output interval (from the run's summary.json).
- CF `<unit> since <date>`: days = (t − t₀) in days: a plain file's run starts at its first
  record (t = 0 there).
- A single record is day 0 whatever its units (a climatology, one snapshot).
Anything else is an error: without units a time axis cannot be put in days.
"""

from __future__ import annotations

import re
from typing import Optional

import numpy as np

from astrohpc.errors import DataError

SECONDS_PER_DAY = 86400.0
_CF_UNIT_DAYS = {"day": 1.0, "days": 1.0, "d": 1.0, "hour": 1 / 24, "hours": 1 / 24, "h": 1 / 24, "hr": 1 / 24,
                 "minute": 1 / 1440, "minutes": 1 / 1440, "min": 1 / 1440, "second": 1 / 86400,
                 "seconds": 1 / 86400, "s": 1 / 86400, "sec": 1 / 86400}
_CF_SINCE = re.compile(r"^\s*(\w+)\s+since\s+.+$", re.IGNORECASE)


def unwrap_counter(t: np.ndarray) -> np.ndarray:
    """A step counter that restarts (each model year) made monotonic, records assumed evenly spaced."""
    t = np.asarray(t, np.float64).copy()
    if t.size < 2:
        return t
    spacing = float(np.median(np.diff(t)[np.diff(t) > 0])) if np.any(np.diff(t) > 0) else 1.0
    for i in range(1, t.size):
        if t[i] <= t[i - 1]:
            t[i:] += t[i - 1] - t[i] + spacing
    return t


def days_since_start(t: np.ndarray, units: str, step_s: Optional[float], output_interval_days: Optional[float],
                     where: str) -> np.ndarray:
    """float64 days since the run's start for source times `t` in `units` (see the module doc)."""
    t = np.asarray(t, np.float64)
    key = (units or "").strip().lower()
    if key in ("timesteps", "timestep", "steps"):
        if not step_s or output_interval_days is None:
            raise DataError(f"{where}: time counts model steps, but the step length or output interval is "
                            "unknown (convert the run folder, whose summary.json records them, or set "
                            "data.source_step_minutes and data.source_output_interval_days)")
        t = unwrap_counter(t)
        return (t - t[0]) * step_s / SECONDS_PER_DAY + output_interval_days
    if t.size == 1:
        return np.zeros(1)  # one record (a climatology, a single snapshot): the run starts there
    match = _CF_SINCE.match(units or "")
    if match and match.group(1).lower() in _CF_UNIT_DAYS:
        return (t - t[0]) * _CF_UNIT_DAYS[match.group(1).lower()]
    raise DataError(f"{where}: time units {units!r} cannot be put in days (expected CF '<unit> since <date>' "
                    "or ExoPlaSim 'timesteps'); fix the file's time units attribute")
