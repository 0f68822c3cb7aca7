"""Scoring on any cube (`study.cube`): parity, rollout and calibration studies of a tiny emulator
trained on the real smoke cube, scoring the runs of a second cube converted separately from real
ExoPlaSim run folders, its channels in reverse order: the held-out run (1300 W m-2) again, and a
new run (1330 W m-2) whose folder bears the training run's name.

Checked: the same physical run scores exactly as it does in the training cube (the parity study's
own loop run here on the training cube; the rollout study on both cubes); the new run's
persistence and climatology recomputed from ExoPlaSim's NetCDF with xarray and Gauss-Legendre
weights; the cube recorded in every output; the rollout study needs no training cube; and one
clear error each for a channel missing, units that differ, another grid, another output interval,
a parameter missing, a training run of the training cube, a gone training cube, a twin without
the runs' sweep and a sweep that did not produce the runs.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from gcm_smoke_fixture import cached_smoke_run

from astrohpc.config import Config, from_dict, load_config
from astrohpc.data.convert import convert_run_dirs
from astrohpc.data.cube import read_meta
from astrohpc.errors import ConfigError, DataError
from astrohpc.studies.execute import aggregate_study, plan_study, run_local
from astrohpc.studies.scores import rmse_bias
from astrohpc.studies.tasks import read_result, task_dir

REPO = Path(__file__).resolve().parents[2]
NEW = ("planet.instellation_W_m2=1330",)  # a third real run (test_calibration's too: cached once)


def _data_settings(reverse: bool = True, drop: tuple[str, ...] = ()):
    """configs/data/exoplasim.yaml's settings, variables reversed (another channel order) or some dropped."""
    data = load_config(REPO / "configs" / "data" / "exoplasim.yaml").data
    variables = [v for v in data.variables if v not in drop]
    return replace(data, variables=list(reversed(variables)) if reverse else variables)


@pytest.fixture(scope="module")
def trained(physics_cube, tmp_path_factory):
    """(export, training cube): a tiny U-Net emulator with dropout (what MC dropout reuses) and both
    correctors, trained on run 0 of a copy of the smoke cube; run 1 (1300 W m-2) its validation run."""
    from astrohpc.train.trainer import train

    root = tmp_path_factory.mktemp("foreign-train")
    cube = root / "cube" / "physics.h5"
    cube.parent.mkdir()
    for src in (physics_cube, physics_cube.with_suffix(".stats.h5")):
        shutil.copy(src, cube.parent / src.name)
    names = read_meta(cube).run_names
    cfg = from_dict(Config, {
        "run": {"root": str(root), "name": "em", "seed": 1},
        "model": {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1, "dropout": 0.1},
                  "physics": {"correctors": ["humidity", "dry_mass"]}},
        "train": {"cube": str(cube), "validation_runs": [names[1]], "epochs": 1, "batch_size": 2,
                  "checkpoint_every": 0, "log_every": 1, "threads": 1}}, source="test")
    train(cfg)
    return root / "em" / "export" / "last.pt", cube


@pytest.fixture(scope="module")
def foreign(trained, smoke_gcm_runs, tmp_path_factory):
    """(cube, the run folders): the held-out run under its own name and the new run in a folder named
    like the training run, converted together with the variables in reverse order."""
    names = read_meta(trained[1]).run_names
    root = tmp_path_factory.mktemp("foreign-cube")
    held, new = smoke_gcm_runs[1], root / names[0]
    assert held.name == names[1]
    shutil.copytree(cached_smoke_run(NEW), new)
    return convert_run_dirs([held, new], root / "foreign.h5", settings=_data_settings()), [held, new]


def _study(root, name, export, **study):
    return from_dict(Config, {"run": {"root": str(root), "name": name},
                              "study": {"model": str(export), "twin": False, **study}}, source="test")


def _gauss_area(nlat: int, nlon: int) -> np.ndarray:
    """ExoPlaSim's Gaussian grid cell areas [lat, lon] from numpy's Gauss-Legendre weights (south to north)."""
    _, weights = np.polynomial.legendre.leggauss(nlat)
    return np.repeat(weights[:, None] / (weights.sum() * nlon), nlon, axis=1)


