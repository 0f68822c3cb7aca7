"""Opening a datacube for reading: independent (per process) or collective (MPI-IO).

Independent mode: each process (MPI rank or DataLoader worker) opens the file read-only itself;
a handle is never shared across fork (see `LazyCube`). Collective mode: every rank of `comm`
opens the file with `driver="mpio"` and reads inside `with dset.collective:`; every rank must
then make the same number of read calls.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from astrohpc.data import schema
from astrohpc.data.validate import check_cube
from astrohpc.errors import DataError

MODES = ("independent", "collective")


def _locking_kwargs() -> dict:
    # Read-only opens need no lock; locks fail on many parallel file systems (NFS, some Lustre).
    # A user's explicit HDF5_USE_FILE_LOCKING wins: then HDF5 reads it itself.
    return {} if "HDF5_USE_FILE_LOCKING" in os.environ else {"locking": False}


def open_file(path: str | Path, mode: str = "independent", comm: Any = None, validate: bool = True):
    """Open `path` read-only as an h5py File, checking it is a complete datacube (unless `validate`
    is False: a DataLoader worker reopening a cube its parent process already checked)."""
    import h5py

    path = Path(path)
    if mode not in MODES:
        raise DataError(f"read mode {mode!r}: expected one of {', '.join(MODES)}")
    if not path.is_file():
        raise DataError(f"{path}: datacube not found (make one with `astrohpc data convert`)")
    kwargs = _locking_kwargs()
    if mode == "collective":
        if comm is None:
            raise DataError("collective reads need an MPI communicator (run under mpirun, or use independent mode)")
        if not h5py.get_config().mpi:
            raise DataError("collective reads need h5py built with parallel HDF5 (h5py.get_config().mpi is False); "
                            "use independent mode or rebuild h5py (see tools/setup.sh)")
        kwargs.update(driver="mpio", comm=comm)
    try:
        f = h5py.File(path, "r", **kwargs)
    except OSError as exc:
        raise DataError(f"{path}: cannot be opened as HDF5 — truncated or corrupt? ({exc})") from None
    if validate:
        try:
            check_cube(f, path)
        except BaseException:
            f.close()
            raise
    return f


def open_fields(f, cache_chunks: int = 1):
    """The `fields` dataset with a chunk cache sized to `cache_chunks` chunks (one time step each)."""
    import h5py

    probe = f[schema.FIELDS]
    chunk_bytes = int(np.prod(probe.chunks)) * probe.dtype.itemsize
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    # nslots: a prime well above the number of chunks cached, as the HDF5 guide advises.
    dapl.set_chunk_cache(10007, max(1, cache_chunks) * chunk_bytes, 1.0)
    return h5py.Dataset(h5py.h5d.open(f.id, schema.FIELDS.encode(), dapl))


# Parameters read on a log scale by `CubeMeta.param_normalization`: partial pressures span decades.
# run parameters that describe the GCM's clock, not the planet: never a model input
BOOKKEEPING_PARAMS = ("start_step",)
LOG_PARAM_SUFFIX = "_bar"
LOG_PARAM_FLOOR = 1e-6  # bar: a partial pressure of 0 is read as this before the log


@dataclass
class CubeMeta:
    """What readers need from a cube besides the fields: shapes, channels, time, grid, run
    parameters, static fields, vertical interfaces, statistics. Plain numpy, picklable."""

    path: Path
    shape: tuple[int, ...]  # [run, time, channel, lat, lon]
    time_count: np.ndarray  # [run]
    variables: list[str]
    levels: np.ndarray
    level_kinds: list[str]
    units: list[str]
    stats: Optional[dict[str, Any]]  # {"fields"|"diffs": {quantity: [C]}, "runs": {...: [run, C]}, "weighting"}
    cube_id: str = ""
    run_names: list[str] = field(default_factory=list)
    time_days: Optional[np.ndarray] = None  # [run, time] days since each run's start (NaN past its end)
    time_step_s: Optional[np.ndarray] = None  # [run] the GCM's integration step (NaN unknown)
    lat: Optional[np.ndarray] = None  # [lat] degrees_north, south -> north
    lon: Optional[np.ndarray] = None  # [lon] degrees_east, 0-360
    area_weight: Optional[np.ndarray] = None  # [lat, lon], sums to 1
    params: dict[str, np.ndarray] = field(default_factory=dict)  # numeric/bool run parameters: name -> [run]
    static: dict[str, np.ndarray] = field(default_factory=dict)  # name -> [run, lat, lon] float64
    static_units: dict[str, str] = field(default_factory=dict)
    vertical: dict[str, Any] = field(default_factory=dict)  # sigma_half | hyai, hybi, p0_Pa
    param_transforms: dict[str, str] = field(default_factory=dict)  # name -> "log10" where the sweep sampled in log
    step_means: list[str] = field(default_factory=list)  # variables that are means over the step into each state

    @property
    def chunk_bytes(self) -> int:
        return int(np.prod(self.shape[2:])) * 4

    def channel(self, variable: str, level: Optional[float] = None) -> int:
        """Index of `variable` (at `level` for 3-D variables; its first level if None)."""
        for i, name in enumerate(self.variables):
            if name == variable and (level is None or np.isclose(self.levels[i], level)):
                return i
        at = "" if level is None else f" at level {level}"
        known = ", ".join(sorted(set(self.variables)))
        raise DataError(f"{self.path}: no channel {variable!r}{at}; variables: {known}")

    def channels_of(self, variables: list[str]) -> np.ndarray:
        """Channel indices of every level of `variables`, in the cube's channel order."""
        unknown = [v for v in variables if v not in self.variables]
        if unknown:
            raise DataError(f"{self.path}: no variable {', '.join(map(repr, unknown))}; "
                            f"variables: {', '.join(dict.fromkeys(self.variables))}")
        wanted = set(variables)
        return np.array([i for i, v in enumerate(self.variables) if v in wanted], dtype=np.int64)

    def require(self, variables: list[str], purpose: str) -> None:
        """DataError naming what is missing when `purpose` needs `variables` (e.g. an energy loss)."""
        missing = [v for v in variables if v not in self.variables and v not in self.static]
        if missing:
            raise DataError(f"{self.path}: {purpose} needs {', '.join(variables)}; the cube lacks "
                            f"{', '.join(missing)} — reconvert with them in data.variables / data.static_variables "
                            "(configs/data/exoplasim.yaml has all of them)")

    @property
    def param_names(self) -> list[str]:
        """Parameters in the matrix: every numeric or bool run parameter except the sweep point's
        copies (`point.*`) and the GCM's bookkeeping (BOOKKEEPING_PARAMS), in name order."""
        return [k for k in sorted(self.params) if not k.startswith("point.") and k not in BOOKKEEPING_PARAMS]

    def param_matrix(self, names: Optional[list[str]] = None) -> np.ndarray:
        """float64 [run, P] of `names` (default `param_names`); DataError if a run lacks one."""
        names = self.param_names if names is None else list(names)
        unknown = [n for n in names if n not in self.params]
        if unknown:
            raise DataError(f"{self.path}: no run parameter {', '.join(unknown)}; parameters: "
                            f"{', '.join(self.param_names) or 'none'}")
        matrix = np.stack([self.params[n] for n in names], axis=1) if names else np.zeros((self.shape[0], 0))
        missing = {n: [self.run_names[r] if r < len(self.run_names) else str(r)
                       for r in np.flatnonzero(np.isnan(matrix[:, j]))] for j, n in enumerate(names)}
        missing = {n: runs for n, runs in missing.items() if runs}
        if missing:
            detail = "; ".join(f"{n} missing for run(s) {', '.join(runs[:5])}" for n, runs in missing.items())
            raise DataError(f"{self.path}: {detail} — choose parameters every run has (params=[...]) or "
                            "reconvert with run_params for every run")
        return matrix

    def param_normalization(self, names: Optional[list[str]] = None,
                            runs: Optional[list[int]] = None) -> dict[str, Any]:
        """How parameters become model inputs: z = (f(x) − mean) / std over the cube's runs (or
        only `runs`, a model's training runs), with f = log10(max(x, 1e-6)) for partial pressures
        (names ending in `_bar`) and for parameters the sweep sampled in log (`log_scale`, recorded
        per parameter at conversion), else f = x; std 0 (a parameter the runs share) is taken as 1.
        Returns names, transform, mean, std."""
        names = self.param_names if names is None else list(names)
        transforms = [self.param_transforms.get(n) or default_transform(n) for n in names]
        transformed = transform_params(self.param_matrix(names), names, transforms)
        if runs is not None:
            transformed = transformed[np.asarray(list(runs), dtype=int)]
        mean = transformed.mean(axis=0) if len(names) else np.zeros(0)
        std = transformed.std(axis=0) if len(names) else np.zeros(0)
        return {"names": names, "transform": transforms,
                "mean": mean, "std": np.where(std > 0, std, 1.0)}

    def normalized_params(self, norm: dict[str, Any]) -> np.ndarray:
        """float64 [run, P]: every run's parameters as a model reads them, z = (f(x) − mean) / std
        with a `param_normalization()` dict (this cube's, or a trained model's saved one)."""
        return normalize_params(self.param_matrix(list(norm["names"])), norm)

    @property
    def channel_names(self) -> list[str]:
        """The label of every channel: 'variable', or 'variable@level' for one level of a 3-D variable."""
        return [channel_label(v, lev) for v, lev in zip(self.variables, self.levels)]


