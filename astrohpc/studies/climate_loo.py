"""The climate study (`astrohpc study climate CONFIG`): leave-one-out parity of the climate surrogate.

Each run of the cube of interval means is the GCM's climate of one planet: the mean of its last
`study.average_days` days. One task per run: the Gaussian-process surrogate
(astrohpc/models/gp_climate.py, the `model.gp` settings) is refit on every other run and predicts
the held-out run's time-mean fields; beside it, with the same training runs, the nearest run, linear
and quadratic regression on the parameters, and the ensemble mean
(astrohpc/analysis/parametric_baselines.py). One more task per run of `study.outside_runs`
(planets outside the design's envelope, never fitted): predicted by the model of all other runs.

Scores per channel of `study.score_channels`, in physical units, area-weighted over the grid:
RMSE, bias, pattern correlation; for the GP also the coverage of its central 68 % and 95 %
intervals and the CRPS of its Gaussian predictive distribution.

Out-of-envelope flag: a prediction is flagged when a parameter (transformed as sampled) lies
outside the design's box (the sweep's sampled bounds, from its tasks.json; without the sweep,
the training runs' box widened by one Latin-hypercube stratum (max − min)/(n − 1) on each side),
or when its area-weighted mean predictive σ of the first score channel exceeds
`study.ood_std_factor` × the largest among the leave-one-out predictions (the threshold is set
on the LOO runs at aggregation).

Cost: CPU time of one prediction (astrohpc.cost_clock, process and children) beside the GCM's
own CPU time per run from each run's summary.json (both as CPU time; wall × cores beside).

Twin floor: with `study.climate_twins` > 0, that many inside runs are rerun as GCM twins (one task
each, instellation + study.twin_delta_instellation_W_m2); the RMSE of a twin's time mean against
its run's, pooled, is the GCM's own floor, and every LOO RMSE is also given as a ratio to it.

Aggregation: climate.csv (per run, channel, method), climate_summary.json (pooled scores, ratios
to the nearest run, the best regression and the twin floor, coverage, OOD verdicts, equilibrium of each run: TOA
imbalance and ts trend over the averaging window) and summary.json in the study folder (the keys
`make skill` reports); and export/gp.pt, the GP fitted on every inside run with its envelope and
σ threshold (astrohpc.train.gp_export), which `astrohpc predict` reads.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from astrohpc.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("gp", "nearest", "linear", "quadratic", "ensemble_mean", "network")
PREDICTION_REPEATS = 20


# ---------------------------------------------------------------------------- inputs


def climate_cube(cfg: Any) -> Path:
    """study.cube, else the sweep's cube of interval means (`study.sweep`/datacube_means.h5)."""
    if cfg.study.cube:
        return Path(cfg.study.cube)
    if cfg.study.sweep:
        return Path(cfg.study.sweep) / "datacube_means.h5"
    raise ConfigError("the climate study needs study.cube (a cube of interval means) or study.sweep (its sweep folder)")


