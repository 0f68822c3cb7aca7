"""Submit sbatch scripts (`sbatch --parsable`) and wait for jobs through scontrol."""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Iterable, Sequence

from astrohpc.atomic_write import write_text
from astrohpc.errors import SlurmError

log = logging.getLogger(__name__)

TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "BOOT_FAIL", "DEADLINE", "SPECIAL_EXIT",
})
# A job left PENDING for a reason that can never clear is as finished as a failed one.
NEVER_RUNS_REASONS = frozenset({"DependencyNeverSatisfied"})


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise SlurmError(f"'{tool}' not found on PATH: load Slurm (module load slurm) or start the "
                         "local cluster with 'tools/local-slurm.sh start' and export its SLURM_CONF")
    return path


def write_script(path: str | Path, text: str) -> Path:
    """Write an sbatch script atomically and make it executable."""
    path = write_text(path, text)
    path.chmod(0o755)
    return path


def submit(script: str | Path, sbatch_args: Sequence[str] = (), cwd: str | Path | None = None) -> str:
    """Run `sbatch --parsable [sbatch_args] script` and return the job id.

    sbatch_args are passed as argv (never through a shell), e.g. ["--dependency=afterany:12"].
    """
    cmd = [_require("sbatch"), "--parsable", *sbatch_args, str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise SlurmError(f"sbatch {script} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    out = proc.stdout.strip().splitlines()
    job_id = out[-1].split(";")[0] if out else ""
    if not job_id.isdigit():
        raise SlurmError(f"sbatch {script}: could not read a job id from {proc.stdout!r}")
    log.info("submitted %s as job %s", script, job_id)
    return job_id


def job_states(job_id: str) -> dict[str, str]:
    """States of a job and its array tasks: {"12_0": "COMPLETED", ...} ({"12": ...} for a plain job).

    A job Slurm no longer knows (purged after MinJobAge) maps to {job_id: "UNKNOWN"}.
    """
    proc = subprocess.run([_require("scontrol"), "show", "job", "-o", str(job_id)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return {str(job_id): "UNKNOWN"}
        raise SlurmError(f"scontrol show job {job_id} failed: {proc.stderr.strip()}")
    states = {}
    for line in proc.stdout.splitlines():
        fields = dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", line))
        if "JobId" not in fields:
            continue
        task = fields.get("ArrayTaskId")
        key = f"{fields['ArrayJobId']}_{task}" if task and "-" not in task and "," not in task else fields["JobId"]
        state = fields.get("JobState", "UNKNOWN")
        if state == "PENDING" and fields.get("Reason") in NEVER_RUNS_REASONS:
            state = f"PENDING({fields['Reason']})"
        states[key] = state
    return states


def is_finished(state: str) -> bool:
    return state in TERMINAL_STATES or state == "UNKNOWN" or state.startswith("PENDING(")


def wait_for(job_ids: Iterable[str], timeout_s: float = 600.0, poll_s: float = 1.0) -> dict[str, str]:
    """Block until every job (and each of its array tasks) is finished; return all task states."""
    job_ids = [str(j) for j in job_ids]
    deadline = time.monotonic() + timeout_s
    while True:
        states: dict[str, str] = {}
        for job_id in job_ids:
            states.update(job_states(job_id))
        if all(is_finished(s) for s in states.values()):
            return states
        if time.monotonic() > deadline:
            pending = {k: v for k, v in states.items() if not is_finished(v)}
            raise SlurmError(f"timed out after {timeout_s:.0f} s waiting for jobs {', '.join(job_ids)}; "
                             f"still running: {pending}")
        time.sleep(poll_s)
