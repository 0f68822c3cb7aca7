"""`astrohpc data convert|stats|validate|bench`: GCM NetCDF -> HDF5 datacube and its tools."""

from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="GCM NetCDF -> HDF5 datacubes: convert, stats, validate, bench")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)

    convert = verbs.add_parser("convert", help="convert NetCDF files or GCM run folders into one cube")
    convert.add_argument("inputs", nargs="+", metavar="INPUT", help="NetCDF file or run folder (one run each)")
    convert.add_argument("-o", "--output", required=True, help="cube path (.h5)")
    convert.add_argument("--vars", default=None, help="comma-separated variables (default: all fields)")
    convert.add_argument("--levels", default=None, help="sigma (native) or pressure:1000,850,500 (hPa)")
    convert.add_argument("--kind", default="snapshots", help="files of run folders to use: snapshots or means")
    convert.add_argument("--config", default=None, help="YAML config whose data: section applies")
    convert.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="config override, e.g. data.grid_tolerance_deg=1e-3 (repeatable)")
    convert.set_defaults(func=_convert)

    stats = verbs.add_parser("stats", help="per-channel statistics stored in the cube (works under mpirun)")
    stats.add_argument("cube")
    stats.set_defaults(func=_stats)

    validate = verbs.add_parser("validate", help="check a cube's structure and (with --deep) every value")
    validate.add_argument("cube")
    validate.add_argument("--deep", action="store_true", help="read every step and look for NaN/inf")
    validate.set_defaults(func=_validate)

    bench = verbs.add_parser("bench", help="reader throughput vs sequential bytes, xarray and netCDF4")
    bench.add_argument("cube")
    bench.add_argument("--input-steps", type=int, default=1)
    bench.add_argument("--target-steps", type=int, default=1)
    bench.add_argument("--ranks", type=int, default=2)
    bench.add_argument("--passes", type=int, default=3)
    bench.add_argument("--limit", type=int, default=None, help="use only the first N windows")
    bench.add_argument("--bytes", type=float, default=2e9, help="bytes per timed reader run (default 2e9)")
    bench.add_argument("--out", default="runs/bench", help="folder for the JSON record")
    bench.set_defaults(func=_bench)


def mpi_comm():
    """COMM_WORLD when launched by mpirun/srun with more than one rank, else None."""
    size = os.environ.get("OMPI_COMM_WORLD_SIZE") or os.environ.get("PMI_SIZE") or os.environ.get("PMIX_SIZE")
    if not size or int(size) < 2:
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def _convert(args: argparse.Namespace) -> int:
    from astrohpc.config import load_config
    from astrohpc.data.convert import convert

    cfg = load_config(args.config, args.overrides)
    variables = [v.strip() for v in args.vars.split(",") if v.strip()] if args.vars else None
    path = convert(args.inputs, args.output, variables=variables, levels=args.levels, settings=cfg.data,
                   kind=args.kind)
    print(path)
    return 0


def _stats(args: argparse.Namespace) -> int:
    import numpy as np

    from astrohpc.data.cube import read_meta
    from astrohpc.data.stats import run_stats

    comm = mpi_comm()
    stats = run_stats(args.cube, comm)
    if comm is None or comm.Get_rank() == 0:
        meta = read_meta(args.cube)
        print(f"{'channel':<22} {'mean':>12} {'std':>12} {'min':>12} {'max':>12} {'d/dt std':>12}")
        for c, name in enumerate(meta.variables):
            level = "" if np.isnan(meta.levels[c]) else f"@{meta.levels[c]:g}"
            f, d = stats["fields"], stats["diffs"]
            print(f"{name + level:<22} {f['mean'][c]:12.5g} {f['std'][c]:12.5g} {f['min'][c]:12.5g} "
                  f"{f['max'][c]:12.5g} {d['std'][c]:12.5g}")
        print(f"stored in {args.cube} (group /stats, {comm.Get_size() if comm else 1} rank(s))")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from astrohpc.data.cube import open_file
    from astrohpc.data.validate import scan_values

    f = open_file(args.cube)
    with f:
        if args.deep:
            scan_values(f, Path(args.cube))
        print(f"{args.cube}: ok, fields {f['fields'].shape}{' (all values checked)' if args.deep else ''}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    import datetime as dt
    import json
    import socket
    from pathlib import Path

    from astrohpc.atomic_write import write_json
    from astrohpc.data.bench import run_benchmark
    from astrohpc.provenance import collect

    record = run_benchmark(Path(args.cube), args.input_steps, args.target_steps, args.ranks, args.passes, args.limit,
                           args.bytes)
    record["provenance"] = collect()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = write_json(Path(args.out) / f"io-{socket.gethostname()}-{stamp}.json", record)
    print(json.dumps({k: record[k] for k in ("windows", "sample_bytes", "ratios")}, indent=2))
    print(out)
    return 0
