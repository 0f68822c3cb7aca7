"""The emulator's skill on whole held-out runs, beside its baselines (`make skill`: tools/bench_skill.py).

Short leads — every held-out run, forecasts started every `stride` days, stepped `leads` steps with
the GCM's own forcing (insolation at t + 1):

    emulator      the exported stepper, correctors on (float64 states)
    persistence   the initial state held
    climatology   the per-cell mean of every state of the training runs (baselines.pooled_climatology)
    lim           a linear inverse model fitted on the training runs' pairs (astrohpc.analysis.lim)

RMSE per lead, area-weighted, in physical units, for ts, ta (every level pooled) and ua (every
level pooled), pooled over the forecasts of the runs inside the design's envelope and, apart,
outside it. Conservation per step: the dry-air mass's relative change over the step, of the
network's raw prediction (before the correctors) and after them.

Long rollouts — every held-out run from its first state, `rollout_steps` steps with the forcing
from its orbit (astrohpc.studies.rollout): divergence flags, global-mean ts drift per 1,000
steps and the mean of the last 1,000 steps against the GCM run's mean over its last
`climate_days` days, the ts power spectrum by total wavenumber of the final state against the
GCM's last state; cost as CPU time per member-step (the batched rollout) beside ExoPlaSim's CPU
time per simulated day from the runs' summaries, and the wall time of a batch-1 rollout.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

REPORTED = ("ts", "ta", "ua")


def read_run(meta: Any, run: int, channels: Sequence[int]) -> np.ndarray:
    """float64 [T, C, lat, lon]: every state of `run`, the cube channels `channels`."""
    from astrohpc.data.cube import LazyCube

    cube = LazyCube(meta.path)
    try:
        return cube.read(run, 0, int(meta.time_count[run]))[:, list(channels)].astype(np.float64)
    finally:
        cube.close()


def run_inputs(model: Any, meta: Any, param_norm: dict, run: int) -> dict[str, Any]:
    """Normalised parameters [1, P], static fields [1, S, lat, lon] and the planet's constants of `run`."""
    from astrohpc.physics.constants import FIELDS as PLANET_FIELDS
    from astrohpc.physics.constants import PlanetConstants

    params = torch.as_tensor(meta.normalized_params(param_norm)[run:run + 1], dtype=torch.float32)
    static = None
    if model.static_names:
        static = torch.as_tensor(np.stack([meta.static[s][run] for s in model.static_names])[None], dtype=torch.float64)
    planet = PlanetConstants.from_run_params({k: torch.tensor([float(meta.params[k][run])]) for k in PLANET_FIELDS})
    return {"params": params, "static": static, "planet": planet}


def channel_groups(model: Any) -> dict[str, list[int]]:
    """Indices into the model's channels of each reported variable (every level)."""
    names = model.table.variables
    return {v: [i for i, n in enumerate(names) if n == v] for v in REPORTED if v in names}


class _Sums:
    """Σ w e² and Σ w per (method, variable, lead) over forecasts."""

    def __init__(self, leads: int, groups: dict[str, list[int]], area: np.ndarray):
        self.leads, self.groups, self.area = leads, groups, area
        self.sq: dict[str, np.ndarray] = {}
        self.w = np.zeros((len(groups), leads))

    def add(self, method: str, lead: int, pred: np.ndarray, truth: np.ndarray, count_weight: bool) -> None:
        """pred, truth [B, C, lat, lon] physical."""
        sq = self.sq.setdefault(method, np.zeros((len(self.groups), self.leads)))
        for g, idx in enumerate(self.groups.values()):
            err = pred[:, idx] - truth[:, idx]
            sq[g, lead] += float((np.nan_to_num(err) ** 2 * self.area).sum())
            if count_weight:
                self.w[g, lead] += float((np.isfinite(err) * self.area).sum())

    def rmse(self) -> dict[str, dict[str, list[float]]]:
        return {m: {v: np.sqrt(s[g] / np.maximum(self.w[g], 1e-300)).tolist() for g, v in enumerate(self.groups)}
                for m, s in self.sq.items()}