def fit_inputs(cfg: Any, meta: Any) -> dict[str, Any]:
    """Runs (inside and outside the envelope), parameters and their transforms, channels modelled
    and scored. ConfigError naming what the cube lacks."""
    from astrohpc.data.cube import default_transform, pick_channels

    names = list(meta.run_names)
    unknown = [r for r in [*cfg.study.runs, *cfg.study.outside_runs] if r not in names]
    if unknown:
        raise ConfigError(f"{meta.path}: no run {', '.join(unknown)} (study.runs / study.outside_runs); runs: "
                          f"{', '.join(names)}")
    outside = list(cfg.study.outside_runs)
    inside = [r for r in (cfg.study.runs or names) if r not in outside]
    if len(inside) < 3:
        raise ConfigError(f"the climate study needs at least 3 runs inside the envelope, got {len(inside)}")
    rows = [names.index(r) for r in inside]
    params = list(cfg.model.params) or design_params(meta, rows)
    if not params:
        raise ConfigError(f"{meta.path}: no run parameter varies across the runs: nothing to learn from")
    labels = meta.channel_names
    scored = pick_channels(labels, list(cfg.study.score_channels), tolerance=0.1)
    missing = [c for c in cfg.study.score_channels
               if not any(labels[i].split("@")[0] == c.split("@")[0] for i in scored)]
    if missing:
        raise ConfigError(f"{meta.path}: no channel {', '.join(missing)} (study.score_channels); variables: "
                          f"{', '.join(dict.fromkeys(meta.variables))}")
    variables = list(cfg.model.variables) or list(dict.fromkeys(meta.variables[i] for i in scored))
    channels = [int(i) for i in meta.channels_of(variables)]
    return {"inside": inside, "outside": outside, "params": params,
            "transforms": [meta.param_transforms.get(p) or default_transform(p) for p in params],
            "channels": channels, "score": [channels.index(i) for i in scored if i in channels],
            "score_labels": [labels[i] for i in scored if i in channels]}


def design_params(meta: Any, rows: list[int]) -> list[str]:
    """The parameters the sweep's design varied (those with a `point.planet.*` copy), else those
    that vary across `rows` by more than rounding."""
    designed = [p for p in meta.param_names if f"point.planet.{p}" in meta.params]
    if designed:
        return designed
    return [p for p in meta.param_names
            if np.nanstd(meta.params[p][rows]) > 1e-9 * (1.0 + abs(np.nanmean(meta.params[p][rows])))]


# ---------------------------------------------------------------------------- expand


def expand(cfg: Any) -> list[dict[str, Any]]:
    """One task per run inside the envelope (held out once) and per outside run; checked here,
    where the study is planned."""
    from astrohpc.data.cube import read_meta

    if cfg.model.task != "climate" or cfg.model.architecture != "gp":
        raise ConfigError("the climate study fits the Gaussian-process climate surrogate: set model.task: climate "
                          f"and model.architecture: gp (got {cfg.model.task!r}, {cfg.model.architecture!r})")
    cube = climate_cube(cfg).resolve()
    meta = read_meta(cube, stats=False)
    inputs = fit_inputs(cfg, meta)
    fitted = len(inputs["inside"]) - 1
    if fitted <= cfg.model.gp.max_components:
        raise ConfigError(f"the climate study fits {fitted} runs at a time, too few for up to "
                          f"{cfg.model.gp.max_components} "
                          f"EOF components: lower model.gp.max_components to {max(fitted - 1, 1)} or less, or add runs")
    short = [n for n, t in zip(meta.run_names, meta.time_days) if np.nanmax(t) < 2 * cfg.study.average_days]
    if short:
        log.warning("runs %s are shorter than twice study.average_days: their mean includes the adjustment",
                    ", ".join(short))
    return ([{"held_out": r, "kind": "loo", "cube": str(cube)} for r in inputs["inside"]]
            + [{"held_out": r, "kind": "outside", "cube": str(cube)} for r in inputs["outside"]]
            + [{"held_out": r, "kind": "twin", "cube": str(cube)} for r in twin_runs(cfg, inputs["inside"])])


def twin_runs(cfg: Any, inside: list[str]) -> list[str]:
    """The `study.climate_twins` inside runs rerun as GCM twins, evenly spread over the runs in name order."""
    k = cfg.study.climate_twins
    if not k:
        return []
    if not cfg.study.sweep:
        raise ConfigError("study.climate_twins reruns runs of the sweep (its task configs and spin-up): set "
                          "study.sweep to the sweep folder of the cube, or study.climate_twins=0")
    names = sorted(inside)
    if k > len(names):
        raise ConfigError(f"study.climate_twins = {k}, but only {len(names)} runs lie inside the envelope")
    return [names[int(i)] for i in np.unique(np.round(np.linspace(0, len(names) - 1, k)).astype(int))]


# ---------------------------------------------------------------------------- run


