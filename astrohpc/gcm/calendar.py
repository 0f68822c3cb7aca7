"""ExoPlaSim's clock: steps per day, the calendar year, and the step counter a run starts from.

Plain arithmetic (no torch), shared by the sweep (which records where each run's counter starts)
and astrohpc.physics.insolation (which needs it to place the sun). Conventions of ExoPlaSim 3.4.2,
explained with line references in astrohpc/physics/insolation.py.
"""

from __future__ import annotations

import math

DAY_S = 86400.0
CALENDAR_DAYS = 360  # N_DAYS_PER_YEAR default (plasim_namelist)
START_YEAR = 1  # N_START_YEAR (plasim_namelist)


def _nint(x: float) -> int:
    """Fortran NINT: round half away from zero."""
    return int(math.floor(abs(x) + 0.5)) * (1 if x >= 0 else -1)


def steps_per_day(timestep_minutes: float) -> int:
    """Model steps per 86 400 s (PlaSim's `mtspd`): nint(86400)/nint(Δt·60), made even."""
    n = _nint(DAY_S) // _nint(timestep_minutes * 60.0)
    return n + n % 2


def calendar_days(rotation_period_days: float) -> int:
    """Days in the model's calendar year (N_DAYS_PER_YEAR): 360, or what exoplasim.Model.configure
    writes when the rotation period P ≠ 1: max(int(360/P/12 + 0.5), 1)·12."""
    if rotation_period_days == 1.0:
        return CALENDAR_DAYS
    return max(int(360.0 / float(rotation_period_days) / 12 + 0.5), 1) * 12


def first_step(rotation_period_days: float, timestep_minutes: float) -> int:
    """The step counter at the start of a fresh run (no restart): 1 January of year 1."""
    return steps_per_day(timestep_minutes) * calendar_days(rotation_period_days) * START_YEAR


def restart_step(spinup_rotation_period_days: float, timestep_minutes: float, spinup_days: int) -> int:
    """The step counter of a run branched from the restart of a fresh spin-up of `spinup_days`
    days (its counter continues the spin-up's: plasim.f90 reads `nstep` from the restart)."""
    return first_step(spinup_rotation_period_days, timestep_minutes) + int(spinup_days) * steps_per_day(
        timestep_minutes)
