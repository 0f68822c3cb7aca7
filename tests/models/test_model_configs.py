"""The shipped model configs (configs/model/*.yaml) load strictly and build on a real cube.

Each is built on the cube of the two cached smoke runs (converted with the configs/data file the
model configs extend) and runs one forward pass on a real batch: the prediction has the shape of
what the model predicts and is finite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from astrohpc.config import load_config
from astrohpc.data.cube import read_meta
from astrohpc.data.dataset import WindowDataset
from astrohpc.data.runs import RunDataset
from astrohpc.models.build import build, build_physics_loss
from astrohpc.models.objective import batch_planet
from astrohpc.models.uncertainty import GaussianPrediction

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "configs" / "model").glob("*.yaml"))
N_BINS = 8


def test_the_examples_are_there():
    names = {c.stem for c in CONFIGS}
    assert {"emulator_unet", "emulator_transformer", "climate_transformer", "climate_unet"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_model_config_builds_and_runs_on_the_smoke_cube(config, physics_cube):
    settings = load_config(config).model
    meta = read_meta(physics_cube)
    torch.manual_seed(0)
    model = build(settings, meta, n_bins=N_BINS)
    build_physics_loss(settings, meta, model.plan)  # the cube holds every variable the loss terms read
    model.eval()
    if settings.task == "emulator":
        ds = WindowDataset(physics_cube, 1, 1, variables=list(model.plan.variables), static=settings.static,
                           params=list(model.plan.params))
        batch = next(iter(DataLoader(ds, batch_size=2)))
        with torch.no_grad():
            out = model(batch["input"][:, -1], batch["target"][:, 0, model.forcing], batch["params"],
                        batch.get("static"), batch_planet(batch))
        assert out.shape == batch["target"][:, 0].shape
        assert bool(torch.isfinite(out).all())
    else:
        ds = RunDataset(physics_cube, settings.spinup_steps, variables=list(model.plan.variables),
                        static=settings.static)
        batch = next(iter(DataLoader(ds, batch_size=2)))
        with torch.no_grad():
            out = model.physical(model(batch["params"], batch["spinup"] if settings.spinup_steps else None,
                                       batch.get("static")))
        heads = {"datacube", "scalar", "spectral"} if settings.mode == "joint" else {settings.mode}
        assert set(out) == heads
        expected = {"datacube": batch["mean"].shape, "scalar": (2, len(settings.scalars)), "spectral": (2, N_BINS)}
        for head, value in out.items():
            mean = value.mean if isinstance(value, GaussianPrediction) else value
            assert mean.shape == expected[head]
            assert bool(torch.isfinite(mean).all())
            if settings.uncertainty.method == "gaussian":
                assert bool((value.sigma > 0).all())
    ds.close()
