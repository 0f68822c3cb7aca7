"""Read-throughput benchmark of the datacube reader against baselines that read the same windows.

Every method delivers the same samples — float32 [input_steps + target_steps, C, lat, lon], one
per window (run, t0) of the cube — over the same epochs, the windows shuffled per epoch as
`DistributedSampler` shuffles them (`shard_indices(shuffle=True)`), or in order. Before any
timing, a digest of every window from every method is compared with the reader's (the JSON's
`same_values`), so a baseline that reads other bytes cannot pass for a faster one:

  reader      LazyCube.read, independent mode (os.preadv of whole chunks by byte offset)
  preadv      the least code reading the same chunks: os.preadv by offset into a new array
  dataset     WindowDataset.__getitem__ (the reader + torch tensors), one process
  netcdf4     the source NetCDF files kept open: one slice per variable, assembled as the cube
  xarray      open_dataset once per file; .isel(time=...).load() per window, assembled
  sequential  the windows' distinct chunks in file order, in large reads (the ceiling; the best
              of a few read sizes), read as many times as the reader moves bytes
  dataloader  torch DataLoader(WindowDataset, batch_size=4, shuffle=True), 0 workers (torch's
              default threads, and 1 thread) and 2 workers (persistent and not), several epochs

One-process comparisons (`in_process`, the methods interleaved within each repeat) run here; the
rank-scaling figures (reader independent and collective, sequential) all run under mpirun, at 1
and `ranks` ranks, as children of this process (`python -m astrohpc.data.bench --worker ...`)
that print JSON: one call per repeat, the sizes alternating, so load from other work on the
machine falls on both alike. Every figure is a median with min and max over repeats; nothing is
best-of-N. The page cache is warm for every method (the digest pass reads everything first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from astrohpc.data import schema
from astrohpc.data.dataset import shard_indices, window_index
from astrohpc.errors import DataError

log = logging.getLogger(__name__)

BLOCK_CHUNKS = (1, 4, 16, 64)  # sequential read sizes tried, in chunks (one chunk = one time step)
DATALOADER_BATCH = 4
TARGETS = {"reader_over_sequential": 0.8, "reader_over_netcdf4": 10.0, "ranks_speedup": 1.7,
           "dataloader_2workers_over_0": 1.0}


# ---- figures: medians with min and max -------------------------------------------------------

def spread(values: list[float]) -> dict:
    """{"median", "min", "max", "n"} of `values`."""
    arr = np.asarray(values, dtype=np.float64)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size)}


def summarize(repeats: list[dict]) -> dict:
    """Per-repeat {"seconds", "samples", "bytes"} -> samples/s and GB/s as median, min, max."""
    out = {"samples_s": spread([r["samples"] / r["seconds"] for r in repeats]),
           "GB_s": spread([r["bytes"] / r["seconds"] / 1e9 for r in repeats]),
           "seconds": [r["seconds"] for r in repeats], "samples": repeats[0]["samples"], "bytes": repeats[0]["bytes"]}
    if out["samples"] == 0:  # sequential reads count bytes, not samples
        del out["samples_s"], out["samples"]
    return out


def median(entry: Optional[dict], figure: str = "samples_s") -> Optional[float]:
    return None if entry is None or figure not in entry else entry[figure]["median"]


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return None if a is None or b is None or b == 0 else a / b


# ---- windows, orders and digests -------------------------------------------------------------

def bench_windows(time_count: np.ndarray, input_steps: int, target_steps: int,
                  limit: Optional[int] = None) -> np.ndarray:
    """The windows every method reads: int64 [N, 2] (run, t0), stride 1, the first `limit` if given."""
    windows = window_index(time_count, input_steps, target_steps)
    return windows[:limit] if limit else windows


def epoch_orders(n: int, epochs: int, shuffled: bool, seed: int = 0, first_epoch: int = 0, rank: int = 0,
                 size: int = 1) -> list[list[int]]:
    """This rank's window indices for each epoch: a DistributedSampler permutation (seed + epoch)
    when `shuffled`, else in order; at size 1 every epoch is a permutation of range(n)."""
    return [shard_indices(n, rank, size, shuffle=shuffled, seed=seed, epoch=first_epoch + e) for e in range(epochs)]


def chunk_digest(values) -> bytes:
    """Digest of one time step's bytes (a C-contiguous float32 [C, lat, lon] array or buffer)."""
    return hashlib.blake2b(values, digest_size=16).digest()


def combine(step_digests: list[bytes]) -> str:
    return hashlib.blake2b(b"".join(step_digests), digest_size=16).hexdigest()


