"""The scripts a real cluster gets: every job kind (train, sweep, each study kind) for the a500 and
example-gpu-site profiles, with and without a container, pinned by golden files
(ASTROHPC_UPDATE_GOLDEN=1 rewrites them), plus the lines that make a containerised multi-node
GPU job start: MASTER_ADDR from the host, srun --cpus-per-task, apptainer exec --nv with binds,
requeue from the batch shell."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from astrohpc.gcm.sweep_slurm import render_sweep
from astrohpc.launch.profiles import load_job_config
from astrohpc.launch.train_job import render_train
from astrohpc.studies.kinds import KINDS
from astrohpc.studies.slurm import render_study

GOLDEN = Path(__file__).parent / "golden" / "cluster"
PYTHON = "/opt/venv/bin/python"
IMAGE = "/project/images/astrohpc.sif"
PROFILES = ("a500", "example-gpu-site")
JOBS = ("train", "sweep", *(f"study-{kind}" for kind in KINDS))


def job_config(tmp_path, profile: str, container: bool):
    path = tmp_path / "job.yaml"
    path.write_text("run: {name: golden, root: /scratch/runs}\n"
                    "model: {task: emulator, architecture: unet}\n"
                    "train: {cube: /scratch/cube.h5, signal: USR1@90}\n"
                    "study: {model: /scratch/runs/train/export/best.pt}\n")
    overrides = ["slurm.account=proj42", "slurm.nodes=2"]
    if container:
        overrides += [f"slurm.container={IMAGE}", "slurm.binds=[/scratch]"]
    return load_job_config(path, overrides, cluster=profile)


def render(job: str, cfg) -> str:
    root = Path("/scratch/runs/golden")
    if job == "train":
        return render_train(cfg, root / "config.yaml", root, python=PYTHON)
    if job == "sweep":
        scripts = render_sweep(cfg, root, [0, 1, 2, 3], spinup=True, max_size=1001, python=PYTHON)
        parts = [scripts.spinup, *(text for _chunk, text in scripts.arrays), scripts.aggregate]
    else:
        scripts = render_study(cfg, root, [0, 1, 2], job.split("-", 1)[1], max_size=1001, python=PYTHON)
        parts = [*(text for _chunk, text in scripts["arrays"]), scripts["aggregate"]]
    return "\n# ======== next job ========\n".join(parts)


@pytest.mark.parametrize("container", [False, True], ids=["host", "container"])
@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("job", JOBS)
def test_scripts_match_the_golden_files(tmp_path, job, profile, container):
    text = render(job, job_config(tmp_path, profile, container))
    golden = GOLDEN / f"{job}-{profile}-{'container' if container else 'host'}.sbatch"
    if os.environ.get("ASTROHPC_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    # every job exports the profile's variables and runs astrohpc in the image when there is one
    assert (f" {IMAGE} astrohpc " in text) == container
    assert "export NCCL_DEBUG=WARN" in text
    if container:
        assert f"--bind /scratch:/scratch {IMAGE} astrohpc " in text


def test_a500_container_training_starts_and_requeues_without_slurm_in_the_image(tmp_path):
    text = render("train", job_config(tmp_path, "a500", container=True))
    lines = text.splitlines()
    srun = next(line for line in lines if line.startswith("srun "))
    assert srun.startswith("srun --kill-on-bad-exit=1 --cpus-per-task=4 apptainer exec --nv --bind /scratch:/scratch "
                           f"{IMAGE} astrohpc train /scratch/runs/golden/config.yaml")
    # the rendezvous is exported on the host, before srun, by the batch shell
    exports = [i for i, line in enumerate(lines) if line.startswith(("export MASTER_ADDR=", "export MASTER_PORT="))]
    assert len(exports) == 2 and max(exports) < lines.index(srun)
    assert "scontrol show hostnames" in text
    # host-side requeue: rank 0 writes the request in the (bound) run folder, the batch shell requeues
    assert "export ASTROHPC_REQUEUE_FILE=/scratch/runs/golden/requeue-request" in lines
    assert lines.index(srun) < lines.index('    scontrol requeue "$SLURM_JOB_ID"')
    for directive in ("--nodes=2", "--ntasks-per-node=2", "--gpus-per-node=2", "--cpus-per-task=4", "--requeue",
                      "--signal=USR1@90", "--account=proj42", "--partition=a500"):
        assert f"#SBATCH {directive}" in lines
    # a500 replaces the local profile: nothing of it is left
    assert "--partition=debug" not in text and "%2" not in text


def test_sweep_and_study_tasks_resources(tmp_path):
    cfg = job_config(tmp_path, "example-gpu-site", container=True)
    sweep = render("sweep", cfg)
    assert "--gpus" not in sweep and "--nv" not in sweep  # the GCM runs on CPUs
    assert "#SBATCH --array=0-3%64" in sweep and "module load apptainer" in sweep
    study = render("study-ablation", cfg)
    tasks, aggregate = study.split("# ======== next job ========")
    assert "#SBATCH --gpus-per-node=1" in tasks and "apptainer exec --nv" in tasks
    assert "--gpus" not in aggregate and "--nv" not in aggregate
