#!/usr/bin/env python3
"""Submit from a login node with submitit instead of rendered sbatch scripts: a GCM sweep as one
array (executor.map_array), a study's tasks as one array (executor.batch()), each followed by its
aggregation job (afterany), and a training run through the Checkpointable path (TrainJob: requeued
on submitit's signal, resumes from its newest checkpoint).

    python tools/submitit_example.py sweep configs/gcm/demo.yaml --cluster a500 slurm.account=proj42
    python tools/submitit_example.py study parity configs/study/parity_demo.yaml --cluster a500 study.model=...
    python tools/submitit_example.py train configs/train/demo.yaml --cluster a500 --wait

The resources come from the same cluster profile and config as `astrohpc submit` (profile < config
< KEY=VALUE), and the same pre-flight checks run first. Sweeps and studies may run in the image
(slurm.container: submitit starts `apptainer exec IMAGE python3`); training through submitit may
not: submitit requeues from inside the task, where the image has no scontrol (`astrohpc submit
train` requeues from the batch shell instead). Logs land in <run folder>/submitit/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from astrohpc.launch.preflight import refuse_problems  # noqa: E402
from astrohpc.launch.profiles import load_job_config  # noqa: E402
from astrohpc.launch.submitit_train import site_parameters, submit_with_submitit  # noqa: E402


def executor(cfg, folder: Path, gpus: bool = False):
    """An AutoExecutor for one-process tasks of `cfg`'s profile (in the image when slurm.container is set)."""
    import submitit

    from astrohpc.launch.container import wrap

    s = cfg.slurm
    python = " ".join(wrap(["python3"], s.container, s.binds, nv=gpus)) if s.container else sys.executable
    return submitit.AutoExecutor(folder=folder / "submitit" / "%j", cluster="slurm", slurm_python=python)


def sweep(cfg, config: str) -> None:
    from astrohpc.gcm.manifest import aggregate
    from astrohpc.gcm.runner import get_runner
    from astrohpc.gcm.sweep import plan_sweep, run_task, unfinished_tasks, write_plan
    from astrohpc.gcm.sweep_slurm import sweep_problems

    cfg.run.root = str(Path(cfg.run.root).resolve())
    plan = plan_sweep(cfg, source=config)
    refuse_problems(sweep_problems(cfg, plan.sweep_dir), "sweep")
    get_runner(cfg.gcm.model).build(cfg.gcm)  # compile once, here, before any task starts
    write_plan(plan, cfg)
    todo = unfinished_tasks(plan.sweep_dir)
    s = cfg.slurm
    ex = executor(cfg, plan.sweep_dir)
    params = site_parameters(s, f"gcm-{cfg.run.name}", cfg.gcm.ncpus)
    ex.update_parameters(**params, slurm_array_parallelism=s.max_parallel or 256)
    jobs = ex.map_array(run_task, [str(plan.sweep_dir)] * len(todo), todo)  # one array, one task per run
    after = ":".join(sorted({j.job_id.split("_")[0] for j in jobs}))
    params["slurm_additional_parameters"] = {**params["slurm_additional_parameters"],
                                             **({"dependency": f"afterany:{after}"} if after else {})}
    ex.update_parameters(**{**params, "name": f"gcm-{cfg.run.name}-aggregate", "cpus_per_task": 1})
    agg = ex.submit(aggregate, str(plan.sweep_dir))
    print(f"sweep {plan.sweep_dir}: array {after or 'none (all finished)'} ({len(todo)} tasks), aggregation "
          f"{agg.job_id}; manifest and datacube in {plan.sweep_dir}")


def study(cfg, kind: str) -> None:
    from astrohpc.studies.execute import aggregate_study, plan_study, run_task, study_dir_of
    from astrohpc.studies.slurm import study_problems
    from astrohpc.studies.tasks import status

    cfg.run.root = str(Path(cfg.run.root).resolve())
    for key in ("model", "climate_model", "sweep", "spinup_cube"):  # tasks start elsewhere: absolute paths
        if getattr(cfg.study, key):
            setattr(cfg.study, key, str(Path(getattr(cfg.study, key)).resolve()))
    refuse_problems(study_problems(cfg, study_dir_of(cfg), kind), f"{kind} study")
    folder = plan_study(kind, cfg)
    state = status(folder)
    todo = sorted(state["missing"] + list(state["failed"]))
    s = cfg.slurm
    gpus = s.gpus_per_node > 0  # one GPU per study task, as `astrohpc submit study`
    ex = executor(cfg, folder, gpus=gpus)
    params = site_parameters(s, f"study-{kind}-{cfg.run.name}", s.cpus_per_task, 1 if gpus else 0)
    ex.update_parameters(**params, slurm_array_parallelism=s.max_parallel or 256)
    with ex.batch():  # the submissions inside become one array job
        jobs = [ex.submit(run_task, str(folder), task_id) for task_id in todo]
    after = ":".join(sorted({j.job_id.split("_")[0] for j in jobs}))
    params = site_parameters(s, f"study-{kind}-{cfg.run.name}-aggregate", s.cpus_per_task)
    if after:
        params["slurm_additional_parameters"]["dependency"] = f"afterany:{after}"
    ex = executor(cfg, folder)
    ex.update_parameters(**params)
    agg = ex.submit(aggregate_study, str(folder))
    print(f"{kind} study {folder}: array {after or 'none (all finished)'} ({len(todo)} tasks), aggregation "
          f"{agg.job_id}; results in {folder}/aggregate.json")


def train(cfg, wait: bool) -> None:
    from astrohpc.train.trainer import run_dir

    cfg.run.root = str(Path(cfg.run.root).resolve())
    record = submit_with_submitit(cfg, run_dir(cfg))
    print(f"training job {record['job_id']} (submitit, Checkpointable); weights in {run_dir(cfg)}/export")
    if wait:
        print(record["job"].results()[0])  # rank 0's summary, after any requeue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("sweep", "study", "train"))
    parser.add_argument("args", nargs="+",
                        help="sweep|train: CONFIG [KEY=VALUE ...]; study: KIND CONFIG [KEY=VALUE ...]")
    parser.add_argument("--cluster", default=None, help="cluster profile (default $ASTROHPC_CLUSTER, else local)")
    parser.add_argument("--wait", action="store_true", help="train: wait and print the summary")
    ns = parser.parse_intermixed_args()
    kind, rest = (ns.args[0], ns.args[1:]) if ns.what == "study" else (None, ns.args)
    cfg = load_job_config(rest[0], rest[1:], ns.cluster)
    if ns.what == "sweep":
        sweep(cfg, rest[0])
    elif ns.what == "study":
        study(cfg, kind)
    else:
        train(cfg, ns.wait)
    return 0


if __name__ == "__main__":
    from astrohpc.errors import AstrohpcError

    try:
        sys.exit(main())
    except AstrohpcError as exc:
        print(f"submitit_example: error: {exc}", file=sys.stderr)
        sys.exit(2)
