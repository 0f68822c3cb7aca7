"""The parity study on the real smoke cube: a trained emulator, one held-out run, the baselines
computed independently here, aggregation of complete and incomplete task sets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from astrohpc.config import Config, from_dict, load_config
from astrohpc.data.cube import LazyCube, read_meta
from astrohpc.studies import baselines as base
from astrohpc.studies.execute import aggregate_study, plan_study, run_local, run_task
from astrohpc.studies.scores import rmse_bias
from astrohpc.studies.tasks import status, task_dir
from astrohpc.train.export import load_exported
from astrohpc.train.trainer import train

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(physics_cube, tmp_path_factory):
    """An emulator trained on run 0 of the smoke cube; run 1 held out as its test run."""
    root = tmp_path_factory.mktemp("parity")
    names = read_meta(physics_cube).run_names
    cfg = from_dict(Config, {"run": {"root": str(root), "name": "train", "seed": 1},
                             "model": {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1}},
                             "train": {"cube": str(physics_cube), "test_runs": [names[1]], "epochs": 2,
                                       "batch_size": 2, "checkpoint_every": 0}}, source="test")
    train(cfg)
    return root / "train" / "export" / "last.pt"


def _study_cfg(root, model, **study):
    return from_dict(Config, {"run": {"root": str(root), "name": "parity"},
                              "study": {"model": str(model), "twin": False, **study}}, source="test")


def test_baselines_by_hand():
    rng = np.random.default_rng(0)
    means = rng.normal(size=(3, 2, 4, 5))
    z = np.array([[0.0, 1.0, 5.0], [1.0, 1.0, 5.0], [2.0, 1.0, 5.0]])  # only the first parameter varies
    assert base.nearest_run(z, np.array([1.4, -9.0, 0.0])) == 1  # constant parameters are ignored
    np.testing.assert_allclose(base.climatology(means), means.mean(axis=0))
    # an exactly linear field is recovered; 3 runs, 1 varying parameter
    linear = 2.0 + 3.0 * z[:, 0, None, None, None] * np.ones((3, 2, 4, 5))
    np.testing.assert_allclose(base.linear_regression(z, linear, np.array([4.0, 0, 0])), 14.0 * np.ones((2, 4, 5)))


def test_climatology_helpers_by_hand():
    # a run of 3 states of one channel on a 1 x 2 grid; the second cell is below the surface at t = 1
    states = np.array([[[[1.0, 10.0]]], [[[2.0, np.nan]]], [[[6.0, 20.0]]]])
    np.testing.assert_allclose(base.time_mean(states), [[[3.0, 15.0]]])
    np.testing.assert_allclose(base.time_mean(states, start=1), [[[4.0, 20.0]]])
    other = np.array([[[[3.0, 0.0]]]])
    mean, std = base.pooled_climatology([states, other])  # 4 states pooled: 1, 2, 6, 3 and 10, 20, 0
    np.testing.assert_allclose(mean, [[[3.0, 10.0]]])
    np.testing.assert_allclose(std, [[[np.sqrt((4 + 1 + 9 + 0) / 4), np.sqrt(200 / 3)]]])
    runs = np.array([[[[1.0]]], [[[3.0]]], [[[np.nan]]]])
    mean, std = base.climatology_spread(runs)
    assert (mean.item(), std.item()) == (2.0, 1.0)
    assert np.isnan(base.time_mean(np.full((2, 1, 1, 1), np.nan))).all()  # all NaN: NaN, no warning raised


def test_parity_task_scores_and_aggregation(trained, physics_cube, tmp_path):
    cfg = _study_cfg(tmp_path, trained)
    folder = plan_study("parity", cfg)
    study = json.loads((folder / "study.json").read_text())
    meta = read_meta(physics_cube)
    assert [t["run"] for t in study["tasks"]] == [meta.run_names[1]]
    assert [s for _, s, _ in run_local(folder)] == ["finished"]
    result = json.loads((task_dir(folder, 0) / "result.json").read_text())
    assert set(result["methods"]) == {"surrogate", "persistence", "climatology", "nearest_run", "linear_regression",
                                      "lim"}
    assert result["nearest_run"] == meta.run_names[0]
    # the LIM forecasts the prognostic channels only: a diagnostic channel is the training climatology's
    model, _ = load_exported(trained)
    lim, clim_m = result["methods"]["lim"], result["methods"]["climatology"]
    diagnostic = model.diagnostic.tolist()
    for c in diagnostic:
        assert lim["daily_rmse"][c] == pytest.approx(clim_m["daily_rmse"][c], rel=1e-9)
    prognostic = model.predicted.tolist()
    assert all(np.isfinite(lim["daily_rmse"][c]) for c in prognostic)
    assert any(lim["daily_rmse"][c] != pytest.approx(clim_m["daily_rmse"][c], rel=1e-3) for c in prognostic)

    # persistence and climatology recomputed here from the cube
    names = result["channels"]
    ts = names.index("ts")
    cube = LazyCube(physics_cube).prepare()
    plan_channels = [meta.channels_of([v]) for v in dict.fromkeys(n.split("@")[0] for n in names)]
    channels = np.concatenate(plan_channels)
    truth = cube.read(1, 0, int(meta.time_count[1]))[:, channels].astype(np.float64)
    train_run = cube.read(0, 0, int(meta.time_count[0]))[:, channels].astype(np.float64)
    from astrohpc.physics.grid import SphereGrid

    area = SphereGrid.from_meta(meta).area_weight.double().numpy()
    rmse, bias = rmse_bias(truth[0][None], truth[1:], area)
    assert result["methods"]["persistence"]["daily_rmse"][ts] == pytest.approx(rmse[ts], rel=1e-9)
    clim = train_run[1:].mean(axis=0)
    m_rmse, _ = rmse_bias(clim, truth[1:].mean(axis=0), area)
    assert result["methods"]["climatology"]["mean_rmse"][ts] == pytest.approx(m_rmse[ts], rel=1e-9)
    assert result["units"][ts] == "K"
    cost = result["cost"]
    assert cost["surrogate_cpu_s_per_day_single"] > 0
    # wall × torch threads per simulated day, by hand from the rollout's wall time (days − 1 steps of 1 day)
    assert cost["surrogate_wall_core_s_per_day_single"] == pytest.approx(
        cost["surrogate_rollout_wall_s"] * cost["torch_threads"] / ((result["days"] - 1) * result["interval_days"]),
        rel=1e-12)
    assert not any(k.startswith("speedup") for k in cost)  # no GCM twin: no GCM cost, no speed-up claimed
    assert abs(result["surrogate_dry_mass_drift"]) < 1e-10  # the dry-mass corrector, float64

    record = aggregate_study(folder)
    assert record["complete"] and Path(record["outputs"]["table"]).is_file()
    head = json.loads(Path(record["outputs"]["headline"]).read_text())
    row = next(r for r in head["rows"] if r["channel"] == "ts")
    assert row["persistence daily"] == pytest.approx(rmse[ts], rel=1e-9)
    assert row["surrogate beats it (daily)"] == (row["surrogate daily"] < row[f"{row['best baseline (daily)']} daily"])

    # the report section is read from these files: the ts row carries the same numbers
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.study_sections import add_study_section

    report = MarkdownReport(tmp_path / "report", "t")
    add_study_section(report, folder)
    text = report.write().read_text()
    assert f"| ts | K | {row['surrogate daily']:.4g} | {row['surrogate mean']:.4g} | {row['persistence daily']:.4g} |" \
        in text
    assert (tmp_path / "report" / "parity_lead.png").is_file()
    # both cost measures, labelled; the step read from the cube's interval; no twin sentence without a twin
    assert "| figure | CPU time, process + children | wall time × cores held |" in text
    assert "one step per day" in text and "GCM twin differs" not in text


def test_aggregation_lists_missing_and_failed_tasks(trained, physics_cube, tmp_path):
    meta = read_meta(physics_cube)
    cfg = _study_cfg(tmp_path, trained, runs=[meta.run_names[1], meta.run_names[1]])
    folder = plan_study("parity", cfg)
    (task_dir(folder, 1)).mkdir(parents=True)
    (task_dir(folder, 1) / "failed.json").write_text(json.dumps({"reason": "OOM: killed"}))
    state = status(folder)
    assert state["missing"] == [0] and state["failed"] == {1: "OOM: killed"}
    record = aggregate_study(folder)
    assert record["complete"] is False and record["outputs"] is None and record["missing"] == [0]
    assert not (folder / "parity.csv").exists()  # nothing averaged over a partial set
    done = subprocess.run([sys.executable, "-m", "astrohpc", "study", "status", str(folder)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 1 and "task 1 failed: OOM: killed" in done.stdout and "missing: 0" in done.stdout
    # one task done: aggregated only when asked for a partial set, and the report section says so
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.study_record import PARTIAL_NOTE
    from astrohpc.analysis.study_sections import add_study_section

    run_task(folder, 0)
    assert aggregate_study(folder, allow_partial=True)["partial"]
    report = MarkdownReport(tmp_path / "report", "t")
    add_study_section(report, folder)
    assert PARTIAL_NOTE in report.write().read_text()
    # running again runs only the unfinished task, then the aggregation is complete and not partial
    assert sorted(i for i, s, _ in run_local(folder)) == [1]
    assert list(run_local(folder)) == []
    record = aggregate_study(folder)
    assert record["complete"] and not record["partial"]


def test_training_runs_are_refused(trained, physics_cube, tmp_path):
    from astrohpc.errors import ConfigError

    cfg = _study_cfg(tmp_path, trained, runs=[read_meta(physics_cube).run_names[0]])
    with pytest.raises(ConfigError, match="held-out runs only"):
        plan_study("parity", cfg)


def test_cli_dry_run_lists_tasks_and_scripts(trained, tmp_path):
    path = tmp_path / "parity.yaml"
    path.write_text(f"run: {{name: p, root: {tmp_path}}}\nstudy: {{model: {trained}, twin: false}}\n")
    load_config(path)
    done = subprocess.run([sys.executable, "-m", "astrohpc", "study", "parity", str(path), "--dry-run"],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "task 0:" in done.stdout and "#SBATCH --array=0" in done.stdout and "study aggregate" in done.stdout


@pytest.mark.exoplasim
def test_parity_with_the_gcm_twin_on_a_real_sweep(smoke_gcm_run, tmp_path):
    """A 3-run smoke sweep (5 days), an emulator trained on 2 runs, parity on the third with its
    GCM twin (instellation + 1e-3 W m-2): the twin is close to the run (the noise floor is small
    but not zero), every RMSE has its ratio to the twin, and ExoPlaSim's cost is measured here."""
    from astrohpc.data.stats import run_stats
    from astrohpc.gcm.manifest import aggregate
    from astrohpc.gcm.sweep import plan_sweep, write_plan
    from astrohpc.gcm.sweep import run_local as run_sweep

    points = "[{planet.instellation_W_m2: 1250}, {planet.instellation_W_m2: 1320}, {planet.instellation_W_m2: 1400}]"
    gcm = load_config(REPO / "configs" / "gcm" / "smoke.yaml", [f"run.root={tmp_path}", "run.name=sw",
                                                                 "sweep.design=list", "gcm.days=5",
                                                                 f"sweep.points={points}"])
    plan = plan_sweep(gcm)
    write_plan(plan, gcm)
    assert all(r[1] == "finished" for r in run_sweep(plan.sweep_dir, workers=2))
    aggregate(plan.sweep_dir)
    cube = plan.sweep_dir / "datacube.h5"
    run_stats(cube)
    names = read_meta(cube).run_names
    cfg = from_dict(Config, {"run": {"root": str(tmp_path), "name": "train"},
                             "model": {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1}},
                             "train": {"cube": str(cube), "test_runs": [names[1]], "validation_fraction": 0.0,
                                       "epochs": 1, "batch_size": 2, "checkpoint_every": 0}}, source="test")
    train(cfg)
    study = _study_cfg(tmp_path, tmp_path / "train" / "export" / "last.pt", twin=True, sweep=str(plan.sweep_dir))
    folder = plan_study("parity", study)
    assert [s for _, s, r in run_local(folder)] == ["finished"], status(folder)
    result = json.loads((task_dir(folder, 0) / "result.json").read_text())
    ts = result["channels"].index("ts")
    twin = result["methods"]["gcm_twin"]
    assert 0 < twin["daily_rmse"][ts] < result["methods"]["persistence"]["daily_rmse"][ts]
    cost = result["cost"]
    assert cost["gcm"]["cpu_s_per_day"] > 0 and cost["gcm"]["wall_core_s_per_day"] > 0
    for m in ("cpu", "wall_core"):  # each speed-up within one measure
        assert cost[f"speedup_{m}_single"] == pytest.approx(
            cost["gcm"][f"{m}_s_per_day"] / cost[f"surrogate_{m}_s_per_day_single"], rel=1e-12)
    # the GCM's net TOA flux from the run's own means NetCDF, read here with xarray and weighted by
    # Gauss-Legendre quadrature weights from numpy (ExoPlaSim's grid is Gaussian): another route than the cube's
    import xarray as xr

    from astrohpc.gcm.sweep import load_table

    run_dir = plan.sweep_dir / next(t["run_dir"] for t in load_table(plan.sweep_dir)["tasks"]
                                    if Path(t["run_dir"]).name == result["run"])
    with xr.open_dataset(run_dir / "output" / "exoplasim.nc", decode_times=False) as means:
        lat, ntr = means["lat"].values, means["ntr"].values.astype(np.float64)
    nodes, gauss = np.polynomial.legendre.leggauss(lat.size)  # nodes sin(lat) ascending: south to north
    w = gauss[np.argsort(np.argsort(lat))][:, None]
    by_hand = float(((ntr * w).sum(axis=(-2, -1)) / (w.sum() * ntr.shape[-1])).mean())
    assert result["gcm_toa_imbalance_W_m2"] == pytest.approx(by_hand, rel=1e-5)  # float32 fields in both files
    assert result["gcm_toa_source"].endswith("datacube_means.h5")
    record = aggregate_study(folder)
    with open(record["outputs"]["table"]) as f:
        header = f.readline()
    assert "daily_rmse_over_twin" in header

    # `astrohpc report DIR`: the sweep, the training and the study found in the folder, one REPORT.md
    done = subprocess.run([sys.executable, "-m", "astrohpc", "report", str(tmp_path)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "REPORT.md").read_text()
    for heading in ("## Runs", "## Surrogate training", "## GCM parity on held-out runs", "## Tables (CSV)"):
        assert heading in text
    assert "](report/parity_lead.png)" in text and (tmp_path / "report" / "parity_lead.png").is_file()
    assert "`parity/parity.csv`" in text


def test_rollout_study_runs_restarts_and_aggregates(trained, tmp_path, monkeypatch):
    """The rollout kind on the held-out run: 2 initial conditions + a twin, 60 steps in segments
    of 20; a task killed after its first segment continues from its saved state to the same end."""
    from astrohpc.studies import rollout as engine

    cfg = _study_cfg(tmp_path, trained, rollout_steps=60, segment_steps=20, initial_conditions=2)
    folder = plan_study("rollout", cfg)
    calls = {"n": 0}
    original = engine.rollout

    def dies_after_one_segment(*args, **kwargs):
        save = kwargs["on_segment"]

        def on_segment(state):
            save(state)
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyboardInterrupt("killed")  # what a preemption does to the process

        return original(*args, **{**kwargs, "on_segment": on_segment})

    monkeypatch.setattr(engine, "rollout", dies_after_one_segment)
    with pytest.raises(KeyboardInterrupt):
        from astrohpc.studies.execute import run_task

        run_task(folder, 0)
    assert (task_dir(folder, 0) / "rollout_state.pt").is_file()
    assert [s for _, s, _ in run_local(folder)] == ["finished"]
    result = json.loads((task_dir(folder, 0) / "result.json").read_text())
    assert len(result["members"]) == 3 and result["steps"] == 60
    assert not (task_dir(folder, 0) / "rollout_state.pt").exists()
    for m in result["members"]:
        assert m["dry_mass_max_rel_error"] is None or m["dry_mass_max_rel_error"] < 1e-9
        assert 0 <= m["steps_without_divergence"] <= 60
    import xarray as xr

    with xr.open_dataset(result["netcdf"]) as ds:
        assert ds["ts"].attrs["units"] == "K" and ds.sizes["step"] == 60 and ds.sizes["member"] == 3
    record = aggregate_study(folder)
    assert record["complete"]
    summary = json.loads(Path(record["outputs"]["summary"]).read_text())
    assert summary["members"] == 3 and summary["steps"] == 60
    # the linear inverse model from the same 2 initial states (not the twin); fitted on one 5-day run here,
    # it may leave the bounds: its window climatology exists only for a member that got there
    assert [row["member"] for row in summary["lim"]] == [f"LIM from {m['member']}" for m in result["members"][:2]]
    for row in summary["lim"]:
        assert 0 <= row["steps_without_flag"] <= 60
        assert (row["ts_climatology_rmse_K"] is None) == (row["steps_without_flag"] == 0)
    # every conserved quantity before and after the correctors; the dry-mass corrector closes its own
    conservation = summary["conservation"]
    assert set(conservation) == {"dry_mass", "water", "energy"}
    assert conservation["dry_mass"]["after"]["max_abs_per_step"] < 1e-12
    assert conservation["dry_mass"]["before"]["max_abs_per_step"] > 1e3 * conservation["dry_mass"]["after"][
        "max_abs_per_step"]
    # the report states the settings as run: the step, the climatology window, the GCM mean's span
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.study_sections import add_study_section

    report = MarkdownReport(tmp_path / "report", "t")
    add_study_section(report, folder)
    text = "".join(report.parts)
    span = result["gcm_mean_days"]
    assert result["step_days"] == 1.0 and result["climatology_steps"] == 60  # min(1000, the 60 steps run)
    assert "60 steps each (one day per step)" in text and "the last 60 steps' mean" in text
    assert "Conservation, before and after the correctors" in text and "linear inverse model" in text
    # ts spectra at the end of each member beside the GCM's last state; l = 0 is the global mean squared
    spec = result["ts_power_by_l"]
    assert len(spec["members"]) == 3 and len(spec["gcm_last_state"]) == len(next(iter(spec["members"].values())))
    with xr.open_dataset(result["netcdf"]) as ds:
        last_ts = float(ds["ts"].values[-1, 0])  # member 0's global mean at its last step (not flagged here)
    if result["members"][0]["divergence"] is None:
        # the l = 0 power of orthonormal harmonics is 4π × the global mean² (the rollout's own diagnostic)
        first = next(iter(spec["members"].values()))[0]
        assert first == pytest.approx(4 * np.pi * last_ts ** 2, rel=1e-4)
    assert (tmp_path / "report" / "rollout_spectra.png").is_file()
    assert f"own {span:g}-day mean" in text and span == result["gcm_mean_states"] * result["step_days"]


def test_parity_scores_the_climate_surrogate_and_saves_maps(trained, physics_cube, tmp_path):
    from astrohpc.studies.parity import climate_prediction

    names = read_meta(physics_cube).run_names
    cfg = from_dict(Config, {"run": {"root": str(tmp_path), "name": "clim", "seed": 1},
                             "model": {"task": "climate", "architecture": "transformer", "mode": "datacube",
                                       "transformer": {"dim": 16, "depth": 1, "heads": 2, "patch": [8, 8]}},
                             "train": {"cube": str(physics_cube), "test_runs": [names[1]], "epochs": 3,
                                       "batch_size": 1, "checkpoint_every": 0}}, source="test")
    train(cfg)
    climate = tmp_path / "clim" / "export" / "last.pt"
    folder = plan_study("parity", _study_cfg(tmp_path, trained, climate_model=str(climate)))
    assert [s for _, s, _ in run_local(folder)] == ["finished"]
    result = json.loads((task_dir(folder, 0) / "result.json").read_text())
    ts = result["channels"].index("ts")
    _, timing = climate_prediction(str(climate), read_meta(physics_cube), 1, result["channels"])
    assert timing == {"spinup_steps": 0}  # no cost asked, none measured
    # the reference prediction, made here through the model's own methods on inputs built by hand from
    # the cube's metadata (parameters normalised with the export's saved normalisation), not by the study
    import torch

    from astrohpc.data.dataset import planet_params
    from astrohpc.models.uncertainty import GaussianPrediction
    from astrohpc.physics.constants import PlanetConstants
    from astrohpc.train.export import load_exported

    model, info = load_exported(str(climate))
    meta_ = read_meta(physics_cube)
    z = torch.as_tensor(meta_.normalized_params(info["param_norm"])[[1]], dtype=torch.float32)
    static_names = sorted(meta_.static) if info["plan"]["static"] else []
    static = torch.from_numpy(np.stack([meta_.static[n][1] for n in static_names]))[None] if static_names else None
    planet = PlanetConstants.from_run_params({n: torch.tensor([float(v[1])], dtype=torch.float64)
                                              for n, v in planet_params(meta_).items()})
    with torch.no_grad():
        out = model.physical(model(z, None, static))["datacube"]
        fields = model.correct(out.mean if isinstance(out, GaussianPrediction) else out, None, static, planet)
    table = info["plan"]["channel_names"]
    predicted = fields[0, [table.index(n) for n in result["channels"]]].double().numpy()
    cost = result["cost"]["climate_surrogate"]
    assert cost["cpu_s_per_run_single"] > 0 and cost["batch"] == 8 and cost["spinup_days"] == 0
    assert cost["cpu_s_per_day_single"] == pytest.approx(cost["cpu_s_per_run_single"] / result["days"])
    assert cost["wall_core_s_per_day_single"] == pytest.approx(cost["wall_core_s_per_run_single"] / result["days"])
    assert not any(k.startswith("speedup") for k in cost)  # no GCM twin, no GCM cost measured: no speed-up claimed
    from astrohpc.physics.grid import SphereGrid

    meta = read_meta(physics_cube)
    area = SphereGrid.from_meta(meta).area_weight.double().numpy()
    cube = LazyCube(physics_cube).prepare()
    variables = dict.fromkeys(n.split("@")[0] for n in result["channels"])
    channels = np.concatenate([meta.channels_of([v]) for v in variables])
    truth = cube.read(1, 0, int(meta.time_count[1]))[:, channels].astype(np.float64)
    m_rmse, _ = rmse_bias(predicted, truth[1:].mean(axis=0), area)
    assert result["methods"]["climate_surrogate"]["mean_rmse"][ts] == pytest.approx(m_rmse[ts], rel=1e-9)
    import xarray as xr

    with xr.open_dataset(task_dir(folder, 0) / "maps.nc", engine="h5netcdf") as maps:
        assert maps["ts"].dims == ("source", "lat", "lon") and maps["ts"].shape[1:] == meta.shape[-2:]
        assert {"gcm", "surrogate", "climate_surrogate"} <= set(maps["source"].values)
        assert maps["ts"].attrs["units"] == meta.units[meta.channel("ts")]


def test_climate_cost_by_hand():
    from astrohpc.studies.parity import climate_cost

    timing = {"spinup_steps": 2, "single": {"cpu_s": 0.01, "wall_s": 0.01, "wall_core_s": 0.02, "batch": 1},
              "batched": {"cpu_s": 0.04, "wall_s": 0.02, "wall_core_s": 0.04, "batch": 8}}
    cost = climate_cost(timing, days=30.0, interval_days=1.0, gcm_per_day={"cpu": 0.5, "wall_core": 2.0})
    assert cost["cpu_s_per_run_batched"] == pytest.approx(0.005) and cost["cpu_s_per_day_batched"] == 0.005 / 30
    # the GCM's 30 days against the surrogate plus the 2 GCM days it reads, each measure against itself
    assert cost["speedup_cpu_single"] == pytest.approx(15.0 / (0.01 + 1.0))
    assert cost["speedup_cpu_batched"] == pytest.approx(15.0 / (0.005 + 1.0))
    assert cost["speedup_wall_core_single"] == pytest.approx(60.0 / (0.02 + 4.0))
    assert cost["speedup_wall_core_batched"] == pytest.approx(60.0 / (0.005 + 4.0))
    assert not any(k.startswith("speedup") for k in climate_cost(timing, 30.0, 1.0, None))


def test_repeat_makes_a_batch_of_one_sample():
    import torch

    from astrohpc.studies.parity import _repeat

    item = {"params": torch.arange(3.0)[None], "planet": {"g": torch.tensor([9.8], dtype=torch.float64)},
            "run": [4], "days": torch.tensor(1.0)}
    out = _repeat(item, 3)
    assert out["params"].shape == (3, 3) and torch.equal(out["params"][2], item["params"][0])
    assert out["planet"]["g"].tolist() == [9.8] * 3 and out["run"] == [4, 4, 4] and out["days"].dim() == 0


def test_replace_deletes_only_a_different_study(trained, tmp_path):
    from astrohpc.errors import ConfigError
    from astrohpc.studies.execute import replace_if_different

    folder = plan_study("parity", _study_cfg(tmp_path, trained))
    assert replace_if_different("parity", _study_cfg(tmp_path, trained)) is False
    other = _study_cfg(tmp_path, trained, cost_batch=2)
    with pytest.raises(ConfigError, match="another config"):
        plan_study("parity", other)
    assert replace_if_different("parity", other) is True and not folder.exists()
    assert plan_study("parity", other) == folder
