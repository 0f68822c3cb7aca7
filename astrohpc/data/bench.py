"""Read-throughput benchmark of the datacube reader against three baselines, on the same windows.

(a) the cube file's bytes read sequentially with the page cache warm (the ceiling);
(b) an xarray `open_dataset(...).isel(time=...)` loop over the source NetCDF files;
(c) a lean netCDF4 reader with the source files kept open.
The reader runs at 1 and `ranks` MPI ranks, independent and collective; multi-rank runs are
`mpirun` children of this process (`python -m astrohpc.data.bench --worker ...`) that print JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.data import schema
from astrohpc.data.dataset import shard_indices, window_index
from astrohpc.errors import DataError


def sequential_bytes(path: Path, block: int = 16 << 20) -> dict:
    """(a) GB/s of reading the whole file in `block`-byte reads, after one warming pass."""
    buf = bytearray(block)
    for _warm_then_timed in range(2):
        start, total = time.perf_counter(), 0
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                total += n
        elapsed = time.perf_counter() - start
    return {"bytes": total, "seconds": elapsed, "GB_s": total / elapsed / 1e9}


def sequential_share(path: Path, rank: int, size: int, repeats: int, block: int = 16 << 20) -> dict:
    """(a) at several ranks: this rank reads its 1/size of the file's bytes `repeats` times (cache warm)."""
    total_size = path.stat().st_size
    lo, hi = total_size * rank // size, total_size * (rank + 1) // size
    buf = bytearray(block)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.preadv(fd, [buf], lo)  # warm the descriptor; the page cache is warmed by the caller
        start, nbytes = time.perf_counter(), 0
        for _ in range(repeats):
            offset = lo
            while offset < hi:
                view = memoryview(buf)[: min(block, hi - offset)]
                n = os.preadv(fd, [view], offset)
                offset += n
                nbytes += n
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    return {"seconds": elapsed, "samples": 0, "bytes": nbytes}


def _windows(cube: Path, input_steps: int, target_steps: int, limit: Optional[int]) -> np.ndarray:
    from astrohpc.data.cube import read_meta

    windows = window_index(read_meta(cube).time_count, input_steps, target_steps)
    return windows[:limit] if limit else windows


def reader_pass(cube: Path, windows: np.ndarray, steps: int, mode: str, comm: Any = None, epochs: int = 1) -> dict:
    """Read this rank's shard of `windows` `epochs` times with LazyCube; seconds, samples, bytes."""
    from astrohpc.data.cube import LazyCube

    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    mine = shard_indices(len(windows), rank, size)
    reader = LazyCube(cube, mode, comm, cache_chunks=steps)
    reader.fields()  # open outside the timed loop
    if comm is not None:
        comm.Barrier()
    start, nbytes = time.perf_counter(), 0
    for _ in range(epochs):
        for i in mine:
            nbytes += reader.read(int(windows[i, 0]), int(windows[i, 1]), steps).nbytes
    elapsed = time.perf_counter() - start
    reader.close()
    return {"seconds": elapsed, "samples": len(mine) * epochs, "bytes": nbytes}


def epochs_for(windows: int, sample_bytes: int, target_bytes: float = 2e9) -> int:
    """Passes over the windows so that one timed reader run moves about `target_bytes`."""
    return max(1, int(np.ceil(target_bytes / max(1, windows * sample_bytes))))


def dataset_pass(cube: Path, input_steps: int, target_steps: int, limit: Optional[int]) -> dict:
    """The torch WindowDataset path (reader + tensors + dict), one rank, windows in order."""
    from astrohpc.data.dataset import WindowDataset

    ds = WindowDataset(cube, input_steps, target_steps)
    n = min(len(ds), limit) if limit else len(ds)
    ds[0]  # open outside the timed loop
    start, nbytes = time.perf_counter(), 0
    for i in range(n):
        sample = ds[i]
        nbytes += (sample["input"].numel() + sample["target"].numel()) * 4
    elapsed = time.perf_counter() - start
    ds.close()
    return {"seconds": elapsed, "samples": n, "bytes": nbytes}


def _source_files(cube: Path) -> dict[int, list[str]]:
    import h5py

    with h5py.File(cube, "r") as f:
        runs = f[f"{schema.SOURCES_GROUP}/run"][()]
        paths = schema.decode_strings(f[f"{schema.SOURCES_GROUP}/path"][()])
        names = schema.decode_strings(f[f"{schema.CHANNEL_GROUP}/source_name"][()])
    files: dict[int, list[str]] = {}
    for run, path in zip(runs.tolist(), paths):
        files.setdefault(run, []).append(path)
    if any(len(v) > 1 for v in files.values()):
        raise DataError(f"{cube}: baselines (b) and (c) support one source file per run")
    return {"files": files, "variables": list(dict.fromkeys(names))}


