"""The study folder and what each task leaves in it.

    STUDY/study.json            kind, the whole config, the task list (id + what it studies)
    STUDY/tasks/<id>/result.json   written atomically by a task that finished
    STUDY/tasks/<id>/failed.json   written by a task that raised: the reason and the traceback
    STUDY/aggregate.json        the aggregation's record (complete or not, what is missing)

A task that runs again removes its failed.json once its result is written. A task's status is
read from these files only, so it is the same for a local run, a Slurm array or a mix.
"""

from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any

from astrohpc.atomic_write import write_json
from astrohpc.errors import ConfigError

STUDY_FILE = "study.json"


def task_dir(study_dir: Path, task_id: int) -> Path:
    return Path(study_dir) / "tasks" / f"{int(task_id):04d}"


def load_study(study_dir: str | Path) -> dict[str, Any]:
    path = Path(study_dir) / STUDY_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: create the study with `astrohpc study KIND CONFIG --local|--submit`")
    return json.loads(path.read_text())


def write_result(study_dir: Path, task_id: int, result: dict[str, Any]) -> Path:
    folder = task_dir(study_dir, task_id)
    path = write_json(folder / "result.json", result)
    (folder / "failed.json").unlink(missing_ok=True)
    return path


def write_failure(study_dir: Path, task_id: int, exc: BaseException) -> Path:
    reason = f"{type(exc).__name__}: {exc}"
    return write_json(task_dir(study_dir, task_id) / "failed.json",
                      {"reason": reason, "traceback": "".join(traceback.format_exception(exc))})


def read_result(study_dir: Path, task_id: int) -> dict[str, Any]:
    return json.loads((task_dir(study_dir, task_id) / "result.json").read_text())


def status(study_dir: str | Path) -> dict[str, Any]:
    """{"kind", "tasks", "finished": [ids], "failed": {id: reason}, "missing": [ids]}."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    finished, failed, missing = [], {}, []
    for task in study["tasks"]:
        folder = task_dir(study_dir, task["id"])
        if (folder / "result.json").is_file():
            finished.append(task["id"])
        elif (folder / "failed.json").is_file():
            failed[task["id"]] = json.loads((folder / "failed.json").read_text())["reason"]
        else:
            missing.append(task["id"])
    return {"kind": study["kind"], "tasks": len(study["tasks"]), "finished": finished, "failed": failed,
            "missing": missing}
