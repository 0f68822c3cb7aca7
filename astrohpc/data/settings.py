"""The `data:` config section: NetCDF -> HDF5 datacube conversion and reading."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class DataSettings:
    """Which variables go into a cube, on which levels, and how windows are cut."""

    variables: list[str] = field(default_factory=list)
    levels: str = "sigma"
    variable_table: dict[str, str] = field(default_factory=dict)
    cube: Optional[str] = None
    input_steps: int = 1
    target_steps: int = 1
