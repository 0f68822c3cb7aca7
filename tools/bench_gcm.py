#!/usr/bin/env python
"""Benchmark the reference GCM: core-seconds per simulated day, and the parallel efficiency of a
2-task array on the local Slurm cluster against the same two runs in series.

    tools/bench_gcm.py [--days 10] [--out runs/bench]

Efficiency = (series wall time / array wall time) / 2, where the array wall time runs from
submission until both tasks have written summary.json (Slurm scheduling included). Writes
runs/bench/gcm-<UTC time>.json with the date, host and git commit.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from astrohpc.atomic_write import write_json  # noqa: E402
from astrohpc.config import load_config  # noqa: E402
from astrohpc.gcm.run import run_simulation  # noqa: E402
from astrohpc.gcm.runner import get_runner  # noqa: E402
from astrohpc.provenance import collect  # noqa: E402

SMOKE = REPO / "configs" / "gcm" / "smoke.yaml"
POINTS = "[{planet.instellation_W_m2: 1200}, {planet.instellation_W_m2: 1400}]"


def _config(root: Path, name: str, days: int, *extra: str):
    return load_config(SMOKE, [f"run.root={root}", f"run.name={name}", f"gcm.days={days}", *extra])


def series(root: Path, days: int) -> dict:
    started = time.monotonic()
    runs = []
    for i, flux in enumerate((1200, 1400)):
        cfg = _config(root, f"series{i}", days, f"planet.instellation_W_m2={flux}")
        runs.append(run_simulation(cfg, root / f"series{i}"))
    wall = time.monotonic() - started
    return {"wall_s": round(wall, 2), "task_wall_s": [r["wall_time_s"] for r in runs],
            "core_seconds_per_simulated_day": [r["core_seconds_per_simulated_day"] for r in runs]}


def slurm_array(root: Path, days: int) -> dict:
    from astrohpc.errors import SlurmError
    from astrohpc.gcm.sweep import plan_sweep, write_plan
    from astrohpc.gcm.sweep_slurm import job_ids, submit_sweep
    from astrohpc.launch import wait_for

    if shutil.which("sbatch") is None:
        return {"skipped": "no sbatch on PATH (tools/local-slurm.sh start; eval \"$(tools/local-slurm.sh env)\")"}
    cfg = _config(root, "array", days, "sweep.design=list", f"sweep.points={POINTS}", "slurm.time=00:20:00",
                  "slurm.mem=500M")
    plan = plan_sweep(cfg)
    write_plan(plan, cfg)
    started = time.monotonic()
    try:
        record = submit_sweep(cfg, plan.sweep_dir)
    except SlurmError as exc:
        return {"skipped": str(exc)}
    summaries = [plan.sweep_dir / f"task-{i:04d}" / "summary.json" for i in range(2)]
    while not all(p.is_file() for p in summaries):
        if time.monotonic() - started > 1800:
            return {"skipped": "timed out after 1800 s"}
        time.sleep(0.2)
    wall = time.monotonic() - started
    wait_for(job_ids(record), timeout_s=600)
    tasks = [json.loads(p.read_text()) for p in summaries]
    return {"wall_s": round(wall, 2), "task_status": [t["status"] for t in tasks],
            "task_wall_s": [t.get("wall_time_s") for t in tasks], "jobs": job_ids(record)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=10, help="simulated days per run (default 10)")
    parser.add_argument("--out", default=str(REPO / "runs" / "bench"))
    args = parser.parse_args()

    cfg = _config(Path("/tmp"), "bench", args.days)
    get_runner(cfg.gcm.model).build(cfg.gcm)
    # The Slurm daemons need a folder they can write to; runs/ is git-ignored and local here.
    root = Path(tempfile.mkdtemp(prefix="bench-gcm-", dir=REPO / "runs"))
    try:
        ser = series(root, args.days)
        arr = slurm_array(root, args.days)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "gcm",
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model": "exoplasim T21 L10, 1 CPU per run",
        "simulated_days_per_run": args.days,
        "core_seconds_per_simulated_day": round(sum(ser["core_seconds_per_simulated_day"]) / 2, 4),
        "series": ser,
        "slurm_array": arr,
        "parallel_efficiency": (round(ser["wall_s"] / arr["wall_s"] / 2, 3) if "wall_s" in arr else None),
        "provenance": collect(),
    }
    result["headline"] = {
        "core-seconds per simulated day (T21 L10, 1 CPU)": result["core_seconds_per_simulated_day"],
        "2-task Slurm array: wall time (s)": arr.get("wall_s"),
        "the same 2 runs in series: wall time (s)": ser["wall_s"],
        "parallel efficiency of the 2-task array": result["parallel_efficiency"],
    }
    out = Path(args.out) / f"gcm-{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    write_json(out, result)
    print(json.dumps({k: result[k] for k in ("core_seconds_per_simulated_day", "parallel_efficiency")}))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