def envelope_check(x_train: np.ndarray, x: np.ndarray, box: Any = None) -> np.ndarray:
    """[m] True where every (transformed) parameter of x [m, P] lies in the envelope: the design's
    box (`box`: [P, 2] low/high, transformed) when known, else the training box widened by one
    stratum (max − min)/(n − 1) on each side."""
    if box is not None:
        box = np.asarray(box, np.float64)
        span = box[:, 1] - box[:, 0]
        return np.all((x >= box[:, 0] - 1e-9 * span) & (x <= box[:, 1] + 1e-9 * span), axis=1)
    box = training_box(x_train)
    return np.all((x >= box[:, 0]) & (x <= box[:, 1]), axis=1)


def training_box(x_train: np.ndarray) -> np.ndarray:
    """[P, 2] the training runs' box (transformed parameters) widened by one Latin-hypercube
    stratum (max − min)/(n − 1) on each side: the envelope when the sweep's design is unknown."""
    low, high = x_train.min(axis=0), x_train.max(axis=0)
    pad = (high - low) / max(len(x_train) - 1, 1)
    return np.stack([low - pad, high + pad], axis=1)


def design_box(sweep: Any, params: list[str], transforms: list[str]) -> Any:
    """The sampled design's bounds of `params` ([P, 2], transformed as the models read them) from
    the sweep's tasks.json, or None when the sweep is unknown or did not sample every parameter."""
    if not sweep or not (Path(sweep) / "tasks.json").is_file():
        return None
    design = (json.loads((Path(sweep) / "tasks.json").read_text())["base_config"].get("sweep") or {})
    bounds = design.get("parameters") or {}
    if design.get("design") not in ("sobol", "lhs", "maximin-lhs"):
        return None
    box = []
    for name, how in zip(params, transforms):
        pair = bounds.get(f"planet.{name}")
        if not isinstance(pair, list) or len(pair) != 2:
            return None
        box.append(np.log10(pair) if how == "log10" else np.asarray(pair, np.float64))
    return np.stack(box)


def predictions(train_x: np.ndarray, train_fields: np.ndarray, test_x: np.ndarray, model: Any) -> dict[str, np.ndarray]:
    """Every method's prediction [m, C, lat, lon] from the same training runs (raw parameters)."""
    from astrohpc.analysis import parametric_baselines as base
    from astrohpc.studies.baselines import nearest_run

    z_train, z_test = model._inputs(train_x), model._inputs(test_x)
    nearest = np.stack([np.asarray(train_fields[nearest_run(z_train, z)], np.float64) for z in z_test])
    return {"nearest": nearest,
            "linear": base.regression(z_train, train_fields, z_test, 1),
            "quadratic": base.regression(z_train, train_fields, z_test, 2),
            "ensemble_mean": base.ensemble_mean(train_fields, len(test_x))}


def score(pred: dict[str, np.ndarray], std: np.ndarray, truth: np.ndarray, area: np.ndarray,
          labels: list[str], score: list[int]) -> dict[str, Any]:
    """Scores of one held-out run: truth [C, lat, lon]; pred[method] [C, lat, lon]; std [C, lat, lon]."""
    from astrohpc.analysis.metrics import coverage, crps_gaussian
    from astrohpc.studies.scores import pattern_correlation, rmse_bias

    out: dict[str, Any] = {"rmse": {}, "bias": {}, "corr": {}, "coverage68": {}, "coverage95": {}, "crps": {}}
    for method, field in pred.items():
        rmse, bias = rmse_bias(field[score], truth[score], area)
        corr = pattern_correlation(field[score], truth[score], area)
        for j, label in enumerate(labels):
            out["rmse"].setdefault(label, {})[method] = float(rmse[j])
            out["bias"].setdefault(label, {})[method] = float(bias[j])
            out["corr"].setdefault(label, {})[method] = float(corr[j])
    weights = np.broadcast_to(area, truth.shape[1:])
    for j, label in zip(score, labels):
        out["coverage68"][label] = coverage(pred["gp"][j], std[j], truth[j], 0.68, weights)
        out["coverage95"][label] = coverage(pred["gp"][j], std[j], truth[j], 0.95, weights)
        out["crps"][label] = crps_gaussian(pred["gp"][j], std[j], truth[j], weights)
    return out


