"""The climate study (leave-one-out parity of the GP climate surrogate) on a tiny real sweep: 6
cold-start ExoPlaSim planets × 6 days with daily means (5 inside a maximin hypercube, 1 outside it),
the last 3 days as each run's climate. Scores of the baselines are recomputed here from the
NetCDF files with xarray and cos-latitude weights — not from the study's code — and the outside
planet must be flagged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from climate_fixture import CLIMATE_AVERAGE_DAYS, climate_cfg

from astrohpc.config import Config, from_dict, to_dict
from astrohpc.errors import ConfigError
from astrohpc.studies import climate_loo

REPO = Path(__file__).resolve().parents[2]
AVERAGE_DAYS = CLIMATE_AVERAGE_DAYS


def _cfg(root, sweep, **study):
    return climate_cfg(root, sweep, **study)


def _time_mean(sweep, run, var):
    with xr.open_dataset(Path(sweep) / run / "output" / "exoplasim.nc", decode_times=False) as ds:
        return ds[var].isel(time=slice(-AVERAGE_DAYS, None)).mean("time").values.astype(np.float64), ds["lat"].values


def _rmse(a, b, lat):
    w = np.broadcast_to(np.cos(np.radians(lat))[:, None], a.shape)
    return float(np.sqrt((w * (a - b) ** 2).sum() / w.sum()))


def test_tiny_climate_study_end_to_end(climate_sweep, climate_study, tmp_path):
    study = climate_study
    tasks = json.loads((study / "study.json").read_text())["tasks"]
    assert [(t["held_out"], t["kind"]) for t in tasks] == [(f"task-{i:04d}", "loo") for i in range(5)] + [
        ("task-0005", "outside")]
    summary = json.loads((study / "climate_summary.json").read_text())
    assert summary["n_runs"] == 5 and summary["outside_runs"] == ["task-0005"]

    # the nearest-run baseline, recomputed from the GCM's own files: rotation period in log10 and
    # instellation, each standardised over the 4 training runs, Euclidean distance
    points = {t["run_dir"]: t["point"] for t in json.loads((Path(climate_sweep) / "tasks.json").read_text())["tasks"]}
    inside = [f"task-{i:04d}" for i in range(5)]
    errors = []
    for held in inside:
        train = [r for r in inside if r != held]
        x = np.array([[np.log10(points[r]["planet.rotation_period_days"]), points[r]["planet.instellation_W_m2"]]
                      for r in [*train, held]])
        z = (x - x[:-1].mean(axis=0)) / x[:-1].std(axis=0)
        nearest = train[int(np.argmin(((z[:-1] - z[-1]) ** 2).sum(axis=1)))]
        truth, lat = _time_mean(climate_sweep, held, "ts")
        guess, _ = _time_mean(climate_sweep, nearest, "ts")
        errors.append(_rmse(guess, truth, lat))
    # ExoPlaSim's NetCDF latitudes are Gaussian; cos φ of the centres stands in for the cube's exact
    # Gauss weights, which differ by < 0.5 % at T21
    assert summary["loo_rmse"]["ts"]["nearest"] == pytest.approx(float(np.sqrt(np.mean(np.square(errors)))), rel=5e-3)
    assert summary["loo_ratio_to_nearest"]["ts"] == pytest.approx(
        summary["loo_rmse"]["ts"]["gp"] / summary["loo_rmse"]["ts"]["nearest"])
    for level in ("coverage68", "coverage95"):
        assert 0.0 <= summary[level]["ts"] <= 1.0
    assert summary["coverage95"]["ts"] >= summary["coverage68"]["ts"]

    # out of the envelope: the outside planet (16 d, 1500 W m-2) trips the flag
    assert summary["ood"]["outside_flagged"] == [True]
    assert summary["ood"]["envelope"] == "the sweep's design box"  # [1, 10] d (log10) x [1100, 1450] W m-2
    box = climate_loo.design_box(climate_sweep, ["rotation_period_days", "instellation_W_m2"], ["log10", "identity"])
    np.testing.assert_allclose(box, [[0.0, 1.0], [1100.0, 1450.0]])
    in_box = climate_loo.envelope_check(None, np.array([[0.0, 1100.0], [1.0, 1450.0], [1.01, 1200.0]]), box)
    assert in_box.tolist() == [True, True, False]
    assert summary["ood"]["verdicts"]["task-0005"]["inside_envelope"] is False
    # each run's distance from equilibrium over the averaging window, from the means cube
    assert [row["run"] for row in summary["equilibrium"]] == [*inside, "task-0005"]
    assert all(row["window_days"] == AVERAGE_DAYS for row in summary["equilibrium"])
    # cost: CPU time on both sides, from the runs' own summaries
    cpu = [json.loads((Path(climate_sweep) / r / "summary.json").read_text())["cpu_time_s"] for r in inside]
    assert summary["exoplasim_cpu_s_per_run"] == pytest.approx(np.mean(cpu))
    assert summary["cost_s_per_prediction"] > 0
    # the report section reads the same figures
    from astrohpc.analysis.markdown import MarkdownReport, format_cell
    from astrohpc.analysis.study_sections import add_study_section

    report = MarkdownReport(tmp_path / "report", "t")
    add_study_section(report, study)
    text = report.text()
    assert "Climate surrogate (Gaussian process), leave-one-out" in text
    assert format_cell(summary["loo_rmse"]["ts"]["gp"], 3) in text and "last 3 days" in text
    top = json.loads((study / "summary.json").read_text())
    assert {"loo_rmse", "loo_ratio_to_nearest", "coverage95", "n_runs", "cost_s_per_prediction",
            "exoplasim_cpu_s_per_run", "export", "git", "date", "host"} <= set(top)
    assert top["export"] == str(study / "export" / "gp.pt") and (study / "export" / "gp.pt").is_file()


def test_bad_study_configs_are_refused(climate_sweep, tmp_path):
    with pytest.raises(ConfigError, match="model.architecture: gp"):
        climate_loo.expand(from_dict(Config, {**to_dict(_cfg(tmp_path, climate_sweep)),
                                              "model": {"task": "climate", "architecture": "unet"}}, source="t"))
    with pytest.raises(ConfigError, match="no run task-0099"):
        climate_loo.expand(_cfg(tmp_path, climate_sweep, outside_runs=["task-0099"]))
    with pytest.raises(ConfigError, match="no channel zz"):
        climate_loo.expand(_cfg(tmp_path, climate_sweep, score_channels=["zz"]))
    with pytest.raises(ConfigError, match="lower model.gp.max_components to 3"):
        climate_loo.expand(from_dict(Config, {**to_dict(_cfg(tmp_path, climate_sweep)), "model": {
            "task": "climate", "architecture": "gp"}}, source="t"))
    with pytest.raises(ConfigError, match="study.cube"):
        climate_loo.climate_cube(from_dict(Config, {"model": {"task": "climate", "architecture": "gp"}}, source="t"))


def test_parameters_are_read_as_the_sweep_sampled_them(climate_sweep):
    """rotation period was sampled log-uniformly (sweep.log_scale): the cube records it and models read
    log10 of it; instellation (linear) stays as it is."""
    from astrohpc.data.cube import read_meta

    meta = read_meta(Path(climate_sweep) / "datacube_means.h5", stats=False)
    assert meta.param_transforms == {"rotation_period_days": "log10"}
    names = ["rotation_period_days", "instellation_W_m2"]
    norm = meta.param_normalization(names)
    assert norm["transform"] == ["log10", "identity"]
    raw = np.c_[meta.params["rotation_period_days"], meta.params["instellation_W_m2"]]
    by_hand = np.c_[np.log10(raw[:, 0]), raw[:, 1]]
    np.testing.assert_allclose(meta.normalized_params(norm),
                               (by_hand - by_hand.mean(axis=0)) / by_hand.std(axis=0), rtol=1e-12)


def test_gcm_twins_give_the_time_mean_floor(climate_sweep, tmp_path):
    """study.climate_twins: a twin of an inside run (instellation + 0.1 W m-2, the same 6 days) is run
    and its time mean compared with the run's; every LOO RMSE is also a ratio to that floor."""
    from astrohpc.studies.execute import aggregate_study, plan_study, run_local

    cfg = _cfg(tmp_path, climate_sweep, climate_twins=1, twin_delta_instellation_W_m2=0.1)
    study = plan_study("climate", cfg)
    tasks = json.loads((study / "study.json").read_text())["tasks"]
    assert [(t["held_out"], t["kind"]) for t in tasks][-1] == ("task-0000", "twin")
    assert sorted(s for _, s, _ in run_local(study)) == ["finished"] * 7
    assert aggregate_study(study)["complete"]
    summary = json.loads((study / "climate_summary.json").read_text())
    floor = summary["twin_floor"]["ts"]
    # the reference, from the GCM's own NetCDF files: the twin's and the run's last days, cos-latitude weights
    from astrohpc.studies.tasks import task_dir

    twin_task = [t for t in tasks if t["kind"] == "twin"][0]
    twin, lat = _time_mean(task_dir(study, twin_task["id"]) / "twin", "twin", "ts")
    own, _ = _time_mean(climate_sweep, "task-0000", "ts")
    assert floor == pytest.approx(_rmse(twin, own, lat), rel=5e-3)
    assert 0.0 < floor < summary["loo_rmse"]["ts"]["ensemble_mean"]  # a 0.1 W m-2 twin: far closer than the spread
    assert summary["loo_ratio_to_twin_floor"]["ts"]["gp"] == pytest.approx(summary["loo_rmse"]["ts"]["gp"] / floor)
    assert "1 GCM twins (task-0000)" in summary["twin_floor_note"]
    with pytest.raises(ConfigError, match="study.climate_twins reruns runs of the sweep"):
        climate_loo.twin_runs(from_dict(Config, {**to_dict(cfg), "study": {"climate_twins": 1}}, source="t"),
                              ["task-0000"])


