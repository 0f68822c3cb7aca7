#!/usr/bin/env python
"""The demo's training stage: submit a 2-rank DDP training job to the local Slurm cluster, send it
the preemption signal mid-run (what `--signal=USR1@60` does near a time limit), and watch it
checkpoint, requeue itself and resume to the end.

    tools/demo_train.py CONFIG [KEY=VALUE ...] [--signal-after STEPS] [--timeout S]

A finished run is not retrained (its metrics.json says finished). Prints one JSON line: the job id,
the step the signal arrived at, the restart count, the final status and the exports.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from astrohpc.config import to_yaml  # noqa: E402
from astrohpc.launch.profiles import load_job_config  # noqa: E402
from astrohpc.launch.submit import TERMINAL_STATES, job_states  # noqa: E402
from astrohpc.launch.train_job import submit_train  # noqa: E402
from astrohpc.train.trainer import run_dir  # noqa: E402

# Slurm states of a job that will not run again: the launcher's terminal states, less the two a
# requeued job passes through (preempted, held after a special exit)
ENDED = TERMINAL_STATES - {"PREEMPTED", "SPECIAL_EXIT"}


def _steps(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return int(rows[-1]["step"]) if rows else 0


def _state(job: str) -> str:
    states = job_states(job)
    return next(iter(states.values()), "UNKNOWN") if states else "UNKNOWN"


def _until(what: str, ready, timeout: float, poll: float = 1.0) -> None:
    start = time.monotonic()
    while not ready():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"[demo] timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--signal-after", type=int, default=30, help="send the signal once this step is logged")
    parser.add_argument("--timeout", type=float, default=1500.0)
    args = parser.parse_args()
    cfg = load_job_config(args.config, args.overrides)  # the cluster profile: $ASTROHPC_CLUSTER, else local
    cfg.run.root = str(Path(cfg.run.root).resolve())
    cfg.train.cube = str(Path(cfg.train.cube or cfg.data.cube).resolve())
    folder = run_dir(cfg)
    summary_path = folder / "metrics.json"
    frozen = folder / "config.yaml"
    if frozen.is_file() and frozen.read_text() != to_yaml(cfg):
        # the demo's training config changed since that run: it is the demo's own folder, start over
        print(f"[demo] {frozen} differs from the current config: retraining from scratch", file=sys.stderr)
        shutil.rmtree(folder)
    if summary_path.is_file() and json.loads(summary_path.read_text()).get("status") == "finished":
        print(json.dumps({"reused": str(folder), **{k: json.loads(summary_path.read_text())[k]
                                                     for k in ("status", "step", "exports")}}))
        return 0
    job = submit_train(cfg, folder)["job_id"]
    train_csv = folder / "metrics" / "train.csv"
    _until(f"step {args.signal_after} of job {job}", lambda: _steps(train_csv) >= args.signal_after
           or summary_path.is_file() or _state(job) in ENDED, args.timeout)
    if _state(job) in ENDED and not summary_path.is_file():
        logs = "".join(p.read_text() for p in sorted((folder / "logs").glob("train-*.out")))
        raise SystemExit(f"[demo] training job {job} ended {_state(job)} before step {args.signal_after}; "
                         f"its log ({folder / 'logs'}):\n{logs[-3000:]}")
    signalled_at = _steps(train_csv)
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    # the ranks checkpoint and rank 0 requeues; Slurm holds a requeued job back ~2 min: release it now
    _until("the requeue", lambda: _state(job) in ("PENDING", "REQUEUED", "COMPLETED", "FAILED"), 300)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], capture_output=True)
    _until("the resumed job to finish", lambda: _state(job) in ENDED and summary_path.is_file(), args.timeout, poll=2.0)
    summary = json.loads(summary_path.read_text())
    logs = "".join(p.read_text() for p in (folder / "logs").glob("train-*.out"))
    result = {"job_id": job, "signal_at_step": signalled_at, "restarts": logs.count("astrohpc: train job") - 1,
              "resumed": "resumed from" in logs, "state": _state(job), "status": summary["status"],
              "step": summary["step"], "world_size": summary["distributed"]["world_size"],
              "best": summary["best"], "exports": summary["exports"]}
    print(json.dumps(result))
    return 0 if summary["status"] == "finished" else 1


if __name__ == "__main__":
    sys.exit(main())
