"""The distributed-environment detector: every launcher from fake environments, each refusal, and
a real 2-rank gloo all_reduce (and a real `srun -n 2` when the local Slurm cluster is up)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest

from astrohpc.errors import LaunchError
from astrohpc.train.distributed import DistEnv, detect, init_process_group, nodelist_hosts, tasks_per_node

# What `srun` sets in a 2-node x 2-task step of job 12345.
SRUN_STEP = {
    "SLURM_JOB_ID": "12345", "SLURM_STEP_ID": "0", "SLURM_PROCID": "3", "SLURM_LOCALID": "1",
    "SLURM_NTASKS": "4", "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_JOB_NUM_NODES": "2",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
}
TORCHRUN = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "MASTER_ADDR": "node0",
            "MASTER_PORT": "29400"}
OMPI = {"OMPI_COMM_WORLD_RANK": "2", "OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "0",
        "OMPI_COMM_WORLD_LOCAL_SIZE": "2", "MASTER_ADDR": "n1"}


def expand(calls: list | None = None):
    """A fake `scontrol show hostnames` for "gpu[07-08]" and single hosts."""
    def hostnames(nodelist: str) -> list[str]:
        if calls is not None:
            calls.append(nodelist)
        return ["gpu07", "gpu08"] if nodelist == "gpu[07-08]" else [nodelist]
    return hostnames


def no_hostnames(nodelist: str) -> list[str]:
    raise AssertionError(f"hostnames({nodelist!r}) should not be needed")


def test_single_process_without_launcher():
    env = detect({}, cuda_devices=0, hostnames=no_hostnames)
    assert env == DistEnv("single", 0, 1, 0, 1, 1, "127.0.0.1", 29500, "gloo", "cpu")
    assert not env.is_distributed and env.is_main
    assert env.describe()["is_distributed"] is False and env.describe()["launcher"] == "single"


def test_torchrun():
    env = detect(TORCHRUN, cuda_devices=0, hostnames=no_hostnames)
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_count) == \
        ("torchrun", 5, 8, 1, 4, 2)
    assert (env.master_addr, env.master_port, env.backend, env.device) == ("node0", 29400, "gloo", "cpu")
    assert env.is_distributed and not env.is_main


def test_hand_made_env_launch_is_one_node_on_localhost():
    env = detect({"RANK": "1", "WORLD_SIZE": "2"}, cuda_devices=0)
    assert (env.local_rank, env.local_world_size, env.node_count) == (1, 2, 1)
    assert (env.master_addr, env.master_port) == ("127.0.0.1", 29500)


def test_torchrun_with_gpus_uses_local_rank():
    env = detect(TORCHRUN, cuda_devices=4)
    assert (env.backend, env.device) == ("nccl", "cuda:1")


def test_torchrun_wins_over_slurm_and_open_mpi():
    env = detect({**SRUN_STEP, **OMPI, **TORCHRUN}, cuda_devices=0, hostnames=no_hostnames)
    assert env.launcher == "torchrun" and env.rank == 5


def test_srun_step():
    calls: list[str] = []
    env = detect(SRUN_STEP, cuda_devices=0, hostnames=expand(calls))
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_count) == \
        ("slurm", 3, 4, 1, 2, 2)
    assert env.master_addr == "gpu07" and calls == ["gpu[07-08]"]
    assert env.master_port == 20000 + 12345 % 20000


def test_slurm_port_is_derived_from_the_job_id_unless_exported():
    ports = {detect({**SRUN_STEP, "SLURM_JOB_ID": j}, cuda_devices=0, hostnames=expand()).master_port
             for j in ("7", "20007", "40007")}
    assert ports == {20007}  # same for every rank of one job, within 20000-39999
    assert detect({**SRUN_STEP, "SLURM_JOB_ID": "987654"}, cuda_devices=0, hostnames=expand()).master_port == 27654
    env = detect({**SRUN_STEP, "MASTER_PORT": "31000", "MASTER_ADDR": "login1"}, cuda_devices=0,
                 hostnames=no_hostnames)
    assert (env.master_addr, env.master_port) == ("login1", 31000)


def test_slurm_prefers_the_step_values_over_the_allocation():
    # `srun -N1 -n2` inside a 2-node, 8-task allocation
    env = detect({**SRUN_STEP, "SLURM_NTASKS": "8", "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_PROCID": "1",
                  "SLURM_STEP_NUM_TASKS": "2", "SLURM_STEP_TASKS_PER_NODE": "2", "SLURM_STEP_NUM_NODES": "1",
                  "SLURM_STEP_NODELIST": "gpu08"}, cuda_devices=0, hostnames=expand())
    assert (env.world_size, env.local_world_size, env.node_count, env.master_addr) == (2, 2, 1, "gpu08")


@pytest.mark.parametrize("spec, counts", [("2(x3)", [2, 2, 2]), ("2,1", [2, 1]), ("4(x2),3", [4, 4, 3]),
                                          ("1", [1])])
def test_tasks_per_node(spec, counts):
    assert tasks_per_node(spec) == counts


def test_ntasks_per_node_variable_is_read():
    environ = {k: v for k, v in SRUN_STEP.items() if k != "SLURM_TASKS_PER_NODE"}
    env = detect({**environ, "SLURM_NTASKS_PER_NODE": "2"}, cuda_devices=0, hostnames=expand())
    assert env.local_world_size == 2


def test_one_task_batch_script_is_a_one_rank_slurm_run():
    env = detect({"SLURM_JOB_ID": "9", "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "n[1-2]"},
                 cuda_devices=0, hostnames=no_hostnames)
    assert (env.launcher, env.world_size, env.master_addr, env.master_port) == ("slurm", 1, "127.0.0.1", 20009)


@pytest.mark.parametrize("step", [None, "batch", "4294967294", "extern", "4294967290"])
def test_batch_script_of_a_multi_task_job_refuses_to_run_as_one_rank(step):
    environ = {k: v for k, v in SRUN_STEP.items() if k != "SLURM_STEP_ID"}
    environ["SLURM_PROCID"], environ["SLURM_LOCALID"] = "0", "0"
    if step is not None:
        environ["SLURM_STEPID"] = step
    with pytest.raises(LaunchError, match="launch with srun"):
        detect(environ, cuda_devices=0, hostnames=no_hostnames)


def test_mpirun_in_a_batch_script_is_open_mpi():
    environ = {k: v for k, v in SRUN_STEP.items() if k != "SLURM_STEP_ID"}
    env = detect({**environ, **OMPI}, cuda_devices=0, hostnames=no_hostnames)
    assert (env.launcher, env.rank, env.world_size, env.local_world_size, env.node_count) == \
        ("openmpi", 2, 4, 2, 2)


def test_srun_of_an_open_mpi_program_is_slurm_when_the_sizes_agree():
    ompi = {k: v for k, v in OMPI.items() if k != "MASTER_ADDR"}
    env = detect({**SRUN_STEP, **ompi, "OMPI_COMM_WORLD_RANK": "3"}, cuda_devices=0, hostnames=expand())
    assert env.launcher == "slurm" and env.master_addr == "gpu07"


def test_mpirun_with_daemons_started_by_srun_is_open_mpi():
    # Slurm-aware mpirun starts one daemon per node with srun: the step has 2 tasks, MPI 8 ranks
    environ = {**SRUN_STEP, "SLURM_NTASKS": "2", "SLURM_TASKS_PER_NODE": "1(x2)", "SLURM_PROCID": "1",
               "SLURM_LOCALID": "0", **OMPI, "OMPI_COMM_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
               "OMPI_COMM_WORLD_RANK": "6"}
    env = detect(environ, cuda_devices=0, hostnames=no_hostnames)
    assert (env.launcher, env.rank, env.world_size, env.node_count) == ("openmpi", 6, 8, 2)


def test_open_mpi():
    env = detect(OMPI, cuda_devices=0, hostnames=no_hostnames)
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.local_world_size, env.node_count) == \
        ("openmpi", 2, 4, 0, 2, 2)
    assert (env.master_addr, env.master_port) == ("n1", 29500)


def test_open_mpi_on_one_node_needs_no_master_addr():
    environ = {**{k: v for k, v in OMPI.items() if k != "MASTER_ADDR"}, "OMPI_COMM_WORLD_LOCAL_SIZE": "4",
               "OMPI_COMM_WORLD_LOCAL_RANK": "2"}
    assert detect(environ, cuda_devices=0).master_addr == "127.0.0.1"


def test_open_mpi_on_several_nodes_needs_master_addr():
    environ = {k: v for k, v in OMPI.items() if k != "MASTER_ADDR"}
    with pytest.raises(LaunchError, match="export MASTER_ADDR"):
        detect(environ, cuda_devices=0)


def test_uneven_tasks_per_node_name_the_fix():
    environ = {**SRUN_STEP, "SLURM_TASKS_PER_NODE": "3,1"}
    with pytest.raises(LaunchError, match="--ntasks-per-node"):
        detect(environ, cuda_devices=0, hostnames=expand())


def test_uneven_open_mpi_placement_names_the_fix():
    with pytest.raises(LaunchError, match="--map-by ppr"):
        detect({**OMPI, "OMPI_COMM_WORLD_LOCAL_SIZE": "3"}, cuda_devices=0)


def test_more_ranks_per_node_than_gpus_names_the_fix():
    with pytest.raises(LaunchError, match="--ntasks-per-node=G --gpus-per-node=G"):
        detect(SRUN_STEP, cuda_devices=1, hostnames=expand())
    with pytest.raises(LaunchError, match="--ntasks-per-node=G --gpus-per-node=G"):
        detect(TORCHRUN, cuda_devices=2)


def test_slurm_gpus_per_node():
    env = detect(SRUN_STEP, cuda_devices=2, hostnames=expand())
    assert (env.backend, env.device) == ("nccl", "cuda:1")


@pytest.mark.parametrize("binding", [{"SLURM_GPUS_PER_TASK": "1"}, {"SLURM_GPUS_PER_TASK": "a100:1"},
                                     {"SLURM_GPU_BIND": "per_task:1"}, {"SLURM_GPU_BIND": "verbose,single:1"},
                                     {"SLURM_GPU_BIND": "map_gpu:0,1"}])
def test_slurm_gpu_per_task_binding_uses_the_one_visible_gpu(binding):
    env = detect({**SRUN_STEP, **binding}, cuda_devices=1, hostnames=expand())
    assert (env.backend, env.device) == ("nccl", "cuda:0")


def test_explicit_gpu_bind_none_overrides_gpus_per_task():
    with pytest.raises(LaunchError, match="--gpus-per-node"):
        detect({**SRUN_STEP, "SLURM_GPUS_PER_TASK": "1", "SLURM_GPU_BIND": "none"}, cuda_devices=1,
               hostnames=expand())


@pytest.mark.parametrize("environ, match", [
    ({**TORCHRUN, "RANK": "8"}, "rank 8 is not in 0..7"),
    ({**TORCHRUN, "LOCAL_RANK": "4"}, "local rank 4 is not in 0..3"),
    ({**TORCHRUN, "WORLD_SIZE": "eight"}, "WORLD_SIZE='eight' is not an integer"),
    ({**TORCHRUN, "MASTER_PORT": "70000"}, "MASTER_PORT=70000 is not a TCP port"),
    ({"RANK": "0"}, "RANK is set without WORLD_SIZE"),
    ({**{k: v for k, v in TORCHRUN.items() if k != "LOCAL_WORLD_SIZE"}}, "LOCAL_WORLD_SIZE is not set"),
    ({**TORCHRUN, "WORLD_SIZE": "6"}, "do not split evenly"),
    ({**SRUN_STEP, "SLURM_PROCID": "4"}, "rank 4 is not in 0..3"),
    ({**SRUN_STEP, "SLURM_LOCALID": "x"}, "SLURM_LOCALID='x' is not an integer"),
    ({**SRUN_STEP, "SLURM_JOB_ID": "12345.0"}, "SLURM_JOB_ID='12345.0' is not an integer"),
    ({**SRUN_STEP, "SLURM_NTASKS": "5"}, "5 tasks but 2 nodes x 2"),
    ({**SRUN_STEP, "SLURM_TASKS_PER_NODE": "2(y2)"}, "cannot read the Slurm tasks per node"),
    ({**OMPI, "OMPI_COMM_WORLD_RANK": "-1"}, "rank -1 is not in 0..3"),
])
def test_inconsistent_values(environ, match):
    with pytest.raises(LaunchError, match=match.replace("(", r"\(").replace(".", r"\.")):
        detect(environ, cuda_devices=0, hostnames=expand())


@pytest.mark.parametrize("nodelist, hosts", [
    ("node17", ["node17"]),
    ("gpu[01-03,07],cpu7", ["gpu01", "gpu02", "gpu03", "gpu07", "cpu7"]),
    ("a[1-2]-ib[3-4]", ["a1-ib3", "a1-ib4", "a2-ib3", "a2-ib4"]),
    ("n[8-11]", ["n8", "n9", "n10", "n11"]),
    ("rack1.gpu[009-010]", ["rack1.gpu009", "rack1.gpu010"]),
])
def test_nodelist_expands_in_python_without_scontrol(monkeypatch, nodelist, hosts):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("no subprocess may run"))
    assert nodelist_hosts(nodelist) == hosts


@pytest.mark.parametrize("nodelist", ["gpu[01-", "gpu[3-1]", "gpu[a-b]", "gpu]"])
def test_unreadable_nodelist_names_the_fix(monkeypatch, nodelist):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LaunchError, match="export MASTER_ADDR"):
        nodelist_hosts(nodelist)


def test_multi_node_ranks_agree_without_scontrol_on_path(monkeypatch):
    """2 nodes x 2 GPUs, PATH without scontrol (as in the image): every rank finds the same rendezvous."""
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("scontrol") is None
    found = set()
    for rank in range(4):
        environ = {**SRUN_STEP, "SLURM_JOB_NODELIST": "gpu[01-02]", "SLURM_PROCID": str(rank),
                   "SLURM_LOCALID": str(rank % 2), "SLURM_GPUS_ON_NODE": "2"}
        env = detect(environ, cuda_devices=2)
        assert (env.rank, env.world_size, env.node_count, env.device) == (rank, 4, 2, f"cuda:{rank % 2}")
        found.add((env.master_addr, env.master_port))
    assert found == {("gpu01", 20000 + 12345 % 20000)}


GPU_JOB = {**SRUN_STEP, "SLURM_JOB_NODELIST": "gpu[01-02]"}


@pytest.mark.parametrize("given", [{"SLURM_GPUS_ON_NODE": "2"}, {"SLURM_JOB_GPUS": "0,1"},
                                   {"SLURM_GPUS_PER_TASK": "1"}, {"CUDA_VISIBLE_DEVICES": "0,1"}])
def test_gpus_allocated_but_cpu_torch_is_one_clear_error(monkeypatch, given):
    import torch

    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LaunchError) as err:
        detect({**GPU_JOB, **given})
    message = str(err.value)
    name = next(iter(given))
    assert f"{name}={given[name]}" in message and f"torch {torch.__version__}" in message
    assert "CPU-only build" in message and "--index-url https://download.pytorch.org/whl/cu126" in message
    assert "ASTROHPC_ALLOW_CPU=1" in message


def test_gpus_allocated_but_the_driver_is_too_old(monkeypatch):
    import torch

    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(LaunchError, match=r"built for CUDA 13.0 but sees no device.*nvidia-smi.*--nv"):
        detect({**GPU_JOB, "SLURM_GPUS_ON_NODE": "2"})


@pytest.mark.parametrize("environ", [{}, {"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "-1"},
                                     {"SLURM_GPUS_ON_NODE": "0"},
                                     {"SLURM_GPUS_ON_NODE": "2", "ASTROHPC_ALLOW_CPU": "1"}])
def test_cpu_training_without_allocated_gpus_or_on_purpose(environ):
    env = detect({**GPU_JOB, **environ}, cuda_devices=0)
    assert (env.backend, env.device) == ("gloo", "cpu")


def test_init_process_group_is_a_no_op_for_one_rank():
    import torch.distributed as dist

    init_process_group(detect({}, cuda_devices=0))
    assert not dist.is_initialized()


# ---- real processes -------------------------------------------------------------------------------

RANK_PROGRAM = textwrap.dedent("""
    import json, torch, torch.distributed as dist
    from astrohpc.train.distributed import detect, init_process_group, shutdown
    env = detect()
    init_process_group(env, timeout_s=60)
    t = torch.tensor([float(env.rank + 1)])
    dist.all_reduce(t)
    again = detect()  # init_process_group exported the layout: a second look agrees
    print(json.dumps({**env.describe(), "sum": t.item(), "again": [again.rank, again.world_size, again.local_rank,
                                                                     again.local_world_size]}))
    shutdown()
