"""Spin-up acceleration (after PHASE): a cold-start GCM run's later state inferred from its first
k days, and what that saves. One task per k in `study.spinup_days`.

The cube is a cold-start sweep's (configs/gcm/spinup.yaml; `study.spinup_cube`, default
`study.sweep`/datacube.h5). k and target_days count states: days, with the daily snapshots those
sweeps write (the days saved are read from the cube's time axis). The later state of a run is the
mean of its last `study.target_days` states (T−w .. T−1): where the run got to, not the mean from
day k.

A task:
1. trains a climate surrogate (the config's `model:` section with task: climate and
   spinup_steps = k; `train:` as in any training run, on the spin-up cube) inside the task folder,
   on the later state instead of the mean of k .. T−1 (RunDataset's mean_window). Runs are held
   out whole by the usual split (train.test_runs / validation_runs / validation_fraction with
   run.seed, astrohpc.data.split); the best weights (the last without validation runs) are scored;
2. on the held-out runs (the test runs; the validation runs when there are none — then the
   best-epoch choice saw them, and the result says so) predicts the later state from the first k
   days, timing it (astrohpc.cost_clock: CPU time of the process and its children, and wall time ×
   torch threads; batch 1, after one untimed call);
3. scores it and two baselines against the GCM's later state, per channel in physical units,
   area-weighted RMSE and bias pooled over the held-out runs (astrohpc.studies.scores):
       persistence   the run's state on day k (the last state the surrogate was given), held
       climatology   the mean over the training runs of their later states
4. counts what the surrogate saves: (T − k) / k simulated days skipped per day integrated, and in
   each of the two cost measures m (`cpu`: CPU time of process + children; `wall_core`: wall time ×
   cores held) ExoPlaSim's measured cost per simulated day c_m (the held-out runs' summary.json,
   found in `study.sweep` or the run folders the cube was converted from; a summary written before
   the CPU measure existed has none) × the days skipped, against the surrogate's inference s_m in
   the same measure; `speedup_m` = T·c_m / (k·c_m + s_m), the cost of reaching the later state with
   the GCM alone over that of k GCM days plus the surrogate.

The aggregation writes spinup.csv (k × channel: the three RMSEs, the surrogate's ratio to each
baseline, the integration saved) and spinup_summary.json (per k: surface temperature, the mean
ratios over channels, the cost).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.errors import ConfigError, DataError

log = logging.getLogger(__name__)

METHODS = ("surrogate", "persistence", "climatology")
BASELINES = ("persistence", "climatology")
SUMMARY_KEYS = ("status", "step", "total_steps", "epoch", "best", "wall_s", "run_dir", "split", "exports")
CSV_COLUMNS = ("spinup_days", "channel", "units", "n_runs", "surrogate_rmse", "persistence_rmse",
               "climatology_rmse", "surrogate_over_persistence", "surrogate_over_climatology", "surrogate_bias",
               "surrogate_beats_both", "days_used", "days_skipped", "days_skipped_per_day_used",
               "gcm_cpu_s_skipped", "surrogate_cpu_s", "speedup_cpu", "gcm_wall_core_s_skipped",
               "surrogate_wall_core_s", "speedup_wall_core", "partial")
COST_MEASURES = ("cpu", "wall_core")  # astrohpc.cost_clock's two, each compared only with itself


# ---------------------------------------------------------------------------- the cube and the split


def spinup_cube(cfg: Any) -> Path:
    """study.spinup_cube, else study.sweep/datacube.h5; ConfigError when neither is set, DataError
    when the file is missing."""
    from astrohpc.gcm.manifest import DATACUBE

    s = cfg.study
    if not s.spinup_cube and not s.sweep:
        raise ConfigError("the spinup study needs its cube: set study.spinup_cube, or study.sweep to the folder of a "
                          "cold-start sweep (configs/gcm/spinup.yaml) whose datacube.h5 it reads")
    path = Path(s.spinup_cube) if s.spinup_cube else Path(s.sweep) / DATACUBE
    if not path.is_file():
        raise DataError(f"{path}: no spin-up cube; run and aggregate its cold-start sweep first (e.g. `astrohpc "
                        "gcm sweep configs/gcm/spinup_small.yaml --local`)")
    return path


def held_out(split: dict[str, list[str]]) -> tuple[list[str], str]:
    """The runs scored and which part of the split they are: the test runs, else the validation runs."""
    if split.get("test"):
        return list(split["test"]), "test"
    if split.get("validation"):
        return list(split["validation"]), "validation"
    raise ConfigError("the spinup study scores held-out runs: set train.test_runs (or validation_runs, or "
                      "validation_fraction > 0 with at least 2 runs)")


def later_state(states: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last `window` states: states [T, C, lat, lon] -> [C, lat, lon] float64 (NaN
    cells, below the surface, left out; NaN where every state is NaN)."""
    if not 1 <= window <= len(states):
        raise DataError(f"a later-state window of {window} states does not fit a run of {len(states)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice": all-NaN cells stay NaN
        return np.nanmean(np.asarray(states[-window:], np.float64), axis=0)


# ---------------------------------------------------------------------------- expand


def expand(cfg: Any) -> list[dict[str, Any]]:
    """One task per k in study.spinup_days. The cube path is resolved here (where the study is
    planned); the config is checked now rather than in every array task."""
    from astrohpc.data.cube import read_meta
    from astrohpc.data.split import split_runs

    if cfg.model.task != "climate":
        raise ConfigError(f"the spinup study trains climate surrogates: set model.task: climate (got "
                          f"{cfg.model.task!r}); model.spinup_steps is set per task from study.spinup_days")
    cube = spinup_cube(cfg).resolve()
    meta = read_meta(cube)
    t = cfg.train
    split = split_runs(meta.run_names, t.validation_runs, t.test_runs, t.validation_fraction, cfg.run.seed)
    held_out(split.describe())
    need = max(cfg.study.spinup_days) + cfg.study.target_days
    shortest = int(np.argmin(meta.time_count))
    if meta.time_count[shortest] < need:
        raise ConfigError(f"{cube}: run {meta.run_names[shortest]} has {int(meta.time_count[shortest])} states, fewer "
                          f"than the largest study.spinup_days + study.target_days = {need}: the spin-up and the "
                          "later-state window must not overlap; lower them or run the sweep longer")
    return [{"spinup_days": int(k), "cube": str(cube)} for k in cfg.study.spinup_days]


def task_config(task: dict[str, Any], cfg: Any, study_dir: Path) -> Any:
    """The training config of `task`: model.spinup_steps = k, train.cube = the spin-up cube, run
    folder STUDY/tasks/<id>/train/k<k>."""
    from astrohpc.config import Config, from_dict, to_dict
    from astrohpc.studies.tasks import task_dir

    raw = to_dict(cfg)
    k = int(task["spinup_days"])
    raw["model"] = {**raw["model"], "spinup_steps": k}
    raw["train"] = {**raw["train"], "cube": task["cube"]}
    raw["run"] = {**raw["run"], "root": str(task_dir(study_dir, task["id"]) / "train"), "name": f"k{k}"}
    return from_dict(Config, raw, source=f"spinup study, k = {k}")


# ---------------------------------------------------------------------------- training


def _later_dataset(cfg: Any, model: Any, cube: Path, runs: list[int], param_norm: dict, window: int) -> Any:
    """The trainer's RunDataset of `runs` with the later state as the target."""
    from astrohpc.data.runs import RunDataset

    plan = model.plan
    return RunDataset(cube, cfg.model.spinup_steps, variables=list(plan.variables), runs=runs, param_norm=param_norm,
                      static=bool(plan.static), spectra=cfg.model.mode in ("spectral", "joint"), mean_window=window)


def train_later_state(cfg: Any, target_days: int, env: Any = None) -> dict[str, Any]:
    """astrohpc.train.trainer.train, with the mean of each run's last `target_days` states as the
    target of training, validation and the validation baseline (the training climatology).
    Returns the trainer's summary; resumes its own checkpoint when run again."""
    import torch

    from astrohpc.studies import baselines as base
    from astrohpc.train.distributed import detect, init_process_group, shutdown
    from astrohpc.train.trainer import Trainer

    env = env or detect()
    init_process_group(env)
    try:
        trainer = Trainer(cfg, env)
        # The trainer builds its RunDatasets with the default target (the mean of k .. T-1): the
        # same runs and normalisation, with the later state instead. The sampler only needs the length.
        data = trainer.data
        train = _later_dataset(cfg, trainer.model, data.cube, list(data.split.train), data.param_norm, target_days)
        validation = None if data.validation is None else _later_dataset(
            cfg, trainer.model, data.cube, list(data.split.validation), data.param_norm, target_days)
        trainer.data = dataclasses.replace(data, train=train, validation=validation)
        for replaced in (data.train, data.validation):
            if replaced is not None:
                replaced.close()
        trainer.climatology = torch.from_numpy(base.climatology(np.stack([train[i]["mean"].numpy()
                                                                          for i in range(len(train))]))).float()
        return trainer.fit()
    finally:
        shutdown()


# ---------------------------------------------------------------------------- scoring


def predict(model: Any, items: list[dict[str, Any]]) -> tuple[np.ndarray, dict[str, float]]:
    """The surrogate's later states [R, C, lat, lon] float64 (physical) from RunDataset items, one
    at a time, and the cost per run (astrohpc.cost_clock: CPU seconds of process + children, wall
    seconds, wall × torch threads; one untimed call first)."""
    import torch

    from astrohpc.cost_clock import cost_clock
    from astrohpc.models.uncertainty import GaussianPrediction

    def one(item: dict[str, Any]) -> np.ndarray:
        static = item.get("static")
        out = model.physical(model(item["params"][None], item["spinup"][None],
                                   None if static is None else static[None]))["datacube"]
        out = out.mean if isinstance(out, GaussianPrediction) else out
        return out[0].double().numpy()

    model.eval()
    with torch.no_grad():
        one(items[0])
        with cost_clock(torch.get_num_threads()) as clock:
            fields = [one(item) for item in items]
    n = len(items)
    return np.stack(fields), {"cpu_s_per_run": clock["cpu_s"] / n, "wall_s_per_run": clock["wall_s"] / n,
                              "wall_core_s_per_run": clock["wall_core_s"] / n, "torch_threads": clock["cores"]}


def gcm_cost_per_day(run_names: list[str], cube: Path, sweep: Optional[str]) -> dict[str, dict[str, Optional[float]]]:
    """ExoPlaSim's measured cost per simulated day, {run: {"cpu": CPU s of process + children or
    None (an older summary), "wall_core": wall × ranks}}, of each run that has a finished
    summary.json in `sweep`/<run> or in the run folders the cube was converted from."""
    from astrohpc.data.cube import open_file

    f = open_file(cube, validate=False)
    try:
        provenance = json.loads(f.attrs.get("provenance", "{}"))
    finally:
        f.close()
    converted = [Path(d) for d in provenance.get("run_dirs", [])]
    out = {}
    for name in run_names:
        candidates = ([Path(sweep) / name] if sweep else []) + [d for d in converted if d.name == name]
        for folder in candidates:
            path = folder / "summary.json"
            if not path.is_file():
                continue
            summary = json.loads(path.read_text())
            if summary.get("status") == "finished" and summary.get("core_seconds_per_simulated_day"):
                cpu = summary.get("cpu_seconds_per_simulated_day")
                out[name] = {"cpu": None if cpu is None else float(cpu),
                             "wall_core": float(summary["core_seconds_per_simulated_day"])}
                break
    return out


def _states(cube: Any, meta: Any, run: int, channels: list[int], k: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(day-k state [C, lat, lon], later state [C, lat, lon]), float64, physical."""
    steps = int(meta.time_count[run])
    day_k = cube.read(run, k - 1, 1)[0, channels].astype(np.float64)
    return day_k, later_state(cube.read(run, steps - window, window)[:, channels], window)


def run(task: dict[str, Any], cfg: Any, study_dir: Path) -> dict[str, Any]:
    from astrohpc.data.cube import LazyCube, read_meta
    from astrohpc.data.runs import RunDataset
    from astrohpc.studies import baselines as base
    from astrohpc.studies.scores import rmse_bias
    from astrohpc.train.export import load_exported

    k, window = int(task["spinup_days"]), int(cfg.study.target_days)
    train_cfg = task_config(task, cfg, study_dir)
    summary = train_later_state(train_cfg, window)
    if summary["status"] != "finished":
        raise RuntimeError(f"training with k = {k} stopped ({summary['status']}) at step {summary['step']}/"
                           f"{summary['total_steps']}; rerun the task to resume it")
    which = "best" if "best" in summary.get("exports", {}) else "last"
    model, info = load_exported(summary["exports"][which])
    meta = read_meta(info["cube"])
    runs, part = held_out(summary["split"])
    ids = [meta.run_names.index(r) for r in runs]
    train_ids = [meta.run_names.index(r) for r in summary["split"]["train"]]
    plan = info["plan"]
    channels = list(plan["cube_channels"])
    names, units = list(plan["channel_names"]), [meta.units[c] for c in channels]

    dataset = RunDataset(info["cube"], k, variables=list(plan["variables"]), runs=ids, param_norm=info["param_norm"],
                         static=bool(plan["static"]), mean_window=window)
    try:
        predicted, inference = predict(model, [dataset[i] for i in range(len(dataset))])
    finally:
        dataset.close()
    cube = LazyCube(info["cube"]).prepare()
    try:
        held = [_states(cube, meta, r, channels, k, window) for r in ids]
        train_later = np.stack([_states(cube, meta, r, channels, k, window)[1] for r in train_ids])
    finally:
        cube.close()
    truth = np.stack([later for _, later in held])
    fields = {"surrogate": predicted, "persistence": np.stack([day_k for day_k, _ in held]),
              "climatology": base.climatology(train_later)[None]}
    area = np.asarray(meta.area_weight, np.float64)
    methods = {}
    for method, field in fields.items():
        rmse, bias = rmse_bias(field, truth, area)
        each = np.broadcast_to(field, truth.shape)
        by_run = [rmse_bias(each[i], truth[i], area)[0].tolist() for i in range(len(ids))]
        methods[method] = {"rmse": rmse.tolist(), "bias": bias.tolist(), "rmse_by_run": by_run}

    used = np.array([meta.time_days[r][k - 1] for r in ids], np.float64)
    total = np.array([meta.time_days[r][int(meta.time_count[r]) - 1] for r in ids], np.float64)
    skipped = total - used
    gcm = gcm_cost_per_day(runs, Path(info["cube"]), cfg.study.sweep)
    cost: dict[str, Any] = {**inference, "gcm_per_day": gcm or None}
    for m in COST_MEASURES:  # each measure against itself only
        per_day = np.array([np.nan if (gcm.get(r) or {}).get(m) is None else gcm[r][m] for r in runs])
        if not np.isfinite(per_day).any():
            continue
        s = inference[f"{m}_s_per_run"]
        cost.update({f"gcm_{m}_s_skipped": float(np.nanmean(per_day * skipped)),
                     f"gcm_{m}_s_used": float(np.nanmean(per_day * used)),
                     f"speedup_{m}": float(np.nanmean(per_day * total) / (np.nanmean(per_day * used) + s)),
                     f"gcm_{m}_s_per_day_mean": float(np.nanmean(per_day))})
    return {"spinup_days": k, "target_days": window, "runs": runs, "held_out": part,
            "train_runs": list(summary["split"]["train"]), "weights": which, "export": summary["exports"][which],
            "channels": names, "units": units, "methods": methods,
            "days": {"used": used.tolist(), "total": total.tolist(), "skipped": skipped.tolist(),
                     "skipped_per_day_used": float(np.mean(skipped / used))},
            "cost": cost, "train_summary": {key: summary.get(key) for key in SUMMARY_KEYS}}


# ---------------------------------------------------------------------------- aggregation


def _ratio(a: float, b: float) -> Optional[float]:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) else None


def table_rows(results: list[dict[str, Any]], partial: bool = False) -> list[dict[str, Any]]:
    """spinup.csv's rows: one per k (ascending) and channel."""
    rows = []
    for res in sorted(results, key=lambda r: r["spinup_days"]):
        m, cost, days = res["methods"], res["cost"], res["days"]
        for c, (name, unit) in enumerate(zip(res["channels"], res["units"])):
            rmse = {method: float(m[method]["rmse"][c]) for method in METHODS}
            rows.append({
                "spinup_days": res["spinup_days"], "channel": name, "units": unit, "n_runs": len(res["runs"]),
                **{f"{method}_rmse": rmse[method] for method in METHODS},
                "surrogate_over_persistence": _ratio(rmse["surrogate"], rmse["persistence"]),
                "surrogate_over_climatology": _ratio(rmse["surrogate"], rmse["climatology"]),
                "surrogate_bias": float(m["surrogate"]["bias"][c]),
                "surrogate_beats_both": all(rmse["surrogate"] < rmse[b] for b in BASELINES),
                "days_used": float(np.mean(days["used"])), "days_skipped": float(np.mean(days["skipped"])),
                "days_skipped_per_day_used": days["skipped_per_day_used"],
                **_cost_columns(cost), "partial": partial})
    return rows


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per k: surface temperature's RMSE of each method (when there is a ts channel), the mean over
    channels of the surrogate's RMSE ratio to each baseline (channels with a zero or undefined
    baseline left out), channels where it beats both, the days and core-seconds saved."""
    out = []
    for res in sorted(results, key=lambda r: r["spinup_days"]):
        m = res["methods"]
        row: dict[str, Any] = {"spinup_days": res["spinup_days"], "runs": len(res["runs"])}
        if "ts" in res["channels"]:
            c = res["channels"].index("ts")
            row.update({f"ts_{method}_rmse_K": float(m[method]["rmse"][c]) for method in METHODS})
        for b in BASELINES:
            ratios = [r for r in (_ratio(s, v) for s, v in zip(m["surrogate"]["rmse"], m[b]["rmse"])) if r is not None]
            row[f"mean_ratio_to_{b}"] = float(np.mean(ratios)) if ratios else None
        row["channels_beating_both"] = sum(all(s < m[b]["rmse"][c] for b in BASELINES)
                                           for c, s in enumerate(m["surrogate"]["rmse"]))
        row["channels"] = len(res["channels"])
        row["days_skipped_per_day_used"] = res["days"]["skipped_per_day_used"]
        row.update(_cost_columns(res["cost"]))
        out.append(row)
    return out


def _cost_columns(cost: dict[str, Any]) -> dict[str, Any]:
    """surrogate_{m}_s, gcm_{m}_s_skipped and speedup_{m} of a task's cost, for each measure m."""
    out: dict[str, Any] = {}
    for m in COST_MEASURES:
        out.update({f"gcm_{m}_s_skipped": cost.get(f"gcm_{m}_s_skipped"), f"surrogate_{m}_s": cost[f"{m}_s_per_run"],
                    f"speedup_{m}": cost.get(f"speedup_{m}")})
    return out


def aggregate(results: list[dict[str, Any]], cfg: Any, study_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """spinup.csv and spinup_summary.json (see the module doc); the k values done in the record."""
    from astrohpc.atomic_write import write_json, write_text

    partial = bool(record.get("partial", False))
    rows = table_rows(results, partial)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if row[key] is None else row[key] for key in CSV_COLUMNS} for row in rows)
    write_text(study_dir / "spinup.csv", buffer.getvalue())
    record["spinup_days"] = sorted(r["spinup_days"] for r in results)
    held = sorted({r["held_out"] for r in results})
    if "validation" in held:
        record["warning"] = ("scored on the validation runs (no train.test_runs): the best epoch was chosen on "
                             "them, so the surrogate's scores are slightly optimistic")
        log.warning("%s", record["warning"])
    write_json(study_dir / "spinup_summary.json", {
        "partial": partial, "target_days": cfg.study.target_days, "runs": results[0]["runs"], "held_out": held,
        "warning": record.get("warning"), "rows": summary_rows(results)})
    return {"table": str(study_dir / "spinup.csv"), "summary": str(study_dir / "spinup_summary.json")}