def netcdf4_pass(cube: Path, windows: np.ndarray, steps: int) -> dict:
    """(c) lean netCDF4 reader: files opened once, each window a slice of each variable."""
    import netCDF4

    src = _source_files(cube)
    handles = {path: netCDF4.Dataset(path) for paths in src["files"].values() for path in paths}
    for h in handles.values():
        h.set_auto_mask(False)
    start, nbytes = time.perf_counter(), 0
    for run, t0 in windows.tolist():
        ds = handles[src["files"][run][0]]
        parts = [ds.variables[v][t0:t0 + steps] for v in src["variables"]]
        nbytes += sum(p.nbytes for p in parts)
    elapsed = time.perf_counter() - start
    for h in handles.values():
        h.close()
    return {"seconds": elapsed, "samples": len(windows), "bytes": nbytes}


def xarray_pass(cube: Path, windows: np.ndarray, steps: int) -> dict:
    """(b) xarray: open_dataset once per file, `.isel(time=slice)` then load per window."""
    import xarray as xr

    src = _source_files(cube)
    handles = {path: xr.open_dataset(path, decode_times=False) for paths in src["files"].values() for path in paths}
    start, nbytes = time.perf_counter(), 0
    for run, t0 in windows.tolist():
        ds = handles[src["files"][run][0]][src["variables"]]
        sample = ds.isel(time=slice(t0, t0 + steps)).load()
        nbytes += sum(v.nbytes for v in sample.data_vars.values())
    elapsed = time.perf_counter() - start
    for h in handles.values():
        h.close()
    return {"seconds": elapsed, "samples": len(windows), "bytes": nbytes}


def _rate(result: dict) -> dict:
    return {**result, "samples_s": result["samples"] / result["seconds"],
            "GB_s": result["bytes"] / result["seconds"] / 1e9}


