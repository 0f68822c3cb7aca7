"""`astrohpc predict` with an emulator, on the real smoke-run cube (2 ExoPlaSim runs, 5 daily states).

A tiny U-Net emulator is trained on one run; the other run's first state is rolled out. Checked:
the trajectory equals the rollout engine's (the parity and rollout studies' engine) step for step
and the parity study's own loop (GCM forcing) to float32 rounding of the insolation; the file opens
in xarray with named dimensions and units; an interrupted request continues to the same file; a
GCM run folder as the initial state gives the cube run's trajectory; the training cube moved away
stops nothing; an override outside the envelope sets the flag; bad input gets one clear error each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import astrohpc
from astrohpc.config import Config, from_dict
from astrohpc.data.cube import read_meta
from astrohpc.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
STEPS = 4


@pytest.fixture(scope="module")
def trained(physics_cube, tmp_path_factory):
    """(export path, cube copy) of a tiny emulator trained on run 0 of a copy of the physics cube."""
    from astrohpc.train.trainer import train

    root = tmp_path_factory.mktemp("predict-emulator")
    cube = root / "cube" / "physics.h5"
    cube.parent.mkdir()
    for src in (physics_cube, physics_cube.with_suffix(".stats.h5")):
        shutil.copy(src, cube.parent / src.name)
    meta = read_meta(cube)
    cfg = from_dict(Config, {
        "run": {"root": str(root), "name": "em", "seed": 1},
        "model": {"task": "emulator", "architecture": "unet", "unet": {"width": 4, "depth": 1, "dropout": 0.0},
                  "physics": {"correctors": ["dry_mass", "humidity"]}},
        "train": {"cube": str(cube), "validation_runs": [meta.run_names[1]], "epochs": 1, "batch_size": 2,
                  "checkpoint_every": 0, "log_every": 1, "threads": 1}}, source="test")
    train(cfg)
    return root / "em" / "export" / "last.pt", cube


def _engine_states(export, cube, run, steps):
    """The rollout engine's states of `run` from time index 0 (what the rollout study runs)."""
    from astrohpc.studies.rollout import initial_conditions, rollout
    from astrohpc.train.export import load_exported

    model, info = load_exported(export)
    inputs = initial_conditions(cube, model, info["param_norm"], [(run, 0)])
    states = [inputs["x0"][0].numpy().copy()]
    rollout(model, inputs["x0"], inputs["params"], inputs["static"], inputs["planet"], inputs["forcing"], steps,
            segment=1, on_segment=lambda st: states.append(st.x[0].numpy().copy()))
    return np.stack(states), model, info


def _channels(ds, meta, channels):
    """[time, C, lat, lon] back out of the file's variables, in the model's channel order."""
    out = []
    for c in channels:
        var, level = meta.variables[c], meta.levels[c]
        field = ds[var]
        if np.isfinite(level):
            field = field.sel(lev=level, method="nearest")
        out.append(field.values)
    return np.stack(out, axis=1)


def test_rollout_equals_the_engine_and_the_parity_loop(trained, tmp_path):
    export, cube = trained
    meta = read_meta(cube)
    em = astrohpc.load_surrogate(export)
    assert em.kind == "emulator"
    ds = em.rollout({"cube": str(cube), "run": meta.run_names[1]}, steps=STEPS)
    truth, model, info = _engine_states(export, cube, 1, STEPS)
    got = _channels(ds, em.meta, em.channels)
    assert got.shape == truth.shape and np.all(np.isfinite(got))
    np.testing.assert_array_equal(got, truth.astype(np.float32))
    assert ds["time"].values.tolist() == pytest.approx(meta.time_days[1, :STEPS + 1].tolist())
    assert ds.attrs["diverged_at_step"] == -1
    # one training run at 1361 W m-2: this run's 1300 lies outside the training envelope, and says so
    assert ds.attrs["ood_flag"] == 1 and "instellation_W_m2 = 1300" in ds.attrs["ood_reason"]

    # the parity study's loop feeds the GCM's stored rsdt instead of the orbit's: equal to its rounding
    from astrohpc.studies.parity import _Run, emulate

    view = _Run(info, meta)
    params, static, planet = view.inputs(1)
    states = view.states(1)
    parity, _ = emulate(model, states[:STEPS + 1], params, static, planet)
    scale = np.abs(parity).max(axis=(0, 2, 3))[None, :, None, None] + 1e-30
    assert np.max(np.abs(got - parity) / scale) < 1e-4


