"""Sweeps run here with worker processes (--local): the same tasks and manifest as on Slurm."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tests_gcm_paths import SMOKE_CONFIG

from astrohpc.config import load_config
from astrohpc.errors import ConfigError
from astrohpc.gcm.manifest import aggregate, reason_from_log
from astrohpc.gcm.sweep import plan_sweep, run_local, write_plan

TWO_POINTS = "[{planet.instellation_W_m2: 1200}, {planet.instellation_W_m2: -100}]"


def _sweep(tmp_path, *extra):
    cfg = load_config(SMOKE_CONFIG, [f"run.root={tmp_path}", "run.name=sweep", "sweep.design=list",
                                     f"sweep.points={TWO_POINTS}", "gcm.snapshot_interval_days=0", *extra])
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    return cfg, plan


@pytest.mark.exoplasim
def test_local_sweep_keeps_the_good_task_and_says_why_the_bad_one_failed(tmp_path, smoke_gcm_run):
    cfg, plan = _sweep(tmp_path)
    results = sorted(run_local(plan.sweep_dir, workers=2))
    assert [r[:2] for r in results] == [(0, "finished"), (1, "failed")]
    manifest = aggregate(plan.sweep_dir, convert=False)
    assert manifest["counts"] == {"finished": 1, "failed": 1, "missing": 0} and not manifest["complete"]
    good, bad = manifest["tasks"]
    assert good["status"] == "finished" and good["point"] == {"planet.instellation_W_m2": 1200}
    assert {f["kind"] for f in good["files"]} == {"means", "restart"}
    assert bad["status"] == "failed" and "instellation_W_m2 must be >= 0" in bad["reason"]
    on_disk = json.loads((plan.sweep_dir / "manifest.json").read_text())
    assert on_disk["counts"] == manifest["counts"]

    # Re-running skips the finished task (its summary is untouched) and retries only the failed one.
    finished_summary = plan.sweep_dir / "task-0000" / "summary.json"
    before = finished_summary.stat().st_mtime_ns
    assert [r[0] for r in run_local(plan.sweep_dir, workers=2)] == [1]
    assert finished_summary.stat().st_mtime_ns == before

    # The same folder cannot be reused for a different sweep.
    with pytest.raises(ConfigError, match="different sweep"):
        _sweep(tmp_path, "planet.pCO2_bar=0.01")


@pytest.mark.exoplasim
def test_spinup_mode_branches_every_task_from_one_restart(tmp_path, smoke_gcm_run, monkeypatch):
    monkeypatch.setenv("ASTROHPC_SPINUP_CACHE", str(tmp_path / "spinup-cache"))
    cfg, plan = _sweep(tmp_path, "sweep.spinup_days=5", "sweep.points=[{planet.instellation_W_m2: 1300}]")
    results = list(run_local(plan.sweep_dir, workers=1))
    assert results == [(-1, "finished", None), (0, "finished", None)]
    spinup = json.loads((plan.sweep_dir / "spinup" / "summary.json").read_text())
    task = json.loads((plan.sweep_dir / "task-0000" / "summary.json").read_text())
    assert spinup["status"] == "finished"
    assert task["gcm"]["restart_file"] == str((plan.sweep_dir / "spinup" / "output" / "exoplasim_restart").resolve())
    # the task's clock continues the spin-up's: 5 days of 32 steps after a fresh run's first step
    from astrohpc.gcm.calendar import first_step

    assert spinup["gcm"]["start_step"] is None
    assert task["gcm"]["start_step"] == first_step(cfg.planet.rotation_period_days, 45.0) + 5 * 32
    manifest = aggregate(plan.sweep_dir, convert=False)
    assert manifest["spinup"]["status"] == "finished" and manifest["complete"]


@pytest.mark.exoplasim
def test_tasks_at_other_rotation_periods_start_from_the_spinups_physical_state(tmp_path, smoke_gcm_run,
                                                                              monkeypatch):
    """Branched at half the spin-up's rotation period, a task starts from the restart rescaled to its
    rotation rate: after one day its air temperatures are the same-rotation task's to within a kelvin
    or two, where the unscaled restart would have quadrupled every deviation from 250 K (and crashed)."""
    import xarray as xr

    monkeypatch.setenv("ASTROHPC_SPINUP_CACHE", str(tmp_path / "spinup-cache"))
    points = "[{planet.instellation_W_m2: 1300}, {planet.instellation_W_m2: 1300, planet.rotation_period_days: 0.5}]"
    cfg, plan = _sweep(tmp_path, "sweep.spinup_days=5", f"sweep.points={points}", "gcm.snapshot_interval_days=1")
    assert [r[1] for r in run_local(plan.sweep_dir, workers=2)] == ["finished"] * 3
    tops = []
    for task in ("task-0000", "task-0001"):
        summary = json.loads((plan.sweep_dir / task / "summary.json").read_text())
        assert summary["gcm"]["restart_rotation_period_days"] == cfg.planet.rotation_period_days == 1.0
        assert not (plan.sweep_dir / task / "restart_at_this_rotation").exists()  # read at start-up, removed
        with xr.open_dataset(plan.sweep_dir / task / "output" / "exoplasim_snapshot.nc", decode_times=False) as ds:
            w = np.cos(np.radians(ds["lat"].values))[:, None]
            ta = ds["ta"].isel(time=0).values  # [lev, lat, lon] after the first day
            tops.append([float((level * w).sum() / (w.sum() * level.shape[1])) for level in ta])
    np.testing.assert_allclose(tops[1], tops[0], atol=2.0)
    assert max(abs(t - 250.0) for t in tops[0]) > 20.0  # deviations an unscaled restart would have quadrupled


def test_a_task_that_never_ran_is_missing(tmp_path):
    cfg, plan = _sweep(tmp_path)
    manifest = aggregate(plan.sweep_dir, convert=False)
    assert manifest["counts"] == {"finished": 0, "failed": 0, "missing": 2}
    assert manifest["tasks"][0]["reason"] == "no summary.json and no log"


@pytest.mark.parametrize("log, reason", [
    ("astrohpc: gcm job 5\nastrohpc: error: planet.x must be > 0\n", "planet.x must be > 0"),
    ("running\nslurmstepd: error: *** JOB 12 ON vm CANCELLED AT 2026 DUE TO TIME LIMIT ***\n",
     "*** JOB 12 ON vm CANCELLED AT 2026 DUE TO TIME LIMIT ***"),
    ("x\n/var/spool/slurmd/job12/slurm_script: line 9: 4242 Killed  python -m astrohpc\n",
     "Killed  python -m astrohpc"),
    ("Traceback (most recent call last):\n  File x\nOSError: [Errno 28] No space left on device\n",
     "No space left on device"),
    ("astrohpc: gcm job 5\ntask 0: finished (3.0 s)\n", None),
])
def test_reason_from_a_task_log(log, reason):
    found = reason_from_log(log)
    assert (found is None) if reason is None else (reason in found)


@pytest.mark.exoplasim
def test_a_second_sweep_with_the_same_spinup_takes_it_from_the_cache(tmp_path, smoke_gcm_run, monkeypatch):
    monkeypatch.setenv("ASTROHPC_SPINUP_CACHE", str(tmp_path / "spinup-cache"))
    from astrohpc.gcm.sweep import run_spinup

    summaries = []
    for name in ("first", "second"):
        cfg = load_config(SMOKE_CONFIG, [f"run.root={tmp_path}", f"run.name={name}", "sweep.design=list",
                                         "sweep.points=[{planet.instellation_W_m2: 1300}]", "sweep.spinup_days=2",
                                         "gcm.means_interval_days=1"])
        plan = plan_sweep(cfg)
        write_plan(plan, cfg)
        summaries.append(run_spinup(plan.sweep_dir))
    first, second = tmp_path / "first" / "spinup", tmp_path / "second" / "spinup"
    assert not (first / "restored_from_cache.json").exists() and (second / "restored_from_cache.json").is_file()
    # the same run (bit-reproducible model): identical restart file, and the summary of the run that made it
    assert summaries[0]["files"] == summaries[1]["files"]
    restart = Path("output") / "exoplasim_restart"
    assert (first / restart).read_bytes() == (second / restart).read_bytes()
    # a spin-up writes no daily snapshots
    assert {f["kind"] for f in summaries[0]["files"]} == {"means", "restart"}


@pytest.mark.exoplasim
def test_aggregation_converts_with_the_sweeps_data_settings_and_a_relative_root(tmp_path, smoke_gcm_run,
                                                                                monkeypatch):
    """A smoke-size sweep run from a relative run.root: both cubes hold the physics variables of
    configs/data/exoplasim.yaml, and the report finds them (the path is not joined twice)."""
    from astrohpc.analysis.sweep_report import build_sweep_report
    from astrohpc.data.cube import read_meta

    monkeypatch.chdir(tmp_path)
    points = "[{planet.instellation_W_m2: 1250}, {planet.instellation_W_m2: 1400}]"
    cfg = load_config(SMOKE_CONFIG, ["run.root=rel/runs", "run.name=sw", "sweep.design=list", "gcm.days=5",
                                     f"sweep.points={points}"])
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    assert [r[1] for r in run_local(plan.sweep_dir, workers=2)] == ["finished", "finished"]
    manifest = aggregate(plan.sweep_dir)
    assert manifest["datacube"] == {"converted": True, "path": "datacube.h5", "kind": "snapshots"}
    assert manifest["datacube_means"]["converted"], manifest["datacube_means"]
    wanted = set(load_config(SMOKE_CONFIG).data.variables)
    for name, steps in (("datacube.h5", 5), ("datacube_means.h5", 1)):
        meta = read_meta(plan.sweep_dir / name)
        assert set(meta.variables) == wanted and set(meta.static) == {"sg", "lsm"}
        assert meta.shape[:2] == (2, steps)
        assert meta.params["instellation_W_m2"].tolist() == [1250.0, 1400.0]
    report = build_sweep_report(plan.sweep_dir, tmp_path / "report")
    text = report.read_text()
    assert "No datacube was written" not in text and "Distance from equilibrium" in text


def test_a_sweep_planned_again_with_other_resources_is_the_same_sweep(tmp_path):
    cfg, plan = _sweep(tmp_path)
    again = load_config(SMOKE_CONFIG, [f"run.root={tmp_path}", "run.name=sweep", "sweep.design=list",
                                       f"sweep.points={TWO_POINTS}", "gcm.snapshot_interval_days=0",
                                       "slurm.time=02:00:00", "slurm.ntasks_per_node=2", "train.epochs=3"])
    write_plan(plan_sweep(again), again)  # resources and training settings: the same runs
    other = load_config(SMOKE_CONFIG, [f"run.root={tmp_path}", "run.name=sweep", "sweep.design=list",
                                       f"sweep.points={TWO_POINTS}", "gcm.snapshot_interval_days=0", "gcm.days=10"])
    with pytest.raises(ConfigError, match="different sweep"):
        write_plan(plan_sweep(other), other)


@pytest.mark.exoplasim
def test_cached_tasks_of_a_branched_sweep_are_restored_in_another_folder(tmp_path, smoke_gcm_run, monkeypatch):
    """sweep.cache_tasks: the second sweep (another folder, the same spin-up and points) copies its
    task from ~/.cache/astrohpc/runs/ instead of running the model; a changed point runs anew."""
    monkeypatch.setenv("ASTROHPC_SPINUP_CACHE", str(tmp_path / "spinup-cache"))
    monkeypatch.setenv("ASTROHPC_RUN_CACHE", str(tmp_path / "run-cache"))
    from astrohpc.gcm.spinup_cache import RESTORED_NOTE

    runs = {}
    for name, point in (("first", 1300), ("second", 1300), ("third", 1310)):
        cfg = load_config(SMOKE_CONFIG, [f"run.root={tmp_path}", f"run.name={name}", "sweep.design=list",
                                         f"sweep.points=[{{planet.instellation_W_m2: {point}}}]", "sweep.spinup_days=1",
                                         "sweep.cache_tasks=true", "gcm.days=1", "gcm.means_interval_days=1",
                                         "gcm.snapshot_interval_days=0"])
        plan = plan_sweep(cfg)
        write_plan(plan, cfg)
        assert [r[1] for r in run_local(plan.sweep_dir, workers=1)] == ["finished", "finished"]
        runs[name] = plan.sweep_dir / "task-0000"
    assert not (runs["first"] / RESTORED_NOTE).exists() and (runs["second"] / RESTORED_NOTE).is_file()
    assert not (runs["third"] / RESTORED_NOTE).exists()
    means = Path("output") / "exoplasim.nc"
    assert (runs["first"] / means).read_bytes() == (runs["second"] / means).read_bytes()
    assert len(list((tmp_path / "run-cache").iterdir())) == 2


@pytest.mark.exoplasim
def test_step_cube_holds_snapshots_and_the_means_of_the_step_into_each(tmp_path, smoke_gcm_run):
    """data.step_mean_variables: datacube_step.h5 = the snapshots with pr and rlut replaced by their
    daily means, checked against ExoPlaSim's own NetCDF files read with xarray."""
    import numpy as np
    import xarray as xr

    from astrohpc.data.cube import open_file, read_meta

    cfg = load_config(SMOKE_CONFIG, [f"run.root={tmp_path}", "run.name=step", "sweep.design=list",
                                     "sweep.points=[{planet.instellation_W_m2: 1300}]", "gcm.days=3",
                                     "gcm.means_interval_days=1", "data.step_mean_variables=[pr, rlut]"])
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    assert [r[1] for r in run_local(plan.sweep_dir, workers=1)] == ["finished"]
    manifest = aggregate(plan.sweep_dir)
    assert manifest["datacube_step"]["converted"], manifest["datacube_step"]
    step = plan.sweep_dir / "datacube_step.h5"
    meta = read_meta(step, stats=False)
    assert meta.cube_id != read_meta(plan.sweep_dir / "datacube.h5", stats=False).cube_id
    out = plan.sweep_dir / "task-0000" / "output"
    with xr.open_dataset(out / "exoplasim.nc", decode_times=False) as means, \
            xr.open_dataset(out / "exoplasim_snapshot.nc", decode_times=False) as snaps, open_file(step) as f:
        fields = f["fields"][0, :3].astype(np.float64)
        for var, source in (("pr", means), ("rlut", means), ("ts", snaps), ("rst", snaps)):
            expect = source[var].values[:, ::-1]  # the cube is south -> north
            np.testing.assert_allclose(fields[:, meta.channel(var)], expect, rtol=1e-6, atol=1e-12)
    # intervals that differ cannot be merged: one clear error
    from astrohpc.data.step_means import merge_step_means
    from astrohpc.errors import DataError

    other = load_config(SMOKE_CONFIG, [f"run.root={tmp_path}", "run.name=unaligned", "sweep.design=list",
                                       "sweep.points=[{planet.instellation_W_m2: 1300}]", "gcm.days=3",
                                       "gcm.means_interval_days=3"])
    plan2 = plan_sweep(other)
    write_plan(plan2, other)
    assert [r[1] for r in run_local(plan2.sweep_dir, workers=1)] == ["finished"]
    aggregate(plan2.sweep_dir)
    with pytest.raises(DataError, match="means_interval_days = gcm.snapshot_interval_days"):
        merge_step_means(plan2.sweep_dir / "datacube.h5", plan2.sweep_dir / "datacube_means.h5", tmp_path / "x.h5",
                         ["pr"])
