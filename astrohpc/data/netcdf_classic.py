"""Detect truncated NetCDF classic files (CDF-1, CDF-2, CDF-5) from their header.

netCDF-C reads a truncated classic file without complaint and returns zeros for the missing
bytes, so truncation has to be found by comparing the file's size with the size its header
promises. (NetCDF-4 files are HDF5: HDF5 itself refuses a truncated one.)
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from astrohpc.errors import DataError

NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 0x0A, 0x0B, 0x0C
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}
STREAMING = 0xFFFFFFFF


class _Header:
    def __init__(self, f: BinaryIO, version: int):
        self.f, self.wide = f, version == 5
        self.offset_size = 4 if version == 1 else 8

    def _read(self, n: int) -> bytes:
        data = self.f.read(n)
        if len(data) != n:
            raise EOFError
        return data

    def int4(self) -> int:
        return struct.unpack(">i", self._read(4))[0]

    def count(self) -> int:
        return struct.unpack(">q", self._read(8))[0] if self.wide else struct.unpack(">I", self._read(4))[0]

    def offset(self) -> int:
        return struct.unpack(">q" if self.offset_size == 8 else ">I", self._read(self.offset_size))[0]

    def name(self) -> str:
        n = self.count()
        return self._read(n + (-n % 4))[:n].decode("utf-8", "replace")

    def attributes(self) -> None:
        tag, n = self.int4(), self.count()
        if tag not in (0, NC_ATTRIBUTE):
            raise ValueError("bad attribute list tag")
        for _ in range(n):
            self.name()
            nc_type, nelems = self.int4(), self.count()
            size = nelems * TYPE_SIZES.get(nc_type, 1)
            self._read(size + (-size % 4))


def expected_size(path: Path) -> int | None:
    """Bytes a classic NetCDF file must have according to its header; None for other formats."""
    with open(path, "rb") as f:
        magic = f.read(4)
        if magic[:3] != b"CDF" or magic[3] not in (1, 2, 5):
            return None
        h = _Header(f, magic[3])
        numrecs = h.count()
        tag, ndims = h.int4(), h.count()
        dims = []
        for _ in range(ndims if tag == NC_DIMENSION else 0):
            h.name()
            dims.append(h.count())
        h.attributes()
        tag, nvars = h.int4(), h.count()
        variables = []
        for _ in range(nvars if tag == NC_VARIABLE else 0):
            h.name()
            dimids = [h.count() for _ in range(h.count())]
            h.attributes()
            h.int4()  # nc_type
            vsize = h.count()
            begin = h.offset()
            is_record = bool(dimids) and dims[dimids[0]] == 0
            variables.append((is_record, vsize, begin))
    if numrecs == STREAMING:
        return None
    record = [v for v in variables if v[0]]
    recsize = sum(v[1] for v in record)
    ends = [begin + vsize for is_rec, vsize, begin in variables if not is_rec]
    ends += [begin + max(numrecs - 1, 0) * recsize + vsize for _, vsize, begin in record if numrecs > 0]
    return max(ends, default=0)


def check_complete(path: Path) -> None:
    """DataError when a classic NetCDF file is shorter than its header says (a truncated copy)."""
    try:
        need = expected_size(path)
    except (EOFError, ValueError, struct.error, IndexError):
        raise DataError(f"{path}: NetCDF header is damaged or cut short — truncated or corrupt file") from None
    size = path.stat().st_size
    # The last variable's vsize is rounded up to 4 bytes even when the file is not padded.
    if need is not None and size < need - 3:
        raise DataError(f"{path}: file is truncated — {size} bytes, its header describes {need}; copy it again")
