"""Calibration: are the surrogate's error bars right? One task per uncertainty method, each
trained here and scored on whole held-out runs, before and after σ-scaling.

The study config is a training config (`model:` and `train:` sections) plus `study.methods`
(default: every method the model can use). A task trains into STUDY/tasks/<id>/train/<method>-seed<s>
(resuming its own checkpoint when rerun), with model.uncertainty.method set to its method:

    gaussian     the heteroscedastic Gaussian head, trained with the NLL (task climate, transformer)
    mc_dropout   one model with dropout; model.unet/transformer.dropout is set to 0.1 when the base
                 config has none (the task and its result say so); model.uncertainty.samples passes
    ensemble     model.uncertainty.members models, seeds run.seed + i, combined as the equal-weight
                 mixture (astrohpc.models.uncertainty)

The run split is fixed at planning time (train.validation_runs / test_runs named in every task),
so the members of an ensemble share it. The exported best weights (lowest validation loss) give,
for every sample of the VALIDATION and of the TEST runs, a predictive mean and σ per channel in
physical units: the emulator's one-step forecast of every window (correctors on, as validation),
the climate surrogate's time-mean fields of every run (its datacube head). σ is floored at 1e-6
of the channel's training std (all members agreeing exactly is a point forecast; the floor keeps
the scores defined and the count is reported). The emulator scores the channels it steps: not
its forcings, nor channels that never changed in the data (which it keeps exactly).

The σ-scale (astrohpc.analysis.metrics.fit_sigma_scale, per channel, area-weighted) is fitted on
the validation runs only and scored on the test runs. A split without test runs is scored on its
validation runs and the result says so (`reported_on`: "validation", with a note): the after-
scaling numbers are then fitted and scored on the same runs.

Scores (astrohpc.analysis.metrics, pooled over samples and grid cells, area-weighted), of the
Gaussian N(mean, σ²) — for mc_dropout and ensemble the mixture's mean and σ:

    coverage68, coverage95   the share of obs inside the central 68 / 95 % interval
    crps, crps_clim, crpss   CRPS; that of the climatology forecast (mean and std of the training
                             runs: emulator, per cell over their daily states; climate, over their
                             time means — or one run's daily states when one run trains, noted);
                             skill 1 − crps/crps_clim
    ece, reliability         quantile calibration at the levels 0.05 … 0.95 (metrics.DEFAULT_LEVELS)
    nll, sharpness           Gaussian NLL; the mean σ

per selected channel (ts, tas, ps, rlut, ta nearest σ = 0.57; physical units) and pooled over every
scored channel in normalised units ((x − μ)/s with the model's training statistics; each channel
with its own σ-scale after scaling). The predictions are saved (STUDY/tasks/<id>/predictions.npz)
so every number can be recomputed.

The aggregation writes calibration.csv (method × channel × before/after) and calibration.json
(the same rows and the reliability curves) and notes the targets in the record: 95 % coverage
within 94–96 %, and the published ECE of 0.034 to compare with.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from astrohpc.data.cube import pick_channels
from astrohpc.errors import ConfigError, DataError

log = logging.getLogger(__name__)

METHODS = ("gaussian", "mc_dropout", "ensemble")
MC_DROPOUT_RATE = 0.1
SELECTED = ("ts", "tas", "ps", "rlut", "ta@0.57")
LEVEL_TOLERANCE = 0.05  # σ levels: "ta@0.57" matches the nearest ta level within this
POOLED = "all (normalised)"
SIGMA_FLOOR = 1e-6  # of the channel's training std
COVERAGE_TARGET = (0.94, 0.96)
PUBLISHED_ECE = 0.034
PREDICTIONS = "predictions.npz"
SCORES = ("coverage68", "coverage95", "crps", "crps_clim", "crpss", "ece", "nll", "sharpness")
CSV_COLUMNS = ("method", "channel", "units", "scaling", "sigma_scale", *SCORES, "reported_on", "partial")


# ---------------------------------------------------------------------------- methods and tasks


def valid_methods(model: Any) -> tuple[str, ...]:
    """The uncertainty methods the `model:` section can be trained with (see the module doc)."""
    if model.task == "climate" and model.architecture == "transformer":
        return METHODS
    return ("mc_dropout", "ensemble")


def chosen_methods(cfg: Any) -> list[str]:
    """study.methods (default: every valid one); ConfigError naming the valid ones."""
    m = cfg.model
    valid = valid_methods(m)
    wanted = list(cfg.study.methods) or list(valid)
    bad = [x for x in wanted if x not in valid]
    if bad:
        raise ConfigError(f"study.methods: {', '.join(bad)} not usable with model.task {m.task} and architecture "
                          f"{m.architecture}; valid here: {', '.join(valid)} (gaussian is the climate transformer's "
                          "head; an emulator's spread comes from MC dropout or an ensemble)")
    if m.task == "climate" and m.mode not in ("datacube", "joint"):
        raise ConfigError(f"model.mode {m.mode!r}: the calibration study scores the datacube head (mode: datacube "
                          "or joint)")
    if "ensemble" in wanted and m.uncertainty.members < 2:
        raise ConfigError("model.uncertainty.members must be >= 2 for the ensemble (one member has no spread)")
    if "mc_dropout" in wanted and m.uncertainty.samples < 2:
        raise ConfigError("model.uncertainty.samples must be >= 2 for MC dropout (one pass has no spread)")
    return wanted


def method_changes(method: str, model: Any) -> tuple[dict[str, Any], Optional[str]]:
    """The config changes that train `method` ({"model": {...}}) and a note on what was added."""
    model_changes: dict[str, Any] = {"uncertainty": {"method": method}}
    note = None
    if method == "mc_dropout" and getattr(model, model.architecture).dropout == 0:
        model_changes[model.architecture] = {"dropout": MC_DROPOUT_RATE}
        note = (f"model.{model.architecture}.dropout set to {MC_DROPOUT_RATE}: the base config has no dropout, "
                "which MC dropout needs")
    return {"model": model_changes}, note


def expand(cfg: Any) -> list[dict[str, Any]]:
    """One task per chosen method. The cube path and the run split are resolved here (where the
    study is planned), so array tasks may start anywhere and every member shares the split."""
    from astrohpc.data.cube import read_meta
    from astrohpc.data.split import split_runs
    from astrohpc.train.data import cube_path

    methods = chosen_methods(cfg)
    cube = cube_path(cfg).resolve()
    t = cfg.train
    split = split_runs(read_meta(cube).run_names, t.validation_runs, t.test_runs, t.validation_fraction,
                       cfg.run.seed)
    if not split.validation:
        raise ConfigError(f"the split of {cube} has no validation run: the σ-scale is fitted on validation runs; set "
                          "train.validation_runs (or validation_fraction > 0 with at least 2 non-test runs)")
    runs = split.describe()
    tasks = []
    for method in methods:
        changes, note = method_changes(method, cfg.model)
        count = cfg.model.uncertainty.members if method == "ensemble" else 1
        tasks.append({"method": method, "seeds": [cfg.run.seed + i for i in range(count)], "changes": changes,
                      "note": note, "cube": str(cube), "validation_runs": runs["validation"],
                      "test_runs": runs["test"]})
    return tasks


def task_config(task: dict[str, Any], cfg: Any, study_dir: Path, seed: int) -> Any:
    """The training config of one member of `task` (its run folder inside the study folder)."""
    from astrohpc.config import Config, deep_merge, from_dict, to_dict
    from astrohpc.studies.tasks import task_dir

    raw = deep_merge(to_dict(cfg), task["changes"])
    raw["run"] = {**raw["run"], "root": str(task_dir(study_dir, task["id"]) / "train"),
                  "name": f"{task['method']}-seed{seed}", "seed": int(seed)}
    raw["train"] = {**raw["train"], "cube": task["cube"], "validation_runs": list(task["validation_runs"]),
                    "test_runs": list(task["test_runs"])}
    return from_dict(Config, raw, source=f"calibration {task['method']} seed {seed}")


# ---------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Forecast:
    """Gaussian forecasts and what happened: mean, sigma (> 0), obs [N, C, lat, lon], one unit per
    channel (physical, or normalised when pooled)."""

    mean: np.ndarray
    sigma: np.ndarray
    obs: np.ndarray


class DatacubeHead(nn.Module):
    """A climate surrogate whose output is its datacube head in physical units (a tensor, or a
    GaussianPrediction): what astrohpc.models.uncertainty samples and mixes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, params: torch.Tensor, spinup: Optional[torch.Tensor], static: Optional[torch.Tensor]) -> Any:
        return self.model.physical(self.model(params, spinup, static))["datacube"]