def _netcdf_ts(run_dir: Path) -> np.ndarray:
    """ts [time, lat, lon] of a run's daily snapshots, read with xarray, south to north."""
    with xr.open_dataset(run_dir / "output" / "exoplasim_snapshot.nc", decode_times=False) as ds:
        return ds["ts"].sortby("lat").values.astype(np.float64)


def test_parity_on_a_second_cube(trained, foreign, smoke_gcm_runs, tmp_path):
    import torch

    from astrohpc.data.cube import LazyCube
    from astrohpc.data.dataset import planet_params
    from astrohpc.physics.constants import PlanetConstants
    from astrohpc.studies.parity import emulate
    from astrohpc.train.export import load_exported

    export, training = trained
    cube, (_, new_dir) = foreign
    names, meta = read_meta(training).run_names, read_meta(cube)
    assert meta.channel_names != read_meta(training).channel_names  # another layout: matched, not copied
    folder = plan_study("parity", _study(tmp_path, "parity", export, cube=str(cube)))
    tasks = json.loads((folder / "study.json").read_text())["tasks"]
    # every run of the cube — the one named like the training run too: another cube, so held out
    assert [t["run"] for t in tasks] == [names[1], names[0]]
    assert all(t["cube"] == str(cube.resolve()) for t in tasks)
    assert [s for _, s, _ in run_local(folder)] == ["finished", "finished"]
    held, new = read_result(folder, 0), read_result(folder, 1)
    provenance = {"path": str(cube.resolve()), "cube_id": meta.cube_id, "training_cube": False}
    assert held["cube"] == new["cube"] == provenance
    assert held["nearest_run"] == new["nearest_run"] == names[0]  # the training run, from the training cube

    # the held-out run converted separately scores as in the training cube: its inputs built here from the
    # training cube (parameters normalised with the export's own param_norm), rolled out by parity's loop
    model, info = load_exported(export)
    train_meta = read_meta(training)
    lazy = LazyCube(training).prepare()
    truth = lazy.read(1, 0, int(train_meta.time_count[1]))[:, info["plan"]["cube_channels"]].astype(np.float64)
    lazy.close()
    params = torch.as_tensor(train_meta.normalized_params(info["param_norm"])[[1]], dtype=torch.float32)
    static = torch.as_tensor(np.stack([train_meta.static[n][1] for n in info["plan"]["static"]]))[None]
    planet = PlanetConstants.from_run_params({n: torch.tensor([float(v[1])], dtype=torch.float64)
                                              for n, v in planet_params(train_meta).items()})
    predicted, _ = emulate(model, truth, params, static, planet)
    area = model.grid.area_weight.double().numpy()
    rmse, bias = rmse_bias(predicted[1:], truth[1:], area)
    assert held["channels"] == info["plan"]["channel_names"]
    np.testing.assert_allclose(held["methods"]["surrogate"]["daily_rmse"], rmse, rtol=1e-12)
    np.testing.assert_allclose(held["methods"]["surrogate"]["daily_bias"], bias, rtol=1e-12, atol=1e-12)
    persistence, _ = rmse_bias(truth[0][None], truth[1:], area)
    np.testing.assert_allclose(held["methods"]["persistence"]["daily_rmse"], persistence, rtol=1e-12)

    # the new run's baselines from ExoPlaSim's own files, read with xarray
    ts = held["channels"].index("ts")
    gcm, train_run = _netcdf_ts(new_dir), _netcdf_ts(smoke_gcm_runs[0])
    w = _gauss_area(*gcm.shape[1:])
    by_hand = np.sqrt((w * (gcm[1:] - gcm[0]) ** 2).sum() / (w.sum() * (len(gcm) - 1)))
    assert new["methods"]["persistence"]["daily_rmse"][ts] == pytest.approx(by_hand, rel=1e-6)
    climatology = train_run[1:].mean(axis=0)
    by_hand = np.sqrt((w * (climatology - gcm[1:].mean(axis=0)) ** 2).sum() / w.sum())
    assert new["methods"]["climatology"]["mean_rmse"][ts] == pytest.approx(by_hand, rel=1e-6)
    assert new["methods"]["surrogate"]["daily_rmse"][ts] != held["methods"]["surrogate"]["daily_rmse"][ts]

    record = aggregate_study(folder)
    for output in ("headline", "summary"):
        assert json.loads(Path(record["outputs"][output]).read_text())["cube"] == provenance
    assert f"Held-out runs {names[1]}, {names[0]} of {cube.resolve()} (another cube" in _report(tmp_path, folder)


