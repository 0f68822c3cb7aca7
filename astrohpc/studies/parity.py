"""GCM parity: a trained emulator against the GCM on runs it never saw, beside the baselines and the
GCM's own noise floor. One task per held-out run.

A task:
1. rolls the emulator out from the GCM's initial state of the run over the whole run (float64
   states, correctors on, the GCM's own forcing fields), timing it (astrohpc.cost_clock: CPU time
   of the process and its children, and wall time × torch threads) at batch 1 and with
   `study.cost_batch` initial states at once; with `study.climate_model`, predicts the run's
   time means with the climate surrogate and times that too (batch 1 and cost_batch);
2. builds the five baselines from the training runs (astrohpc.studies.baselines, and the linear
   inverse model of astrohpc.studies.lim_baseline rolled out from the run's first state with its
   own forcing; its diagnostic channels are the training climatology's);
3. with `study.twin` and `study.sweep`, runs the GCM again for the same run with the instellation
   raised by `study.twin_delta_instellation_W_m2` (a twin differing by a perturbation far below
   anything physical) and converts it with the sweep's data settings: the twin's distance to the
   run is the floor no surrogate can beat; its ExoPlaSim cost per simulated day, measured here
   with the same clock (CPU time of the process and its children; wall time × gcm.ncpus), is the
   cost the surrogates' is compared with, measure by measure (`COST_MEASURES`);
4. scores every method against the GCM (astrohpc.studies.scores), per channel in physical units:
   daily states pooled over days 1..T−1 (RMSE, bias), the time mean over the same days (RMSE,
   bias, pattern correlation), and the RMSE at each lead day; plus the global-mean net TOA flux
   (ntr = rst + rlut, positive down) of the time means and the emulator's dry-air-mass drift. The
   GCM's flux is read from the sweep's cube of interval means (`gcm_means_toa`: every hour of the
   day averaged); the daily snapshots sample one hour of the day, so the snapshot figure is kept
   only beside the surrogate's, which has the same sampling;
5. flags the run as inside or outside the training envelope of planet parameters.

The runs are held-out runs of the training cube, or with `study.cube` runs of another cube (a
colleague's, converted separately) matched to the model's channels, units, grid and parameters
(astrohpc.studies.studied_cube); the baselines still come from the training runs, so the training
cube must be where the export recorded it. Every result, headline.json and summary.json record
the cube the runs came from (`cube`: path, cube_id, training_cube).

The aggregation writes parity.csv (run × method × channel), a headline table of selected
channels, each RMSE also as a ratio to the twin spread, and says which method wins per channel.
"""

from __future__ import annotations

import csv
import io
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrohpc.cost_clock import cost_clock
from astrohpc.data.cube import pick_channels
from astrohpc.errors import ConfigError, DataError
from astrohpc.studies import baselines as base
from astrohpc.studies.scores import global_mean, pattern_correlation, rmse_bias, rmse_by_lead

log = logging.getLogger(__name__)

METHODS = ("surrogate", "climate_surrogate", "persistence", "climatology", "nearest_run", "linear_regression", "lim")
HEADLINE = ("ts", "tas", "ps", "rlut", "rsut", "ta@0.5668", "ua@0.5668")


def _load(cfg: Any) -> tuple[Any, dict]:
    from astrohpc.train.export import load_exported

    if not cfg.study.model:
        raise ConfigError("study.model is not set: give the exported weights of a training run "
                          "(RUN_DIR/export/best.pt)")
    return load_exported(cfg.study.model)


def expand(cfg: Any) -> list[dict[str, Any]]:
    """One task per studied run: study.runs, default the export's test runs; with study.cube, that
    cube's runs (default all), matched to the model (astrohpc.studies.studied_cube). Another cube's
    runs need the training cube (the baselines) and, for the twin or the GCM's TOA flux, the sweep
    that produced them (checked run by run against the cube's planet parameters)."""
    from astrohpc.studies.studied_cube import check_sweep, study_tasks, training_cube

    tasks, info, cube = study_tasks(cfg.study)
    if cube is not None and cube.foreign:
        training_cube(info, BASELINES)
        if cfg.study.sweep:
            check_sweep(cfg.study.sweep, cube, [t["run"] for t in tasks])
        elif cfg.study.twin:
            raise ConfigError(f"study.twin on {cube.where} needs study.sweep: the sweep folder that produced its runs "
                              "(the twin reruns a run's task); set it, or study.twin=false")
    return tasks


