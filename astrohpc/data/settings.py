"""The `data:` config section: NetCDF -> HDF5 datacube conversion and reading.

The cube layout these settings produce is documented in docs/datacube.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass
class DataSettings:
    """Which variables go into a cube, on which levels, and how windows are cut.

    variables: canonical names to convert; empty = every (time, [lev], lat, lon) field found.
    levels: "sigma" (also "native": the model's own levels) or "pressure:1000,850,500" (hPa;
        interpolated linearly in log p, NaN outside the column, e.g. below the surface).
    variable_table: canonical name -> name in the source files (generic CF files, other models).
    expected_units: canonical name -> CF units the source must carry (a few pressure and
        humidity units are converted, anything else different is an error).
    surface_pressure: canonical name of surface pressure, needed by sigma/hybrid -> pressure.
    hybrid_p0_Pa: reference pressure of CAM hybrid levels when the file has no `P0` variable.
    grid_tolerance_deg: largest latitude/longitude difference between input files still
        treated as the same grid (the difference found is recorded in the cube).
    cube: default cube path for the reader.
    input_steps, target_steps, stride: window shape for the reader (time steps within one run).
    read_mode: "independent" (each rank/worker opens the file itself) or "collective" (MPI-IO).
    normalize: the reader divides (x - mean) by std using the statistics stored in the cube.
    """

    variables: list[str] = field(default_factory=list)
    levels: str = "sigma"
    variable_table: dict[str, str] = field(default_factory=dict)
    expected_units: dict[str, str] = field(default_factory=dict)
    surface_pressure: str = "PS"
    hybrid_p0_Pa: float = 100000.0
    grid_tolerance_deg: float = 1e-4
    cube: Optional[str] = None
    input_steps: int = 1
    target_steps: int = 1
    stride: int = 1
    read_mode: Literal["independent", "collective"] = "independent"
    normalize: bool = False

    def __post_init__(self) -> None:
        for name in ("input_steps", "target_steps", "stride"):
            if getattr(self, name) < (0 if name == "target_steps" else 1):
                raise ValueError(f"data.{name} must be >= {0 if name == 'target_steps' else 1}, "
                                 f"got {getattr(self, name)!r}")
        if not self.grid_tolerance_deg >= 0:
            raise ValueError(f"data.grid_tolerance_deg must be >= 0, got {self.grid_tolerance_deg!r}")
