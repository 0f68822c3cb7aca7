#!/usr/bin/env python
"""Benchmark the training engine: samples/s at 1 rank and 2 ranks (one thread per rank, gloo on
CPU, torchrun) and the scaling efficiency, the share of step time spent waiting for data, the
checkpoint write time, and 1 rank x 2 threads for reference.

    tools/bench_train.py [--config configs/train/demo.yaml] [--cube CUBE] [--steps 40] [--repeats 3]

Every case is the real `astrohpc train` command on the same cube, model and global batch, run in
a fresh process (torchrun --standalone for 2 ranks) with validation off; the figures come from
the trainer's own timing (rank 0): step time = forward + backward + gradient all-reduce +
optimizer, data wait = time blocked on the DataLoader. samples/s = global samples / (step time +
data wait) over the timed steps (start-up, validation and export excluded). Scaling efficiency =
samples/s(2 ranks) / (2 x samples/s(1 rank)), both at one thread per rank. Median with min-max
over the repeats. Targets (issue 9): efficiency >= 0.8, data wait < 10 % of step time.
Writes runs/bench/train-<UTC time>.json with the date, host, git commit and every raw timing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from astrohpc.atomic_write import write_json  # noqa: E402
from astrohpc.data.bench import spread  # noqa: E402
from astrohpc.provenance import collect  # noqa: E402

DEMO_CUBE = REPO / "runs" / "demo" / "demo" / "datacube.h5"
CASES = {  # name -> (ranks, threads per rank)
    "1 rank x 1 thread": (1, 1),
    "2 ranks x 1 thread": (2, 1),
    "1 rank x 2 threads": (1, 2),
}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "PMI"))}
    return env | {"PYTHONUNBUFFERED": "1"}


def run_case(config: Path, cube: Path, ranks: int, threads: int, steps: int, root: Path,
             extra: list[str] = ()) -> dict:
    """One training run; returns rank 0's timing and the per-rank digests."""
    overrides = [f"run.root={root}", "run.name=bench", f"train.cube={cube}", f"train.max_steps={steps}",
                 "train.validate=false", f"train.threads={threads}", "train.checkpoint_every=10",
                 "train.log_every=10", *extra]
    command = [sys.executable, "-m", "astrohpc", "train", str(config), *overrides, "--no-progress"]
    if ranks > 1:
        command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc-per-node={ranks}",
                   "-m", "astrohpc", "train", str(config), *overrides, "--no-progress"]
    env = _env() | {"OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env)
    if done.returncode != 0:
        raise SystemExit(f"[bench_train] {' '.join(command)} failed:\n{done.stderr[-3000:]}")
    summary = json.loads((root / "bench" / "metrics.json").read_text())
    timing = summary["timing_per_rank"][0]
    samples = timing["steps"] * summary["global_batch"]
    busy = timing["step_s"] + timing["data_wait_s"]
    return {"ranks": ranks, "threads_per_rank": threads, "steps": timing["steps"], "global_batch":
            summary["global_batch"], "samples_s": samples / busy, "data_wait_share": timing["data_wait_s"] / busy,
            "step_s": timing["step_s"], "data_wait_s": timing["data_wait_s"],
            "checkpoint_s": timing["checkpoint_s"], "wall_s": summary["wall_s"],
            "weights_identical_across_ranks": len(set(summary["weights_sha256"])) == 1,
            "timing_per_rank": summary["timing_per_rank"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "configs" / "train" / "demo.yaml"))
    parser.add_argument("--cube", default=None, help="default: the demo cube (make demo), else configs' cube")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="extra config override for every case (repeatable)")
    args = parser.parse_args()
    cube = Path(args.cube) if args.cube else DEMO_CUBE
    if not cube.is_file():
        raise SystemExit(f"[bench_train] no cube at {cube}: run `make demo` first or pass --cube")
    runs: dict[str, list[dict]] = {name: [] for name in CASES}
    for repeat in range(args.repeats):
        for name, (ranks, threads) in CASES.items():  # interleaved: drifting load hits every case alike
            root = Path(tempfile.mkdtemp(prefix="bench_train_"))
            try:
                result = run_case(Path(args.config), cube.resolve(), ranks, threads, args.steps, root, args.overrides)
            finally:
                shutil.rmtree(root, ignore_errors=True)
            runs[name].append(result)
            print(f"[bench_train] repeat {repeat + 1}/{args.repeats} {name}: {result['samples_s']:.2f} samples/s, "
                  f"data wait {100 * result['data_wait_share']:.1f} %", file=sys.stderr)
    figures = {name: {"samples_s": spread([r["samples_s"] for r in rs]),
                      "data_wait_share": spread([r["data_wait_share"] for r in rs]),
                      "checkpoint_write_s": spread([s for r in rs for s in r["checkpoint_s"]])}
               for name, rs in runs.items()}
    one, two = figures["1 rank x 1 thread"]["samples_s"]["median"], figures["2 ranks x 1 thread"]["samples_s"]["median"]
    efficiency = two / (2 * one)
    worst_wait = max(f["data_wait_share"]["median"] for f in figures.values())
    headline = {
        "samples/s 1 rank x 1 thread": one,
        "samples/s 2 ranks x 1 thread": two,
        "samples/s 1 rank x 2 threads": figures["1 rank x 2 threads"]["samples_s"]["median"],
        "scaling efficiency 2 ranks (target >= 0.8)": efficiency,
        "largest data-wait share of step time (target < 0.1)": worst_wait,
        "checkpoint write s (median, 1 rank)": figures["1 rank x 1 thread"]["checkpoint_write_s"]["median"],
    }
    now = _dt.datetime.now(_dt.timezone.utc)
    record = {"benchmark": "train", "date_utc": now.isoformat(timespec="seconds"), "config": args.config,
              "cube": str(cube), "steps": args.steps, "repeats": args.repeats, "headline": headline,
              "targets_met": {"scaling_efficiency": efficiency >= 0.8, "data_wait": worst_wait < 0.1},
              "figures": figures, "runs": runs, "cpu_count": os.cpu_count(),
              "load_average": os.getloadavg(), "provenance": collect()}
    path = write_json(Path(args.out) / f"train-{now.strftime('%Y%m%dT%H%M%SZ')}.json", record)
    print(json.dumps(headline, indent=2))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
