"""Calibration: are the surrogate's error bars right? One task per uncertainty method, scored on
whole held-out runs, before and after σ-scaling.

The study config is a training config (`model:` and `train:` sections) plus `study.methods`
(default: every method the model can use) and, for the emulator the parity study uses,
`study.model` (its export, RUN_DIR/export/best.pt): then that export's model and train sections,
run seed and run split replace the config's (model.uncertainty.members and samples stay the
study's), so the calibrated models are the parity emulator's configuration. A task trains into
STUDY/tasks/<id>/train/<method>-seed<s> (resuming its own checkpoint when rerun), with
model.uncertainty.method set to its method:

    gaussian     the heteroscedastic Gaussian head, trained with the NLL (task climate, transformer)
    mc_dropout   one model with dropout; model.unet/transformer.dropout is set to 0.1 when the base
                 config has none (the task and its result say so); model.uncertainty.samples passes.
                 With study.model: the export itself when it has dropout, else one model of its
                 configuration with dropout added
    ensemble     model.uncertainty.members models, seeds run.seed + i; with study.model the export
                 itself is the first member (seed run.seed) and only the others are trained

The run split is fixed at planning time (train.validation_runs / test_runs named in every task),
so the members of an ensemble share it. The exported best weights (lowest validation loss) give,
for the VALIDATION and the TEST runs, forecasts per channel in physical units:

    emulator   rollouts as the parity study makes them (astrohpc.studies.parity.emulate): from each
               run's initial GCM state over the whole run, one trajectory per member or MC-dropout
               sample; a sample is one (run, lead) pair, lead 1 … T−1 output intervals — the leads
               the parity study reports (every day pooled, as its 'daily', and each lead)
    climate    the time-mean fields of every run (its datacube head)

The Gaussian summary of a forecast is its mean and σ: the head's, or the mean and population std of
the members / samples. σ is floored at 1e-6 of the channel's training std (all members agreeing
exactly is a point forecast; the floor keeps the scores defined and the count is reported). The
emulator scores the channels it steps: not its forcings, nor channels that never changed in the
data (which it keeps exactly).

The σ-scale (astrohpc.analysis.metrics.fit_sigma_scale, per channel, area-weighted, every lead
pooled) is fitted on the validation runs only and scored on the test runs; for an ensemble it
scales the members' spread about their mean. A split without test runs is scored on its
validation runs and the result says so (`reported_on`: "validation", with a note): the after-
scaling numbers are then fitted and scored on the same runs.

Scores (astrohpc.analysis.metrics, pooled over samples and grid cells, area-weighted). Of the
Gaussian N(mean, σ²):

    coverage68, coverage95   the share of obs inside the central 68 / 95 % interval
    crps, crps_clim, crpss   CRPS; that of the climatology forecast (mean and std of the training
                             runs: emulator, per cell over their daily states; climate, over their
                             time means — or one run's daily states when one run trains, noted);
                             skill 1 − crps/crps_clim
    ece, reliability         quantile calibration at the levels 0.05 … 0.95 (metrics.DEFAULT_LEVELS)
    nll, sharpness           Gaussian NLL; the mean σ

and, for MC dropout and the ensemble, of the members themselves (`ensemble_score`): crps_fair,
coverage68_ens / coverage95_ens (capped at the (M − 1)/(M + 1) an ensemble of M resolves),
ece_ens and the rank histogram — per selected channel (ts, tas, ps, rlut, ta nearest σ = 0.57;
physical units) at each lead group (`lead_groups`: all leads, the first, the last), and the
Gaussian summary pooled over every scored channel in normalised units ((x − μ)/s with the
model's training statistics; each channel with its own σ-scale after scaling). The predictions
(and the members of the selected channels) are saved (STUDY/tasks/<id>/predictions.npz) so every
number can be recomputed.

With `study.cube` another cube than the training cube, its runs (`study.runs`, default all) are
scored in place of the test runs: matched to the model's channels, units, grid and parameters
(astrohpc.studies.studied_cube; at planning with study.model, else when a task runs), while the
σ-scale is still fitted on the training cube's validation runs and the climatology taken from its
training runs. Every result says which cube and runs it scored (`scored_cube`, `scored_runs`).

The aggregation writes calibration.csv (method × channel × before/after × lead) and
calibration.json (the same rows with the rank histograms, and the reliability curves) and notes
the targets in the record: 95 % coverage within 94–96 %, and the published ECE of 0.034 to
compare with.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

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
ALL_LEADS, TIME_MEAN = "all leads", "time mean"
SIGMA_FLOOR = 1e-6  # of the channel's training std
COVERAGE_TARGET = (0.94, 0.96)
PUBLISHED_ECE = 0.034
PREDICTIONS = "predictions.npz"
SCORES = ("coverage68", "coverage95", "crps", "crps_clim", "crpss", "ece", "nll", "sharpness")
ENSEMBLE_SCORES = ("members", "ensemble_max_level", "crps_fair", "coverage68_ens", "coverage95_ens", "ece_ens")
CSV_COLUMNS = ("method", "channel", "units", "scaling", "sigma_scale", "lead", *SCORES, *ENSEMBLE_SCORES,
               "reported_on", "partial")


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


def studied_config(cfg: Any) -> tuple[Any, Optional[dict[str, Any]]]:
    """With study.model (the exported emulator the parity study uses): `cfg` with that export's
    model and train sections (this config's uncertainty members and samples kept), and the export's
    record; without it: `cfg` and None."""
    from astrohpc.config import Config, deep_merge, from_dict, to_dict
    from astrohpc.train.export import read_export

    if not cfg.study.model:
        return cfg, None
    info = read_export(cfg.study.model)
    trained = info["config"]
    ours = cfg.model.uncertainty
    model = deep_merge(trained["model"], {"uncertainty": {"members": ours.members, "samples": ours.samples}})
    raw = {**to_dict(cfg), "model": model, "train": {**trained["train"], "cube": str(info["cube"])}}
    raw["run"] = {**raw["run"], "seed": int(trained["run"]["seed"])}
    return from_dict(Config, raw, source=f"calibration of {cfg.study.model}"), info


def expand(cfg: Any) -> list[dict[str, Any]]:
    """One task per chosen method. The cube path and the run split are resolved here (where the
    study is planned), so array tasks may start anywhere and every member shares the split. With
    study.model, the export's configuration, split and weights are used (see the module doc)."""
    from astrohpc.data.cube import read_meta
    from astrohpc.data.split import split_runs
    from astrohpc.train.data import cube_path

    cfg, export = studied_config(cfg)
    methods = chosen_methods(cfg)
    cube = cube_path(cfg).resolve()
    t = cfg.train
    if export is not None:
        runs = {k: list(v) for k, v in export["run_split"].items()}
    else:
        runs = split_runs(read_meta(cube).run_names, t.validation_runs, t.test_runs, t.validation_fraction,
                          cfg.run.seed).describe()
    if not runs["validation"]:
        raise ConfigError(f"the split of {cube} has no validation run: the σ-scale is fitted on validation runs; set "
                          "train.validation_runs (or validation_fraction > 0 with at least 2 non-test runs)")
    scored = scored_elsewhere(cfg, export, cube)
    tasks = []
    for method in methods:
        changes, note = method_changes(method, cfg.model)
        count = cfg.model.uncertainty.members if method == "ensemble" else 1
        seeds = [cfg.run.seed + i for i in range(count)]
        task = {"method": method, "seeds": seeds, "changes": changes, "note": note, "cube": str(cube),
                "validation_runs": runs["validation"], "test_runs": runs["test"], "reuse": {}, **scored}
        if export is not None:
            task["base"] = {"model": to_plain(cfg.model), "train": to_plain(cfg.train)}
            if note is None:  # the export itself is a member (the ensemble's first, or the dropout model)
                task["reuse"] = {str(seeds[0]): str(Path(cfg.study.model).resolve())}
            else:
                task["note"] = f"{note}; the studied export has none, so one model of its configuration was trained"
        tasks.append(task)
    return tasks


def scored_elsewhere(cfg: Any, export: Optional[dict[str, Any]], training: Path) -> dict[str, Any]:
    """With study.cube another cube than the training cube `training`: {"score_cube": its resolved
    path, "score_runs": study.runs (default all its runs)} — the runs scored in place of the test
    runs; else {}. With study.model the cube is matched to that export now; else to the trained
    members' layout when a task runs (astrohpc.studies.studied_cube)."""
    from astrohpc.data.cube import read_meta
    from astrohpc.studies.studied_cube import StudiedCube, same_cube, studied_cube, studied_runs

    if not cfg.study.cube:
        return {}
    if export is not None:
        cube = studied_cube(cfg.study, export)
    else:
        path = Path(cfg.study.cube)
        if not path.is_file():
            raise DataError(f"study.cube {path}: no such cube; give a cube of the runs to score, converted with the "
                            "training cube's data settings")
        meta = read_meta(path, stats=False)
        cube = StudiedCube(path, meta, [], not same_cube(meta, read_meta(training, stats=False)))
    if not cube.foreign:  # the training cube itself: its split's test runs, as without study.cube
        return {}
    return {"score_cube": str(cube.path.resolve()), "score_runs": studied_runs(cfg.study, export or {}, cube)}


def to_plain(section: Any) -> dict[str, Any]:
    """A config section as a plain dict (for a task's JSON)."""
    import dataclasses

    return dataclasses.asdict(section)


def task_config(task: dict[str, Any], cfg: Any, study_dir: Path, seed: int) -> Any:
    """The training config of one member of `task` (its run folder inside the study folder)."""
    from astrohpc.config import Config, deep_merge, from_dict, to_dict
    from astrohpc.studies.tasks import task_dir

    raw = deep_merge(deep_merge(to_dict(cfg), task.get("base") or {}), task["changes"])
    raw["run"] = {**raw["run"], "root": str(task_dir(study_dir, task["id"]) / "train"),
                  "name": f"{task['method']}-seed{seed}", "seed": int(seed)}
    raw["train"] = {**raw["train"], "cube": task["cube"], "validation_runs": list(task["validation_runs"]),
                    "test_runs": list(task["test_runs"])}
    return from_dict(Config, raw, source=f"calibration {task['method']} seed {seed}")


# ---------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Forecast:
    """Forecasts and what happened: mean, sigma (> 0), obs [N, C, lat, lon], one unit per channel
    (physical, or normalised when pooled). members: {channel index: [M, N, lat, lon]} — the members
    or MC-dropout samples themselves, for the channels scored as an ensemble (None: a Gaussian
    head, or not kept). lead: [N] the forecast lead in days of each sample (None: time means)."""

    mean: np.ndarray
    sigma: np.ndarray
    obs: np.ndarray
    members: Optional[dict[int, np.ndarray]] = None
    lead: Optional[np.ndarray] = None


class DatacubeHead(nn.Module):
    """A climate surrogate whose output is its datacube head in physical units (a tensor, or a
    GaussianPrediction): what astrohpc.models.uncertainty samples and mixes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, params: torch.Tensor, spinup: Optional[torch.Tensor], static: Optional[torch.Tensor]) -> Any:
        return self.model.physical(self.model(params, spinup, static))["datacube"]


def predictive(method: str, members: Sequence[nn.Module], inputs: tuple, samples: int,
               seed: int) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """(mean, σ, draws) of one batch, physical: the Gaussian head's (draws None), or of the
    `samples` MC-dropout passes (masks drawn from `seed`; the global RNG is left as it was) or the
    ensemble's members — draws [M, B, ...], mean and σ (population std) over them.
    members: DatacubeHeads, in eval mode."""
    from astrohpc.models.uncertainty import GaussianPrediction, ensemble_samples, mc_dropout_samples

    if method == "gaussian":
        with torch.no_grad():
            out = members[0](*inputs)
        if not isinstance(out, GaussianPrediction):
            raise DataError("the gaussian method's model returned a point prediction: it was not trained with "
                            "model.uncertainty.method: gaussian")
        return out.mean, out.sigma, None
    if method == "mc_dropout":
        generator = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            draws = mc_dropout_samples(members[0], *inputs, samples=samples, generator=generator)
    else:
        draws = ensemble_samples(members, *inputs, generator=torch.Generator().manual_seed(seed))
    return draws.mean(dim=0), draws.std(dim=0, correction=0), draws


def predict_runs(method: str, models: Sequence[nn.Module], info: dict[str, Any], runs: Sequence[str], samples: int,
                 seed: int, keep: Sequence[int] = (), batch_size: int = 4, cube: Any = None) -> Forecast:
    """The climate surrogate's time-mean forecasts of the training cube's `runs` (names) — or of
    `cube`'s, a StudiedCube not the training cube (astrohpc.studies.studied_cube) — for every channel
    of the model's table, physical, float32: [runs, C, lat, lon]; the draws of the table's channels
    `keep` as `members` (MC dropout and the ensemble)."""
    from torch.utils.data import DataLoader

    from astrohpc.data.cube import read_meta
    from astrohpc.data.runs import RunDataset

    plan = models[0].plan
    spinup = info["config"]["model"]["spinup_steps"]
    if cube is not None and cube.foreign:
        ids = [cube.meta.run_names.index(r) for r in runs]
        data = RunDataset(cube.path, spinup, channels=cube.channels, runs=ids, param_norm=info["param_norm"],
                          static=list(plan.static))
    else:
        meta = read_meta(info["cube"])
        ids = [meta.run_names.index(r) for r in runs]
        data = RunDataset(info["cube"], spinup, variables=list(plan.variables), runs=ids,
                          param_norm=info["param_norm"], static=bool(plan.static))
    members = [DatacubeHead(m) for m in models]
    means, sigmas, obs, draws = [], [], [], []
    try:
        for i, batch in enumerate(DataLoader(data, batch_size=batch_size, shuffle=False)):
            mean, sigma, drawn = predictive(method, members, (batch["params"], batch.get("spinup"),
                                                              batch.get("static")), samples, seed + i)
            means.append(mean.float().numpy())
            sigmas.append(sigma.float().numpy())
            obs.append(batch["mean"].float().numpy())
            if drawn is not None:
                draws.append(drawn[:, :, list(keep)].float().numpy())
    finally:
        data.close()
    kept = None
    if draws:
        stacked = np.concatenate(draws, axis=1)
        kept = {c: stacked[:, :, k] for k, c in enumerate(keep)}
    return Forecast(np.concatenate(means), np.concatenate(sigmas), np.concatenate(obs), kept)


def _trajectories(method: str, models: Sequence[nn.Module], samples: int, seed: int, truth: np.ndarray,
                  inputs: tuple) -> Iterator[np.ndarray]:
    """Each member's (or MC-dropout sample's) rollout [T, C, lat, lon] from truth[0], in turn."""
    from astrohpc.models.uncertainty import dropout_active
    from astrohpc.studies.parity import emulate

    if method == "mc_dropout":
        with torch.random.fork_rng(devices=[]), dropout_active(models[0]):
            torch.manual_seed(seed)
            for _ in range(samples):
                yield emulate(models[0], truth, *inputs)[0]
    else:
        for member in models:
            member.eval()
            yield emulate(member, truth, *inputs)[0]


def rollout_runs(method: str, models: Sequence[nn.Module], info: dict[str, Any], runs: Sequence[str], samples: int,
                 seed: int, scored: Sequence[int], keep: Sequence[int], cube: Any = None) -> Forecast:
    """The emulator's forecasts as the parity study makes them: rolled out from each run's initial
    GCM state over the whole run (astrohpc.studies.parity.emulate: float64 states, correctors on, the
    GCM's forcings), one trajectory per ensemble member or per MC-dropout sample (masks drawn from
    `seed` for the whole trajectory). Samples are the (run, lead) pairs, lead 1 … T−1 output
    intervals, in days; mean and σ (population std) over the trajectories of the table's `scored`
    channels [N, C, lat, lon]; the trajectories of the table's channels `keep` as `members`. The runs
    are the training cube's, or `cube`'s (a StudiedCube not the training cube)."""
    from astrohpc.data.cube import read_meta
    from astrohpc.studies.parity import _Run

    if cube is not None and cube.foreign:
        meta, view = cube.meta, _Run(info, cube.meta, cube.path, cube.channels)
    else:
        meta = read_meta(info["cube"])
        view = _Run(info, meta)
    scored, keep = list(scored), list(keep)
    means, sigmas, obs, kept, leads = [], [], [], [], []
    for name in runs:
        run = meta.run_names.index(name)
        truth = view.states(run)
        params, static, planet = view.inputs(run)
        interval = float(np.diff(meta.time_days[run][:2])[0])
        total = np.zeros((truth.shape[0] - 1, len(scored), *truth.shape[2:]))
        square = np.zeros_like(total)
        trajectories = []
        for path in _trajectories(method, models, samples, seed, truth, (params, static, planet)):
            x = path[1:, scored]
            total += x
            square += x * x
            trajectories.append(path[1:, keep].astype(np.float32))
        count = len(trajectories)
        mean = total / count
        means.append(mean.astype(np.float32))
        sigmas.append(np.sqrt(np.maximum(square / count - mean * mean, 0.0)).astype(np.float32))
        obs.append(truth[1:, scored].astype(np.float32))
        kept.append(np.stack(trajectories))
        leads.append(np.arange(1, truth.shape[0]) * interval)
    members = np.concatenate(kept, axis=1)
    return Forecast(np.concatenate(means), np.concatenate(sigmas), np.concatenate(obs),
                    {c: members[:, :, k] for k, c in enumerate(keep)}, np.concatenate(leads))


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
    """A physical forecast in normalised units, (x − mean)/std per channel ([C] each); lead kept,
    members not."""
    mu, sd = np.asarray(mean, np.float64)[:, None, None], np.asarray(std, np.float64)[:, None, None]
    return Forecast((forecast.mean - mu) / sd, forecast.sigma / sd, (forecast.obs - mu) / sd, lead=forecast.lead)


def ensemble_score(members: np.ndarray, obs: np.ndarray, area: np.ndarray,
                   levels: Optional[np.ndarray] = None) -> dict[str, Any]:
    """The members scored as an ensemble (astrohpc.analysis.metrics): fair CRPS, coverage of the
    members' central 68 / 95 % intervals (an ensemble of M resolves levels up to (M − 1)/(M + 1),
    `ensemble_max_level`), ECE of their empirical quantiles and the rank histogram. members
    [M, N, lat, lon], obs [N, lat, lon]."""
    from astrohpc.analysis import metrics

    m = members.shape[0]
    return {"members": m, "ensemble_max_level": (m - 1) / (m + 1),
            "crps_fair": metrics.crps_ensemble(members, obs, weights=area),
            "coverage68_ens": metrics.coverage_ensemble(members, obs, 0.68, weights=area),
            "coverage95_ens": metrics.coverage_ensemble(members, obs, 0.95, weights=area),
            "ece_ens": metrics.ece_ensemble(members, obs, levels, weights=area).ece,
            "rank_histogram": metrics.rank_histogram(members, obs, weights=area).tolist()}


def lead_groups(lead: Optional[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """The samples each row pools: every lead ("all leads", parity's 'daily'), the first lead and
    the last (parity's lead plot's ends); a time-mean forecast has one group ("time mean")."""
    if lead is None:
        return [(TIME_MEAN, slice(None))]
    lead = np.asarray(lead)
    groups = [(ALL_LEADS, np.ones(lead.shape, bool))]
    for day in sorted({float(lead.min()), float(lead.max())}):
        groups.append((f"day {day:g}", lead == day))
    return groups


def calibrate(validation: Forecast, test: Optional[Forecast], area: np.ndarray, names: Sequence[str],
              units: Sequence[str], norm_mean: np.ndarray, norm_std: np.ndarray, clim_mean: np.ndarray,
              clim_sigma: np.ndarray, levels: Optional[np.ndarray] = None,
              selected: Sequence[str] = SELECTED) -> dict[str, Any]:
    """Fit the σ-scales on `validation` (every sample, all leads pooled); score `test` (or, with
    None, `validation` itself, said in "reported_on") before and after scaling, per selected channel
    in physical units at each lead group (`lead_groups`) — as a Gaussian N(mean, σ²) and, where the
    forecast keeps its members, as an ensemble (after scaling: the members' spread about their mean
    times the factor) — and pooled over every channel in normalised units (Gaussian, all leads).
    Forecasts [N, C, lat, lon] physical; clim_mean/clim_sigma [C, lat, lon]; norm_* [C].
    Returns {"sigma_scale": [C], "reported_on", "rows": [{channel, units, scaling, sigma_scale, lead,
    scores…, reliability}]}."""
    scales = fit_scales(validation, area)
    target = test if test is not None else validation
    rows = []
    for c in select_channels(names, selected):
        for scaling, factor in (("before", 1.0), ("after", float(scales[c]))):
            for lead, pick in lead_groups(target.lead):
                one = Forecast(target.mean[pick, c], target.sigma[pick, c] * factor, target.obs[pick, c])
                row = {"channel": names[c], "units": units[c], "scaling": scaling, "sigma_scale": factor, "lead": lead,
                       **score(one, area, clim_mean[c], clim_sigma[c], levels)}
                if target.members is not None and c in target.members:
                    x = target.members[c][:, pick].astype(np.float64)
                    centre = x.mean(axis=0)
                    row.update(ensemble_score(centre + factor * (x - centre), target.obs[pick, c], area, levels))
                rows.append(row)
    z = normalised(target, norm_mean, norm_std)
    mu, sd = np.asarray(norm_mean, np.float64)[:, None, None], np.asarray(norm_std, np.float64)[:, None, None]
    z_clim_mean, z_clim_sigma = (clim_mean - mu) / sd, clim_sigma / sd
    pooled_lead = lead_groups(target.lead)[0][0]
    for scaling, factors in (("before", np.ones_like(scales)), ("after", scales)):
        pooled = Forecast(z.mean, z.sigma * factors[:, None, None], z.obs)
        rows.append({"channel": POOLED, "units": "normalised", "scaling": scaling, "sigma_scale": None,
                     "lead": pooled_lead, **score(pooled, area, z_clim_mean, z_clim_sigma, levels)})
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
        reused = (task.get("reuse") or {}).get(str(seed))
        if reused is not None:  # the studied export itself (study.model): not trained again
            exports.append(reused)
            summaries.append({"status": "reused", "exports": {"best": reused}, "seed": seed})
            continue
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
    from astrohpc.studies.studied_cube import studied_cube, training_cube
    from astrohpc.studies.tasks import task_dir
    from astrohpc.train.export import load_exported

    exports, summaries = _train_members(task, cfg, study_dir)
    loaded = [load_exported(e) for e in exports]
    models, info = [m for m, _ in loaded], loaded[0][1]
    model, plan = models[0], models[0].plan
    elsewhere = None  # study.cube: its runs scored in place of the test runs
    if task.get("score_cube"):
        elsewhere = studied_cube(cfg.study, info, task["score_cube"])
        training_cube(info, "the calibration's climatology and σ-scale come from its training and validation runs")
    meta = read_meta(info["cube"])
    names_all = list(plan.describe()["channel_names"])
    scored = list(plan.predicted)
    emulator = info["config"]["model"]["task"] == "emulator"
    if emulator:
        keeps = model.normalizer.diff_std[0, :, 0, 0].numpy() == 0
        scored = [c for c in scored if not keeps[c]]
    names = [names_all[c] for c in scored]
    units = [meta.units[plan.cube_channels[c]] for c in scored]
    norm_mean = model.normalizer.mean[0, scored, 0, 0].numpy()
    norm_std = model.normalizer.std[0, scored, 0, 0].numpy()
    area = model.grid.area_weight.double().numpy()
    samples, seed = cfg.model.uncertainty.samples, task["seeds"][0]
    keep = select_channels(names)  # the channels scored as an ensemble too: their members are kept
    floored, forecasts = {}, {}
    parts = [("validation", task["validation_runs"], None),
             ("test", task["score_runs"], elsewhere) if elsewhere is not None else ("test", task["test_runs"], None)]
    for part, runs, cube in parts:
        if not runs:
            continue
        if emulator:
            f = rollout_runs(task["method"], models, info, runs, samples, seed, scored, [scored[c] for c in keep],
                             cube)
            sigma, floored[part] = floor_sigma(f.sigma, norm_std)
            members = None if f.members is None else {c: f.members[scored[c]] for c in keep}
            forecasts[part] = Forecast(f.mean, sigma, f.obs, members, f.lead)
        else:
            f = predict_runs(task["method"], models, info, runs, samples, seed, [scored[c] for c in keep], cube=cube)
            sigma, floored[part] = floor_sigma(f.sigma[:, scored], norm_std)
            members = None if f.members is None else {c: f.members[scored[c]] for c in keep}
            forecasts[part] = Forecast(f.mean[:, scored], sigma, f.obs[:, scored], members)
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
        if f.lead is not None:
            arrays[f"{part}_lead_days"] = f.lead
        if f.members is not None:  # [M, N, K, lat, lon] of the channels `member_channels` (indices into channels)
            arrays[f"{part}_members"] = np.stack([f.members[c] for c in keep], axis=2)
    arrays["member_channels"] = np.asarray(keep if forecasts["validation"].members is not None else [], int)
    path = _save_predictions(task_dir(study_dir, task["id"]) / PREDICTIONS, arrays)

    notes = [task["note"]] if task.get("note") else []
    if elsewhere is not None:
        notes.append(f"scored on {len(task['score_runs'])} run(s) of study.cube {elsewhere.path} (another cube than "
                     "the training cube) in place of the test runs; the σ-scale fitted on the training cube's "
                     "validation runs")
    if "test" not in forecasts:
        notes.append("no test runs in the split: scored on the validation runs the σ-scale was fitted on, so the "
                     "after-scaling numbers are optimistic")
    cells = {part: int(np.prod(f.sigma.shape)) for part, f in forecasts.items()}
    target = forecasts.get("test") or forecasts["validation"]
    return {"method": task["method"], "seeds": task["seeds"], "members": len(models),
            "studied_model": cfg.study.model, "reused": sorted((task.get("reuse") or {}).values()),
            "forecast": ("rollouts from each run's initial GCM state over the whole run, as the parity study "
                         "(one trajectory per member or MC-dropout sample)" if emulator
                         else "the time means of each run"),
            "leads_days": None if target.lead is None else sorted({float(x) for x in target.lead}),
            "samples": samples if task["method"] == "mc_dropout" else None, "notes": notes,
            "split": info["run_split"], "fitted_on": "validation", "reported_on": outcome["reported_on"],
            "scored_cube": elsewhere.provenance() if elsewhere is not None else
            {"path": str(Path(info["cube"]).resolve()), "cube_id": meta.cube_id, "training_cube": True},
            "scored_runs": list(task["score_runs"]) if elsewhere is not None else
            list(task["test_runs"] or task["validation_runs"]),
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
    rows = [{"method": r["method"], **{k: row.get(k) for k in ("channel", "units", "scaling", "sigma_scale", "lead",
                                                                 *SCORES, *ENSEMBLE_SCORES, "rank_histogram")},
             "reported_on": r["reported_on"], "partial": partial} for r in results for row in r["rows"]]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n", extrasaction="ignore")
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
        "studied_model": r.get("studied_model"), "reused": r.get("reused", []), "forecast": r.get("forecast"),
        "scored_cube": r.get("scored_cube"), "scored_runs": r.get("scored_runs"),
        "leads_days": r.get("leads_days"),
        "excluded_channels": r["excluded_channels"], "sigma_floored": r["sigma_floored"],
        "sigma_scale": {row["channel"]: row["sigma_scale"] for row in r["rows"] if row["scaling"] == "after"
                        and row["channel"] != POOLED},
        "curves": {row["channel"]: {} for row in r["rows"]}} for r in results}
    for r in results:
        pooled_lead = next(row["lead"] for row in r["rows"] if row["channel"] == POOLED)
        for row in r["rows"]:  # the curves of every lead pooled (the channel rows' first lead group)
            if row.get("lead", pooled_lead) == pooled_lead:
                methods[r["method"]]["curves"][row["channel"]][row["scaling"]] = {
                    "observed": row["reliability"], "ece": row["ece"], "rank_histogram": row.get("rank_histogram")}
    write_json(study_dir / "calibration.json", {
        "partial": partial, "levels": results[0]["levels"], "pooled": POOLED, "targets": record["targets"],
        "verdicts": verdicts, "methods": methods, "rows": rows})
    return {"table": str(study_dir / "calibration.csv"), "json": str(study_dir / "calibration.json")}
