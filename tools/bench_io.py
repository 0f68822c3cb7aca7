#!/usr/bin/env python
"""Datacube read benchmark: writes runs/bench/io-HOST-DATE.json (date, host, git in provenance).

    .venv/bin/python tools/bench_io.py                       # cube from runs/gcm/smoke, 40 runs
    .venv/bin/python tools/bench_io.py --cube runs/cube.h5   # an existing cube
    .venv/bin/python tools/bench_io.py --source a.nc b.nc --repeat 4

Without --cube, the source files (default: the ExoPlaSim smoke run's daily snapshots) are
converted into a bench cube with each source repeated --repeat times as separate runs, so the
windows are real ExoPlaSim samples while the cube is large enough to time. Measurements and
targets: see astrohpc/data/bench.py and issue #4. Report what you get.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import socket
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from astrohpc.atomic_write import write_json  # noqa: E402
from astrohpc.data.bench import run_benchmark  # noqa: E402
from astrohpc.data.convert import convert  # noqa: E402
from astrohpc.provenance import collect  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", type=Path, default=None)
    parser.add_argument("--source", nargs="*", type=Path, default=[REPO / "runs" / "gcm" / "smoke"])
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--input-steps", type=int, default=1)
    parser.add_argument("--target-steps", type=int, default=1)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--bytes", type=float, default=2e9, help="bytes per timed reader run")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    args = parser.parse_args()

    cube = args.cube
    if cube is None:
        cube = args.out / "bench_cube.h5"
        sources = [s for s in args.source for _ in range(args.repeat)]
        convert(sources, cube)
    record = run_benchmark(cube, args.input_steps, args.target_steps, args.ranks, args.passes, target_bytes=args.bytes)
    record["provenance"] = collect(extra={"sources": [str(s) for s in args.source], "repeat": args.repeat})
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = write_json(args.out / f"io-{socket.gethostname()}-{stamp}.json", record)
    summary = {
        "sample_bytes": record["sample_bytes"], "windows": record["windows"],
        "sequential_GB_s": record["sequential_bytes"]["GB_s"],
        "reader": {k: {"samples_s": round(v["samples_s"], 1), "GB_s": round(v["GB_s"], 3)}
                   for k, v in record["reader"].items()},
        "dataset_independent_1_samples_s": record["dataset_independent_1"]["samples_s"],
        "netcdf4_samples_s": record["netcdf4_open_files"]["samples_s"],
        "xarray_samples_s": record["xarray_isel"]["samples_s"],
        "sequential_GB_s_by_ranks": {k: v["GB_s"] for k, v in record["sequential_bytes_ranks"].items()},
        "ratios": record["ratios"],
    }
    print(json.dumps(summary, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
