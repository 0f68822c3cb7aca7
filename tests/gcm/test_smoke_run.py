"""End to end: a real 5-day ExoPlaSim run (configs/gcm/smoke.yaml) and its summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from tests_gcm_paths import SMOKE_CONFIG

from astrohpc.checksum import sha256_file
from astrohpc.config import load_config
from astrohpc.gcm.run import run_simulation

pytestmark = pytest.mark.exoplasim


def test_summary_is_finished_and_complete(smoke_gcm_run):
    summary = json.loads((smoke_gcm_run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["model"] == "exoplasim" and summary["model_version"] == "3.4.2"
    assert summary["simulated_days"] == 5
    assert summary["wall_time_s"] > 0 and summary["core_seconds_per_simulated_day"] > 0
    assert summary["planet"]["instellation_W_m2"] == 1361.0 and summary["gcm"]["days"] == 5
    assert summary["provenance"]["config_hash"]
    assert {f["kind"] for f in summary["files"]} == {"means", "snapshots", "restart"}
    for f in summary["files"]:
        path = smoke_gcm_run / f["path"]
        assert path.stat().st_size == f["bytes"] and sha256_file(path) == f["sha256"]
    assert (smoke_gcm_run / "config.yaml").is_file() and (smoke_gcm_run / "provenance.json").is_file()
    assert not (smoke_gcm_run / "work").exists(), "finalize(clean=True) should remove the raw files"


def test_netcdf_variables_dims_and_physical_surface_temperature(smoke_gcm_run):
    with xr.open_dataset(smoke_gcm_run / "output" / "exoplasim.nc", decode_times=False) as means:
        for name in ("ts", "tas", "ps", "pr", "rlut", "ta", "ua", "va", "hus"):
            assert name in means, name
        assert means.ts.dims == ("time", "lat", "lon")
        assert means.ta.dims == ("time", "lev", "lat", "lon")
        assert (means.sizes["lat"], means.sizes["lon"], means.sizes["lev"]) == (32, 64, 10)
        assert means.sizes["time"] == 1  # one 5-day mean
        ts = means.ts.values
        assert np.isfinite(ts).all() and 150.0 < ts.min() and ts.max() < 350.0
        assert means.ts.attrs["units"] == "K"
        assert means.lat.values[0] > means.lat.values[-1]  # ExoPlaSim writes latitude north -> south
        ps = means.ps.values  # hPa, about 1 bar for the Earth preset
        assert 900 < float(np.mean(ps)) < 1100
    with xr.open_dataset(smoke_gcm_run / "output" / "exoplasim_snapshot.nc", decode_times=False) as snaps:
        assert snaps.sizes["time"] == 5  # daily snapshots
        assert set(snaps.data_vars) >= {"ts", "tas", "ps", "pr", "ta", "ua", "va", "hus"}
        assert 150.0 < float(snaps.ts.min()) and float(snaps.ts.max()) < 350.0


def test_rerun_of_a_finished_run_is_skipped(smoke_gcm_run):
    before = (smoke_gcm_run / "summary.json").stat().st_mtime_ns
    cfg = load_config(SMOKE_CONFIG)
    summary = run_simulation(cfg, smoke_gcm_run)
    assert summary["status"] == "finished"
    assert (smoke_gcm_run / "summary.json").stat().st_mtime_ns == before


def test_a_failed_run_says_why_and_is_never_finished(tmp_path, smoke_gcm_run):
    from astrohpc.errors import GCMError

    cfg = load_config(SMOKE_CONFIG, [f"gcm.restart_file={tmp_path / 'nope'}"])
    with pytest.raises(GCMError, match="restart_file"):
        run_simulation(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "restart_file" in summary["reason"]


def test_a_run_branches_from_a_restart_file(tmp_path, smoke_gcm_run):
    restart = smoke_gcm_run / "output" / "exoplasim_restart"
    cfg = load_config(SMOKE_CONFIG, [f"gcm.restart_file={restart}", "gcm.snapshot_interval_days=0",
                                     "gcm.keep_restart=false"])
    summary = run_simulation(cfg, tmp_path / "branch")
    assert summary["status"] == "finished"
    assert [f["kind"] for f in summary["files"]] == ["means"]