def training_climatology(model: Any, meta: Any, train_runs: Sequence[int]) -> np.ndarray:
    """Per-cell mean [C, lat, lon] of every state of the training runs (the daily-state climatology)."""
    from astrohpc.studies.baselines import pooled_climatology

    return pooled_climatology([read_run(meta, r, model.plan.cube_channels) for r in train_runs])[0]


def lead_scores(model: Any, meta: Any, param_norm: dict, runs: Sequence[int], leads: int, stride: int,
                lim: Any, climatology: np.ndarray) -> dict[str, Any]:
    """See the module doc (short leads). Returns rmse {method: {variable: [lead 1..leads]}}, the
    number of forecasts and each conserved quantity's error per step before/after the correctors
    (astrohpc.studies.conservation)."""
    from astrohpc.studies import conservation

    groups = channel_groups(model)
    area = np.asarray(meta.area_weight, np.float64)
    sums = _Sums(leads, groups, area)
    prog, forcing = model.predicted, model.forcing
    errors: dict[str, list[np.ndarray]] = {}
    forecasts = 0
    for run in runs:
        states = read_run(meta, run, model.plan.cube_channels)
        starts = np.arange(0, len(states) - leads, stride)
        if starts.size == 0:
            continue
        forecasts += starts.size
        inp = run_inputs(model, meta, param_norm, run)
        b = starts.size
        params = inp["params"].expand(b, -1)
        static = None if inp["static"] is None else inp["static"].expand(b, -1, -1, -1)
        planet = inp["planet"]
        x = torch.as_tensor(states[starts])
        x_lim = states[starts][:, prog.numpy()]
        zp = params.numpy().astype(np.float64)
        with torch.no_grad():
            for lead in range(leads):
                truth = states[starts + lead + 1]
                f_next = torch.as_tensor(truth[:, forcing.numpy()])
                raw = model.predict(x, f_next, params, static)
                nxt = model.correct(x, raw, static, planet)
                quantities = conservation.available(model, planet)
                for name, value in conservation.step_errors(model, quantities, x, raw, nxt, static, planet).items():
                    errors.setdefault(name, []).append(value.numpy())
                if lead == 0:  # the GCM's own steps, the floor a budget can be closed to with these fields
                    gcm_step = torch.as_tensor(truth)
                    for name, value in conservation.step_errors(model, quantities, torch.as_tensor(states[starts]),
                                                                gcm_step, gcm_step, static, planet).items():
                        if name.endswith("_after"):
                            errors.setdefault(name.replace("_after", "_gcm"), []).append(value.numpy())
                x = nxt
                pred = x.numpy()
                x_lim = lim.step(x_lim, truth[:, forcing.numpy()], zp)
                lim_full = truth.copy()
                lim_full[:, prog.numpy()] = x_lim
                sums.add("emulator", lead, pred, truth, True)
                sums.add("persistence", lead, states[starts], truth, False)
                sums.add("climatology", lead, np.broadcast_to(climatology, truth.shape), truth, False)
                sums.add("lim", lead, lim_full, truth, False)
    if not forecasts:
        return None
    rmse = sums.rmse()
    return {"rmse": rmse, "forecasts": forecasts, "leads": leads, "stride": stride,
            "conservation_per_step": conservation_figures(model, errors)}


