"""`astrohpc data ...` as a user runs it: convert, stats (also under mpirun), validate, errors.

Inputs: the cached ExoPlaSim smoke runs (run folders, as a user passes them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from astrohpc.data.cube import read_meta


def astrohpc(*args: str, mpi: int = 0) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "astrohpc", *args]
    # mpirun (ours, or the benchmark's) refuses root without these; harmless otherwise
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    if mpi:
        cmd = ["mpirun", "-n", str(mpi), *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


def test_convert_stats_validate(smoke_gcm_run, tmp_path):
    import h5py

    cube = tmp_path / "cube.h5"
    proc = astrohpc("data", "convert", str(smoke_gcm_run), "-o", str(cube), "--vars", "ta",
                    "--levels", "pressure:850,500,200")
    assert proc.returncode == 0, proc.stderr
    meta = read_meta(cube)
    assert meta.shape == (1, 5, 3, 32, 64) and meta.level_kinds == ["pressure"] * 3
    with h5py.File(cube, "r") as f:
        assert f.attrs["levels"] == "pressure:850,500,200"
    proc = astrohpc("data", "stats", str(cube))
    assert proc.returncode == 0, proc.stderr
    assert "ta@50000" in proc.stdout and "stored in" in proc.stdout
    assert read_meta(cube).stats is not None
    proc = astrohpc("data", "validate", "--deep", str(cube))
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_stats_under_mpirun_equal_serial(smoke_gcm_runs, tmp_path):
    serial, parallel = tmp_path / "s.h5", tmp_path / "p.h5"
    proc = astrohpc("data", "convert", *map(str, smoke_gcm_runs), "-o", str(serial))
    assert proc.returncode == 0, proc.stderr
    shutil.copy(serial, parallel)
    assert astrohpc("data", "stats", str(serial)).returncode == 0
    proc = astrohpc("data", "stats", str(parallel), mpi=2)
    assert proc.returncode == 0, proc.stderr
    assert "2 rank(s)" in proc.stdout
    a, b = read_meta(serial).stats, read_meta(parallel).stats
    for part in ("fields", "diffs"):
        for q in ("mean", "std"):
            np.testing.assert_allclose(b[part][q], a[part][q], rtol=1e-12)
        np.testing.assert_array_equal(b[part]["count"], a[part]["count"])


def test_errors_are_one_line_and_exit_2(smoke_gcm_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = astrohpc("data", "convert", str(smoke_gcm_run), "-o", str(out / "c.h5"), "--vars", "ta,zz")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("astrohpc: error: ")
    assert "variable 'zz' not found" in proc.stderr and "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_bench_runs_end_to_end_and_writes_json(smoke_gcm_runs, tmp_path):
    """Plumbing only (tiny sizes): the speed targets live in tools/bench_io.py, not in tests."""
    import json

    cube = tmp_path / "cube.h5"
    assert astrohpc("data", "convert", *map(str, smoke_gcm_runs), "-o", str(cube)).returncode == 0
    proc = astrohpc("data", "bench", str(cube), "--passes", "1", "--limit", "6", "--bytes", "1e6",
                    "--out", str(tmp_path / "bench"))
    assert proc.returncode == 0, proc.stderr
    (record_path,) = (tmp_path / "bench").glob("io-*.json")
    record = json.loads(record_path.read_text())
    assert set(record["reader"]) == {"independent_1", "independent_2", "collective_1", "collective_2"}
    assert record["windows"] == 6 and record["provenance"]["host"]
    assert all(v > 0 for k, v in record["ratios"].items())