def window_digest(x: np.ndarray) -> str:
    """Digest of a window [steps, C, lat, lon]: identical bytes <=> identical digests."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    return combine([chunk_digest(x[k]) for k in range(x.shape[0])])


def digest_windows(read: Callable[[int], np.ndarray], indices: list[int]) -> tuple[dict[int, str], float]:
    """({window index: digest}, float64 sum of every value, NaN skipped) over `indices`."""
    digests, total = {}, 0.0
    for i in indices:
        x = read(i)
        digests[i] = window_digest(x)
        total += float(np.nansum(x, dtype=np.float64))
    return digests, total


def compare(reference: dict[int, str], digests: dict[int, str], total: Optional[float] = None,
            expected: Optional[int] = None) -> dict:
    """How `digests` agree with the reader's: `expected` windows (default: all) read, each
    byte-identical. Under mpirun, sharding drops the last n % ranks windows, as DistributedSampler
    (drop_last=True) does."""
    expected = len(reference) if expected is None else expected
    same = sum(1 for i, d in digests.items() if reference.get(i) == d)
    out = {"windows_checked": len(digests), "windows_identical": same,
           "identical": len(digests) == expected and same == expected}
    if total is not None:
        out["sum"] = total
    return out


def by_index(source, rows: list[list[int]], steps: int) -> Callable[[int], np.ndarray]:
    """`read(i)` for window i of `rows` [(run, t0)] from anything with `.read(run, t0, steps)`."""
    return lambda i: source.read(rows[i][0], rows[i][1], steps)


def time_windows(read: Callable[[int], Any], orders: list[list[int]], sample_bytes: int) -> dict:
    """Seconds to read every window of `orders` (one list per epoch) with `read(index)`."""
    start = time.perf_counter()
    for order in orders:
        for i in order:
            read(i)
    seconds = time.perf_counter() - start
    samples = sum(len(o) for o in orders)
    return {"seconds": seconds, "samples": samples, "bytes": samples * sample_bytes}


def epochs_for(windows: int, sample_bytes: int, target_bytes: float = 5e8) -> int:
    """Epochs per timed repeat so that one repeat moves about `target_bytes`."""
    return max(1, int(np.ceil(target_bytes / max(1, windows * sample_bytes))))


# ---- byte-offset methods: preadv and sequential ----------------------------------------------

def fields_offsets(cube: Path) -> Optional[np.ndarray]:
    """Byte offset of every chunk of `fields`, int64 [run, time] (-1 unwritten); None when the
    chunks are not one time step each or not raw little-endian float32 (then no byte methods)."""
    import h5py

    from astrohpc.data.cube import chunk_offsets

    with h5py.File(cube, "r", locking=False) as f:
        dset = f[schema.FIELDS]
        if dset.chunks != (1, 1, *dset.shape[2:]):
            return None
        return chunk_offsets(dset)


class PreadvWindows:
    """The least code that reads a window: one os.preadv per chunk into a new float32 array."""

    def __init__(self, cube: Path, offsets: np.ndarray, sample_shape: tuple[int, ...]):
        self.offsets, self.shape = offsets, sample_shape
        self.fd = os.open(cube, os.O_RDONLY)

    def read(self, run: int, t0: int, steps: int) -> np.ndarray:
        out = np.empty(self.shape, dtype=np.float32)
        for k, offset in enumerate(self.offsets[run, t0:t0 + steps].tolist()):
            os.preadv(self.fd, [out[k]], offset)
        return out

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Span:
    """One sequential read: `length` bytes at `offset`, holding the chunks `chunks` [(run, t)]."""

    offset: int
    length: int
    chunks: list[tuple[int, int]]


def sequential_spans(offsets: np.ndarray, windows: np.ndarray, steps: int, chunk_bytes: int,
                     block_chunks: int) -> list[Span]:
    """The distinct chunks the windows touch, in file order, adjacent ones merged into reads of at
    most `block_chunks` chunks."""
    used = sorted({(int(offsets[run, t]), run, t) for run, t0 in windows.tolist() for t in range(t0, t0 + steps)})
    spans: list[Span] = []
    for offset, run, t in used:
        last = spans[-1] if spans else None
        if last is not None and last.offset + last.length == offset and len(last.chunks) < block_chunks:
            last.length += chunk_bytes
            last.chunks.append((run, t))
        else:
            spans.append(Span(offset, chunk_bytes, [(run, t)]))
    return spans


def sequential_pass(fd: int, spans: list[Span], passes: int) -> dict:
    """Read `spans` `passes` times into one reused buffer; seconds and bytes (samples: 0)."""
    buf = bytearray(max((s.length for s in spans), default=0))
    view = memoryview(buf)
    start, nbytes = time.perf_counter(), 0
    for _ in range(passes):
        for span in spans:
            nbytes += os.preadv(fd, [view[:span.length]], span.offset)
    return {"seconds": time.perf_counter() - start, "samples": 0, "bytes": nbytes}


def sequential_chunk_digests(fd: int, spans: list[Span], chunk_bytes: int) -> dict[tuple[int, int], bytes]:
    """{(run, t): digest} of every chunk, read the way `sequential_pass` reads them."""
    out = {}
    buf = bytearray(max((s.length for s in spans), default=0))
    view = memoryview(buf)
    for span in spans:
        os.preadv(fd, [view[:span.length]], span.offset)
        for k, key in enumerate(span.chunks):
            out[key] = chunk_digest(view[k * chunk_bytes:(k + 1) * chunk_bytes])
    return out


def windows_from_chunks(chunks: dict[tuple[int, int], bytes], windows: np.ndarray, steps: int) -> dict[int, str]:
    return {i: combine([chunks[(run, t)] for t in range(t0, t0 + steps)])
            for i, (run, t0) in enumerate(windows.tolist())}


def sequential_repeats(windows: int, steps: int, distinct_chunks: int, epochs: int) -> int:
    """Passes over the distinct chunks that move as many bytes as `epochs` reader epochs."""
    return max(1, int(round(epochs * windows * steps / max(1, distinct_chunks))))


# ---- NetCDF baselines ------------------------------------------------------------------------

class Unsupported(Exception):
    """The NetCDF baselines cannot rebuild this cube's samples from its source files."""


