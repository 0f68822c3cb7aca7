"""`astrohpc predict` with the GP climate surrogate of a tiny real climate study (5 ExoPlaSim planets
inside a maximin design, 1 outside; tests/climate_fixture.py), read from its export/gp.pt alone.

Checked: an inside and an outside planet in one request — the file opens in xarray with units,
standard names and the spread, and only the outside planet is flagged; at a training planet the
prediction is close to the GCM's own time mean recomputed here from its NetCDF file; a CSV of
planets gives the same as the list; an override moving the planet out of the design sets the
flag; the training cube's absence stops nothing; bad requests each get one clear error.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from climate_fixture import CLIMATE_AVERAGE_DAYS

import astrohpc
from astrohpc.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NAMES = ("rotation_period_days", "instellation_W_m2")


def _points(sweep):
    tasks = json.loads((Path(sweep) / "tasks.json").read_text())["tasks"]
    return {t["run_dir"]: {n: t["point"][f"planet.{n}"] for n in NAMES} for t in tasks}


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "astrohpc", "predict", *map(str, args)], capture_output=True,
                          text=True, cwd=REPO)


def test_inside_and_outside_planets_in_one_file(climate_study, climate_sweep, tmp_path):
    points = _points(climate_sweep)
    export = climate_study / "export" / "gp.pt"
    request = tmp_path / "climate.yaml"
    request.write_text(f"predict:\n  model: {export}\n  planets:\n"
                       f"    - {json.dumps(points['task-0002'])}\n    - {json.dumps(points['task-0005'])}\n")
    done = _cli(request, "-o", tmp_path / "out.nc")
    assert done.returncode == 0, done.stderr
    assert "planet 2 is outside the training envelope" in done.stderr and "planet 1 is" not in done.stderr
    with xr.open_dataset(tmp_path / "out.nc") as ds:
        assert ds["ood_flag"].values.tolist() == [0, 1]
        assert ds["ood_reason"].values[0] == "" and "outside the sweep's design box" in ds["ood_reason"].values[1]
        assert ds["ts"].dims == ("planet", "lat", "lon") and ds["ts"].attrs["units"] == "K"
        assert ds["ts"].attrs["standard_name"] == "surface_temperature"
        assert ds["ts"].attrs["ancillary_variables"] == "ts_std" and float(ds["ts_std"].min()) > 0
        assert ds["rlut"].attrs["units"] == "W m-2" and ds.attrs["Conventions"] == "CF-1.8"
        assert ds["instellation_W_m2"].values.tolist() == [points["task-0002"]["instellation_W_m2"],
                                                            points["task-0005"]["instellation_W_m2"]]
        assert ds.attrs["model_export"] == str(export) and ds.attrs["git_commit"]
        predicted = ds["ts"].values[0]
        spread = ds["ts_std"].values[0]
    # at a training planet: the GCM's own mean of its last days, from its file, within the model's 3σ
    # (what the white noise and the dropped EOFs allow) and well under the planets' spread
    means = []
    for run in [f"task-{i:04d}" for i in range(5)]:
        with xr.open_dataset(Path(climate_sweep) / run / "output" / "exoplasim.nc", decode_times=False) as ds:
            # the GCM writes latitudes north to south; the cube and the prediction run south to north
            means.append(ds["ts"].sortby("lat").isel(time=slice(-CLIMATE_AVERAGE_DAYS, None)).mean("time").values)
    truth = means[2]
    assert np.mean(np.abs(predicted - truth) <= 3 * spread + 1e-6) > 0.95
    assert np.sqrt(np.mean((predicted - truth) ** 2)) < 0.3 * np.sqrt(np.mean(np.var(np.stack(means), axis=0)))


def test_csv_overrides_and_api_agree(climate_study, climate_sweep, tmp_path):
    points = _points(climate_sweep)
    gp = astrohpc.load_surrogate(climate_study / "export" / "gp.pt")
    assert gp.kind == "climate" and set(gp.param_names) == set(NAMES)
    planets = [points["task-0001"], points["task-0003"]]
    csv = tmp_path / "planets.csv"
    csv.write_text(f"{NAMES[1]},{NAMES[0]}\n" + "".join(f"{p[NAMES[1]]},{p[NAMES[0]]}\n" for p in planets))
    a = gp.predict(planets=planets)
    b = gp.predict(csv=csv)
    np.testing.assert_array_equal(a["ts"].values, b["ts"].values)
    assert a["ood_flag"].values.tolist() == [0, 0]
    # an override on the command line that leaves the design box sets the flag
    request = tmp_path / "one.yaml"
    request.write_text(f"predict:\n  model: {climate_study / 'export' / 'gp.pt'}\n  params: {json.dumps(planets[0])}\n")
    done = _cli(request, "predict.params.instellation_W_m2=1700", "-o", tmp_path / "far.nc")
    assert done.returncode == 0, done.stderr
    with xr.open_dataset(tmp_path / "far.nc") as ds:
        assert ds["ood_flag"].values.tolist() == [1] and "instellation_W_m2 = 1700" in str(ds["ood_reason"].values[0])


def test_the_export_alone_is_enough_and_bad_requests_are_refused(climate_study, climate_sweep, tmp_path):
    points = _points(climate_sweep)
    payload = torch.load(climate_study / "export" / "gp.pt", weights_only=True)
    payload["cube"] = str(tmp_path / "deleted" / "datacube_means.h5")  # a training cube that is gone
    torch.save(payload, tmp_path / "gp.pt")
    gp = astrohpc.load_surrogate(tmp_path / "gp.pt")
    assert gp.predict(params=points["task-0004"])["ts"].shape[0] == 1
    with pytest.raises(ConfigError, match="unknown parameter obliquity_deg"):
        gp.predict(params={**points["task-0004"], "obliquity_deg": 23.0})
    with pytest.raises(ConfigError, match="parameter rotation_period_days not given"):
        gp.predict(params={"instellation_W_m2": 1300.0})
    with pytest.raises(ConfigError, match="exactly one of"):
        gp.predict(params=points["task-0004"], planets=[points["task-0004"]])
    request = tmp_path / "bad.yaml"
    request.write_text(f"predict:\n  model: {tmp_path / 'gp.pt'}\n  params: {{instellation_W_m2: 1300}}\n")
    done = _cli(request, "-o", tmp_path / "x.nc")
    assert done.returncode == 2 and "rotation_period_days not given" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.nc").exists()
