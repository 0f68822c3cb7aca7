"""Top-of-atmosphere incoming shortwave (`rsdt`, W m⁻²) from the orbit, the rotation and the time,
computed the way ExoPlaSim 3.4 computes it, so that an emulator rolled out past the end of a GCM run
gets the forcing its training cube's `rsdt` channel held.

    rsdt = S · (a/r)² · max(μ, 0),    μ = sin φ sin δ + cos φ cos δ cos h

ExoPlaSim's own conventions (exoplasim/plasim/src of ExoPlaSim 3.4.2, line numbers of that
release; radmod.f90 `solang`, `orb_params`, `orb_decl`; plasim.f90), reproduced step for step
rather than idealised:

- The radiation runs every step (plasim.f90 line 3282 in `gridpointd`: `if (nrad > 0) call
  radstep`) and the snapshot holds its fluxes of that step, instantaneous, not averaged (outmod.f90
  `snapshotgp`, lines 1477 and 1526, writes `dswfl(:,1)` and `dfu(:,1)`, so rst − rsut = `dfd(:,1)`,
  the TOA downward flux). The snapshot the cube labels day t is written at the end of the step
  that ends at t (plasim.f90 lines 662 then 702: output, then `nstep = nstep + 1`; its time stamp
  is that step, e.g. 31 for day 1), so it holds the sun of model step
  `start_step + t·steps_per_day − 1`: the clock 1 step (45 min) before t. The time is rounded to a
  whole step.
- Day length: the hour angle is h = λ − π + 2π·rotspd·m/1440 with m = ⌊(nstep mod N_d)·Δt⌋
  minutes (radmod.f90 `solang`, lines 1371-1409): it turns at the sidereal rate (rotspd = 1/P,
  P the rotation period in days of 86 400 s) but the clock m restarts every N_d = ⌊solar day/Δt⌋
  steps (plasim.f90 lines 1287-1348; solar day = P·n/(n−1) days with n the model's days per year,
  86 400 s when P = 1). For P = 1 that is exactly one revolution per 24 h; for other P, once a
  cycle the sun skips 360°·(1 − N_d·Δt/P) further west than a step takes it (4.1° every 47 steps
  for P = 1.485 d): one revolution per N_d·Δt, neither the sidereal nor the solar day.
  At nstep ≡ 0 (mod N_d) the sun is over longitude 180°, and it moves westward.
- Season: the fraction of the year is (nstep mod N_y)/N_y with N_y = nint(sidereal year/Δt)
  (radmod.f90 line 1366; plasim.f90 line 1354). The sidereal year is the planet namelist's
  default 31 558 149 s (365.256 days of 86 400 s), because astrohpc never passes ExoPlaSim a
  `year`, while the calendar has n = 360 days (12·max(⌊30/P + ½⌋, 1) when P ≠ 1). Declination
  and distance come from Berger (1978) as coded in `orb_decl` (radmod.f90 lines 3131-3220): mean
  longitude λm = λm0 + 2π(f − 80.5/365), true longitude λ = λm + e(2 sin(λm − ϖ) + …),
  δ = asin(sin ε sin λ), (a/r)² = ((1 + e cos(λ − ϖ))/(1 − e²))², with ϖ = MVELP + 180° (MVELP,
  the longitude of perihelion, 102.7°: ExoPlaSim's default, which astrohpc never changes) and
  λm0 from `orb_params` (lines 3091-3106). `NFIXORB = 1` (the runner's `fixedorbit=True`) keeps
  e, ε and MVELP as given. ExoPlaSim stops for e > 0.1 in this orbit (ORB_ECCEN_MAX).
- The model's step counter starts at `steps_per_day · n · 1` (plasim.f90 line 1387 and calmod.f90
  line 268: `cal2step` of 1 January of year 1, `N_START_YEAR = 1`) in a fresh run, and continues
  from the restart's `nstep` (plasim.f90 line 1001) in a run branched from a spin-up, which the
  cube does not record: `Orbit.start_step` must say so (`first_step`). Getting it wrong moves the
  season and the time of day: hundreds of W m⁻² RMSE.
- Synchronous rotation (`NFIXED = 1`): the substellar point stays at `substellar_longitude_deg`
  and the declination is the obliquity itself all year (radmod.f90 lines 1397-1413); the
  distance factor still follows the orbit. ExoPlaSim's `desync` drift is not modelled (astrohpc
  never sets it).
- S is GSOL0 = `planet.instellation_W_m2`; the two spectral bands' fractions sum to 1 (radmod.f90
  `solarini`, line 367), so TOA flux is S·(a/r)²·μ (radmod.f90 lines 1673-1674, 2110).
  `ndcycle = 1` (the default: a daily cycle, no diurnal mean) and the dawn threshold is 0.

PlaSim's own π is 3.14159265359 (plasimmod.f90 line 119); using the exact π changes rsdt by
< 1e-9 W m⁻². Everything is float64 torch, on the device of `lat_deg`.

Checked against the GCM (tests/physics/test_insolation.py): every snapshot of the smoke runs
matches to RMSE 2.5e-5, max 1.3e-4 W m⁻², and the 8 demo runs (P = 1.24-9.16 d, branched from a
360-day spin-up at P = 1: start_step = first_step(1, 45) + 360·32) to RMSE ≤ 2.6e-5, max
≤ 1.4e-4 W m⁻²: the float32 rounding of the rst and rsut the cube's rsdt is made from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Union

import torch

from astrohpc.gcm.calendar import DAY_S, _nint, calendar_days, first_step, steps_per_day  # noqa: F401 (re-exported)

# ExoPlaSim's planet-namelist default SIDEREAL_YEAR (p_exo.f90), used unless `year` is passed.
SIDEREAL_YEAR_DAYS = 31558149.0 / DAY_S
PERIHELION_LONGITUDE_DEG = 102.7  # MVELP default (planet_namelist), never changed by astrohpc
VERNAL_EQUINOX_DAY = 80.5  # orb_decl's `ve`, used as the fraction 80.5/365 of the year
MAX_ECCENTRICITY = 0.1  # orb_params' ORB_ECCEN_MAX for the Berger orbit (NGENKEPLERIAN = 0)


@dataclass(frozen=True)
class Orbit:
    """What ExoPlaSim's insolation depends on.

    solar_constant_W_m2: GSOL0 (W m⁻², at the mean distance); rotation_period_days: sidereal, in
    days of 86 400 s; obliquity_deg; eccentricity (0-0.1); perihelion_longitude_deg: MVELP (deg);
    sidereal_year_days: the orbital period (days of 86 400 s); synchronous: fixed substellar point
    at substellar_longitude_deg (degrees east); timestep_minutes: the GCM step; start_step: the
    model's step counter at the run's start (None: a fresh run, `first_step`; a run restarted from
    a spin-up of D days continues the spin-up's counter: first_step(P_spinup, Δt) + D·steps_per_day)."""

    solar_constant_W_m2: float
    rotation_period_days: float = 1.0
    obliquity_deg: float = 23.44
    eccentricity: float = 0.0167
    perihelion_longitude_deg: float = PERIHELION_LONGITUDE_DEG
    sidereal_year_days: float = SIDEREAL_YEAR_DAYS
    synchronous: bool = False
    substellar_longitude_deg: float = 180.0
    timestep_minutes: float = 45.0
    start_step: Optional[int] = None

    def __post_init__(self) -> None:
        if not self.solar_constant_W_m2 >= 0:
            raise ValueError(f"solar_constant_W_m2 must be >= 0, got {self.solar_constant_W_m2!r}")
        if not self.rotation_period_days > 0 or not self.sidereal_year_days > 0 or not self.timestep_minutes > 0:
            raise ValueError(f"rotation period, year and timestep must be > 0, got {self.rotation_period_days!r}, "
                             f"{self.sidereal_year_days!r}, {self.timestep_minutes!r}")
        if not 0 <= self.eccentricity <= MAX_ECCENTRICITY:
            raise ValueError(f"eccentricity {self.eccentricity!r} is outside ExoPlaSim's Berger orbit "
                             f"(0 to {MAX_ECCENTRICITY}: it stops with 'Input eccentricity unreasonable')")

    @classmethod
    def from_params(cls, params: Mapping[str, float], timestep_minutes: float = 45.0,
                    start_step: Optional[int] = None) -> Orbit:
        """From one run's parameters as the cube stores them (`CubeMeta.params` at one run:
        instellation_W_m2, rotation_period_days, obliquity_deg, eccentricity, and optionally
        synchronous, substellar_longitude_deg, start_step). The parameters do not hold the model
        step: pass `CubeMeta.time_step_s[run] / 60`. start_step: the argument, else the run's
        `start_step` parameter (recorded at conversion since the sweep writes it: fresh runs and
        runs branched from a spin-up alike), else a fresh run's."""
        if start_step is None and "start_step" in params and math.isfinite(float(params["start_step"])):
            start_step = int(params["start_step"])
        required = ("instellation_W_m2", "rotation_period_days", "obliquity_deg", "eccentricity")
        missing = [k for k in required if k not in params]
        if missing:
            raise KeyError(f"run parameters lack {', '.join(missing)} (have {', '.join(sorted(params))})")
        return cls(solar_constant_W_m2=float(params["instellation_W_m2"]),
                   rotation_period_days=float(params["rotation_period_days"]),
                   obliquity_deg=float(params["obliquity_deg"]), eccentricity=float(params["eccentricity"]),
                   synchronous=bool(float(params.get("synchronous", 0.0))),
                   substellar_longitude_deg=float(params.get("substellar_longitude_deg", 180.0)),
                   timestep_minutes=float(timestep_minutes), start_step=start_step)

    # The model's integer clock (plasim.f90 initpm, lines 1287-1354).
    @property
    def steps_per_day(self) -> int:
        return steps_per_day(self.timestep_minutes)

    @property
    def step_minutes(self) -> float:
        """The step PlaSim really takes: 1440 / steps_per_day minutes."""
        return DAY_S / (self.steps_per_day * 60.0)

    @property
    def rotation_speed(self) -> float:
        """ROTSPD = 1/P (as exoplasim writes it)."""
        return 1.0 if self.rotation_period_days == 1.0 else 1.0 / self.rotation_period_days

    @property
    def solar_day_s(self) -> float:
        if self.rotation_period_days == 1.0:
            return DAY_S
        n = calendar_days(self.rotation_period_days)
        sidereal = DAY_S / self.rotation_speed
        return sidereal * n / (n - 1) if n != 1 else sidereal

    @property
    def steps_per_clock_cycle(self) -> int:
        """N_d (PlaSim's `ntspd`): steps after which the hour-angle clock restarts."""
        return _nint(self.solar_day_s) // _nint(self.step_minutes * 60.0)

    @property
    def steps_per_year(self) -> int:
        """N_y (`n_steps_per_year`): steps per orbit."""
        return _nint(self.sidereal_year_days * DAY_S / (self.step_minutes * 60.0))

    @property
    def initial_step(self) -> int:
        """The step counter at the run's start: `start_step`, or a fresh run's `first_step`."""
        if self.start_step is None:
            return first_step(self.rotation_period_days, self.timestep_minutes)
        return int(self.start_step)

    def model_step(self, time_days: torch.Tensor) -> torch.Tensor:
        """The step whose radiation the snapshot at `time_days` (days since the run's start) holds:
        float64 integers."""
        return self.initial_step + torch.round(time_days * self.steps_per_day) - 1.0


def _declination_distance(year_fraction: torch.Tensor, orbit: Orbit) -> tuple[torch.Tensor, torch.Tensor]:
    """δ (rad) and (a/r)² at the fraction of the year: radmod.f90 orb_params + orb_decl (Berger 1978)."""
    e = orbit.eccentricity
    obliquity = math.radians(orbit.obliquity_deg)
    mvelpp = math.radians(orbit.perihelion_longitude_deg + 180.0)
    e2, e3 = e * e, e * e * e
    beta = math.sqrt(1.0 - e2)
    lambm0 = 2.0 * ((0.5 * e + 0.125 * e3) * (1.0 + beta) * math.sin(mvelpp)
                    - 0.25 * e2 * (0.5 + beta) * math.sin(2.0 * mvelpp)
                    + 0.125 * e3 * (1.0 / 3.0 + beta) * math.sin(3.0 * mvelpp))
    lambm = lambm0 + (year_fraction - VERNAL_EQUINOX_DAY / 365.0) * 2.0 * math.pi
    lmm = lambm - mvelpp
    sinl = torch.sin(lmm)
    lamb = lambm + e * (2.0 * sinl + e * (1.25 * torch.sin(2.0 * lmm)
                                          + e * ((13.0 / 12.0) * torch.sin(3.0 * lmm) - 0.25 * sinl)))
    invrho = (1.0 + e * torch.cos(lamb - mvelpp)) / (1.0 - e2)
    return torch.asin(math.sin(obliquity) * torch.sin(lamb)), invrho * invrho


def toa_insolation(time_days: Union[torch.Tensor, float], lat_deg: torch.Tensor, lon_deg: torch.Tensor,
                   orbit: Orbit) -> torch.Tensor:
    """ExoPlaSim's TOA incoming shortwave in W m⁻² (≥ 0), float64.

    time_days: [B] (or a scalar) days since the run's start, as the cube's `time` (rounded to the
    model step; see the module doc for which step a snapshot holds); lat_deg: [lat] degrees north;
    lon_deg: [lon] degrees east. Returns [B, lat, lon] ([lat, lon] for a scalar time) on
    lat_deg's device."""
    lat = torch.deg2rad(torch.as_tensor(lat_deg, dtype=torch.float64))
    device = lat.device
    lon = torch.deg2rad(torch.as_tensor(lon_deg, dtype=torch.float64, device=device))
    t = torch.as_tensor(time_days, dtype=torch.float64, device=device)
    step = orbit.model_step(t)

    year_fraction = torch.remainder(step, orbit.steps_per_year) / orbit.steps_per_year
    declination, distance2 = _declination_distance(year_fraction, orbit)
    if orbit.synchronous:
        declination = torch.full_like(declination, math.radians(orbit.obliquity_deg))
        hour_angle = lon - math.radians(orbit.substellar_longitude_deg)
        hour_angle = hour_angle.expand(*t.shape, lon.shape[0])
    else:
        cycle = orbit.steps_per_clock_cycle
        # imin = (istp·Δt·N_d)/N_d truncated to whole minutes, as solang does.
        minutes = torch.trunc(torch.remainder(step, cycle) * orbit.step_minutes * cycle / cycle)
        hour_angle = (minutes * (orbit.rotation_speed * 2.0 * math.pi / 1440.0))[..., None] + lon - math.pi
    sin_d, cos_d = torch.sin(declination)[..., None, None], torch.cos(declination)[..., None, None]
    mu = sin_d * torch.sin(lat)[:, None] + cos_d * torch.cos(lat)[:, None] * torch.cos(hour_angle)[..., None, :]
    return orbit.solar_constant_W_m2 * distance2[..., None, None] * mu.clamp(min=0.0)
