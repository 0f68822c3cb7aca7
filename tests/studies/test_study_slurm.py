"""A study on the local Slurm cluster: a task array and an afterany aggregation job; submitting
again resubmits only the task whose result is gone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from astrohpc.config import Config, from_dict
from astrohpc.data.cube import read_meta
from astrohpc.train.trainer import train

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slurm
def test_parity_study_as_an_array_then_only_the_missing_task(physics_cube, slurm_workdir):
    names = read_meta(physics_cube).run_names
    cfg = from_dict(Config, {"run": {"root": str(slurm_workdir), "name": "train", "seed": 2},
                             "model": {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1}},
                             "train": {"cube": str(physics_cube), "test_runs": [names[1]], "epochs": 1,
                                       "batch_size": 2, "checkpoint_every": 0}}, source="test")
    train(cfg)
    path = slurm_workdir / "parity.yaml"
    path.write_text(f"""extends: [{REPO}/configs/cluster/local.yaml]
run: {{name: parity, root: {slurm_workdir}}}
study: {{model: {slurm_workdir}/train/export/last.pt, twin: false, runs: [{names[1]}, {names[1]}]}}
slurm: {{time: "00:05:00", mem: 2G}}
""")
    command = [sys.executable, "-m", "astrohpc", "study", "parity", str(path), "--submit", "--wait", "--timeout", "300"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    folder = slurm_workdir / "parity"
    record = json.loads((folder / "aggregate.json").read_text())
    assert record["complete"] and record["finished"] == [0, 1]
    first = json.loads((folder / "submission.json").read_text())
    assert [a["tasks"] for a in first["arrays"]] == [[0, 1]]

    (folder / "tasks" / "0001" / "result.json").unlink()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=400)
    assert done.returncode == 0, done.stdout + done.stderr
    again = json.loads((folder / "submission.json").read_text())
    assert again["resubmitted"] == [1] and [a["tasks"] for a in again["arrays"]] == [[1]]
    assert json.loads((folder / "aggregate.json").read_text())["complete"]
