"""The `slurm:` config section: a cluster profile (configs/cluster/*.yaml) that jobs inherit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional


@dataclass
class SlurmSettings:
    """Resources and site settings for the jobs a command submits.

    `extra` holds further sbatch options by their long name without dashes (e.g.
    `{"mail-type": "END"}`); they are checked against the list render_sbatch accepts.
    `setup` lines run in the job before the command (e.g. `module load openmpi`).
    """

    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    time: str = "00:30:00"
    mem: str = "1G"
    cpus_per_task: int = 1
    max_parallel: Optional[int] = None
    setup: list[str] = field(default_factory=list)
    extra: dict[str, str] = field(default_factory=dict)
