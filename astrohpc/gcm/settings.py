"""The `gcm:` and `sweep:` config sections (reference GCM runs and parameter sweeps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

# CMIP-style names understood by ExoPlaSim's postprocessor (pyburn).
# Fluxes (PlaSim: positive downward; averaged over the record's interval in the means file,
# instantaneous in snapshots): rst/rsut/rlut/ntr at the top, rss/rls/hfss/hfls at the surface.
# sg and lsm are static (stored once per run in the cube). zg is not requested: pyburn's is wrong
# (see astrohpc/data/derived.py), the cube derives it hydrostatically.
MEANS_VARIABLES = ("ts", "tas", "ps", "pr", "clt", "rlut", "rsut", "rst", "ntr", "hfls", "hfss", "rss", "rls",
                   "sic", "alb", "prw", "ta", "ua", "va", "wap", "hus", "hur", "cl", "sg", "lsm")
# Resolutions ExoPlaSim compiles (spectral truncation -> wave number).
SPECTRAL_TRUNCATIONS = {"T21": 21, "T42": 42, "T63": 63, "T85": 85, "T106": 106, "T127": 127, "T170": 170}
SNAPSHOT_VARIABLES = ("ts", "tas", "ps", "pr", "prw", "sic", "rst", "rsut", "rlut", "ntr", "hfss", "hfls", "rss",
                      "rls", "ta", "ua", "va", "hus", "wap", "sg", "lsm")


def check_build_settings(resolution: str, levels: int, ncpus: int, precision: int) -> None:
    """The settings an ExoPlaSim executable is compiled for; ValueError names the bad one."""
    if resolution not in SPECTRAL_TRUNCATIONS:
        raise ValueError(f"gcm.resolution {resolution!r} is not one ExoPlaSim compiles; "
                         f"choose one of {', '.join(SPECTRAL_TRUNCATIONS)}")
    if levels < 6:
        # PlaSim's semi-Lagrangian tracer advection (FFSL) stops at start-up below 6 levels
        raise ValueError(f"gcm.levels must be >= 6 for ExoPlaSim (its FFSL advection needs NLEV >= 6), got {levels}")
    if ncpus < 1:
        raise ValueError(f"gcm.ncpus must be >= 1, got {ncpus}")
    if precision not in (4, 8):
        raise ValueError(f"gcm.precision must be 4 or 8 (bytes per real), got {precision}")


@dataclass
class GCMSettings:
    """One reference-GCM simulation; the planet comes from the `planet:` section.

    Run length: `years` (model years of 360 days) when set, else `days` (days of 86 400 s).
    mixed_layer_depth_m: the slab ocean's depth (ExoPlaSim `mldepth`; 50 m takes years to
    equilibrate, a few metres months). sea_ice: ExoPlaSim's thermodynamic sea ice (`seaice`);
    off, the slab stays open water (no ice-albedo feedback, no multi-year ice to grow).
    Output: means every `means_interval_days` and instantaneous snapshots every
    `snapshot_interval_days` (0 turns snapshots off). `restart_file` starts from a saved state
    (relative paths are taken from the current directory); `start_step` is the model's step
    counter in that restart (the sweep sets it for runs branched from its spin-up; it places the
    sun: astrohpc/gcm/calendar.py), None for a fresh run. `restart_rotation_period_days`: the rotation period
    the restart file was written at (the sweep sets it to its spin-up's); when the planet's differs, the run
    starts from a copy rescaled to its own rotation rate (ExoPlaSim keeps the atmosphere in units of Ω:
    astrohpc/gcm/restart.py).
    """

    model: Literal["exoplasim"] = "exoplasim"
    resolution: str = "T21"
    levels: int = 10
    days: int = 5
    years: Optional[int] = None
    timestep_minutes: float = 45.0
    mixed_layer_depth_m: float = 50.0
    sea_ice: bool = True
    means_interval_days: int = 5
    snapshot_interval_days: int = 1
    restart_file: Optional[str] = None
    restart_rotation_period_days: Optional[float] = None
    start_step: Optional[int] = None
    keep_restart: bool = True
    ncpus: int = 1
    precision: int = 8
    means_variables: list[str] = field(default_factory=lambda: list(MEANS_VARIABLES))
    snapshot_variables: list[str] = field(default_factory=lambda: list(SNAPSHOT_VARIABLES))

    def __post_init__(self) -> None:
        check_build_settings(self.resolution, self.levels, self.ncpus, self.precision)
        if self.days < 1:
            raise ValueError(f"gcm.days must be >= 1, got {self.days}")
        if self.years is not None and self.years < 1:
            raise ValueError(f"gcm.years must be >= 1 or null, got {self.years}")
        if not 0 < self.timestep_minutes <= 120 or 1440 % self.timestep_minutes:
            raise ValueError(f"gcm.timestep_minutes must divide a day (1440 min) and be <= 120, "
                             f"got {self.timestep_minutes}")
        if not self.mixed_layer_depth_m > 0:
            raise ValueError(f"gcm.mixed_layer_depth_m must be > 0 (the slab ocean's depth), "
                             f"got {self.mixed_layer_depth_m}")
        if self.means_interval_days < 1:
            raise ValueError(f"gcm.means_interval_days must be >= 1, got {self.means_interval_days}")
        if self.years is None and self.days < self.means_interval_days:
            raise ValueError(f"gcm.days ({self.days}) must be >= gcm.means_interval_days "
                             f"({self.means_interval_days}): a run needs at least one mean record")
        if self.snapshot_interval_days < 0:
            raise ValueError(f"gcm.snapshot_interval_days must be >= 0, got {self.snapshot_interval_days}")

    @property
    def steps_per_day(self) -> int:
        return int(1440 // self.timestep_minutes)

    @property
    def simulated_days(self) -> int:
        return self.years * 360 if self.years is not None else self.days


@dataclass
class SweepSettings:
    """A parameter design over config keys (e.g. `planet.instellation_W_m2`).

    design: "grid" (`parameters: {key: [values...]}`, the product), "list" (`points:
    [{key: value}, ...]`), "sobol", "lhs" or "maximin-lhs" (`parameters: {key: [low, high]}`,
    `samples` points from `seed`; `log_scale` lists keys sampled uniformly in log10;
    maximin-lhs keeps the most spread of 200 hypercubes). With a grid or sampled design,
    `points` are extra tasks after the design's (e.g. runs outside its envelope).
    spinup_days > 0: one spin-up run first, every task starts from its restart file.
    workers: processes for `--local` (the Slurm array's `%M` is `slurm.max_parallel`).
    cache_tasks: keep each finished task in ~/.cache/astrohpc/runs/ and restore it in a later
        sweep (another clone) with the same task settings and spin-up, as spin-ups are.
    """

    design: Literal["grid", "list", "sobol", "lhs", "maximin-lhs"] = "grid"
    parameters: dict[str, Any] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    samples: int = 0
    seed: int = 0
    log_scale: list[str] = field(default_factory=list)
    spinup_days: int = 0
    workers: int = 2
    cache_tasks: bool = False

    def __post_init__(self) -> None:
        if self.spinup_days < 0:
            raise ValueError(f"sweep.spinup_days must be >= 0, got {self.spinup_days}")
        if self.workers < 1:
            raise ValueError(f"sweep.workers must be >= 1, got {self.workers}")
