"""A study on Slurm: task arrays (split so no array index reaches MaxArraySize) and an aggregation
job that waits for all of them (`--dependency=afterany`: it runs after failures too, and lists
them). Submitting again submits only the tasks without a result.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from astrohpc.atomic_write import write_json
from astrohpc.gcm.sweep_slurm import array_chunks, max_array_size
from astrohpc.launch.job_env import ARRAY_OFFSET_VARIABLE as OFFSET_VARIABLE
from astrohpc.launch.sbatch import render_sbatch
from astrohpc.studies.tasks import status

TEMPLATE = "study_task.sbatch"


def _options(cfg: Any) -> dict[str, Any]:
    s = cfg.slurm
    return {"mem": s.mem, "cpus_per_task": s.cpus_per_task, "ntasks": 1, **s.site_options()}


def render_study(cfg: Any, study_dir: Path, todo: list[int], kind: str, max_size: Optional[int] = None,
                 python: str = sys.executable) -> dict[str, Any]:
    """{"arrays": [(chunk, script)], "aggregate": script} for tasks `todo` of the study."""
    study_dir = study_dir.resolve()
    arrays = []
    for chunk in array_chunks(todo, max_size or max_array_size()):
        array = chunk["array"] + (f"%{cfg.slurm.max_parallel}" if cfg.slurm.max_parallel else "")
        arrays.append((chunk, render_sbatch(
            TEMPLATE, [python, "-m", "astrohpc", "study", "task", str(study_dir)], setup=cfg.slurm.setup,
            env={OFFSET_VARIABLE: str(chunk["offset"]), "OMP_NUM_THREADS": str(cfg.slurm.cpus_per_task)},
            job_name=f"study-{kind}-{cfg.run.name}", array=array, output=f"{study_dir}/logs/task-%A_%a.out",
            **_options(cfg))))
    aggregate = render_sbatch(
        TEMPLATE, [python, "-m", "astrohpc", "study", "aggregate", str(study_dir)], setup=cfg.slurm.setup,
        job_name=f"study-{kind}-{cfg.run.name}-aggregate", output=f"{study_dir}/logs/aggregate-%j.out",
        **_options(cfg))
    return {"arrays": arrays, "aggregate": aggregate}


def submit_study(cfg: Any, study_dir: Path, kind: str) -> dict[str, Any]:
    """Submit the arrays of the unfinished tasks, then the aggregation (afterany); submission.json."""
    from astrohpc.launch.submit import submit, write_script

    state = status(study_dir)
    todo = sorted(state["missing"] + list(state["failed"]))
    scripts = render_study(cfg, study_dir, todo, kind)
    (study_dir / "logs").mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"arrays": [], "aggregate_job": None, "resubmitted": todo}
    for chunk, text in scripts["arrays"]:
        path = write_script(study_dir / "slurm" / f"tasks-{chunk['offset']}.sbatch", text)
        record["arrays"].append({"job_id": submit(path), "tasks": chunk["tasks"], "offset": chunk["offset"]})
    dependency = ["--dependency=afterany:" + ":".join(a["job_id"] for a in record["arrays"])] if record["arrays"] \
        else []
    path = write_script(study_dir / "slurm" / "aggregate.sbatch", scripts["aggregate"])
    record["aggregate_job"] = submit(path, dependency)
    write_json(study_dir / "submission.json", record)
    return record


def job_ids(record: dict[str, Any]) -> list[str]:
    return [a["job_id"] for a in record["arrays"]] + [record["aggregate_job"]]
