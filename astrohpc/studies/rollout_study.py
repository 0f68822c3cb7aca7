"""The rollout study: long autoregressive rollouts of a trained emulator, one task per held-out run.

A task rolls out `study.initial_conditions` GCM states of the run (evenly spaced days), batched,
plus a twin of the first whose surface temperature is raised by 1e-4 K everywhere, for
`study.rollout_steps` steps (10,000 by default) with the orbit's insolation as forcing
(astrohpc.studies.rollout). The state is saved every `study.segment_steps` steps, so a task that
is killed or requeued continues where it stopped. It reports, per member: the step reached
before any divergence flag (and why), the drift per 1,000 steps of global-mean surface
temperature and column energy, the largest relative dry-mass error, an ADF stationarity test of
global-mean surface temperature over the second half, the climatology of the last 1,000 steps
against the GCM run's own time mean (area-weighted RMSE per channel), and the finite-time
Lyapunov estimate from the twin. Diagnostics go to tasks/<id>/rollout.nc (CF).

The runs are those of the parity study: held-out runs of the training cube, or with `study.cube`
runs of another cube matched to the model (astrohpc.studies.studied_cube); results, summary.json
and rollout.nc record which cube.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrohpc.atomic_write import atomic_path
from astrohpc.errors import ConfigError

log = logging.getLogger(__name__)

TWIN_KICK_K = 1e-4
CLIMATOLOGY_STEPS = 1000


def expand(cfg: Any) -> list[dict[str, Any]]:
    """The parity study's runs and checks (astrohpc.studies.studied_cube): held-out runs of the
    training cube, or runs of study.cube matched to the model. No baseline is read: another cube's
    runs need no training cube."""
    from astrohpc.studies.studied_cube import study_tasks

    return study_tasks(cfg.study)[0]


def _state_path(study_dir: Path, task_id: int) -> Path:
    from astrohpc.studies.tasks import task_dir

    return task_dir(study_dir, task_id) / "rollout_state.pt"


def run(task: dict[str, Any], cfg: Any, study_dir: Path) -> dict[str, Any]:
    from astrohpc.studies import conservation
    from astrohpc.studies import rollout as engine
    from astrohpc.studies.baselines import read_time_means
    from astrohpc.studies.studied_cube import studied_cube
    from astrohpc.studies.tasks import task_dir
    from astrohpc.train.export import load_exported

    if not cfg.study.model:
        raise ConfigError("study.model is not set: give RUN_DIR/export/best.pt of `astrohpc train`")
    model, info = load_exported(cfg.study.model)
    cube = studied_cube(cfg.study, info, task.get("cube"))
    meta = cube.meta
    run_index = meta.run_names.index(task["run"])
    length = int(meta.time_count[run_index])
    starts = sorted({int(round(t)) for t in np.linspace(0, length - 1, cfg.study.initial_conditions)})
    members = [(run_index, t0) for t0 in starts] + [(run_index, starts[0])]
    inputs = engine.initial_conditions(cube.path, model, info["param_norm"], members, cube.channels)
    names = list(info["plan"]["channel_names"])
    if "ts" not in names:
        raise ConfigError("the rollout study needs the surface temperature channel ts in the model")
    inputs["x0"][-1, names.index("ts")] += TWIN_KICK_K
    steps = cfg.study.rollout_steps
    state_file = _state_path(study_dir, task["id"])
    state = None
    if state_file.is_file():
        state = engine.RolloutState.from_dict(torch.load(state_file, weights_only=True))
        log.info("continuing the rollout of %s from step %d", task["run"], state.step)

    def save(st: Any) -> None:
        with atomic_path(state_file) as tmp:
            torch.save(st.to_dict(), tmp)

    twin = len(members) - 1
    result = engine.rollout(model, inputs["x0"], inputs["params"], inputs["static"], inputs["planet"],
                            inputs["forcing"], steps, segment=cfg.study.segment_steps, state=state, on_segment=save,
                            twins=[(0, twin)], climatology_steps=min(CLIMATOLOGY_STEPS, steps))
    d = result.diagnostics
    gcm_mean = read_time_means(cube.path, [run_index], cube.channels)[0]
    clim = engine.last_window_climatology(result, gcm_mean, model.grid.area_weight.double())
    labels = [f"{task['run']} day {meta.time_days[run_index][t0]:g}" for _, t0 in members[:-1]] + \
        [f"{task['run']} day {meta.time_days[run_index][starts[0]]:g} + {TWIN_KICK_K:g} K (twin)"]
    netcdf = engine.write_diagnostics_netcdf(task_dir(study_dir, task["id"]) / "rollout.nc", result, meta, labels)
    state_file.unlink(missing_ok=True)  # finished: nothing to continue
    half = steps // 2
    per_member = []
    for m, label in enumerate(labels):
        flag = result.flags[m]
        reached = steps if flag is None else int(flag[0]) - 1
        ts = d["ts"][:, m]
        ok = np.isfinite(ts)
        row: dict[str, Any] = {"member": label, "steps_without_divergence": reached,
                               "divergence": None if flag is None else {"step": int(flag[0]), "reason": flag[1]},
                               "ts_drift_K_per_1000": float(engine.drift_per_1000(d["ts"][:, [m]])[0])
                               if ok.sum() > 2 else None,
                               "ts_last_K": float(ts[ok][-1]) if ok.any() else None,
                               "ts_initial_K": float(result.initial["ts"][m]) if "ts" in result.initial else None}
        if "energy" in d:
            row["energy_drift_J_m2_per_1000"] = float(engine.drift_per_1000(d["energy"][:, [m]])[0]) \
                if np.isfinite(d["energy"][:, m]).sum() > 2 else None
        if "dry_mass_rel_error" in d:
            err = d["dry_mass_rel_error"][:, m]
            row["dry_mass_max_rel_error"] = float(np.nanmax(np.abs(err))) if np.isfinite(err).any() else None
        row["conservation"] = {name: conservation.summarize(d[name][:, m]) for name in d
                               if name.endswith(("_before", "_after"))}
        second = ts[half:]
        row["adf_second_half"] = engine.adf_test(second) if np.isfinite(second).all() and len(second) > 20 else None
        row["climatology_count"] = float(clim["count"][m])
        row["climatology_rmse_vs_gcm_run_mean"] = {names[c]: float(clim["rmse"][m, c]) for c in range(len(names))}
        per_member.append(row)
    lyapunov = None
    if "twin_distance" in d:
        distance = d["twin_distance"][:, twin]
        if np.isfinite(distance).sum() > 10:
            fit = engine.lyapunov_from_distance(distance[np.isfinite(distance)], step_days=result.state.step_s
                                                / 86400.0, skip=1)
            lyapunov = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in fit.items()}
    lim = _lim_members(model, info, cube, inputs, labels[:-1], steps, gcm_mean)
    spectra = _end_spectra(model, meta, cube, run_index, result, names, labels)
    wall_per_10k = result.state.wall_s / max(result.steps_done, 1) * 10_000
    live = int(np.isfinite(d["ts"]).sum())  # member-steps actually computed (a flagged member is frozen)
    return {"run": task["run"], "cube": cube.provenance(), "steps": steps, "members": per_member, "lyapunov": lyapunov,
            "correctors": conservation.describe(model), "lim": lim, "ts_power_by_l": spectra,
            "wall_s": result.state.wall_s, "cpu_s": result.state.cpu_s, "wall_s_per_10000_steps": wall_per_10k,
            "live_member_steps": live, "wall_s_per_10000_member_steps": result.state.wall_s / max(live, 1) * 10_000,
            "batch": len(members), "netcdf": str(netcdf), "step_days": result.state.step_s / 86400.0,
            "climatology_steps": min(CLIMATOLOGY_STEPS, steps), "gcm_mean_states": length,
            "gcm_mean_days": float(length * np.diff(meta.time_days[run_index][:2])[0]) if length > 1 else None}


def _end_spectra(model: Any, meta: Any, cube: Any, run_index: int, result: Any, names: list[str],
                 labels: list[str]) -> dict[str, Any] | None:
    """Surface temperature's power by total wavenumber l (K² per l) of each member's last state
    (the last before any flag) beside the GCM run's last state; None off a Gauss grid."""
    from astrohpc.errors import ConfigError
    from astrohpc.models.build import gauss_truncation
    from astrohpc.models.sfno import SphericalTransform, check_gauss_grid
    from astrohpc.studies.skill import ts_power_spectrum

    lat = np.asarray(meta.lat)
    try:
        check_gauss_grid(lat)
    except ConfigError:
        return None
    transform = SphericalTransform(len(lat), int(meta.shape[-1]), gauss_truncation(len(lat)))
    flip = bool(lat[0] < lat[-1])
    ts = names.index("ts")
    from astrohpc.data.cube import LazyCube

    reader = LazyCube(cube.path).prepare()
    try:
        last = int(meta.time_count[run_index]) - 1
        gcm = reader.read(run_index, last, last + 1)[0, cube.channels[ts]].astype(np.float64)
    finally:
        reader.close()
    return {"gcm_last_state": ts_power_spectrum(gcm, transform, flip).tolist(),
            "members": {label: ts_power_spectrum(result.state.x[m, ts].numpy(), transform, flip).tolist()
                        for m, label in enumerate(labels)}}


