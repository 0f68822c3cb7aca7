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

    stats = verbs.add_parser("stats", help="per-channel and per-run statistics into CUBE.stats.h5 (works under mpirun)")
    stats.add_argument("cube", help="the HDF5 datacube (from `astrohpc data convert` or a sweep)")
    stats.add_argument("--weighting", choices=("area", "none"), default="area",
                       help="area: each cell counts by its share of the sphere (default); none: every cell once")
    stats.set_defaults(func=_stats)

    spectra = verbs.add_parser("spectra", help="thermal emission spectrum of every (run, time) into CUBE.spectra.h5 "
                                               "(the spectral head's target; grey two-stream, docs/datacube.md)")
    spectra.add_argument("cube", help="the HDF5 datacube to add the spectra to")
    spectra.add_argument("--bins", type=int, default=16, help="wavenumber bins (default 16)")
    spectra.add_argument("--low", type=float, default=10.0, help="lowest wavenumber, cm-1 (default 10)")
    spectra.add_argument("--high", type=float, default=3000.0, help="highest wavenumber, cm-1 (default 3000)")
    spectra.set_defaults(func=_spectra)

    validate = verbs.add_parser("validate", help="check a cube's structure and (with --deep) every value")
    validate.add_argument("cube", help="the HDF5 datacube to check")
    validate.add_argument("--deep", action="store_true", help="read every step and look for NaN/inf")
    validate.set_defaults(func=_validate)

    bench = verbs.add_parser("bench", help="reader throughput vs sequential bytes, preadv, netCDF4, xarray and "
                                           "the torch DataLoader, on the same windows (values checked)")
    bench.add_argument("cube", help="the HDF5 datacube to read")
    bench.add_argument("--input-steps", type=int, default=1, help="states per sample given to the model (default 1)")
    bench.add_argument("--target-steps", type=int, default=1, help="states per sample to predict (default 1)")
    bench.add_argument("--ranks", type=int, default=2, help="the larger mpirun size (also run at 1)")
    bench.add_argument("--passes", type=int, default=3, help="timed repeats; figures are median, min, max")
    bench.add_argument("--limit", type=int, default=None, help="use only the first N windows")
    bench.add_argument("--bytes", type=float, default=5e8, help="bytes per timed repeat of each method (default 5e8)")
    bench.add_argument("--dataloader-epochs", type=int, default=5, help="epochs per DataLoader setting (default 5)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the shuffled window order")
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

    from astrohpc.data.cube import read_meta
    from astrohpc.data.schema import stats_path
    from astrohpc.data.stats import run_stats

    comm = mpi_comm()
    stats = run_stats(args.cube, comm, args.weighting)
    if comm is None or comm.Get_rank() == 0:
        meta = read_meta(args.cube)
        print(f"{'channel':<22} {'mean':>12} {'std':>12} {'min':>12} {'max':>12} {'d/dt std':>12}")
        for c, name in enumerate(meta.channel_names):
            f, d = stats["fields"], stats["diffs"]
            print(f"{name:<22} {f['mean'][c]:12.5g} {f['std'][c]:12.5g} {f['min'][c]:12.5g} "
                  f"{f['max'][c]:12.5g} {d['std'][c]:12.5g}")
        print(f"{args.weighting}-weighted statistics of {meta.shape[0]} run(s) stored in {stats_path(args.cube)} "
              f"({comm.Get_size() if comm else 1} rank(s))")
    return 0


def _spectra(args: argparse.Namespace) -> int:
    from astrohpc.data.spectra import read_spectra, write_spectra
    from astrohpc.errors import ConfigError

    if args.bins < 1 or not 0 < args.low < args.high:
        raise ConfigError(f"--bins must be >= 1 and 0 < --low < --high (got {args.bins}, {args.low}, {args.high})")
    path = write_spectra(args.cube, args.bins, low_cm=args.low, high_cm=args.high)
    spectra = read_spectra(args.cube)
    runs, steps = spectra.values.shape[:2]
    print(f"{spectra.n_bins} bins, {spectra.edges_cm[0]:g}-{spectra.edges_cm[-1]:g} cm-1, {runs} run(s) x {steps} "
          f"step(s), {spectra.units}, in {path}")
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
                           args.bytes, args.dataloader_epochs, args.seed)
    record["provenance"] = collect()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = write_json(Path(args.out) / f"io-{socket.gethostname()}-{stamp}.json", record)
    print(json.dumps({k: record[k] for k in ("windows", "sample_bytes", "headline", "targets_met")}, indent=2))
    print(out)
    return 0