BASELINES = "parity's baselines (climatology, nearest run, linear regression) come from its training runs"


class _Run:
    """A cube's view of its runs in the model's channels (physical, float64): the training cube's,
    by the export's channel plan, or another cube at `path` with its own `channels` of the model's
    (astrohpc.studies.studied_cube)."""

    def __init__(self, info: dict, meta: Any, path: Any = None, channels: Any = None):
        from astrohpc.data.cube import LazyCube

        self.info, self.meta = info, meta
        self.plan = info["plan"]
        self.channels = list(self.plan["cube_channels"] if channels is None else channels)
        self.cube = LazyCube(info["cube"] if path is None else path).prepare()

    def states(self, run: int) -> np.ndarray:
        steps = int(self.meta.time_count[run])
        return self.cube.read(run, 0, steps)[:, self.channels].astype(np.float64)

    def z(self, runs: list[int]) -> np.ndarray:
        return self.meta.normalized_params(self.info["param_norm"])[runs]

    def inputs(self, run: int, batch: int = 1) -> tuple[torch.Tensor, Any, Any]:
        from astrohpc.data.dataset import planet_params
        from astrohpc.physics.constants import PlanetConstants

        params = torch.as_tensor(self.z([run]), dtype=torch.float32).expand(batch, -1)
        static = None
        if self.plan["static"]:
            static = torch.as_tensor(np.stack([self.meta.static[n][run] for n in self.plan["static"]]),
                                     dtype=torch.float64)[None].expand(batch, -1, -1, -1)
        planet = PlanetConstants.from_run_params(
            {n: torch.full((batch,), float(v[run]), dtype=torch.float64) for n, v in planet_params(self.meta).items()})
        return params, static, planet


