"""Fixtures for the data-layer tests: cubes converted from the cached ExoPlaSim smoke runs, and
the real GCM files written by others (../shared, for checks against outside files only)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def geocat(shared_real) -> Path:
    """Folder of the NCAR geocat sample files (tests using it carry @pytest.mark.shared)."""
    return shared_real / "earth" / "geocat"


@pytest.fixture(scope="session")
def smoke_cube(smoke_gcm_runs, tmp_path_factory) -> Path:
    """The two smoke runs (1361 and 1300 W m-2) converted by the project's converter: fields
    [2 runs, 5 daily snapshots, 44+ channels, 32 lat (south -> north), 64 lon]. Read-only:
    a test that writes statistics works on a copy."""
    from astrohpc.data.convert import convert_run_dirs

    return convert_run_dirs(smoke_gcm_runs, tmp_path_factory.mktemp("cube") / "smoke.h5", kind="snapshots")
