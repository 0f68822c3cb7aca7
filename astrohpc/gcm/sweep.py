"""A parameter sweep on disk: a task table, one task's work, and local execution.

    runs/gcm/<run.name>/
      config.yaml, provenance.json   the sweep's resolved config
      tasks.json                     task i = point i (written before anything runs)
      spinup/                        the spin-up run, when sweep.spinup_days > 0
      task-0000/ ...                 one run directory per task (see run.py)
      logs/, slurm/, submission.json Slurm logs, rendered scripts and job ids (--submit)
      manifest.json                  written by aggregation (manifest.py)

The same entry point, `run_task(sweep_dir, index)`, runs a task in a Slurm array and in
`--local` worker processes. A finished task (summary.json "finished") is never run again.
"""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from astrohpc.atomic_write import write_json
from astrohpc.config import Config, config_hash, from_dict, to_dict
from astrohpc.errors import AstrohpcError, ConfigError, GCMError
from astrohpc.gcm.calendar import restart_step
from astrohpc.gcm.design import apply_point, config_for_point, design_points
from astrohpc.gcm.run import FINISHED, is_finished, read_summary, run_simulation, write_failed_summary
from astrohpc.provenance import write_run_metadata

TASKS = "tasks.json"
SPINUP_DIR = "spinup"


# A restart file carries the spin-up's grid and its surface-pressure field (atmospheric mass):
# tasks branching from it cannot vary these. (Its atmosphere is in units of the spin-up's rotation
# rate: a task at another rotation period starts from a copy rescaled to its own, astrohpc/gcm/restart.py.)
RESTART_FIXED_KEYS = ("gcm.resolution", "gcm.levels", "planet.pN2_bar", "planet.pO2_bar", "planet.pCO2_bar")


def task_dir_name(index: int) -> str:
    return f"task-{index:04d}"


def sweep_dir_for(cfg: Config) -> Path:
    return Path(cfg.run.root) / cfg.run.name


@dataclass
class SweepPlan:
    """The task table of a sweep: `tasks[i]` = {"index", "point", "run_dir", ["invalid"]}."""

    sweep_dir: Path
    base: dict
    tasks: list[dict]
    spinup_days: int

    def as_json(self) -> dict:
        return {"base_config": self.base, "base_config_hash": config_hash(from_dict(Config, self.base)),
                "spinup_days": self.spinup_days, "tasks": self.tasks}


def plan_sweep(cfg: Config, source: str = "sweep") -> SweepPlan:
    """Expand the design of `cfg.sweep` into tasks; a point with an invalid value is kept,
    marked "invalid" with the reason, and fails as its own task."""
    tasks = []
    points = design_points(cfg.sweep, source)
    if cfg.sweep.spinup_days:
        fixed = sorted({k for p in points for k in p if k in RESTART_FIXED_KEYS})
        if fixed:
            raise ConfigError(f"{source}: sweep.spinup_days > 0, but the design varies {', '.join(fixed)}, which "
                              "a restart file fixes (grid, surface pressure): set sweep.spinup_days: 0 "
                              "(cold starts) or keep these keys out of the design")
    for i, point in enumerate(points):
        entry: dict[str, Any] = {"index": i, "point": point, "run_dir": task_dir_name(i)}
        try:
            config_for_point(cfg, point, f"{source}: task {i}")
        except ConfigError as exc:
            entry["invalid"] = str(exc)
        tasks.append(entry)
    return SweepPlan(sweep_dir=sweep_dir_for(cfg), base=to_dict(cfg), tasks=tasks, spinup_days=cfg.sweep.spinup_days)


# Config sections that do not change what a GCM task computes: a sweep planned again with other
# Slurm resources, or with model/training/study settings in the same file, is the same sweep.
NOT_SCIENCE = ("slurm", "model", "train", "study")


def science(base: dict) -> dict:
    """The part of a sweep's base config that decides its GCM runs."""
    return {k: v for k, v in base.items() if k not in NOT_SCIENCE}


def write_plan(plan: SweepPlan, cfg: Config) -> Path:
    """Write tasks.json, config.yaml and provenance.json into the sweep directory.

    Refuses (ConfigError) when the directory already holds a different sweep, since its
    finished tasks would otherwise be taken for points they did not run.
    """
    table_path = plan.sweep_dir / TASKS
    new = plan.as_json()
    if table_path.is_file():
        old = json.loads(table_path.read_text())
        same = (science(old.get("base_config", {})) == science(new["base_config"])
                and [t["point"] for t in old.get("tasks", [])] == [t["point"] for t in new["tasks"]])
        if not same:
            raise ConfigError(f"{plan.sweep_dir} already holds a different sweep (other config or points): "
                              "set another run.name, or delete that folder to start over")
    write_run_metadata(plan.sweep_dir, cfg, extra={"sweep_tasks": len(plan.tasks)})
    write_json(table_path, new)
    return table_path


def load_table(sweep_dir: str | Path) -> dict:
    path = Path(sweep_dir) / TASKS
    if not path.is_file():
        raise GCMError(f"{path} not found: create the sweep with 'astrohpc gcm sweep CONFIG --submit|--local'")
    return json.loads(path.read_text())


def spinup_config(table: dict, sweep_dir: Path) -> Config:
    """The spin-up's config: the sweep's base point, `spinup_days` long, keeping its restart file;
    no daily snapshots (the means show how far it got towards equilibrium)."""
    base = dict(table["base_config"])
    base["gcm"] = {**base["gcm"], "days": table["spinup_days"], "years": None, "keep_restart": True,
                   "restart_file": None, "snapshot_interval_days": 0}
    return from_dict(Config, base, source=f"{sweep_dir / TASKS} (spin-up)")


