"""Statistics: Chan/Welford merges equal a serial float64 computation (area-weighted by default);
stored in a sidecar file that never touches the cube. Cubes: the cached ExoPlaSim smoke runs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from astrohpc.data.stats import Moments, compute_stats, local_moments, rank_block, run_stats


def test_chan_merge_of_uneven_blocks_equals_one_pass():
    rng = np.random.default_rng(0)
    x = rng.normal(300.0, 20.0, size=(3, 1000))
    x[1, ::7] = np.nan  # skipped
    merged = Moments.empty(3)
    for lo, hi in [(0, 1), (1, 400), (400, 401), (401, 1000)]:
        merged = merged.merge(Moments.of(x[:, lo:hi]))
    s = merged.summary()
    np.testing.assert_allclose(s["mean"], np.nanmean(x, axis=1), rtol=1e-13)
    np.testing.assert_allclose(s["std"], np.nanstd(x, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(s["min"], np.nanmin(x, axis=1))
    assert s["count"].tolist() == [1000, 1000 - 143, 1000]


def test_rank_blocks_cover_everything_once():
    blocks = [list(rank_block(10, r, 3)) for r in range(3)]
    assert blocks == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]


def cube_fields(path) -> np.ndarray:
    """float64 [run, time, channel, lat, lon] of every valid step (the cube has no unwritten ones)."""
    from astrohpc.data.cube import LazyCube, read_meta

    meta, reader = read_meta(path), LazyCube(path)
    try:
        assert len(set(meta.time_count.tolist())) == 1
        return np.stack([reader.read(r, 0, int(meta.time_count[r])) for r in range(meta.shape[0])]).astype(np.float64)
    finally:
        reader.close()


def weighted_mean_std(x: np.ndarray, w: np.ndarray, axes: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Serial float64 weighted mean and population std of x over `axes`, weights broadcast onto x."""
    w = np.broadcast_to(w, x.shape)
    mean = (w * x).sum(axis=axes) / w.sum(axis=axes)
    dev = x - np.expand_dims(mean, axes)
    return mean, np.sqrt((w * dev * dev).sum(axis=axes) / w.sum(axis=axes))


def test_cube_stats_equal_serial_float64_and_split_blocks_agree(smoke_cube):
    from astrohpc.data.cube import read_meta

    x = cube_fields(smoke_cube)  # [run, time, channel, lat, lon]
    area = read_meta(smoke_cube).area_weight  # [lat, lon], sums to 1
    axes = (0, 1, 3, 4)
    diffs = np.diff(x, axis=1)  # within each run only
    stats = compute_stats(smoke_cube)
    assert stats["weighting"] == "area"
    for part, values in (("fields", x), ("diffs", diffs)):
        mean, std = weighted_mean_std(values, area, axes)
        np.testing.assert_allclose(stats[part]["mean"], mean, rtol=1e-12, atol=1e-12 * np.abs(values).max())
        np.testing.assert_allclose(stats[part]["std"], std, rtol=1e-12, atol=1e-12 * np.abs(values).max())
        np.testing.assert_array_equal(stats[part]["min"], values.min(axis=axes))
        np.testing.assert_array_equal(stats[part]["max"], values.max(axis=axes))
    assert stats["fields"]["count"][0] == 2 * 5 * 32 * 64 and stats["diffs"]["count"][0] == 2 * 4 * 32 * 64
    run_mean, _ = weighted_mean_std(x[1], area, (0, 2, 3))
    np.testing.assert_allclose(stats["runs"]["fields"]["mean"][1], run_mean, rtol=1e-12, atol=1e-12 * np.abs(x).max())
    # the area weighting matters on this grid, and weighting="none" is the plain float64 result
    plain = compute_stats(smoke_cube, weighting="none")
    np.testing.assert_allclose(plain["fields"]["mean"], x.mean(axis=axes), rtol=1e-12, atol=1e-12 * np.abs(x).max())
    np.testing.assert_allclose(plain["diffs"]["std"], diffs.std(axis=axes), rtol=1e-12,
                               atol=1e-12 * np.abs(diffs).max())
    ts = read_meta(smoke_cube).channel("ts")
    assert abs(plain["fields"]["mean"][ts] - stats["fields"]["mean"][ts]) > 1.0  # K: cold poles count less
    # the merge the ranks do, done here in one process over 3 uneven blocks of steps
    parts = [local_moments(smoke_cube, r, 3) for r in range(3)]
    channels = x.shape[2]
    fields, d = Moments.empty(channels), Moments.empty(channels)
    for part in parts:
        for pf, pd in part.values():
            fields, d = fields.merge(pf), d.merge(pd)
    np.testing.assert_allclose(d.summary()["std"], stats["diffs"]["std"], rtol=1e-12)
    np.testing.assert_allclose(fields.summary()["mean"], stats["fields"]["mean"], rtol=1e-12)


def test_stats_are_stored_beside_the_cube_replaced_and_leave_it_alone(smoke_cube, smoke_gcm_run, tmp_path):
    from astrohpc.checksum import sha256_file
    from astrohpc.data.convert import convert_run_dirs
    from astrohpc.data.cube import read_meta
    from astrohpc.errors import DataError

    cube = tmp_path / "cube.h5"
    shutil.copy(smoke_cube, cube)
    before = sha256_file(cube)
    assert read_meta(cube).stats is None
    first = run_stats(cube)
    stored = read_meta(cube).stats
    for part in ("fields", "diffs"):
        for q in ("count", "mean", "std", "min", "max"):
            np.testing.assert_array_equal(stored[part][q], first[part][q])
    assert stored["weighting"] == "area"
    run_stats(cube, weighting="none")  # replaces the previous statistics
    assert read_meta(cube).stats["weighting"] == "none"
    assert sha256_file(cube) == before  # the cube itself was never written
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    # a reconverted cube at the same path never picks up the old cube's statistics
    convert_run_dirs([smoke_gcm_run], cube)
    with pytest.raises(DataError, match="statistics of another cube"):
        read_meta(cube)
    # ... and `astrohpc data stats` replaces the stale sidecar (it never reads it)
    run_stats(cube)
    assert read_meta(cube).stats["weighting"] == "area"
