"""`astrohpc gcm build|run|sweep|task|aggregate`: the reference GCM and its parameter sweeps."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("gcm", help="reference GCM (ExoPlaSim): build, run, parameter sweeps")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    p = verbs.add_parser("build", help="compile the model once into the cache and say where")
    p.add_argument("config", nargs="?", default=None,
                   help="config whose gcm: section picks the build (default T21 L10)")
    p.add_argument("overrides", nargs="*", help="KEY.PATH=VALUE, e.g. gcm.levels=20")
    p.set_defaults(func=_build)

    p = verbs.add_parser("run", help="one simulation in runs/<run.root>/<run.name>")
    p.add_argument("config", help="GCM run config (YAML, e.g. configs/gcm/smoke.yaml)")
    p.add_argument("overrides", nargs="*", help="KEY.PATH=VALUE, e.g. planet.instellation_W_m2=1200")
    p.add_argument("--force", action="store_true", help="run again even if that run directory is finished")
    p.set_defaults(func=_run)

    p = verbs.add_parser("sweep", help="a parameter design as tasks: --dry-run, --local or --submit")
    p.add_argument("config", help="sweep config (YAML with a sweep: section, e.g. configs/gcm/demo.yaml)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. sweep.samples=4")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--dry-run", action="store_true", help="print the sbatch scripts and the task table")
    mode.add_argument("--local", action="store_true", help="run the tasks here with worker processes")
    mode.add_argument("--submit", action="store_true", help="submit an array + aggregation job to Slurm")
    p.add_argument("--cluster", default=None, metavar="NAME",
                   help="--submit/--dry-run: cluster profile configs/cluster/NAME.yaml or a path (default: "
                        "$ASTROHPC_CLUSTER, else local); it replaces any other profile")
    p.add_argument("--workers", type=int, default=None, help="--local: processes (default sweep.workers)")
    p.add_argument("--wait", action="store_true", help="--submit: wait for the jobs and print the manifest counts")
    p.add_argument("--timeout", type=float, default=3600.0, help="--wait: seconds (default 3600)")
    p.set_defaults(func=_sweep)

    p = verbs.add_parser("task", help="run one task of a sweep (the array job's command)")
    p.add_argument("sweep_dir", help="the sweep folder (holds plan.json)")
    p.add_argument("--index", type=int, default=None,
                   help="task index (default: ASTROHPC_TASK_OFFSET + SLURM_ARRAY_TASK_ID)")
    p.add_argument("--spinup", action="store_true", help="run the sweep's spin-up instead")
    p.set_defaults(func=_task)

    p = verbs.add_parser("aggregate", help="write manifest.json (and the datacube) for a sweep")
    p.add_argument("sweep_dir", help="the sweep folder (holds plan.json and the task folders)")
    p.add_argument("--no-convert", action="store_true", help="do not build the HDF5 datacube")
    p.set_defaults(func=_aggregate)


def _build(args: argparse.Namespace) -> int:
    from astrohpc.config import load_config
    from astrohpc.gcm.runner import get_runner

    cfg = load_config(args.config, args.overrides)
    print(f"building {cfg.gcm.model} {cfg.gcm.resolution} L{cfg.gcm.levels} on {cfg.gcm.ncpus} CPU(s) "
          "(first time: about a minute)...", file=sys.stderr)
    info = get_runner(cfg.gcm.model).build(cfg.gcm)
    state = "compiled now" if info["compiled_now"] else "cached"
    print(f"{info['executable']}: {state} in {info['cache_dir']}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from astrohpc.config import load_config
    from astrohpc.gcm.run import run_simulation
    from astrohpc.gcm.runner import get_runner

    cfg = load_config(args.config, args.overrides)
    runner = get_runner(cfg.gcm.model)
    runner.build(cfg.gcm)  # interactive: compiling once here is fine (array tasks never do)
    run_dir = Path(cfg.run.root) / cfg.run.name
    summary = run_simulation(cfg, run_dir, force=args.force)
    print(f"{run_dir}: {summary['status']}, {summary['simulated_days']} days in {summary['wall_time_s']:.1f} s "
          f"({summary['core_seconds_per_simulated_day']:.2f} core-s/day)")
    for f in summary["files"]:
        print(f"  {f['kind']:9s} {run_dir / f['path']} ({f['bytes'] / 1e6:.1f} MB)")
    return 0


def _print_table(plan) -> None:
    keys = list(dict.fromkeys(k for t in plan.tasks for k in t["point"]))
    print("# task table (" + str(len(plan.tasks)) + " tasks)")
    print("\t".join(["index", "run_dir", *keys, "note"]))
    for t in plan.tasks:
        values = [repr(t["point"].get(k, "")) for k in keys]
        print("\t".join([str(t["index"]), t["run_dir"], *values, t.get("invalid", "")]))


def _sweep(args: argparse.Namespace) -> int:
    from astrohpc.gcm.sweep import plan_sweep, write_plan
    from astrohpc.launch.profiles import load_job_config

    cfg = load_job_config(args.config, args.overrides, args.cluster, getattr(args, "bind", None) or [])
    plan = plan_sweep(cfg, source=args.config)
    if args.dry_run:
        return _dry_run(cfg, plan)
    if args.submit:  # before the build and the plan: a job that cannot run is refused here, not in the queue
        from astrohpc.gcm.sweep_slurm import sweep_problems
        from astrohpc.launch.preflight import refuse_problems

        refuse_problems(sweep_problems(cfg, plan.sweep_dir), "sweep")
    from astrohpc.gcm.runner import get_runner

    get_runner(cfg.gcm.model).build(cfg.gcm)  # compile once, here, before any task starts
    write_plan(plan, cfg)
    invalid = [t for t in plan.tasks if "invalid" in t]
    for t in invalid:
        print(f"warning: task {t['index']} will fail: {t['invalid']}", file=sys.stderr)
    if args.local:
        return _sweep_local(cfg, plan, args.workers or cfg.sweep.workers)
    return _sweep_submit(cfg, plan, args)


def _dry_run(cfg, plan) -> int:
    from astrohpc.gcm.run import is_finished
    from astrohpc.gcm.sweep_slurm import render_sweep, sweep_problems

    for problem in sweep_problems(cfg, plan.sweep_dir):
        print(f"astrohpc: warning: --submit would refuse: {problem}", file=sys.stderr)
    _print_table(plan)
    todo = [t["index"] for t in plan.tasks if not is_finished(plan.sweep_dir / t["run_dir"])]
    scripts = render_sweep(cfg, plan.sweep_dir, todo, spinup=plan.spinup_days > 0)
    texts = [("spin-up (sbatch --parsable)", scripts.spinup)] if scripts.spinup else []
    dep = " --dependency=afterok:<spin-up> --kill-on-invalid-dep=yes" if scripts.spinup else ""
    texts += [(f"task array offset {c['offset']}: {len(c['tasks'])} unfinished tasks (sbatch --parsable{dep})", t)
              for c, t in scripts.arrays]
    texts.append(("aggregation (sbatch --parsable --dependency=afterany:<arrays>)", scripts.aggregate))
    for title, text in texts:
        print(f"\n# ---- {title}")
        print(text, end="")
    return 0


def _sweep_local(cfg, plan, workers: int) -> int:
    from tqdm import tqdm

    from astrohpc.gcm.manifest import aggregate
    from astrohpc.gcm.sweep import run_local, unfinished_tasks

    todo = len(unfinished_tasks(plan.sweep_dir))
    failures = 0
    with tqdm(total=todo, desc=f"gcm {cfg.run.name}", unit="run", file=sys.stderr) as bar:
        for index, status, reason in run_local(plan.sweep_dir, workers):
            if status != "finished":
                failures += 1
                bar.write(f"{'spin-up' if index < 0 else f'task {index}'} failed: {reason}")
            if index >= 0:
                bar.update(1)
    manifest = aggregate(plan.sweep_dir)
    _print_manifest(plan.sweep_dir, manifest)
    return 0 if manifest["complete"] else 1


def _print_manifest(sweep_dir, manifest: dict) -> None:
    counts = manifest["counts"]
    cube = manifest["datacube"]
    print(f"{sweep_dir}/manifest.json: {counts['finished']} finished, {counts['failed']} failed, "
          f"{counts['missing']} missing; datacube: {cube.get('path') if cube['converted'] else cube['reason']}")


def _sweep_submit(cfg, plan, args) -> int:
    import json as _json

    from astrohpc.gcm.sweep_slurm import job_ids, submit_sweep
    from astrohpc.launch import wait_for

    record = submit_sweep(cfg, plan.sweep_dir)
    arrays = ", ".join(f"{a['job_id']} ({len(a['tasks'])} tasks)" for a in record["arrays"]) or "none (all finished)"
    spinup = f"spin-up {record['spinup_job']}; " if record["spinup_job"] else ""
    print(f"{spinup}arrays {arrays}; aggregation {record['aggregate_job']}; manifest: "
          f"{plan.sweep_dir}/manifest.json")
    if not args.wait:
        return 0
    wait_for(job_ids(record), timeout_s=args.timeout, poll_s=2.0)
    manifest_path = plan.sweep_dir / "manifest.json"
    if not manifest_path.is_file():
        print(f"aggregation job {record['aggregate_job']} wrote no manifest: see {plan.sweep_dir}/logs/",
              file=sys.stderr)
        return 1
    manifest = _json.loads(manifest_path.read_text())
    _print_manifest(plan.sweep_dir, manifest)
    return 0 if manifest["complete"] else 1


def _task(args: argparse.Namespace) -> int:
    import signal

    from astrohpc.gcm.run import Terminated

    def _terminated(signum, frame):  # scancel / time limit: record a failure instead of vanishing
        raise Terminated(f"terminated by signal {signal.Signals(signum).name} (cancelled, preempted or time limit)")

    signal.signal(signal.SIGTERM, _terminated)
    try:
        return _run_one_task(args)
    except Terminated as exc:
        print(f"astrohpc: error: {exc}", file=sys.stderr)
        return 143


def _run_one_task(args: argparse.Namespace) -> int:

    from astrohpc.errors import GCMError
    from astrohpc.gcm.sweep import run_spinup, run_task
    from astrohpc.launch.job_env import array_index

    if args.spinup:
        summary = run_spinup(args.sweep_dir)
        print(f"spin-up: {summary['status']}")
        return 0
    index = args.index if args.index is not None else array_index()
    if index is None:
        raise GCMError("no task index: give --index N, or run inside a Slurm array (SLURM_ARRAY_TASK_ID)")
    summary = run_task(args.sweep_dir, index)
    print(f"task {index}: {summary['status']} ({summary.get('wall_time_s', 0):.1f} s)")
    return 0


def _aggregate(args: argparse.Namespace) -> int:
    from astrohpc.gcm.manifest import aggregate

    manifest = aggregate(args.sweep_dir, convert=not args.no_convert)
    _print_manifest(args.sweep_dir, manifest)
    print(json.dumps(manifest["counts"]))
    return 0