def predictive(method: str, members: Sequence[nn.Module], inputs: tuple, samples: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, σ) of one batch, physical: the Gaussian head's, or the mixture of `samples` MC-dropout
    passes (masks drawn from `seed`; the global RNG is left as it was) or of the ensemble's members.
    members: emulator steppers or DatacubeHeads, in eval mode."""
    from astrohpc.models.uncertainty import GaussianPrediction, ensemble_predict, mc_dropout_predict

    if method == "gaussian":
        with torch.no_grad():
            out = members[0](*inputs)
        if not isinstance(out, GaussianPrediction):
            raise DataError("the gaussian method's model returned a point prediction: it was not trained with "
                            "model.uncertainty.method: gaussian")
    elif method == "mc_dropout":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = mc_dropout_predict(members[0], *inputs, samples=samples)
    else:
        out = ensemble_predict(members, *inputs)
    return out.mean, out.sigma


def predict_runs(method: str, models: Sequence[nn.Module], info: dict[str, Any], runs: Sequence[str], samples: int,
                 seed: int, batch_size: int = 4) -> Forecast:
    """The forecasts of the cube's `runs` (names) for every channel of the model's table, physical,
    float32 (see the module doc): [windows or runs, C, lat, lon]."""
    from torch.utils.data import DataLoader

    from astrohpc.data.cube import read_meta

    meta = read_meta(info["cube"])
    ids = [meta.run_names.index(r) for r in runs]
    plan = models[0].plan
    common = {"variables": list(plan.variables), "param_norm": info["param_norm"], "static": bool(plan.static)}
    model_cfg = info["config"]["model"]
    if model_cfg["task"] == "emulator":
        from astrohpc.data.dataset import WindowDataset
        from astrohpc.models.objective import batch_planet

        data: Any = WindowDataset(info["cube"], 1, 1, runs=ids, **common)
        members: list[nn.Module] = list(models)
        forcing = models[0].forcing

        def unpack(batch: dict) -> tuple[tuple, torch.Tensor]:
            truth = batch["target"][:, 0]
            return (batch["input"][:, -1], truth[:, forcing], batch["params"], batch.get("static"),
                    batch_planet(batch)), truth
    else:
        from astrohpc.data.runs import RunDataset

        data = RunDataset(info["cube"], model_cfg["spinup_steps"], runs=ids, **common)
        members = [DatacubeHead(m) for m in models]

        def unpack(batch: dict) -> tuple[tuple, torch.Tensor]:
            return (batch["params"], batch.get("spinup"), batch.get("static")), batch["mean"]
    means, sigmas, obs = [], [], []
    try:
        for i, batch in enumerate(DataLoader(data, batch_size=batch_size, shuffle=False)):
            inputs, truth = unpack(batch)
            mean, sigma = predictive(method, members, inputs, samples, seed + i)
            means.append(mean.float().numpy())
            sigmas.append(sigma.float().numpy())
            obs.append(truth.float().numpy())
    finally:
        data.close()
    return Forecast(np.concatenate(means), np.concatenate(sigmas), np.concatenate(obs))


def floor_sigma(sigma: np.ndarray, channel_std: np.ndarray) -> tuple[np.ndarray, int]:
    """σ [..., C, lat, lon] floored at SIGMA_FLOOR × channel_std [C], and how many were raised."""
    floor = (SIGMA_FLOOR * np.asarray(channel_std, np.float64))[:, None, None].astype(sigma.dtype)
    low = sigma < floor
    return np.where(low, floor, sigma), int(low.sum())


def climatology(info: dict[str, Any], channels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, str]:
    """The climatology forecast from the training runs: (mean, std [C, lat, lon] of the table's
    `channels`, physical, float64) and what it is (see the module doc)."""
    from astrohpc.data.cube import LazyCube, read_meta
    from astrohpc.studies.baselines import climatology_spread, pooled_climatology, read_time_means

    meta = read_meta(info["cube"])
    train = [meta.run_names.index(r) for r in info["run_split"]["train"]]
    cube_channels = [info["plan"]["cube_channels"][c] for c in channels]
    model_cfg = info["config"]["model"]
    k = model_cfg["spinup_steps"] if model_cfg["task"] == "climate" else 0
    if model_cfg["task"] == "climate" and len(train) > 1:
        mean, std = climatology_spread(read_time_means(info["cube"], train, cube_channels, k))
        return mean, std, f"mean and std over the {len(train)} training runs' time means"
    lazy = LazyCube(info["cube"]).prepare()
    try:
        states = [lazy.read(r, k, int(meta.time_count[r]) - k)[:, cube_channels] for r in train]
    finally:
        lazy.close()
    what = ("mean and std over the one training run's daily states (one training run: no spread of time "
            "means to take)" if model_cfg["task"] == "climate" else
            f"mean and std per cell over the daily states of the {len(states)} training run(s)")
    return (*pooled_climatology(states), what)


# ---------------------------------------------------------------------------- scores


def select_channels(names: Sequence[str], wanted: Sequence[str] = SELECTED) -> list[int]:
    """Indices of `wanted` in `names`, in the order of `wanted`: a name, or "var@level" matching
    the nearest level of var within LEVEL_TOLERANCE; those the model lacks are left out."""
    return pick_channels(list(names), list(wanted), LEVEL_TOLERANCE)


def score(forecast: Forecast, area: np.ndarray, clim_mean: np.ndarray, clim_sigma: np.ndarray,
          levels: Optional[np.ndarray] = None) -> dict[str, Any]:
    """The scores of the module doc, area-weighted over every sample and cell, with the
    reliability curve's observed frequencies at `levels` (default metrics.DEFAULT_LEVELS).
    clim_mean/clim_sigma broadcast against obs (e.g. [lat, lon] against [N, lat, lon])."""
    from astrohpc.analysis import metrics

    m, s, o = forecast.mean, forecast.sigma, forecast.obs
    curve = metrics.ece_regression(m, s, o, levels, weights=area)
    crps = metrics.crps_gaussian(m, s, o, weights=area)
    crps_clim = metrics.crps_gaussian(clim_mean, clim_sigma, o, weights=area)
    try:
        crpss: Optional[float] = metrics.crps_skill_score(crps, crps_clim)
    except ValueError:  # a climatology with CRPS 0 (a field that never varies): no skill to speak of
        crpss = None
    return {"coverage68": metrics.coverage(m, s, o, 0.68, weights=area),
            "coverage95": metrics.coverage(m, s, o, 0.95, weights=area),
            "crps": crps, "crps_clim": crps_clim, "crpss": crpss, "ece": curve.ece,
            "nll": metrics.gaussian_nll(m, s, o, weights=area),
            "sharpness": metrics.sharpness(s, weights=area, statistic="mean"),
            "reliability": curve.observed.tolist()}


def fit_scales(validation: Forecast, area: np.ndarray) -> np.ndarray:
    """Per channel, the σ-scale minimising the validation NLL (metrics.fit_sigma_scale): [C]."""
    from astrohpc.analysis.metrics import fit_sigma_scale

    return np.array([fit_sigma_scale(validation.mean[:, c], validation.sigma[:, c], validation.obs[:, c],
                                     weights=area) for c in range(validation.mean.shape[1])])


def normalised(forecast: Forecast, mean: np.ndarray, std: np.ndarray) -> Forecast:
    """A physical forecast in normalised units, (x − mean)/std per channel ([C] each)."""
    mu, sd = np.asarray(mean, np.float64)[:, None, None], np.asarray(std, np.float64)[:, None, None]
    return Forecast((forecast.mean - mu) / sd, forecast.sigma / sd, (forecast.obs - mu) / sd)


def calibrate(validation: Forecast, test: Optional[Forecast], area: np.ndarray, names: Sequence[str],
              units: Sequence[str], norm_mean: np.ndarray, norm_std: np.ndarray, clim_mean: np.ndarray,
              clim_sigma: np.ndarray, levels: Optional[np.ndarray] = None,
              selected: Sequence[str] = SELECTED) -> dict[str, Any]:
    """Fit the σ-scales on `validation`; score `test` (or, with None, `validation` itself, said in
    "reported_on") before and after scaling, per selected channel and pooled in normalised units.
    Forecasts [N, C, lat, lon] physical; clim_mean/clim_sigma [C, lat, lon]; norm_* [C].
    Returns {"sigma_scale": [C], "reported_on", "rows": [{channel, units, scaling, sigma_scale,
    scores…, reliability}]}."""
    scales = fit_scales(validation, area)
    target = test if test is not None else validation
    rows = []
    for c in select_channels(names, selected):
        for scaling, factor in (("before", 1.0), ("after", float(scales[c]))):
            one = Forecast(target.mean[:, c], target.sigma[:, c] * factor, target.obs[:, c])
            rows.append({"channel": names[c], "units": units[c], "scaling": scaling, "sigma_scale": factor,
                         **score(one, area, clim_mean[c], clim_sigma[c], levels)})
    z = normalised(target, norm_mean, norm_std)
    mu, sd = np.asarray(norm_mean, np.float64)[:, None, None], np.asarray(norm_std, np.float64)[:, None, None]
    z_clim_mean, z_clim_sigma = (clim_mean - mu) / sd, clim_sigma / sd
    for scaling, factors in (("before", np.ones_like(scales)), ("after", scales)):
        pooled = Forecast(z.mean, z.sigma * factors[:, None, None], z.obs)
        rows.append({"channel": POOLED, "units": "normalised", "scaling": scaling, "sigma_scale": None,
                     **score(pooled, area, z_clim_mean, z_clim_sigma, levels)})
    return {"sigma_scale": scales, "reported_on": "test" if test is not None else "validation", "rows": rows}


# ---------------------------------------------------------------------------- one task


def _save_predictions(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    from astrohpc.atomic_write import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return path


def _train_members(task: dict[str, Any], cfg: Any, study_dir: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Train (or resume, or find finished) every member: their exported weights and summaries."""
    from astrohpc.train.trainer import train

    exports, summaries = [], []
    for seed in task["seeds"]:
        summary = train(task_config(task, cfg, study_dir, seed))
        if summary["status"] != "finished":
            raise RuntimeError(f"training of {task['method']} seed {seed} stopped ({summary['status']}) at step "
                               f"{summary['step']}/{summary['total_steps']}; rerun the task to resume it")
        chosen = summary["exports"].get("best") or summary["exports"].get("last")
        if chosen is None:
            raise DataError(f"{summary['run_dir']}: the training exported no weights")
        exports.append(chosen)
        summaries.append({k: summary.get(k) for k in ("status", "step", "epoch", "best", "wall_s", "run_dir",
                                                      "exports")})
    return exports, summaries


