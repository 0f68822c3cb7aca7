"""`astrohpc submit train`: the rendered script (golden file), its checks, submitit's parameters,
and real 2-rank training jobs on the local Slurm cluster — one run straight, one preempted by a
signal mid-run, requeued and resumed to weights bit-identical to an uninterrupted 2-rank run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from astrohpc.config import load_config
from astrohpc.errors import ConfigError, SlurmError
from astrohpc.launch.submitit_train import _time_parts, executor_parameters
from astrohpc.launch.train_job import render_train

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"


def _write_cfg(tmp_path, text):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def gpu_cfg(tmp_path, *overrides):
    path = _write_cfg(tmp_path, f"""extends: [{REPO}/configs/cluster/example-gpu-site.yaml]
run: {{name: golden, root: /scratch/runs}}
model: {{task: emulator, architecture: unet}}
train: {{cube: /scratch/cube.h5, signal: USR1@90}}
""")
    return load_config(path, list(overrides))


def test_gpu_script_matches_the_golden_file(tmp_path):
    cfg = gpu_cfg(tmp_path, "slurm.nodes=2", "slurm.account=proj42")
    text = render_train(cfg, Path("/scratch/runs/golden/config.yaml"), Path("/scratch/runs/golden"),
                        python="/opt/venv/bin/python")
    golden = GOLDEN / "train_gpu.sbatch"
    if os.environ.get("ASTROHPC_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    # the parts that matter, spelled out: one task per GPU, requeue, signal to every task
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --requeue", "#SBATCH --open-mode=append", "#SBATCH --signal=USR1@90"):
        assert line in text.splitlines()
    assert text.count("--gpus-per-node") == 1


def test_cpu_ranks_container_and_quoting(tmp_path):
    cfg = gpu_cfg(tmp_path, "slurm.gpus_per_node=0", "slurm.ntasks_per_node=3", "slurm.container=/img/a b.sif",
                  "slurm.binds=[/scratch]")
    with pytest.raises((SlurmError, ConfigError)):
        render_train(cfg, Path("/r/config.yaml"), Path("/r"))  # a space in the image path is refused
    cfg = gpu_cfg(tmp_path, "slurm.gpus_per_node=0", "slurm.ntasks_per_node=3", "slurm.container=/img/astro.sif",
                  "slurm.binds=[/scratch]")
    text = render_train(cfg, Path("/r/my runs/config.yaml"), Path("/r"))
    srun = next(line for line in text.splitlines() if line.startswith("srun"))
    assert "--ntasks-per-node=3" in text and "--gpus-per-node" not in text and "export OMP_NUM_THREADS=8" in text
    assert "apptainer exec" in srun and "--nv" not in srun and "/img/astro.sif" in srun
    assert "'/r/my runs/config.yaml'" in srun  # shell-quoted


def test_injected_shell_strings_stay_literal(tmp_path):
    import shlex

    evil = "/r/$(touch pwned); rm -rf ~ `id`/config.yaml"
    cfg = gpu_cfg(tmp_path, "slurm.setup=[]")
    text = render_train(cfg, Path(evil), Path("/r"))
    srun = next(line for line in text.splitlines() if line.startswith("srun")).removesuffix(" || status=$?")
    assert shlex.split(srun)[-2] == str(Path(evil).resolve())  # one literal argument
    done = subprocess.run(["bash", "-c", srun.replace("srun --kill-on-bad-exit=1 --cpus-per-task=8", "printf '%s\\n'",
                                                      1)],
                          capture_output=True, text=True, cwd=tmp_path)
    assert str(Path(evil).resolve()) in done.stdout.splitlines() and not (tmp_path / "pwned").exists()
    with pytest.raises(SlurmError):  # a run name with shell syntax cannot reach the --output directive
        render_train(gpu_cfg(tmp_path, "run.name=x;id"), Path("/r/c.yaml"), Path("/r/x;id"))


def test_bad_options_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="'B:' sends the signal only to the batch shell"):
        render_train(gpu_cfg(tmp_path, "train.signal=B:USR1@60"), Path("/r/c.yaml"), Path("/r"))
    with pytest.raises(SlurmError, match="Valid options"):
        render_train(gpu_cfg(tmp_path, "slurm.extra={gpus_per_nod: '2'}"), Path("/r/c.yaml"), Path("/r"))
    with pytest.raises(SlurmError, match="not a valid --time"):
        render_train(gpu_cfg(tmp_path, "slurm.time=soon"), Path("/r/c.yaml"), Path("/r"))


def test_cpu_ranks_beside_gpus_are_refused_not_ignored(tmp_path):
    with pytest.raises(ConfigError, match="one task per GPU"):
        render_train(gpu_cfg(tmp_path, "slurm.ntasks_per_node=3"), Path("/r/c.yaml"), Path("/r"))
    assert "--ntasks-per-node=4" in render_train(gpu_cfg(tmp_path, "slurm.ntasks_per_node=4"), Path("/r/c.yaml"),
                                                 Path("/r"))


def test_cli_dry_run_and_profiles(tmp_path):
    path = _write_cfg(tmp_path, f"""run: {{name: dry, root: {tmp_path}}}
