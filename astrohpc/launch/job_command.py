"""What every rendered job runs, in one place: the astrohpc command (on the host, or inside the
image with `apptainer exec`) and the variables the job exports.

    astrohpc_command(["gcm", "task", "/s"], slurm)   -> [python, "-m", "astrohpc", "gcm", "task", "/s"]
    (slurm.container = "a.sif", binds [/scratch])     -> ["apptainer", "exec", "--bind", "/scratch:/scratch",
                                                          "a.sif", "astrohpc", "gcm", "task", "/s"]

Train, sweep and study scripts all build their command here, so a profile's container, binds and
env reach every job the same way.
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from astrohpc.launch.container import wrap


def astrohpc_command(args: Sequence[str], slurm: Any, python: str = sys.executable, nv: bool = False) -> list[str]:
    """`astrohpc ARGS` as argv: `python -m astrohpc` on the host, or the image's `astrohpc` under
    `apptainer exec [--nv] --bind ...` when slurm.container is set. nv: the job has GPUs."""
    if slurm.container:
        return wrap(["astrohpc", *args], slurm.container, slurm.binds, nv=nv)
    return [python, "-m", "astrohpc", *args]


def job_environment(slurm: Any, **variables: str) -> dict[str, str]:
    """The variables a job exports: unbuffered Python, `variables`, then the profile's slurm.env
    (the site's word wins: NCCL_SOCKET_IFNAME, OMP_NUM_THREADS, ...). Apptainer passes them into
    the image (no --cleanenv)."""
    return {"PYTHONUNBUFFERED": "1", **variables, **{k: str(v) for k, v in slurm.env.items()}}
