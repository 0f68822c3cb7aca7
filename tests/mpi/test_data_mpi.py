"""The data layer under `mpirun -n 2`: parallel statistics, collective/independent reads, shards,
and a 2-rank DDP training-loop smoke over the Dataset.

Cube: the two cached ExoPlaSim smoke runs (tests/gcm_smoke_fixture.py), converted by rank 0.
ExoPlaSim never runs inside these mpirun-launched processes: rank 0 uses the runs the serial
suite cached, or makes them in a subprocess without the launcher's environment.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.mpi(min_size=2), pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def comm():
    from mpi4py import MPI

    return MPI.COMM_WORLD


def on_rank0(comm, make):
    """`make()` on rank 0, its result on every rank; an error on rank 0 fails every rank
    (instead of leaving the others waiting in bcast)."""
    result, error = None, None
    if comm.rank == 0:
        try:
            result = make()
        except Exception as exc:  # reported on every rank below
            error = f"{type(exc).__name__}: {exc}"
    result, error = comm.bcast((result, error), root=0)
    if error:
        pytest.fail(f"rank 0: {error}")
    return result


@pytest.fixture(scope="module")
def cube(comm, tmp_path_factory) -> Path:
    """The two smoke runs (1361 and 1300 W m-2) as one cube, written by rank 0, shared by path."""
    def make() -> str:
        from gcm_smoke_fixture import DIMMER, cached_smoke_run_outside_mpi

        from astrohpc.data.convert import convert_run_dirs

        runs = [cached_smoke_run_outside_mpi(), cached_smoke_run_outside_mpi(DIMMER)]
        return str(convert_run_dirs(runs, tmp_path_factory.mktemp("mpicube") / "cube.h5", kind="snapshots"))

    return Path(on_rank0(comm, make))


@pytest.fixture(scope="module")
def cube_with_stats(comm, cube, tmp_path_factory) -> Path:
    """A copy of `cube` with statistics computed by both ranks and stored by rank 0."""
    from astrohpc.data.stats import run_stats

    path = Path(on_rank0(comm, lambda: str(shutil.copy(cube, tmp_path_factory.mktemp("st") / "c.h5"))))
    run_stats(path, comm)
    return path


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


def test_stats_under_mpi_are_stored_for_every_reader(comm, cube, cube_with_stats):
    from astrohpc.data.cube import read_meta
    from astrohpc.data.stats import compute_stats

    stored = read_meta(cube_with_stats).stats  # every rank reads the sidecar rank 0 wrote
    serial = compute_stats(cube, None)
    assert stored["weighting"] == serial["weighting"] == "area"
    np.testing.assert_allclose(stored["fields"]["std"], serial["fields"]["std"], rtol=1e-12)
    np.testing.assert_allclose(stored["runs"]["diffs"]["mean"], serial["runs"]["diffs"]["mean"], rtol=1e-12,
                               atol=1e-12 * np.nanmax(np.abs(serial["diffs"]["max"])))


@pytest.mark.parametrize("mode", ["independent", "collective"])
def test_reads_equal_serial_reads_on_disjoint_shards(comm, cube, mode):
    import h5py

    from astrohpc.data.dataset import WindowDataset, shard_indices

    ds = WindowDataset(cube, input_steps=2, target_steps=1, mode=mode, comm=comm)
    assert len(ds) == 2 * 3  # two runs of 5 steps; windows never cross a run's end
    mine = shard_indices(len(ds), comm.rank, comm.size, shuffle=True, seed=1)
    everyone = comm.allgather(mine)
    assert not set(everyone[0]) & set(everyone[1])
    assert len(everyone[0]) == len(everyone[1]) == len(ds) // 2
    with h5py.File(cube, "r", locking=False) as f:
        for i in mine:  # collective: both ranks read the same number of windows, in lockstep
            sample = ds[i]
            run, t0 = ds.windows[i]
            np.testing.assert_array_equal(sample["input"].numpy(), f["fields"][run, t0:t0 + 2])
            np.testing.assert_array_equal(sample["target"].numpy(), f["fields"][run, t0 + 2:t0 + 3])
            np.testing.assert_array_equal(sample["time"].numpy(), ds.meta.time_days[run, t0:t0 + 3])
    ds.close()


def test_training_loop_smoke_two_ranks(comm, cube_with_stats):
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
        ds = WindowDataset(cube_with_stats, input_steps=1, target_steps=1, normalize=True)
        sampler = DistributedSampler(ds, num_replicas=comm.size, rank=comm.rank, shuffle=True, drop_last=True)
        channels = ds.meta.shape[2]
        torch.manual_seed(0)
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Conv2d(channels, channels, 3, padding=1))
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)
        losses = []
        for batch in DataLoader(ds, batch_size=2, sampler=sampler):
            loss = torch.nn.functional.mse_loss(model(batch["input"][:, 0]), batch["target"][:, 0])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert len(losses) == 2 and np.all(np.isfinite(losses))  # 8 windows: 4 per rank, batches of 2
        weights = model.module.weight.detach().numpy().copy()
        others = comm.allgather(weights)
        np.testing.assert_array_equal(others[0], others[1])  # DDP kept the replicas equal
    finally:
        dist.destroy_process_group()
