"""The torch Dataset of windows: values, run boundaries, sharding, fork-safe workers, normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from astrohpc.data.dataset import WindowDataset, shard_indices, window_index
from astrohpc.errors import DataError

pytestmark = pytest.mark.shared


def test_windows_never_cross_runs():
    windows = window_index(np.array([5, 3]), input_steps=2, target_steps=1)
    assert windows.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0]]
    assert window_index(np.array([5]), 1, 1, stride=2).tolist() == [[0, 0], [0, 2]]


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_match_distributed_sampler_and_are_disjoint(shuffle):
    n, world = 23, 3
    shards = [shard_indices(n, r, world, shuffle=shuffle, seed=4, epoch=2) for r in range(world)]
    for rank, shard in enumerate(shards):
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=4, drop_last=True)
        sampler.set_epoch(2)
        assert list(sampler) == shard
    flat = [i for s in shards for i in s]
    assert len(flat) == len(set(flat)) == (n // world) * world


def test_samples_equal_the_cube_and_the_source(b003_two_run_cube, geocat):
    import netCDF4

    ds = WindowDataset(b003_two_run_cube, input_steps=2, target_steps=1)
    assert len(ds) == 2 * 98
    sample = ds[98 + 5]  # run 1, t0 = 5
    assert sample["run"] == 1 and sample["t0"] == 5
    assert sample["input"].shape == (2, 1, 64, 128) and sample["target"].shape == (1, 1, 64, 128)
    with netCDF4.Dataset(geocat / "b003_TS_200-299.nc") as src:
        np.testing.assert_array_equal(sample["input"][:, 0].numpy(), src["TS"][5:7])
        np.testing.assert_array_equal(sample["target"][0, 0].numpy(), src["TS"][7])


def test_dataloader_workers_open_their_own_handles(b003_two_run_cube):
    ds = WindowDataset(b003_two_run_cube, input_steps=1, target_steps=1)
    ds[0]  # the parent opens a handle first: forked workers must not reuse it
    loader = DataLoader(ds, batch_size=8, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    serial = torch.stack([ds[i]["input"] for i in range(len(ds))])
    torch.testing.assert_close(torch.cat([b["input"] for b in batches]), serial, rtol=0, atol=0)


def test_normalisation_needs_stats_then_uses_them(b003_two_run_cube, tmp_path):
    import shutil

    from astrohpc.data.stats import run_stats

    cube = tmp_path / "cube.h5"
    shutil.copy(b003_two_run_cube, cube)
    with pytest.raises(DataError, match="astrohpc data stats"):
        WindowDataset(cube, normalize=True)
    stats = run_stats(cube)
    ds = WindowDataset(cube, input_steps=1, target_steps=0, normalize=True)
    x = torch.cat([ds[i]["input"] for i in range(len(ds))]).double()
    assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(unbiased=False)) - 1.0) < 1e-5
    assert stats["fields"]["count"][0] == 2 * 100 * 64 * 128


def test_training_loop_smoke_one_rank(b003_two_run_cube, tmp_path):
    """A tiny linear model trains a few steps on the loader (shapes and plumbing, no accuracy claim)."""
    import shutil

    from astrohpc.data.stats import run_stats

    cube = tmp_path / "cube.h5"
    shutil.copy(b003_two_run_cube, cube)
    run_stats(cube)
    ds = WindowDataset(cube, input_steps=1, target_steps=1, normalize=True)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, kernel_size=3, padding=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for step, batch in enumerate(DataLoader(ds, batch_size=4, shuffle=True)):
        loss = torch.nn.functional.mse_loss(model(batch["input"][:, 0]), batch["target"][:, 0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step == 5:
            break
    assert len(losses) == 6 and all(np.isfinite(losses))


def test_raw_chunk_reads_equal_hdf5_reads(b003_two_run_cube):
    from astrohpc.data.cube import LazyCube

    raw, via_hdf5 = LazyCube(b003_two_run_cube), LazyCube(b003_two_run_cube, raw_chunks=False)
    raw.fields()
    assert raw._offsets is not None and via_hdf5.fields() is not None and via_hdf5._offsets is None
    for run, t0, steps in [(0, 0, 3), (1, 97, 3), (1, 50, 1)]:
        np.testing.assert_array_equal(raw.read(run, t0, steps), via_hdf5.read(run, t0, steps))
    raw.close()
    via_hdf5.close()


def test_unwritten_steps_read_as_nan_fill(geocat, tmp_path):
    from astrohpc.data.convert import convert
    from astrohpc.data.cube import LazyCube

    cube = convert([geocat / "NCEP_06_climo.nc", geocat / "b003_TS_200-299.nc"], tmp_path / "c.h5", variables=["TS"])
    reader = LazyCube(cube)
    assert np.isnan(reader.read(0, 0, 2)[1]).all()  # run 0 has one step; step 1 was never written
    assert np.isfinite(reader.read(0, 0, 1)).all()
    reader.close()
    assert len(WindowDataset(cube, 1, 1)) == 99  # windows only where both steps exist


def test_from_settings_uses_the_data_section(b003_two_run_cube):
    from astrohpc.data.settings import DataSettings

    ds = WindowDataset.from_settings(DataSettings(cube=str(b003_two_run_cube), input_steps=3, target_steps=2, stride=5))
    assert len(ds) == 2 * len(range(0, 96, 5)) and ds[1]["t0"] == 5 and ds[0]["target"].shape[0] == 2
    with pytest.raises(DataError, match="no cube given"):
        WindowDataset.from_settings(DataSettings())