@dataclass
class SourcePlan:
    """How to rebuild a window from the source files: the file of each run, and for each cube
    variable its NetCDF name, its channels (a contiguous slice) and whether latitude is flipped."""

    files: dict[int, str]
    variables: list[tuple[str, slice]]
    flip_lat: dict[int, bool]
    sample_shape: tuple[int, ...]


def source_plan(cube: Path, meta, steps: int) -> SourcePlan:
    """Raises Unsupported (with the reason) for cubes the baselines cannot rebuild: several files
    per run, renamed or unit-converted variables, interpolated levels."""
    import h5py
    import netCDF4

    with h5py.File(cube, "r", locking=False) as f:
        runs = f[f"{schema.SOURCES_GROUP}/run"][()].tolist()
        paths = schema.decode_strings(f[f"{schema.SOURCES_GROUP}/path"][()])
    files: dict[int, str] = {}
    for run, path in zip(runs, paths):
        if run in files:
            raise Unsupported("several source files per run")
        files[run] = str(Path(cube).parent / path)  # a relative path is taken from the cube's folder
    variables = []
    for name in dict.fromkeys(meta.variables):
        idx = [i for i, v in enumerate(meta.variables) if v == name]
        if idx != list(range(idx[0], idx[-1] + 1)):
            raise Unsupported(f"channels of {name} not contiguous")
        if any(meta.level_kinds[i] == "pressure" for i in idx):
            raise Unsupported(f"{name}: pressure levels are interpolated at conversion")
        variables.append((name, slice(idx[0], idx[-1] + 1)))
    flip: dict[int, bool] = {}
    for run, path in files.items():
        if not Path(path).is_file():
            raise Unsupported(f"source file {path} not found")
        with netCDF4.Dataset(path) as ds:
            for name, sl in variables:
                var = ds.variables.get(name)
                if var is None:
                    raise Unsupported(f"{path}: no variable {name!r} (renamed or derived at conversion)")
                if str(getattr(var, "units", "")) != meta.units[sl.start]:
                    raise Unsupported(f"{name}: units converted at conversion")
                if int(np.prod(var.shape[1:-2], dtype=np.int64)) != sl.stop - sl.start:
                    raise Unsupported(f"{name}: {var.shape} does not match {sl.stop - sl.start} channels")
            lat_name = ds.variables[variables[0][0]].dimensions[-2]
            lat = np.asarray(ds.variables[lat_name][:], dtype=np.float64)
        if lat.shape == meta.lat.shape and np.allclose(lat, meta.lat):
            flip[run] = False
        elif lat.shape == meta.lat.shape and np.allclose(lat[::-1], meta.lat):
            flip[run] = True
        else:
            raise Unsupported(f"{path}: latitudes differ from the cube's")
    return SourcePlan(files, variables, flip, (steps, *meta.shape[2:]))


def _assemble(out: np.ndarray, sl: slice, values: np.ndarray, flip: bool) -> None:
    values = values.reshape(out.shape[0], sl.stop - sl.start, *out.shape[2:])
    out[:, sl] = values[..., ::-1, :] if flip else values


class NetCDF4Windows:
    """The source files kept open (netCDF4); a window is one slice per variable, placed into the
    cube's channel order and latitude direction."""

    def __init__(self, plan: SourcePlan):
        import netCDF4

        self.plan = plan
        self.handles = {run: netCDF4.Dataset(path) for run, path in plan.files.items()}
        for h in self.handles.values():
            h.set_auto_mask(False)
        self.vars = {run: [(h.variables[name], sl) for name, sl in plan.variables] for run, h in self.handles.items()}

    def read(self, run: int, t0: int, steps: int) -> np.ndarray:
        out = np.empty(self.plan.sample_shape, dtype=np.float32)
        flip = self.plan.flip_lat[run]
        for var, sl in self.vars[run]:
            _assemble(out, sl, var[t0:t0 + steps], flip)
        return out

    def close(self) -> None:
        for h in self.handles.values():
            h.close()


class XarrayWindows:
    """xarray: open_dataset once per file; per window `.isel(time=slice).load()`, assembled."""

    def __init__(self, plan: SourcePlan):
        import xarray as xr

        self.plan = plan
        names = [name for name, _ in plan.variables]
        self.handles = {run: xr.open_dataset(path, decode_times=False) for run, path in plan.files.items()}
        self.subsets = {run: h[names] for run, h in self.handles.items()}
        self.time_dim = {run: h[names[0]].dims[0] for run, h in self.handles.items()}

    def read(self, run: int, t0: int, steps: int) -> np.ndarray:
        out = np.empty(self.plan.sample_shape, dtype=np.float32)
        sample = self.subsets[run].isel({self.time_dim[run]: slice(t0, t0 + steps)}).load()
        flip = self.plan.flip_lat[run]
        for name, sl in self.plan.variables:
            _assemble(out, sl, sample[name].values, flip)
        return out

    def close(self) -> None:
        for h in self.handles.values():
            h.close()


# ---- the torch paths -------------------------------------------------------------------------

def dataset_sample(item: dict) -> np.ndarray:
    """[steps, C, lat, lon] of a WindowDataset item (input then target)."""
    return np.concatenate([item["input"].numpy(), item["target"].numpy()])


# name: (num_workers, persistent_workers, torch threads of the main process while it runs: None = as set).
# workers0_1thread: with torch's default intra-op threads (one per core) the main process's collate
# waits on a descheduled thread whenever other work holds a core; one thread shows the path without that.
DATALOADER_SETTINGS = {"workers0": (0, False, None), "workers0_1thread": (0, False, 1), "workers2": (2, False, None),
                       "workers2_persistent": (2, True, None)}