def test_a_climate_network_is_compared_in_the_same_leave_one_out(climate_sweep, tmp_path):
    """study.compare_model: the climate transformer is trained in the LOO task on the same 4 runs as
    the GP (never on the held-out or the outside run) and scored beside it as "network"."""
    from astrohpc.studies.execute import plan_study, run_task
    from astrohpc.studies.tasks import task_dir
    from astrohpc.train.export import read_export

    cfg = _cfg(tmp_path, climate_sweep, compare_model=str(REPO / "configs" / "model" / "climate_transformer.yaml"),
               compare_epochs=2)
    study = plan_study("climate", cfg)
    run_task(study, 0)
    result = json.loads((task_dir(study, 0) / "result.json").read_text())
    assert result["held_out"] == "task-0000"
    for label in ("ts", "rlut"):
        assert np.isfinite(result["rmse"][label]["network"]) and result["rmse"][label]["network"] > 0
    export = next((task_dir(study, 0) / "network" / "train" / "export").glob("*.pt"))
    split = read_export(export)["run_split"]
    trained_on = ["task-0001", "task-0002", "task-0003", "task-0004"]
    assert sorted(split["train"]) == trained_on == sorted(result["train_runs"])
    assert result["cost"]["network"]["fit_cpu_s"] > 0
    with pytest.raises(ConfigError, match="a climate model is needed"):
        climate_loo.network_config(_cfg(tmp_path, climate_sweep, compare_model=str(
            REPO / "configs" / "model" / "emulator_unet.yaml")), {"id": 0, "cube": str(
                climate_loo.climate_cube(cfg))}, tmp_path, {"channels": [], "params": []}, [])
