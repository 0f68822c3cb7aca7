"""A study on Slurm: task arrays (split so no array index reaches MaxArraySize) and an aggregation
job that waits for all of them (`--dependency=afterany`: it runs after failures too, and lists
them). Submitting again submits only the tasks without a result.

Each task is one process: `astrohpc study task` on the host or, with slurm.container, in the image.
With GPUs in the profile (slurm.gpus_per_node > 0) every task asks for one (`--gpus-per-node=1`,
`apptainer exec --nv`): ablation and calibration train models, parity, rollout and spin-up run
them. The aggregation runs on CPU. slurm.env is exported in every job.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

from astrohpc.atomic_write import write_json
from astrohpc.gcm.sweep_slurm import array_chunks, max_array_size
from astrohpc.launch.job_command import astrohpc_command, job_environment
from astrohpc.launch.job_env import ARRAY_OFFSET_VARIABLE as OFFSET_VARIABLE
from astrohpc.launch.sbatch import render_sbatch
from astrohpc.studies.tasks import status

TEMPLATE = "study_task.sbatch"


def _options(cfg: Any, gpus: bool = False) -> dict[str, Any]:
    s = cfg.slurm
    return {"mem": s.mem, "cpus_per_task": s.cpus_per_task, "ntasks": 1, "gpus_per_node": 1 if gpus else None,
            **s.site_options()}


def render_study(cfg: Any, study_dir: Path, todo: list[int], kind: str, max_size: Optional[int] = None,
                 python: str = sys.executable, tasks_placeholder: Optional[str] = None) -> dict[str, Any]:
    """{"arrays": [(chunk, script)], "aggregate": script} for tasks `todo` of the study.

    tasks_placeholder: the study cannot be expanded yet (an earlier stage's output is missing):
    render one array whose --array line shows this text instead of task ids (for printing only).
    """
    study_dir = study_dir.resolve()
    s = cfg.slurm
    gpus = s.gpus_per_node > 0
    env = job_environment(s, OMP_NUM_THREADS=str(s.cpus_per_task))
    arrays = []
    for chunk in array_chunks([0] if tasks_placeholder else todo, max_size or max_array_size()):
        array = chunk["array"] + (f"%{s.max_parallel}" if s.max_parallel else "")
        text = render_sbatch(
            TEMPLATE, astrohpc_command(["study", "task", str(study_dir)], s, python, nv=gpus), setup=s.setup,
            env={**env, OFFSET_VARIABLE: str(chunk["offset"])}, job_name=f"study-{kind}-{cfg.run.name}",
            array=array, output=f"{study_dir}/logs/task-%A_%a.out", **_options(cfg, gpus))
        if tasks_placeholder:
            text = text.replace(f"#SBATCH --array={chunk['array']}", f"#SBATCH --array=<{tasks_placeholder}>", 1)
            chunk = {**chunk, "tasks": [], "array": f"<{tasks_placeholder}>"}
        arrays.append((chunk, text))
    aggregate = render_sbatch(
        TEMPLATE, astrohpc_command(["study", "aggregate", str(study_dir)], s, python), setup=s.setup, env=env,
        job_name=f"study-{kind}-{cfg.run.name}-aggregate", output=f"{study_dir}/logs/aggregate-%j.out",
        **_options(cfg))
    return {"arrays": arrays, "aggregate": aggregate}


# the inputs a study's tasks read, by setting (those set are checked before sbatch)
STUDY_INPUTS = ("study.model", "study.climate_model", "study.sweep", "study.spinup_cube")
TRAINING_KINDS = ("ablation", "calibration")


def study_problems(cfg: Any, study_dir: Path, kind: str) -> list[str]:
    """Pre-flight problems of a study's jobs (astrohpc.launch.preflight): the models, sweep and
    cube its tasks read, the study folder they write."""
    from astrohpc.launch.preflight import preflight

    inputs = {key: getattr(cfg.study, key.split(".")[1]) for key in STUDY_INPUTS}
    if kind in TRAINING_KINDS:
        inputs["train.cube"] = cfg.train.cube or cfg.data.cube
    return preflight(cfg.slurm, inputs=inputs, outputs=[str(Path(study_dir).resolve())])


def preview_study(cfg: Any, kind: str, replace: bool = False) -> dict[str, Any]:
    """What `--submit` would do, read-only (a dry run): writes nothing, deletes nothing, and needs no
    earlier stage's output. Returns {"folder", "tasks" (None when they cannot be listed yet),
    "todo", "notes", "scripts" (render_study's), "problems"}."""
    from astrohpc.config import config_hash
    from astrohpc.errors import AstrohpcError, ConfigError
    from astrohpc.studies.execute import study_dir_of
    from astrohpc.studies.kinds import kind_module
    from astrohpc.studies.tasks import STUDY_FILE, load_study

    folder = study_dir_of(cfg).resolve()
    notes: list[str] = []
    tasks, todo = None, []
    if (folder / STUDY_FILE).is_file():
        study = load_study(folder)
        if study["kind"] == kind and study["config_hash"] == config_hash(cfg):
            tasks = study["tasks"]
            state = status(folder)
            todo = sorted(state["missing"] + list(state["failed"]))
            notes.append(f"{folder} holds this study: {len(tasks) - len(todo)} of {len(tasks)} tasks finished")
        elif replace:
            notes.append(f"--replace would delete {folder} (it holds a {study['kind']} study with another config) "
                         "and plan again")
        else:
            raise ConfigError(f"{folder} holds a {study['kind']} study with another config; choose another run.name, "
                              "or pass --replace to delete it")
    if tasks is None:
        try:
            tasks = [{"id": i, **task} for i, task in enumerate(kind_module(kind).expand(cfg))]
            todo = [t["id"] for t in tasks]
        except (AstrohpcError, OSError) as exc:  # an earlier stage's output (model, cube, sweep) is missing
            tasks = None
            notes.append(f"the tasks cannot be listed yet: {exc}")
    placeholder = None if tasks is not None else "task ids, known once the inputs exist"
    scripts = render_study(cfg, folder, todo, kind, tasks_placeholder=placeholder)
    return {"folder": folder, "tasks": tasks, "todo": todo, "notes": notes, "scripts": scripts,
            "problems": study_problems(cfg, folder, kind)}


def submit_study(cfg: Any, study_dir: Path, kind: str) -> dict[str, Any]:
    """Submit the arrays of the unfinished tasks, then the aggregation (afterany); submission.json.
    ConfigError before any sbatch when the pre-flight checks find a problem."""
    from astrohpc.launch.preflight import refuse_problems
    from astrohpc.launch.submit import submit, write_script

    refuse_problems(study_problems(cfg, study_dir, kind), f"{kind} study")
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
