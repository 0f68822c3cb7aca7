"""A real 4-task array and dependent jobs on the local Slurm cluster, through the project's helpers."""

from __future__ import annotations

import sys

import pytest

from astrohpc.launch import job_states, render_sbatch, submit, wait_for, write_script

pytestmark = pytest.mark.slurm

TASK_PROGRAM = ("import os, sys; from astrohpc.launch import SlurmJobEnv; e = SlurmJobEnv.from_environ(); "
                "print('task', e.array_task_id, 'of', e.array_job_id, 'count', e.array_task_count); "
                "sys.exit(int(os.environ.get('FAIL_TASK', '-1') == e.array_task_id))")


def _array_script(tmp, **extra):
    return write_script(tmp / "array.sbatch", render_sbatch(
        "job.sbatch", [sys.executable, "-c", TASK_PROGRAM], job_name="t-array", array="0-3",
        time="00:02:00", mem="100M", output=f"{tmp}/%A_%a.out", **extra))


def test_array_of_four_then_dependency(slurm_workdir):
    tmp = slurm_workdir
    array_id = submit(_array_script(tmp))
    after = write_script(tmp / "after.sbatch", render_sbatch(
        "job.sbatch", ["bash", "-c", f"ls {tmp} | grep -c '^{array_id}_[0-3].out$'"], job_name="t-after",
        time="00:01:00", mem="50M", output=f"{tmp}/after-%j.out"))
    after_id = submit(after, [f"--dependency=afterok:{array_id}"])
    states = wait_for([array_id, after_id], timeout_s=120)
    assert states == {**{f"{array_id}_{i}": "COMPLETED" for i in range(4)}, after_id: "COMPLETED"}
    for i in range(4):
        log = (tmp / f"{array_id}_{i}.out").read_text()
        assert f"task {i} of {array_id} count 4" in log
    # the dependent job started only after every task had written its log
    assert (tmp / f"after-{after_id}.out").read_text().strip().splitlines()[-1] == "4"


def test_failed_task_is_reported_and_blocks_afterok(slurm_workdir):
    tmp = slurm_workdir
    array_id = submit(_array_script(tmp, export="ALL,FAIL_TASK=2"))
    after = write_script(tmp / "after.sbatch", render_sbatch(
        "job.sbatch", ["true"], job_name="t-blocked", time="00:01:00", mem="50M", output=f"{tmp}/after-%j.out"))
    after_id = submit(after, [f"--dependency=afterok:{array_id}"])
    states = wait_for([array_id, after_id], timeout_s=120)
    assert states[f"{array_id}_2"] == "FAILED"
    assert [states[f"{array_id}_{i}"] for i in (0, 1, 3)] == ["COMPLETED"] * 3
    assert states[after_id] == "PENDING(DependencyNeverSatisfied)"
    import subprocess

    subprocess.run(["scancel", after_id], check=True)
    assert job_states(after_id)[after_id] in {"CANCELLED", "PENDING(DependencyNeverSatisfied)"}


def test_sbatch_rejects_what_slurm_rejects(slurm_workdir):
    """An option of valid form that the cluster refuses surfaces as SlurmError with sbatch's reason."""
    from astrohpc.errors import SlurmError

    script = write_script(slurm_workdir / "bad.sbatch", render_sbatch(
        "job.sbatch", ["true"], partition="no-such-partition", output=f"{slurm_workdir}/x.out"))
    with pytest.raises(SlurmError, match="invalid partition"):
        submit(script)
