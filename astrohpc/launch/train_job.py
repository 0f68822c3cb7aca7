"""A training run as a Slurm job: the sbatch script of `astrohpc submit train`, and its submission.

The job runs `srun [apptainer exec --nv …] python -m astrohpc train RUN_DIR/config.yaml`:
one task per GPU (`--ntasks-per-node=G --gpus-per-node=G`) or, without GPUs, slurm.ntasks_per_node
CPU ranks per node, on slurm.nodes nodes; every task finds its rank and the rendezvous host
itself (astrohpc.train.distributed, env://). The config is frozen into the run directory at
submission (the job trains what was submitted, even if the file is edited later).

Preemption: `--requeue --open-mode=append --signal=SIG@T` with train.signal. The signal goes to
every task (not `B:`, which would reach only the batch shell and never the ranks): the ranks agree
to stop, checkpoint, and rank 0 requeues the job, which resumes from the checkpoint.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from astrohpc.atomic_write import write_json, write_text
from astrohpc.config import to_dict, to_yaml
from astrohpc.errors import ConfigError
from astrohpc.launch.sbatch import option_key, render_sbatch

log = logging.getLogger(__name__)

TEMPLATE = "train.sbatch"


def task_layout(slurm: Any) -> dict[str, Any]:
    """sbatch options of the task layout: nodes, tasks per node, GPUs per node (one task per GPU)."""
    per_node = slurm.gpus_per_node or slurm.ntasks_per_node
    options: dict[str, Any] = {"nodes": slurm.nodes, "ntasks_per_node": per_node}
    if slurm.gpus_per_node:
        options["gpus_per_node"] = slurm.gpus_per_node
    return options


def check_signal(spec: str) -> str:
    """train.signal as an sbatch --signal value; ConfigError for `B:` (the ranks must get it)."""
    from astrohpc.train.preemption import parse_signal

    _sig, _seconds, batch_only = parse_signal(spec)
    if batch_only:
        raise ConfigError(f"train.signal = {spec!r}: 'B:' sends the signal only to the batch shell, never to the "
                          f"training ranks; use {spec.split(':', 1)[1]!r}")
    return spec


def job_command(config_file: Path, slurm: Any, python: str = sys.executable) -> list[str]:
    """The job's srun line as argv (inside the container when slurm.container is set)."""
    train = ["astrohpc", "train", str(config_file), "--no-progress"]
    if slurm.container:
        from astrohpc.launch.container import wrap

        inner = wrap(train, slurm.container, slurm.binds, nv=slurm.gpus_per_node > 0)
    else:
        inner = [python, "-m", "astrohpc", *train[1:]]
    return ["srun", "--kill-on-bad-exit=1", *inner]


def render_train(cfg: Any, config_file: Path, run_dir: Path, dependency: Optional[str] = None,
                 python: str = sys.executable) -> str:
    """The sbatch script that trains `config_file` (absolute paths in the job)."""
    s = cfg.slurm
    options = s.site_options(extra=False)  # extras follow, less those a training job sets itself
    layout = task_layout(s)
    for name, value in s.extra.items():
        key = option_key(name)
        if key in layout or key in ("signal", "requeue", "open_mode", "output", "job_name"):
            log.warning("slurm.extra %s=%s ignored for a training job: set by slurm.nodes / gpus_per_node / "
                        "ntasks_per_node or train.signal", name, value)
            continue
        options[key] = value
    options.update(layout)
    options.update(job_name=f"train-{cfg.run.name}", cpus_per_task=s.cpus_per_task, mem=s.mem, requeue=True,
                   open_mode="append", signal=check_signal(cfg.train.signal),
                   output=f"{run_dir.resolve()}/logs/train-%j.out", dependency=dependency)
    env = {"PYTHONUNBUFFERED": "1", **s.env}
    if s.gpus_per_node == 0:
        env.setdefault("OMP_NUM_THREADS", str(s.cpus_per_task))
    return render_sbatch(TEMPLATE, job_command(config_file.resolve(), s, python), setup=s.setup, env=env,
                         **options)


def submit_train(cfg: Any, run_dir: Path, dry_run: bool = False, dependency: Optional[str] = None,
                 sbatch_args: Sequence[str] = ()) -> dict[str, Any]:
    """Freeze the config into run_dir/config.yaml, render, and (unless dry_run) submit.
    Returns {"script": text, "script_path", "config", "job_id"} (no files written on a dry run)."""
    from astrohpc.launch.submit import submit, write_script

    run_dir = Path(run_dir).resolve()
    config_file = run_dir / "config.yaml"
    text = render_train(cfg, config_file, run_dir, dependency)
    record: dict[str, Any] = {"script": text, "config": str(config_file), "job_id": None}
    if dry_run:
        return record
    write_text(config_file, to_yaml(cfg))
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    script = write_script(run_dir / "slurm" / f"train-{time.strftime('%Y%m%dT%H%M%S')}.sbatch", text)
    record.update(script_path=str(script), job_id=submit(script, sbatch_args))
    write_json(run_dir / "submission.json", {k: v for k, v in record.items() if k != "script"}
               | {"config_dict": to_dict(cfg)})
    log.info("training job %s submitted: %s", record["job_id"], script)
    return record