def emulate(model: Any, truth: np.ndarray, params: Any, static: Any, planet: Any, batch: int = 1,
            steps: int | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """Roll `model` out from truth[0] with the GCM's forcings: ([T, C, lat, lon], timing).
    batch > 1 repeats the initial state (cost measurement; the first member is returned)."""
    steps = truth.shape[0] - 1 if steps is None else steps
    forcing = model.forcing.cpu().numpy()
    x = torch.as_tensor(truth[0], dtype=torch.float64)[None].expand(batch, -1, -1, -1).contiguous()
    out = [truth[0]]
    with torch.no_grad(), cost_clock(torch.get_num_threads()) as timing:
        for t in range(1, steps + 1):
            f = torch.as_tensor(truth[t][forcing], dtype=torch.float64)[None].expand(batch, -1, -1, -1)
            x = model(x, f, params, static, planet)
            out.append(x[0].numpy().copy())
    return np.stack(out), {**timing, "steps": steps, "batch": batch}


CLIMATE_COST_REPEATS = 5
# The two cost measures (astrohpc.cost_clock), each compared only with itself: key stem -> label.
COST_MEASURES = {"cpu": "CPU time of the process and its children",
                 "wall_core": "wall time × cores held (ExoPlaSim: gcm.ncpus ranks; surrogates: torch threads)"}


def climate_prediction(path: str, meta: Any, run: int, names: list[str], cost_batch: int = 0,
                       cube: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The exported climate surrogate's time-mean fields of `run` in the emulator's channels
    `names` [C, lat, lon] (physical; its Gaussian head's mean; correctors applied), from the run's
    planet parameters (and its first spin-up days when the model reads them) — a run of its
    training cube, or of `cube` (a StudiedCube not the training cube: matched to this model too) —
    and its cost: with
    cost_batch >= 1, the CPU time, wall time and wall × cores of one prediction (astrohpc.cost_clock;
    inputs in memory, the heads in SI
    units and the correctors included, the mean of `CLIMATE_COST_REPEATS` calls after one warm-up)
    at batch 1 and at batch cost_batch (the run's inputs repeated), plus the states it reads."""
    from astrohpc.data.runs import RunDataset
    from astrohpc.models.objective import batch_planet
    from astrohpc.models.uncertainty import GaussianPrediction
    from astrohpc.train.export import load_exported

    model, info = load_exported(path)
    if info["config"]["model"]["task"] != "climate":
        raise ConfigError(f"study.climate_model {path} is a {info['config']['model']['task']} model; give the "
                          "export of a model with task: climate")
    plan = info["plan"]
    missing = [n for n in names if n not in plan["channel_names"]]
    if missing:
        raise DataError(f"study.climate_model {path} does not predict {', '.join(missing[:5])}; train it on the "
                        "emulator's variables")
    if cube is not None and cube.foreign:
        from astrohpc.studies.studied_cube import match_export

        ds = RunDataset(cube.path, model.spinup_steps, channels=match_export(info, cube.meta, cube.where),
                        runs=[run], param_norm=info["param_norm"], static=list(plan["static"]))
    else:
        ds = RunDataset(info["cube"], model.spinup_steps, variables=list(plan["variables"]), runs=[run],
                        param_norm=info["param_norm"], static=bool(plan["static"]))
    try:
        item = torch.utils.data.default_collate([ds[0]])
    finally:
        ds.close()

    def predict(batch: dict[str, Any]) -> torch.Tensor:
        with torch.no_grad():
            out = model.physical(model(batch["params"], batch.get("spinup"), batch.get("static")))
            fields = out["datacube"]
            fields = fields.mean if isinstance(fields, GaussianPrediction) else fields
            planet = batch_planet(batch)
            if planet is not None:
                fields = model.correct(fields, batch.get("spinup"), batch.get("static"), planet)
        return fields

    fields = predict(item)
    index = [plan["channel_names"].index(n) for n in names]
    cost: dict[str, Any] = {"spinup_steps": int(model.spinup_steps)}
    if cost_batch >= 1:
        for label, batch in (("single", 1), ("batched", cost_batch)):
            repeated = _repeat(item, batch)
            predict(repeated)
            with cost_clock(torch.get_num_threads()) as clock:
                for _ in range(CLIMATE_COST_REPEATS):
                    predict(repeated)
            cost[label] = {k: clock[k] / CLIMATE_COST_REPEATS for k in ("wall_s", "cpu_s", "wall_core_s")}
            cost[label].update(batch=batch, cores=clock["cores"])
    return fields[0, index].double().numpy(), cost


def _repeat(item: Any, batch: int) -> Any:
    """A collated batch of one sample repeated `batch` times along its first dimension."""
    if isinstance(item, torch.Tensor):
        return item.expand(batch, *item.shape[1:]).contiguous() if item.dim() else item
    if isinstance(item, dict):
        return {k: _repeat(v, batch) for k, v in item.items()}
    if isinstance(item, list):
        return item * batch
    return item


def climate_cost(cost: dict[str, Any], days: float, interval_days: float,
                 gcm_per_day: dict[str, float] | None) -> dict[str, Any]:
    """The climate surrogate's cost against the GCM's for one run of `days` simulated days, in each
    of COST_MEASURES: `{m}_s_per_run_{label}` and `{m}_s_per_day_{label}` (run ÷ days), label single
    or batched; with the GCM's cost per day in the same measures ({m: s per day}), the speed-ups
    (`climate_speedups`)."""
    out: dict[str, Any] = {"days": days, "spinup_days": cost["spinup_steps"] * interval_days,
                           "batch": cost["batched"]["batch"], "cores": cost["batched"].get("cores")}
    for label in ("single", "batched"):
        for m in COST_MEASURES:
            per_run = cost[label][f"{m}_s"] / cost[label]["batch"]
            out[f"{m}_s_per_run_{label}"] = per_run
            out[f"{m}_s_per_day_{label}"] = per_run / days
    return climate_speedups(out, gcm_per_day)


def climate_speedups(cost: dict[str, Any], gcm_per_day: dict[str, float] | None) -> dict[str, Any]:
    """`cost` with speedup_{m}_single/_batched added for each measure m of COST_MEASURES the GCM's
    cost per day is known in: the GCM's cost of the run ÷ (the surrogate's per run + the GCM's for
    the spin-up days the surrogate reads), as tools/bench_models.py forms it; a measure against the
    same measure only."""
    from astrohpc.models.bench import climate_speedup

    point = lambda v: {"median": v, "min": v, "max": v, "n": 1}  # noqa: E731
    for m, gcm in (gcm_per_day or {}).items():
        if not gcm:
            continue
        for label in ("single", "batched"):
            ratio = climate_speedup(point(gcm), cost["days"], cost["spinup_days"],
                                    point(cost[f"{m}_s_per_run_{label}"]))
            if ratio is not None:
                cost[f"speedup_{m}_{label}"] = ratio["median"]
    return cost


def gcm_twin(cfg: Any, run_name: str, work: Path, delta: float, kind: str = "snapshots") -> tuple[Path, dict]:
    """Run the GCM twin of `run_name` (the sweep's task, instellation + delta) and convert its
    `kind` output ("snapshots" or "means") with the sweep's data settings."""
    from astrohpc.data.convert import convert_run_dirs
    from astrohpc.gcm.run import run_simulation
    from astrohpc.gcm.sweep import load_table, task_config

    sweep = Path(cfg.study.sweep)
    table = load_table(sweep)
    index = [i for i, t in enumerate(table["tasks"]) if Path(t["run_dir"]).name == run_name]
    if not index:
        raise DataError(f"{sweep}: no sweep task wrote run {run_name}; set study.sweep to the sweep of the cube")
    gcm_cfg, _point = task_config(table, sweep, index[0])
    gcm_cfg.planet.instellation_W_m2 = float(gcm_cfg.planet.instellation_W_m2) + delta
    summary = run_simulation(gcm_cfg, work / "twin")
    cube = convert_run_dirs([work / "twin"], work / "twin.h5", kind=kind, settings=gcm_cfg.data)
    return cube, summary


def _twin_states(cube: Path, names: list[str]) -> np.ndarray:
    from astrohpc.data.cube import LazyCube, read_meta

    meta = read_meta(cube)
    table = meta.channel_names
    missing = [n for n in names if n not in table]
    if missing:
        raise DataError(f"{cube}: the twin lacks channels {', '.join(missing[:5])}; convert it like the sweep")
    lazy = LazyCube(cube).prepare()
    try:
        states = lazy.read(0, 0, int(meta.time_count[0]))
    finally:
        lazy.close()
    return states[:, [table.index(n) for n in names]].astype(np.float64)


def _toa(fields: np.ndarray, names: list[str], area: np.ndarray) -> float | None:
    """Global-mean net TOA flux, W m-2, positive down (the planet gains energy): `ntr`, else
    rst + rlut (ExoPlaSim's signs: rst absorbed >= 0, rlut = -outgoing; docs/datacube.md)."""
    if "ntr" in names:
        net = fields[names.index("ntr")]
    elif "rst" in names and "rlut" in names:
        net = fields[names.index("rst")] + fields[names.index("rlut")]
    else:
        return None
    return float(global_mean(net, area))


def gcm_means_toa(sweep: str | None, run_name: str) -> tuple[float | None, str]:
    """The GCM's global-mean net TOA flux of `run_name`, W m-2, positive down, averaged over every
    record of the sweep's cube of interval means (each record a mean over gcm.means_interval_days,
    the diurnal cycle included), and where it came from; (None, why) when there is no such cube or
    run in it."""
    from astrohpc.analysis.cube_means import global_mean_series
    from astrohpc.data.cube import read_meta
    from astrohpc.gcm.manifest import DATACUBES

    if not sweep:
        return None, "no study.sweep, so no cube of interval means to read the GCM's flux from"
    path = Path(sweep) / DATACUBES["means"]
    if not path.is_file():
        return None, f"{path} not found (aggregate the sweep to convert its means)"
    meta = read_meta(path)
    if run_name not in meta.run_names:
        return None, f"{path} holds no run {run_name}"
    r, names = meta.run_names.index(run_name), meta.channel_names
    if "ntr" in names:
        series = global_mean_series(path, "ntr")[r]
    elif "rst" in names and "rlut" in names:
        series = global_mean_series(path, "rst")[r] + global_mean_series(path, "rlut")[r]
    else:
        return None, f"{path} has neither ntr nor rst and rlut"
    return float(np.mean(series[:int(meta.time_count[r])])), str(path)


def _dry_mass_drift(model: Any, first: np.ndarray, last: np.ndarray, static: Any, planet: Any) -> float | None:
    from astrohpc.physics.grid import global_mean as gm
    from astrohpc.physics.mass import column_dry_mass

    try:
        a = model.physics_state(torch.as_tensor(first)[None], static[:1] if static is not None else None)
        b = model.physics_state(torch.as_tensor(last)[None], static[:1] if static is not None else None)
        m0 = gm(column_dry_mass(a["ps"], a["hus"], model.grid, planet), model.grid)
        m1 = gm(column_dry_mass(b["ps"], b["hus"], model.grid, planet), model.grid)
    except KeyError:
        return None
    return float(((m1 - m0) / m0).reshape(-1)[0])


def run(task: dict[str, Any], cfg: Any, study_dir: Path) -> dict[str, Any]:
    from astrohpc.models.ood import ParameterEnvelope
    from astrohpc.studies.lim_baseline import fit_lim, lim_trajectory
    from astrohpc.studies.studied_cube import studied_cube, training_cube

    model, info = _load(cfg)
    cube = studied_cube(cfg.study, info, task.get("cube"))
    meta = cube.meta
    view = _Run(info, meta, cube.path, cube.channels)
    if cube.foreign:  # the baselines come from the training runs, in the training cube
        train_meta = training_cube(info, BASELINES)
        train_view = _Run(info, train_meta)
    else:
        train_meta, train_view = meta, view
    names = list(info["plan"]["channel_names"])
    units = [meta.units[c] for c in view.channels]
    run_index = meta.run_names.index(task["run"])
    train = [train_meta.run_names.index(n) for n in info["run_split"]["train"]]
    area = model.grid.area_weight.double().numpy()
    truth = view.states(run_index)
    params, static, planet = view.inputs(run_index)
    predicted, single = emulate(model, truth, params, static, planet)
    cost_steps = min(truth.shape[0] - 1, 5)
    bp, bs, bpl = view.inputs(run_index, cfg.study.cost_batch)
    _, batched = emulate(model, truth, bp, bs, bpl, batch=cfg.study.cost_batch, steps=cost_steps)

    train_states = {i: train_view.states(i) for i in train}
    train_means = np.stack([base.time_mean(s, 1) for s in train_states.values()])
    z_train, z_target = train_view.z(train), view.z([run_index])[0]
    nearest = train[base.nearest_run(z_train, z_target)]
    steps = truth.shape[0]
    near = train_states[nearest]
    if near.shape[0] < steps:
        raise DataError(f"nearest training run {train_meta.run_names[nearest]} has {near.shape[0]} states, "
                        f"{task['run']} {steps}: the baseline needs runs of equal length")
    climatology = base.climatology(train_means)
    lim = fit_lim(model, train_meta, info["param_norm"], train)
    fields = {"surrogate": predicted[1:], "persistence": base.persistence(truth[0])[None],
              "climatology": climatology[None], "nearest_run": near[1:steps],
              "linear_regression": base.linear_regression(z_train, train_means, z_target)[None],
              "lim": lim_trajectory(lim, model, truth, view.z([run_index]), climatology)}
    if cfg.study.climate_model:
        if Path(info["cube"]).resolve() != Path(read_export_cube(cfg.study.climate_model)).resolve():
            raise ConfigError("study.climate_model was trained on another cube than study.model; parity compares "
                              "both on the same held-out runs")
        predicted_mean, climate_timing = climate_prediction(cfg.study.climate_model, meta, run_index, names,
                                                            cfg.study.cost_batch, cube)
        fields["climate_surrogate"] = predicted_mean[None]
    gcm_cost = None
    if cfg.study.twin:
        if not cfg.study.sweep:
            raise ConfigError("study.twin needs study.sweep (the sweep folder of the cube) to rerun the GCM; "
                              "set it, or study.twin=false")
        with tempfile.TemporaryDirectory(dir=study_dir) as work:
            twin_cube, twin_summary = gcm_twin(cfg, task["run"], Path(work), cfg.study.twin_delta_instellation_W_m2)
            twin = _twin_states(twin_cube, names)
        if twin.shape[0] != steps:
            raise DataError(f"the twin of {task['run']} has {twin.shape[0]} states, the run {steps}")
        fields["gcm_twin"] = twin[1:]
        gcm_cost = {"cpu_s_per_day": twin_summary.get("cpu_seconds_per_simulated_day"),
                    "wall_core_s_per_day": twin_summary.get("core_seconds_per_simulated_day"),
                    "wall_s": twin_summary.get("wall_time_s"), "cores": twin_summary["gcm"]["ncpus"]}

    gcm_days, gcm_mean = truth[1:], base.time_mean(truth, 1)
    _save_maps(study_dir, task, names, units, gcm_mean, {m: f.mean(axis=0) for m, f in fields.items()}, model.grid)
    methods: dict[str, Any] = {}
    for name, f in fields.items():
        rmse, bias = rmse_bias(f, gcm_days, area)
        mean_f = f.mean(axis=0)
        m_rmse, m_bias = rmse_bias(mean_f, gcm_mean, area)
        lead = rmse_by_lead(np.broadcast_to(f, gcm_days.shape), gcm_days, area)
        methods[name] = {"daily_rmse": rmse.tolist(), "daily_bias": bias.tolist(), "mean_rmse": m_rmse.tolist(),
                         "mean_bias": m_bias.tolist(),
                         "pattern_corr": pattern_correlation(np.broadcast_to(mean_f, gcm_mean.shape), gcm_mean,
                                                             area).tolist(),
                         "rmse_by_lead": lead.tolist(), "toa_imbalance_W_m2": _toa(mean_f, names, area)}
    interval_days = float(np.diff(meta.time_days[run_index][:2])[0])
    cost: dict[str, Any] = {"surrogate_rollout_wall_s": single["wall_s"], "batch": cfg.study.cost_batch,
                            "gcm": gcm_cost, "torch_threads": torch.get_num_threads()}
    gcm_per_day = {m: gcm_cost[f"{m}_s_per_day"] for m in COST_MEASURES} if gcm_cost else None
    for m in COST_MEASURES:
        for label, t in (("single", single), ("batched", batched)):
            cost[f"surrogate_{m}_s_per_day_{label}"] = t[f"{m}_s"] / (t["steps"] * t["batch"] * interval_days)
            if gcm_per_day and gcm_per_day[m]:
                cost[f"speedup_{m}_{label}"] = gcm_per_day[m] / cost[f"surrogate_{m}_s_per_day_{label}"]
    if cfg.study.climate_model:
        cost["climate_surrogate"] = climate_cost(climate_timing, steps * interval_days, interval_days, gcm_per_day)
    gcm_toa, gcm_toa_source = gcm_means_toa(cfg.study.sweep, task["run"])
    envelope = ParameterEnvelope.fit(train_meta.param_matrix(list(info["param_norm"]["names"]))[train],
                                     list(info["param_norm"]["names"]))
    outside = envelope.outside(meta.param_matrix(list(info["param_norm"]["names"]))[[run_index]])[0]
    return {"run": task["run"], "cube": cube.provenance(), "channels": names, "units": units, "days": steps,
            "interval_days": interval_days, "nearest_run": train_meta.run_names[nearest],
            "outside_envelope": outside, "methods": methods,
            "gcm_toa_imbalance_W_m2": gcm_toa, "gcm_toa_source": gcm_toa_source,
            "gcm_toa_snapshots_W_m2": _toa(gcm_mean, names, area),
            "surrogate_dry_mass_drift": _dry_mass_drift(model, truth[0], predicted[-1], static, planet),
            "cost": cost}


def read_export_cube(path: str) -> str:
    from astrohpc.train.export import read_export

    return str(read_export(path)["cube"])


MAP_CHANNELS = ("ts", "tas", "rlut")


def _save_maps(study_dir: Path, task: dict, names: list[str], units: list[str], gcm_mean: np.ndarray,
               means: dict[str, np.ndarray], grid: Any) -> None:
    """Time-mean maps of a few channels (GCM and every method) for the report: CF NetCDF, maps.nc."""
    from astrohpc.studies.parity_maps import MAPS_FILE, maps_dataset, write_maps
    from astrohpc.studies.tasks import task_dir

    picks = [names.index(c) for c in MAP_CHANNELS if c in names]
    ds = maps_dataset([names[c] for c in picks], [units[c] for c in picks], gcm_mean[picks],
                      {m: np.broadcast_to(f, gcm_mean.shape)[picks] for m, f in means.items()},
                      grid.lat.double().numpy(), grid.lon.double().numpy(), {"run": task["run"]})
    write_maps(task_dir(study_dir, task["id"]) / MAPS_FILE, ds)


# ---------------------------------------------------------------------------- aggregation


def aggregate(results: list[dict[str, Any]], cfg: Any, study_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    """parity.csv (every run, method, channel), headline.csv, summary in the record."""
    from astrohpc.atomic_write import write_json, write_text

    rows = []
    for res in results:
        for method, m in res["methods"].items():
            twin = res["methods"].get("gcm_twin")
            for c, (name, unit) in enumerate(zip(res["channels"], res["units"])):
                row = {"run": res["run"], "outside_envelope": bool(res["outside_envelope"]), "method": method,
                       "channel": name, "units": unit, "daily_rmse": m["daily_rmse"][c],
                       "daily_bias": m["daily_bias"][c], "mean_rmse": m["mean_rmse"][c],
                       "mean_bias": m["mean_bias"][c], "pattern_corr": m["pattern_corr"][c]}
                if twin is not None:
                    spread_d, spread_m = twin["daily_rmse"][c], twin["mean_rmse"][c]
                    row["daily_rmse_over_twin"] = row["daily_rmse"] / spread_d if spread_d else None
                    row["mean_rmse_over_twin"] = row["mean_rmse"] / spread_m if spread_m else None
                rows.append(row)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(study_dir / "parity.csv", buffer.getvalue())

    # headline: per selected channel, the mean over runs of each method's daily and time-mean RMSE
    names = results[0]["channels"]
    picks = pick_channels(names, list(HEADLINE))
    methods = [m for m in (*METHODS, "gcm_twin") if all(m in r["methods"] for r in results)]
    headline = []
    for c in picks:
        row: dict[str, Any] = {"channel": names[c], "units": results[0]["units"][c]}
        for m in methods:
            row[f"{m} daily"] = float(np.mean([r["methods"][m]["daily_rmse"][c] for r in results]))
            row[f"{m} mean"] = float(np.mean([r["methods"][m]["mean_rmse"][c] for r in results]))
        baselines = [m for m in methods if m not in ("surrogate", "climate_surrogate", "gcm_twin")]
        best = min(baselines, key=lambda m: row[f"{m} daily"])
        row["best baseline (daily)"] = best
        row["surrogate beats it (daily)"] = row["surrogate daily"] < row[f"{best} daily"]
        best_mean = min(baselines, key=lambda m: row[f"{m} mean"])
        row["best baseline (mean)"] = best_mean
        row["surrogate beats it (mean)"] = row["surrogate mean"] < row[f"{best_mean} mean"]
        headline.append(row)
    cube = results[0].get("cube")  # every task scores runs of one cube (provenance)
    write_json(study_dir / "headline.json", {"partial": record.get("partial", False), "rows": headline,
                                            "runs": [r["run"] for r in results], "cube": cube})
    costs = [r["cost"] for r in results]
    summary = {
        "runs": [{"run": r["run"], "outside_envelope": r["outside_envelope"], "nearest_run": r["nearest_run"],
                  "days": r["days"], "gcm_toa_imbalance_W_m2": r["gcm_toa_imbalance_W_m2"],
                  "gcm_toa_source": r.get("gcm_toa_source"), "gcm_toa_snapshots_W_m2": r.get("gcm_toa_snapshots_W_m2"),
                  "surrogate_toa_imbalance_W_m2": r["methods"]["surrogate"]["toa_imbalance_W_m2"],
                  "surrogate_dry_mass_drift": r["surrogate_dry_mass_drift"]} for r in results],
        "cost_measures": COST_MEASURES, "torch_threads": costs[0].get("torch_threads"), "cube": cube,
    }
    gcm_per_day = {}
    for m in COST_MEASURES:  # medians over runs; each speed-up formed within one measure
        for label in ("single", "batched"):
            key = f"surrogate_{m}_s_per_day_{label}"
            summary[key] = float(np.median([c[key] for c in costs]))
        gcm = [c["gcm"][f"{m}_s_per_day"] for c in costs if c.get("gcm") and c["gcm"].get(f"{m}_s_per_day")]
        if gcm:
            gcm_per_day[m] = summary[f"gcm_{m}_s_per_day"] = float(np.median(gcm))
            for label in ("single", "batched"):
                summary[f"speedup_{m}_{label}"] = gcm_per_day[m] / summary[f"surrogate_{m}_s_per_day_{label}"]
    gcm_cores = [c["gcm"]["cores"] for c in costs if c.get("gcm")]
    if gcm_cores:
        summary["gcm_cores"] = gcm_cores[0]
    climate = [c["climate_surrogate"] for c in costs if c.get("climate_surrogate")]
    if climate:  # medians of the costs, and the speed-ups formed from them (as the emulator's above)
        keys = ["days", "spinup_days"] + [f"{m}_s_per_{u}_{b}" for m in COST_MEASURES for u in ("run", "day")
                                          for b in ("single", "batched")]
        summary["climate_surrogate"] = climate_speedups(
            {k: float(np.median([c[k] for c in climate])) for k in keys} | {"batch": climate[0]["batch"]},
            gcm_per_day)
    write_json(study_dir / "summary.json", summary)
    return {"table": str(study_dir / "parity.csv"), "headline": str(study_dir / "headline.json"),
            "summary": str(study_dir / "summary.json")}