def task_config(table: dict, sweep_dir: Path, index: int) -> tuple[Config, dict]:
    """The Config of task `index` (with the spin-up restart file when there is a spin-up)."""
    tasks = table["tasks"]
    if not 0 <= index < len(tasks):
        raise GCMError(f"task index {index} out of range: {sweep_dir / TASKS} has {len(tasks)} tasks")
    point = tasks[index]["point"]
    cfg = apply_point(table["base_config"], point, f"{sweep_dir / TASKS}: task {index}")
    if table.get("spinup_days"):
        spinup = read_summary(sweep_dir / SPINUP_DIR)
        if not spinup or spinup.get("status") != FINISHED:
            raise GCMError(f"task {index}: the spin-up run {sweep_dir / SPINUP_DIR} has not finished "
                           f"({(spinup or {}).get('reason', 'no summary.json')})")
        restart = [f["path"] for f in spinup["files"] if f["kind"] == "restart"]
        cfg.gcm.restart_file = str((sweep_dir / SPINUP_DIR / restart[0]).resolve())
        base = table["base_config"]
        cfg.gcm.start_step = restart_step(float(base["planet"]["rotation_period_days"]),
                                          float(base["gcm"]["timestep_minutes"]), int(table["spinup_days"]))
        cfg.gcm.restart_rotation_period_days = float(base["planet"]["rotation_period_days"])
    return cfg, point


def run_task(sweep_dir: str | Path, index: int) -> dict:
    """Run task `index` of the sweep (skipped if finished); return its summary.

    Every failure, including an invalid point, leaves summary.json with "failed" and the reason
    and raises an AstrohpcError.
    """
    sweep_dir = Path(sweep_dir)
    table = load_table(sweep_dir)
    run_dir = sweep_dir / task_dir_name(index)
    existing = read_summary(run_dir)
    if existing and existing.get("status") == FINISHED:
        return existing
    point = table["tasks"][index]["point"] if 0 <= index < len(table["tasks"]) else {}
    try:
        cfg, point = task_config(table, sweep_dir, index)
    except AstrohpcError as exc:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_failed_summary(run_dir, str(exc), index=index, point=point,
                             model=table["base_config"]["gcm"]["model"])
        raise
    if not table["base_config"].get("sweep", {}).get("cache_tasks"):
        return run_simulation(cfg, run_dir, index=index, point=point)
    from astrohpc.gcm import spinup_cache

    key = task_cache_key(table, sweep_dir, cfg)
    summary = spinup_cache.restore(key, run_dir, kind="runs")
    if summary is not None:
        return summary
    summary = run_simulation(cfg, run_dir, index=index, point=point)
    spinup_cache.store(key, run_dir, kind="runs")
    return summary


def task_cache_key(table: dict, sweep_dir: Path, cfg: Config) -> str:
    """Cache key of a task: its planet and gcm settings, its restart file named by the spin-up's key
    (the path differs between clones, the spin-up it holds does not)."""
    from copy import deepcopy

    from astrohpc.gcm import spinup_cache
    from astrohpc.gcm.build import exoplasim_version

    version = exoplasim_version()
    keyed = deepcopy(cfg)
    if table.get("spinup_days"):
        keyed.gcm.restart_file = "spinup:" + spinup_cache.spinup_key(spinup_config(table, sweep_dir), version)
    return spinup_cache.spinup_key(keyed, version)


def run_spinup(sweep_dir: str | Path) -> dict:
    """Run the sweep's spin-up: skipped if finished, copied from the spin-up cache when the same
    spin-up ran before on this machine (astrohpc/gcm/spinup_cache.py)."""
    sweep_dir = Path(sweep_dir)
    table = load_table(sweep_dir)
    if not table.get("spinup_days"):
        raise GCMError(f"{sweep_dir}: this sweep has no spin-up (sweep.spinup_days is 0)")
    cfg = spinup_config(table, sweep_dir)
    run_dir = sweep_dir / SPINUP_DIR
    if is_finished(run_dir):
        return read_summary(run_dir)
    from astrohpc.gcm import spinup_cache
    from astrohpc.gcm.build import exoplasim_version

    key = spinup_cache.spinup_key(cfg, exoplasim_version())
    summary = spinup_cache.restore(key, run_dir)
    if summary is not None:
        return summary
    summary = run_simulation(cfg, run_dir, point={"spinup": True})
    spinup_cache.store(key, run_dir)
    return summary


def unfinished_tasks(sweep_dir: Path, table: Optional[dict] = None) -> list[int]:
    table = table or load_table(sweep_dir)
    return [t["index"] for t in table["tasks"] if not is_finished(sweep_dir / t["run_dir"])]


def _local_worker(sweep_dir: str, index: int) -> tuple[int, str, Optional[str]]:
    try:
        run_task(sweep_dir, index)
        return index, FINISHED, None
    except Exception as exc:  # reported in the manifest; the other tasks go on
        return index, "failed", str(exc)


def run_local(sweep_dir: str | Path, workers: int) -> Iterator[tuple[int, str, Optional[str]]]:
    """Run the unfinished tasks with `workers` processes; yield (index, status, reason) as each ends.

    Each task runs in a fresh process (exoplasim changes the working directory and fds).
    """
    sweep_dir = Path(sweep_dir)
    table = load_table(sweep_dir)
    if table.get("spinup_days") and not is_finished(sweep_dir / SPINUP_DIR):
        try:
            run_spinup(sweep_dir)
            yield -1, FINISHED, None
        except AstrohpcError as exc:
            yield -1, "failed", str(exc)
    todo = unfinished_tasks(sweep_dir, table)
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(_local_worker, str(sweep_dir), i) for i in todo]
        for future in as_completed(futures):
            yield future.result()