model: {{task: emulator, architecture: unet}}
train: {{cube: {tmp_path}/cube.h5}}
""")
    done = subprocess.run([sys.executable, "-m", "astrohpc", "submit", "train", str(path), "--cluster", "a500",
                           "--nodes", "3", "--time", "01:00:00", "--dry-run"], capture_output=True, text=True,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --nodes=3" in done.stdout and "#SBATCH --gpus-per-node=2" in done.stdout
    assert "export NCCL_IB_DISABLE=1" in done.stdout and "#SBATCH --time=01:00:00" in done.stdout
    assert not (tmp_path / "dry").exists()  # a dry run writes nothing
    bad = subprocess.run([sys.executable, "-m", "astrohpc", "submit", "train", str(path), "--cluster", "nope",
                          "--dry-run"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "a500" in bad.stderr and "local" in bad.stderr


def test_submitit_parameters_follow_the_profile(tmp_path):
    cfg = gpu_cfg(tmp_path, "slurm.nodes=2", "slurm.time=1-02:30:00")
    params = executor_parameters(cfg, tmp_path)
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (2, 4, 4)
    assert params["timeout_min"] == 26 * 60 + 30 and params["slurm_signal_delay_s"] == 90
    assert params["slurm_additional_parameters"]["requeue"] is True
    assert _time_parts("30") == (0, 30, 0) and _time_parts("01:02:03") == (1, 2, 3) and _time_parts("2-3") == (51, 0, 0)


# ---------------------------------------------------------------------------- the local Slurm cluster


def _train_cfg(tmp_path, physics_cube, name, epochs):
    from astrohpc.data.cube import read_meta

    meta = read_meta(physics_cube)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""extends: [{REPO}/configs/cluster/local.yaml]
run: {{name: {name}, root: {tmp_path}, seed: 5}}
model:
  task: emulator
  architecture: transformer
  mode: datacube
  transformer: {{dim: 16, depth: 1, heads: 2, patch: [8, 8], dropout: 0.1}}
train: {{cube: {physics_cube}, validation_runs: [{meta.run_names[1]}], epochs: {epochs}, batch_size: 2,
         checkpoint_every: 0, log_every: 1, threads: 1, signal: "USR1@60"}}
slurm: {{time: "00:10:00", mem: 2G}}
""")
    return path


