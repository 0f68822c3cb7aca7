"""The `slurm:` config section: a cluster profile (configs/cluster/*.yaml) that jobs inherit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class SlurmSettings:
    """Resources and site settings for the jobs a command submits.

    `extra` holds further sbatch options by their long name without dashes (e.g.
    `{"mail-type": "END"}`); they are checked against the list render_sbatch accepts.
    `setup` lines run in the job before the command (e.g. `module load openmpi`).

    Every job (training, sweep, study) reads: container (an Apptainer image its command runs in,
    `apptainer exec`, with --nv where it has GPUs), binds (its bind mounts, `src[:dst[:opts]]`;
    every folder the job reads or writes, at the same path), env (variables exported in the job,
    e.g. NCCL_SOCKET_IFNAME, NCCL_IB_HCA). Training jobs (`astrohpc submit train`) also read the
    layout: nodes; gpus_per_node (G > 0: one srun task per GPU, `--ntasks-per-node=G
    --gpus-per-node=G`); ntasks_per_node (CPU ranks per node when G = 0). Study tasks take one GPU
    when G > 0; GCM sweep tasks none. Profiles: configs/cluster/, chosen at submission
    (astrohpc.launch.profiles).
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
    nodes: int = 1
    gpus_per_node: int = 0
    ntasks_per_node: int = 1
    container: Optional[str] = None
    binds: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def site_options(self, extra: bool = True) -> dict[str, Any]:
        """The sbatch options every job of this profile carries (render_sbatch keywords): partition,
        account, qos, time, then `extra` (unless extra=False: a caller that filters them itself)."""
        options: dict[str, Any] = {"partition": self.partition, "account": self.account, "qos": self.qos,
                                   "time": self.time}
        return {**options, **self.extra} if extra else options

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.gpus_per_node < 0 or self.ntasks_per_node < 1:
            raise ValueError(f"slurm.nodes and slurm.ntasks_per_node must be >= 1 and slurm.gpus_per_node >= 0 "
                             f"(got {self.nodes}, {self.ntasks_per_node}, {self.gpus_per_node})")