def _report(root: Path, folder: Path) -> str:
    """The study's report section, as `astrohpc report` writes it."""
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.study_sections import add_study_section

    report = MarkdownReport(root / "report", "t")
    add_study_section(report, folder)
    return "".join(report.parts)


def test_rollout_study_on_a_second_cube_needs_no_training_cube(trained, foreign, tmp_path):
    export, training = trained
    cube, _ = foreign
    name = read_meta(training).run_names[1]
    settings = {"runs": [name], "rollout_steps": 8, "segment_steps": 4, "initial_conditions": 2}
    moved = training.with_name("moved.h5")
    training.rename(moved)  # exports are self-contained; another cube's rollouts read nothing else
    try:
        folder = plan_study("rollout", _study(tmp_path, "roll-foreign", export, cube=str(cube), **settings))
        assert [s for _, s, _ in run_local(folder)] == ["finished"]
    finally:
        moved.rename(training)
    same = plan_study("rollout", _study(tmp_path, "roll-training", export, **settings))
    assert [s for _, s, _ in run_local(same)] == ["finished"]
    a, b = read_result(folder, 0), read_result(same, 0)
    assert a["cube"]["path"] == str(cube.resolve()) and b["cube"]["training_cube"]
    for x, y in zip(a["members"], b["members"]):  # the same run, the same rollouts, the same scores
        assert x["member"] == y["member"] and x["ts_last_K"] == y["ts_last_K"]
        assert x["climatology_rmse_vs_gcm_run_mean"] == y["climatology_rmse_vs_gcm_run_mean"]
    with xr.open_dataset(a["netcdf"]) as ds_a, xr.open_dataset(b["netcdf"]) as ds_b:
        np.testing.assert_array_equal(ds_a["ts"].values, ds_b["ts"].values)
        assert ds_a.attrs["cube"] == str(cube) and ds_a.attrs["cube_id"] == read_meta(cube).cube_id
    summary = json.loads(Path(aggregate_study(folder)["outputs"]["summary"]).read_text())
    assert summary["cube"] == a["cube"]
    assert f"over runs {name} of {cube.resolve()} (another cube" in _report(tmp_path, folder)


def test_calibration_scores_a_second_cube_in_place_of_the_test_runs(trained, foreign, tmp_path):
    export, training = trained
    cube, _ = foreign
    names = read_meta(training).run_names
    cfg = from_dict(Config, {"run": {"root": str(tmp_path), "name": "calibration"},
                             "model": {"uncertainty": {"samples": 2}},
                             "study": {"model": str(export), "methods": ["mc_dropout"], "cube": str(cube)}},
                    source="test")
    folder = plan_study("calibration", cfg)
    task = json.loads((folder / "study.json").read_text())["tasks"][0]
    assert task["score_cube"] == str(cube.resolve()) and task["score_runs"] == [names[1], names[0]]
    assert task["test_runs"] == [] and task["reuse"]  # the export itself (it has dropout): nothing trained
    assert [s for _, s, _ in run_local(folder)] == ["finished"]
    result = read_result(folder, 0)
    assert result["reported_on"] == "test" and result["scored_runs"] == [names[1], names[0]]
    assert result["scored_cube"] == {"path": str(cube.resolve()), "cube_id": read_meta(cube).cube_id,
                                     "training_cube": False}
    assert any("study.cube" in note for note in result["notes"])
    saved = np.load(task_dir(folder, 0) / "predictions.npz")
    leads = int(read_meta(training).time_count[1]) - 1
    assert saved["test_mean"].shape[0] == 2 * leads
    # the validation run converted again is the first scored run: the same MC-dropout trajectories
    np.testing.assert_array_equal(saved["test_mean"][:leads], saved["validation_mean"])
    np.testing.assert_array_equal(saved["test_obs"][:leads], saved["validation_obs"])
    assert not np.array_equal(saved["test_obs"][leads:], saved["validation_obs"])
    summary = json.loads(Path(aggregate_study(folder)["outputs"]["json"]).read_text())
    assert summary["methods"]["mc_dropout"]["scored_cube"] == result["scored_cube"]