def fit_gp(cfg: Any, meta: Any, inputs: dict[str, Any], x: np.ndarray, fields: np.ndarray, runs: list[str]) -> Any:
    """The GP (cfg.model.gp) fitted on raw parameters x [run, P] and time means [run, C, lat, lon]."""
    from astrohpc.models.gp_climate import GPClimate

    gp_cfg = cfg.model.gp
    model = GPClimate(gp_cfg.variance_kept, gp_cfg.max_components, gp_cfg.restarts, cfg.run.seed, gp_cfg.smoothness,
                      gp_cfg.loo_calibration)
    channel_vars = [meta.variables[i] for i in inputs["channels"]]
    return model.fit(x, inputs["params"], inputs["transforms"], fields, channel_vars, meta.area_weight, runs)


def export_final(cfg: Any, cube: Path, study_dir: Path, threshold: float, sigma_channel: str) -> Path:
    """Fit the GP on every run inside the envelope and write study_dir/export/gp.pt
    (astrohpc.train.gp_export): what `astrohpc predict` uses for a new planet."""
    from astrohpc.analysis.cube_means import time_mean_fields
    from astrohpc.config import to_dict
    from astrohpc.data.cube import read_meta, transform_params
    from astrohpc.provenance import collect
    from astrohpc.train.gp_export import export_gp

    meta = read_meta(cube, stats=False)
    inputs = fit_inputs(cfg, meta)
    rows = [meta.run_names.index(r) for r in inputs["inside"]]
    fields = time_mean_fields(cube, inputs["channels"], cfg.study.average_days, rows)
    x = meta.param_matrix(inputs["params"])[rows]
    model = fit_gp(cfg, meta, inputs, x, fields, inputs["inside"])
    box = design_box(cfg.study.sweep, inputs["params"], inputs["transforms"])
    source = "the sweep's design box"
    if box is None:
        box = training_box(transform_params(x, inputs["params"], inputs["transforms"]))
        source = "training runs' box + one stratum"
    info = {"channels": inputs["channels"], "params": inputs["params"], "transforms": inputs["transforms"],
            "train_runs": inputs["inside"], "box": np.asarray(box, np.float64), "box_source": source,
            "sigma_threshold": float(threshold), "sigma_channel": sigma_channel,
            "average_days": float(cfg.study.average_days), "config": to_dict(cfg), "provenance": collect(cfg),
            "cube": str(cube)}
    return export_gp(study_dir / "export" / "gp.pt", model, meta, info)


def run_twin(task: dict[str, Any], cfg: Any, study_dir: Path) -> dict[str, Any]:
    """The GCM twin of `task["held_out"]`: its time mean against the run's own, per score channel
    (the floor no surrogate of a single run's climate can beat by more than luck)."""
    from astrohpc.analysis.cube_means import time_mean_fields
    from astrohpc.data.cube import read_meta
    from astrohpc.errors import DataError
    from astrohpc.studies.parity import gcm_twin
    from astrohpc.studies.scores import rmse_bias
    from astrohpc.studies.tasks import task_dir

    meta = read_meta(task["cube"], stats=False)
    inputs = fit_inputs(cfg, meta)
    work = task_dir(study_dir, task["id"]) / "twin"
    twin_cube, twin_summary = gcm_twin(cfg, task["held_out"], work, cfg.study.twin_delta_instellation_W_m2, "means")
    twin_meta = read_meta(twin_cube, stats=False)
    labels = [meta.channel_names[i] for i in inputs["channels"]]
    missing = [c for c in labels if c not in twin_meta.channel_names]
    if missing:
        raise DataError(f"{twin_cube}: the twin lacks channels {', '.join(missing[:5])}; convert it like the sweep")
    twin = time_mean_fields(twin_cube, [twin_meta.channel_names.index(c) for c in labels], cfg.study.average_days)[0]
    own = time_mean_fields(task["cube"], inputs["channels"], cfg.study.average_days,
                           [meta.run_names.index(task["held_out"])])[0]
    rmse, _ = rmse_bias(twin[inputs["score"]], own[inputs["score"]], meta.area_weight)
    return {"held_out": task["held_out"], "kind": "twin", "score_labels": inputs["score_labels"],
            "twin_rmse": {label: float(v) for label, v in zip(inputs["score_labels"], rmse)},
            "delta_instellation_W_m2": cfg.study.twin_delta_instellation_W_m2,
            "gcm_cpu_s": twin_summary.get("cpu_time_s"), "gcm_wall_s": twin_summary.get("wall_time_s")}


