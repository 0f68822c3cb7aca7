"""Provenance written into every output: config, git state, versions, host, Slurm ids, time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from astrohpc.atomic_write import write_json, write_text
from astrohpc.launch.job_env import SlurmJobEnv

REPO_ROOT = Path(__file__).resolve().parents[1]
TRACKED_PACKAGES = ("astrohpc", "numpy", "scipy", "h5py", "mpi4py", "netCDF4", "xarray", "torch",
                    "submitit", "pyyaml", "exoplasim")


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """{"commit": sha or None, "dirty": bool or None} for the source tree astrohpc runs from."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)

    try:
        head = git("rev-parse", "HEAD")
    except FileNotFoundError:
        return {"commit": None, "dirty": None}
    if head.returncode != 0:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def collect(config: Any = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The provenance record of this process (config hash when a config is given)."""
    from astrohpc.config import config_hash

    record: dict[str, Any] = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "user": os.environ.get("USER") or os.environ.get("LOGNAME"),
        "cwd": os.getcwd(),
        "command_line": [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv else [],
        "slurm": SlurmJobEnv.from_environ().as_dict(),
        "config_hash": config_hash(config) if config is not None else None,
    }
    if extra:
        record.update(extra)
    return record


def write_run_metadata(run_dir: str | Path, config: Any, extra: dict[str, Any] | None = None) -> dict:
    """Write `config.yaml` (resolved) and `provenance.json` into `run_dir`; return the record."""
    from astrohpc.config import to_yaml

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", to_yaml(config))
    record = collect(config, extra)
    write_json(run_dir / "provenance.json", record)
    return record
