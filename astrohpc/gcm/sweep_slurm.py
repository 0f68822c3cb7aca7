"""A sweep as Slurm jobs: [spin-up] -> task array(s) -> aggregation.

Task i runs as array element i - offset of the array that holds it; the array exports
ASTROHPC_TASK_OFFSET and the job reads SLURM_ARRAY_TASK_ID itself (`astrohpc gcm task`),
so no user string is ever pasted into the shell. Arrays longer than the cluster's
MaxArraySize are split. Only unfinished tasks are submitted; `%A_%a` names the logs.

Every job runs `astrohpc gcm ...` on the host or, with slurm.container, in the image (apptainer
exec, no --nv: the GCM runs on CPUs) and exports slurm.env. A task is one process of gcm.ncpus
CPUs (ExoPlaSim starts its own MPI ranks), so the profile's GPU and node layout, which describe
training jobs, do not apply here.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from astrohpc.atomic_write import write_json
from astrohpc.config import Config
from astrohpc.gcm.manifest import SUBMISSION
from astrohpc.gcm.run import is_finished
from astrohpc.gcm.sweep import SPINUP_DIR, load_table, unfinished_tasks
from astrohpc.launch import render_sbatch, submit, write_script
from astrohpc.launch.job_command import astrohpc_command, job_environment
from astrohpc.launch.job_env import ARRAY_OFFSET_VARIABLE as OFFSET_VARIABLE

DEFAULT_MAX_ARRAY_SIZE = 1001  # Slurm's default MaxArraySize
TASK_TEMPLATE = "gcm_sweep.sbatch"
AGGREGATE_TEMPLATE = "gcm_aggregate.sbatch"


def max_array_size() -> int:
    """MaxArraySize from `scontrol show config` (the default 1001 when it cannot be read)."""
    if shutil.which("scontrol") is None:
        return DEFAULT_MAX_ARRAY_SIZE
    proc = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout, re.MULTILINE)
    return int(match.group(1)) if proc.returncode == 0 and match else DEFAULT_MAX_ARRAY_SIZE


def compress_ranges(ids: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2,5,7-8" (sbatch --array syntax)."""
    ids = sorted(set(ids))
    parts, start = [], None
    for i, value in enumerate(ids):
        if start is None:
            start = value
        if i + 1 == len(ids) or ids[i + 1] != value + 1:
            parts.append(str(start) if start == value else f"{start}-{value}")
            start = None
    return ",".join(parts)


