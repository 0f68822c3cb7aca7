"""Checks before `sbatch`: what would make a job fail only after it waited in the queue.

    problems = preflight(cfg.slurm, inputs={"train.cube": "/scratch/cube.h5"}, outputs=["/scratch/runs/x"])

Each problem is one sentence naming the setting and the fix. A submission raises ConfigError with
all of them; a dry run prints them and goes on (an earlier stage's output may not exist yet).
The checks: the profile's placeholder account; inputs (cube, model, sweep) and the container
image that do not exist; with a container, inputs and outputs no bind makes visible at the same
path inside the image; a partition `sinfo` does not list (skipped when sinfo does not answer);
variables under names torch no longer reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from astrohpc.errors import ConfigError
from astrohpc.launch.container import IMAGE_SCHEMES

PLACEHOLDER_ACCOUNTS = frozenset({"change_me", "changeme", "your_account", "account", "todo", "xxx"})
# Apptainer binds these by default (the user's home; /tmp), so paths below them need no --bind
DEFAULT_BINDS = ("HOME", "/tmp")
RENAMED_VARIABLES = {"NCCL_ASYNC_ERROR_HANDLING": "TORCH_NCCL_ASYNC_ERROR_HANDLING",
                     "NCCL_BLOCKING_WAIT": "TORCH_NCCL_BLOCKING_WAIT"}


def preflight(slurm: Any, inputs: Optional[Mapping[str, Optional[str]]] = None, outputs: Iterable[str] = (),
              partitions: Optional[set[str]] = None) -> list[str]:
    """Every problem found (empty: fine). inputs: {setting: path} the job reads (None: not set);
    outputs: folders it writes. partitions: the cluster's (default: asked of sinfo, if it answers)."""
    problems = []
    account = (slurm.account or "").strip()
    if account.lower() in PLACEHOLDER_ACCOUNTS or account.startswith("<"):
        problems.append(f"slurm.account is the placeholder {account!r} of the cluster profile: give yours with "
                        "--account NAME (or slurm.account=NAME, or in your copy of the profile)")
    inputs = dict(inputs or {})
    for setting, path in inputs.items():
        if path and not Path(path).exists():
            problems.append(f"{setting} {path} does not exist: run the stage that makes it first, or fix the path")
    if slurm.container:
        problems += _container_problems(slurm, [p for p in inputs.values() if p], list(outputs))
    for old, new in RENAMED_VARIABLES.items():
        if old in slurm.env:
            problems.append(f"slurm.env {old} is the name torch read before 2.2; it reads {new} now: rename it")
    if slurm.partition:
        known = cluster_partitions() if partitions is None else partitions
        unknown = [p for p in slurm.partition.split(",") if known and p not in known]
        if unknown:
            problems.append(f"slurm.partition {', '.join(unknown)} is not a partition of this cluster (sinfo lists "
                            f"{', '.join(sorted(known))}): --partition NAME")
    return problems


def _container_problems(slurm: Any, inputs: list[str], outputs: list[str]) -> list[str]:
    problems = []
    image = slurm.container
    if not image.startswith(IMAGE_SCHEMES) and not Path(image).is_file():
        problems.append(f"slurm.container {image} does not exist: build it (apptainer build astrohpc.sif "
                        "Apptainer.def) or give its path")
    missed = [p for p in [*inputs, *outputs] if not bound_at_same_path(p, slurm.binds)]
    if missed:
        folders = sorted({str(Path(p).resolve().parent if Path(p).suffix else Path(p).resolve()) for p in missed})
        problems.append(f"with slurm.container, the job reads or writes {', '.join(missed)}, which no bind makes "
                        f"visible inside the image; add slurm.binds=[{', '.join(folders)}] (or a parent folder)")
    return problems


def bound_at_same_path(path: str, binds: Iterable[str]) -> bool:
    """`path` is visible inside the image at the same path: below a bind `src[:src[:opts]]` or a
    folder Apptainer binds by default (home, /tmp)."""
    target = os.path.abspath(path)
    roots = [os.path.expanduser("~") if d == "HOME" else d for d in DEFAULT_BINDS]
    for bind in binds:
        parts = bind.split(":")
        if len(parts) == 1 or parts[1] == parts[0]:
            roots.append(os.path.abspath(parts[0]))
    return any(target == root or target.startswith(root.rstrip("/") + "/") for root in roots)


def cluster_partitions() -> set[str]:
    """The partition names `sinfo` lists (empty when there is no sinfo or it does not answer)."""
    sinfo = shutil.which("sinfo")
    if sinfo is None:
        return set()
    try:
        proc = subprocess.run([sinfo, "-h", "-o", "%R"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def refuse_problems(problems: list[str], what: str) -> None:
    """ConfigError listing every problem, before anything is written or submitted (none: return)."""
    if problems:
        listed = " ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise ConfigError(f"{what} not submitted: {listed} (found before sbatch, not after the wait in the queue)")