def test_file_restart_netcdf_init_moved_cube_and_envelope(trained, tmp_path, smoke_gcm_runs):
    export, cube = trained
    meta = read_meta(cube)
    request = tmp_path / "emulator.yaml"
    request.write_text(f"predict:\n  model: {export}\n  init: {{cube: {cube}, run: {meta.run_names[1]}}}\n"
                       f"  steps: {STEPS}\n  output_every: 2\n  segment_steps: 2\n  threads: 1\n")
    done = subprocess.run([sys.executable, "-m", "astrohpc", "predict", str(request), "-o", str(tmp_path / "a.nc")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["states"] == STEPS // 2 + 1 and record["ood_flags"] == [1]
    assert "outside the training envelope" in done.stderr
    with xr.open_dataset(tmp_path / "a.nc") as ds:
        assert ds["ta"].dims == ("time", "lev", "lat", "lon") and ds["ts"].dims == ("time", "lat", "lon")
        assert ds["ts"].attrs["units"] == "K" and ds["ts"].attrs["standard_name"] == "surface_temperature"
        assert ds["lev"].attrs["standard_name"] == "atmosphere_sigma_coordinate"
        assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["model_export"] == str(export)
        first = ds.load()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the request ran: the same reduction order, the same bits
    try:
        full, _, _ = _engine_states(export, cube, 1, STEPS)
    finally:
        torch.set_num_threads(threads)
    em = astrohpc.load_surrogate(export)
    np.testing.assert_array_equal(_channels(first, em.meta, em.channels), full[::2].astype(np.float32))

    # killed after the first saved segment: the same request continues to the same file
    from astrohpc.predict import emulator as module

    original = module._Sink.save

    def save_then_die(self, state):
        original(self, state)
        raise KeyboardInterrupt

    module._Sink.save = save_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            em.rollout({"cube": str(cube), "run": meta.run_names[1]}, STEPS, output_every=2, segment_steps=2,
                       output=tmp_path / "b.nc")
    finally:
        module._Sink.save = original
    assert (tmp_path / "b.nc.partial").is_file() and (tmp_path / "b.nc.restart.pt").is_file()
    assert not (tmp_path / "b.nc").exists()
    again = em.rollout({"cube": str(cube), "run": meta.run_names[1]}, STEPS, output_every=2, segment_steps=2,
                       output=tmp_path / "b.nc")
    np.testing.assert_array_equal(_channels(again, em.meta, em.channels), _channels(first, em.meta, em.channels))
    assert not (tmp_path / "b.nc.restart.pt").exists()
    with pytest.raises(ConfigError, match="exists"):
        em.rollout({"cube": str(cube), "run": meta.run_names[1]}, STEPS, output=tmp_path / "b.nc")

    # the GCM's own run folder as the initial state: converted here, the cube run's trajectory
    from_run = em.rollout({"netcdf": str(smoke_gcm_runs[1])}, steps=STEPS)
    np.testing.assert_array_equal(_channels(from_run, em.meta, em.channels), full.astype(np.float32))

    # the training cube moved away: loading and predicting from the run folder still work
    moved = tmp_path / "moved"
    shutil.move(str(cube.parent), str(moved))
    try:
        em2 = astrohpc.load_surrogate(export)
        twice = em2.rollout({"netcdf": str(smoke_gcm_runs[1])}, steps=STEPS)
        np.testing.assert_array_equal(_channels(twice, em.meta, em.channels), full.astype(np.float32))
        # the flag follows the override: the training run's instellation clears it, 2000 W m-2 sets it
        inside = em2.rollout({"netcdf": str(smoke_gcm_runs[1])}, steps=2, params={"instellation_W_m2": 1361.0})
        out = em2.rollout({"netcdf": str(smoke_gcm_runs[1])}, steps=2, params={"instellation_W_m2": 2000.0})
        assert inside.attrs["ood_flag"] == 0 and inside.attrs["ood_reason"] == ""
        assert out.attrs["ood_flag"] == 1 and "instellation_W_m2 = 2000" in out.attrs["ood_reason"]
    finally:
        shutil.move(str(moved), str(cube.parent))


def test_bad_emulator_input_gets_one_clear_error(trained, tmp_path, smoke_gcm_runs):
    export, cube = trained
    meta = read_meta(cube)
    em = astrohpc.load_surrogate(export)
    init = {"cube": str(cube), "run": meta.run_names[1]}
    with pytest.raises(ConfigError, match="unknown parameter banana"):
        em.rollout(init, 2, params={"banana": 1.0})
    with pytest.raises(ConfigError, match="no run 'task-9999'"):
        em.rollout({"cube": str(cube), "run": "task-9999"}, 2)
    with pytest.raises(ConfigError, match="positive multiple"):
        em.rollout(init, 3, output_every=2)

    source = next((smoke_gcm_runs[1] / "output").glob("*snapshot*.nc"))
    params = {k: float(v[1]) for k, v in meta.params.items() if np.isfinite(v[1])}
    with xr.open_dataset(source, decode_times=False) as ds:
        ds.drop_vars("ua").to_netcdf(tmp_path / "no_ua.nc")
        ds.isel(lon=slice(0, None, 2)).to_netcdf(tmp_path / "coarse.nc")
    with pytest.raises(DataError, match="ua"):  # noqa: PT012
        em.rollout({"netcdf": str(tmp_path / "no_ua.nc"), "time_step_s": 2700.0}, 2, params=params)
    with pytest.raises(DataError, match="grid"):
        em.rollout({"netcdf": str(tmp_path / "coarse.nc"), "time_step_s": 2700.0}, 2, params=params)
    # the CLI: one line on stderr, exit status 2
    request = tmp_path / "bad.yaml"
    request.write_text(f"predict:\n  model: {export}\n  init: {{cube: {cube}}}\n  params: {{banana: 1}}\n")
    done = subprocess.run([sys.executable, "-m", "astrohpc", "predict", str(request), "-o", str(tmp_path / "x.nc")],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2 and "unknown parameter banana" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.nc").exists()