def _lim_members(model: Any, info: dict, cube: Any, inputs: dict, labels: list[str], steps: int,
                 gcm_mean: np.ndarray) -> list[dict[str, Any]]:
    """The linear inverse model (fitted on the export's training runs) rolled out from the same
    initial states with the same forcing: the baseline climate a rollout is compared with."""
    from astrohpc.errors import DataError
    from astrohpc.studies import rollout as engine
    from astrohpc.studies.lim_baseline import fit_lim, lim_rollout
    from astrohpc.studies.skill import training_climatology
    from astrohpc.studies.studied_cube import training_cube

    try:
        train_meta = training_cube(info, "the rollout study's linear inverse model comes from the training runs") \
            if cube.foreign else cube.meta
    except DataError as err:  # another cube's runs roll out without the training cube; the LIM needs it
        log.warning("no linear inverse model beside the rollouts: %s", err)
        return []
    train = [train_meta.run_names.index(n) for n in info["run_split"]["train"]]
    lim = fit_lim(model, train_meta, info["param_norm"], train)
    members = len(labels)
    forcing = inputs["forcing"]

    def forcing_np(k: int) -> np.ndarray:
        f = forcing(k).double().numpy()
        return f[:members] if f.ndim == 4 else f

    window = min(CLIMATOLOGY_STEPS, steps)
    names = list(info["plan"]["channel_names"])
    out = lim_rollout(lim, model, inputs["x0"][:members].double().numpy(), inputs["params"][:members].numpy(),
                      forcing_np, steps, training_climatology(model, train_meta, train),
                      model.grid.area_weight.double().numpy(), gcm_mean, window)
    rows = []
    for m, label in enumerate(labels):
        ts = out["ts"][:, m]
        ok = np.isfinite(ts)
        rmse = out["climatology_rmse"][m]
        rows.append({"member": f"LIM from {label}",
                     "steps_without_flag": steps if out["flags"][m] is None else int(out["flags"][m]) - 1,
                     "ts_drift_K_per_1000": float(engine.drift_per_1000(ts[ok][:, None])[0]) if ok.sum() > 2 else None,
                     "climatology_rmse_vs_gcm_run_mean": None if rmse is None else
                     {names[c]: float(rmse[c]) for c in range(len(names))}})
    return rows


