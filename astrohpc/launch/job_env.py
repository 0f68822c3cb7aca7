"""The Slurm job environment as one small table, instead of scattered os.environ reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping, Optional

# field -> SLURM_* variable
SLURM_VARIABLES = {
    "job_id": "SLURM_JOB_ID",
    "job_name": "SLURM_JOB_NAME",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "array_task_count": "SLURM_ARRAY_TASK_COUNT",
    "array_task_min": "SLURM_ARRAY_TASK_MIN",
    "array_task_max": "SLURM_ARRAY_TASK_MAX",
    "cluster_name": "SLURM_CLUSTER_NAME",
    "partition": "SLURM_JOB_PARTITION",
    "nodelist": "SLURM_JOB_NODELIST",
    "num_nodes": "SLURM_JOB_NUM_NODES",
    "ntasks": "SLURM_NTASKS",
    "procid": "SLURM_PROCID",
    "localid": "SLURM_LOCALID",
    "nodeid": "SLURM_NODEID",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "submit_dir": "SLURM_SUBMIT_DIR",
    "restart_count": "SLURM_RESTART_COUNT",
}


@dataclass(frozen=True)
class SlurmJobEnv:
    """What Slurm tells a job about itself; every field is None outside Slurm."""

    job_id: Optional[str] = None
    job_name: Optional[str] = None
    array_job_id: Optional[str] = None
    array_task_id: Optional[str] = None
    array_task_count: Optional[str] = None
    array_task_min: Optional[str] = None
    array_task_max: Optional[str] = None
    cluster_name: Optional[str] = None
    partition: Optional[str] = None
    nodelist: Optional[str] = None
    num_nodes: Optional[str] = None
    ntasks: Optional[str] = None
    procid: Optional[str] = None
    localid: Optional[str] = None
    nodeid: Optional[str] = None
    cpus_per_task: Optional[str] = None
    submit_dir: Optional[str] = None
    restart_count: Optional[str] = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> SlurmJobEnv:
        environ = os.environ if environ is None else environ
        return cls(**{f.name: environ.get(SLURM_VARIABLES[f.name]) for f in fields(cls)})

    @property
    def in_slurm(self) -> bool:
        return self.job_id is not None

    def as_dict(self) -> dict[str, str]:
        """Only the fields that are set."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}


# Arrays split at MaxArraySize start at an offset: the job's script exports it, the task adds it.
ARRAY_OFFSET_VARIABLE = "ASTROHPC_TASK_OFFSET"


def array_index(environ: Mapping[str, str] | None = None) -> Optional[int]:
    """This array task's index in the whole task list: SLURM_ARRAY_TASK_ID + ASTROHPC_TASK_OFFSET;
    None outside an array job."""
    environ = os.environ if environ is None else environ
    task = SlurmJobEnv.from_environ(environ).array_task_id
    return None if task is None else int(task) + int(environ.get(ARRAY_OFFSET_VARIABLE, "0"))