def channel_label(variable: str, level: float) -> str:
    """'variable' for a 2-D channel (level NaN), 'variable@level' (level as %g) for one level."""
    return variable if np.isnan(level) else f"{variable}@{level:g}"


def pick_channels(names: list[str], wanted: list[str], tolerance: float = 1e-3) -> list[int]:
    """Indices into channel labels `names` of the labels `wanted`, in the order of `wanted`: a
    label matches itself, and 'var@level' also the nearest level of var within `tolerance`;
    wanted labels with no match are left out."""
    out = []
    for want in wanted:
        if want in names:
            out.append(list(names).index(want))
            continue
        if "@" not in want:
            continue
        var, level = want.split("@")
        near = [(abs(float(n.split("@")[1]) - float(level)), i) for i, n in enumerate(names)
                if "@" in n and n.split("@")[0] == var]
        if near and min(near)[0] <= tolerance:
            out.append(min(near)[1])
    return out


def default_transform(name: str) -> str:
    """log10 for partial pressures, identity for the rest (a parameter with no recorded sampling)."""
    return "log10" if name.endswith(LOG_PARAM_SUFFIX) else "identity"


def transform_params(matrix: np.ndarray, names: list[str], transforms: Optional[list[str]] = None) -> np.ndarray:
    """Each parameter as a model reads it, float64 [run, P]: "log10" (partial pressures floored at
    1e-6 bar; any other log parameter must be > 0) or "identity"; `transforms` default per name.
    DataError naming the parameter when the log of a non-positive value is asked for."""
    out = np.asarray(matrix, np.float64).copy()
    transforms = list(transforms) if transforms is not None else [default_transform(n) for n in names]
    for j, (name, how) in enumerate(zip(names, transforms)):
        if how == "log10":
            column = np.maximum(out[:, j], LOG_PARAM_FLOOR) if name.endswith(LOG_PARAM_SUFFIX) else out[:, j]
            if np.any(column <= 0):
                raise DataError(f"parameter {name}: transform log10 needs values > 0, got {column.min():g} "
                                "(its sweep sampled it in log; give a positive value)")
            out[:, j] = np.log10(column)
        elif how != "identity":
            raise DataError(f"parameter {name}: unknown transform {how!r} (log10 or identity)")
    return out


