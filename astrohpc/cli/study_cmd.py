"""`astrohpc study KIND CONFIG (--submit | --local | --dry-run) [--task-id N] [--cluster NAME]`, and
the study tools: `astrohpc study task DIR` (one array task), `status DIR`, `aggregate DIR
[--allow-partial]`. A dry run writes and deletes nothing and needs no earlier stage's output."""

from __future__ import annotations

import argparse
import json
import sys

from astrohpc.studies.kinds import KINDS


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("study", help="studies as job arrays + an aggregation job: " + ", ".join(KINDS) +
                                          "; status and aggregation of a study folder")
    verbs = parser.add_subparsers(dest="verb", metavar="KIND|VERB", required=True)
    for kind in KINDS:
        p = verbs.add_parser(kind, help=f"the {kind} study of CONFIG (study: section; run.root/run.name is its folder)")
        p.add_argument("config", help="study config (YAML, e.g. configs/study/parity_demo.yaml)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. study.seeds=[0,1]")
        how = p.add_mutually_exclusive_group(required=True)
        how.add_argument("--submit", action="store_true", help="task arrays + aggregation job on Slurm")
        how.add_argument("--local", action="store_true", help="run the unfinished tasks here, then aggregate")
        how.add_argument("--dry-run", action="store_true",
                         help="list the tasks and print every script --submit would hand to sbatch; writes, deletes "
                              "and submits nothing (placeholders where an earlier stage's output is missing)")
        p.add_argument("--task-id", type=int, default=None, help="with --local: run only this task, here")
        p.add_argument("--cluster", default=None, metavar="NAME",
                       help="cluster profile configs/cluster/NAME.yaml or a path (default: $ASTROHPC_CLUSTER, else "
                            "local); it replaces any other profile")
        p.add_argument("--replace", action="store_true",
                       help="if the study folder holds a study with another config, delete it and start over")
        p.add_argument("--wait", action="store_true", help="with --submit: wait for the aggregation job")
        p.add_argument("--timeout", type=float, default=3600.0, help="seconds --wait waits (default 3600)")
        p.set_defaults(func=_study, kind=kind)
    task = verbs.add_parser("task", help="run one task of a study folder (inside a Slurm array: its index)")
    task.add_argument("study_dir", help="the study folder (holds plan.json)")
    task.add_argument("--task-id", type=int, default=None, help="the task to run (default: the Slurm array index)")
    task.set_defaults(func=_task)
    state = verbs.add_parser("status", help="finished, failed (with reasons) and missing tasks of a study folder")
    state.add_argument("study_dir", help="the study folder")
    state.set_defaults(func=_status)
    agg = verbs.add_parser("aggregate", help="collect the task results into tables (refuses a partial set)")
    agg.add_argument("study_dir", help="the study folder")
    agg.add_argument("--allow-partial", action="store_true", help="aggregate what finished; the tables say so")
    agg.set_defaults(func=_aggregate)


def _print_status(study_dir) -> dict:
    from astrohpc.studies.tasks import status

    s = status(study_dir)
    print(f"{study_dir}: {s['kind']} study, {s['tasks']} tasks: {len(s['finished'])} finished, "
          f"{len(s['failed'])} failed, {len(s['missing'])} missing")
    for task_id, reason in sorted(s["failed"].items()):
        print(f"  task {task_id} failed: {reason}")
    if s["missing"]:
        print(f"  missing: {', '.join(map(str, s['missing']))}")
    return s