def network_config(cfg: Any, task: dict[str, Any], study_dir: Path, inputs: dict[str, Any], train: list[str]) -> Any:
    """The training config of the compared climate network (study.compare_model) in one LOO task:
    its architecture settings, on the study's variables and parameters, no spin-up days, no physics
    terms (the study's variables need not carry what they read), trained on `train` alone."""
    from astrohpc.config import Config, from_dict, load_config, to_dict
    from astrohpc.data.cube import read_meta
    from astrohpc.studies.tasks import task_dir

    model = to_dict(load_config(cfg.study.compare_model))["model"]
    if model.get("task") != "climate":
        raise ConfigError(f"study.compare_model {cfg.study.compare_model}: a climate model is needed (model.task: "
                          f"climate), got {model.get('task')!r}")
    meta = read_meta(task["cube"], stats=False)
    variables = list(dict.fromkeys(meta.variables[i] for i in inputs["channels"]))
    model.update({"mode": "datacube", "spinup_steps": 0, "params": list(inputs["params"]), "variables": variables,
                  "physics": {"loss_weights": {}, "correctors": []}, "uncertainty": {"method": "none"}})
    others = [r for r in meta.run_names if r not in train]
    raw = {"run": {"root": str(task_dir(study_dir, task["id"]) / "network"), "name": "train", "seed": cfg.run.seed},
           "model": model,
           "train": {"cube": task["cube"], "test_runs": others, "validation_runs": [], "validation_fraction": 0.0,
                     "epochs": cfg.study.compare_epochs, "batch_size": 1, "checkpoint_every": 0, "log_every": 50,
                     "threads": 1}}
    return from_dict(Config, raw, source=f"climate study, network of task {task['id']}")


def network_prediction(cfg: Any, task: dict[str, Any], study_dir: Path, meta: Any, inputs: dict[str, Any],
                       train: list[str]) -> tuple[np.ndarray, dict[str, Any]]:
    """Train the compared network on `train` (the mean of each run's last average_days states as its
    target: astrohpc.studies.spinup.train_later_state) and predict the held-out run: [C, lat, lon]
    in the study's channels, and its training and prediction cost."""
    from astrohpc.cost_clock import cost_clock
    from astrohpc.data.cube import read_meta
    from astrohpc.data.runs import RunDataset
    from astrohpc.data.stats import run_stats
    from astrohpc.studies.spinup import predict, train_later_state
    from astrohpc.train.export import load_exported

    if read_meta(task["cube"]).stats is None:  # the network normalises with the cube's statistics
        log.info("computing the statistics of %s for the compared network", task["cube"])
        run_stats(task["cube"])
    net_cfg = network_config(cfg, task, study_dir, inputs, train)
    window = int(round(cfg.study.average_days / float(np.diff(meta.time_days[0][:2])[0])))
    with cost_clock(1) as fit_cost:
        summary = train_later_state(net_cfg, window)
    if summary["status"] != "finished":
        raise RuntimeError(f"the compared network stopped ({summary['status']}) at step {summary['step']}; rerun the "
                           "task to resume it")
    model, info = load_exported(summary["exports"]["best" if "best" in summary.get("exports", {}) else "last"])
    plan = info["plan"]
    row = meta.run_names.index(task["held_out"])
    dataset = RunDataset(task["cube"], 0, variables=list(plan["variables"]), runs=[row],
                         param_norm=info["param_norm"], static=bool(plan["static"]), mean_window=window)
    try:
        fields, timing = predict(model, [dataset[0]])
    finally:
        dataset.close()
    names = list(plan["channel_names"])
    order = [names.index(meta.channel_names[i]) for i in inputs["channels"]]
    return fields[0][order], {"fit_cpu_s": fit_cost["cpu_s"], "predict_cpu_s": timing["cpu_s_per_run"],
                              "epochs": cfg.study.compare_epochs}


