"""The torch Dataset of windows: values, run boundaries, sharding, fork-safe workers, normalisation.

Cubes: the cached ExoPlaSim smoke runs (two 5-day runs at 1361 and 1300 W m-2), converted by
the project's converter (tests/data/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from astrohpc.data.dataset import WindowDataset, shard_indices, window_index
from astrohpc.errors import DataError


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


def source_window(nc_path, meta, t0: int, steps: int) -> np.ndarray:
    """float32 [steps, C, lat, lon] of the cube's channels read from ExoPlaSim's own NetCDF file
    with netCDF4: each channel's variable at its sigma level, latitude flipped to south -> north."""
    import netCDF4

    with netCDF4.Dataset(nc_path) as src:
        sigma = src["lev"][:]
        planes = []
        for c, name in enumerate(meta.variables):
            var = src[name]
            assert var.units == meta.units[c], f"{name}: cube units {meta.units[c]!r}, source {var.units!r}"
            if meta.level_kinds[c] == "surface":
                planes.append(var[t0:t0 + steps])
            else:
                (k,) = np.flatnonzero(np.isclose(sigma, meta.levels[c], rtol=1e-6))
                planes.append(var[t0:t0 + steps, k])
    return np.stack(planes, axis=1)[:, :, ::-1, :].astype(np.float32)


def test_samples_equal_the_cube_and_the_source(smoke_cube, smoke_gcm_runs):
    from smoke_files import snapshot_file

    ds = WindowDataset(smoke_cube, input_steps=2, target_steps=1)
    meta = ds.meta
    assert meta.shape[:2] == (2, 5) and meta.shape[2] >= 44 and meta.shape[3:] == (32, 64)
    assert len(ds) == 2 * 3
    sample = ds[3 + 1]  # run 1, t0 = 1
    assert sample["run"] == 1 and sample["t0"] == 1
    assert sample["input"].shape == (2, meta.shape[2], 32, 64) and sample["target"].shape == (1, meta.shape[2], 32, 64)
    expect = source_window(snapshot_file(smoke_gcm_runs[1]), meta, 1, 3)
    np.testing.assert_array_equal(sample["input"].numpy(), expect[:2])
    np.testing.assert_array_equal(sample["target"].numpy(), expect[2:])
    # the other run's values differ: a mix-up of runs cannot pass
    assert not np.array_equal(ds[1]["input"].numpy(), sample["input"].numpy())
    np.testing.assert_allclose(sample["time"].numpy(), [2.0, 3.0, 4.0])  # daily snapshots, days since the start
    names = ds.param_norm["names"]
    flux = names.index("instellation_W_m2")
    z0, z1 = ds[0]["params"].numpy(), sample["params"].numpy()
    assert z0[flux] == pytest.approx(1.0) and z1[flux] == pytest.approx(-1.0)  # 1361 vs 1300 W m-2, standardised
    np.testing.assert_array_equal(np.delete(z0, flux), np.delete(z1, flux))  # the runs share everything else


def test_dataloader_workers_open_their_own_handles(smoke_cube):
    ds = WindowDataset(smoke_cube, input_steps=1, target_steps=1)
    ds[0]  # the parent opens a handle first: forked workers must not reuse it
    loader = DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="fork")
    batches = list(loader)
    serial = torch.stack([ds[i]["input"] for i in range(len(ds))])
    torch.testing.assert_close(torch.cat([b["input"] for b in batches]), serial, rtol=0, atol=0)


