"""`astrohpc train CONFIG [KEY=VALUE ...]`: train a surrogate on a cube, resuming if a checkpoint exists.

The same command runs under every launcher: alone (one process), `torchrun --nproc-per-node N`,
`srun` (one task per GPU or per CPU rank), `mpirun -n N`; astrohpc.train.distributed reads which.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("train", help="train the surrogate of the model: section on a cube (multi-rank under "
                                          "srun, mpirun or torchrun; resumes from the newest checkpoint)")
    parser.add_argument("config", help="YAML config (model:, train:, data.cube or train.cube, run.name)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.epochs=2")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (rank 0 shows one by default)")
    parser.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from astrohpc.config import load_config
    from astrohpc.train.trainer import train

    cfg = load_config(args.config, args.overrides)
    summary = train(cfg, progress=not args.no_progress and sys.stderr.isatty())
    if summary["distributed"]["rank"] == 0:
        brief = {k: summary[k] for k in ("status", "step", "total_steps", "epoch", "best", "requeue", "exports")}
        print(json.dumps(brief, indent=2, default=str))
    # a run stopped by a signal and not requeued did not finish: say so in the exit status
    if summary["status"] == "preempted" and not (summary.get("requeue") or {}).get("requeued", True):
        return 3
    return 0
