"""`astrohpc submit train|sweep|study CONFIG [KEY=VALUE ...] [resources] [--dry-run] [--via sbatch|submitit]`.

Resources come from the config's `slurm:` section (a cluster profile it extends, or `--cluster
NAME` = configs/cluster/NAME.yaml applied on top), then from the options here. `--dry-run`
prints the exact script(s) and submits nothing. See docs/launch.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# option -> slurm.* key
RESOURCE_OPTIONS = {"nodes": "nodes", "gpus_per_node": "gpus_per_node", "ntasks_per_node": "ntasks_per_node",
                    "time": "time", "partition": "partition", "account": "account", "qos": "qos", "mem": "mem",
                    "cpus_per_task": "cpus_per_task", "container": "container"}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("submit", help="submit a training run or a GCM sweep to Slurm (--dry-run prints the "
                                           "scripts)")
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
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
        p.add_argument("--cluster", default=None, metavar="NAME",
                       help="cluster profile configs/cluster/NAME.yaml (or a path) applied over the config")
        p.add_argument("--nodes", type=int, default=None, help="nodes per job (default: the cluster profile's)")
        p.add_argument("--gpus-per-node", type=int, default=None, help="G GPUs per node: G srun tasks per node")
        p.add_argument("--ntasks-per-node", type=int, default=None, help="CPU ranks per node when no GPUs")
        p.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per task (default: the profile's)")
        p.add_argument("--time", default=None, help="wall-clock limit, e.g. 04:00:00")
        p.add_argument("--partition", default=None, help="Slurm partition (default: the profile's)")
        p.add_argument("--account", default=None, help="Slurm account to charge (default: the profile's)")
        p.add_argument("--qos", default=None, help="Slurm quality of service (default: the profile's)")
        p.add_argument("--mem", default=None, help="memory per node, e.g. 32G")
        p.add_argument("--container", default=None, metavar="IMAGE.sif", help="run every task in this Apptainer "
                                                                              "image (apptainer exec --nv)")
        p.add_argument("--dependency", default=None, help="sbatch dependency, e.g. afterok:1234 (train only)")
        p.add_argument("--via", choices=("sbatch", "submitit"), default="sbatch",
                       help="sbatch (rendered template, default) or submitit's AutoExecutor (train only)")
        p.add_argument("--dry-run", action="store_true", help="print the exact script(s); submit nothing")
        p.set_defaults(func=_submit)


def profile_overrides(name: str) -> list[str]:
    """A cluster profile's `slurm:` keys as overrides (ConfigError for a missing profile)."""
    import yaml

    from astrohpc.errors import ConfigError

    path = Path(name)
    if not path.is_file():
        path = REPO / "configs" / "cluster" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (REPO / "configs" / "cluster").glob("*.yaml"))
        raise ConfigError(f"--cluster {name}: no such profile; profiles in configs/cluster: {', '.join(known)}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - {"slurm"})
    if unknown:
        raise ConfigError(f"{path}: a cluster profile holds only a slurm: section, found {', '.join(unknown)}")
    return [f"slurm.{k}={json.dumps(v)}" for k, v in (data.get("slurm") or {}).items()]


def _overrides(args: argparse.Namespace) -> list[str]:
    out = profile_overrides(args.cluster) if args.cluster else []
    out += list(args.overrides)
    for option, key in RESOURCE_OPTIONS.items():
        value = getattr(args, option)
        if value is not None:
            out.append(f"slurm.{key}={json.dumps(value)}")
    return out


def _absolute(cfg) -> None:
    """Paths the job reads or writes, made absolute (the job may start elsewhere)."""
    cfg.run.root = str(Path(cfg.run.root).resolve())
    for section in (cfg.train, cfg.data):
        if getattr(section, "cube", None):
            section.cube = str(Path(section.cube).resolve())


def _submit(args: argparse.Namespace) -> int:
    from astrohpc.config import load_config
    from astrohpc.errors import ConfigError

    cfg = load_config(args.config, _overrides(args))
    if args.what == "study":
        if args.via != "sbatch" or args.dependency:
            raise ConfigError("submit study: --via submitit and --dependency are for training jobs")
        from astrohpc.cli.study_cmd import _study

        return _study(argparse.Namespace(kind=args.kind, config=args.config, overrides=_overrides(args),
                                         task_id=None, dry_run=args.dry_run, local=False, submit=True, wait=False,
                                         timeout=0.0))
    if args.what == "sweep":
        if args.via != "sbatch" or args.dependency:
            raise ConfigError("submit sweep: --via submitit and --dependency are for training jobs; a sweep is "
                              "[spin-up ->] arrays -> aggregation through sbatch")
        from astrohpc.cli.gcm_cmd import _sweep

        return _sweep(argparse.Namespace(config=args.config, overrides=_overrides(args), dry_run=args.dry_run,
                                         local=False, workers=None, wait=False, timeout=0))
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
        print(record["script"], end="" if record["script"].endswith("\n") else "\n")
    else:
        print(f"training job {record['job_id']}: {record['script_path']} (config frozen in {record['config']}); "
              f"metrics in {run_dir(cfg)}/metrics.json")
    return 0
