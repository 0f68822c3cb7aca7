"""Shared pytest set-up: markers that skip cleanly when a real component is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# The session-wide ExoPlaSim smoke run (builds the model once); tests/ is on sys.path under
# pytest's default import mode, so the module imports by its own name.
from gcm_smoke_fixture import smoke_gcm_run  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


def slurm_is_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return proc.returncode == 0 and "UP" in proc.stdout


def pytest_collection_modifyitems(config, items):
    slurm_up = None
    for item in items:
        if "slurm" in item.keywords:
            if slurm_up is None:
                slurm_up = slurm_is_up()
            if not slurm_up:
                item.add_marker(pytest.mark.skip(
                    reason="no Slurm controller: run 'tools/local-slurm.sh start' and export its SLURM_CONF "
                           "(make test does both)"))
        if "shared" in item.keywords and not SHARED_REAL.is_dir():
            item.add_marker(pytest.mark.skip(reason=f"{SHARED_REAL} absent (a fresh clone without ../shared)"))


@pytest.fixture
def shared_real() -> Path:
    """The folder of real GCM files written by others (tests using it carry @pytest.mark.shared)."""
    return SHARED_REAL


@pytest.fixture
def slurm_workdir(tmp_path_factory) -> Path:
    """A folder the Slurm daemons can write job logs into (same machine, so any tmp folder)."""
    return tmp_path_factory.mktemp("slurm")


# Keep tests from depending on the caller's environment overrides of the cluster.
os.environ.setdefault("ASTROHPC_TESTING", "1")
