"""Shared pytest set-up: markers that skip cleanly when a real component is absent.

`shared`: the test reads real GCM files written by others in ../shared/data/real (checks
against outside files: CAM grids and hybrid levels, NCAR sample values). Everything else in
the data layer runs on cubes the suite makes from the cached ExoPlaSim smoke run
(tests/gcm_smoke_fixture.py), so a fresh clone without ../shared skips only these.
Set ASTROHPC_NO_SHARED=1 to run as such a clone would (../shared treated as absent).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from climate_fixture import climate_study, climate_sweep  # noqa: F401

# The session-wide ExoPlaSim smoke run (builds the model once); tests/ is on sys.path under
# pytest's default import mode, so the module imports by its own name.
from gcm_smoke_fixture import smoke_gcm_run, smoke_gcm_runs  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "data" / "real"


def shared_is_present() -> bool:
    """../shared/data/real exists and ASTROHPC_NO_SHARED does not ask to pretend otherwise."""
    return SHARED_REAL.is_dir() and os.environ.get("ASTROHPC_NO_SHARED", "") in ("", "0")


def slurm_is_up() -> bool:
    if shutil.which("scontrol") is None:
        return False
    proc = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    return proc.returncode == 0 and "UP" in proc.stdout


def pytest_collection_modifyitems(config, items):
    slurm_up = None
    shared_present = shared_is_present()
    shared_reason = (f"{SHARED_REAL} absent (a fresh clone without ../shared)" if not SHARED_REAL.is_dir()
                     else "ASTROHPC_NO_SHARED set: ../shared treated as absent")
    for item in items:
        if "slurm" in item.keywords:
            if slurm_up is None:
                slurm_up = slurm_is_up()
            if not slurm_up:
                item.add_marker(pytest.mark.skip(
                    reason="no Slurm controller: run 'tools/local-slurm.sh start' and export its SLURM_CONF "
                           "(make test does both)"))
        if "shared" in item.keywords and not shared_present:
            item.add_marker(pytest.mark.skip(reason=shared_reason))


@pytest.fixture
def shared_real(request) -> Path:
    """The folder of real GCM files written by others; only for tests marked @pytest.mark.shared
    (an unmarked test would fail in every clone without ../shared)."""
    if request.node.get_closest_marker("shared") is None:
        pytest.fail(f"{request.node.nodeid} reads ../shared but is not marked @pytest.mark.shared")
    return SHARED_REAL


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now (a process group's rendezvous)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def slurm_workdir(tmp_path_factory) -> Path:
    """A folder the Slurm daemons can write job logs into (same machine, so any tmp folder)."""
    return tmp_path_factory.mktemp("slurm")


# Keep tests from depending on the caller's environment overrides of the cluster.
os.environ.setdefault("ASTROHPC_TESTING", "1")
os.environ.pop("ASTROHPC_CLUSTER", None)  # the cluster profile a submission takes (astrohpc.launch.profiles)


@pytest.fixture(scope="session")
def physics_cube(smoke_gcm_runs, tmp_path_factory) -> Path:  # noqa: F811 (a fixture argument)
    """The two real smoke runs (1361 and 1300 W m-2, 5 daily snapshots each) converted with the
    shipped configs/data/exoplasim.yaml (state, every flux, derived rsdt and zg, static sg and
    lsm, σ interfaces, planet parameters), with area-weighted statistics in its sidecar.
    Read-only: a test that writes works on a copy."""
    from astrohpc.config import load_config
    from astrohpc.data.convert import convert_run_dirs
    from astrohpc.data.stats import run_stats

    settings = load_config(REPO / "configs" / "data" / "exoplasim.yaml").data
    path = convert_run_dirs(smoke_gcm_runs, tmp_path_factory.mktemp("physics") / "physics.h5", settings=settings)
    run_stats(path)
    return path
