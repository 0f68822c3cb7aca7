"""`astrohpc submit train|sweep|study CONFIG [KEY=VALUE ...] [--cluster NAME] [resources] [--dry-run]`.

Resources come from the cluster profile (`--cluster NAME` = configs/cluster/NAME.yaml or a path;
else $ASTROHPC_CLUSTER; else local), which *replaces* any other; then from the config file's own
`slurm:` keys; then from the options here. A flag a kind of job cannot honour is refused, not
ignored. Pre-flight checks (account, inputs, image, binds, partition) run before sbatch; `--dry-run`
prints the exact scripts and those checks' findings and writes nothing. See docs/launch.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# option -> slurm.* key
RESOURCE_OPTIONS = {"nodes": "nodes", "gpus_per_node": "gpus_per_node", "ntasks_per_node": "ntasks_per_node",
                    "time": "time", "partition": "partition", "account": "account", "qos": "qos", "mem": "mem",
                    "cpus_per_task": "cpus_per_task", "container": "container"}
# the task layout a sweep or a study cannot take: each of their tasks is one process on one node
LAYOUT_OPTIONS = {"sweep": ("nodes", "gpus_per_node", "ntasks_per_node"), "study": ("nodes", "ntasks_per_node")}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("submit", help="submit a training run, a GCM sweep or a study to Slurm (--dry-run "
                                           "prints the scripts)")
    verbs = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for what, helptext in (("train", "multi-node DDP training: one srun task per GPU, requeued on preemption"),
                           ("sweep", "the GCM sweep: [spin-up ->] job arrays (split at MaxArraySize) -> "
                                     "aggregation"),
                           ("study", "a study (--kind parity, ...): task arrays -> afterany aggregation job; "
                                     "only unfinished tasks are submitted")):
        p = verbs.add_parser(what, help=helptext)
        if what == "study":
            from astrohpc.studies.kinds import KINDS

            p.add_argument("--kind", required=True, choices=sorted(KINDS), help="which study")
        p.add_argument("config", help="YAML config")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (before or after options)")
        p.add_argument("--cluster", default=None, metavar="NAME",
                       help="cluster profile configs/cluster/NAME.yaml (or a path); replaces any other profile "
                            "(default: $ASTROHPC_CLUSTER, else local)")
        p.add_argument("--nodes", type=int, default=None, help="nodes per job (train only)")
        p.add_argument("--gpus-per-node", type=int, default=None,
                       help="G GPUs per node: G srun tasks per node (train); study: 0 or 1 GPU per task")
        p.add_argument("--ntasks-per-node", type=int, default=None, help="CPU ranks per node when no GPUs (train)")
        p.add_argument("--cpus-per-task", type=int, default=None,
                       help="CPU cores per task (default: the profile's; a sweep's tasks take gcm.ncpus)")
        p.add_argument("--time", default=None, help="wall-clock limit, e.g. 04:00:00")
        p.add_argument("--partition", default=None, help="Slurm partition (default: the profile's)")
        p.add_argument("--account", default=None, help="Slurm account to charge (default: the profile's)")
        p.add_argument("--qos", default=None, help="Slurm quality of service (default: the profile's)")
        p.add_argument("--mem", default=None, help="memory per node, e.g. 32G or 32GB")
        p.add_argument("--container", default=None, metavar="IMAGE.sif",
                       help="run every job in this Apptainer image (apptainer exec, --nv where it has GPUs)")
        p.add_argument("--bind", action="append", default=None, metavar="SRC[:DST[:ro]]",
                       help="add a folder the image must see (the run root, the cube's folder) to the profile's "
                            "slurm.binds; repeat for more")
        p.add_argument("--dependency", default=None, help="sbatch dependency, e.g. afterok:1234 (train only)")
        p.add_argument("--via", choices=("sbatch", "submitit"), default="sbatch",
                       help="sbatch (rendered template, default) or submitit's AutoExecutor (train only)")
        p.add_argument("--dry-run", action="store_true", help="print the exact script(s); write and submit nothing")
        p.set_defaults(func=_submit)


def resource_overrides(args: argparse.Namespace) -> list[str]:
    """The config overrides: KEY=VALUE arguments, then the resource options given."""
    out = list(args.overrides)
    for option, key in RESOURCE_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            out.append(f"slurm.{key}={json.dumps(value)}")
    return out


def refuse_layout(what: str, args: argparse.Namespace) -> None:
    """ConfigError for a resource option this kind of job cannot honour (instead of ignoring it)."""
    from astrohpc.errors import ConfigError

    given = [f"--{o.replace('_', '-')}" for o in LAYOUT_OPTIONS.get(what, ()) if getattr(args, o) is not None]
    if what == "study" and args.gpus_per_node not in (None, 0, 1):
        given.append(f"--gpus-per-node {args.gpus_per_node}")
    if what == "sweep" and args.cpus_per_task is not None:
        raise ConfigError(f"submit sweep: --cpus-per-task {args.cpus_per_task} cannot be honoured: a GCM task takes "
                          f"gcm.ncpus CPUs (ExoPlaSim's MPI ranks); pass gcm.ncpus={args.cpus_per_task} instead")
    if given:
        raise ConfigError(f"submit {what}: {', '.join(given)} cannot be honoured: every {what} task is one process "
                          "on one node (GCM tasks on CPUs; study tasks on CPUs or one GPU each); the multi-node, "
                          "multi-GPU layout is for `submit train`")
    if what != "train" and (args.via != "sbatch" or args.dependency):
        raise ConfigError(f"submit {what}: --via submitit and --dependency are for training jobs")


def _absolute(cfg) -> None:
    """Paths the job reads or writes, made absolute (the job may start elsewhere)."""
    cfg.run.root = str(Path(cfg.run.root).resolve())
    for section in (cfg.train, cfg.data):
        if getattr(section, "cube", None):
            section.cube = str(Path(section.cube).resolve())


def _submit(args: argparse.Namespace) -> int:
    import sys

    from astrohpc.launch.profiles import load_job_config

    refuse_layout(args.what, args)
    overrides = resource_overrides(args)
    if args.what == "study":
        from astrohpc.cli.study_cmd import _study

        return _study(argparse.Namespace(kind=args.kind, config=args.config, overrides=overrides, cluster=args.cluster,
                                         bind=args.bind or [], task_id=None, dry_run=args.dry_run, local=False,
                                         submit=not args.dry_run, replace=False, wait=False, timeout=0.0))
    if args.what == "sweep":
        from astrohpc.cli.gcm_cmd import _sweep

        return _sweep(argparse.Namespace(config=args.config, overrides=overrides, cluster=args.cluster,
                                         bind=args.bind or [], dry_run=args.dry_run, local=False,
                                         submit=not args.dry_run, workers=None, wait=False, timeout=0))
    cfg = load_job_config(args.config, overrides, args.cluster, args.bind or [])
    _absolute(cfg)
    from astrohpc.train.trainer import run_dir

    if args.via == "submitit":
        from astrohpc.launch.submitit_train import submit_with_submitit

        record = submit_with_submitit(cfg, run_dir(cfg), dry_run=args.dry_run)
        print(json.dumps({k: v for k, v in record.items() if k not in ("script", "job")}, indent=2, default=str))
        return 0
    from astrohpc.launch.train_job import submit_train

    record = submit_train(cfg, run_dir(cfg), dry_run=args.dry_run, dependency=args.dependency)
    if args.dry_run:
        for problem in record["problems"]:
            print(f"astrohpc: warning: a submission would refuse: {problem}", file=sys.stderr)
        print(record["script"], end="" if record["script"].endswith("\n") else "\n")
    else:
        print(f"training job {record['job_id']}: {record['script_path']} (config frozen in {record['config']}); "
              f"logs in {run_dir(cfg)}/logs, metrics in {run_dir(cfg)}/metrics.json, weights in "
              f"{run_dir(cfg)}/export")
    return 0