def normalize_params(matrix: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """float64 [N, P]: raw parameters `matrix` (columns in norm["names"] order) as a model reads
    them, z = (f(x) − mean) / std with a `param_normalization()` dict."""
    names = list(norm["names"])
    transformed = transform_params(matrix, names, norm.get("transform"))
    return (transformed - np.asarray(norm["mean"])) / np.asarray(norm["std"])


def _read_param_transforms(f) -> dict[str, str]:
    """The transform recorded per parameter at conversion (log10 for those a sweep sampled in log)."""
    if schema.RUN_PARAMS_GROUP not in f:
        return {}
    return {name: str(dset.attrs["transform"]) for name, dset in f[schema.RUN_PARAMS_GROUP].items()
            if "transform" in dset.attrs}


def _read_params(f) -> dict[str, np.ndarray]:
    """Numeric and bool run parameters as float64 [run] (NaN: missing for that run)."""
    out = {}
    if schema.RUN_PARAMS_GROUP not in f:
        return out
    for name, dset in f[schema.RUN_PARAMS_GROUP].items():
        kind = dset.attrs.get("kind")
        if kind == "float":
            out[name] = dset[()].astype(np.float64)
        elif kind == "bool":
            values = dset[()].astype(np.float64)
            out[name] = np.where(values < 0, np.nan, values)
    return out


def read_meta(path: str | Path, stats: bool = True) -> CubeMeta:
    """Open, check and close `path`, returning its metadata (with the sidecar statistics, if any;
    stats=False skips them — what `astrohpc data stats` does, since it replaces a stale sidecar)."""
    from astrohpc.data.stats import read_stats

    f = open_file(path)
    try:
        table = f[schema.CHANNEL_GROUP]
        names = schema.decode_strings
        cube_id = str(f.attrs.get("cube_id", ""))
        static, static_units = {}, {}
        if schema.STATIC_GROUP in f:
            for name, dset in f[schema.STATIC_GROUP].items():
                static[name] = dset[()]
                static_units[name] = str(dset.attrs.get("units", ""))
        vertical: dict[str, Any] = {}
        if schema.VERTICAL_GROUP in f:
            group = f[schema.VERTICAL_GROUP]
            vertical = {name: group[name][()] for name in group}
            vertical.update({k: v for k, v in group.attrs.items()})
        meta = CubeMeta(Path(path), tuple(f[schema.FIELDS].shape), f[schema.TIME_COUNT][()],
                        names(table["variable"][()]), table["level"][()], names(table["level_kind"][()]),
                        names(table["units"][()]), None, cube_id, names(f[schema.RUN_NAME][()]),
                        f[schema.time_days_path(f)][()], f[schema.TIME_STEP][()], f[schema.LAT][()], f[schema.LON][()],
                        f[schema.AREA_WEIGHT][()], _read_params(f), static, static_units, vertical,
                        _read_param_transforms(f), json.loads(f.attrs.get("step_mean_variables", "[]")))
    finally:
        f.close()
    meta.stats = read_stats(path, cube_id) if stats else None
    return meta


def chunk_offsets(dset) -> Optional[np.ndarray]:
    """File byte offset of every chunk of `fields`, int64 [run, time] (-1: never written).

    None when chunks cannot be read as raw bytes: a filter (compression) is set, or the data
    are not little-endian float32. Needs HDF5 >= 1.10.5 (H5Dget_chunk_info).
    """
    if dset.id.get_create_plist().get_nfilters() != 0 or dset.dtype != np.dtype("<f4"):
        return None
    if not hasattr(dset.id, "get_chunk_info"):
        return None
    offsets = np.full(dset.shape[:2], -1, dtype=np.int64)
    for i in range(dset.id.get_num_chunks()):
        info = dset.id.get_chunk_info(i)
        offsets[info.chunk_offset[0], info.chunk_offset[1]] = info.byte_offset
    return offsets


class LazyCube:
    """A per-process handle: opened on first use, reopened after fork (pid check), picklable.

    Independent mode reads whole chunks straight from the file with `os.preadv` into the
    output array (the chunk's bytes are the float32 values: no filters, little-endian), using
    chunk offsets taken once from HDF5 — one copy from the page cache, like reading the file
    sequentially. `prepare()` in the parent validates the cube and takes the offsets; a pickled
    copy (a DataLoader worker) then opens nothing but a file descriptor. Windows touching a
    never-written chunk, or cubes with filters, go through h5py. Collective mode always reads
    through h5py/MPI-IO.
    """

    def __init__(self, path: str | Path, mode: str = "independent", comm: Any = None, cache_chunks: int = 1,
                 raw_chunks: bool = True):
        self.path, self.mode, self.comm, self.cache_chunks = Path(path), mode, comm, cache_chunks
        self.raw_chunks = raw_chunks and mode == "independent"
        self._pid: Optional[int] = None
        self._file = None
        self._fields = None
        self._fd: Optional[int] = None
        self._fd_pid: Optional[int] = None
        self._offsets: Optional[np.ndarray] = None
        self._shape: Optional[tuple[int, ...]] = None
        self._validated = False

    def prepare(self) -> LazyCube:
        """Validate the cube and take the chunk offsets now (in the parent, before workers fork)."""
        self.fields()
        return self

    def fields(self):
        if self._pid != os.getpid():  # first use, or we are a forked child: never reuse the parent's handle
            self._file, self._fields = None, None
            self._file = open_file(self.path, self.mode, self.comm, validate=not self._validated)
            self._validated = True
            self._fields = open_fields(self._file, self.cache_chunks)
            self._shape = tuple(self._fields.shape)
            if self.raw_chunks and self._offsets is None:
                self._offsets = chunk_offsets(self._fields)
            self._pid = os.getpid()
        return self._fields

    @property
    def shape(self) -> tuple[int, ...]:
        if self._shape is None:
            self.fields()
        return self._shape

    def _descriptor(self) -> int:
        if self._fd_pid != os.getpid():
            self._fd = os.open(self.path, os.O_RDONLY)
            self._fd_pid = os.getpid()
        return self._fd

    def read(self, run: int, t0: int, steps: int) -> np.ndarray:
        """float32 [steps, channel, lat, lon] of one run, from time index t0."""
        if self._offsets is None or self._shape is None:
            self.fields()
        out = np.empty((steps, *self._shape[2:]), dtype=np.float32)
        if self._offsets is not None:
            offsets = self._offsets[run, t0:t0 + steps]
            if offsets.size == steps and np.all(offsets >= 0):
                fd = self._descriptor()
                for k, offset in enumerate(offsets.tolist()):
                    if os.preadv(fd, [out[k]], offset) != out[k].nbytes:
                        raise DataError(f"{self.path}: short read at byte {offset} — file truncated?")
                return out
        dset = self.fields()
        selection = np.s_[run, t0:t0 + steps]
        if self.mode == "collective":
            with dset.collective:
                dset.read_direct(out, selection)
        else:
            dset.read_direct(out, selection)
        return out

    def close(self) -> None:
        if self._fd_pid == os.getpid() and self._fd is not None:
            os.close(self._fd)
        if self._pid == os.getpid() and self._file is not None:
            self._file.close()
        self._file, self._fields, self._pid, self._fd, self._fd_pid = None, None, None, None, None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        # handles, descriptors and communicators do not travel to other processes; the offsets,
        # the shape and the fact that the cube was validated do
        state.update(_file=None, _fields=None, _pid=None, _fd=None, _fd_pid=None, comm=None)
        return state
