"""The one distributed-environment detector every entry point calls: who am I, how many are we,
where is rank 0, which device is mine.

`detect()` reads the launcher's variables in this order; the first that matches wins:

1. torchrun (or any env:// launch): RANK and WORLD_SIZE, plus LOCAL_RANK, LOCAL_WORLD_SIZE,
   MASTER_ADDR, MASTER_PORT. Without LOCAL_* the ranks are taken to share one node; without
   MASTER_ADDR that node is 127.0.0.1; MASTER_PORT defaults to 29500.
2. Open MPI launched *inside* a Slurm allocation without srun (`mpirun` in an sbatch script):
   OMPI_COMM_WORLD_SIZE is set and there is no srun step (below). mpirun started this process,
   so its variables are the truth; the SLURM_* ones describe the allocation around it.
3. Slurm, a process started by srun: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID and the tasks per
   node (SLURM_STEP_TASKS_PER_NODE, SLURM_NTASKS_PER_NODE or SLURM_TASKS_PER_NODE, e.g. "4(x2)").
   The step's values (SLURM_STEP_*) come first because a step may use part of the allocation.
   MASTER_ADDR is the first host of the step's node list, expanded in Python (the image a task
   runs in has no `scontrol`; train.sbatch exports MASTER_ADDR/MASTER_PORT from the host anyway)
   unless MASTER_ADDR is exported; MASTER_PORT is 20000 + job id % 20000 unless exported, so every task
   of one job derives the same port and two jobs sharing a node rarely collide.
   If OMPI_COMM_WORLD_* are set as well, Slurm is used when both agree on the size (srun of an
   Open MPI program); when they disagree mpirun runs inside a step (or launched its daemons with
   srun, one task per node) and Open MPI wins.
4. Open MPI without Slurm: OMPI_COMM_WORLD_RANK / _SIZE / _LOCAL_RANK / _LOCAL_SIZE; MASTER_ADDR
   must be exported unless every rank is on this node (127.0.0.1); MASTER_PORT defaults to 29500.
5. Otherwise a single process on this host.

A "srun step" is a SLURM_STEP_ID (or SLURM_STEPID) other than the batch, extern and interactive
steps (4294967294, 4294967295, 4294967290). The sbatch script itself runs in the batch step with
SLURM_PROCID=0 and SLURM_NTASKS = the tasks asked for, yet it is one process: with more than one
task that is a forgotten `srun` and detect() raises LaunchError instead of training on one rank.
With one task the batch step is a one-rank Slurm run.

GPUs: with CUDA devices the backend is nccl and rank r uses cuda:<local rank>, which needs every
GPU of the node visible to every rank (at least as many GPUs as ranks on the node). When Slurm
binds GPUs per task (SLURM_GPUS_PER_TASK, or SLURM_GPU_BIND per_task:N / single:1 / map_gpu /
mask_gpu) each task sees only its own GPUs, so every rank uses cuda:0. Without CUDA: gloo, cpu,
unless GPUs were allocated (SLURM_GPUS_ON_NODE, SLURM_JOB_GPUS, SLURM_STEP_GPUS, SLURM_GPUS*,
CUDA_VISIBLE_DEVICES): then torch cannot use them (a CPU build, a driver older than its CUDA, a
container started without --nv) and detect() raises LaunchError naming the build and the fix,
instead of training on CPU without a word. ASTROHPC_ALLOW_CPU=1 allows it on purpose.
A world of one rank needs no process group: init_process_group() does nothing then.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Callable, Mapping, Optional

from astrohpc.errors import LaunchError

log = logging.getLogger(__name__)

DEFAULT_PORT = 29500
SLURM_PORT_BASE = 20000  # Slurm jobs use ports 20000-39999, below Linux's ephemeral range (32768+ on
SLURM_PORT_SPAN = 20000  # most, so a collision with a client socket is possible but rare)
# SLURM_STEP_ID of steps that are not srun steps: batch script, extern (adopted ssh), interactive (salloc)
NON_SRUN_STEPS = frozenset({"batch", "extern", "interactive", "4294967294", "4294967295", "4294967290"})
LOCALHOST = "127.0.0.1"


@dataclass(frozen=True)
class DistEnv:
    """One process's place in the run. rank / world_size over all processes; local_rank /
    local_world_size on this node; node_count nodes; master_addr:master_port is rank 0's
    rendezvous (env://). backend "nccl" or "gloo"; device "cuda:<n>" or "cpu"."""

    launcher: str
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    node_count: int
    master_addr: str
    master_port: int
    backend: str = "gloo"  # detect() sets both once the layout is checked
    device: str = "cpu"

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def describe(self) -> dict:
        """Every field plus is_distributed, for provenance and logs."""
        return {**asdict(self), "is_distributed": self.is_distributed}


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand a Slurm node list in Python, as `scontrol show hostnames` does, without a Slurm client
    (the image a job runs in has none): "gpu[01-03,07],cpu7" -> gpu01 gpu02 gpu03 gpu07 cpu7;
    "a[1-2]-ib[3-4]" -> a1-ib3 a1-ib4 a2-ib3 a2-ib4 (zero padding kept). Pure: every rank gets the
    same list from the same string. Raises LaunchError for a list it cannot read.
    """
    hosts: list[str] = []
    for item in _split_top_level(nodelist.strip()):
        hosts += _expand_host(item, nodelist)
    if not hosts:
        raise LaunchError(f"the Slurm node list {nodelist!r} holds no host; export MASTER_ADDR=<host of rank 0>")
    return hosts


def _split_top_level(text: str) -> list[str]:
    """Split on the commas outside brackets."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise LaunchError(f"cannot read the Slurm node list {text!r} (unbalanced brackets); "
                              "export MASTER_ADDR=<host of rank 0>")
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    if depth:
        raise LaunchError(f"cannot read the Slurm node list {text!r} (an unclosed '['); "
                          "export MASTER_ADDR=<host of rank 0>")
    return [item for item in [*items, text[start:]] if item]