def run(task: dict[str, Any], cfg: Any, study_dir: Path) -> dict[str, Any]:
    from astrohpc.analysis.metrics import DEFAULT_LEVELS
    from astrohpc.data.cube import read_meta
    from astrohpc.studies.tasks import task_dir
    from astrohpc.train.export import load_exported

    exports, summaries = _train_members(task, cfg, study_dir)
    loaded = [load_exported(e) for e in exports]
    models, info = [m for m, _ in loaded], loaded[0][1]
    model, plan = models[0], models[0].plan
    meta = read_meta(info["cube"])
    names_all = list(plan.describe()["channel_names"])
    scored = list(plan.predicted)
    if info["config"]["model"]["task"] == "emulator":
        keeps = model.normalizer.diff_std[0, :, 0, 0].numpy() == 0
        scored = [c for c in scored if not keeps[c]]
    names = [names_all[c] for c in scored]
    units = [meta.units[plan.cube_channels[c]] for c in scored]
    norm_mean = model.normalizer.mean[0, scored, 0, 0].numpy()
    norm_std = model.normalizer.std[0, scored, 0, 0].numpy()
    area = model.grid.area_weight.double().numpy()
    samples, seed = cfg.model.uncertainty.samples, task["seeds"][0]

    floored, forecasts = {}, {}
    for part, runs in (("validation", task["validation_runs"]), ("test", task["test_runs"])):
        if not runs:
            continue
        f = predict_runs(task["method"], models, info, runs, samples, seed)
        sigma, floored[part] = floor_sigma(f.sigma[:, scored], norm_std)
        forecasts[part] = Forecast(f.mean[:, scored], sigma, f.obs[:, scored])
    clim_mean, clim_sigma, clim_what = climatology(info, scored)
    clim_sigma, _ = floor_sigma(clim_sigma[None], norm_std)
    clim_sigma = clim_sigma[0]
    outcome = calibrate(forecasts["validation"], forecasts.get("test"), area, names, units, norm_mean, norm_std,
                        clim_mean, clim_sigma, DEFAULT_LEVELS)

    arrays = {"channels": np.array(names), "units": np.array(units), "area": area, "norm_mean": norm_mean,
              "norm_std": norm_std, "clim_mean": clim_mean, "clim_sigma": clim_sigma,
              "sigma_scale": outcome["sigma_scale"], "levels": DEFAULT_LEVELS}
    for part, f in forecasts.items():
        arrays.update({f"{part}_mean": f.mean, f"{part}_sigma": f.sigma, f"{part}_obs": f.obs})
    path = _save_predictions(task_dir(study_dir, task["id"]) / PREDICTIONS, arrays)

    notes = [task["note"]] if task.get("note") else []
    if "test" not in forecasts:
        notes.append("no test runs in the split: scored on the validation runs the σ-scale was fitted on, so the "
                     "after-scaling numbers are optimistic")
    cells = {part: int(np.prod(f.sigma.shape)) for part, f in forecasts.items()}
    return {"method": task["method"], "seeds": task["seeds"], "members": len(models),
            "samples": samples if task["method"] == "mc_dropout" else None, "notes": notes,
            "split": info["run_split"], "fitted_on": "validation", "reported_on": outcome["reported_on"],
            "channels": names, "excluded_channels": [n for i, n in enumerate(names_all) if i not in scored],
            "sigma_scale": dict(zip(names, outcome["sigma_scale"].tolist())),
            "sigma_floored": {part: floored[part] / cells[part] for part in forecasts},
            "climatology": clim_what, "levels": DEFAULT_LEVELS.tolist(), "rows": outcome["rows"],
            "predictions": str(path), "train_summaries": summaries}