def _mpi_reader(cube: Path, ranks: int, mode: str, args: argparse.Namespace) -> dict:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise DataError("mpirun not found: install Open MPI (tools/setup.sh) for the multi-rank benchmark")
    env = {**os.environ, "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    cmd = [mpirun, "-n", str(ranks), sys.executable, "-m", "astrohpc.data.bench", "--worker", str(cube),
           "--mode", mode, "--input-steps", str(args.input_steps), "--target-steps", str(args.target_steps),
           "--passes", str(args.passes), "--epochs", str(args.epochs)]
    cmd += ["--limit", str(args.limit)] if args.limit else []
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise DataError(f"benchmark worker failed ({' '.join(cmd)}); as root, export OMPI_ALLOW_RUN_AS_ROOT=1 "
                        f"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _worker(args: argparse.Namespace) -> None:
    """Inside mpirun: every rank reads its shard; rank 0 prints the best pass (slowest rank)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    cube = Path(args.worker)
    steps = args.input_steps + args.target_steps
    windows = _windows(cube, args.input_steps, args.target_steps, args.limit)
    from astrohpc.data.cube import read_meta

    chunk_bytes = read_meta(cube).chunk_bytes
    best = None
    for _ in range(args.passes):
        if args.mode == "sequential":
            sequential_bytes(cube)  # warm the page cache
            comm.Barrier()
            # the same number of bytes as the reader's timed run
            repeats = max(1, int(args.epochs * len(windows) * steps * chunk_bytes // max(1, cube.stat().st_size)))
            local = sequential_share(cube, comm.Get_rank(), comm.Get_size(), repeats)
        else:
            local = reader_pass(cube, windows, steps, args.mode, comm, args.epochs)
        results = comm.gather(local, root=0)
        if comm.Get_rank() == 0:
            total = {"seconds": max(r["seconds"] for r in results), "samples": sum(r["samples"] for r in results),
                     "bytes": sum(r["bytes"] for r in results)}
            best = total if best is None or total["seconds"] < best["seconds"] else best
    if comm.Get_rank() == 0:
        print(json.dumps({**_rate(best), "ranks": comm.Get_size(), "mode": args.mode}))


def run_benchmark(cube: Path, input_steps: int = 1, target_steps: int = 1, ranks: int = 2, passes: int = 3,
                  limit: Optional[int] = None, target_bytes: float = 2e9) -> dict:
    """All measurements on one cube; returns the record written to runs/bench/ by the caller.

    target_bytes: bytes each timed reader run moves (the windows are read several times over).
    """
    from astrohpc.data.cube import read_meta

    cube = Path(cube)
    meta = read_meta(cube)
    steps = input_steps + target_steps
    windows = _windows(cube, input_steps, target_steps, limit)
    epochs = epochs_for(len(windows), steps * meta.chunk_bytes, target_bytes)
    args = argparse.Namespace(input_steps=input_steps, target_steps=target_steps, passes=passes, limit=limit,
                              epochs=epochs)
    best = lambda fn: min((fn() for _ in range(passes)), key=lambda r: r["seconds"])  # noqa: E731
    record: dict[str, Any] = {
        "cube": str(cube), "cube_bytes": cube.stat().st_size, "shape": list(meta.shape),
        "windows": len(windows), "input_steps": input_steps, "target_steps": target_steps,
        "sample_bytes": steps * meta.chunk_bytes, "passes": passes, "reader_epochs_per_pass": epochs,
        "sequential_bytes": best(lambda: sequential_bytes(cube)),
        "reader": {"independent_1": _rate(best(lambda: reader_pass(cube, windows, steps, "independent",
                                                                   epochs=epochs)))},
    }
    record["sequential_bytes_ranks"] = {f"{n}": _mpi_reader(cube, n, "sequential", args) for n in sorted({1, ranks})}
    for mode in ("independent", "collective"):
        for n in sorted({1, ranks}):
            if mode == "independent" and n == 1:
                continue
            record["reader"][f"{mode}_{n}"] = _mpi_reader(cube, n, mode, args)
    record["dataset_independent_1"] = _rate(best(lambda: dataset_pass(cube, input_steps, target_steps, limit)))
    record["netcdf4_open_files"] = _rate(best(lambda: netcdf4_pass(cube, windows, steps)))
    record["xarray_isel"] = _rate(best(lambda: xarray_pass(cube, windows, steps)))
    one = record["reader"]["independent_1"]
    two = record["reader"].get(f"independent_{ranks}", one)
    record["ratios"] = {
        "reader_1rank_GBs_over_sequential": one["GB_s"] / record["sequential_bytes"]["GB_s"],
        "reader_1rank_over_netcdf4": one["samples_s"] / record["netcdf4_open_files"]["samples_s"],
        "reader_1rank_over_xarray": one["samples_s"] / record["xarray_isel"]["samples_s"],
        f"independent_{ranks}rank_over_1rank": two["samples_s"] / one["samples_s"],
        f"sequential_bytes_{ranks}rank_over_1rank (the machine's ceiling)":
            record["sequential_bytes_ranks"][f"{ranks}"]["GB_s"] / record["sequential_bytes_ranks"]["1"]["GB_s"],
        f"independent_{ranks}rank_GBs_over_sequential_{ranks}rank": two["GB_s"]
            / record["sequential_bytes_ranks"][f"{ranks}"]["GB_s"],
        f"collective_{ranks}rank_over_1rank": record["reader"].get(f"collective_{ranks}", one)["samples_s"]
        / record["reader"]["collective_1"]["samples_s"],
    }
    record["targets"] = {"reader_over_sequential": 0.8, "reader_over_netcdf4": 10.0, "ranks_speedup": 1.7}
    ratios = record["ratios"]
    record["headline"] = {
        "reader samples/s (1 rank, independent)": one["samples_s"],
        "reader GB/s (1 rank, independent)": one["GB_s"],
        "sequential bytes GB/s (warm cache)": record["sequential_bytes"]["GB_s"],
        "netCDF4 samples/s (files open)": record["netcdf4_open_files"]["samples_s"],
        "xarray isel samples/s": record["xarray_isel"]["samples_s"],
        "reader / sequential bytes (target >= 0.8)": ratios["reader_1rank_GBs_over_sequential"],
        "reader / netCDF4 (target >= 10)": ratios["reader_1rank_over_netcdf4"],
        f"reader {ranks} ranks / 1 rank (target >= 1.7)": ratios[f"independent_{ranks}rank_over_1rank"],
        f"sequential bytes {ranks} ranks / 1 rank (ceiling)":
            ratios[f"sequential_bytes_{ranks}rank_over_1rank (the machine's ceiling)"],
    }
    return record


def _main() -> None:
    parser = argparse.ArgumentParser(description="benchmark worker (run by run_benchmark under mpirun)")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--mode", default="independent")
    parser.add_argument("--input-steps", type=int, default=1)
    parser.add_argument("--target-steps", type=int, default=1)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=1)
    _worker(parser.parse_args())


if __name__ == "__main__":
    _main()
