"""Long autoregressive rollouts of an emulator: batched over initial conditions, restartable,
watched for divergence, with the global budgets of every step.

    forcing_fn / check_forcing    the forcing past the end of the GCM run: rsdt from the orbit
                                  (astrohpc.physics.insolation), checked against the cube's own
    initial_conditions            x0, parameters, static fields, planet and forcing of (run, t0) members
    rollout                       the engine: float64 states, no_grad, eval mode, segments, restart
    drift_per_1000, adf_test,     statistics of the diagnostic series: linear drift, stationarity,
    lyapunov_estimate             finite-time Lyapunov exponent from twin runs
    last_window_climatology       time mean of the last N steps against a reference climatology
    write_diagnostics_netcdf      the series as a CF NetCDF file (dims step, member), written atomically

A member whose state leaves the limits (`DivergenceLimits`) is flagged with (step, reason) and
frozen: it takes no further step, its diagnostics from then on are NaN, and `state.x` keeps its
last accepted state. Reasons: "non-finite", "temperature", "growth".

Diagnostics, float64 arrays [steps, B] (row i: the state after step i + 1), present when the
channels allow (see DIAGNOSTICS for units): ts, ta (mass-weighted), toa_net, energy, energy_drift,
dry_mass, dry_mass_rel_error, state_norm (what the growth test reads), twin_distance (when `twins`
are given), and each conserved quantity's error of the step before and after the correctors
(astrohpc.studies.conservation: dry_mass_before/after, water_before/after, energy_before/after).
"""

from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from astrohpc.atomic_write import atomic_path
from astrohpc.physics.constants import FIELDS as PLANET_FIELDS
from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.energy import ENERGY_FIELDS, column_energy, toa_net_flux
from astrohpc.physics.grid import global_mean
from astrohpc.physics.insolation import DAY_S, Orbit, toa_insolation
from astrohpc.physics.mass import column_dry_mass
from astrohpc.studies import conservation
from astrohpc.studies.conservation import QUANTITIES, WHEN
from astrohpc.studies.scores import rmse_bias

log = logging.getLogger(__name__)

REASONS = ("non-finite", "temperature", "growth")
# name -> (units, long_name); every series is a global (area-weighted) quantity per member and step
DIAGNOSTICS: dict[str, tuple[str, str]] = {
    "ts": ("K", "global-mean surface temperature"),
    "ta": ("K", "global mass-weighted mean air temperature"),
    "toa_net": ("W m-2", "global-mean net downward TOA radiative flux"),
    "energy": ("J m-2", "global-mean column energy (cp T + Lv q + kinetic + surface geopotential)"),
    "energy_drift": ("J m-2", "global-mean column energy minus the initial state's"),
    "dry_mass": ("kg m-2", "global-mean dry-air column mass"),
    "dry_mass_rel_error": ("1", "relative error of the global dry-air mass against the initial state's"),
    "state_norm": ("1", "root-mean-square of the normalised predicted channels"),
    "twin_distance": ("1", "root-mean-square normalised distance to the twin member"),
    **{f"{q}_{when}": (units, f"{name}: {WHEN[when]}") for q, (units, name) in QUANTITIES.items() for when in WHEN},
}
Forcing = Callable[[int], torch.Tensor]


@dataclass(frozen=True)
class DivergenceLimits:
    """When a member counts as diverged: any temperature channel (ts, tas, ta, ta<level>) outside
    [t_min_K, t_max_K]; or the state norm (`state_norm`) above growth_factor × its mean over the
    first growth_window states (the initial state included; while fewer exist, their mean so far)."""

    t_min_K: float = 50.0
    t_max_K: float = 1000.0
    growth_factor: float = 10.0
    growth_window: int = 100


# ---------------------------------------------------------------------------------------------
# forcing


@dataclass(frozen=True)
class OrbitForcing:
    """Step k -> the forcing channels [F, lat, lon] (float64, W m⁻²) at day0 + k·interval_days,
    every channel rsdt from `orbit`. Called by `rollout` as forcing(k)."""

    orbit: Orbit
    lat_deg: torch.Tensor
    lon_deg: torch.Tensor
    day0: float
    interval_days: float
    channels: int = 1

    @classmethod
    def of_planet(cls, params: dict[str, float], step_s: float, model: Any, lat_deg: Any, lon_deg: Any,
                  day0: float) -> OrbitForcing:
        """The forcing of `model`'s steps for a planet of run parameters `params` (the orbit's,
        `Orbit.from_params`) whose GCM steps `step_s` seconds, on the grid lat/lon, from day0."""
        orbit = Orbit.from_params(params, timestep_minutes=step_s / 60.0)
        return cls(orbit, torch.as_tensor(np.asarray(lat_deg, np.float64)),
                   torch.as_tensor(np.asarray(lon_deg, np.float64)), float(day0), float(model.step_s) / DAY_S,
                   len(model.forcing))

    def time_days(self, k: int) -> float:
        """Days since the run's start of step k's state."""
        return self.day0 + k * self.interval_days

    def __call__(self, k: int) -> torch.Tensor:
        field = toa_insolation(self.time_days(k), self.lat_deg, self.lon_deg, self.orbit)
        return field.expand(self.channels, *field.shape)


