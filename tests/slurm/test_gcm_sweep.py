"""A real 2-task ExoPlaSim array on the local Slurm cluster, one task with an invalid parameter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astrohpc.config import load_config
from astrohpc.gcm.sweep import plan_sweep, write_plan
from astrohpc.gcm.sweep_slurm import job_ids, submit_sweep
from astrohpc.launch import wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.exoplasim, pytest.mark.usefixtures("smoke_gcm_run")]

SMOKE_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "gcm" / "smoke.yaml"


def test_array_manifest_marks_the_invalid_task_failed_and_keeps_the_other(slurm_workdir):
    cfg = load_config(SMOKE_CONFIG, [
        f"run.root={slurm_workdir}", "run.name=array2", "sweep.design=list",
        "sweep.points=[{planet.instellation_W_m2: 1200}, {planet.instellation_W_m2: -100}]",
        "gcm.snapshot_interval_days=0", "slurm.time=00:05:00", "slurm.mem=500M"])
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    record = submit_sweep(cfg, plan.sweep_dir)
    assert [a["array"] for a in record["arrays"]] == ["0-1"]
    states = wait_for(job_ids(record), timeout_s=300, poll_s=1.0)
    array = record["arrays"][0]["job_id"]
    assert states[f"{array}_0"] == "COMPLETED" and states[f"{array}_1"] == "FAILED"
    assert states[record["aggregate_job"]] == "COMPLETED"

    manifest = json.loads((plan.sweep_dir / "manifest.json").read_text())
    good, bad = manifest["tasks"]
    assert good["status"] == "finished" and good["log"] == f"logs/task-{array}_0.out"
    assert (plan.sweep_dir / "task-0000" / "output" / "exoplasim.nc").is_file()
    assert bad["status"] == "failed" and "instellation_W_m2 must be >= 0" in bad["reason"]
    assert "instellation_W_m2 must be >= 0" in (plan.sweep_dir / bad["log"]).read_text()

    # Re-submitting leaves the finished task alone: only task 1 goes into the new array.
    again = submit_sweep(cfg, plan.sweep_dir)
    assert [a["tasks"] for a in again["arrays"]] == [[1]]
    wait_for(job_ids(again), timeout_s=300, poll_s=1.0)
    history = json.loads((plan.sweep_dir / "submission.json").read_text())["submissions"]
    assert len(history) == 2
    manifest = json.loads((plan.sweep_dir / "manifest.json").read_text())
    assert manifest["tasks"][0]["log"] == f"logs/task-{array}_0.out"  # the log of the run that finished it


def test_a_cancelled_task_is_failed_not_finished(slurm_workdir):
    import subprocess
    import time

    from astrohpc.launch import job_states

    cfg = load_config(SMOKE_CONFIG, [
        f"run.root={slurm_workdir}", "run.name=cancelled", "sweep.design=list",
        "sweep.points=[{planet.instellation_W_m2: 1300}]", "gcm.days=300", "gcm.snapshot_interval_days=0",
        "slurm.time=00:05:00", "slurm.mem=500M"])
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    record = submit_sweep(cfg, plan.sweep_dir)
    task = f"{record['arrays'][0]['job_id']}_0"
    deadline = time.monotonic() + 120
    while not (plan.sweep_dir / "task-0000" / "exoplasim.log").is_file():  # the model has started
        assert time.monotonic() < deadline and job_states(task).get(task) in ("PENDING", "RUNNING")
        time.sleep(0.5)
    time.sleep(2)
    subprocess.run(["scancel", task], check=True)
    wait_for(job_ids(record), timeout_s=120, poll_s=1.0)
    manifest = json.loads((plan.sweep_dir / "manifest.json").read_text())
    (entry,) = manifest["tasks"]
    assert entry["status"] == "failed"
    assert entry["reason"].startswith("terminated by signal SIGTERM"), entry["reason"]
    summary = json.loads((plan.sweep_dir / "task-0000" / "summary.json").read_text())
    assert summary["status"] == "failed"


def test_spinup_then_array_branches_from_its_restart(slurm_workdir):
    cfg = load_config(SMOKE_CONFIG, [
        f"run.root={slurm_workdir}", "run.name=spun", "sweep.design=list", "sweep.spinup_days=5",
        "sweep.points=[{planet.instellation_W_m2: 1300}, {planet.instellation_W_m2: 1400}]",
        "gcm.snapshot_interval_days=0", "slurm.time=00:05:00", "slurm.mem=500M"])
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    record = submit_sweep(cfg, plan.sweep_dir)
    assert record["spinup_job"] and [a["tasks"] for a in record["arrays"]] == [[0, 1]]
    states = wait_for(job_ids(record), timeout_s=300, poll_s=1.0)
    assert set(states.values()) == {"COMPLETED"}
    manifest = json.loads((plan.sweep_dir / "manifest.json").read_text())
    assert manifest["complete"] and manifest["spinup"]["status"] == "finished"
    restart = str((plan.sweep_dir / "spinup" / "output" / "exoplasim_restart").resolve())
    for i in range(2):
        summary = json.loads((plan.sweep_dir / f"task-{i:04d}" / "summary.json").read_text())
        assert summary["gcm"]["restart_file"] == restart
