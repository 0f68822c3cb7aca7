"""The inference config (`astrohpc predict CONFIG`): its own schema, in the style of the others.

    predict:
      model: runs/demo/climate_gp/export/gp.pt     # an export: GP climate (export/gp.pt of a climate
                                                   # study), climate net or emulator (export/best.pt)
      params: {rotation_period_days: 3.0, instellation_W_m2: 1300.0}   # one planet, by name
      planets: [{...}, {...}]                      # or several; or
      planets_csv: planets.csv                     # a CSV, one planet per row, a header of names
      init: {cube: runs/demo/demo/datacube.h5, run: task-0003, time: 0}   # emulator: initial state
      # init: {netcdf: [file.nc], data: configs/data/exoplasim.yaml}     # or a GCM file, converted here
      steps: 30                                    # emulator: steps to take
      output_every: 1                              # emulator: keep every N-th state
      segment_steps: 100                           # emulator: restart point every N steps
      output: out.nc                               # or -o on the command line

For the emulator, `params` overrides the initial state's own run parameters (all of which it
starts from: orbit, constants, the model's inputs); for a climate surrogate every parameter the
model reads must be given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class InitSettings:
    """The emulator's initial state: `run` (a name; default the cube's first run) at time index `time`
    of `cube` (any cube with the model's channels and grid), or of the GCM output `netcdf` (a NetCDF
    file, or a run folder of `astrohpc gcm run`) converted here with the data config `data` (default:
    the data section the model was trained with). A NetCDF file carries no run parameters: give the
    orbit, the planet's constants and the model's inputs in predict.params, and the GCM's time step
    in `time_step_s` when the data config does not set source_step_minutes."""

    cube: Optional[str] = None
    run: Optional[str] = None
    time: int = 0
    netcdf: Optional[str] = None
    data: Optional[str] = None
    time_step_s: Optional[float] = None


@dataclass
class PredictSettings:
    model: Optional[str] = None
    params: dict[str, float] = field(default_factory=dict)
    planets: list[dict[str, float]] = field(default_factory=list)
    planets_csv: Optional[str] = None
    init: InitSettings = field(default_factory=InitSettings)
    steps: int = 10
    output_every: int = 1
    segment_steps: int = 100
    output: Optional[str] = None
    threads: int = 0


@dataclass
class PredictConfig:
    """The root of an inference config."""

    predict: PredictSettings = field(default_factory=PredictSettings)
