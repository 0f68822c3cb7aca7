"""The emulator's initial state, from any cube or from a GCM NetCDF file, matched to the model.

The state's channels are found by name (variable and level) and checked by units against the
model's (the training cube's layout, carried by the export); the grid must be the model's. Any
mismatch is one DataError naming what differs and the fix. A NetCDF file (or a GCM run folder) is
converted on the fly into a temporary cube with the data settings, then read the same way.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.data.match import check_grid, match_channels
from astrohpc.errors import ConfigError, DataError


@dataclass
class InitialState:
    """x0 [C, lat, lon] float64 in the model's channel order; the run's parameters (all of them,
    raw); static fields name -> [lat, lon]; the state's day since the run's start; the GCM's step."""

    x0: np.ndarray
    params: dict[str, float]
    static: dict[str, np.ndarray]
    day0: float
    time_step_s: float
    source: str


def from_cube(cube: str | Path, run: Optional[str], time: int, model_meta: Any, channels: list[int],
              static_names: list[str], time_step_s: Optional[float] = None, label: str = "") -> InitialState:
    """The state of `run` (default the first) at time index `time` of `cube` (`label`: its name in errors)."""
    from astrohpc.data.cube import LazyCube, read_meta

    cube = Path(cube)
    if not cube.is_file():
        raise DataError(f"{cube}: no such cube (predict.init.cube); give a cube, or predict.init.netcdf a GCM file")
    meta = read_meta(cube, stats=False)
    names = list(meta.run_names)
    name = run or names[0]
    if name not in names:
        raise ConfigError(f"{cube}: no run {name!r} (predict.init.run); runs: {', '.join(names[:12])}")
    r = names.index(name)
    count = int(meta.time_count[r])
    if not 0 <= time < count:
        raise ConfigError(f"{cube}: run {name} has {count} states; predict.init.time must be in 0..{count - 1}")
    check_grid(model_meta, meta, label or str(cube))
    index = match_channels(model_meta, channels, meta, label or str(cube))
    reader = LazyCube(cube).prepare()
    try:
        x0 = reader.read(r, time, 1)[0, index].astype(np.float64)
    finally:
        reader.close()
    static = {}
    for s in static_names:
        if s in meta.static:
            static[s] = np.asarray(meta.static[s][r], np.float64)
    params = {k: float(v[r]) for k, v in meta.params.items() if np.isfinite(v[r])}
    step = time_step_s if time_step_s is not None else (
        float(meta.time_step_s[r]) if meta.time_step_s is not None else math.nan)
    day0 = float(meta.time_days[r, time]) if meta.time_days is not None else math.nan
    return InitialState(x0, params, static, day0, step, f"{cube} run {name} time index {time} (day {day0:g})")


def from_netcdf(source: str | Path, data: Any, params: dict[str, float], model_meta: Any, channels: list[int],
                static_names: list[str], time_step_s: Optional[float] = None,
                interval_days: Optional[float] = None) -> InitialState:
    """The first state of a GCM NetCDF file (or run folder), converted with the DataSettings `data`.
    A bare file's time axis needs the GCM's step: `time_step_s` (else data.source_step_minutes),
    and its records' interval (data.source_output_interval_days, else `interval_days`)."""
    from dataclasses import replace

    from astrohpc.data.convert import convert

    source = Path(source)
    if not source.exists():
        raise DataError(f"{source}: no such GCM file or run folder (predict.init.netcdf)")
    if not source.is_dir() and time_step_s is not None:
        data = replace(data, source_step_minutes=data.source_step_minutes or time_step_s / 60.0,
                       source_output_interval_days=data.source_output_interval_days or interval_days)
    with tempfile.TemporaryDirectory(prefix="astrohpc-predict-") as tmp:
        cube = Path(tmp) / "init.h5"
        convert([source], cube, settings=data, run_params=None if source.is_dir() else [dict(params)])
        state = from_cube(cube, None, 0, model_meta, channels, static_names, time_step_s,
                          label=f"{source} (converted with the model's data settings)")
    state.source = f"{source} (first state, converted with the model's data settings)"
    return state
