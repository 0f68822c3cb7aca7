"""Session fixtures `smoke_gcm_run` and `smoke_gcm_runs`: finished ExoPlaSim runs of
configs/gcm/smoke.yaml (5 days, T21, 10 levels), made once per machine and reused.

A run lives under `$ASTROHPC_CACHE/smoke-runs/<key>/` (default `~/.cache/astrohpc`); the key
hashes what the run's output depends on — the resolved `planet:` and `gcm:` sections (default
output variables included), the ExoPlaSim build key and version, and the source of the runner
that maps them onto ExoPlaSim — so changing any of them makes a new run. A run is made in a
temporary folder beside it and renamed into place when finished, under an fcntl lock: a
concurrent session waits for it, a killed one leaves only a temporary folder, removed by the
next session. Tests get the cached folder itself (copying nothing): treat it as read-only, and
copy the files a test modifies.

`python tests/gcm_smoke_fixture.py [OVERRIDE ...]` makes (or finds) a run and prints its path:
the MPI suite's rank 0 runs it in a subprocess with the MPI launcher's environment removed,
because ExoPlaSim must not start inside an mpirun-launched process.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO / "configs" / "gcm" / "smoke.yaml"
# The second member of the two-run "sweep" the data tests convert: a real run at lower instellation.
DIMMER = ("planet.instellation_W_m2=1300",)
# Source files whose code decides what a run writes (besides the config and the build).
RUNNER_SOURCES = ("astrohpc/gcm/exoplasim_runner.py", "astrohpc/gcm/run.py")
# Variables an mpirun-launched process carries; a child started with them would join the MPI job.
MPI_ENV_PREFIXES = ("OMPI_", "PMIX_", "PMI_", "PRTE_", "HYDRA_", "MPI_LOCALRANKID", "MPI_LOCALNRANKS")


def smoke_runs_root() -> Path:
    """`$ASTROHPC_CACHE/smoke-runs`, else `~/.cache/astrohpc/smoke-runs`."""
    base = os.environ.get("ASTROHPC_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "astrohpc") / "smoke-runs"


def smoke_run_key(cfg) -> str:
    """16 hex digits naming the run of `cfg` (see the module doc for what goes in)."""
    from astrohpc.config import to_dict
    from astrohpc.gcm.build import exoplasim_version
    from astrohpc.gcm.exoplasim_runner import build_key

    resolved = to_dict(cfg)
    record = {"planet": resolved["planet"], "gcm": resolved["gcm"], "name": resolved["run"]["name"],
              "build": build_key(cfg.gcm).cache_name(exoplasim_version()),
              "runner": {p: hashlib.sha256((REPO / p).read_bytes()).hexdigest() for p in RUNNER_SOURCES}}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a run takes seconds; pytest's timeout bounds the wait
        yield
    finally:
        os.close(fd)


def find_smoke_run(overrides: Sequence[str] = ()) -> Optional[Path]:
    """The cached finished run of the smoke config with `overrides`, or None (never runs the model)."""
    from astrohpc.config import load_config
    from astrohpc.gcm.run import is_finished

    path = smoke_runs_root() / smoke_run_key(load_config(SMOKE_CONFIG, overrides))
    return path if is_finished(path) else None


def cached_smoke_run(overrides: Sequence[str] = ()) -> Path:
    """The finished run of the smoke config with `overrides`, made now if not cached yet.

    Also makes sure the ExoPlaSim build exists (compiled at most once per machine): other
    tests use this fixture for that.
    """
    from astrohpc.config import load_config
    from astrohpc.gcm.run import FINISHED, is_finished, run_simulation
    from astrohpc.gcm.runner import get_runner

    cfg = load_config(SMOKE_CONFIG, overrides)
    get_runner(cfg.gcm.model).build(cfg.gcm)
    root = smoke_runs_root()
    final = root / smoke_run_key(cfg)
    if is_finished(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _exclusive(root / f".{final.name}.lock"):
        if is_finished(final):  # made by another session while we waited
            return final
        for stale in [*root.glob(f".{final.name}.tmp-*"), final]:  # a killed session's leftovers
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
        try:
            run_dir = tmp / cfg.run.name
            summary = run_simulation(load_config(SMOKE_CONFIG, [*overrides, f"run.root={tmp}"]), run_dir)
            if summary.get("status") != FINISHED:
                raise RuntimeError(f"smoke run in {run_dir} did not finish: {summary}")
            os.rename(run_dir, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def cached_smoke_run_outside_mpi(overrides: Sequence[str] = ()) -> Path:
    """`cached_smoke_run` for a process started by mpirun: the cached run if there is one, else
    made by a fresh Python without the launcher's environment (ExoPlaSim runs its own programs)."""
    found = find_smoke_run(overrides)
    if found is not None:
        return found
    env = {k: v for k, v in os.environ.items() if not k.startswith(MPI_ENV_PREFIXES)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *overrides], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"smoke run failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def smoke_gcm_run() -> Path:
    """The run directory of a finished smoke run (summary.json, config.yaml, provenance.json,
    output/exoplasim.nc, output/exoplasim_snapshot.nc, output/exoplasim_restart). Read-only."""
    return cached_smoke_run()


@pytest.fixture(scope="session")
def smoke_gcm_runs(smoke_gcm_run) -> list[Path]:
    """Two finished runs that differ in one planet parameter: the smoke run (1361 W m-2) and the
    same at 1300 W m-2 — a real two-member sweep. Read-only."""
    return [smoke_gcm_run, cached_smoke_run(DIMMER)]


if __name__ == "__main__":
    print(cached_smoke_run(sys.argv[1:]))
