"""Per-channel statistics of a cube (and of its time differences), merged across MPI ranks.

Moments are accumulated in float64 per time step and merged with Chan et al.'s parallel
update generalised to weights (West 1979), so the result equals a serial float64 computation
to ~1e-15 relative. Weighting is by cell area (`area_weight`, the default: a polar cell
counts for its small share of the sphere) or none (every cell once). NaN (pressure levels
outside the column, steps past a run's end) are skipped. `std` is the population standard
deviation. Statistics of the whole cube and of each run are stored in the sidecar file
CUBE.stats.h5, written to a temporary file, fsynced and renamed: a kill at any point leaves
the previous sidecar and the cube untouched.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.data import schema
from astrohpc.errors import DataError

WEIGHTINGS = ("area", "none")
# A std at or below this is "numerically constant" (the ~1e-34 upper-level humidity of a cold
# start): normalisation then centres without scaling, and a tendency model does not change it.
NEGLIGIBLE_STD = 1e-30


@dataclass
class Moments:
    """Running count, weight, weighted mean, Σ w (x − mean)² (m2), min and max per channel: [C] each."""

    count: np.ndarray
    weight: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    min: np.ndarray
    max: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> Moments:
        return cls(np.zeros(channels), np.zeros(channels), np.zeros(channels), np.zeros(channels),
                   np.full(channels, np.inf), np.full(channels, -np.inf))

    @classmethod
    def of(cls, x: np.ndarray, weights: Optional[np.ndarray] = None) -> Moments:
        """Moments of x: [C, lat, lon] over the grid, in float64, NaN skipped; weights [lat, lon] (None: 1)."""
        x = np.asarray(x, dtype=np.float64).reshape(x.shape[0], -1)
        w = np.ones(x.shape[1]) if weights is None else np.asarray(weights, np.float64).reshape(-1)
        valid = np.isfinite(x)
        wv = np.where(valid, w[None, :], 0.0)
        weight = wv.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(weight > 0, (wv * np.where(valid, x, 0.0)).sum(axis=1) / weight, 0.0)
        m2 = (wv * np.where(valid, x - mean[:, None], 0.0) ** 2).sum(axis=1)
        lo = np.where(valid, x, np.inf).min(axis=1)
        hi = np.where(valid, x, -np.inf).max(axis=1)
        return cls(valid.sum(axis=1).astype(np.float64), weight, mean, m2, lo, hi)

    def merge(self, other: Moments) -> Moments:
        """Chan et al. (1979) pairwise combination, with weights in place of counts."""
        w = self.weight + other.weight
        delta = other.mean - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(w > 0, other.weight / w, 0.0)
            mean = self.mean + delta * share
            m2 = self.m2 + other.m2 + np.where(w > 0, delta * delta * self.weight * share, 0.0)
        return Moments(self.count + other.count, w, mean, m2, np.minimum(self.min, other.min),
                       np.maximum(self.max, other.max))

    def summary(self) -> dict[str, np.ndarray]:
        """{"count","mean","std","min","max"}: [C] float64; NaN where a channel had no valid value."""
        empty = self.count == 0
        with np.errstate(invalid="ignore", divide="ignore"):
            std = np.sqrt(self.m2 / self.weight)
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


def _weights(path: Path, weighting: str) -> Optional[np.ndarray]:
    if weighting not in WEIGHTINGS:
        raise DataError(f"statistics weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")
    if weighting == "none":
        return None
    from astrohpc.data.cube import open_file

    with open_file(path) as f:
        return f[schema.AREA_WEIGHT][()]


def local_moments(path: Path, rank: int = 0, size: int = 1, weighting: str = "area"
                  ) -> dict[int, tuple[Moments, Moments]]:
    """Per run: moments of the fields and of time differences over this rank's block of steps.

    A step t contributes x[t] and, when t+1 is in the same run, x[t+1] − x[t].
    """
    from astrohpc.data.cube import LazyCube, read_meta

    path = Path(path)
    meta = read_meta(path, stats=False)
    channels = meta.shape[2]
    weights = _weights(path, weighting)
    units = step_units(meta.time_count)
    out: dict[int, tuple[Moments, Moments]] = {}
    cube = LazyCube(path, cache_chunks=2)
    try:
        cached: Optional[tuple[tuple[int, int], np.ndarray]] = None
        for i in rank_block(len(units), rank, size):
            run, t = units[i]
            fields, diffs = out.get(run, (Moments.empty(channels), Moments.empty(channels)))
            x = cached[1] if cached and cached[0] == (run, t) else cube.read(run, t, 1)[0]
            fields = fields.merge(Moments.of(x, weights))
            if t + 1 < meta.time_count[run]:
                nxt = cube.read(run, t + 1, 1)[0]
                diffs = diffs.merge(Moments.of(nxt.astype(np.float64) - x.astype(np.float64), weights))
                cached = ((run, t + 1), nxt)
            out[run] = (fields, diffs)
    finally:
        cube.close()
    return out


def compute_stats(path: str | Path, comm: Any = None, weighting: str = "area") -> dict[str, Any]:
    """Statistics of the whole cube and of each run; under MPI every rank of `comm` takes part.

    Returns {"fields": summary, "diffs": summary, "runs": {"fields": {q: [run, C]}, "diffs": …},
    "weighting": weighting}; a summary is {"count","mean","std","min","max"}: [C] float64.
    """
    from astrohpc.data.cube import read_meta

    path = Path(path)
    rank, size = (comm.Get_rank(), comm.Get_size()) if comm is not None else (0, 1)
    blocks = [local_moments(path, rank, size, weighting)]
    if comm is not None and size > 1:
        blocks = comm.allgather(blocks[0])  # rank order: every rank folds identically
    shape = read_meta(path, stats=False).shape
    n_run, channels = shape[0], shape[2]
    per_run = [(Moments.empty(channels), Moments.empty(channels)) for _ in range(n_run)]
    for block in blocks:
        for run, (f, d) in sorted(block.items()):
            per_run[run] = (per_run[run][0].merge(f), per_run[run][1].merge(d))
    total_f, total_d = Moments.empty(channels), Moments.empty(channels)
    for f, d in per_run:
        total_f, total_d = total_f.merge(f), total_d.merge(d)
    runs = {part: {q: np.stack([pair[k].summary()[q] for pair in per_run]) for q in schema.STATS_QUANTITIES}
            for k, part in enumerate(schema.STATS_PARTS)}
    return {"fields": total_f.summary(), "diffs": total_d.summary(), "runs": runs, "weighting": weighting}


def write_stats(path: str | Path, stats: dict[str, Any], extra: Optional[dict] = None) -> Path:
    """Write `stats` into the sidecar CUBE.stats.h5 (temporary file, fsync, rename); return its path.

    The sidecar names the cube's `cube_id`, so statistics of a reconverted cube are never
    mistaken for the new one's. The cube itself is opened read-only.
    """
    import h5py

    from astrohpc.atomic_write import atomic_path
    from astrohpc.data.cube import read_meta
    from astrohpc.provenance import collect

    path = Path(path)
    meta = read_meta(path, stats=False)
    target = schema.stats_path(path)
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as out:
            channel, run = _write_stats_coordinates(out, meta)
            for part in schema.STATS_PARTS:
                group = out.create_group(part)
                runs = out.create_group(f"runs/{part}")
                for quantity in schema.STATS_QUANTITIES:
                    dset = group.create_dataset(quantity, data=np.asarray(stats[part][quantity], dtype=np.float64))
                    dset.attrs.update(_stats_attrs(part, quantity, stats["weighting"], "every run"))
                    schema.attach_dims(dset, [channel])
                    dset = runs.create_dataset(quantity, data=np.asarray(stats["runs"][part][quantity],
                                                                         dtype=np.float64))
                    dset.attrs.update(_stats_attrs(part, quantity, stats["weighting"], "each run"))
                    schema.attach_dims(dset, [run, channel])
            out["diffs"].attrs["long_name"] = "statistics of x[t+1] - x[t] within each run"
            out["runs"].attrs["long_name"] = "the same per run: [run, channel]"
            out.attrs.update({
                "schema": schema.STATS_SCHEMA, "cube": path.name, "cube_id": meta.cube_id, "Conventions": "CF-1.8",
                # xarray: channel_units is a coordinate (of the root; open_datatree shows the groups)
                "coordinates": schema.CHANNEL_UNITS,
                "std": "population", "weighting": stats["weighting"],
                "weighting_long": ("cell area (area_weight)" if stats["weighting"] == "area"
                                   else "none (every grid cell counts once)"),
                "computed_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "provenance": json.dumps(collect(extra=extra), default=str),
            })
    return target


def _write_stats_coordinates(out, meta: Any) -> tuple[Any, Any]:
    """The sidecar's dimension scales `channel` and `run` (the cube's labels and run names) and the
    channels' units: xarray.open_datatree(SIDECAR, engine="h5netcdf") labels every group with them."""
    import h5py

    strings = h5py.string_dtype()
    channel = out.create_dataset(schema.CHANNEL, data=np.array(meta.channel_names, dtype=strings))
    channel.attrs.update(schema.CF_CHANNEL)
    channel.make_scale(schema.CHANNEL)
    run = out.create_dataset(schema.RUN, data=np.array(meta.run_names, dtype=strings))
    run.attrs.update(schema.CF_RUN)
    run.make_scale(schema.RUN)
    units = out.create_dataset(schema.CHANNEL_UNITS, data=np.array(meta.units, dtype=strings))
    units.attrs["long_name"] = "units of each channel: those of its mean, std, min and max"
    schema.attach_dims(units, [channel])
    return channel, run