def _expand_host(pattern: str, nodelist: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", pattern)
    if match is None:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", pattern):
            raise LaunchError(f"cannot read the host {pattern!r} in the Slurm node list {nodelist!r}; "
                              "export MASTER_ADDR=<host of rank 0>")
        return [pattern]
    values: list[str] = []
    for part in match.group(1).split(","):
        bounds = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if bounds is None or (bounds.group(2) and int(bounds.group(2)) < int(bounds.group(1))):
            raise LaunchError(f"cannot read the range {part!r} in the Slurm node list {nodelist!r}; "
                              "export MASTER_ADDR=<host of rank 0>")
        first, last = bounds.group(1), bounds.group(2) or bounds.group(1)
        values += [str(n).zfill(len(first)) for n in range(int(first), int(last) + 1)]
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [h for value in values for h in _expand_host(f"{head}{value}{tail}", nodelist)]


def nodelist_hosts(nodelist: str) -> list[str]:
    """Expand a Slurm node list: in Python (expand_nodelist); `scontrol show hostnames` only for a
    form the parser does not read, when scontrol is on PATH (it is not inside the container)."""
    try:
        return expand_nodelist(nodelist)
    except LaunchError:
        scontrol = shutil.which("scontrol")
        if scontrol is None:
            raise
    proc = subprocess.run([scontrol, "show", "hostnames", nodelist], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LaunchError(f"'scontrol show hostnames {nodelist}' failed: {proc.stderr.strip()}; "
                          "export MASTER_ADDR=<first host of the job> to skip it")
    return proc.stdout.split()


def detect(environ: Optional[Mapping[str, str]] = None, cuda_devices: Optional[int] = None,
           hostnames: Optional[Callable[[str], list[str]]] = None) -> DistEnv:
    """The distributed environment of this process (order and rules: module docstring).

    environ: the variables to read (default os.environ). cuda_devices: CUDA devices visible to
    this process (default torch.cuda.device_count()). hostnames: expands a Slurm node list
    (default nodelist_hosts: in Python, no Slurm client needed). Raises LaunchError naming the fix when the launch is
    inconsistent.
    """
    environ = os.environ if environ is None else environ
    hostnames = nodelist_hosts if hostnames is None else hostnames
    if "RANK" in environ or "WORLD_SIZE" in environ:
        layout = _torchrun(environ)
    elif "OMPI_COMM_WORLD_SIZE" in environ and not _open_mpi_runs_inside_srun(environ):
        layout = _open_mpi(environ)
    elif "SLURM_PROCID" in environ or "SLURM_JOB_ID" in environ:
        layout = _slurm(environ, hostnames)
    elif "OMPI_COMM_WORLD_SIZE" in environ:
        layout = _open_mpi(environ)
    else:
        layout = DistEnv("single", 0, 1, 0, 1, 1, LOCALHOST, DEFAULT_PORT)
    _check_layout(layout)
    devices = _cuda_device_count() if cuda_devices is None else cuda_devices
    if devices <= 0:
        _refuse_allocated_gpus_without_cuda(environ)
    backend, device = _device(layout, devices, gpus_bound_per_task=_slurm_binds_gpus_per_task(environ))
    env = replace(layout, backend=backend, device=device)
    log.debug("distributed environment: %s", env.describe())
    return env


def init_process_group(env: DistEnv, timeout_s: float = 600.0) -> None:
    """Join the env:// process group of `env` (nothing to do for one rank).

    Exports MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE where
    missing (Slurm and Open MPI do not set them; all six so that a later detect() in this process
    reads the same layout, as "torchrun"), and for nccl binds this process to its GPU first.
    """
    if not env.is_distributed:
        log.debug("one rank: no process group")
        return
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise LaunchError("this torch build has no torch.distributed; install a build with it to run "
                          f"{env.world_size} ranks")
    if dist.is_initialized():
        if dist.get_world_size() != env.world_size or dist.get_rank() != env.rank:
            raise LaunchError(f"a process group of rank {dist.get_rank()}/{dist.get_world_size()} already exists, "
                              f"but this launch is rank {env.rank}/{env.world_size}; call shutdown() first")
        return
    for key, value in (("MASTER_ADDR", env.master_addr), ("MASTER_PORT", env.master_port), ("RANK", env.rank),
                       ("WORLD_SIZE", env.world_size), ("LOCAL_RANK", env.local_rank),
                       ("LOCAL_WORLD_SIZE", env.local_world_size)):
        os.environ.setdefault(key, str(value))
    if env.backend == "nccl":
        torch.cuda.set_device(env.device)
    log.info("rank %d/%d (%s, %s on %s) joining %s:%d", env.rank, env.world_size, env.launcher, env.backend,
             env.device, env.master_addr, env.master_port)
    dist.init_process_group(env.backend, init_method="env://", rank=env.rank, world_size=env.world_size,
                            timeout=timedelta(seconds=timeout_s))


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        # every rank reaches this point before any leaves: a rank tearing down its gloo pairs while
        # a peer still sends makes the peer abort ("terminate called without an active exception")
        dist.barrier()
        dist.destroy_process_group()


def _parse_int(key: str, value: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise LaunchError(f"{key}={value!r} is not an integer; unset it or give a whole number") from None


def _int(environ: Mapping[str, str], key: str, default: Optional[int] = None) -> int:
    value = environ.get(key)
    if value is None:
        if default is None:
            raise LaunchError(f"{key} is not set; the launcher sets it (torchrun, srun or mpirun), "
                              "do not start ranks by hand without it")
        return default
    return _parse_int(key, value)


def _first_int(environ: Mapping[str, str], keys: tuple[str, ...], default: int) -> int:
    """The first of `keys` that is set, as an integer."""
    key = next((k for k in keys if environ.get(k)), None)
    return default if key is None else _parse_int(key, environ[key])


def _port(environ: Mapping[str, str], default: int) -> int:
    port = _int(environ, "MASTER_PORT", default)
    if not 1 <= port <= 65535:
        raise LaunchError(f"MASTER_PORT={port} is not a TCP port; export a free port in 1024-65535")
    return port


def _first(environ: Mapping[str, str], *keys: str) -> Optional[str]:
    return next((environ[k] for k in keys if environ.get(k)), None)


def _torchrun(environ: Mapping[str, str]) -> DistEnv:
    if "RANK" not in environ or "WORLD_SIZE" not in environ:
        given = "RANK" if "RANK" in environ else "WORLD_SIZE"
        raise LaunchError(f"{given} is set without {'WORLD_SIZE' if given == 'RANK' else 'RANK'}; launch with "
                          "torchrun, or export RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT together")
    rank, world = _int(environ, "RANK"), _int(environ, "WORLD_SIZE")
    if "LOCAL_RANK" in environ or "LOCAL_WORLD_SIZE" in environ:
        local_rank, local_world = _int(environ, "LOCAL_RANK"), _int(environ, "LOCAL_WORLD_SIZE")
    else:  # a hand-made env:// launch: every rank on this node
        local_rank, local_world = rank, world
    if local_world > 0 and world % local_world:
        raise LaunchError(f"{world} ranks do not split evenly into nodes of {local_world}; launch with torchrun "
                          "--nnodes=N --nproc-per-node=G (the same G on every node)")
    nodes = _int(environ, "GROUP_WORLD_SIZE", world // local_world if local_world > 0 else 1)
    addr = environ.get("MASTER_ADDR") or _local_master(world, local_world, "torchrun --rdzv-endpoint=HOST:PORT")
    return DistEnv("torchrun", rank, world, local_rank, local_world, nodes, addr, _port(environ, DEFAULT_PORT))


def _local_master(world: int, local_world: int, fix: str) -> str:
    if local_world == world:
        return LOCALHOST
    raise LaunchError(f"MASTER_ADDR is not set and the {world} ranks span several nodes ({local_world} on this one); "
                      f"export MASTER_ADDR=<host of rank 0> (or use {fix})")


def _open_mpi(environ: Mapping[str, str]) -> DistEnv:
    rank, world = _int(environ, "OMPI_COMM_WORLD_RANK"), _int(environ, "OMPI_COMM_WORLD_SIZE")
    local_rank = _int(environ, "OMPI_COMM_WORLD_LOCAL_RANK")
    local_world = _int(environ, "OMPI_COMM_WORLD_LOCAL_SIZE")
    if local_world > 0 and world % local_world:
        raise LaunchError(f"Open MPI placed {local_world} of {world} ranks on this node, so nodes hold different "
                          "numbers of ranks; give every node the same: mpirun --map-by ppr:N:node")
    addr = environ.get("MASTER_ADDR") or _local_master(world, local_world, "mpirun -x MASTER_ADDR=$(hostname)")
    # assumes the same ranks on every node (checked only on this one)
    nodes = max(world // max(local_world, 1), 1)
    return DistEnv("openmpi", rank, world, local_rank, local_world, nodes, addr, _port(environ, DEFAULT_PORT))


def _srun_step(environ: Mapping[str, str]) -> bool:
    step = _first(environ, "SLURM_STEP_ID", "SLURM_STEPID")
    return step is not None and step.strip() not in NON_SRUN_STEPS


def _open_mpi_runs_inside_srun(environ: Mapping[str, str]) -> bool:
    """True when srun started this Open MPI process directly (both agree on the size): use Slurm."""
    if not _srun_step(environ):
        return False
    slurm_size = _first(environ, "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")
    return slurm_size is not None and slurm_size.strip() == environ["OMPI_COMM_WORLD_SIZE"].strip()


def tasks_per_node(spec: str) -> list[int]:
    """Expand Slurm's tasks-per-node list: "2(x3),1" -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if m is None:
            raise LaunchError(f"cannot read the Slurm tasks per node {spec!r} (expected e.g. '4(x2)' or '2,1'); "
                              "launch with srun --ntasks-per-node=N")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def _slurm(environ: Mapping[str, str], hostnames: Callable[[str], list[str]]) -> DistEnv:
    job_id = _first_int(environ, ("SLURM_JOB_ID", "SLURM_JOBID"), -1)
    port = _port(environ, DEFAULT_PORT if job_id < 0 else SLURM_PORT_BASE + job_id % SLURM_PORT_SPAN)
    if not _srun_step(environ):
        ntasks = _int(environ, "SLURM_NTASKS", 1)
        if ntasks > 1:
            raise LaunchError(f"this is the batch script of a {ntasks}-task Slurm job, one process, not {ntasks} "
                              f"ranks; launch with srun (srun python ...) so that Slurm starts every rank")
        return DistEnv("slurm", 0, 1, 0, 1, 1, LOCALHOST, port)

    rank = _int(environ, "SLURM_PROCID")
    world = _first_int(environ, ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"), 1)
    local_rank = _int(environ, "SLURM_LOCALID", 0)
    per_node_spec = _first(environ, "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    per_node = tasks_per_node(per_node_spec) if per_node_spec else [world]
    nodes = _first_int(environ, ("SLURM_STEP_NUM_NODES", "SLURM_JOB_NUM_NODES", "SLURM_NNODES"), len(per_node))
    if len(set(per_node)) > 1:
        raise LaunchError(f"Slurm placed {per_node_spec} tasks on the {nodes} nodes, different numbers per node; "
                          "ask for the same on each: sbatch/srun --nodes=N --ntasks-per-node=G (with "
                          "--gpus-per-node=G), not --ntasks alone")
    local_world = per_node[0]
    if local_world * nodes != world:
        raise LaunchError(f"Slurm says {world} tasks but {nodes} nodes x {local_world} tasks per node; "
                          "launch with srun --nodes=N --ntasks-per-node=G and no conflicting --ntasks")
    if world == 1:
        addr = LOCALHOST
    elif environ.get("MASTER_ADDR"):
        addr = environ["MASTER_ADDR"]
    else:
        nodelist = _first(environ, "SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
        if nodelist is None:
            raise LaunchError("SLURM_JOB_NODELIST is not set, so rank 0's host is unknown; "
                              "launch with srun, or export MASTER_ADDR=<host of rank 0>")
        hosts = hostnames(nodelist)
        if not hosts:
            raise LaunchError(f"the Slurm node list {nodelist!r} expands to no host; export MASTER_ADDR")
        addr = hosts[0]
    return DistEnv("slurm", rank, world, local_rank, local_world, nodes, addr, port)


def _check_layout(layout: DistEnv) -> None:
    fix = {"torchrun": "launch with torchrun", "slurm": "launch with srun --ntasks-per-node",
           "openmpi": "launch with mpirun", "single": ""}[layout.launcher]
    if layout.world_size < 1 or layout.local_world_size < 1 or layout.node_count < 1:
        raise LaunchError(f"{layout.launcher}: world size {layout.world_size}, {layout.local_world_size} ranks per "
                          f"node and {layout.node_count} nodes must all be >= 1; {fix}")
    if not 0 <= layout.rank < layout.world_size:
        raise LaunchError(f"{layout.launcher}: rank {layout.rank} is not in 0..{layout.world_size - 1} "
                          f"(world size {layout.world_size}); stale variables from another launch? {fix}")
    if not 0 <= layout.local_rank < layout.local_world_size:
        raise LaunchError(f"{layout.launcher}: local rank {layout.local_rank} is not in "
                          f"0..{layout.local_world_size - 1} ({layout.local_world_size} ranks on this node); {fix}")
    if layout.local_world_size > layout.world_size:
        raise LaunchError(f"{layout.launcher}: {layout.local_world_size} ranks on this node but only "
                          f"{layout.world_size} in all; {fix}")


def _slurm_binds_gpus_per_task(environ: Mapping[str, str]) -> bool:
    """Slurm gives each task only its own GPUs (so each task's first visible GPU is its own)."""
    bind = environ.get("SLURM_GPU_BIND", "").lower()
    if "none" in bind:
        return False
    if re.search(r"per_task:\d|single:1\b|map_gpu|mask_gpu", bind):
        return True
    # --gpus-per-task implies --gpu-bind=per_task:<n>
    return bool(environ.get("SLURM_GPUS_PER_TASK"))


def _device(layout: DistEnv, cuda_devices: int, gpus_bound_per_task: bool) -> tuple[str, str]:
    if cuda_devices <= 0:
        return "gloo", "cpu"
    if gpus_bound_per_task and layout.launcher == "slurm":
        return "nccl", "cuda:0"
    if layout.local_world_size > cuda_devices:
        raise LaunchError(f"{layout.local_world_size} ranks on this node but {cuda_devices} CUDA device(s) visible, "
                          "so ranks would share a GPU; ask for one task per GPU: --ntasks-per-node=G "
                          "--gpus-per-node=G (or --gpus-per-task=1)")
    return "nccl", f"cuda:{layout.local_rank}"


# where Slurm (or the site) says this process was given GPUs
GPU_ALLOCATION_VARIABLES = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_PER_NODE",
                            "SLURM_GPUS_PER_TASK", "SLURM_GPUS", "CUDA_VISIBLE_DEVICES")
_NO_GPU_VALUES = frozenset({"", "0", "-1", "none", "nodevfiles", "void"})
CUDA_WHEEL_INDEX = "https://download.pytorch.org/whl/cu126"


def allocated_gpus(environ: Mapping[str, str]) -> Optional[tuple[str, str]]:
    """(variable, value) of the first variable saying GPUs were allocated to this process, else None."""
    for name in GPU_ALLOCATION_VARIABLES:
        value = environ.get(name)
        if value is not None and value.strip().lower() not in _NO_GPU_VALUES:
            return name, value
    return None


def torch_build() -> dict[str, Optional[str]]:
    """{"torch": version, "cuda": the CUDA it was built for (None: a CPU-only build)}."""
    import torch

    return {"torch": torch.__version__, "cuda": torch.version.cuda}


def _refuse_allocated_gpus_without_cuda(environ: Mapping[str, str],
                                        build: Optional[Callable[[], dict]] = None) -> None:
    given = allocated_gpus(environ)
    if given is None or environ.get("ASTROHPC_ALLOW_CPU", "").strip() in ("1", "true", "yes"):
        return
    info = (build or torch_build)()
    if info["cuda"] is None:
        why = (f"torch {info['torch']} is a CPU-only build (make setup installs one); install a CUDA build in "
               f"the job's environment: pip install 'torch=={str(info['torch']).split('+')[0]}' --index-url "
               f"{CUDA_WHEEL_INDEX} (or ASTROHPC_TORCH_INDEX={CUDA_WHEEL_INDEX} bash tools/setup.sh), or run "
               "in the image: slurm.container=astrohpc.sif")
    else:
        why = (f"torch {info['torch']} is built for CUDA {info['cuda']} but sees no device: the node's NVIDIA "
               f"driver is missing or too old for CUDA {info['cuda']} (check nvidia-smi; use a wheel for an "
               "older CUDA, e.g. cu126, if the driver cannot be updated), or the container was started "
               "without --nv")
    raise LaunchError(f"GPUs were allocated to this job ({given[0]}={given[1]}) but torch cannot use them, so "
                      f"training would run on CPU: {why}. To train on CPU on purpose, export ASTROHPC_ALLOW_CPU=1")


def _cuda_device_count() -> int:
    # torch is imported only here so that detect() stays cheap for entry points that never train
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
