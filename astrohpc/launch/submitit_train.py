"""Training through submitit: the same run, submitted by submitit's AutoExecutor from Python.

`TrainJob` is a `submitit.helpers.Checkpointable`: every task (one per GPU, or per CPU rank)
calls it with the frozen config; it trains through astrohpc.train.trainer.train, which finds its
rank from the SLURM_* variables submitit's srun sets, exactly as under `astrohpc submit train`.

Preemption and time-outs: submitit asks Slurm for SIGUSR2 `slurm_signal_delay_s` before the end
and requeues the job itself. The trainer listens to that signal (train.signal is set to
USR2@delay here), all ranks checkpoint at the same step, and rank 0 requeues; if submitit's own
handler runs first (the signal came before training started), `checkpoint()` resubmits the same
callable, which resumes from the newest checkpoint on disk. Either way the requeued job resumes.

The resources come from the same `slurm:` section (cluster profile) as the sbatch path, less the
container: submitit's requeue runs inside the task, and the image has no `scontrol` (the sbatch
path requeues from the batch shell on the host instead), so a container is refused here.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from astrohpc.atomic_write import write_json, write_text
from astrohpc.config import to_yaml
from astrohpc.errors import ConfigError

log = logging.getLogger(__name__)

try:  # submitit is a core dependency; the guard keeps `import astrohpc.launch` cheap if it is broken
    from submitit.helpers import Checkpointable, DelayedSubmission
except ImportError:  # pragma: no cover
    Checkpointable = object  # type: ignore[assignment,misc]
    DelayedSubmission = None  # type: ignore[assignment]


class TrainJob(Checkpointable):
    """Train `config_file` (see the module doc); returns the trainer's summary."""

    def __call__(self, config_file: str, signal_spec: str = "USR2@120") -> dict[str, Any]:
        from astrohpc.config import load_config
        from astrohpc.train.trainer import train

        cfg = load_config(config_file, [f"train.signal={signal_spec}"])
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        summary = train(cfg)
        if summary["status"] == "preempted" and (summary.get("requeue") or {}).get("requeued", True):
            # the job is requeued and Slurm is about to end this attempt: leave without a result, or
            # submitit would hand the caller this attempt's "preempted" summary instead of the final one
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(0)
        return summary

    def checkpoint(self, config_file: str, signal_spec: str = "USR2@120") -> Any:
        """submitit's hook on its signal: resubmit; the new job resumes from the newest checkpoint."""
        log.warning("submitit checkpoint(): resubmitting %s (it resumes from its newest checkpoint)", config_file)
        return DelayedSubmission(TrainJob(), config_file, signal_spec)


def site_parameters(slurm: Any, name: str, cpus_per_task: int, gpus_per_node: int = 0) -> dict[str, Any]:
    """AutoExecutor.update_parameters(...) for one job of a `slurm:` section: partition, account, qos,
    time, memory, set-up lines and slurm.env, `cpus_per_task` cores and `gpus_per_node` GPUs."""
    hours, minutes, seconds = _time_parts(slurm.time)
    additional: dict[str, Any] = {key: value for key, value in (("account", slurm.account), ("qos", slurm.qos))
                                  if value}
    params: dict[str, Any] = {
        "name": name, "cpus_per_task": cpus_per_task, "slurm_mem": slurm.mem,
        "timeout_min": max(1, hours * 60 + minutes + (1 if seconds else 0)),
        "slurm_setup": [*slurm.setup, *(f"export {k}={shlex.quote(str(v))}" for k, v in slurm.env.items())],
        "slurm_additional_parameters": additional,
    }
    if gpus_per_node:
        params["gpus_per_node"] = gpus_per_node
    if slurm.partition:
        params["slurm_partition"] = slurm.partition
    return params


def executor_parameters(cfg: Any, run_dir: Path) -> dict[str, Any]:
    """AutoExecutor.update_parameters(...) for the run's `slurm:` section: one task per GPU (or
    ntasks_per_node CPU ranks) on slurm.nodes nodes, requeued on submitit's signal."""
    s = cfg.slurm
    params = site_parameters(s, f"train-{cfg.run.name}", s.cpus_per_task, s.gpus_per_node)
    params.update(nodes=s.nodes, tasks_per_node=s.gpus_per_node or s.ntasks_per_node,
                  slurm_signal_delay_s=_signal_delay(cfg.train.signal))
    params["slurm_additional_parameters"].update({"requeue": True, "open-mode": "append"})
    return params


def _time_parts(text: str) -> tuple[int, int, int]:
    """Slurm's time forms (M, M:S, H:M:S, D-H, D-H:M, D-H:M:S) -> (hours, minutes, seconds)."""
    if "-" in text:
        days, rest = text.split("-", 1)
        h, m, s = ([int(p) for p in rest.split(":")] + [0, 0])[:3]
        return int(days) * 24 + h, m, s
    parts = [int(p) for p in text.split(":")]
    if len(parts) == 1:
        return 0, parts[0], 0
    if len(parts) == 2:
        return 0, parts[0], parts[1]
    return parts[0], parts[1], parts[2]


def _signal_delay(spec: str) -> int:
    from astrohpc.train.preemption import parse_signal

    _sig, seconds, _batch = parse_signal(spec)
    return int(seconds or 120)


def submit_with_submitit(cfg: Any, run_dir: Path, dry_run: bool = False) -> dict[str, Any]:
    """Freeze the config, build the AutoExecutor (logs in run_dir/submitit) and submit TrainJob.
    Returns {"parameters", "config", "job_id", "job"} (dry run: parameters only, nothing written)."""
    run_dir = Path(run_dir).resolve()
    params = executor_parameters(cfg, run_dir)
    config_file = run_dir / "config.yaml"
    record: dict[str, Any] = {"via": "submitit", "parameters": params, "config": str(config_file), "job_id": None}
    if cfg.slurm.container:
        raise ConfigError(f"--via submitit with slurm.container={cfg.slurm.container}: submitit requeues a preempted "
                          "job from inside the task, where the image has no Slurm client (scontrol); use --via sbatch, "
                          "whose batch shell requeues on the host")
    if dry_run:
        return record
    import submitit

    from astrohpc.launch.preflight import refuse_problems
    from astrohpc.launch.train_job import train_problems

    refuse_problems(train_problems(cfg, run_dir), "training job")
    write_text(config_file, to_yaml(cfg))
    executor = submitit.AutoExecutor(folder=run_dir / "submitit" / "%j", cluster="slurm", slurm_python=sys.executable)
    executor.update_parameters(**params)
    job = executor.submit(TrainJob(), str(config_file), f"USR2@{params['slurm_signal_delay_s']}")
    record["job_id"] = job.job_id
    write_json(run_dir / "submission.json", dict(record))
    record["job"] = job  # the submitit Job: .result() waits and returns the trainer's summary
    log.info("training job %s submitted through submitit", job.job_id)
    return record
