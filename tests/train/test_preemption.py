"""Preemption: Slurm --signal parsing, the signal flag, agreement over 2 gloo ranks, and requeue
(with a fake scontrol, and for real on the local Slurm cluster when it is up)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from test_distributed import run_ranks  # tests/train is on sys.path (pytest's rootdir import mode)

from astrohpc.errors import ConfigError
from astrohpc.launch.job_env import SlurmJobEnv
from astrohpc.train.preemption import PreemptionFlag, parse_signal, requeue


@pytest.mark.parametrize("spec, expected", [
    ("B:USR1@120", (signal.SIGUSR1, 120, True)),
    ("USR1@90", (signal.SIGUSR1, 90, False)),
    ("SIGTERM", (signal.SIGTERM, None, False)),
    ("10@60", (signal.SIGUSR1, 60, False)),
    ("R:B:USR2@30", (signal.SIGUSR2, 30, True)),
    ("RB:usr2", (signal.SIGUSR2, None, True)),
    ("R:TERM@0", (signal.SIGTERM, 0, False)),
])
def test_parse_signal(spec, expected):
    assert parse_signal(spec) == expected


@pytest.mark.parametrize("spec", ["", "B:", "X:USR1", "USR1@", "USR1@ten", "B:B:USR1", "NOSUCH@60", "999@60",
                                  "USR1@70000", "B:USR1 @60"])
def test_parse_signal_rejects_with_the_valid_form(spec):
    with pytest.raises(ConfigError, match=r"\[R:\]\[B:\]SIG\[@seconds\]"):
        parse_signal(spec)


def test_flag_records_the_signal_and_restore_puts_the_old_handler_back():
    got = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
    try:
        flag = PreemptionFlag().install()
        assert not flag.raised and flag.signal_name is None and not flag.agreed()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.raised and flag.signal_name == "SIGUSR1" and flag.agreed()
        assert got == []  # the test's own handler did not run while the flag was installed
        flag.restore()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert got == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_flag_as_context_manager_keeps_the_first_signal():
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionFlag() as flag:
        assert signal.getsignal(signal.SIGTERM) != before
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert flag.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) == before


AGREE_PROGRAM = textwrap.dedent("""
    import json, os, signal
    from astrohpc.train.distributed import detect, init_process_group, shutdown
    from astrohpc.train.preemption import PreemptionFlag
    env = detect()
    init_process_group(env, timeout_s=60)
    with PreemptionFlag() as flag:
        before = flag.agreed()
        if env.rank == 1:
            os.kill(os.getpid(), signal.SIGUSR1)
        after = flag.agreed()
    print(json.dumps({"rank": env.rank, "local": flag.raised, "before": before, "after": after}))
    shutdown()
