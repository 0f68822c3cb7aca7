"""The data layer under `mpirun -n 2`: parallel statistics, collective/independent reads, shards,
and a 2-rank DDP training-loop smoke over the Dataset."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.shared, pytest.mark.timeout(300)]

SHARED_REAL = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "real"
B003 = SHARED_REAL / "earth" / "geocat" / "b003_TS_200-299.nc"


@pytest.fixture(scope="module")
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


@pytest.fixture(scope="module")
def cube(comm, tmp_path_factory) -> Path:
    """A 2-run cube from the real b003 file, written by rank 0 and shared by path."""
    from astrohpc.data.convert import convert

    path = None
    if comm.rank == 0:
        path = str(convert([B003, B003], tmp_path_factory.mktemp("mpicube") / "cube.h5"))
    path = comm.bcast(path, root=0)
    return Path(path)


def test_parallel_stats_equal_serial(comm, cube):
    from astrohpc.data.stats import compute_stats

    parallel = compute_stats(cube, comm)
    serial = compute_stats(cube, None)  # every rank alone, over the whole cube
    for part in ("fields", "diffs"):
        for q in ("mean", "std"):
            np.testing.assert_allclose(parallel[part][q], serial[part][q], rtol=1e-12)
        for q in ("count", "min", "max"):
            np.testing.assert_array_equal(parallel[part][q], serial[part][q])
    # every rank got the identical result
    gathered = comm.allgather(parallel["diffs"]["std"])
    np.testing.assert_array_equal(gathered[0], gathered[1])


def test_stats_cli_under_mpi_stores_the_result(comm, cube, tmp_path_factory):
    import shutil

    import h5py

    from astrohpc.data.stats import compute_stats, run_stats

    path = comm.bcast(str(tmp_path_factory.mktemp("st") / "c.h5") if comm.rank == 0 else None, root=0)
    if comm.rank == 0:
        shutil.copy(cube, path)
    comm.Barrier()
    run_stats(path, comm)
    with h5py.File(path, "r", locking=False) as f:
        stored = f["stats/fields/std"][()]
    np.testing.assert_allclose(stored, compute_stats(cube, None)["fields"]["std"], rtol=1e-12)


@pytest.mark.parametrize("mode", ["independent", "collective"])
def test_reads_equal_serial_reads_on_disjoint_shards(comm, cube, mode):
    import h5py

    from astrohpc.data.dataset import WindowDataset, shard_indices

    ds = WindowDataset(cube, input_steps=2, target_steps=1, mode=mode, comm=comm)
    mine = shard_indices(len(ds), comm.rank, comm.size, shuffle=True, seed=1)
    everyone = comm.allgather(mine)
    assert not set(everyone[0]) & set(everyone[1])
    assert len(everyone[0]) == len(everyone[1]) == len(ds) // 2
    with h5py.File(cube, "r", locking=False) as f:
        for i in mine[:40]:  # collective: both ranks read the same number of windows, in lockstep
            sample = ds[i]
            run, t0 = ds.windows[i]
            np.testing.assert_array_equal(sample["input"].numpy(), f["fields"][run, t0:t0 + 2])
            np.testing.assert_array_equal(sample["target"].numpy(), f["fields"][run, t0 + 2:t0 + 3])
    ds.close()


def test_training_loop_smoke_two_ranks(comm, cube):
    """DDP (gloo) over 2 ranks, each reading its own shard; a few steps, finite loss, equal weights."""
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader
    from torch.utils.data.distributed import DistributedSampler

    from astrohpc.data.dataset import WindowDataset

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    port = comm.bcast(29500 + os.getpid() % 1000 if comm.rank == 0 else None, root=0)
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=comm.rank, world_size=comm.size)
    try:
        ds = WindowDataset(cube, input_steps=1, target_steps=1)
        sampler = DistributedSampler(ds, num_replicas=comm.size, rank=comm.rank, shuffle=True, drop_last=True)
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(1, 1, 3, padding=1))
        opt = torch.optim.SGD(model.parameters(), lr=1e-6)
        losses = []
        for step, batch in enumerate(DataLoader(ds, batch_size=4, sampler=sampler)):
            loss = torch.nn.functional.mse_loss(model(batch["input"][:, 0] / 300.0), batch["target"][:, 0] / 300.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if step == 4:
                break
        assert len(losses) == 5 and np.all(np.isfinite(losses))
        weights = model.module.weight.detach().numpy().copy()
        others = comm.allgather(weights)
        np.testing.assert_array_equal(others[0], others[1])  # DDP kept the replicas equal
    finally:
        dist.destroy_process_group()
