"""The `gcm:` and `sweep:` config sections (reference GCM runs and parameter sweeps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional


@dataclass
class GCMSettings:
    """One reference-GCM simulation; the planet comes from the `planet:` section."""

    model: Literal["exoplasim"] = "exoplasim"
    resolution: str = "T21"
    levels: int = 10
    days: int = 5
    restart_file: Optional[str] = None


@dataclass
class SweepSettings:
    """A parameter design over config keys (e.g. `planet.instellation_W_m2`)."""

    design: Literal["grid", "list", "sobol", "lhs"] = "grid"
    parameters: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    seed: int = 0