""")


def clean_environ() -> dict[str, str]:
    """This process's environment without any launcher's variables (the test may itself run under one)."""
    launcher = ("SLURM_", "OMPI_", "PMI", "PMIX_", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                "GROUP_WORLD_SIZE", "MASTER_", "TORCHELASTIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(launcher)}
    return {**env, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(program: str, world: int = 2, extra: dict | None = None) -> list[dict]:
    """Start `world` processes as a hand-made env:// launch; return each one's last JSON line."""
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**clean_environ(), "RANK": str(r), "WORLD_SIZE": str(world),
                                              "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), **(extra or {})})
             for r in range(world)]
    results = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def test_two_gloo_ranks_all_reduce():
    results = run_ranks(RANK_PROGRAM)
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["sum"] == 3.0 and r["backend"] == "gloo" and r["launcher"] == "torchrun" for r in results)
    assert [r["again"] for r in results] == [[0, 2, 0, 2], [1, 2, 1, 2]]


@pytest.mark.slurm
def test_srun_two_tasks_meet_at_the_derived_rendezvous():
    """Real srun: both tasks find rank 0's host from the node list and the port from the job id, and all_reduce."""
    if shutil.which("srun") is None:
        pytest.skip("srun is not on PATH (tools/local-slurm.sh start, then eval \"$(tools/local-slurm.sh env)\")")
    environ = {**clean_environ(), **{k: os.environ[k] for k in ("SLURM_CONF",) if k in os.environ}}
    proc = subprocess.run(["srun", "-n", "2", "-t", "2", "--mem=500M", "-J", "t-detect", sys.executable, "-c",
                           RANK_PROGRAM], capture_output=True, text=True, env=environ, timeout=180)
    assert proc.returncode == 0, proc.stderr
    results = sorted((json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1]
    assert all(r["launcher"] == "slurm" and r["world_size"] == 2 and r["sum"] == 3.0 for r in results)
    assert results[0]["master_addr"] == results[1]["master_addr"] != ""
    assert results[0]["master_port"] == results[1]["master_port"]
    assert 20000 <= results[0]["master_port"] < 40000