def _submit(path):
    done = subprocess.run([sys.executable, "-m", "astrohpc", "submit", "train", str(path)], capture_output=True,
                          text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[2].rstrip(":")


def _state(job):
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    return out.split("JobState=")[1].split()[0] if "JobState=" in out else "GONE"


def _wait(job, done, timeout=240):
    start = time.time()
    while time.time() - start < timeout:
        if done():
            return
        time.sleep(1)
    show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    logs = [line.split("=", 1)[1] for line in show.split() if line.startswith("StdOut=")]
    tail = "".join(Path(p).read_text()[-3000:] for p in logs if Path(p).is_file())
    slurmd = Path(os.environ.get("SLURM_CONF", "/nonexistent")).parent / "log" / "slurmd.log"
    daemon = "".join(slurmd.read_text().splitlines(keepends=True)[-30:]) if slurmd.is_file() else ""
    raise AssertionError(f"job {job} did not get there in {timeout} s: {show}\n--- job log ---\n{tail}"
                         f"\n--- slurmd log ---\n{daemon}")


def _steps_alive(job):
    """Whether any slurmstepd of `job` (an earlier attempt's batch or task step) still runs here."""
    out = subprocess.run(["pgrep", "-f", rf"slurmstepd: \[{job}\."], capture_output=True, text=True).stdout
    return bool(out.strip())


def _restart_now(job):
    """Slurm holds a requeued job ~2 min; start it sooner, but only once the earlier attempt is gone
    from the node (pending, no slurmstepd of it left) and a few seconds after the requeue: slurmd
    revokes the earlier attempt's credential with a time stamp in whole seconds, so an attempt
    started within the same second is killed at launch ("Job credential revoked", exit 1, RunTime 0
    — seen in CI and reproduced here under load)."""
    _wait(job, lambda: _state(job) == "PENDING" and not _steps_alive(job))
    time.sleep(3)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)


def _ddp_reference(rank, world, port, cfg_path, out):
    from astrohpc.train.trainer import train

    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    train(load_config(cfg_path, [f"run.root={out}"]))


@pytest.mark.slurm
def test_preempted_srun_job_requeues_and_resumes_bit_identical(physics_cube, slurm_workdir, tmp_path, free_port):
    path = _train_cfg(slurm_workdir, physics_cube, "preempt", epochs=20)  # 2 steps per epoch: 40 steps
    job = _submit(path)
    run = slurm_workdir / "preempt"
    train_csv = run / "metrics" / "train.csv"
    _wait(job, lambda: train_csv.exists() and len(train_csv.read_text().splitlines()) > 6)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)  # what --signal=USR1@60 does near the end
    # rank 0 checkpoints and requeues; Slurm holds a requeued job ~2 min: start it now
    _restart_now(job)
    _wait(job, lambda: _state(job) in ("COMPLETED", "FAILED", "CANCELLED", "GONE", "TIMEOUT") and
          json.loads((run / "metrics.json").read_text()).get("status") == "finished", timeout=300)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["status"] == "finished" and summary["step"] == 40
    assert summary["distributed"]["world_size"] == 2 and summary["distributed"]["launcher"] == "slurm"
    log = "".join(p.read_text() for p in (run / "logs").glob("*.out"))
    assert "restart 1" in log and "requeueing job" in log and "from the batch shell" in log, log[-2000:]
    assert not (run / "requeue-request").exists()
    steps = [int(line.split(",")[0]) for line in train_csv.read_text().splitlines()[1:]]
    assert steps == list(range(1, 41))

    # the same run without interruption, 2 gloo ranks: bit-identical weights
    reference = tmp_path / "reference"
    torch.multiprocessing.spawn(_ddp_reference, args=(2, free_port, str(path), str(reference)), nprocs=2,
                                join=True)
    from astrohpc.train.export import read_export

    a = read_export(reference / "preempt" / "export" / "last.pt")["model_state"]
    b = read_export(run / "export" / "last.pt")["model_state"]
    assert [k for k in a if not torch.equal(a[k], b[k])] == []



FAKE_APPTAINER = """#!/bin/bash
# A stand-in for `apptainer exec [--nv] [--bind L] [--env K=V] IMAGE CMD...`: CMD runs with a PATH that
# holds no Slurm client, as in the image; what the task could find is noted for the test.
shift
while [[ "$1" == --* ]]; do case "$1" in --nv) shift ;; *) shift 2 ;; esac; done
shift
export PATH={image_bin}
echo "rank ${{SLURM_PROCID:-?}}: scontrol=$(command -v scontrol || echo none) MASTER_ADDR=$MASTER_ADDR" >> {notes}
exec "$@"
"""