def _loader_epoch(loader, index_of: dict[tuple[int, int], int], digests: Optional[dict[int, str]]) -> dict:
    """One epoch: seconds, samples, bytes, seconds to the first batch; digests of the samples if given."""
    import torch

    start, first, first_size, samples, sample_bytes = time.perf_counter(), None, 0, 0, 0
    for batch in loader:
        if first is None:
            first, first_size = time.perf_counter() - start, len(batch["run"])
            sample_bytes = batch["input"][0].nbytes + batch["target"][0].nbytes
        samples += len(batch["run"])
        if digests is not None:
            x = torch.cat([batch["input"], batch["target"]], dim=1).numpy()
            for j, (run, t0) in enumerate(zip(batch["run"].tolist(), batch["t0"].tolist())):
                digests[index_of[(run, t0)]] = window_digest(x[j])
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "samples": samples, "bytes": samples * sample_bytes, "first": first,
            "after_first": (samples - first_size) / (seconds - first) if samples > first_size else None}


def dataloader_runs(cube: Path, input_steps: int, target_steps: int, windows: int, epochs: int,
                    seed: int = 0) -> dict[str, tuple[dict, dict[int, str]]]:
    """DataLoader(WindowDataset, batch_size=4, shuffle=True) in each of DATALOADER_SETTINGS for
    `epochs` epochs, the settings taking turns epoch by epoch (load from other work falls on all
    alike). Per setting: figures over the epochs (worker start-up included, as training pays it;
    seconds to the first batch; samples/s after it) and {window index: digest} of a last, untimed
    epoch."""
    import torch
    from torch.utils.data import DataLoader, Subset

    from astrohpc.data.dataset import WindowDataset

    ds = WindowDataset(cube, input_steps, target_steps)
    index_of = {(int(r), int(t)): i for i, (r, t) in enumerate(ds.windows[:windows].tolist())}
    data = ds if windows == len(ds) else Subset(ds, range(windows))
    loaders = {}
    for name, (workers, persistent, _) in DATALOADER_SETTINGS.items():
        g = torch.Generator()
        g.manual_seed(seed)
        loaders[name] = DataLoader(data, batch_size=DATALOADER_BATCH, shuffle=True, num_workers=workers,
                                   persistent_workers=persistent, generator=g)
    epochs_by = {name: [] for name in loaders}
    default_threads = torch.get_num_threads()
    for _ in range(epochs):
        for name, loader in loaders.items():
            torch.set_num_threads(DATALOADER_SETTINGS[name][2] or default_threads)
            epochs_by[name].append(_loader_epoch(loader, index_of, None))
    torch.set_num_threads(default_threads)
    out = {}
    for name, loader in loaders.items():
        digests: dict[int, str] = {}
        _loader_epoch(loader, index_of, digests)
        runs = epochs_by[name]
        steady = [r["after_first"] for r in runs if r["after_first"] is not None]
        workers, persistent, threads = DATALOADER_SETTINGS[name]
        out[name] = ({**summarize(runs), "epochs": epochs, "first_batch_s": spread([r["first"] for r in runs]),
                      "after_first_batch_samples_s": spread(steady) if steady else None,
                      "first_epoch_samples_s": runs[0]["samples"] / runs[0]["seconds"],
                      "workers": workers, "persistent_workers": persistent, "batch_size": DATALOADER_BATCH,
                      "torch_threads_main": threads or default_threads}, digests)
    del loaders, loader  # persistent workers shut down with their loader
    ds.close()
    return out


class _InMemory:
    """A dataset of ready tensors with a window's shape: no file, no read, only what a DataLoader
    itself costs (collate, and with workers the shared-memory transfer). Picklable for workers."""

    def __init__(self, n: int, shape: tuple[int, ...]):
        self.n, self.shape = n, shape

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        import torch

        return {"input": torch.full(self.shape, float(index)), "run": index}


def dataloader_ceiling(shape: tuple[int, ...], windows: int, epochs: int, seed: int = 0) -> dict:
    """samples/s of DataLoader(batch 4, shuffled) over an in-memory dataset of `windows` samples of
    `shape`, 0 and 2 persistent workers, taking turns: the most any dataset can get through a
    DataLoader on this machine. With workers every batch crosses processes in fresh shared memory."""
    import torch
    from torch.utils.data import DataLoader

    out: dict[str, Any] = {}
    runs: dict[str, list[dict]] = {"workers0": [], "workers2_persistent": []}
    loaders = {}
    for name, workers in (("workers0", 0), ("workers2_persistent", 2)):
        g = torch.Generator()
        g.manual_seed(seed)
        loaders[name] = DataLoader(_InMemory(windows, shape), batch_size=DATALOADER_BATCH, shuffle=True,
                                   num_workers=workers, persistent_workers=workers > 0, generator=g)
    for _ in range(epochs):
        for name, loader in loaders.items():
            start, samples = time.perf_counter(), 0
            for batch in loader:
                samples += len(batch["run"])
            runs[name].append({"seconds": time.perf_counter() - start, "samples": samples, "bytes": 0})
    for name in runs:
        out[name] = {"samples_s": summarize(runs[name])["samples_s"]}
    del loaders
    out["ratio_2workers_over_0"] = ratio(median(out["workers2_persistent"]), median(out["workers0"]))
    out["what"] = "in-memory dataset of the same sample shape: the DataLoader's own ceiling on this machine"
    return out


