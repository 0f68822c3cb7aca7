"""A training run as a Slurm job: the sbatch script of `astrohpc submit train`, and its submission.

The job runs `srun --cpus-per-task=C [apptainer exec --nv …] astrohpc train RUN_DIR/config.yaml`:
one task per GPU (`--ntasks-per-node=G --gpus-per-node=G`) or, without GPUs, slurm.ntasks_per_node
CPU ranks per node, on slurm.nodes nodes. srun gets --cpus-per-task itself: since Slurm 22.05 it
no longer inherits sbatch's, and each rank would get one core. The batch shell exports MASTER_ADDR
and MASTER_PORT from the host (the image has no `scontrol`); every task reads its rank itself
(astrohpc.train.distributed, env://). The config is frozen into the run directory at submission
(the job trains what was submitted, even if the file is edited later).

Preemption: `--requeue --open-mode=append --signal=SIG@T` with train.signal. The signal goes to
every task (not `B:`, which would reach only the batch shell and never the ranks): the ranks agree
to stop and checkpoint, rank 0 writes RUN_DIR/requeue-request (ASTROHPC_REQUEUE_FILE), and the
batch shell, on the host, runs `scontrol requeue`; the job resumes from the checkpoint.
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
from astrohpc.launch.job_command import astrohpc_command, job_environment
from astrohpc.launch.sbatch import option_key, render_sbatch

log = logging.getLogger(__name__)

TEMPLATE = "train.sbatch"


def task_layout(slurm: Any) -> dict[str, Any]:
    """sbatch options of the task layout: nodes, tasks per node, GPUs per node (one task per GPU).
    ConfigError for CPU ranks per node asked beside GPUs (they would be ignored)."""
    if slurm.gpus_per_node and slurm.ntasks_per_node not in (1, slurm.gpus_per_node):
        raise ConfigError(f"slurm.ntasks_per_node={slurm.ntasks_per_node} with slurm.gpus_per_node="
                          f"{slurm.gpus_per_node}: a GPU job runs one task per GPU; set gpus_per_node (or "
                          "gpus_per_node=0 for CPU ranks)")
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
    inner = astrohpc_command(["train", str(config_file), "--no-progress"], slurm, python,
                             nv=slurm.gpus_per_node > 0)
    return ["srun", "--kill-on-bad-exit=1", f"--cpus-per-task={slurm.cpus_per_task}", *inner]


REQUEUE_REQUEST = "requeue-request"


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
    from astrohpc.train.preemption import REQUEUE_FILE_VARIABLE

    threads = {} if s.gpus_per_node else {"OMP_NUM_THREADS": str(s.cpus_per_task)}
    env = job_environment(s, **threads, **{REQUEUE_FILE_VARIABLE: str(run_dir.resolve() / REQUEUE_REQUEST)})
    return render_sbatch(TEMPLATE, job_command(config_file.resolve(), s, python), setup=s.setup, env=env,
                         **options)


def train_problems(cfg: Any, run_dir: Path) -> list[str]:
    """Pre-flight problems of a training job (astrohpc.launch.preflight): the cube it reads, the run
    folder it writes, the profile."""
    from astrohpc.launch.preflight import preflight

    return preflight(cfg.slurm, inputs={"train.cube": cfg.train.cube or cfg.data.cube},
                     outputs=[str(Path(run_dir).resolve())])


def submit_train(cfg: Any, run_dir: Path, dry_run: bool = False, dependency: Optional[str] = None,
                 sbatch_args: Sequence[str] = ()) -> dict[str, Any]:
    """Freeze the config into run_dir/config.yaml, render, and (unless dry_run) submit.
    Returns {"script": text, "script_path", "config", "job_id", "problems"} (no files written on a
    dry run; a submission with pre-flight problems raises ConfigError before writing anything)."""
    from astrohpc.launch.preflight import refuse_problems
    from astrohpc.launch.submit import submit, write_script

    run_dir = Path(run_dir).resolve()
    config_file = run_dir / "config.yaml"
    text = render_train(cfg, config_file, run_dir, dependency)
    problems = train_problems(cfg, run_dir)
    record: dict[str, Any] = {"script": text, "config": str(config_file), "job_id": None, "problems": problems}
    if dry_run:
        return record
    refuse_problems(problems, "training job")
    write_text(config_file, to_yaml(cfg))
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    script = write_script(run_dir / "slurm" / f"train-{time.strftime('%Y%m%dT%H%M%S')}.sbatch", text)
    record.update(script_path=str(script), job_id=submit(script, sbatch_args))
    write_json(run_dir / "submission.json", {k: v for k, v in record.items() if k not in ("script", "problems")}
               | {"config_dict": to_dict(cfg)})
    log.info("training job %s submitted: %s", record["job_id"], script)
    return record
