#!/usr/bin/env python
"""Datacube read benchmark: writes runs/bench/io-HOST-DATE.json (date, host, git in provenance).

    .venv/bin/python tools/bench_io.py                       # the bench sweep's cube (made if missing)
    .venv/bin/python tools/bench_io.py --cube runs/cube.h5   # an existing cube

Without --cube the cube comes from a real multi-run ExoPlaSim sweep, configs/gcm/bench.yaml (6
runs x 30 daily snapshots, T21 L10, ~2.5 min on 2 cores), run here with `astrohpc gcm sweep
--local` into runs/benchsweep/ the first time and reused after. The runs are converted with the
default data settings (the files' own variables, no unit conversion or derived fields) into
runs/benchsweep/bench/bench_cube.h5, so that the NetCDF baselines can rebuild every sample byte
for byte (the sweep's own datacube.h5 has derived channels they cannot); a cube the current
reader refuses (older schema) is converted again. What is measured and the targets:
astrohpc/data/bench.py; the latest figures: docs/benchmarks.md. Report what you get.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from astrohpc.atomic_write import write_json  # noqa: E402
from astrohpc.data.bench import run_benchmark  # noqa: E402
from astrohpc.data.convert import convert_run_dirs  # noqa: E402
from astrohpc.data.cube import read_meta  # noqa: E402
from astrohpc.data.settings import DataSettings  # noqa: E402
from astrohpc.errors import DataError  # noqa: E402
from astrohpc.provenance import collect  # noqa: E402

SWEEP_CONFIG = REPO / "configs" / "gcm" / "bench.yaml"
SWEEP_ROOT = REPO / "runs" / "benchsweep"
SWEEP_NAME = "bench"  # run.name in configs/gcm/bench.yaml


def sweep_cube(config: Path, root: Path) -> Path:
    """The bench cube of the sweep under `root`: reused, or converted from the sweep's runs (the
    sweep is run first if it has not finished)."""
    sweep_dir = root / SWEEP_NAME
    cube = sweep_dir / "bench_cube.h5"
    if cube.is_file():
        try:
            read_meta(cube)
            return cube
        except DataError as exc:
            print(f"[bench_io] {cube} not readable ({exc}); converting the sweep's runs again", file=sys.stderr)
    if not (sweep_dir / "manifest.json").is_file():
        print(f"[bench_io] running the sweep {config} into {root} (about 2.5 min on 2 cores)", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "astrohpc", "gcm", "sweep", str(config), f"run.root={root}", "--local"],
                       check=True, cwd=REPO)
    tasks = sorted(sweep_dir.glob("task-*"))
    return convert_run_dirs(tasks, cube, kind="snapshots", settings=DataSettings())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cube", type=Path, default=None, help="an existing cube (default: the bench sweep's)")
    parser.add_argument("--sweep-config", type=Path, default=SWEEP_CONFIG)
    parser.add_argument("--sweep-root", type=Path, default=SWEEP_ROOT)
    parser.add_argument("--input-steps", type=int, default=1)
    parser.add_argument("--target-steps", type=int, default=1)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--passes", type=int, default=5, help="timed repeats (figures: median, min, max)")
    parser.add_argument("--bytes", type=float, default=5e8, help="bytes per timed repeat of each method")
    parser.add_argument("--dataloader-epochs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[bench_io] %(message)s")

    cube = args.cube or sweep_cube(args.sweep_config, args.sweep_root)
    record = run_benchmark(cube, args.input_steps, args.target_steps, args.ranks, args.passes,
                           target_bytes=args.bytes, dataloader_epochs=args.dataloader_epochs)
    record["provenance"] = collect(extra={"sweep_config": None if args.cube else str(args.sweep_config)})
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = write_json(args.out / f"io-{socket.gethostname()}-{stamp}.json", record)
    print(json.dumps({"headline": record["headline"], "targets_met": record["targets_met"],
                      "skipped": record["skipped"]}, indent=2))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