def shared_memory_probe(shape: tuple[int, ...], repeats: int = 30) -> dict:
    """Milliseconds to allocate and fill one batch tensor of `shape` in shared memory (what a
    DataLoader worker's collate does for every batch) and in private memory (what 0 workers do):
    first-touch page faults make the difference on some VMs."""
    import torch

    out = {}
    for name, share in (("shared_ms", True), ("private_ms", False)):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            x = torch.empty(shape)
            if share:
                x.share_memory_()
            x.fill_(1.0)
            times.append((time.perf_counter() - start) * 1e3)
            del x
        out[name] = spread(times)
    out["shape"] = list(shape)
    return out


# ---- one process: every method ---------------------------------------------------------------

def in_process(cube: Path, meta, windows: np.ndarray, input_steps: int, target_steps: int, repeats: int,
               epochs: int, seed: int) -> dict:
    """Reader and baselines in this process, shuffled and in order, interleaved per repeat (so
    load from other work on the machine falls on every method alike). Returns timings and the
    digest comparison."""
    from astrohpc.data.cube import LazyCube
    from astrohpc.data.dataset import WindowDataset

    steps = input_steps + target_steps
    n = len(windows)
    sample_bytes = steps * meta.chunk_bytes
    rows = windows.tolist()
    reader = LazyCube(cube, "independent", None, cache_chunks=steps)
    ds = WindowDataset(cube, input_steps, target_steps)
    if not np.array_equal(ds.windows[:n], windows):
        raise DataError(f"{cube}: WindowDataset's windows differ from the benchmark's")
    methods: dict[str, Callable[[int], Any]] = {
        "reader": by_index(reader, rows, steps),
        "dataset": lambda i: ds[i],
    }
    arrays: dict[str, Callable[[int], np.ndarray]] = {**methods, "dataset": lambda i: dataset_sample(ds[i])}
    closers: list[Callable[[], None]] = [reader.close, ds.close]
    skipped: dict[str, str] = {}
    offsets = fields_offsets(cube)
    if offsets is not None and all(offsets[r, t0:t0 + steps].min() >= 0 for r, t0 in rows):
        pre = PreadvWindows(cube, offsets, (steps, *meta.shape[2:]))
        methods["preadv"] = arrays["preadv"] = by_index(pre, rows, steps)
        closers.append(pre.close)
    else:
        skipped["preadv"] = skipped["sequential"] = "chunks are not raw float32 time steps, or some windows' are " \
                                                    "unwritten"
    try:
        plan = source_plan(cube, meta, steps)
        for name, cls in (("netcdf4", NetCDF4Windows), ("xarray", XarrayWindows)):
            handle = cls(plan)
            methods[name] = arrays[name] = by_index(handle, rows, steps)
            closers.append(handle.close)
    except Unsupported as exc:
        skipped["netcdf4"] = skipped["xarray"] = str(exc)

    # digests first: they also warm the page cache for every method
    reference, ref_sum = digest_windows(arrays["reader"], list(range(n)))
    same = {"how": "blake2b digest of each window's bytes (sequential: of its chunks') from every method, "
                   "compared window by window with the reader's; sum: float64 sum of every value (NaN skipped)",
            "reference": "reader (LazyCube.read)", "windows": n, "sum": ref_sum,
            "methods": {name: compare(reference, *digest_windows(read, list(range(n))))
                        for name, read in arrays.items() if name != "reader"}}
    seq: dict[str, Any] = {}
    if "sequential" not in skipped:
        fd = os.open(cube, os.O_RDONLY)
        closers.append(lambda: os.close(fd))
        spans = {b: sequential_spans(offsets, windows, steps, meta.chunk_bytes, b) for b in BLOCK_CHUNKS}
        chunks = sequential_chunk_digests(fd, spans[BLOCK_CHUNKS[-1]], meta.chunk_bytes)
        same["methods"]["sequential"] = compare(reference, windows_from_chunks(chunks, windows, steps))
        passes = sequential_repeats(n, steps, len(chunks), epochs)
        seq = {"distinct_chunks": len(chunks), "passes_per_repeat": passes, "by_block": {}}

    timings: dict[str, dict[str, list[dict]]] = {"shuffled": {m: [] for m in methods},
                                                 "in_order": {m: [] for m in methods}}
    seq_timings: dict[int, list[dict]] = {b: [] for b in BLOCK_CHUNKS} if seq else {}
    try:
        for rep in range(repeats):
            for order_name, shuffled in (("shuffled", True), ("in_order", False)):
                orders = epoch_orders(n, epochs, shuffled, seed, first_epoch=rep * epochs)
                for name, read in methods.items():
                    timings[order_name][name].append(time_windows(read, orders, sample_bytes))
            for b in seq_timings:
                seq_timings[b].append(sequential_pass(fd, spans[b], seq["passes_per_repeat"]))
    finally:
        for close in closers:
            close()
    out: dict[str, Any] = {order: {m: summarize(r) for m, r in by_method.items()}
                           for order, by_method in timings.items()}
    if seq:
        seq["by_block"] = {f"{b * meta.chunk_bytes}_bytes": summarize(r) for b, r in seq_timings.items()}
        best = max(seq["by_block"], key=lambda k: seq["by_block"][k]["GB_s"]["median"])
        seq.update(ceiling=seq["by_block"][best], ceiling_read_bytes=int(best.split("_")[0]))
        out["sequential"] = seq
    out["skipped"] = skipped
    out["same_values"] = same
    out["reference_digests"] = reference
    return out