def _study(args: argparse.Namespace) -> int:
    from astrohpc.launch.profiles import load_job_config
    from astrohpc.studies.execute import aggregate_study, plan_study, run_local, run_task, study_dir_of
    from astrohpc.studies.tasks import status

    if args.task_id is not None and not args.local:
        from astrohpc.errors import ConfigError

        raise ConfigError(f"--task-id {args.task_id} runs one task here: use it with --local")
    cfg = load_job_config(args.config, args.overrides, args.cluster, getattr(args, "bind", None) or [])
    _absolute(cfg)
    if args.dry_run:
        return _dry_run(args.kind, cfg, getattr(args, "replace", False))
    if args.submit:
        from astrohpc.launch.preflight import refuse_problems
        from astrohpc.studies.slurm import study_problems

        refuse_problems(study_problems(cfg, study_dir_of(cfg), args.kind), f"{args.kind} study")
    if getattr(args, "replace", False):
        from astrohpc.studies.execute import replace_if_different

        replace_if_different(args.kind, cfg)
    folder = plan_study(args.kind, cfg)
    if args.task_id is not None:
        result = run_task(folder, args.task_id)
        print(json.dumps({k: result[k] for k in ("task", "wall_s")}, default=str))
        return 0
    if args.local:
        from tqdm import tqdm

        todo = status(folder)
        count = len(todo["missing"]) + len(todo["failed"])
        with tqdm(total=count, desc=f"study {args.kind}", unit="task", file=sys.stderr) as bar:
            for task_id, state, reason in run_local(folder):
                if state != "finished":
                    bar.write(f"task {task_id} failed: {reason}")
                bar.update(1)
        return _report(aggregate_study(folder), folder)
    from astrohpc.studies.slurm import job_ids, submit_study

    record = submit_study(cfg, folder, args.kind)
    arrays = ", ".join(f"{a['job_id']} ({len(a['tasks'])} tasks)" for a in record["arrays"]) or "none (all finished)"
    print(f"{folder}: arrays {arrays}; aggregation {record['aggregate_job']}; results in {folder}/aggregate.json")
    if not args.wait:
        return 0
    from astrohpc.launch import wait_for

    wait_for(job_ids(record), timeout_s=args.timeout, poll_s=2.0)
    _print_status(folder)
    return _report(json.loads((folder / "aggregate.json").read_text()), folder)


def _dry_run(kind: str, cfg, replace: bool) -> int:
    """Print the tasks and every script --submit would hand to sbatch; write and delete nothing."""
    from astrohpc.studies.slurm import preview_study

    preview = preview_study(cfg, kind, replace=replace)
    for problem in preview["problems"]:
        print(f"astrohpc: warning: --submit would refuse: {problem}", file=sys.stderr)
    print(f"# {kind} study in {preview['folder']} (dry run: nothing written, nothing submitted)")
    for note in preview["notes"]:
        print(f"# {note}")
    for t in preview["tasks"] or []:
        print(f"task {t['id']}: {json.dumps({k: v for k, v in t.items() if k != 'id'})}")
    for chunk, text in preview["scripts"]["arrays"]:
        count = len(chunk["tasks"]) if preview["tasks"] is not None else "?"
        print(f"\n# ---- task array offset {chunk['offset']}: {count} tasks (sbatch --parsable)")
        print(text, end="")
    print("\n# ---- aggregation (sbatch --parsable --dependency=afterany:<arrays>)")
    print(preview["scripts"]["aggregate"], end="")
    return 0


def _absolute(cfg) -> None:
    """Paths a task reads, made absolute: array tasks may start in another directory."""
    from pathlib import Path

    cfg.run.root = str(Path(cfg.run.root).resolve())
    for key in ("model", "climate_model", "sweep", "spinup_cube"):
        value = getattr(cfg.study, key)
        if value:
            setattr(cfg.study, key, str(Path(value).resolve()))


def _report(record: dict, folder) -> int:
    if not record["complete"] and not record.get("partial"):
        print(f"{folder}/aggregate.json: NOT aggregated — failed {sorted(record['failed'])}, missing "
              f"{record['missing']}")
        return 1
    outputs = record.get("outputs") or {}
    print(f"{folder}/aggregate.json: {'partial' if record.get('partial') else 'complete'}; "
          + ", ".join(f"{k}: {v}" for k, v in outputs.items() if isinstance(v, str)))
    return 0 if record["complete"] else 1


def _task(args: argparse.Namespace) -> int:
    from astrohpc.studies.execute import array_task_id, run_task

    task_id = array_task_id(args.task_id)
    result = run_task(args.study_dir, task_id)
    print(f"task {task_id} finished in {result['wall_s']:.1f} s")
    return 0


def _status(args: argparse.Namespace) -> int:
    s = _print_status(args.study_dir)
    return 0 if not s["failed"] and not s["missing"] else 1


def _aggregate(args: argparse.Namespace) -> int:
    from astrohpc.studies.execute import aggregate_study

    return _report(aggregate_study(args.study_dir, args.allow_partial), args.study_dir)
