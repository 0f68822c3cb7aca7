"""The real MPI stack under `mpirun -n 2`: mpi4py collectives and parallel HDF5 (driver='mpio')."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.mpi(min_size=2)


def test_allreduce_sums_ranks():
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    total = comm.allreduce(comm.rank + 1, op=MPI.SUM)
    assert total == comm.size * (comm.size + 1) // 2
    buf = np.full(4, float(comm.rank))
    out = np.empty_like(buf)
    comm.Allreduce(buf, out, op=MPI.SUM)
    np.testing.assert_array_equal(out, np.full(4, sum(range(comm.size)), dtype=float))


def test_h5py_mpio_collective_write_then_per_rank_reads(tmp_path_factory):
    import h5py
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    assert h5py.get_config().mpi, "h5py was not built with parallel HDF5"
    path = comm.bcast(str(tmp_path_factory.mktemp("mpio") / "cube.h5") if comm.rank == 0 else None, root=0)
    rows = 8
    with h5py.File(path, "w", driver="mpio", comm=comm) as f:
        dset = f.create_dataset("x", shape=(comm.size * rows, 16), dtype="f8")
        block = np.arange(rows * 16, dtype="f8").reshape(rows, 16) + 1000 * comm.rank
        with dset.collective:
            dset[comm.rank * rows:(comm.rank + 1) * rows] = block
    comm.Barrier()
    # independent per-rank read of the other rank's block, without MPI
    other = (comm.rank + 1) % comm.size
    with h5py.File(path, "r") as f:
        got = f["x"][other * rows:(other + 1) * rows]
    np.testing.assert_array_equal(got, np.arange(rows * 16, dtype="f8").reshape(rows, 16) + 1000 * other)