# ---------------------------------------------------------------------------- aggregation


def aggregate(results: list[dict[str, Any]], cfg: Any, study_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """calibration.csv and calibration.json (see the module doc); targets and verdicts in the record."""
    from astrohpc.atomic_write import write_json, write_text

    partial = bool(record.get("partial", False))
    order = {m: i for i, m in enumerate(METHODS)}
    results = sorted(results, key=lambda r: order.get(r["method"], len(order)))
    rows = [{"method": r["method"], **{k: row.get(k) for k in ("channel", "units", "scaling", "sigma_scale",
                                                                 *SCORES)},
             "reported_on": r["reported_on"], "partial": partial} for r in results for row in r["rows"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    write_text(study_dir / "calibration.csv", buffer.getvalue())

    record["targets"] = {"coverage95": list(COVERAGE_TARGET), "published_ece": PUBLISHED_ECE,
                         "note": "95 % coverage within 94–96 % after σ-scaling, pooled over channels; ECE to compare "
                                 f"with the published {PUBLISHED_ECE} (quantile calibration, levels 0.05–0.95)"}
    verdicts = {}
    for r in results:
        pooled = {row["scaling"]: row for row in r["rows"] if row["channel"] == POOLED}
        after = pooled["after"]
        verdicts[r["method"]] = {
            "reported_on": r["reported_on"], "coverage95_before": pooled["before"]["coverage95"],
            "coverage95_after": after["coverage95"],
            "coverage95_within_target": COVERAGE_TARGET[0] <= after["coverage95"] <= COVERAGE_TARGET[1],
            "ece_before": pooled["before"]["ece"], "ece_after": after["ece"],
            "ece_at_or_below_published": after["ece"] <= PUBLISHED_ECE}
    record["verdicts"] = verdicts
    on_validation = [r["method"] for r in results if r["reported_on"] != "test"]
    if on_validation:
        record["warning"] = (f"{', '.join(on_validation)}: no test runs, scored on the validation runs the σ-scale "
                             "was fitted on (the after-scaling numbers are optimistic)")
        log.warning("%s", record["warning"])
    methods = {r["method"]: {
        "reported_on": r["reported_on"], "fitted_on": r["fitted_on"], "notes": r["notes"], "split": r["split"],
        "members": r["members"], "samples": r["samples"], "climatology": r["climatology"],
        "excluded_channels": r["excluded_channels"], "sigma_floored": r["sigma_floored"],
        "sigma_scale": {row["channel"]: row["sigma_scale"] for row in r["rows"] if row["scaling"] == "after"
                        and row["channel"] != POOLED},
        "curves": {row["channel"]: {} for row in r["rows"]}} for r in results}
    for r in results:
        for row in r["rows"]:
            methods[r["method"]]["curves"][row["channel"]][row["scaling"]] = {"observed": row["reliability"],
                                                                             "ece": row["ece"]}
    write_json(study_dir / "calibration.json", {
        "partial": partial, "levels": results[0]["levels"], "pooled": POOLED, "targets": record["targets"],
        "verdicts": verdicts, "methods": methods, "rows": rows})
    return {"table": str(study_dir / "calibration.csv"), "json": str(study_dir / "calibration.json")}