def run(task: dict[str, Any], cfg: Any, study_dir: Path) -> dict[str, Any]:
    """Fit on every other inside run, predict `task["held_out"]`, score every method (a twin task:
    `run_twin`)."""
    if task["kind"] == "twin":
        return run_twin(task, cfg, study_dir)
    from astrohpc.analysis.cube_means import time_mean_fields
    from astrohpc.cost_clock import cost_clock
    from astrohpc.data.cube import read_meta, transform_params
    from astrohpc.studies.scores import global_mean

    meta = read_meta(task["cube"], stats=False)
    inputs = fit_inputs(cfg, meta)
    train = [r for r in inputs["inside"] if r != task["held_out"]]
    rows = [meta.run_names.index(r) for r in [*train, task["held_out"]]]
    fields = time_mean_fields(task["cube"], inputs["channels"], cfg.study.average_days, rows)
    params = meta.param_matrix(inputs["params"])[rows]
    train_x, train_fields = params[:-1], fields[:-1]
    test_x, truth = params[-1:], fields[-1]
    with cost_clock(1) as fit_cost:
        model = fit_gp(cfg, meta, inputs, train_x, train_fields, train)
    with cost_clock(1) as predict_cost:
        for _ in range(PREDICTION_REPEATS):
            mean, std = model.predict(test_x)
    pred = {"gp": mean[0], **{k: v[0] for k, v in predictions(train_x, train_fields, test_x, model).items()}}
    network_cost = None
    if cfg.study.compare_model:
        pred["network"], network_cost = network_prediction(cfg, task, study_dir, meta, inputs, train)
    scores = score(pred, std[0], truth, meta.area_weight, inputs["score_labels"], inputs["score"])
    box = design_box(cfg.study.sweep, inputs["params"], inputs["transforms"])
    x_train = transform_params(train_x, inputs["params"], inputs["transforms"])
    x_test = transform_params(test_x, inputs["params"], inputs["transforms"])
    first = inputs["score"][0]
    gm_truth = float(global_mean(truth[first], meta.area_weight))
    gm_pred = float(global_mean(mean[0, first], meta.area_weight))
    return {"held_out": task["held_out"], "kind": task["kind"], "train_runs": train,
            "params": dict(zip(inputs["params"], map(float, params[-1]))),
            "transforms": inputs["transforms"], "score_labels": inputs["score_labels"], **scores,
            "inside_envelope": bool(envelope_check(x_train, x_test, box)[0]),
            "envelope": "the sweep's design box" if box is not None else "training runs' box + one stratum",
            "mean_sigma_first_channel": float(global_mean(std[0, first], meta.area_weight)),
            "global_mean_first_channel": {"gcm": gm_truth, "gp": gm_pred},
            "gp": model.describe(),
            "cost": {"fit_cpu_s": fit_cost["cpu_s"], "fit_wall_s": fit_cost["wall_s"],
                     "predict_cpu_s": predict_cost["cpu_s"] / PREDICTION_REPEATS,
                     "predict_wall_core_s": predict_cost["wall_core_s"] / PREDICTION_REPEATS,
                     "network": network_cost}}