def forcing_names(model: Any) -> list[str]:
    """Variable names of the model's forcing channels, in order."""
    return [model.table.variables[int(i)] for i in model.forcing]


def forcing_fn(meta: Any, run: int, model: Any, t0: int = 0) -> OrbitForcing:
    """The forcing of a rollout of `run` started from its state at time index t0: step k is at
    meta.time_days[run, t0] + k·model.step_s. Only rsdt can be computed (ValueError naming any
    other forcing channel); the orbit is the run's parameters' (`Orbit.from_params`)."""
    names = forcing_names(model)
    other = sorted({n for n in names if n != "rsdt"})
    if other:
        raise ValueError(f"forcing channels {', '.join(other)} cannot be computed past the cube's end; only rsdt "
                         "(TOA incoming shortwave, from the orbit) can: train with model.forcings: [rsdt]")
    step_s = float(meta.time_step_s[run]) if meta.time_step_s is not None else math.nan
    if not math.isfinite(step_s):
        raise ValueError(f"{meta.path}: run {run} does not record the GCM's time step (time_step_s): "
                         "its insolation clock cannot be reproduced; reconvert the run")
    params = {name: float(values[run]) for name, values in meta.params.items()}
    return OrbitForcing.of_planet(params, step_s, model, meta.lat, meta.lon, float(meta.time_days[run, t0]))


def stack_forcings(fns: Sequence[Forcing]) -> Forcing:
    """One forcing per member -> step k -> [B, F, lat, lon]."""
    return lambda k: torch.stack([fn(k) for fn in fns])


def check_forcing(meta: Any, run: int, fn: OrbitForcing, steps: Optional[Sequence[int]] = None) -> float:
    """Max |fn(k) − the cube's rsdt| (W m⁻²) over the steps k (default 0, 1, …) whose time the
    cube holds for `run`; ValueError when it holds none of them."""
    from astrohpc.data.cube import LazyCube

    times = np.asarray(meta.time_days[run], np.float64)
    channel = int(meta.channels_of(["rsdt"])[0])
    steps = range(int(np.isfinite(times).sum()) + 1) if steps is None else steps
    cube, worst, found = LazyCube(meta.path), 0.0, 0
    try:
        for k in steps:
            hits = np.flatnonzero(np.abs(times - fn.time_days(k)) < 1e-6)
            if hits.size == 0:
                continue
            gcm = torch.as_tensor(cube.read(run, int(hits[0]), 1)[0, channel], dtype=torch.float64)
            worst = max(worst, float((fn(k) - gcm).abs().max()))
            found += 1
    finally:
        cube.close()
    if not found:
        raise ValueError(f"{meta.path}: run {run} holds none of the steps asked for (its times: {times.tolist()} days)")
    return worst


