"""Opening a datacube for reading: independent (per process) or collective (MPI-IO).

Independent mode: each process (MPI rank or DataLoader worker) opens the file read-only itself;
a handle is never shared across fork (see `LazyCube`). Collective mode: every rank of `comm`
opens the file with `driver="mpio"` and reads inside `with dset.collective:`; every rank must
then make the same number of read calls.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def open_file(path: str | Path, mode: str = "independent", comm: Any = None):
    """Open `path` read-only as an h5py File, checking it is a complete datacube."""
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


@dataclass
class CubeMeta:
    """What readers need from a cube besides the fields: shapes, channels, statistics."""

    path: Path
    shape: tuple[int, ...]  # [run, time, channel, lat, lon]
    time_count: np.ndarray  # [run]
    variables: list[str]
    levels: np.ndarray
    level_kinds: list[str]
    units: list[str]
    stats: Optional[dict[str, dict[str, np.ndarray]]]  # {"fields"|"diffs": {quantity: [channel]}}

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


def read_meta(path: str | Path) -> CubeMeta:
    """Open, check and close `path`, returning its metadata (including stored statistics)."""
    f = open_file(path)
    try:
        stats = None
        if schema.STATS_GROUP in f:
            stats = {part: {q: f[f"{schema.STATS_GROUP}/{part}/{q}"][()] for q in schema.STATS_QUANTITIES}
                     for part in ("fields", "diffs")}
        table = f[schema.CHANNEL_GROUP]
        names = schema.decode_strings
        return CubeMeta(Path(path), tuple(f[schema.FIELDS].shape), f[schema.TIME_COUNT][()],
                        names(table["variable"][()]), table["level"][()], names(table["level_kind"][()]),
                        names(table["units"][()]), stats)
    finally:
        f.close()


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
    sequentially. Windows touching a never-written chunk, or cubes with filters, go through
    h5py. Collective mode always reads through h5py/MPI-IO.
    """

    def __init__(self, path: str | Path, mode: str = "independent", comm: Any = None, cache_chunks: int = 1,
                 raw_chunks: bool = True):
        self.path, self.mode, self.comm, self.cache_chunks = Path(path), mode, comm, cache_chunks
        self.raw_chunks = raw_chunks and mode == "independent"
        self._pid: Optional[int] = None
        self._file = None
        self._fields = None
        self._fd: Optional[int] = None
        self._offsets: Optional[np.ndarray] = None

    def fields(self):
        if self._pid != os.getpid():  # first use, or we are a forked child: never reuse the parent's handle
            self._file, self._fields, self._fd, self._offsets = None, None, None, None
            self._file = open_file(self.path, self.mode, self.comm)
            self._fields = open_fields(self._file, self.cache_chunks)
            if self.raw_chunks:
                self._offsets = chunk_offsets(self._fields)
                if self._offsets is not None:
                    self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()
        return self._fields

    def read(self, run: int, t0: int, steps: int) -> np.ndarray:
        """float32 [steps, channel, lat, lon] of one run, from time index t0."""
        dset = self.fields()
        out = np.empty((steps, *dset.shape[2:]), dtype=np.float32)
        if self._offsets is not None:
            offsets = self._offsets[run, t0:t0 + steps]
            if offsets.size == steps and np.all(offsets >= 0):
                for k, offset in enumerate(offsets.tolist()):
                    if os.preadv(self._fd, [out[k]], offset) != out[k].nbytes:
                        raise DataError(f"{self.path}: short read at byte {offset} — file truncated?")
                return out
        selection = np.s_[run, t0:t0 + steps]
        if self.mode == "collective":
            with dset.collective:
                dset.read_direct(out, selection)
        else:
            dset.read_direct(out, selection)
        return out

    def close(self) -> None:
        if self._pid == os.getpid():
            if self._fd is not None:
                os.close(self._fd)
            if self._file is not None:
                self._file.close()
        self._file, self._fields, self._pid, self._fd, self._offsets = None, None, None, None, None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        # handles, descriptors and communicators do not travel to other processes
        state.update(_file=None, _fields=None, _pid=None, _fd=None, _offsets=None, comm=None)
        return state
