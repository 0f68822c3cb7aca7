"""Statistics: Chan/Welford merges equal a serial float64 computation; stored safely in the cube."""

from __future__ import annotations

import shutil

import h5py
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


@pytest.mark.shared
def test_cube_stats_equal_serial_float64_and_split_blocks_agree(b003_two_run_cube):
    with h5py.File(b003_two_run_cube, "r") as f:
        x = f["fields"][()].astype(np.float64)  # [run, time, channel, lat, lon]
    serial_mean = x.mean(axis=(0, 1, 3, 4))
    serial_std = x.std(axis=(0, 1, 3, 4))
    diffs = np.diff(x, axis=1)  # within each run only
    stats = compute_stats(b003_two_run_cube)
    np.testing.assert_allclose(stats["fields"]["mean"], serial_mean, rtol=1e-12)
    np.testing.assert_allclose(stats["fields"]["std"], serial_std, rtol=1e-12)
    np.testing.assert_allclose(stats["diffs"]["mean"], diffs.mean(axis=(0, 1, 3, 4)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(stats["diffs"]["std"], diffs.std(axis=(0, 1, 3, 4)), rtol=1e-12)
    assert stats["diffs"]["count"][0] == 2 * 99 * 64 * 128
    # the merge the ranks do, done here in one process over 3 uneven blocks
    parts = [local_moments(b003_two_run_cube, r, 3) for r in range(3)]
    fields, d = parts[0]
    for pf, pd in parts[1:]:
        fields, d = fields.merge(pf), d.merge(pd)
    np.testing.assert_allclose(d.summary()["std"], stats["diffs"]["std"], rtol=1e-12)
    np.testing.assert_allclose(fields.summary()["mean"], serial_mean, rtol=1e-12)


@pytest.mark.shared
def test_stats_are_stored_replaced_and_leave_the_fields_alone(b003_two_run_cube, tmp_path):
    cube = tmp_path / "cube.h5"
    shutil.copy(b003_two_run_cube, cube)
    with h5py.File(cube, "r") as f:
        before = f["fields"][0, :3]
    run_stats(cube)
    with h5py.File(cube, "r+") as f:
        first = f["stats/fields/mean"][()]
        f.create_group("_stats_tmp_999")  # what an interrupted run would leave behind
    run_stats(cube)
    with h5py.File(cube, "r") as f:
        assert [n for n in f if n.startswith("_stats")] == []
        np.testing.assert_array_equal(f["stats/fields/mean"][()], first)
        np.testing.assert_array_equal(f["fields"][0, :3], before)
        assert f["stats"].attrs["std"] == "population (ddof=0)"