def initial_conditions(cube: Union[str, Path], model: Any, param_norm: dict,
                       members: Sequence[tuple[int, int]], channels: Optional[Sequence[int]] = None
                       ) -> dict[str, Any]:
    """The inputs of `rollout` for members (run, t0) of `cube`: x0 [B, C, lat, lon] float64 (the
    model's channels: `channels` of the cube, default the model's plan — its training cube's), params
    [B, P] normalised with `param_norm` (the exported model's), static [B, S, lat, lon] float64 (the
    model's static fields, by name) or None, planet (PlanetConstants of [B] tensors, or None) and the
    stacked orbit forcing."""
    from astrohpc.data.dataset import WindowDataset

    ds = WindowDataset(cube, 1, 0, param_norm=param_norm)
    try:
        if channels is None:
            channels = getattr(getattr(model, "plan", None), "cube_channels", range(len(model.table)))
        channels = list(channels)
        items = []
        for run, t0 in members:
            hits = np.flatnonzero((ds.windows[:, 0] == run) & (ds.windows[:, 1] == t0))
            if hits.size == 0:
                raise ValueError(f"{cube}: no state at run {run}, time index {t0} (run lengths "
                                 f"{ds.meta.time_count.tolist()})")
            items.append(ds[int(hits[0])])
        x0 = torch.stack([item["input"][0, channels] for item in items]).to(torch.float64)
        params = torch.stack([item["params"] for item in items])
        static = None
        if model.static_names:  # the cube's fields, as float32 like every other input
            static = torch.stack([torch.from_numpy(np.stack([ds.meta.static[n][run] for n in model.static_names])
                                                   .astype(np.float32)) for run, _ in members]).to(torch.float64)
        planet = None
        if all("planet" in item and set(PLANET_FIELDS) <= set(item["planet"]) for item in items):
            planet = PlanetConstants.from_run_params(
                {name: torch.stack([item["planet"][name] for item in items]) for name in PLANET_FIELDS})
        forcing = stack_forcings([forcing_fn(ds.meta, run, model, t0) for run, t0 in members])
    finally:
        ds.close()
    return {"x0": x0, "params": params, "static": static, "planet": planet, "forcing": forcing}


# ---------------------------------------------------------------------------------------------
# state and result


@dataclass
class RolloutState:
    """Where a rollout stands; give it back to `rollout(state=…)` to continue.

    step: steps taken since x0; x: [B, C, lat, lon] float64, the last accepted state of each member;
    flags: per member None or (step, reason); diagnostics: name -> [step, B]; initial: name -> [B]
    (the initial state's values the drifts refer to); norm_sum, norm_count: [B], the growth test's
    reference; climatology sum [B, C, lat, lon] and count [B] over steps ≥ climatology_from;
    wall_s, cpu_s: totals over every call."""

    step: int
    x: torch.Tensor
    flags: list[Optional[tuple[int, str]]]
    diagnostics: dict[str, np.ndarray]
    initial: dict[str, np.ndarray]
    norm_sum: np.ndarray
    norm_count: np.ndarray
    start_step: int = 0
    step_s: float = math.nan
    climatology_from: int = 0
    climatology_sum: Optional[torch.Tensor] = None
    climatology_count: Optional[np.ndarray] = None
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Tensors, numbers, strings, lists and dicts only: `torch.load(weights_only=True)` reads it."""
        as_t = lambda a: None if a is None else torch.as_tensor(np.asarray(a))  # noqa: E731
        return {"step": self.step, "x": self.x.detach().cpu(), "flags": [None if f is None else [f[0], f[1]]
                                                                         for f in self.flags],
                "diagnostics": {k: as_t(v) for k, v in self.diagnostics.items()},
                "initial": {k: as_t(v) for k, v in self.initial.items()},
                "norm_sum": as_t(self.norm_sum), "norm_count": as_t(self.norm_count),
                "start_step": self.start_step, "step_s": self.step_s, "climatology_from": self.climatology_from,
                "climatology_sum": None if self.climatology_sum is None else self.climatology_sum.detach().cpu(),
                "climatology_count": as_t(self.climatology_count), "wall_s": self.wall_s, "cpu_s": self.cpu_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RolloutState:
        as_np = lambda t: None if t is None else t.numpy().copy()  # noqa: E731
        return cls(step=int(d["step"]), x=d["x"].clone(),
                   flags=[None if f is None else (int(f[0]), str(f[1])) for f in d["flags"]],
                   diagnostics={k: as_np(v) for k, v in d["diagnostics"].items()},
                   initial={k: as_np(v) for k, v in d["initial"].items()},
                   norm_sum=as_np(d["norm_sum"]), norm_count=as_np(d["norm_count"]),
                   start_step=int(d["start_step"]), step_s=float(d["step_s"]),
                   climatology_from=int(d["climatology_from"]),
                   climatology_sum=None if d["climatology_sum"] is None else d["climatology_sum"].clone(),
                   climatology_count=as_np(d["climatology_count"]), wall_s=float(d["wall_s"]),
                   cpu_s=float(d["cpu_s"]))


@dataclass
class RolloutResult:
    """diagnostics: name -> [steps, B] float64 (the whole rollout, earlier calls included);
    flags: per member None or (step, reason); state: to continue from; steps_done: total steps
    since x0; steps_run, wall_s, cpu_s: of this call."""

    diagnostics: dict[str, np.ndarray]
    flags: list[Optional[tuple[int, str]]]
    state: RolloutState
    steps_done: int
    steps_run: int
    wall_s: float
    cpu_s: float
    initial: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def steps_per_s(self) -> float:
        """Steps of this call per wall-clock second (each step advances every live member)."""
        return self.steps_run / self.wall_s if self.wall_s > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# the engine


def temperature_channels(model: Any) -> list[int]:
    """Channels of ts, tas, ta and ta<level> (e.g. ta850)."""
    return [i for i, v in enumerate(model.table.variables) if v in ("ts", "tas", "ta") or re.fullmatch(r"ta\d+", v)]


def available_diagnostics(model: Any, planet: Optional[PlanetConstants], twins: Sequence[tuple[int, int]]) -> list[str]:
    """The diagnostics the model's channels, static fields and grid allow (see DIAGNOSTICS)."""
    have = set(model.table.names) | set(model.static_names)
    sigma = model.grid.sigma_half is not None
    names = []
    if "ts" in have:
        names.append("ts")
    if {"ta", "ps"} <= have and sigma:
        names.append("ta")
    toa = "ntr" in have or {"rst", "rlut"} <= have
    if toa:
        names.append("toa_net")
    if planet is not None and set(ENERGY_FIELDS) <= have and sigma:
        names += ["energy", "energy_drift"]
    if planet is not None and {"ps", "hus"} <= have and sigma:
        names += ["dry_mass", "dry_mass_rel_error"]
    names += conservation.series_names(conservation.available(model, planet))
    names.append("state_norm")
    if twins:
        names.append("twin_distance")
    return names


