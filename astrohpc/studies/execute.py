"""Plan a study, run its tasks (one array index, or all of them here), aggregate the results.

The aggregation never averages a partial set silently: with a task missing or failed it writes
aggregate.json saying which (by id, with the failure's reason) and stops, unless asked for a
partial aggregation, which then says so in every table it writes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterator, Optional

from astrohpc.atomic_write import write_json
from astrohpc.config import Config, config_hash, from_dict, to_dict
from astrohpc.errors import ConfigError
from astrohpc.launch.job_env import array_index
from astrohpc.studies.kinds import kind_module
from astrohpc.studies.tasks import STUDY_FILE, load_study, read_result, status, write_failure, write_result

log = logging.getLogger(__name__)



def study_dir_of(cfg: Any) -> Path:
    return Path(cfg.run.root) / cfg.run.name


def plan_study(kind: str, cfg: Any) -> Path:
    """Expand the study into tasks and write study.json (kept when the same study is planned again;
    ConfigError when the folder holds a different one)."""
    folder = study_dir_of(cfg)
    module = kind_module(kind)
    existing = folder / STUDY_FILE
    if existing.is_file():
        study = load_study(folder)
        if study["kind"] == kind and study["config_hash"] == config_hash(cfg):
            return folder
        raise ConfigError(f"{folder} holds a {study['kind']} study with another config; choose another run.name "
                          "or delete the folder")
    tasks = [{"id": i, **task} for i, task in enumerate(module.expand(cfg))]
    if not tasks:
        raise ConfigError(f"the {kind} study of this config has no task (study.runs empty and no test runs?)")
    write_json(existing, {"kind": kind, "config": to_dict(cfg), "config_hash": config_hash(cfg), "tasks": tasks,
                          "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return folder


def replace_if_different(kind: str, cfg: Any) -> bool:
    """Delete the study folder of `cfg` when it holds another study (kind or config); True if it did."""
    import shutil

    folder = study_dir_of(cfg)
    if not (folder / STUDY_FILE).is_file():
        return False
    study = load_study(folder)
    if study["kind"] == kind and study["config_hash"] == config_hash(cfg):
        return False
    log.warning("%s held a %s study with another config: deleted (--replace)", folder, study["kind"])
    shutil.rmtree(folder)
    return True


def array_task_id(explicit: Optional[int] = None) -> int:
    """The task id: explicit, else SLURM_ARRAY_TASK_ID + ASTROHPC_TASK_OFFSET."""
    index = explicit if explicit is not None else array_index()
    if index is None:
        raise ConfigError("no task id: pass --task-id N, or run inside a Slurm array job")
    return index


def run_task(study_dir: str | Path, task_id: int) -> dict[str, Any]:
    """Run one task; its result (or its failure) is written in the study folder. Re-raises."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    tasks = {t["id"]: t for t in study["tasks"]}
    if task_id not in tasks:
        raise ConfigError(f"{study_dir}: no task {task_id} (the study has ids 0..{len(tasks) - 1})")
    cfg = from_dict(Config, study["config"], source=str(study_dir / STUDY_FILE))
    started = time.perf_counter()
    try:
        result = kind_module(study["kind"]).run(tasks[task_id], cfg, study_dir)
    except Exception as exc:
        write_failure(study_dir, task_id, exc)
        raise
    from astrohpc.provenance import collect

    result = {"task": tasks[task_id], "wall_s": time.perf_counter() - started, "provenance": collect(cfg), **result}
    write_result(study_dir, task_id, result)
    return result


def run_local(study_dir: str | Path, only_unfinished: bool = True) -> Iterator[tuple[int, str, Optional[str]]]:
    """Run the tasks here, one after the other: yields (id, "finished" | "failed", reason)."""
    state = status(study_dir)
    todo = state["missing"] + sorted(state["failed"]) if only_unfinished else \
        sorted(state["finished"] + state["missing"] + list(state["failed"]))
    for task_id in sorted(todo):
        try:
            run_task(study_dir, task_id)
        except Exception as exc:  # the failure is recorded; go on with the others
            log.warning("task %d failed: %s", task_id, exc)
            yield task_id, "failed", f"{type(exc).__name__}: {exc}"
        else:
            yield task_id, "finished", None


def aggregate_study(study_dir: str | Path, allow_partial: bool = False) -> dict[str, Any]:
    """Aggregate the finished tasks (see the module doc). Returns the aggregate record; its
    "complete" is False (and nothing is averaged) when tasks are missing or failed and
    allow_partial is off."""
    study_dir = Path(study_dir)
    study = load_study(study_dir)
    state = status(study_dir)
    record: dict[str, Any] = {"kind": study["kind"], "tasks": state["tasks"], "finished": state["finished"],
                              "failed": state["failed"], "missing": state["missing"],
                              "complete": not state["failed"] and not state["missing"],
                              "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if not record["complete"] and not allow_partial:
        record["outputs"] = None
        record["note"] = ("not aggregated: tasks are missing or failed (ids above); rerun them (`astrohpc study "
                          "... --submit` reruns only those) or aggregate with --allow-partial")
        write_json(study_dir / "aggregate.json", record)
        return record
    if not state["finished"]:
        raise ConfigError(f"{study_dir}: no finished task to aggregate")
    cfg = from_dict(Config, study["config"], source=str(study_dir / STUDY_FILE))
    results = [read_result(study_dir, i) for i in state["finished"]]
    record["partial"] = not record["complete"]
    record["outputs"] = kind_module(study["kind"]).aggregate(results, cfg, study_dir, record)
    write_json(study_dir / "aggregate.json", record)
    return record