def conservation_figures(model: Any, errors: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    """{quantity: {units, corrector, before: {mean_abs, max_abs}, after: {…}, gcm: {…}}} over every forecast
    step (gcm: the GCM's own one-step changes, the floor these fields allow)."""
    from astrohpc.studies.conservation import QUANTITIES, describe

    notes = describe(model)
    out: dict[str, Any] = {}
    for q, (units, _) in QUANTITIES.items():
        if f"{q}_before" not in errors:
            continue
        entry: dict[str, Any] = {"units": units, "corrector": notes[q]}
        for when in ("before", "after", "gcm"):
            if f"{q}_{when}" not in errors:
                continue
            values = np.abs(np.concatenate(errors[f"{q}_{when}"]))
            entry[when] = {"mean_abs": float(values.mean()), "max_abs": float(values.max())}
        out[q] = entry
    return out


def ratios(rmse: dict[str, dict[str, list[float]]], baseline: str, lead: int = 0) -> dict[str, float]:
    """The emulator's RMSE at `lead` (0-based) ÷ the baseline's, per variable."""
    return {v: rmse["emulator"][v][lead] / rmse[baseline][v][lead] for v in rmse["emulator"]}


def ts_power_spectrum(field: np.ndarray, transform: Any, flip: bool) -> np.ndarray:
    """Power by total wavenumber l of one [lat, lon] field (K² per l): Σ_m |c_lm|², m > 0 twice."""
    x = torch.as_tensor(field, dtype=torch.float32)[None, None]
    if flip:
        x = x.flip(-2)
    c = transform.to_spectral(x)[..., 0, :]  # [M, L, 2]
    power = (c ** 2).sum(-1)  # [M, L]
    weight = torch.full((power.shape[0], 1), 2.0)
    weight[0] = 1.0
    return (power * weight).sum(0).double().numpy()


def rollouts(model: Any, meta: Any, param_norm: dict, runs: Sequence[int], steps: int, climate_days: int,
             timing_steps: int) -> dict[str, Any]:
    """See the module doc (long rollouts)."""
    from astrohpc.models.build import gauss_truncation
    from astrohpc.models.sfno import SphericalTransform
    from astrohpc.studies.rollout import drift_per_1000, initial_conditions, rollout

    members = [(r, 0) for r in runs]
    ic = initial_conditions(meta.path, model, param_norm, members)
    result = rollout(model, ic["x0"], ic["params"], ic["static"], ic["planet"], ic["forcing"], steps,
                     segment=1000, climatology_steps=min(1000, steps))
    ts = result.diagnostics["ts"]  # [steps, B] global means
    ts_channel = model.table.index("ts")[0]
    transform = SphericalTransform(int(meta.shape[-2]), int(meta.shape[-1]), gauss_truncation(int(meta.shape[-2])))
    flip = bool(meta.lat[0] < meta.lat[-1])
    out = []
    for b, run in enumerate(runs):
        flag = result.flags[b]
        valid = ts[:, b] if flag is None else ts[:flag[0] - 1, b]
        states = read_run(meta, run, model.plan.cube_channels)
        days = meta.time_days[run][: len(states)]
        climate = states[days > np.nanmax(days) - climate_days, ts_channel]
        gcm_mean = float((climate.mean(axis=0) * meta.area_weight).sum() / meta.area_weight.sum())
        last = valid[-min(1000, len(valid)):]
        end_state = result.state.x[b, ts_channel].numpy()
        gcm_spec = ts_power_spectrum(states[-1, ts_channel], transform, flip)
        emu_spec = ts_power_spectrum(end_state, transform, flip)
        out.append({"run": meta.run_names[run], "flag": flag, "steps_valid": int(len(valid)),
                    "gm_ts_drift_K_per_1000_steps": float(drift_per_1000(valid[:, None])[0]),
                    "last1000_mean_ts_K": float(np.mean(last)), "gcm_climate_mean_ts_K": gcm_mean,
                    "last1000_ts_bias_K": float(np.mean(last) - gcm_mean),
                    "ts_power_by_l": {"emulator": emu_spec.tolist(), "gcm": gcm_spec.tolist()}})
    single = rollout(model, ic["x0"][:1], ic["params"][:1], None if ic["static"] is None else ic["static"][:1],
                     _first(ic["planet"]), lambda k: ic["forcing"](k)[:1], timing_steps, segment=timing_steps)
    return {"members": out, "steps_asked": steps, "steps_done": result.steps_done,
            "wall_s": result.wall_s, "cpu_s": result.cpu_s, "batch": len(runs),
            "cpu_s_per_member_step": result.cpu_s / (result.steps_done * len(runs)),
            "batch1": {"steps": timing_steps, "wall_s": single.wall_s, "cpu_s": single.cpu_s,
                       "wall_s_per_10000_steps": single.wall_s * 10000.0 / timing_steps}}


def _first(planet: Any) -> Any:
    """The planet constants of the first member."""
    from dataclasses import fields, replace

    return replace(planet, **{f.name: getattr(planet, f.name)[:1] for f in fields(planet)
                              if isinstance(getattr(planet, f.name), torch.Tensor)})


def exoplasim_cost(sweep: Optional[Path], names: Sequence[str]) -> dict[str, Any]:
    """ExoPlaSim's CPU time (and wall × cores) per simulated day, from the runs' summaries."""
    cpu, wall = [], []
    for name in names:
        path = Path(sweep or "") / name / "summary.json"
        if sweep and path.is_file():
            s = json.loads(path.read_text())
            if s.get("cpu_seconds_per_simulated_day") is not None:
                cpu.append(float(s["cpu_seconds_per_simulated_day"]))
            if s.get("core_seconds_per_simulated_day") is not None:
                wall.append(float(s["core_seconds_per_simulated_day"]))
    return {"exoplasim_cpu_s_per_day": float(np.mean(cpu)) if cpu else None,
            "exoplasim_wall_core_s_per_day": float(np.mean(wall)) if wall else None, "runs_timed": len(cpu)}


def evaluate(export: str | Path, leads: int = 10, stride: int = 5, rollout_steps: int = 10000, climate_days: int = 60,
             timing_steps: int = 1000, sweep: Optional[str | Path] = None, threads: int = 2) -> dict[str, Any]:
    """Everything above for the test runs of the export (inside / outside its training envelope)."""
    from astrohpc.studies.climate_loo import design_box, envelope_check
    from astrohpc.studies.lim_baseline import fit_lim
    from astrohpc.train.export import load_exported

    torch.set_num_threads(threads)
    from astrohpc.data.cube import read_meta, transform_params

    model, info = load_exported(export)  # the net runs in float32; the states are float64

    meta = read_meta(info["cube"])
    split = info["run_split"]
    index = {n: i for i, n in enumerate(meta.run_names)}
    train = [index[n] for n in split["train"]]
    test = [index[n] for n in split["test"]]
    norm = info["param_norm"]
    x = transform_params(meta.param_matrix(norm["names"]), norm["names"], norm["transform"])
    inside_mask = envelope_check(x[train], x[test], design_box(sweep, list(norm["names"]), list(norm["transform"])))
    inside = [r for r, ok in zip(test, inside_mask) if ok]
    outside = [r for r, ok in zip(test, inside_mask) if not ok]
    started = time.perf_counter()
    lim = fit_lim(model, meta, norm, train)
    clim = training_climatology(model, meta, train)
    baselines_s = time.perf_counter() - started
    scores = {"inside": lead_scores(model, meta, norm, inside, leads, stride, lim, clim) if inside else None}
    if outside:
        scores["outside"] = lead_scores(model, meta, norm, outside, leads, stride, lim, clim)
    rolled = rollouts(model, meta, norm, test, rollout_steps, climate_days, timing_steps)
    gcm = exoplasim_cost(Path(sweep) if sweep else None, [meta.run_names[r] for r in test])
    return {"inside_runs": [meta.run_names[r] for r in inside], "outside_runs": [meta.run_names[r] for r in outside],
            "train_runs": len(train), "scores": scores, "rollout": rolled, "gcm_cost": gcm,
            "lim_explained_variance": lim.explained(), "baselines_fit_s": baselines_s, "export": str(export)}