def array_chunks(tasks: list[int], max_size: int) -> list[dict[str, Any]]:
    """Split task indices into arrays whose element ids stay below `max_size`:
    [{"offset": k * max_size, "tasks": [...], "array": "0-3,7"}]."""
    chunks: dict[int, list[int]] = {}
    for task in sorted(tasks):
        chunks.setdefault(task // max_size * max_size, []).append(task)
    return [{"offset": offset, "tasks": members, "array": compress_ranges([t - offset for t in members])}
            for offset, members in sorted(chunks.items())]


def render_task_array(cfg: Config, sweep_dir: Path, chunk: dict, python: str = sys.executable) -> str:
    """The sbatch script of one task array (1 task of gcm.ncpus CPUs and slurm.mem each)."""
    array = chunk["array"] + (f"%{cfg.slurm.max_parallel}" if cfg.slurm.max_parallel else "")
    return render_sbatch(
        TASK_TEMPLATE, astrohpc_command(["gcm", "task", str(sweep_dir)], cfg.slurm, python),
        setup=cfg.slurm.setup, env=job_environment(cfg.slurm, **{OFFSET_VARIABLE: str(chunk["offset"])}),
        job_name=f"gcm-{cfg.run.name}", array=array, ntasks=1, cpus_per_task=cfg.gcm.ncpus, mem=cfg.slurm.mem,
        output=f"{sweep_dir}/logs/task-%A_%a.out", **cfg.slurm.site_options())


def render_spinup(cfg: Config, sweep_dir: Path, python: str = sys.executable) -> str:
    return render_sbatch(
        TASK_TEMPLATE, astrohpc_command(["gcm", "task", str(sweep_dir), "--spinup"], cfg.slurm, python),
        setup=cfg.slurm.setup, env=job_environment(cfg.slurm), job_name=f"gcm-{cfg.run.name}-spinup", ntasks=1,
        cpus_per_task=cfg.gcm.ncpus, mem=cfg.slurm.mem, output=f"{sweep_dir}/logs/spinup-%j.out",
        **cfg.slurm.site_options())


def render_aggregate(cfg: Config, sweep_dir: Path, python: str = sys.executable) -> str:
    return render_sbatch(
        AGGREGATE_TEMPLATE, astrohpc_command(["gcm", "aggregate", str(sweep_dir)], cfg.slurm, python),
        setup=cfg.slurm.setup, env=job_environment(cfg.slurm), job_name=f"gcm-{cfg.run.name}-aggregate", ntasks=1,
        cpus_per_task=1, mem=cfg.slurm.mem, output=f"{sweep_dir}/logs/aggregate-%j.out", **cfg.slurm.site_options())


@dataclass
class SweepScripts:
    """Everything --submit would hand to sbatch, in order."""

    spinup: Optional[str]
    arrays: list[tuple[dict, str]] = field(default_factory=list)
    aggregate: str = ""


def render_sweep(cfg: Config, sweep_dir: Path, todo: list[int], spinup: bool,
                 max_size: Optional[int] = None, python: str = sys.executable) -> SweepScripts:
    """Render the scripts for tasks `todo` of the sweep in `sweep_dir` (absolute paths in the jobs)."""
    sweep_dir = sweep_dir.resolve()
    chunks = array_chunks(todo, max_size or max_array_size())
    return SweepScripts(spinup=render_spinup(cfg, sweep_dir, python) if spinup else None,
                        arrays=[(c, render_task_array(cfg, sweep_dir, c, python)) for c in chunks],
                        aggregate=render_aggregate(cfg, sweep_dir, python))


def sweep_problems(cfg: Config, sweep_dir: Path) -> list[str]:
    """Pre-flight problems of a sweep's jobs (astrohpc.launch.preflight): the sweep folder they write."""
    from astrohpc.launch.preflight import preflight

    return preflight(cfg.slurm, outputs=[str(Path(sweep_dir).resolve())])


def submit_sweep(cfg: Config, sweep_dir: Path) -> dict[str, Any]:
    """Submit [spin-up ->] arrays -> aggregation; record the job ids in submission.json.
    ConfigError before any sbatch when the pre-flight checks find a problem."""
    from astrohpc.launch.preflight import refuse_problems

    sweep_dir = sweep_dir.resolve()
    refuse_problems(sweep_problems(cfg, sweep_dir), "sweep")
    table = load_table(sweep_dir)
    scripts = render_sweep(cfg, sweep_dir, unfinished_tasks(sweep_dir, table), bool(table.get("spinup_days")))
    (sweep_dir / "logs").mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    script_dir = sweep_dir / "slurm"
    record: dict[str, Any] = {"submitted_utc": stamp, "spinup_job": None, "arrays": [], "aggregate_job": None}
    array_args = []
    if scripts.spinup and scripts.arrays:
        if not is_finished(sweep_dir / SPINUP_DIR):
            job = submit(write_script(script_dir / f"spinup-{stamp}.sbatch", scripts.spinup))
            record["spinup_job"] = job
            # A failed spin-up cancels the arrays instead of leaving them pending forever.
            array_args = [f"--dependency=afterok:{job}", "--kill-on-invalid-dep=yes"]
    for chunk, text in scripts.arrays:
        path = write_script(script_dir / f"tasks-{chunk['offset']}-{stamp}.sbatch", text)
        job = submit(path, array_args)
        record["arrays"].append({"job_id": job, **chunk})
    # Recorded before the aggregation job exists: it reads this file to find the task logs.
    path = sweep_dir / SUBMISSION
    history = json.loads(path.read_text()) if path.is_file() else {"submissions": []}
    history["submissions"].append(record)
    write_json(path, history)
    after = [a["job_id"] for a in record["arrays"]] or ([record["spinup_job"]] if record["spinup_job"] else [])
    agg_args = [f"--dependency=afterany:{':'.join(after)}"] if after else []
    record["aggregate_job"] = submit(write_script(script_dir / f"aggregate-{stamp}.sbatch", scripts.aggregate),
                                     agg_args)
    write_json(path, history)  # `record` is the last entry of `history`
    return record


def job_ids(record: dict) -> list[str]:
    """All job ids of one submission record (for waiting on them)."""
    ids = [record["spinup_job"]] if record.get("spinup_job") else []
    return ids + [a["job_id"] for a in record["arrays"]] + [record["aggregate_job"]]