def _edited(cube: Path, into: Path, edit) -> Path:
    """A copy of `cube` with `edit(h5py.File)` applied (what a differently made cube would hold)."""
    shutil.copy(cube, into)
    with h5py.File(into, "r+") as f:
        edit(f)
    return into


def _one_line_error(kind, cfg, *fragments):
    with pytest.raises(kind) as caught:
        plan_study("parity", cfg)
    message = str(caught.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_bad_cubes_each_get_one_clear_error(trained, foreign, tmp_path):
    export, training = trained
    cube, (held, _) = foreign
    meta = read_meta(cube)

    def bad(path, *fragments):
        cfg = _study(tmp_path, path.stem, export, cube=str(path))
        return _one_line_error(DataError, cfg, f"study.cube {path}", *fragments)

    lacking = convert_run_dirs([held], tmp_path / "no-hus.h5", settings=_data_settings(drop=("hus",)))
    bad(lacking, "lacks the model's channel(s) hus@", "convert it with variable(s) hus")

    def kelvin_to_celsius(f):
        f["channels/units"][meta.channel("ts")] = "degC"
    bad(_edited(cube, tmp_path / "units.h5", kelvin_to_celsius), "units differ: ts in 'degC', the model's in 'K'",
        "reconvert")

    def shifted(f):
        f["lat"][...] = f["lat"][()] + 1.0
    bad(_edited(cube, tmp_path / "grid.h5", shifted), "is not the model's", "regrid")

    def twice_daily(f):
        f["time_days"][...] = f["time_days"][()] / 2
    bad(_edited(cube, tmp_path / "interval.h5", twice_daily), "[0.5] days apart, the model's 1 days")

    def no_instellation(f):
        del f["runs/params/instellation_W_m2"]
    bad(_edited(cube, tmp_path / "params.h5", no_instellation), "lacks the planet parameter(s) the model reads: "
        "instellation_W_m2 for every run")

    # the training cube named as study.cube (a copy keeps its cube_id): its training runs refused by name
    copy = shutil.copy(training, tmp_path / "copy.h5")
    name = read_meta(training).run_names[0]
    _one_line_error(ConfigError, _study(tmp_path, "copy", export, cube=str(copy), runs=[name]),
                    f"study.runs {name} were training runs", "held-out runs only")

    # another cube's runs are scored against the training runs: parity needs them
    moved = training.with_name("moved.h5")
    training.rename(moved)
    try:
        _one_line_error(DataError, _study(tmp_path, "gone", export, cube=str(cube)), str(training),
                        "training cube is gone", "baselines", "put it back")
    finally:
        moved.rename(training)

    # the GCM twin reruns the runs' own sweep: none given, or one that did not make them
    _one_line_error(ConfigError, _study(tmp_path, "twin", export, cube=str(cube), twin=True),
                    f"study.twin on study.cube {cube} needs study.sweep", "study.twin=false")
    sweep = _planned_sweep(tmp_path, [1300, 1330])
    _one_line_error(ConfigError, _study(tmp_path, "sweep", export, cube=str(cube), sweep=str(sweep)),
                    f"study.sweep {sweep} wrote no run {meta.run_names[0]}")


def _planned_sweep(root: Path, instellations: list[float]) -> Path:
    """A smoke sweep planned (not run) over instellations: its tasks name their runs task-0000 …"""
    from astrohpc.gcm.sweep import plan_sweep, write_plan

    points = "[" + ", ".join(f"{{planet.instellation_W_m2: {x}}}" for x in instellations) + "]"
    name = "sweep-" + "-".join(str(x) for x in instellations)
    gcm = load_config(REPO / "configs" / "gcm" / "smoke.yaml", [f"run.root={root}", f"run.name={name}",
                                                                 "sweep.design=list", f"sweep.points={points}"])
    plan = plan_sweep(gcm)
    write_plan(plan, gcm)
    return plan.sweep_dir


def test_the_sweep_must_have_made_the_runs(trained, smoke_gcm_runs, tmp_path):
    """A colleague's sweep names its runs task-0000 …: its cube is scored with its own sweep, checked
    run by run against the cube's planet parameters before any GCM runs."""
    export, _ = trained
    folders = [tmp_path / "runs" / "task-0000", tmp_path / "runs" / "task-0001"]
    shutil.copytree(smoke_gcm_runs[1], folders[0])
    shutil.copytree(cached_smoke_run(NEW), folders[1])
    cube = convert_run_dirs(folders, tmp_path / "colleague.h5", settings=_data_settings(reverse=False))
    wrong = _planned_sweep(tmp_path, [1300, 1320])
    _one_line_error(ConfigError, _study(tmp_path, "wrong", export, cube=str(cube), sweep=str(wrong), twin=True),
                    f"study.sweep {wrong}: its run task-0001 is not study.cube {cube}'s",
                    "instellation_W_m2 1320 in the sweep, 1330 in the cube")
    right = _planned_sweep(tmp_path, [1300, 1330])
    folder = plan_study("parity", _study(tmp_path, "right", export, cube=str(cube), sweep=str(right), twin=True))
    assert [t["run"] for t in json.loads((folder / "study.json").read_text())["tasks"]] == ["task-0000", "task-0001"]


def test_the_climate_surrogate_on_a_second_cube(trained, foreign, tmp_path):
    """Parity's climate surrogate and the calibration's time-mean forecasts of the held-out run read
    from the second cube (its first day too: spinup_steps 1, through the matched channels) equal
    those read from the training cube."""
    from astrohpc.studies.calibration import predict_runs
    from astrohpc.studies.parity import climate_prediction
    from astrohpc.studies.settings import StudySettings
    from astrohpc.studies.studied_cube import studied_cube
    from astrohpc.train.export import load_exported
    from astrohpc.train.trainer import train

    export, training = trained
    cube, _ = foreign
    names = read_meta(training).run_names
    train(from_dict(Config, {
        "run": {"root": str(tmp_path), "name": "clim", "seed": 1},
        "model": {"task": "climate", "architecture": "transformer", "mode": "datacube", "spinup_steps": 1,
                  "transformer": {"dim": 16, "depth": 1, "heads": 2, "patch": [8, 8]}},
        "train": {"cube": str(training), "validation_runs": [names[1]], "epochs": 2, "batch_size": 1,
                  "checkpoint_every": 0, "threads": 1}}, source="test"))
    climate = tmp_path / "clim" / "export" / "last.pt"
    folder = plan_study("parity", _study(tmp_path, "clim-parity", export, cube=str(cube), runs=[names[1]],
                                        climate_model=str(climate)))
    assert [s for _, s, _ in run_local(folder)] == ["finished"]
    result = read_result(folder, 0)
    reference, _ = climate_prediction(str(climate), read_meta(training), 1, result["channels"])
    with xr.open_dataset(task_dir(folder, 0) / "maps.nc", engine="h5netcdf") as maps:
        got = maps["ts"].sel(source="climate_surrogate").values
    np.testing.assert_allclose(got, reference[result["channels"].index("ts")], rtol=1e-6)

    model, info = load_exported(climate)
    other = studied_cube(StudySettings(), info, str(cube))
    assert other.foreign and other.channels != list(info["plan"]["cube_channels"])
    a = predict_runs("ensemble", [model, model], info, [names[1]], 2, 0)
    b = predict_runs("ensemble", [model, model], info, [names[1]], 2, 0, cube=other)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.obs, b.obs)