def _stats_attrs(part: str, quantity: str, weighting: str, over: str) -> dict[str, str]:
    """CF attributes of one statistic: count has units 1; the others those of each channel (channel_units)."""
    what = "x" if part == "fields" else "x[t+1] - x[t]"
    weighted = "area-weighted " if weighting == "area" and quantity in ("mean", "std") else ""
    if quantity == "count":
        return {"long_name": f"number of valid values of {what} over {over}", "units": "1"}
    return {"long_name": f"{weighted}{quantity} of {what} of each channel over {over} (units: channel_units)"}


def read_stats(path: str | Path, cube_id: str) -> Optional[dict[str, Any]]:
    """The sidecar statistics of the cube at `path` (None if there are none); DataError when the
    sidecar is damaged or belongs to another cube (a reconverted one)."""
    import h5py

    target = schema.stats_path(path)
    if not target.is_file():
        return None
    try:
        with h5py.File(target, "r", locking=False) as f:
            if f.attrs.get("schema") != schema.STATS_SCHEMA:
                raise DataError(f"{target}: not an astrohpc statistics file; delete it and run "
                                f"`astrohpc data stats {path}`")
            if str(f.attrs.get("cube_id", "")) != cube_id:
                raise DataError(f"{target}: statistics of another cube (cube_id differs: {path} was reconverted); "
                                f"run `astrohpc data stats {path}` again")
            out: dict[str, Any] = {part: {q: f[f"{part}/{q}"][()] for q in schema.STATS_QUANTITIES}
                                   for part in schema.STATS_PARTS}
            out["runs"] = {part: {q: f[f"runs/{part}/{q}"][()] for q in schema.STATS_QUANTITIES}
                           for part in schema.STATS_PARTS}
            out["weighting"] = str(f.attrs["weighting"])
            out["computed_utc"] = str(f.attrs.get("computed_utc", ""))
            return out
    except (OSError, KeyError) as exc:
        raise DataError(f"{target}: damaged statistics file ({exc}); delete it and run "
                        f"`astrohpc data stats {path}`") from None


def run_stats(path: str | Path, comm: Any = None, weighting: str = "area") -> dict[str, Any]:
    """Compute, then (rank 0 only, after every rank is done reading) store the statistics."""
    stats = compute_stats(path, comm, weighting)
    size = comm.Get_size() if comm is not None else 1
    if comm is not None:
        comm.Barrier()
    if comm is None or comm.Get_rank() == 0:
        write_stats(path, stats, extra={"ranks": size})
    if comm is not None:
        comm.Barrier()
    return stats
