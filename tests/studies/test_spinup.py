"""The spin-up study: its settings and task list, the later-state target (RunDataset's mean_window)
against a numpy mean of the cube, the aggregation and report from given results, and a tiny real
study — a 3-planet × 12-day cold-start sweep run here, k = 2 and 4, the last 4 days as the later
state, one epoch each — with the baselines, the trainer's validation baseline, the days and the
GCM cost recomputed from the cube and the run summaries."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from astrohpc.config import Config, from_dict, load_config
from astrohpc.data import schema
from astrohpc.data.cube import read_meta
from astrohpc.data.runs import RunDataset
from astrohpc.errors import ConfigError, DataError
from astrohpc.studies import spinup
from astrohpc.studies.execute import aggregate_study, plan_study, run_local
from astrohpc.studies.tasks import read_result, task_dir, write_result

REPO = Path(__file__).resolve().parents[2]


def _cfg(root, model=None, train=None, **study):
    return from_dict(Config, {
        "run": {"root": str(root), "name": "spinup"},
        "model": model or {"task": "climate", "architecture": "unet", "unet": {"width": 4, "depth": 1}},
        "train": {"epochs": 1, "batch_size": 1, "checkpoint_every": 0, "threads": 1, "log_every": 1, **(train or {})},
        "study": study}, source="test")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fields(cube, run, t0, t1):
    """float64 [t1 - t0, C, lat, lon] straight from the file."""
    with h5py.File(cube, "r", locking=False) as f:
        return f[schema.FIELDS][run, t0:t1].astype(np.float64)


def _rmse(pred, truth, area):
    """Area-weighted RMSE per channel over every leading axis and the grid, NaN cells left out."""
    err = np.broadcast_to(pred, truth.shape) - truth
    w = np.where(np.isfinite(err), np.broadcast_to(area, err.shape), 0.0)
    axes = tuple(i for i in range(err.ndim) if i != err.ndim - 3)
    return np.sqrt((w * np.nan_to_num(err) ** 2).sum(axis=axes) / w.sum(axis=axes))


def test_settings_expansion_and_task_configs(physics_cube, tmp_path):
    names = read_meta(physics_cube).run_names
    cfg = _cfg(tmp_path, train={"validation_runs": [names[1]]}, spinup_cube=str(physics_cube), spinup_days=[2, 3],
               target_days=2)
    tasks = spinup.expand(cfg)
    assert tasks == [{"spinup_days": 2, "cube": str(Path(physics_cube).resolve())},
                     {"spinup_days": 3, "cube": str(Path(physics_cube).resolve())}]
    k3 = spinup.task_config({**tasks[1], "id": 1}, cfg, tmp_path / "study")
    assert (k3.model.spinup_steps, k3.model.task, k3.train.cube) == (3, "climate", tasks[1]["cube"])
    assert Path(k3.run.root) == task_dir(tmp_path / "study", 1) / "train" and k3.run.name == "k3"
    assert cfg.model.spinup_steps == 0  # the study's own config is left as it was

    # the default cube is the sweep's datacube.h5
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    with pytest.raises(DataError, match="no spin-up cube"):
        spinup.spinup_cube(_cfg(tmp_path, sweep=str(sweep)))
    (sweep / "datacube.h5").symlink_to(physics_cube)
    assert spinup.spinup_cube(_cfg(tmp_path, sweep=str(sweep))) == sweep / "datacube.h5"
    with pytest.raises(ConfigError, match="needs its cube"):
        spinup.expand(_cfg(tmp_path))

    # what the study refuses: an emulator, overlapping windows, nothing held out
    with pytest.raises(ConfigError, match="model.task: climate"):
        spinup.expand(_cfg(tmp_path, model={"task": "emulator"}, spinup_cube=str(physics_cube)))
    with pytest.raises(ConfigError, match="must not overlap"):
        spinup.expand(_cfg(tmp_path, train={"validation_runs": [names[1]]}, spinup_cube=str(physics_cube),
                           spinup_days=[2, 4], target_days=2))
    with pytest.raises(ConfigError, match="scores held-out runs"):
        spinup.expand(_cfg(tmp_path, train={"validation_fraction": 0.0}, spinup_cube=str(physics_cube),
                           spinup_days=[2], target_days=2))
    # settings: distinct k >= 1, a window >= 1
    for bad in ({"spinup_days": []}, {"spinup_days": [0, 5]}, {"spinup_days": [5, 5]}, {"target_days": 0}):
        with pytest.raises(ConfigError, match="spinup_days|target_days"):
            _cfg(tmp_path, **bad)


def test_demo_config_loads():
    cfg = load_config(REPO / "configs" / "study" / "spinup_demo.yaml")
    assert cfg.model.task == "climate" and cfg.study.spinup_days == [5, 10, 20] and cfg.study.target_days == 10
    gcm = load_config(REPO / "configs" / "gcm" / "spinup_small.yaml")
    assert max(cfg.study.spinup_days) + cfg.study.target_days <= gcm.gcm.simulated_days
    assert gcm.sweep.spinup_days == 0 and gcm.gcm.snapshot_interval_days == 1  # cold starts, daily states
    assert set(cfg.train.test_runs + cfg.train.validation_runs) < {f"task-{i:04d}" for i in range(gcm.sweep.samples)}
    big = load_config(REPO / "configs" / "gcm" / "spinup.yaml")
    assert big.sweep.samples == 64 and big.gcm.simulated_days == 1080 and big.sweep.spinup_days == 0


def test_later_state_is_the_mean_of_the_last_days(physics_cube):
    meta = read_meta(physics_cube)
    k, window = 2, 2
    later = RunDataset(physics_cube, k, mean_window=window)
    default = RunDataset(physics_cube, k)
    whole = RunDataset(physics_cube, k, mean_window=int(meta.time_count[0]) - k)
    for run in range(meta.shape[0]):
        steps = int(meta.time_count[run])
        states = _fields(physics_cube, run, 0, steps)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells (levels below the surface)
            expected = np.nanmean(states[steps - window:], axis=0)
            expected_default = np.nanmean(states[k:], axis=0)
        item = later[run]
        np.testing.assert_allclose(item["mean"].numpy(), expected.astype(np.float32), rtol=1e-6, equal_nan=True)
        np.testing.assert_array_equal(item["spinup"].numpy(), states[:k].astype(np.float32))
        assert item["days"].tolist() == [meta.time_days[run][steps - window], meta.time_days[run][steps - 1]]
        np.testing.assert_allclose(spinup.later_state(states, window), expected, rtol=1e-12, equal_nan=True)
        # without the option, RunDataset is what it was: the mean of k .. T-1
        np.testing.assert_allclose(default[run]["mean"].numpy(), expected_default.astype(np.float32), rtol=1e-6,
                                   equal_nan=True)
        np.testing.assert_array_equal(whole[run]["mean"].numpy(), default[run]["mean"].numpy())
    with pytest.raises(DataError, match="overlap the 2 spin-up steps"):
        RunDataset(physics_cube, 2, mean_window=4)
    with pytest.raises(DataError, match="mean_window must be >= 1"):
        RunDataset(physics_cube, 2, mean_window=0)


def _fake(k, ts, persistence, climatology, gcm=True):
    """A task result with channels ts and ps (surrogate / persistence / climatology RMSE)."""
    methods = {m: {"rmse": [v, 10.0 * v], "bias": [0.1, 0.0], "rmse_by_run": [[v, 10.0 * v]]}
               for m, v in (("surrogate", ts), ("persistence", persistence), ("climatology", climatology))}
    cost = {"cpu_s_per_run": 0.01, "wall_s_per_run": 0.01, "wall_core_s_per_run": 0.01, "torch_threads": 1}
    if gcm:
        cost.update(gcm_cpu_s_skipped=0.8 * (60 - k), speedup_cpu=0.8 * 60 / (0.8 * k + 0.01),
                    gcm_wall_core_s_skipped=0.9 * (60 - k), speedup_wall_core=0.9 * 60 / (0.9 * k + 0.01))
    return {"spinup_days": k, "target_days": 10, "runs": ["task-0000"], "held_out": "test",
            "channels": ["ts", "ps"], "units": ["K", "Pa"], "methods": methods,
            "days": {"used": [k], "total": [60], "skipped": [60 - k], "skipped_per_day_used": (60 - k) / k},
            "cost": cost}


def test_aggregation_and_report_from_results(physics_cube, tmp_path):
    from astrohpc.analysis.markdown import MarkdownReport
    from astrohpc.analysis.study_sections import add_study_section

    names = read_meta(physics_cube).run_names
    folder = plan_study("spinup", _cfg(tmp_path, train={"validation_runs": [names[1]]},
                                       spinup_cube=str(physics_cube), spinup_days=[3, 2], target_days=2))
    tasks = json.loads((folder / "study.json").read_text())["tasks"]
    assert [t["spinup_days"] for t in tasks] == [3, 2]
    write_result(folder, 0, {"task": tasks[0], **_fake(3, 1.0, 2.0, 4.0)})
    write_result(folder, 1, {"task": tasks[1], **_fake(2, 3.0, 2.0, 4.0, gcm=False)})
    record = aggregate_study(folder)
    assert record["complete"] and record["spinup_days"] == [2, 3]
    rows = _rows(folder / "spinup.csv")
    assert [(r["spinup_days"], r["channel"]) for r in rows] == [("2", "ts"), ("2", "ps"), ("3", "ts"), ("3", "ps")]
    k2, k3 = rows[0], rows[2]
    assert float(k3["surrogate_over_persistence"]) == 0.5 and float(k3["surrogate_over_climatology"]) == 0.25
    assert (k3["surrogate_beats_both"], k2["surrogate_beats_both"]) == ("True", "False")
    assert float(k2["days_skipped_per_day_used"]) == 29.0 and k2["gcm_cpu_s_skipped"] == "" and k2["speedup_cpu"] == ""
    assert float(k3["gcm_cpu_s_skipped"]) == pytest.approx(0.8 * 57)
    assert float(k3["gcm_wall_core_s_skipped"]) == pytest.approx(0.9 * 57)
    summary = json.loads((folder / "spinup_summary.json").read_text())
    assert [r["spinup_days"] for r in summary["rows"]] == [2, 3]
    assert summary["rows"][1]["ts_surrogate_rmse_K"] == 1.0 and summary["rows"][1]["mean_ratio_to_persistence"] == 0.5
    assert summary["rows"][0]["channels_beating_both"] == 0 and summary["rows"][1]["channels_beating_both"] == 2

    report = MarkdownReport(tmp_path / "report", "spin-up")
    add_study_section(report, folder)
    text = report.text()
    assert "## Spin-up acceleration" in text and "spinup_ts.png" in text and "persistence" in text
    assert (tmp_path / "report" / "spinup_ts.png").is_file()


@pytest.mark.exoplasim
def test_tiny_spinup_study_end_to_end(tmp_path, smoke_gcm_run):
    """3 cold-start planets × 12 days (spinup_small.yaml, shortened), k = 2 and 4, a 4-day later state."""
    from astrohpc.data.stats import run_stats
    from astrohpc.gcm.manifest import aggregate
    from astrohpc.gcm.sweep import plan_sweep, write_plan
    from astrohpc.gcm.sweep import run_local as run_sweep
    from astrohpc.train.export import read_export

    gcm = load_config(REPO / "configs" / "gcm" / "spinup_small.yaml",
                      [f"run.root={tmp_path}", "run.name=sweep", "sweep.samples=3", "gcm.days=12",
                       "gcm.means_interval_days=4"])
    plan = plan_sweep(gcm)
    write_plan(plan, gcm)
    assert sorted(s for _, s, _ in run_sweep(plan.sweep_dir, workers=2)) == ["finished"] * 3
    assert aggregate(plan.sweep_dir)["datacube"]["converted"]
    cube = plan.sweep_dir / "datacube.h5"
    run_stats(cube)

    cfg = _cfg(tmp_path, train={"test_runs": ["task-0002"], "validation_runs": ["task-0001"]},
               sweep=str(plan.sweep_dir), spinup_days=[2, 4], target_days=4)
    cfg.run.name = "study"
    folder = plan_study("spinup", cfg)
    assert [s for _, s, _ in run_local(folder)] == ["finished", "finished"]
    record = aggregate_study(folder)
    assert record["complete"] and record["spinup_days"] == [2, 4]

    meta = read_meta(cube)
    area = meta.area_weight.astype(np.float64)
    test, train, val = (meta.run_names.index(n) for n in ("task-0002", "task-0000", "task-0001"))
    gcm_summary = json.loads((plan.sweep_dir / "task-0002" / "summary.json").read_text())
    gcm_per_day = {"cpu": gcm_summary["cpu_seconds_per_simulated_day"],
                   "wall_core": gcm_summary["core_seconds_per_simulated_day"]}
    rows = _rows(folder / "spinup.csv")
    for task_id, k in ((0, 2), (1, 4)):
        res = read_result(folder, task_id)
        assert (res["spinup_days"], res["runs"], res["held_out"], res["train_runs"]) == (k, ["task-0002"], "test",
                                                                                       ["task-0000"])
        channels = read_export(res["export"])["plan"]["cube_channels"]
        states = {r: _fields(cube, r, 0, 12)[:, channels] for r in (test, train, val)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            later = {r: np.nanmean(s[-4:], axis=0) for r, s in states.items()}
        # the baselines, from the file: day k held, the training run's later state
        np.testing.assert_allclose(res["methods"]["persistence"]["rmse"], _rmse(states[test][k - 1], later[test], area),
                                   rtol=1e-9)
        np.testing.assert_allclose(res["methods"]["climatology"]["rmse"], _rmse(later[train], later[test], area),
                                   rtol=1e-9)
        surrogate = np.asarray(res["methods"]["surrogate"]["rmse"])
        assert np.isfinite(surrogate).all() and (surrogate > 0).all()
        # the trainer validated on the later state too: its climatology baseline on task-0001
        run_dir = Path(res["train_summary"]["run_dir"])
        validation = {r["channel"]: float(r["climatology_rmse"]) for r in _rows(run_dir / "metrics" / "validation.csv")}
        ts = res["channels"].index("ts")
        assert validation["ts"] == pytest.approx(_rmse(later[train], later[val], area)[ts], rel=1e-4)
        # days and cost saved, in both measures
        assert res["days"] == {"used": [k], "total": [12.0], "skipped": [12.0 - k],
                               "skipped_per_day_used": (12 - k) / k}
        cost = res["cost"]
        assert cost["gcm_per_day"] == {"task-0002": gcm_per_day}
        for m, c in gcm_per_day.items():  # each measure against itself
            assert cost[f"gcm_{m}_s_skipped"] == pytest.approx(c * (12 - k))
            assert cost[f"speedup_{m}"] == pytest.approx(c * 12 / (c * k + cost[f"{m}_s_per_run"]))
        mine = [r for r in rows if r["spinup_days"] == str(k)]
        assert [r["channel"] for r in mine] == res["channels"]
        assert float(mine[ts]["surrogate_rmse"]) == pytest.approx(surrogate[ts])