def test_normalisation_needs_stats_then_uses_them(smoke_cube, tmp_path):
    import shutil

    from astrohpc.data.cube import read_meta
    from astrohpc.data.stats import run_stats

    cube = tmp_path / "cube.h5"
    shutil.copy(smoke_cube, cube)
    with pytest.raises(DataError, match="astrohpc data stats"):
        WindowDataset(cube, normalize=True)
    stats = run_stats(cube)
    np.testing.assert_array_equal(read_meta(cube).stats["fields"]["mean"], stats["fields"]["mean"])
    ds = WindowDataset(cube, input_steps=1, target_steps=0, normalize=True)
    x = torch.cat([ds[i]["input"] for i in range(len(ds))]).double().numpy()  # [run * time, C, lat, lon]
    # the statistics are area-weighted: weighted over the sphere, every channel is standardised
    w = ds.meta.area_weight[None, None] * np.ones_like(x)
    mean = (w * x).sum(axis=(0, 2, 3)) / w.sum(axis=(0, 2, 3))
    std = np.sqrt((w * (x - mean[None, :, None, None]) ** 2).sum(axis=(0, 2, 3)) / w.sum(axis=(0, 2, 3)))
    # float32 arithmetic: (x − mean) loses |mean| / std · eps32 (ta at the tropopause: std 0.02 K
    # about a mean of 215 K); a numerically constant channel (std <= NEGLIGIBLE_STD) is centred, not scaled
    ratio = np.abs(stats["fields"]["mean"] / np.where(stats["fields"]["std"] > 0, stats["fields"]["std"], 1.0))
    tol = 1e-5 + 8 * np.finfo(np.float32).eps * ratio
    from astrohpc.data.stats import NEGLIGIBLE_STD

    usable = stats["fields"]["std"] > NEGLIGIBLE_STD
    assert np.all(np.abs(mean - 0.0)[usable] <= tol[usable]), (mean, tol)
    assert np.all(np.abs(std - 1.0)[usable] <= tol[usable]), (std, tol)
    assert stats["fields"]["count"][0] == 2 * 5 * 32 * 64


def test_training_loop_smoke_one_rank(smoke_cube, tmp_path):
    """A tiny conv model trains a few steps on the loader (shapes and plumbing, no accuracy claim)."""
    import shutil

    from astrohpc.data.stats import run_stats

    cube = tmp_path / "cube.h5"
    shutil.copy(smoke_cube, cube)
    run_stats(cube)
    ds = WindowDataset(cube, input_steps=1, target_steps=1, normalize=True)
    channels = ds.meta.shape[2]
    torch.manual_seed(0)
    model = torch.nn.Conv2d(channels, channels, kernel_size=3, padding=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for batch in DataLoader(ds, batch_size=2, shuffle=True):
        loss = torch.nn.functional.mse_loss(model(batch["input"][:, 0]), batch["target"][:, 0])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert len(losses) == 4 and all(np.isfinite(losses))


def test_raw_chunk_reads_equal_hdf5_reads(smoke_cube):
    from astrohpc.data.cube import LazyCube

    raw, via_hdf5 = LazyCube(smoke_cube), LazyCube(smoke_cube, raw_chunks=False)
    raw.fields()
    assert raw._offsets is not None and via_hdf5.fields() is not None and via_hdf5._offsets is None
    for run, t0, steps in [(0, 0, 3), (1, 2, 3), (1, 4, 1)]:
        np.testing.assert_array_equal(raw.read(run, t0, steps), via_hdf5.read(run, t0, steps))
    raw.close()
    via_hdf5.close()


def test_unwritten_steps_read_as_nan_fill(smoke_gcm_run, tmp_path):
    from smoke_files import copy_run, subset_netcdf

    from astrohpc.data.convert import convert_run_dirs
    from astrohpc.data.cube import LazyCube

    two_days = copy_run(smoke_gcm_run, tmp_path / "two-days", lambda nc: subset_netcdf(nc, {"time": slice(0, 2)}))
    cube = convert_run_dirs([two_days, smoke_gcm_run], tmp_path / "c.h5")
    reader = LazyCube(cube)
    assert np.isnan(reader.read(0, 0, 3)[2]).all()  # run 0 has two steps; step 2 was never written
    assert np.isfinite(reader.read(0, 0, 2)).all()
    reader.close()
    assert len(WindowDataset(cube, 1, 1)) == 1 + 4  # windows only where both steps exist


def test_from_settings_uses_the_data_section(smoke_cube):
    from astrohpc.data.settings import DataSettings

    ds = WindowDataset.from_settings(DataSettings(cube=str(smoke_cube), input_steps=2, target_steps=1, stride=2))
    assert len(ds) == 2 * len(range(0, 3, 2)) and ds[1]["t0"] == 2 and ds[0]["target"].shape[0] == 1
    with pytest.raises(DataError, match="no cube given"):
        WindowDataset.from_settings(DataSettings())