@pytest.mark.slurm
def test_training_in_an_image_without_slurm_client_meets_and_requeues_from_the_host(physics_cube, slurm_workdir):
    """The containerised path on the local cluster, with a stand-in for `apptainer exec` whose tasks
    see no scontrol: the ranks meet at the MASTER_ADDR the batch shell exported, checkpoint on the
    signal, rank 0 asks for the requeue, the batch shell requeues, and the run finishes."""
    path = _train_cfg(slurm_workdir, physics_cube, "inimage", epochs=12)
    tools, image_bin = slurm_workdir / "host-bin", slurm_workdir / "image-bin"
    tools.mkdir()
    image_bin.mkdir()
    notes = slurm_workdir / "inimage-notes.txt"
    (tools / "apptainer").write_text(FAKE_APPTAINER.format(image_bin=image_bin, notes=notes))
    (image_bin / "astrohpc").write_text(f"#!/bin/bash\nexec {sys.executable} -m astrohpc \"$@\"\n")
    for exe in (tools / "apptainer", image_bin / "astrohpc"):
        exe.chmod(0o755)
    image = slurm_workdir / "astrohpc.sif"
    image.write_text("")
    environ = {**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"}
    done = subprocess.run([sys.executable, "-m", "astrohpc", "submit", "train", str(path), "--container", str(image),
                           "--bind", str(slurm_workdir), "--bind", str(physics_cube.parent)],
                          capture_output=True, text=True, cwd=REPO, timeout=60, env=environ)
    assert done.returncode == 0, done.stderr
    job = done.stdout.split()[2].rstrip(":")
    run = slurm_workdir / "inimage"
    train_csv = run / "metrics" / "train.csv"
    _wait(job, lambda: train_csv.exists() and len(train_csv.read_text().splitlines()) > 4)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    _restart_now(job)
    _wait(job, lambda: (run / "metrics.json").exists() and
          json.loads((run / "metrics.json").read_text()).get("status") == "finished", timeout=300)
    summary = json.loads((run / "metrics.json").read_text())
    assert summary["step"] == 24 and summary["distributed"]["world_size"] == 2
    log = "".join(p.read_text() for p in (run / "logs").glob("*.out"))
    assert "restart 1" in log and "from the batch shell" in log, log[-2000:]
    lines = notes.read_text().splitlines()
    assert len(lines) == 4 and all("scontrol=none" in line for line in lines)  # 2 ranks x 2 attempts
    assert len({line.split("MASTER_ADDR=")[1] for line in lines}) == 1
    assert summary["distributed"]["master_addr"] == lines[0].split("MASTER_ADDR=")[1]


def test_submitit_checkpoint_resubmits_the_same_training():
    from submitit.helpers import DelayedSubmission

    from astrohpc.launch.submitit_train import TrainJob

    again = TrainJob().checkpoint("/runs/x/config.yaml", "USR2@90")
    assert isinstance(again, DelayedSubmission) and isinstance(again.function, TrainJob)
    assert again.args == ("/runs/x/config.yaml", "USR2@90")


@pytest.mark.slurm
def test_submitit_training_survives_its_signal_and_returns_the_result(physics_cube, slurm_workdir):
    """Submitted through submitit (2 tasks), signalled mid-run as submitit does before a time-out
    (USR2): the ranks checkpoint, the job is requeued, resumes, and job.result() is the summary."""
    from astrohpc.launch.submitit_train import submit_with_submitit

    path = _train_cfg(slurm_workdir, physics_cube, "viasubmitit", epochs=15)
    cfg = load_config(path)
    record = submit_with_submitit(cfg, slurm_workdir / "viasubmitit")
    job, run = record["job"], slurm_workdir / "viasubmitit"
    train_csv = run / "metrics" / "train.csv"
    _wait(job.job_id, lambda: train_csv.exists() and len(train_csv.read_text().splitlines()) > 4)
    subprocess.run(["scancel", "--signal=USR2", job.job_id], check=True)
    _wait(job.job_id, lambda: _state(job.job_id) in ("PENDING", "REQUEUED") or (run / "metrics.json").exists())
    subprocess.run(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"], capture_output=True)
    summary = job.results()[0]  # rank 0 (one result per task)
    assert summary["status"] == "finished" and summary["step"] == 30
    assert summary["distributed"]["world_size"] == 2 and summary["distributed"]["launcher"] == "slurm"
    logs = "".join(p.read_text() for p in (run / "submitit").rglob("*.err"))
    assert "signal SIGUSR2" in logs and "resumed from" in logs