def aggregate(results: list[dict[str, Any]], cfg: Any, study_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """rollout.csv (one row per run × member) and summary.json."""
    import csv
    import io

    from astrohpc.atomic_write import write_json, write_text

    rows = []
    for res in results:
        for m in res["members"]:
            adf = m.get("adf_second_half") or {}
            rows.append({"run": res["run"], "member": m["member"], "steps": res["steps"],
                         "steps_without_divergence": m["steps_without_divergence"],
                         "divergence": "" if m["divergence"] is None else
                         f"step {m['divergence']['step']} ({m['divergence']['reason']})",
                         "ts_initial_K": m["ts_initial_K"], "ts_last_K": m["ts_last_K"],
                         "ts_drift_K_per_1000": m["ts_drift_K_per_1000"],
                         "energy_drift_J_m2_per_1000": m.get("energy_drift_J_m2_per_1000"),
                         "dry_mass_max_rel_error": m.get("dry_mass_max_rel_error"),
                         "adf_p_second_half": adf.get("pvalue"), "stationary": adf.get("stationary"),
                         "ts_climatology_rmse_K": m["climatology_rmse_vs_gcm_run_mean"].get("ts"),
                         "wall_s_per_10000_steps": res["wall_s_per_10000_steps"], "partial": record.get("partial")})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(study_dir / "rollout.csv", buffer.getvalue())
    reached = [r["steps_without_divergence"] for r in rows]
    summary = {"runs": [r["run"] for r in results], "steps": results[0]["steps"],
               "members": len(rows), "members_without_divergence": sum(1 for r in rows if not r["divergence"]),
               "min_steps_without_divergence": int(min(reached)),
               "median_wall_s_per_10000_steps": float(np.median([r["wall_s_per_10000_steps"] for r in results])),
               "median_wall_s_per_10000_member_steps": float(np.median([r["wall_s_per_10000_member_steps"]
                                                                        for r in results])),
               "max_dry_mass_rel_error": max((r["dry_mass_max_rel_error"] or 0.0) for r in rows),
               "conservation": _conservation(results),
               "lim": [{"run": r["run"], "member": m["member"], "steps_without_flag": m["steps_without_flag"],
                        "ts_drift_K_per_1000": m["ts_drift_K_per_1000"],
                        "ts_climatology_rmse_K": (m["climatology_rmse_vs_gcm_run_mean"] or {}).get("ts")}
                       for r in results for m in r.get("lim", [])],
               "lyapunov": {r["run"]: r["lyapunov"] for r in results}, "partial": record.get("partial", False),
               "cube": results[0].get("cube"),  # where the runs came from (provenance)
               # settings the report states, as they were run
               "step_days": results[0].get("step_days"), "climatology_steps": results[0].get("climatology_steps"),
               "gcm_mean_days": sorted({r.get("gcm_mean_days") for r in results if r.get("gcm_mean_days")})}
    write_json(study_dir / "summary.json", summary)
    return {"table": str(study_dir / "rollout.csv"), "summary": str(study_dir / "summary.json")}


def _conservation(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per quantity and before/after the correctors, over every member: the mean absolute error per
    step (mean over members), the largest, and the largest |cumulative| (the drift it adds up to);
    with what acts on each quantity after the network."""
    from astrohpc.studies.conservation import QUANTITIES

    out: dict[str, Any] = {}
    for q, (units, _) in QUANTITIES.items():
        entry: dict[str, Any] = {"units": units, "corrector": results[0].get("correctors", {}).get(q)}
        for when in ("before", "after"):
            stats = [m["conservation"][f"{q}_{when}"] for r in results for m in r["members"]
                     if f"{q}_{when}" in m.get("conservation", {}) and m["conservation"][f"{q}_{when}"]["steps"]]
            if not stats:
                break
            entry[when] = {"mean_abs_per_step": float(np.mean([s["mean_abs"] for s in stats])),
                           "max_abs_per_step": float(max(s["max_abs"] for s in stats)),
                           "max_abs_cumulative": float(max(abs(s["cumulative"]) for s in stats)),
                           "steps": int(sum(s["steps"] for s in stats))}
        else:
            out[q] = entry
    return out
