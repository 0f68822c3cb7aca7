"""Models from config, trained a few steps on a real cube with physics losses and correctors on.

Every kind the `model:` section can build (emulator U-Net and transformer, climate U-Net and
transformer in every output mode, with a Gaussian head) is built from a config dict, takes a few
AdamW steps on batches of the real smoke-run cube, and must (a) lower its loss on that batch,
(b) send gradients into its weights through the data and physics terms, (c) keep the hard
correctors' guarantees on its own predictions.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from astrohpc.config import Config, from_dict
from astrohpc.data.cube import read_meta
from astrohpc.data.dataset import WindowDataset
from astrohpc.data.runs import RunDataset
from astrohpc.errors import ConfigError
from astrohpc.models.build import build, build_physics_loss, embeddings, plan_channels
from astrohpc.models.channels import Normalizer
from astrohpc.models.objective import batch_planet, climate_loss, emulator_loss
from astrohpc.models.uncertainty import GaussianPrediction
from astrohpc.physics.energy import energy_budget_residual
from astrohpc.physics.grid import global_mean
from astrohpc.physics.mass import column_dry_mass

SMALL = {"unet": {"width": 4, "depth": 1}, "transformer": {"dim": 16, "depth": 1, "heads": 2, "patch": [8, 8]}}
EMULATOR_WEIGHTS = {"hydrostatic": 1e-4, "energy_budget": 1e-4, "toa_balance": 1e-4, "dry_mass": 1.0,
                    "ideal_gas": 1.0, "humidity_negative": 1.0}
CLIMATE_WEIGHTS = {"hydrostatic": 1e-4, "toa_balance": 1e-4, "ideal_gas": 1.0, "humidity_negative": 1.0}


def model_settings(**model):
    return from_dict(Config, {"model": {**SMALL, **model}}, source="test").model


@pytest.fixture(scope="module")
def cube(physics_cube, tmp_path_factory):
    """A copy of the physics cube (with its statistics) plus its emission spectra sidecar."""
    from astrohpc.data.schema import stats_path
    from astrohpc.data.spectra import write_spectra

    folder = tmp_path_factory.mktemp("build")
    path = folder / physics_cube.name
    shutil.copy(physics_cube, path)
    shutil.copy(stats_path(physics_cube), stats_path(path))
    write_spectra(path, n_bins=8)
    return path


def _batch(loader):
    return next(iter(loader))


def _train(model, loss_fn, steps=6, lr=3e-3):
    torch.manual_seed(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        parts = loss_fn()
        parts["loss"].backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads if g is not None)
        opt.step()
        losses.append(float(parts["loss"].detach()))
    return losses, parts


@pytest.mark.parametrize("architecture", ["unet", "transformer"])
def test_emulator_trains_with_physics_losses_and_correctors(cube, architecture):
    torch.manual_seed(0)
    settings = model_settings(task="emulator", architecture=architecture,
                              physics={"loss_weights": EMULATOR_WEIGHTS})
    meta = read_meta(cube)
    model = build(settings, meta, runs=[0])
    plan = model.plan
    physics = build_physics_loss(settings, meta, plan)
    ds = WindowDataset(cube, 1, 2, variables=list(plan.variables), static=True, runs=[0])
    batch = _batch(DataLoader(ds, batch_size=2))
    losses, parts = _train(model, lambda: emulator_loss(model, batch, physics))
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0], losses
    assert set(EMULATOR_WEIGHTS) <= {k.split("/", 1)[1] for k in parts if k.startswith("physics/")}

    # the physics terms alone send gradients into the network's first layer
    model.zero_grad()
    only_physics = build_physics_loss(model_settings(physics={"loss_weights": {"hydrostatic": 1.0, "ideal_gas": 1.0}}))
    x = batch["input"][:, 0]
    raw = model.predict(x, batch["target"][:, 0, model.forcing], batch["params"], batch["static"])
    terms = only_physics(model.physics_state(x, batch["static"]), model.physics_state(raw, batch["static"]),
                         model.grid, batch_planet(batch), model.step_s)
    terms["total"].backward()
    first = next(p for p in model.net.parameters() if p.requires_grad)
    assert first.grad is not None and float(first.grad.abs().sum()) > 0

    # a float64 step of the trained model: the correctors hold exactly
    with torch.no_grad():
        x64, static = x.double(), batch["static"].double()
        nxt = model(x64, batch["target"][:, 0, model.forcing].double(), batch["params"], static,
                    batch_planet(batch))
    before, after = model.physics_state(x64, static), model.physics_state(nxt, static)
    planet = batch_planet(batch)
    m0 = global_mean(column_dry_mass(before["ps"], before["hus"], model.grid, planet), model.grid)
    m1 = global_mean(column_dry_mass(after["ps"], after["hus"], model.grid, planet), model.grid)
    assert float(((m1 - m0) / m0).abs().max()) <= 1e-12
    residual = energy_budget_residual(before, after, model.grid, planet, model.step_s)
    assert float(residual.abs().max()) <= 1e-6  # W m-2
    assert float(after["hus"].min()) >= 0.0
    ds.close()


@pytest.mark.parametrize("architecture,mode,spinup,uncertainty", [
    ("unet", "datacube", 1, "none"),
    ("transformer", "datacube", 0, "none"),
    ("transformer", "scalar", 0, "none"),
    ("transformer", "spectral", 0, "none"),
    ("transformer", "joint", 1, "gaussian"),
])
def test_climate_surrogate_trains(cube, architecture, mode, spinup, uncertainty):
    torch.manual_seed(0)
    weights = CLIMATE_WEIGHTS if mode in ("datacube", "joint") else {}
    settings = model_settings(task="climate", architecture=architecture, mode=mode, spinup_steps=spinup,
                              uncertainty={"method": uncertainty}, physics={"loss_weights": weights})
    meta = read_meta(cube)
    model = build(settings, meta)
    physics = build_physics_loss(settings, meta, model.plan)
    ds = RunDataset(cube, spinup, variables=list(model.plan.variables), static=True,
                    spectra=mode in ("spectral", "joint"))
    batch = _batch(DataLoader(ds, batch_size=len(ds)))
    losses, parts = _train(model, lambda: climate_loss(model, batch, physics, settings.head_weights))
    assert losses[-1] < losses[0], losses
    heads = {"joint": {"datacube", "scalar", "spectral"}}.get(mode, {mode})
    assert {k.split("/", 1)[1] for k in parts if k.startswith("head/")} == heads

    with torch.no_grad():
        out = model(batch["params"], batch["spinup"], batch["static"])
    physical = model.physical(out)
    if uncertainty == "gaussian":
        assert all(isinstance(v, GaussianPrediction) and bool((v.sigma > 0).all()) for v in physical.values())
    if "datacube" in physical:
        fields = physical["datacube"]
        fields = fields.mean if isinstance(fields, GaussianPrediction) else fields
        assert fields.shape == batch["mean"].shape
        fixed = model.correct(fields, batch["spinup"].double() if spinup else None, batch["static"].double(),
                              batch_planet(batch))
        state = model.table.to_state(fixed)
        assert float(state["hus"].min()) >= 0.0
        if spinup:  # dry mass of the last spin-up day kept exactly
            first = model.table.to_state(batch["spinup"][:, -1].double())
            planet = batch_planet(batch)
            m0 = global_mean(column_dry_mass(first["ps"], first["hus"], model.grid, planet), model.grid)
            m1 = global_mean(column_dry_mass(state["ps"], state["hus"], model.grid, planet), model.grid)
            assert float(((m1 - m0) / m0).abs().max()) <= 1e-12
    if "scalar" in physical:
        value = physical["scalar"]
        value = value.mean if isinstance(value, GaussianPrediction) else value
        assert value.shape == (len(ds), len(settings.scalars))
    ds.close()


def test_run_dataset_means_and_pooled_statistics(cube):
    meta = read_meta(cube)
    ds = RunDataset(cube, 2, runs=[1])
    item = ds[0]
    from astrohpc.data.cube import LazyCube

    raw = LazyCube(cube).read(1, 0, int(meta.time_count[1]))
    np.testing.assert_allclose(item["mean"].numpy(), raw[2:].astype(np.float64).mean(axis=0).astype(np.float32))
    torch.testing.assert_close(item["spinup"], torch.from_numpy(raw[:2]))
    assert item["days"].tolist() == [meta.time_days[1, 2], meta.time_days[1, int(meta.time_count[1]) - 1]]
    ds.close()

    whole, pooled = Normalizer.from_meta(meta), Normalizer.from_meta(meta, runs=[0, 1])
    torch.testing.assert_close(pooled.mean, whole.mean, rtol=1e-10, atol=0)
    torch.testing.assert_close(pooled.std, whole.std, rtol=1e-8, atol=0)
    one = Normalizer.from_meta(meta, runs=[1])
    expected = np.asarray(meta.stats["runs"]["fields"]["mean"][1])
    np.testing.assert_allclose(one.mean.flatten().numpy(), np.nan_to_num(expected), rtol=1e-12)
    assert not torch.equal(one.mean, whole.mean)


def test_embeddings_feed_the_ood_flag(cube):
    from astrohpc.models.ood import OODFlag

    settings = model_settings(task="emulator", architecture="unet")
    meta = read_meta(cube)
    model = build(settings, meta)
    ds = WindowDataset(cube, 1, 1, variables=list(model.plan.variables), static=True)
    batch = _batch(DataLoader(ds, batch_size=len(ds)))
    model.eval()
    emb = embeddings(model, lambda: model(batch["input"][:, 0], batch["target"][:, 0, model.forcing],
                                          batch["params"], batch["static"], correct=False))
    assert emb.shape == (len(ds), settings.unet.width * 2)
    flag = OODFlag.fit(emb, batch["params"], meta.param_names)
    flags = flag(emb, batch["params"] + 100.0)
    assert len(flags) == len(ds) and all(f["ood"] for f in flags)
    ds.close()


@pytest.mark.parametrize("model,message", [
    ({"task": "climate", "physics": {"correctors": ["energy"]}}, "task: climate"),
    ({"task": "climate", "physics": {"loss_weights": {"energy_budget": 1.0}}}, "energy_budget"),
    ({"task": "emulator", "uncertainty": {"method": "gaussian"}}, "ensemble"),
    ({"task": "emulator", "architecture": "transformer", "mode": "scalar"}, "datacube"),
    ({"physics": {"loss_weights": {"hydrostatik": 1.0}}}, "hydrostatik"),
    ({"unet": {"widht": 4}}, "widht"),
])
def test_bad_model_sections_are_one_clear_error(model, message):
    with pytest.raises(ConfigError, match=message):
        from_dict(Config, {"model": model}, source="test.yaml")


def test_the_cube_must_hold_what_the_model_reads(cube):
    meta = read_meta(cube)
    with pytest.raises(ConfigError, match="no variable snowfall"):
        plan_channels(model_settings(variables=["ta", "snowfall"]), meta)
    settings = model_settings(variables=["ta", "ps"], physics={"loss_weights": {"hydrostatic": 1.0}})
    with pytest.raises(ConfigError, match="zg"):
        build_physics_loss(settings, meta, plan_channels(settings, meta))