# ---------------------------------------------------------------------------- aggregate


def pooled(results: list[dict[str, Any]], key: str, label: str, method: str) -> float:
    """RMSE pooled over runs: sqrt of the mean of the squared per-run RMSEs (each run's grid weighs alike)."""
    return float(np.sqrt(np.mean([r[key][label][method] ** 2 for r in results])))


def twin_floor(results: list[dict[str, Any]], rmse: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The GCM's own time-mean floor per channel (RMSE twin − run pooled over the twin tasks, as the
    LOO RMSEs are pooled) and every method's LOO RMSE as a ratio to it; None without twins."""
    twins = sorted((r for r in results if r["kind"] == "twin"), key=lambda r: r["held_out"])
    if not twins:
        return {"twin_floor": None, "loo_ratio_to_twin_floor": None,
                "twin_floor_note": "no GCM twin run (study.climate_twins: 0)"}
    floor = {label: float(np.sqrt(np.mean([t["twin_rmse"][label] ** 2 for t in twins]))) for label in rmse}
    return {"twin_floor": floor,
            "loo_ratio_to_twin_floor": {label: {m: (v / floor[label] if floor[label] > 0 else None)
                                                for m, v in rmse[label].items()} for label in rmse},
            "twin_floor_note": f"{len(twins)} GCM twins ({', '.join(t['held_out'] for t in twins)}), instellation + "
                               f"{twins[0]['delta_instellation_W_m2']:g} W m-2, the same averaging window"}


def gcm_cost(sweep: Any, runs: list[str]) -> dict[str, Any]:
    """The GCM's own cost per run from each run's summary.json (CPU time; wall × cores beside)."""
    if not sweep:
        return {}
    cpu, wall_core, days = [], [], []
    for name in runs:
        path = Path(sweep) / name / "summary.json"
        if not path.is_file():
            continue
        s = json.loads(path.read_text())
        if s.get("cpu_time_s") is not None:
            cpu.append(float(s["cpu_time_s"]))
        if s.get("wall_time_s") is not None:
            wall_core.append(float(s["wall_time_s"]) * int((s.get("gcm") or {}).get("ncpus", 1)))
        days.append(float(s.get("simulated_days", np.nan)))
    return {"exoplasim_cpu_s_per_run": float(np.mean(cpu)) if cpu else None,
            "exoplasim_wall_core_s_per_run": float(np.mean(wall_core)) if wall_core else None,
            "simulated_days_per_run": float(np.mean(days)) if days else None, "runs_timed": len(cpu)}


