"""Per-channel statistics of a cube (and of its time differences), merged across MPI ranks.

Moments are accumulated in float64 per time step and merged with Chan et al.'s parallel
update (pairwise Welford), so the result equals a serial float64 computation to ~1e-15
relative. NaN (pressure levels outside the column, steps past a run's end) are skipped.
`std` is the population standard deviation (ddof = 0). Area weighting is not applied.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.data import schema
from astrohpc.errors import DataError


@dataclass
class Moments:
    """Running count, mean, sum of squared deviations (m2), min and max per channel: [C] each."""

    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> Moments:
        return cls(np.zeros(channels), np.zeros(channels), np.zeros(channels),
                   np.full(channels, np.inf), np.full(channels, -np.inf))

    @classmethod
    def of(cls, x: np.ndarray) -> Moments:
        """Moments of x: [C, ...] over all but the first axis, in float64, NaN skipped."""
        x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
        valid = np.isfinite(x)
        count = valid.sum(axis=1).astype(np.float64)
        xz = np.where(valid, x, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, xz.sum(axis=1) / count, 0.0)
        m2 = (np.where(valid, x - mean[:, None], 0.0) ** 2).sum(axis=1)
        lo = np.where(valid, x, np.inf).min(axis=1)
        hi = np.where(valid, x, -np.inf).max(axis=1)
        return cls(count, mean, m2, lo, hi)

    def merge(self, other: Moments) -> Moments:
        """Chan et al. (1979) pairwise combination of two sets of moments."""
        n = self.count + other.count
        delta = other.mean - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(n > 0, other.count / n, 0.0)
            mean = self.mean + delta * w
            m2 = self.m2 + other.m2 + np.where(n > 0, delta * delta * self.count * w, 0.0)
        return Moments(n, mean, m2, np.minimum(self.min, other.min), np.maximum(self.max, other.max))

    def summary(self) -> dict[str, np.ndarray]:
        """{"count","mean","std","min","max"}: [C] float64; NaN where a channel had no valid value."""
        empty = self.count == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(self.m2 / self.count)
        nan = lambda a: np.where(empty, np.nan, a)  # noqa: E731
        return {"count": self.count.copy(), "mean": nan(self.mean), "std": nan(std),
                "min": nan(self.min), "max": nan(self.max)}


def step_units(time_count: np.ndarray) -> list[tuple[int, int]]:
    """Every valid (run, time) step, run-major: the units of work split across ranks."""
    return [(run, t) for run, n in enumerate(np.asarray(time_count).tolist()) for t in range(int(n))]


def rank_block(n: int, rank: int, size: int) -> range:
    """Contiguous block of `n` items for `rank` of `size` (sizes differ by at most one)."""
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def local_moments(path: Path, rank: int = 0, size: int = 1) -> tuple[Moments, Moments]:
    """Moments of the fields and of time differences over this rank's block of steps.

    A step t contributes x[t] and, when t+1 is in the same run, x[t+1] - x[t].
    """
    from astrohpc.data.cube import LazyCube, read_meta

    meta = read_meta(path)
    channels = meta.shape[2]
    units = step_units(meta.time_count)
    fields, diffs = Moments.empty(channels), Moments.empty(channels)
    cube = LazyCube(path, cache_chunks=2)
    try:
        cached: Optional[tuple[tuple[int, int], np.ndarray]] = None
        for i in rank_block(len(units), rank, size):
            run, t = units[i]
            x = cached[1] if cached and cached[0] == (run, t) else cube.read(run, t, 1)[0]
            fields = fields.merge(Moments.of(x))
            if t + 1 < meta.time_count[run]:
                nxt = cube.read(run, t + 1, 1)[0]
                diffs = diffs.merge(Moments.of(nxt.astype(np.float64) - x.astype(np.float64)))
                cached = ((run, t + 1), nxt)
    finally:
        cube.close()
    return fields, diffs


def compute_stats(path: str | Path, comm: Any = None) -> dict[str, dict[str, np.ndarray]]:
    """Statistics of the whole cube; under MPI every rank of `comm` takes part and gets the result.

    Returns {"fields": summary, "diffs": summary} (see Moments.summary).
    """
    path = Path(path)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    fields, diffs = local_moments(path, rank, size)
    if comm is not None and size > 1:
        gathered = comm.allgather((fields, diffs))
        fields, diffs = gathered[0]
        for f_other, d_other in gathered[1:]:  # rank order: every rank folds identically
            fields, diffs = fields.merge(f_other), diffs.merge(d_other)
    return {"fields": fields.summary(), "diffs": diffs.summary()}


def write_stats(path: str | Path, stats: dict[str, dict[str, np.ndarray]], extra: Optional[dict] = None) -> None:
    """Store `stats` in the cube's `stats` group, replacing any previous one.

    The new group is written in full under a temporary name, flushed, then renamed over the
    old one: a crash leaves either the old statistics or the new, and never touches `fields`.
    """
    import h5py

    from astrohpc.provenance import collect

    path = Path(path)
    try:
        f = h5py.File(path, "r+")
    except OSError as exc:
        raise DataError(f"{path}: cannot open for writing statistics ({exc})") from None
    with f:
        for name in [n for n in f if n.startswith(schema.STATS_TMP_PREFIX)]:
            del f[name]  # left over from an interrupted run
        tmp_name = f"{schema.STATS_TMP_PREFIX}_{os.getpid()}"
        group = f.create_group(tmp_name)
        for part, summary in stats.items():
            sub = group.create_group(part)
            for quantity in schema.STATS_QUANTITIES:
                sub.create_dataset(quantity, data=np.asarray(summary[quantity], dtype=np.float64))
        group["diffs"].attrs["long_name"] = "statistics of x[t+1] - x[t] within each run"
        group.attrs.update({"std": "population (ddof=0)", "weighting": "none (every grid cell counts once)",
                            "computed_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                            "provenance": json.dumps(collect(extra=extra), default=str)})
        f.flush()
        if schema.STATS_GROUP in f:
            del f[schema.STATS_GROUP]
        f.move(tmp_name, schema.STATS_GROUP)
        f.flush()


def run_stats(path: str | Path, comm: Any = None) -> dict[str, dict[str, np.ndarray]]:
    """Compute, then (rank 0 only, after every rank is done reading) store the statistics."""
    stats = compute_stats(path, comm)
    size = comm.Get_size() if comm is not None else 1
    if comm is not None:
        comm.Barrier()
    if comm is None or comm.Get_rank() == 0:
        write_stats(path, stats, extra={"ranks": size})
    if comm is not None:
        comm.Barrier()
    return stats
