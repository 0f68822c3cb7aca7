"""The `data:` config section: NetCDF -> HDF5 datacube conversion and reading.

The cube layout these settings produce is documented in docs/datacube.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class DataSettings:
    """Which variables go into a cube, on which levels, and how windows are cut.

    variables: canonical names to convert; empty = every (time, [lev], lat, lon) field found
        (except the static ones).
    static_variables: 2-D fields stored once per run under `static/` (surface geopotential,
        land mask): read from the first record, checked constant in time.
    derived: variables computed at conversion instead of read (see astrohpc/data/derived.py):
        `rsdt` (TOA incoming shortwave = rst - rsut) and `zg` (geopotential height of the full
        levels, integrated hydrostatically from ta, hus, ps and sg with the planet's R and g).
        A derived name replaces a source variable of the same name.
    levels: "sigma" (also "native": the model's own levels) or "pressure:1000,850,500" (hPa;
        interpolated linearly in log p, NaN outside the column, e.g. below the surface).
    variable_table: canonical name -> name in the source files (generic CF files, other models).
    expected_units: canonical name -> CF units the source must carry (a few pressure and
        humidity units are converted, anything else different is an error).
    surface_pressure: canonical name of surface pressure, needed by sigma/hybrid -> pressure.
    hybrid_p0_Pa: reference pressure of CAM hybrid levels when the file has no `P0` variable.
    source_step_minutes, source_output_interval_days: for plain files whose time counts model
        steps (ExoPlaSim's "timesteps"): the model step and the interval between records, which
        a run folder's summary.json otherwise gives. Unset: such a file is an error.
    grid_tolerance_deg: largest latitude/longitude difference between input files still
        treated as the same grid (the difference found is recorded in the cube).
    cube: default cube path for the reader.
    input_steps, target_steps, stride: window shape for the reader (time steps within one run).
    read_mode: "independent" (each rank/worker opens the file itself) or "collective" (MPI-IO).
    normalize: the reader divides (x - mean) by std using the cube's statistics (sidecar file).
    read_variables: channel selection in the reader (all levels of these variables); empty = all.
    step_mean_variables: a sweep whose means interval equals its snapshot interval also writes
        `datacube_step.h5`: the snapshots with these variables (every level) replaced by their mean
        over the step into each snapshot (astrohpc/data/step_means.py) — the emulator's diagnostics.
    """

    variables: list[str] = field(default_factory=list)
    static_variables: list[str] = field(default_factory=list)
    derived: list[str] = field(default_factory=list)
    levels: str = "sigma"
    variable_table: dict[str, str] = field(default_factory=dict)
    expected_units: dict[str, str] = field(default_factory=dict)
    surface_pressure: str = "PS"
    hybrid_p0_Pa: float = 100000.0
    source_step_minutes: Optional[float] = None
    source_output_interval_days: Optional[float] = None
    grid_tolerance_deg: float = 1e-4
    cube: Optional[str] = None
    input_steps: int = 1
    target_steps: int = 1
    stride: int = 1
    read_mode: Literal["independent", "collective"] = "independent"
    normalize: bool = False
    read_variables: list[str] = field(default_factory=list)
    step_mean_variables: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("input_steps", "target_steps", "stride"):
            if getattr(self, name) < (0 if name == "target_steps" else 1):
                raise ValueError(f"data.{name} must be >= {0 if name == 'target_steps' else 1}, "
                                 f"got {getattr(self, name)!r}")
        from astrohpc.data.derived import DERIVATIONS

        unknown = [d for d in self.derived if d not in DERIVATIONS]
        if unknown:
            raise ValueError(f"data.derived: unknown {', '.join(unknown)}; known: {', '.join(DERIVATIONS)}")
        both = sorted(set(self.static_variables) & set(self.variables))
        if both:
            raise ValueError(f"data: {', '.join(both)} listed in both variables and static_variables")
        if not self.grid_tolerance_deg >= 0:
            raise ValueError(f"data.grid_tolerance_deg must be >= 0, got {self.grid_tolerance_deg!r}")