def _rows(value: Any, idx: Optional[torch.Tensor]) -> Any:
    """value[idx] for a per-member tensor ([B, ...]); anything else as it is."""
    if idx is None or not isinstance(value, torch.Tensor) or value.ndim == 0:
        return value
    return value[idx.to(value.device)]


def _planet_rows(planet: Optional[PlanetConstants], idx: Optional[torch.Tensor]) -> Optional[PlanetConstants]:
    if planet is None or idx is None:
        return planet
    return PlanetConstants(*(_rows(getattr(planet, name), idx) for name in PLANET_FIELDS))


def _normalised(model: Any, x: torch.Tensor) -> torch.Tensor:
    """The predicted channels of x, normalised: [B, C_pred, lat, lon] float64."""
    mean, std = model.normalizer.mean.to(x), model.normalizer.std.to(x)
    return ((x - mean) / std)[:, model.predicted]


def _state_norm(model: Any, x: torch.Tensor) -> torch.Tensor:
    return _normalised(model, x).pow(2).mean(dim=(1, 2, 3)).sqrt()


def _diagnose(model: Any, names: Sequence[str], x: torch.Tensor, before: Optional[torch.Tensor],
              static: Optional[torch.Tensor], planet: Optional[PlanetConstants],
              raw: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """The per-state diagnostics (those not relative to the initial state) of x [b, C, lat, lon]: name -> [b].
    before: the state x stepped from; raw: the network's prediction of x before the correctors."""
    grid = model.grid.to(torch.float64, x.device)
    state = model.physics_state(x, static)
    out: dict[str, torch.Tensor] = {"state_norm": _state_norm(model, x)}
    if "ts" in names:
        out["ts"] = global_mean(state["ts"], grid)
    if "ta" in names:
        weight = state["ps"][:, None] * grid.dsigma[:, None, None]  # ∝ layer mass (g cancels)
        out["ta"] = global_mean((weight * state["ta"]).sum(dim=1), grid) / global_mean(weight.sum(dim=1), grid)
    if "toa_net" in names:
        out["toa_net"] = global_mean(toa_net_flux(state), grid)
    if "energy" in names:
        out["energy"] = global_mean(column_energy(state, grid, planet), grid)
    quantities = [q for q in QUANTITIES if f"{q}_before" in names]
    if quantities and before is not None and raw is not None:
        out.update(conservation.step_errors(model, quantities, before, raw, x, static, planet))
    if "dry_mass" in names:
        out["dry_mass"] = global_mean(column_dry_mass(state["ps"], state["hus"], grid, planet), grid)
    return out


def _divergence(x: torch.Tensor, norm: torch.Tensor, reference: torch.Tensor,
                limits: DivergenceLimits, temps: list[int]) -> list[Optional[str]]:
    """Per row of x: None, or the first reason (in REASONS order) it counts as diverged."""
    finite = torch.isfinite(x).flatten(1).all(dim=1)
    hot = torch.zeros_like(finite)
    if temps:
        t = x[:, temps].flatten(1)
        hot = (t.min(dim=1).values < limits.t_min_K) | (t.max(dim=1).values > limits.t_max_K)
    grown = norm > limits.growth_factor * reference
    return [None if ok and not h and not g else "non-finite" if not ok else "temperature" if h else "growth"
            for ok, h, g in zip(finite.tolist(), hot.tolist(), grown.tolist())]


def _initial_state(model: Any, x0: torch.Tensor, static: Optional[torch.Tensor], planet: Optional[PlanetConstants],
                   names: list[str], start_step: int) -> RolloutState:
    x0 = x0.detach().to(torch.float64).clone()
    b = x0.shape[0]
    first = {k: v.double().cpu().numpy() for k, v in _diagnose(model, names, x0, None, static, planet).items()}
    if not np.isfinite(first["state_norm"]).all():
        raise ValueError("the initial states hold NaN or inf; start the rollout from a valid state")
    return RolloutState(step=0, x=x0, flags=[None] * b, diagnostics={k: np.empty((0, b)) for k in names},
                        initial=first, norm_sum=first["state_norm"].copy(), norm_count=np.ones(b),
                        start_step=int(start_step), step_s=float(model.step_s))


def _climatology_window(st: RolloutState, steps: int, climatology_steps: int
                        ) -> tuple[int, Optional[torch.Tensor], Optional[np.ndarray]]:
    """(first step of the window, running sum, count) for a call that reaches `steps`: the last
    climatology_steps of it (0: the state's window, if any). A window that moved past everything
    the state summed starts afresh; one that moved inside it cannot be mended (ValueError)."""
    if climatology_steps <= 0:
        if st.climatology_sum is None:
            return 0, None, None
        return st.climatology_from, st.climatology_sum.clone(), st.climatology_count.copy()
    start = max(steps - climatology_steps + 1, 1)
    if st.climatology_sum is not None and start == st.climatology_from:
        return start, st.climatology_sum.clone(), st.climatology_count.copy()
    if start <= st.step:
        raise ValueError(f"the climatology window of the last {climatology_steps} of {steps} steps starts at step "
                         f"{start}, which the state (at step {st.step}) has passed without summing the same window")
    return start, torch.zeros_like(st.x), np.zeros(st.x.shape[0])


def rollout(model: Any, x0: torch.Tensor, params: torch.Tensor, static: Optional[torch.Tensor],
            planet: Optional[PlanetConstants], forcing: Forcing, steps: int, *, segment: int = 1000,
            limits: DivergenceLimits = DivergenceLimits(), start_step: int = 0, state: Optional[RolloutState] = None,
            on_segment: Optional[Callable[[RolloutState], None]] = None, twins: Sequence[tuple[int, int]] = (),
            climatology_steps: int = 0) -> RolloutResult:
    """Roll `model` (an EmulatorStepper) out from x0 to step `steps`.

    x0: [B, C, lat, lon] physical (cast to float64: the correctors conserve to float64 rounding);
    params: [B, P] normalised; static: [B, S, lat, lon] physical or None; planet: PlanetConstants
    (floats or [B] tensors; None: no mass or energy diagnostics, and no correctors);
    forcing: k -> the forcing channels at step k, [B, F, lat, lon] or [F, lat, lon] (every member),
    called with start_step + k for k = 1 … steps.
    steps: the step to reach, counted from x0 — with `state`, the steps it already took count
    (a requeued job calls again with the same arguments and its saved state).
    segment: `on_segment(state)` is called after every step that is a multiple of it.
    twins: pairs (i, j): member j's distance to member i is `twin_distance[:, j]` (Lyapunov runs).
    climatology_steps: N > 0 keeps the running sum of each member's states of steps − N + 1 … steps
    for `last_window_climatology` (a later call reaching further moves the window, while the
    state has not entered it yet).
    Runs under no_grad in eval mode (the model's mode is restored after)."""
    if steps < 0 or segment < 1:
        raise ValueError(f"steps must be >= 0 and segment >= 1, got {steps} and {segment}")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _run(model, x0, params, static, planet, forcing, int(steps), segment, limits, start_step, state,
                        on_segment, list(twins), climatology_steps)
    finally:
        model.train(was_training)


def _run(model: Any, x0: torch.Tensor, params: torch.Tensor, static: Optional[torch.Tensor],
         planet: Optional[PlanetConstants], forcing: Forcing, steps: int, segment: int, limits: DivergenceLimits,
         start_step: int, state: Optional[RolloutState], on_segment: Optional[Callable[[RolloutState], None]],
         twins: list[tuple[int, int]], climatology_steps: int) -> RolloutResult:
    wall0, cpu0 = time.perf_counter(), time.process_time()
    static = None if static is None else static.to(torch.float64)
    names = available_diagnostics(model, planet, twins)
    st = state or _initial_state(model, x0, static, planet, names, start_step)
    if st.step > steps:
        raise ValueError(f"the state is at step {st.step}, past the {steps} steps asked for")
    if set(st.diagnostics) != set(names):
        raise ValueError(f"the state holds the diagnostics {sorted(st.diagnostics)}, this call would make "
                         f"{sorted(names)}: continue it with the same model, planet and twins")
    x, b = st.x.clone(), st.x.shape[0]
    device = x.device
    params = params.to(device)
    static = None if static is None else static.to(device)
    rows = {k: np.full((steps, b), np.nan) for k in names}
    for k in names:
        rows[k][:st.step] = st.diagnostics[k][:st.step]
    temps = temperature_channels(model)
    flags = list(st.flags)
    norm_sum, norm_count = st.norm_sum.copy(), st.norm_count.copy()
    clim_from, clim_sum, clim_count = _climatology_window(st, steps, climatology_steps)
    first = st.step

    def snapshot(step: int) -> RolloutState:
        return RolloutState(step, x.clone(), list(flags), {k: v[:step].copy() for k, v in rows.items()}, st.initial,
                            norm_sum.copy(), norm_count.copy(), st.start_step, st.step_s, clim_from,
                            None if clim_sum is None else clim_sum.clone(),
                            None if clim_count is None else clim_count.copy(),
                            st.wall_s + time.perf_counter() - wall0, st.cpu_s + time.process_time() - cpu0)

    for k in range(first + 1, steps + 1):
        active = [i for i, f in enumerate(flags) if f is None]
        if not active:  # every member frozen: nothing left to step
            break
        idx = None if len(active) == b else torch.as_tensor(active, device=device)
        f = forcing(st.start_step + k).to(device=device, dtype=torch.float64)
        f = f.expand(b, *f.shape) if f.ndim == 3 else f
        before, s = _rows(x, idx), _rows(static, idx)
        p = _planet_rows(planet, idx)
        raw = model(before, _rows(f, idx), _rows(params, idx), s, p, False)  # the network alone
        nxt = model.correct(before, raw, s, p).to(torch.float64)
        diag = _diagnose(model, names, nxt, before, s, p, raw.to(torch.float64))
        norm = diag["state_norm"]
        reference = torch.as_tensor(norm_sum[active] / norm_count[active], device=device)
        reasons = _divergence(nxt, norm, reference, limits, temps)
        values = {name: v.double().cpu().numpy() for name, v in diag.items()}
        for j, i in enumerate(active):
            if reasons[j] is not None:
                flags[i] = (k, reasons[j])
                log.warning("member %d diverged at step %d (%s): state norm %.3g, reference %.3g", i, k,
                            reasons[j], float(norm[j]), float(reference[j]))
                continue
            x[i] = nxt[j]
            for name, v in values.items():
                rows[name][k - 1, i] = v[j]
            if k < limits.growth_window:
                norm_sum[i] += values["state_norm"][j]
                norm_count[i] += 1
            if clim_sum is not None and k >= clim_from:
                clim_sum[i] += nxt[j]
                clim_count[i] += 1
        _relative(rows, st.initial, k - 1)
        if twins:
            _twin_distances(model, x, rows["twin_distance"][k - 1], twins, flags)
        if on_segment is not None and k % segment == 0:
            on_segment(snapshot(k))
    final = snapshot(steps)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return RolloutResult(final.diagnostics, list(flags), final, steps, steps - first, wall, cpu, st.initial)


def _relative(rows: dict[str, np.ndarray], initial: dict[str, np.ndarray], row: int) -> None:
    """The drifts against the initial state, on row `row` (NaN rows stay NaN)."""
    if "energy_drift" in rows:
        rows["energy_drift"][row] = rows["energy"][row] - initial["energy"]
    if "dry_mass_rel_error" in rows:
        rows["dry_mass_rel_error"][row] = (rows["dry_mass"][row] - initial["dry_mass"]) / initial["dry_mass"]


def _twin_distances(model: Any, x: torch.Tensor, out: np.ndarray, twins: list[tuple[int, int]],
                    flags: list[Optional[tuple[int, str]]]) -> None:
    for i, j in twins:
        if flags[i] is None and flags[j] is None:
            z = _normalised(model, x[[i, j]])
            out[j] = float((z[1] - z[0]).pow(2).mean().sqrt())


# ---------------------------------------------------------------------------------------------
# statistics of the series


def drift_per_1000(series: np.ndarray) -> np.ndarray:
    """series [steps, B] -> [B]: least-squares linear-trend slope per step × 1000 (NaN left out;
    NaN for a member with fewer than 2 finite values)."""
    series = np.asarray(series, np.float64)
    series = series[:, None] if series.ndim == 1 else series
    t = np.arange(1, series.shape[0] + 1, dtype=np.float64)
    out = np.full(series.shape[1], np.nan)
    for m in range(series.shape[1]):
        ok = np.isfinite(series[:, m])
        if ok.sum() >= 2:
            out[m] = np.polyfit(t[ok], series[ok, m], 1)[0] * 1000.0
    return out


def adf_test(series: np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """Augmented Dickey-Fuller test (statsmodels' adfuller, constant term, lag by AIC) of a 1-D
    series, NaN left out. stationary: the unit root is rejected at `alpha`."""
    from statsmodels.tsa.stattools import adfuller

    x = np.asarray(series, np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 20:
        raise ValueError(f"the ADF test needs at least 20 finite values, got {x.size}")
    if np.ptp(x) == 0:
        raise ValueError("the ADF test needs a series that varies (this one is constant)")
    r = adfuller(x, autolag="AIC", result_object=True)
    return {"statistic": float(r.statistic), "pvalue": float(r.pvalue), "stationary": bool(r.pvalue < alpha),
            "lags": int(r.lags), "nobs": int(r.nobs), "critical_values": {k: float(v) for k, v in
                                                                           r.critical_values.items()}}


def lyapunov_from_distance(distance: np.ndarray, step_days: Optional[float] = None, fit_fraction: float = 0.7,
                           skip: int = 0) -> dict[str, np.ndarray]:
    """Finite-time Lyapunov exponent from the distance between twin runs, distance [steps, B]
    (row i: after step i + 1). Per member, ln d is fitted by a line from row `skip` to the first
    row where it has risen by fit_fraction of its whole rise (the growth phase, before saturation).
    Returns [B] arrays: rate_per_step (1/step), efolding_steps, efolding_days (with step_days),
    r2, fit_start, fit_end (rows)."""
    d = np.asarray(distance, np.float64)
    d = d[:, None] if d.ndim == 1 else d
    n, b = d.shape
    out = {k: np.full(b, np.nan) for k in ("rate_per_step", "efolding_steps", "efolding_days", "r2",
                                           "fit_start", "fit_end")}
    t = np.arange(1, n + 1, dtype=np.float64)
    for m in range(b):
        ok = np.isfinite(d[:, m]) & (d[:, m] > 0)
        ok[:skip] = False
        rows = np.flatnonzero(ok)
        if rows.size < 3:
            continue
        logd = np.log(d[rows, m])
        rise = logd.max() - logd[0]
        end = int(np.argmax(logd >= logd[0] + fit_fraction * rise)) if rise > 0 else rows.size - 1
        end = max(end, 2)
        slope, intercept = np.polyfit(t[rows[:end + 1]], logd[:end + 1], 1)
        fit = slope * t[rows[:end + 1]] + intercept
        total = ((logd[:end + 1] - logd[:end + 1].mean()) ** 2).sum()
        out["rate_per_step"][m] = slope
        out["efolding_steps"][m] = 1.0 / slope if slope > 0 else np.inf
        if step_days is not None:
            out["efolding_days"][m] = out["efolding_steps"][m] * step_days
        out["r2"][m] = 1.0 - ((logd[:end + 1] - fit) ** 2).sum() / total if total > 0 else np.nan
        out["fit_start"][m], out["fit_end"][m] = rows[0], rows[end]
    return out


def lyapunov_estimate(a: Union[np.ndarray, torch.Tensor], b: Union[np.ndarray, torch.Tensor],
                      step_days: Optional[float] = None, fit_fraction: float = 0.7, skip: int = 0
                      ) -> dict[str, np.ndarray]:
    """Twin trajectories a, b [steps, B, ...] (started a tiny perturbation apart) -> see
    `lyapunov_from_distance`; the distance is the root-mean-square of a − b over the trailing axes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = (a - b).reshape(a.shape[0], a.shape[1], -1) if a.ndim > 2 else (a - b)[..., None]
    return lyapunov_from_distance(np.sqrt((diff ** 2).mean(axis=-1)), step_days, fit_fraction, skip)


def last_window_climatology(rolled: Union[RolloutResult, RolloutState], reference: Union[np.ndarray, torch.Tensor],
                            area: Union[np.ndarray, torch.Tensor]) -> dict[str, np.ndarray]:
    """The time mean of each member's last N states (rollout(climatology_steps=N)) against a
    reference climatology: reference [C, lat, lon] or [B, C, lat, lon] physical, area [lat, lon].
    Returns mean [B, C, lat, lon], rmse and bias [B, C] (area-weighted, the channel's units) and
    count [B] (states averaged; fewer than N for a member that diverged inside the window)."""
    st = rolled.state if isinstance(rolled, RolloutResult) else rolled
    if st.climatology_sum is None:
        raise ValueError("this rollout kept no climatology: run it with climatology_steps=N")
    count = np.asarray(st.climatology_count, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = st.climatology_sum.cpu().numpy() / count[:, None, None, None]
    ref = np.asarray(reference.cpu() if isinstance(reference, torch.Tensor) else reference, np.float64)
    area = np.asarray(area.cpu() if isinstance(area, torch.Tensor) else area, np.float64)
    scores = [rmse_bias(mean[m], ref if ref.ndim == 3 else ref[m], area) for m in range(mean.shape[0])]
    return {"mean": mean, "rmse": np.stack([s[0] for s in scores]), "bias": np.stack([s[1] for s in scores]),
            "count": count}


# ---------------------------------------------------------------------------------------------
# the file


def flag_text(flags: Sequence[Optional[tuple[int, str]]]) -> str:
    """'member 0: diverged at step 5 (temperature); member 1: stable'."""
    return "; ".join(f"member {m}: " + ("stable" if f is None else f"diverged at step {f[0]} ({f[1]})")
                     for m, f in enumerate(flags))


def write_diagnostics_netcdf(path: Union[str, Path], result: RolloutResult, meta: Any = None,
                             members: Optional[Sequence[str]] = None, attrs: Optional[dict[str, Any]] = None) -> Path:
    """The diagnostics as a CF NetCDF file, dims (step, member), written atomically: every series
    with units and long_name; diverged_step [member] (-1: stable) and divergence_reason; the
    initial values; global attributes with the flags, the timing and (with `meta`) the cube.
    members: a label per member (e.g. 'run-name t0=0')."""
    import xarray as xr

    steps, b = result.steps_done, len(result.flags)
    step_days = result.state.step_s / DAY_S
    coords = {"step": ("step", np.arange(1, steps + 1, dtype=np.int64), {"long_name": "emulator steps since the "
                                                                          "initial state", "units": "1"}),
              "member": ("member", np.arange(b, dtype=np.int64), {"long_name": "initial condition"}),
              "lead_days": ("step", np.arange(1, steps + 1) * step_days,
                            {"long_name": "simulated time since the initial state", "units": "days"})}
    if members is not None:
        coords["member_label"] = ("member", np.asarray(list(members), dtype=object), {"long_name": "initial condition"})
    data = {}
    for name, values in result.diagnostics.items():
        units, long_name = DIAGNOSTICS[name]
        data[name] = (("step", "member"), values, {"units": units, "long_name": long_name,
                                                   "cell_methods": "area: mean"})
    for name, values in result.initial.items():
        units, long_name = DIAGNOSTICS[name]
        data[f"{name}_initial"] = ("member", values, {"units": units, "long_name": f"{long_name}, initial state"})
    data["diverged_step"] = ("member", np.array([-1 if f is None else f[0] for f in result.flags], np.int64),
                             {"long_name": "step at which the member left the limits (-1: never)", "units": "1"})
    data["divergence_reason"] = ("member", np.array(["" if f is None else f[1] for f in result.flags], dtype=object),
                                 {"long_name": f"why the member was frozen (one of {', '.join(REASONS)}; empty: "
                                               "stable)"})
    global_attrs = {"Conventions": "CF-1.8", "title": "emulator rollout diagnostics", "flags": flag_text(result.flags),
                    "steps_done": steps, "step_s": result.state.step_s, "wall_s": result.state.wall_s,
                    "cpu_s": result.state.cpu_s, "steps_per_s_last_call": result.steps_per_s}
    if meta is not None:
        global_attrs.update(cube=str(meta.path), cube_id=str(getattr(meta, "cube_id", "")))
    global_attrs.update(attrs or {})
    ds = xr.Dataset(data, coords=coords, attrs={k: _attr(v) for k, v in global_attrs.items()})
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4")
    return Path(path)


def _attr(value: Any) -> Any:
    """A NetCDF attribute: numbers and strings as they are, anything else as text."""
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    return str(value)
