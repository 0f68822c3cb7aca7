"""`astrohpc train` under mpirun -n 2 and torchrun --nproc-per-node 2, against a 1-rank run.

The same command line under each launcher: the detector finds 2 ranks, DDP keeps the parameters
identical on both (one sha256 of the weights per rank, gathered at the end), and the rank-mean
loss at every step equals the 1-rank run on the same global batch (float rounding). The srun
launch is tested with preemption in tests/launch/test_train_job.py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from astrohpc.data.cube import read_meta

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _config(tmp_path, cube, name):
    meta = read_meta(cube)
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"""run: {{name: {name}, root: {tmp_path}, seed: 11}}
model:
  task: emulator
  architecture: transformer
  mode: datacube
  transformer: {{dim: 16, depth: 1, heads: 2, patch: [8, 8]}}
train: {{cube: {cube}, validation_runs: [{meta.run_names[1]}], epochs: 2, batch_size: 2, checkpoint_every: 0,
         log_every: 1, threads: 1}}
""")
    return path


def _run(argv, tmp_path):
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMP_NUM_THREADS": "1"}
    for key in [k for k in env if k.startswith("SLURM_")]:
        del env[key]  # a test run inside an allocation must not look like an srun step
    done = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _losses(run_dir):
    with open(run_dir / "metrics" / "train.csv", newline="") as f:
        return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def single(physics_cube, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    _run([sys.executable, "-m", "astrohpc", "train", str(_config(tmp, physics_cube, "one")), "--no-progress"], tmp)
    return tmp / "one"


def _check(run_dir, single, launcher):
    summary = json.loads((run_dir / "metrics.json").read_text())
    assert summary["status"] == "finished"
    assert summary["distributed"]["world_size"] == 2 and summary["distributed"]["launcher"] == launcher
    digests = summary["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]  # identical parameters on both ranks
    a, b = _losses(single), _losses(run_dir)
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3, 4]
    for (step, la), (_, lb) in zip(a, b):
        assert lb == pytest.approx(la, rel=1e-4), step


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun on PATH (Open MPI: apt install openmpi-bin)")
def test_mpirun_two_ranks_match_one(physics_cube, tmp_path, single):
    cfg = _config(tmp_path, physics_cube, "mpi")
    _run(["mpirun", "-n", "2", sys.executable, "-m", "astrohpc", "train", str(cfg), "--no-progress"], tmp_path)
    _check(tmp_path / "mpi", single, "openmpi")


def test_torchrun_two_ranks_match_one(physics_cube, tmp_path, single):
    cfg = _config(tmp_path, physics_cube, "trun")
    _run([str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "astrohpc", "train", str(cfg),
          "--no-progress"], tmp_path)
    _check(tmp_path / "trun", single, "torchrun")
