"""The reader benchmark compares like with like: every method reads the same windows and the same
bytes (checked by digests), shuffled orders are permutations, figures are medians with min and max.

The cube is made here from two small NetCDF files written by the test (latitude north -> south,
so the baselines must flip it as the converter does): fine for byte equality, not for claiming
anything about ExoPlaSim. No timing is asserted.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from astrohpc.data import bench
from astrohpc.data.cube import LazyCube, read_meta

STEPS = (6, 5)  # time steps of the two runs


def _write_run(path: Path, steps: int, seed: int) -> None:
    import netCDF4

    rng = np.random.default_rng(seed)
    with netCDF4.Dataset(path, "w") as ds:
        for name, size in (("time", None), ("lev", 3), ("lat", 8), ("lon", 16)):
            ds.createDimension(name, size)
        for name, dims, units, values in (
                ("time", ("time",), "days since 2000-01-01", np.arange(steps, dtype=np.float64)),
                ("lat", ("lat",), "degrees_north", np.linspace(80.0, -80.0, 8)),
                ("lon", ("lon",), "degrees_east", np.arange(16) * 22.5),
                ("lev", ("lev",), "1", np.array([0.2, 0.5, 0.9])),
                ("ts", ("time", "lat", "lon"), "K", rng.normal(280.0, 5.0, (steps, 8, 16))),
                ("ta", ("time", "lev", "lat", "lon"), "K", rng.normal(250.0, 5.0, (steps, 3, 8, 16)))):
            var = ds.createVariable(name, "f8" if name == "time" else "f4", dims)
            var.units = units
            if name == "lev":
                var.standard_name = "atmosphere_sigma_coordinate"
            var[:] = values


@pytest.fixture(scope="module")
def tiny_cube(tmp_path_factory) -> Path:
    from astrohpc.data.convert import convert

    folder = tmp_path_factory.mktemp("bench")
    files = []
    for run, steps in enumerate(STEPS):
        files.append(folder / f"run{run}.nc")
        _write_run(files[-1], steps, seed=run)
    return convert(files, folder / "cube.h5")


def test_every_method_reads_the_readers_bytes(tiny_cube):
    meta = read_meta(tiny_cube)
    windows = bench.bench_windows(meta.time_count, 1, 1)
    assert len(windows) == sum(s - 1 for s in STEPS)
    result = bench.in_process(tiny_cube, meta, windows, 1, 1, repeats=1, epochs=1, seed=0)
    assert result["skipped"] == {}
    methods = result["same_values"]["methods"]
    assert set(methods) == {"dataset", "preadv", "netcdf4", "xarray", "sequential"}
    for name, check in methods.items():
        assert check["identical"] and check["windows_identical"] == len(windows), name
        if "sum" in check:
            assert check["sum"] == result["same_values"]["sum"], name
    # the reference digests are the reader's own windows
    reader = LazyCube(tiny_cube)
    run, t0 = windows[3].tolist()
    assert result["reference_digests"][3] == bench.window_digest(reader.read(run, t0, 2))
    reader.close()


def test_a_baseline_reading_other_values_is_caught(tiny_cube):
    meta = read_meta(tiny_cube)
    windows = bench.bench_windows(meta.time_count, 1, 1)
    plan = bench.source_plan(tiny_cube, meta, 2)
    assert set(plan.flip_lat.values()) == {True}  # the files run north -> south, the cube south -> north
    reader = LazyCube(tiny_cube)
    reference, _ = bench.digest_windows(bench.by_index(reader, windows.tolist(), 2), list(range(len(windows))))
    reader.close()
    plan.flip_lat = {run: False for run in plan.flip_lat}  # forget the flip: same bytes, other order
    wrong = bench.NetCDF4Windows(plan)
    digests, _ = bench.digest_windows(bench.by_index(wrong, windows.tolist(), 2), list(range(len(windows))))
    wrong.close()
    check = bench.compare(reference, digests)
    assert not check["identical"] and check["windows_identical"] == 0


def test_sequential_reads_each_distinct_chunk_once_in_file_order(tiny_cube):
    meta = read_meta(tiny_cube)
    windows = bench.bench_windows(meta.time_count, 1, 1)
    offsets = bench.fields_offsets(tiny_cube)
    for block in (1, 4):
        spans = bench.sequential_spans(offsets, windows, 2, meta.chunk_bytes, block)
        chunks = [c for s in spans for c in s.chunks]
        assert sorted(chunks) == sorted({(r, t) for r, n in enumerate(STEPS) for t in range(n)})
        starts = [offsets[c] for c in chunks]
        assert starts == sorted(starts) and all(len(s.chunks) <= block for s in spans)


def test_shuffled_orders_are_permutations_and_shards_disjoint():
    n = 23
    orders = bench.epoch_orders(n, epochs=3, shuffled=True, seed=7)
    assert all(sorted(o) == list(range(n)) for o in orders)
    assert orders[0] != list(range(n)) and orders[0] != orders[1]  # shuffled, and anew each epoch
    assert bench.epoch_orders(n, 1, shuffled=False) == [list(range(n))]
    shards = [bench.epoch_orders(n, 1, True, seed=7, rank=r, size=2)[0] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == n // 2 and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(orders[0][: 2 * (n // 2)])


def test_summaries_are_median_min_max():
    repeats = [{"seconds": s, "samples": 10, "bytes": 1000} for s in (1.0, 2.0, 4.0)]
    figures = bench.summarize(repeats)
    assert figures["samples_s"] == {"median": 5.0, "min": 2.5, "max": 10.0, "n": 3}
    assert figures["GB_s"]["median"] == pytest.approx(5e-7)


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="no mpirun")
def test_record_checks_every_method_and_carries_spreads(tiny_cube, tmp_path, monkeypatch):
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT", "1")
    monkeypatch.setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    record = bench.run_benchmark(tiny_cube, 1, 1, ranks=2, passes=2, target_bytes=1e5, dataloader_epochs=2)
    json.dumps(record)  # serialisable as written
    assert record["same_values"]["all_identical"]
    methods = record["same_values"]["methods"]
    for name in ("mpirun_1_independent", "mpirun_2_independent", "mpirun_2_collective", "mpirun_2_sequential",
                 *(f"dataloader_{setting}" for setting in bench.DATALOADER_SETTINGS)):
        assert methods[name]["identical"], name
    for order in ("shuffled", "in_order"):
        for figures in record["in_process"][order].values():
            assert set(figures["samples_s"]) == {"median", "min", "max", "n"} and figures["samples_s"]["n"] == 2
    per_rank = record["mpirun"]["2"]["independent"]["shuffled"]["per_rank"]
    assert len(per_rank) == 2 and all(set(r["samples_s"]) >= {"median", "min", "max"} for r in per_rank)
    for name in bench.DATALOADER_SETTINGS:
        assert record["dataloader"][name]["samples_s"]["n"] == 2
    assert set(record["reader"]) == {"independent_1", "independent_2", "collective_1", "collective_2"}
    assert set(record["targets_met"]) == set(bench.TARGETS)
