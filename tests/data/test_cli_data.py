"""`astrohpc data ...` as a user runs it: convert, stats (also under mpirun), validate, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.shared


def astrohpc(*args: str, mpi: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "astrohpc", *args]
    # mpirun (ours, or the benchmark's) refuses root without these; harmless otherwise
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    if mpi:
        cmd = ["mpirun", "-n", str(mpi), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_convert_stats_validate(geocat, tmp_path):
    cube = tmp_path / "cube.h5"
    proc = astrohpc("data", "convert", str(geocat / "vinth2p.nc"), "-o", str(cube), "--vars", "T",
                    "--levels", "pressure:850,500,200")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(cube, "r") as f:
        assert f["fields"].shape == (1, 2, 3, 64, 128)
        assert f.attrs["levels"] == "pressure:850,500,200"
    proc = astrohpc("data", "stats", str(cube))
    assert proc.returncode == 0, proc.stderr
    assert "T@50000" in proc.stdout and "stored in" in proc.stdout
    proc = astrohpc("data", "validate", "--deep", str(cube))
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_stats_under_mpirun_equal_serial(geocat, tmp_path):
    serial, parallel = tmp_path / "s.h5", tmp_path / "p.h5"
    assert astrohpc("data", "convert", str(geocat / "b003_TS_200-299.nc"), "-o", str(serial)).returncode == 0
    shutil.copy(serial, parallel)
    assert astrohpc("data", "stats", str(serial)).returncode == 0
    proc = astrohpc("data", "stats", str(parallel), mpi=2)
    assert proc.returncode == 0, proc.stderr
    assert "2 rank(s)" in proc.stdout
    with h5py.File(serial, "r") as a, h5py.File(parallel, "r") as b:
        for q in ("mean", "std"):
            np.testing.assert_allclose(b[f"stats/diffs/{q}"][()], a[f"stats/diffs/{q}"][()], rtol=1e-12)


def test_errors_are_one_line_and_exit_2(geocat, tmp_path):
    proc = astrohpc("data", "convert", str(geocat / "80.nc"), "-o", str(tmp_path / "c.h5"), "--levels", "pressure:500")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("astrohpc: error: ")
    assert "no hyam/hybm" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_bench_runs_end_to_end_and_writes_json(geocat, tmp_path):
    """Plumbing only (tiny sizes): the speed targets live in tools/bench_io.py, not in tests."""
    import json

    cube = tmp_path / "cube.h5"
    assert astrohpc("data", "convert", str(geocat / "b003_TS_200-299.nc"), "-o", str(cube)).returncode == 0
    proc = astrohpc("data", "bench", str(cube), "--passes", "1", "--limit", "20", "--bytes", "1e6",
                    "--out", str(tmp_path / "bench"))
    assert proc.returncode == 0, proc.stderr
    (record_path,) = (tmp_path / "bench").glob("io-*.json")
    record = json.loads(record_path.read_text())
    assert set(record["reader"]) == {"independent_1", "independent_2", "collective_1", "collective_2"}
    assert record["windows"] == 20 and record["provenance"]["host"]
    assert all(v > 0 for k, v in record["ratios"].items())