def aggregate(results: list[dict[str, Any]], cfg: Any, study_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """climate.csv, climate_summary.json, summary.json (see the module doc)."""
    from astrohpc.analysis.equilibrium import equilibrium_rows
    from astrohpc.atomic_write import write_json, write_text
    from astrohpc.provenance import collect

    loo = sorted((r for r in results if r["kind"] == "loo"), key=lambda r: r["held_out"])
    outside = sorted((r for r in results if r["kind"] == "outside"), key=lambda r: r["held_out"])
    if not loo:
        raise ConfigError(f"{study_dir}: no leave-one-out task finished: nothing to aggregate")
    labels = loo[0]["score_labels"]
    methods = [m for m in METHODS if all(m in r["rmse"][labels[0]] for r in [*loo, *outside])]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["run", "kind", "channel", "method", "rmse", "bias", "pattern_correlation"])
    for r in [*loo, *outside]:
        for label in labels:
            for method in methods:
                writer.writerow([r["held_out"], r["kind"], label, method, f"{r['rmse'][label][method]:.6g}",
                                 f"{r['bias'][label][method]:.6g}", f"{r['corr'][label][method]:.6g}"])
    write_text(study_dir / "climate.csv", buffer.getvalue())

    rmse = {label: {m: pooled(loo, "rmse", label, m) for m in methods} for label in labels}
    ratio_nearest = {label: rmse[label]["gp"] / rmse[label]["nearest"] for label in labels}
    ratio_regression = {label: rmse[label]["gp"] / min(rmse[label]["linear"], rmse[label]["quadratic"])
                        for label in labels}
    coverage = {level: {label: float(np.mean([r[level][label] for r in loo])) for label in labels}
                for level in ("coverage68", "coverage95")}
    threshold = cfg.study.ood_std_factor * max(r["mean_sigma_first_channel"] for r in loo)
    verdicts = {r["held_out"]: {"kind": r["kind"], "inside_envelope": r["inside_envelope"],
                                "mean_sigma": r["mean_sigma_first_channel"],
                                "flagged": (not r["inside_envelope"]) or r["mean_sigma_first_channel"] > threshold}
                for r in [*loo, *outside]}
    cube = Path(loo[0]["task"]["cube"])
    equilibrium = equilibrium_rows(cube, window_days=float(cfg.study.average_days))
    gcm = gcm_cost(cfg.study.sweep, [r["held_out"] for r in loo])
    predict_cpu = float(np.mean([r["cost"]["predict_cpu_s"] for r in loo]))
    summary = {
        "n_runs": len(loo), "outside_runs": [r["held_out"] for r in outside],
        "average_days": cfg.study.average_days, "cube": str(cube),
        "loo_rmse": rmse, "loo_ratio_to_nearest": ratio_nearest,
        "loo_ratio_to_best_regression": ratio_regression,
        "loo_bias": {label: {m: float(np.mean([r["bias"][label][m] for r in loo])) for m in methods}
                     for label in labels},
        "loo_pattern_correlation": {label: {m: float(np.mean([r["corr"][label][m] for r in loo])) for m in methods}
                                    for label in labels},
        "coverage68": coverage["coverage68"], "coverage95": coverage["coverage95"],
        "crps": {label: float(np.mean([r["crps"][label] for r in loo])) for label in labels},
        "ood": {"sigma_threshold": threshold, "sigma_channel": labels[0], "verdicts": verdicts,
                "envelope": loo[0]["envelope"],
                "inside_unflagged_fraction": float(np.mean([not verdicts[r["held_out"]]["flagged"] for r in loo])),
                "outside_flagged": [verdicts[r["held_out"]]["flagged"] for r in outside]},
        "outside": {r["held_out"]: {"rmse": r["rmse"], "params": r["params"]} for r in outside},
        "equilibrium": equilibrium,
        "cost_s_per_prediction": predict_cpu,
        "cost_measure": "CPU time, process + children (getrusage), one prediction of every modelled field",
        **gcm,
        "speedup_cpu_vs_exoplasim_run": (gcm["exoplasim_cpu_s_per_run"] / predict_cpu
                                         if gcm.get("exoplasim_cpu_s_per_run") else None),
        "partial": bool(record.get("partial", False)),
        **twin_floor(results, rmse),
    }
    summary["export"] = str(export_final(cfg, cube, study_dir, threshold, labels[0]))
    prov = collect(cfg)
    summary.update(git=prov.get("git"), date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   host=prov.get("host"))
    write_json(study_dir / "climate_summary.json", summary)
    write_json(study_dir / "summary.json", {k: summary[k] for k in (
        "loo_rmse", "loo_ratio_to_nearest", "loo_ratio_to_best_regression", "coverage95", "coverage68", "n_runs",
        "cost_s_per_prediction", "exoplasim_cpu_s_per_run", "exoplasim_wall_core_s_per_run",
        "speedup_cpu_vs_exoplasim_run", "twin_floor", "loo_ratio_to_twin_floor", "ood", "export", "git", "date",
        "host")})
    return {"table": str(study_dir / "climate.csv"), "summary": str(study_dir / "climate_summary.json")}
