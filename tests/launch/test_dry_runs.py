"""Dry runs as on a fresh clone: no earlier stage's output exists, and nothing may be written or
deleted; every script is printed (placeholders where the tasks are not known yet). Flags a job
cannot honour are refused; `study KIND CONFIG` needs a mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KINDS = ("parity", "rollout", "ablation", "calibration", "spinup")


def astrohpc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "ASTROHPC_CLUSTER"}
    return subprocess.run([sys.executable, "-m", "astrohpc", *args], capture_output=True, text=True, cwd=cwd,
                          env=environ, timeout=120)


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("kind", KINDS)
def test_study_dry_run_needs_no_earlier_output_and_writes_nothing(tmp_path, kind):
    done = astrohpc(tmp_path, "study", kind, str(REPO / "configs" / "study" / f"{kind}_demo.yaml"), "--dry-run",
                    "--cluster", "a500", f"run.root={tmp_path}/runs")
    assert done.returncode == 0, done.stderr
    assert files_under(tmp_path) == []
    assert "#SBATCH --partition=a500" in done.stdout and "study aggregate" in done.stdout
    assert "#SBATCH --array=" in done.stdout and "dry run: nothing written" in done.stdout
    # what --submit would refuse is said, not raised: here the profile's placeholder account at least
    assert "placeholder 'CHANGE_ME'" in done.stderr


def test_parity_dry_run_shows_a_placeholder_when_the_model_is_missing(tmp_path):
    done = astrohpc(tmp_path, "study", "parity", str(REPO / "configs" / "study" / "parity_demo.yaml"), "--dry-run",
                    f"run.root={tmp_path}", f"study.model={tmp_path}/none/best.pt")
    assert done.returncode == 0, done.stderr
    assert "#SBATCH --array=<task ids, known once the inputs exist>" in done.stdout
    assert "the tasks cannot be listed yet" in done.stdout and f"{tmp_path}/none/best.pt" in done.stderr
    assert files_under(tmp_path) == []


def test_replace_dry_run_deletes_nothing(tmp_path):
    folder = tmp_path / "parity_demo"
    folder.mkdir()
    study = {"kind": "rollout", "config": {}, "config_hash": "other", "tasks": [{"id": 0}]}
    (folder / "study.json").write_text(json.dumps(study))
    before = files_under(tmp_path)
    config = str(REPO / "configs" / "study" / "parity_demo.yaml")
    done = astrohpc(tmp_path, "study", "parity", config, "--dry-run", "--replace", f"run.root={tmp_path}",
                    "run.name=parity_demo")
    assert done.returncode == 0, done.stderr
    assert "--replace would delete" in done.stdout and files_under(tmp_path) == before
    refused = astrohpc(tmp_path, "study", "parity", config, "--dry-run", f"run.root={tmp_path}",
                       "run.name=parity_demo")
    assert refused.returncode == 2 and "--replace" in refused.stderr


def test_study_without_a_mode_is_refused(tmp_path):
    done = astrohpc(tmp_path, "study", "parity", str(REPO / "configs" / "study" / "parity_demo.yaml"))
    assert done.returncode == 2 and "--submit" in done.stderr and "--dry-run" in done.stderr


def test_sweep_dry_run_in_the_image_on_a500(tmp_path):
    config = str(REPO / "configs" / "gcm" / "demo.yaml")
    done = astrohpc(tmp_path, "submit", "sweep", config, "--cluster", "a500", "--container", "/img/astrohpc.sif",
                    "--dry-run", "run.root=/scratch/me/runs")  # an override after the options; not under /tmp,
    assert done.returncode == 0, done.stderr
    # which Apptainer binds by default. No binds given: the pre-flight says so
    assert "apptainer exec --bind" not in done.stdout
    assert "apptainer exec /img/astrohpc.sif astrohpc gcm task" in done.stdout
    assert "#SBATCH --partition=a500" in done.stdout and "%2" not in done.stdout  # local.yaml is gone
    assert "export NCCL_DEBUG=WARN" in done.stdout
    assert "/scratch/me/runs/demo, which no bind makes visible" in done.stderr
    assert "/img/astrohpc.sif does not exist" in done.stderr
    assert files_under(tmp_path) == [] and not Path("/scratch/me").exists()


@pytest.mark.parametrize("what, flags", [("sweep", ["--nodes", "4"]), ("sweep", ["--gpus-per-node", "2"]),
                                         ("sweep", ["--cpus-per-task", "4"]),
                                         ("study", ["--kind", "parity", "--nodes", "2"]),
                                         ("study", ["--kind", "parity", "--gpus-per-node", "4"])])
def test_flags_a_job_cannot_honour_are_refused(tmp_path, what, flags):
    config = REPO / "configs" / ("gcm/demo.yaml" if what == "sweep" else "study/parity_demo.yaml")
    done = astrohpc(tmp_path, "submit", what, str(config), "--cluster", "a500", *flags, "--dry-run")
    assert done.returncode == 2 and "cannot be honoured" in done.stderr
    assert files_under(tmp_path) == []


def test_a_config_extending_another_profile_is_refused_with_the_fix(tmp_path):
    config = tmp_path / "old.yaml"
    config.write_text(f"extends: [{REPO}/configs/cluster/local.yaml]\nrun: {{root: {tmp_path}/runs}}\n")
    done = astrohpc(tmp_path, "submit", "train", str(config), "--cluster", "a500", "--dry-run")
    assert done.returncode == 2 and "remove the 'extends: ../cluster/local.yaml' line" in done.stderr
    same = astrohpc(tmp_path, "submit", "train", str(config), "--cluster", "local", "--dry-run")
    assert same.returncode == 0, same.stderr


def test_submission_with_problems_is_refused_before_anything_is_written(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(f"run: {{name: t, root: {tmp_path}/runs}}\ntrain: {{cube: /data/me/missing.h5}}\n")
    done = astrohpc(tmp_path, "submit", "train", str(config), "--cluster", "a500", "--container", "/img/a.sif")
    assert done.returncode == 2, done.stderr
    for fragment in ("placeholder 'CHANGE_ME'", "missing.h5 does not exist", "/img/a.sif does not exist",
                     "no bind makes visible"):
        assert fragment in done.stderr
    assert files_under(tmp_path) == ["train.yaml"]
