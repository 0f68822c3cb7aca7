"""Aggregation: one manifest.json per sweep saying what each task left behind.

Each task is "finished" (summary.json says so), "failed" (summary.json says so, or its Slurm
log shows an error: killed, out of memory, time limit) with a reason, or "missing" (no trace:
never ran, or still running). Finished runs are then converted into two HDF5 datacubes with the
sweep's `data:` settings: daily snapshots (`datacube.h5`) and interval means (`datacube_means.h5`).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from pathlib import Path
from typing import Any, Optional

from astrohpc.atomic_write import write_json
from astrohpc.gcm.run import FAILED, FINISHED, read_summary
from astrohpc.gcm.sweep import SPINUP_DIR, load_table
from astrohpc.provenance import collect

MANIFEST = "manifest.json"
SUBMISSION = "submission.json"
DATACUBE = "datacube.h5"
_ERROR_PATTERNS = (
    re.compile(r"astrohpc: error: (.*)"),
    re.compile(r"slurmstepd: error: (.*)"),
    re.compile(r"((?:oom|out of memory|Killed|MemoryError|No space left on device).*)", re.IGNORECASE),
)


def reason_from_log(text: str) -> Optional[str]:
    """The most telling error line of a task log, or None if it shows no error."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for pattern in _ERROR_PATTERNS:
        for line in reversed(lines):
            match = pattern.search(line)
            if match:
                return match.group(1).strip()
    if any(line.startswith("Traceback") for line in lines):
        return lines[-1]
    return None


def task_log(sweep_dir: Path, index: int) -> Optional[Path]:
    """The Slurm log of the latest submission that ran task `index`, if any."""
    path = sweep_dir / SUBMISSION
    if not path.is_file():
        return None
    for submission in reversed(json.loads(path.read_text()).get("submissions", [])):
        for array in submission.get("arrays", []):
            if index in array["tasks"]:
                log = sweep_dir / "logs" / f"task-{array['job_id']}_{index - array['offset']}.out"
                return log if log.is_file() else None
    return None


def task_entry(sweep_dir: Path, task: dict) -> dict[str, Any]:
    run_dir = sweep_dir / task["run_dir"]
    entry: dict[str, Any] = {"index": task["index"], "point": task["point"], "run_dir": task["run_dir"]}
    summary = read_summary(run_dir)
    log = task_log(sweep_dir, task["index"])
    if log is not None:
        entry["log"] = str(log.relative_to(sweep_dir))
    if summary and summary.get("status") == FINISHED:
        entry.update(status=FINISHED, files=summary["files"], simulated_days=summary["simulated_days"],
                     wall_time_s=summary["wall_time_s"])
        return entry
    if summary and summary.get("status") == FAILED:
        entry.update(status=FAILED, reason=summary.get("reason") or "failed (no reason recorded)")
        return entry
    reason = reason_from_log(log.read_text(errors="replace")) if log is not None else None
    if reason:
        entry.update(status=FAILED, reason=reason)
    else:
        entry.update(status="missing", reason="no summary.json" + (f"; log {log.name} shows no error"
                                                                   if log is not None else " and no log"))
    return entry


REPO_DATA_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "data" / "exoplasim.yaml"
DATACUBES = {"snapshots": DATACUBE, "means": "datacube_means.h5"}


def sweep_data_settings(table: dict) -> tuple[Any, str]:
    """The `data:` settings aggregation converts with, and where they came from: the sweep's own
    `data:` section, or configs/data/exoplasim.yaml when the sweep left it at the bare defaults."""
    from astrohpc.config import Config, from_dict, load_config
    from astrohpc.data.settings import DataSettings

    base = from_dict(Config, table["base_config"], source="tasks.json")
    if base.data != DataSettings() or not REPO_DATA_CONFIG.is_file():
        return base.data, "the sweep config's data: section"
    return load_config(REPO_DATA_CONFIG).data, str(REPO_DATA_CONFIG)


def convert_finished(run_dirs: list[Path], output: Path, settings: Any = None, kind: str = "snapshots"
                     ) -> dict[str, Any]:
    """Convert finished runs into one HDF5 datacube; say what happened. `path` in the result is
    relative to the sweep folder (the cube's own folder), so a moved or relative sweep still finds it."""
    from astrohpc.data.convert import convert_run_dirs

    if not run_dirs:
        return {"converted": False, "reason": "no finished runs"}
    try:
        path = convert_run_dirs(run_dirs, output, kind=kind, settings=settings)
    except Exception as exc:  # the manifest must be written even when conversion fails
        return {"converted": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"converted": True, "path": Path(path).name, "kind": kind}


STEP_DATACUBE = "datacube_step.h5"


def merge_step_cube(sweep_dir: Path, cubes: dict[str, Any], variables: list[str]) -> dict[str, Any]:
    """datacube_step.h5 from the two converted cubes (astrohpc/data/step_means.py); say what happened."""
    from astrohpc.data.step_means import merge_step_means

    if not (cubes["snapshots"].get("converted") and cubes["means"].get("converted")):
        return {"converted": False, "reason": "the snapshot and means cubes are both needed"}
    try:
        merge_step_means(sweep_dir / DATACUBE, sweep_dir / DATACUBES["means"], sweep_dir / STEP_DATACUBE, variables)
    except Exception as exc:  # the manifest must be written even when the merge fails
        return {"converted": False, "reason": f"{type(exc).__name__}: {exc}"}
    return {"converted": True, "path": STEP_DATACUBE, "kind": "snapshots + step means",
            "step_mean_variables": variables}


def aggregate(sweep_dir: str | Path, convert: bool = True) -> dict[str, Any]:
    """Write manifest.json for the sweep in `sweep_dir` and return it."""
    sweep_dir = Path(sweep_dir)
    table = load_table(sweep_dir)
    tasks = [task_entry(sweep_dir, t) for t in table["tasks"]]
    counts = {status: sum(t["status"] == status for t in tasks) for status in (FINISHED, FAILED, "missing")}
    spinup = None
    if table.get("spinup_days"):
        summary = read_summary(sweep_dir / SPINUP_DIR)
        spinup = {"run_dir": SPINUP_DIR, "status": (summary or {}).get("status", "missing"),
                  "reason": (summary or {}).get("reason")}
    finished_dirs = [sweep_dir / t["run_dir"] for t in tasks if t["status"] == FINISHED]
    cubes: dict[str, Any] = {}
    data_source = None
    if convert:
        settings, data_source = sweep_data_settings(table)
        for kind, name in DATACUBES.items():
            cubes[kind] = convert_finished(finished_dirs, sweep_dir / name, settings, kind)
        if settings.step_mean_variables:
            cubes["step"] = merge_step_cube(sweep_dir, cubes, settings.step_mean_variables)
    else:
        cubes = {kind: {"converted": False, "reason": "conversion not requested"} for kind in DATACUBES}
    manifest = {
        "sweep_dir": str(sweep_dir),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "counts": counts,
        "complete": counts[FINISHED] == len(tasks),
        "spinup": spinup,
        "tasks": tasks,
        "datacube": cubes["snapshots"],  # daily snapshots: the training cube
        "datacube_means": cubes["means"],  # means over gcm.means_interval_days
        **({"datacube_step": cubes["step"]} if "step" in cubes else {}),  # snapshots + step-mean diagnostics
        "data_settings": data_source,
        "provenance": collect(),
    }
    write_json(sweep_dir / MANIFEST, manifest)
    return manifest
