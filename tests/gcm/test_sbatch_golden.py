"""The sbatch text of a sweep is pinned by golden files (tests/gcm/golden/).

After an intended change, regenerate with: ASTROHPC_UPDATE_GOLDEN=1 pytest tests/gcm/test_sbatch_golden.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from astrohpc.gcm.sweep_slurm import array_chunks, render_aggregate, render_spinup, render_task_array
from astrohpc.launch.profiles import load_job_config

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
PYTHON = "/opt/astrohpc/.venv/bin/python"
SWEEP_DIR = Path("/scratch/runs/gcm/demo")


def _check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("ASTROHPC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"rendered script differs from {path}"


@pytest.fixture
def demo_cfg():
    return load_job_config(REPO / "configs" / "gcm" / "demo.yaml", cluster="local")  # the profile of a submission


def test_task_array_matches_golden(demo_cfg):
    (chunk,) = array_chunks(list(range(8)), max_size=1001)
    _check("gcm_sweep_array.sbatch", render_task_array(demo_cfg, SWEEP_DIR, chunk, python=PYTHON))


def test_split_array_second_chunk_matches_golden(demo_cfg):
    chunks = array_chunks([0, 1, 2, 5, 6, 7, 9], max_size=4)
    assert [(c["offset"], c["array"]) for c in chunks] == [(0, "0-2"), (4, "1-3"), (8, "1")]
    _check("gcm_sweep_array_offset4.sbatch", render_task_array(demo_cfg, SWEEP_DIR, chunks[1], python=PYTHON))


def test_aggregate_and_spinup_match_golden(demo_cfg):
    _check("gcm_aggregate.sbatch", render_aggregate(demo_cfg, SWEEP_DIR, python=PYTHON))
    _check("gcm_spinup.sbatch", render_spinup(demo_cfg, SWEEP_DIR, python=PYTHON))


def test_shell_characters_in_the_sweep_path_are_refused(demo_cfg):
    from astrohpc.errors import SlurmError

    (chunk,) = array_chunks([0], max_size=1001)
    with pytest.raises(SlurmError, match="output"):
        render_task_array(demo_cfg, Path("/tmp/a b;rm -rf ~"), chunk, python=PYTHON)