# ---- under mpirun ----------------------------------------------------------------------------

def _mpi_run(cube: Path, ranks: int, args: dict) -> dict:
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise DataError("mpirun not found: install Open MPI (tools/setup.sh) for the multi-rank benchmark")
    env = {**os.environ, "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    cmd = [mpirun, "-n", str(ranks), sys.executable, "-m", "astrohpc.data.bench", "--worker", str(cube)]
    for key, value in args.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise DataError(f"benchmark worker failed ({' '.join(cmd)}); as root, export OMPI_ALLOW_RUN_AS_ROOT=1 "
                        f"OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _gather_timing(comm, local: dict) -> Optional[dict]:
    """Rank 0: the repeat's total (seconds of the slowest rank) and each rank's own figures."""
    results = comm.gather(local, root=0)
    if comm.Get_rank() != 0:
        return None
    return {"seconds": max(r["seconds"] for r in results), "samples": sum(r["samples"] for r in results),
            "bytes": sum(r["bytes"] for r in results), "per_rank": results}


def _worker(args: argparse.Namespace) -> None:
    """Inside mpirun: each repeat times sequential, then the reader in each mode and order, one
    after the other (so load from other work falls on all alike); rank 0 prints JSON with every
    repeat's timings and the digests of the windows (chunks, for sequential) each method read."""
    from mpi4py import MPI

    from astrohpc.data.cube import LazyCube, read_meta

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    cube = Path(args.worker)
    meta = read_meta(cube)
    steps = args.input_steps + args.target_steps
    windows = bench_windows(meta.time_count, args.input_steps, args.target_steps, args.limit)
    n, sample_bytes = len(windows), steps * meta.chunk_bytes
    rows = windows.tolist()
    modes = args.modes.split(",")
    record: dict[str, Any] = {"ranks": size}
    fd, mine, passes = None, [], 0
    if "sequential" in modes:
        spans = sequential_spans(fields_offsets(cube), windows, steps, meta.chunk_bytes,
                                 max(1, args.block_bytes // meta.chunk_bytes))
        passes = sequential_repeats(n, steps, sum(len(s.chunks) for s in spans), args.epochs)
        mine = spans[len(spans) * rank // size:len(spans) * (rank + 1) // size]
        fd = os.open(cube, os.O_RDONLY)
        chunks = comm.gather(sequential_chunk_digests(fd, mine, meta.chunk_bytes), root=0)
        if rank == 0:
            merged = {k: v for part in chunks for k, v in part.items()}
            record["sequential"] = {"all": [], "passes_per_repeat": passes, "block_bytes": args.block_bytes,
                                    "digests": windows_from_chunks(merged, windows, steps)}
    for rep in range(args.first_repeat, args.first_repeat + args.repeats):
        if fd is not None:
            comm.Barrier()
            timing = _gather_timing(comm, sequential_pass(fd, mine, passes))
            if rank == 0:
                record["sequential"]["all"].append(timing)
        for mode in (m for m in modes if m != "sequential"):
            reader = LazyCube(cube, mode, comm, cache_chunks=steps)
            read = by_index(reader, rows, steps)
            digests = digest_windows(read, shard_indices(n, rank, size))[0]  # also opens the file, untimed
            parts = comm.gather(digests, root=0)
            if rank == 0 and mode not in record:
                record[mode] = {"shuffled": [], "in_order": [], "digests": {i: d for p in parts for i, d in p.items()}}
            for order_name, shuffled in (("shuffled", True), ("in_order", False)):
                orders = epoch_orders(n, args.epochs, shuffled, args.seed, rep * args.epochs, rank, size)
                comm.Barrier()
                timing = _gather_timing(comm, time_windows(read, orders, sample_bytes))
                if rank == 0:
                    record[mode][order_name].append(timing)
            reader.close()
    if fd is not None:
        os.close(fd)
    if rank == 0:
        print(json.dumps(record))


def _mpi_rounds(cube: Path, sizes: list[int], rounds: int, args: dict) -> dict[int, dict]:
    """`rounds` rounds of one mpirun per size, one repeat each, sizes alternating (so load from
    other work falls on every size alike); the records of each size merged: timings appended,
    each call's digests kept."""
    merged: dict[int, dict] = {size: {"ranks": size} for size in sizes}
    for rnd in range(rounds):
        for size in sizes:
            log.info("bench: mpirun -n %d, round %d of %d (%s)", size, rnd + 1, rounds, args["modes"])
            raw = _mpi_run(cube, size, {**args, "repeats": 1, "first_repeat": rnd})
            for mode, entry in raw.items():
                if mode == "ranks":
                    continue
                target = merged[size].setdefault(mode, {"digests": []})
                target["digests"].append(entry.pop("digests"))
                for key, value in entry.items():
                    if isinstance(value, list):
                        target.setdefault(key, []).extend(value)
                    else:
                        target[key] = value
    return merged


def _summarize_mpi(record: dict, reference: dict[int, str]) -> dict:
    """Timings of one mpirun size -> medians (total and per rank) and the digest comparison of
    every call."""
    out: dict[str, Any] = {}
    size = record["ranks"]
    for mode, entry in record.items():
        if mode == "ranks":
            continue
        sharded = len(reference) if mode == "sequential" else size * (len(reference) // size)
        checks = [compare(reference, {int(i): d for i, d in digests.items()}, expected=sharded)
                  for digests in entry.pop("digests")]
        out[mode] = {"same_values": {**checks[0], "identical": all(c["identical"] for c in checks),
                                     "calls_checked": len(checks)}}
        for key, value in entry.items():
            if not isinstance(value, list):
                out[mode][key] = value
                continue
            figures = summarize(value)
            ranks = len(value[0]["per_rank"])
            figures["per_rank"] = [summarize([r["per_rank"][k] for r in value]) for k in range(ranks)]
            out[mode][key] = figures
    return out


# ---- everything ------------------------------------------------------------------------------

def run_benchmark(cube: Path, input_steps: int = 1, target_steps: int = 1, ranks: int = 2, passes: int = 3,
                  limit: Optional[int] = None, target_bytes: float = 5e8, dataloader_epochs: int = 5,
                  seed: int = 0) -> dict:
    """All measurements on one cube; returns the record the caller writes to runs/bench/.

    passes: timed repeats of every measurement (figures are median, min, max over them).
    target_bytes: bytes each timed repeat moves (the windows are read over several epochs).
    """
    from astrohpc.data.cube import read_meta

    cube = Path(cube)
    meta = read_meta(cube)
    steps = input_steps + target_steps
    windows = bench_windows(meta.time_count, input_steps, target_steps, limit)
    if len(windows) == 0:
        raise DataError(f"{cube}: no window of {input_steps}+{target_steps} steps fits in any run")
    n, sample_bytes = len(windows), steps * meta.chunk_bytes
    epochs = epochs_for(n, sample_bytes, target_bytes)
    record: dict[str, Any] = {
        "cube": str(cube), "cube_bytes": cube.stat().st_size, "shape": list(meta.shape), "runs": int(meta.shape[0]),
        "windows": n, "input_steps": input_steps, "target_steps": target_steps, "sample_bytes": sample_bytes,
        "repeats": passes, "epochs_per_repeat": epochs, "seed": seed,
        "figures": "median, min and max over the repeats (not best-of-N); page cache warm",
        "orders": "shuffled: a DistributedSampler permutation per epoch (seed + epoch), the same for every "
                  "method; in_order: run-major, stride 1 (each window shares a step with the previous one)",
    }
    log.info("bench: %d windows of %d B, %d epochs x %d repeats per method, in process", n, sample_bytes, epochs,
             passes)
    local = in_process(cube, meta, windows, input_steps, target_steps, passes, epochs, seed)
    reference = local.pop("reference_digests")
    record["same_values"] = local.pop("same_values")
    record["skipped"] = local.pop("skipped")
    record["in_process"] = local

    mpi_args = {"input_steps": input_steps, "target_steps": target_steps, "epochs": epochs,
                "seed": seed, "modes": "sequential,independent,collective"}
    if "sequential" in local:
        mpi_args["block_bytes"] = local["sequential"]["ceiling_read_bytes"]
    else:
        mpi_args["modes"] = "independent,collective"
    if limit:
        mpi_args["limit"] = limit
    record["mpirun"] = {"launch": f"mpirun -n N {sys.executable} -m astrohpc.data.bench --worker CUBE (Open MPI's "
                                  f"default binding), one call per repeat, N = 1 and {ranks} alternating"}
    for size, raw in _mpi_rounds(cube, sorted({1, ranks}), passes, mpi_args).items():
        result = _summarize_mpi(raw, reference)
        record["mpirun"][str(size)] = result
        for mode, entry in result.items():
            record["same_values"]["methods"][f"mpirun_{size}_{mode}"] = entry["same_values"]

    log.info("bench: DataLoader, 0 and 2 workers, persistent or not, %d epochs each, taking turns", dataloader_epochs)
    record["dataloader"] = {}
    for name, (figures, seen) in dataloader_runs(cube, input_steps, target_steps, n, dataloader_epochs, seed).items():
        record["dataloader"][name] = figures
        record["same_values"]["methods"][f"dataloader_{name}"] = compare(reference, seen)
    record["dataloader"]["batch_tensor_allocation"] = shared_memory_probe((DATALOADER_BATCH, input_steps,
                                                                           *meta.shape[2:]))
    record["dataloader"]["ceiling"] = dataloader_ceiling((input_steps + target_steps, *meta.shape[2:]), n,
                                                         dataloader_epochs, seed)
    record["same_values"]["all_identical"] = all(m["identical"] for m in record["same_values"]["methods"].values())
    _add_ratios(record, ranks)
    return record


def _add_ratios(record: dict, ranks: int) -> None:
    """Ratios of medians, the targets, whether each is met, the headline figures and the old
    `reader` summary ({mode_ranks: samples_s, GB_s}; mpirun, shuffled)."""
    local, mpi, loaders = record["in_process"], record["mpirun"], record["dataloader"]
    same = record["same_values"]["methods"]

    def comparable(name: str) -> bool:
        return name in same and same[name]["identical"]

    shuffled = local["shuffled"]
    reader = shuffled["reader"]
    ceiling = local.get("sequential", {}).get("ceiling")
    one, many = mpi.get("1", {}), mpi.get(str(ranks), {})

    def mpi_median(entry: dict, mode: str, order: str = "shuffled", figure: str = "samples_s"):
        return median(entry.get(mode, {}).get(order), figure)

    ratios = {
        "reader_GBs_over_sequential": ratio(median(reader, "GB_s"), median(ceiling, "GB_s"))
        if comparable("sequential") else None,
        "reader_over_preadv": ratio(median(reader), median(shuffled.get("preadv"))),
        "reader_over_netcdf4": ratio(median(reader), median(shuffled.get("netcdf4")))
        if comparable("netcdf4") else None,
        "reader_over_xarray": ratio(median(reader), median(shuffled.get("xarray"))) if comparable("xarray") else None,
        "dataset_over_reader": ratio(median(shuffled["dataset"]), median(reader)),
        "reader_shuffled_over_in_order": ratio(median(reader), median(local["in_order"]["reader"])),
        f"independent_{ranks}rank_over_1rank": ratio(mpi_median(many, "independent"), mpi_median(one, "independent")),
        f"collective_{ranks}rank_over_1rank": ratio(mpi_median(many, "collective"), mpi_median(one, "collective")),
        f"sequential_{ranks}rank_over_1rank (the machine's ceiling)":
            ratio(median(many.get("sequential", {}).get("all"), "GB_s"),
                  median(one.get("sequential", {}).get("all"), "GB_s")),
        f"independent_{ranks}rank_GBs_over_sequential_{ranks}rank":
            ratio(mpi_median(many, "independent", figure="GB_s"),
                  median(many.get("sequential", {}).get("all"), "GB_s")),
        "dataloader_2workers_over_0": ratio(median(loaders["workers2"]), median(loaders["workers0"])),
        "dataloader_2workers_persistent_over_0": ratio(median(loaders["workers2_persistent"]),
                                                       median(loaders["workers0"])),
        "dataloader_2workers_over_0_1thread": ratio(median(loaders["workers2"]), median(loaders["workers0_1thread"])),
        "dataloader_2workers_persistent_over_0_1thread": ratio(median(loaders["workers2_persistent"]),
                                                               median(loaders["workers0_1thread"])),
    }
    record["ratios"] = {k: v for k, v in ratios.items() if v is not None}
    record["ratios_not_measured"] = sorted(k for k, v in ratios.items() if v is None)
    record["targets"] = dict(TARGETS)
    checks = {
        "reader_over_sequential": ratios["reader_GBs_over_sequential"],
        "reader_over_netcdf4": ratios["reader_over_netcdf4"],
        "ranks_speedup": ratios[f"independent_{ranks}rank_over_1rank"],
        # the stricter reading: both 2-worker settings against the better of the 0-worker ones
        "dataloader_2workers_over_0": ratio(min(median(loaders["workers2"]), median(loaders["workers2_persistent"])),
                                            max(median(loaders["workers0"]), median(loaders["workers0_1thread"]))),
    }
    record["targets_met"] = {k: (None if v is None else bool(v >= TARGETS[k])) for k, v in checks.items()}
    sizes = {size: entry for size, entry in mpi.items() if isinstance(entry, dict)}
    record["reader"] = {f"{mode}_{size}": {"samples_s": mpi_median(entry, mode),
                                           "GB_s": mpi_median(entry, mode, figure="GB_s")}
                        for size, entry in sizes.items() for mode in ("independent", "collective") if mode in entry}
    headline = {
        "reader samples/s (1 process, shuffled, median)": median(reader),
        "reader GB/s (1 process, shuffled, median)": median(reader, "GB_s"),
        "reader samples/s (1 process, in order, median)": median(local["in_order"]["reader"]),
        "sequential GB/s (same chunks, file order, median)": median(ceiling, "GB_s"),
        "netCDF4 samples/s (files open, shuffled, median)": median(shuffled.get("netcdf4")),
        "xarray samples/s (shuffled, median)": median(shuffled.get("xarray")),
        "reader / sequential (target >= 0.8)": ratios["reader_GBs_over_sequential"],
        "reader / netCDF4 (target >= 10)": ratios["reader_over_netcdf4"],
        f"reader {ranks} ranks / 1 rank, mpirun (target >= 1.7)": ratios[f"independent_{ranks}rank_over_1rank"],
        f"sequential {ranks} ranks / 1 rank, mpirun (the machine's ceiling)":
            ratios[f"sequential_{ranks}rank_over_1rank (the machine's ceiling)"],
        "DataLoader 0 workers samples/s": median(loaders["workers0"]),
        "DataLoader 0 workers, 1 torch thread, samples/s": median(loaders["workers0_1thread"]),
        "DataLoader 2 workers samples/s": median(loaders["workers2"]),
        "DataLoader 2 persistent workers samples/s": median(loaders["workers2_persistent"]),
        "DataLoader ceiling (in-memory dataset) 2 workers / 0":
            loaders.get("ceiling", {}).get("ratio_2workers_over_0"),
        "every method read identical values": record["same_values"]["all_identical"],
    }
    record["headline"] = {k: v for k, v in headline.items() if v is not None}


def _main() -> None:
    parser = argparse.ArgumentParser(description="benchmark worker (run by run_benchmark under mpirun)")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--modes", default="sequential,independent,collective")
    parser.add_argument("--input-steps", type=int, default=1)
    parser.add_argument("--target-steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--first-repeat", type=int, default=0, help="repeat number of the first (sets the orders)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--block-bytes", type=int, default=16 << 20)
    _worker(parser.parse_args())


if __name__ == "__main__":
    _main()
