"""Fixtures for the data-layer tests: real GCM files by others, and cubes converted from them."""

from __future__ import annotations

from pathlib import Path

import pytest

GEOCAT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real" / "earth" / "geocat"


@pytest.fixture
def geocat(shared_real) -> Path:
    """Folder of the NCAR geocat sample files (tests using it carry @pytest.mark.shared)."""
    return shared_real / "earth" / "geocat"


@pytest.fixture(scope="session")
def b003_two_run_cube(tmp_path_factory) -> Path:
    """b003 surface temperature (100 annual means, T42) converted twice: a 2-run cube."""
    from astrohpc.data.convert import convert

    if not GEOCAT.is_dir():
        pytest.skip(f"{GEOCAT} absent")
    out = tmp_path_factory.mktemp("cube") / "b003x2.h5"
    src = GEOCAT / "b003_TS_200-299.nc"
    return convert([src, src], out, run_params=[{"instellation_W_m2": 1361.0}, {"instellation_W_m2": 1300.0}])