""")


def test_agreed_over_two_gloo_ranks_when_only_rank_1_got_the_signal():
    results = run_ranks(AGREE_PROGRAM)
    assert [(r["rank"], r["local"]) for r in results] == [(0, False), (1, True)]
    assert [r["before"] for r in results] == [False, False]
    assert [r["after"] for r in results] == [True, True]


class FakeRun:
    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.argv: list[list[str]] = []
        self.returncode, self.stderr = returncode, stderr

    def __call__(self, argv, **kwargs):
        self.argv.append(list(argv))
        return subprocess.CompletedProcess(argv, self.returncode, "", self.stderr)


def test_requeue_a_plain_job():
    run = FakeRun()
    ok, message = requeue(SlurmJobEnv(job_id="77", restart_count="1"), max_restarts=3, run=run)
    assert ok and "77" in message and run.argv == [["scontrol", "requeue", "77"]]


def test_requeue_an_array_task_by_its_array_id():
    run = FakeRun()
    job = SlurmJobEnv.from_environ({"SLURM_JOB_ID": "105", "SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "5"})
    assert requeue(job, max_restarts=1, run=run)[0]
    assert run.argv == [["scontrol", "requeue", "100_5"]]


def test_requeue_refuses_at_the_restart_limit_and_outside_slurm():
    run = FakeRun()
    ok, reason = requeue(SlurmJobEnv(job_id="77", restart_count="3"), max_restarts=3, run=run)
    assert not ok and "limit is 3" in reason
    ok, reason = requeue(SlurmJobEnv(), max_restarts=3, run=run)
    assert not ok and "not in a Slurm job" in reason
    assert run.argv == []


def test_requeue_from_the_host_writes_the_request_and_runs_no_scontrol(tmp_path):
    """Inside the image there is no scontrol: rank 0 asks the batch shell (train.sbatch) instead."""
    run, request = FakeRun(), tmp_path / "requeue-request"
    environ = {"ASTROHPC_REQUEUE_FILE": str(request)}
    ok, message = requeue(SlurmJobEnv(job_id="77", restart_count="1"), max_restarts=3, run=run, environ=environ)
    assert ok and "batch shell" in message and run.argv == []
    assert request.read_text() == "77 2\n"
    # the restart limit still holds, and an unwritable request is reported, not raised
    request.unlink()
    assert not requeue(SlurmJobEnv(job_id="77", restart_count="3"), 3, run=run, environ=environ)[0]
    assert not request.exists()
    bad = {"ASTROHPC_REQUEUE_FILE": str(tmp_path / "missing" / "request")}
    ok, reason = requeue(SlurmJobEnv(job_id="77"), 3, run=run, environ=bad)
    assert not ok and "cannot write the requeue request" in reason and run.argv == []


def test_requeue_reports_a_failing_scontrol_without_raising():
    run = FakeRun(returncode=1, stderr="scontrol: error: Requested operation is presently disabled\n")
    ok, reason = requeue(SlurmJobEnv(job_id="77"), max_restarts=3, run=run)
    assert not ok and reason == "scontrol: error: Requested operation is presently disabled"

    def missing(argv, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", "scontrol")

    ok, reason = requeue(SlurmJobEnv(job_id="77"), max_restarts=3, run=missing)
    assert not ok and "No such file" in reason


REQUEUE_PROGRAM = textwrap.dedent("""
    import pathlib, sys, time
    from astrohpc.launch import SlurmJobEnv
    from astrohpc.train.preemption import requeue
    job = SlurmJobEnv.from_environ()
    marker = pathlib.Path(sys.argv[1], f"restart-{job.restart_count or '0'}")
    marker.write_text("started\\n")
    ok, message = requeue(job, max_restarts=1)
    with marker.open("a") as f:  # not reached when the requeue ends this run first
        f.write(f"{ok} {message}\\n")
    if ok:
        time.sleep(60)  # scontrol requeue ends this run
""")


def release_requeued(job_id: str, timeout_s: float = 60.0) -> None:
    """Let the requeued job start in 3 s: Slurm holds a requeued batch job back by the credential
    lifetime (BeginTime + 121 s by default), longer than a test should wait. Not at once: slurmd
    refuses a credential issued in the same second as the revocation of the killed run's."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        show = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True).stdout
        if "Restarts=1" in show and "JobState=PENDING" in show:
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now+3"], check=True)
            return
        if "JobState=COMPLETED" in show or "JobState=FAILED" in show:
            return
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} was not requeued within {timeout_s:.0f} s")


@pytest.mark.slurm
def test_requeue_on_the_local_cluster_runs_the_job_twice(slurm_workdir):
    import shutil

    from astrohpc.launch import render_sbatch, submit, wait_for, write_script

    if shutil.which("sbatch") is None:
        pytest.skip("sbatch is not on PATH (tools/local-slurm.sh start, then eval \"$(tools/local-slurm.sh env)\")")
    markers = slurm_workdir / "markers"
    markers.mkdir()
    script = write_script(slurm_workdir / "requeue.sbatch", render_sbatch(
        "job.sbatch", [sys.executable, "-c", REQUEUE_PROGRAM, str(markers)], job_name="t-requeue",
        time="00:02:00", mem="200M", requeue=True, output=f"{slurm_workdir}/%j.out", open_mode="append"))
    job_id = submit(script)
    release_requeued(job_id)
    states = wait_for([job_id], timeout_s=60, poll_s=1.0)
    log = (slurm_workdir / f"{job_id}.out").read_text()
    assert states == {job_id: "COMPLETED"}, log
    assert "DUE TO JOB REQUEUE" in log and log.count(f"astrohpc: job {job_id}") == 2
    assert sorted(p.name for p in markers.iterdir()) == ["restart-0", "restart-1"]
    assert (markers / "restart-0").read_text().startswith("started\n")
    second = (markers / "restart-1").read_text().splitlines()
    assert second[0] == "started" and second[1].startswith("False ") and "limit is 1" in second[1]
