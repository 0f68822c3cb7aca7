"""The SFNO emulator (astrohpc/models/sfno.py) and the variable roles of the stepper: spectral
truncation against torch-harmonics' own transforms, persistence at initialisation, diagnostics as
outputs only, and the configuration errors of issue 17."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrohpc.config import load_config
from astrohpc.data.cube import read_meta
from astrohpc.errors import ConfigError, DataError
from astrohpc.models.build import build, gauss_truncation, plan_channels
from astrohpc.models.settings import ModelSettings
from astrohpc.models.sfno import SFNO, SphericalTransform, check_gauss_grid

GAUSS_LAT = np.degrees(np.arcsin(np.polynomial.legendre.leggauss(32)[0]))  # south -> north


def test_truncation_of_a_gauss_grid():
    assert gauss_truncation(32) == 21 and gauss_truncation(64) == 42 and gauss_truncation(48) == 31
    check_gauss_grid(GAUSS_LAT)
    with pytest.raises(ConfigError, match="Gauss grid"):
        check_gauss_grid(np.linspace(-87.2, 87.2, 32))


def test_projection_keeps_degrees_up_to_the_truncation_and_removes_the_rest():
    """A field built from two spherical harmonics, Y_3^2 and Y_30^5 (scipy's sph_harm_y, an outside
    reference): the T21 projection keeps the first exactly and removes the second."""
    from scipy.special import sph_harm_y

    theta = np.radians(90.0 - GAUSS_LAT[::-1])[:, None]  # colatitude, north -> south
    phi = np.radians(np.arange(64) * 360.0 / 64)[None, :]
    low = np.real(sph_harm_y(3, 2, theta, phi))
    high = np.real(sph_harm_y(30, 5, theta, phi))
    transform = SphericalTransform(32, 64, 21)
    x = torch.as_tensor(np.stack([low, low + high])[None], dtype=torch.float32)
    kept = transform.project(x)[0].numpy()
    np.testing.assert_allclose(kept[0], low, atol=2e-5)
    np.testing.assert_allclose(kept[1], low, atol=2e-5)


def test_sfno_starts_at_zero_output_and_keeps_the_cube_latitude_order():
    torch.manual_seed(0)
    net = SFNO(5, 3, 2, GAUSS_LAT, 64, 21, embed=8, layers=2)
    z, p = torch.randn(2, 5, 32, 64), torch.randn(2, 2)
    assert torch.equal(net(z, p), torch.zeros(2, 3, 32, 64))  # zero-initialised decoder: persistence
    torch.nn.init.normal_(net.decoder.weight)
    out = net(z, p)
    # the spectral path is rotation-equivariant in longitude: shifting the input shifts the output
    shifted = net(torch.roll(z, 8, dims=-1), p)
    np.testing.assert_allclose(torch.roll(out, 8, dims=-1).detach().numpy(), shifted.detach().numpy(), atol=1e-4)


def test_sfno_emulator_roles_on_the_smoke_cube(physics_cube):
    settings = load_config("configs/model/emulator_sfno.yaml").model
    meta = read_meta(physics_cube)
    model = build(settings, meta)
    table = model.table
    assert [table.variables[i] for i in model.forcing] == ["rsdt"]
    assert set(table.variables[i] for i in model.diagnostic) == set(settings.diagnostics)
    assert set(table.variables[i] for i in model.predicted) == set(settings.variables)
    assert model.plan.params == ("rotation_period_days", "instellation_W_m2")
    # diagnostics are outputs only: what a diagnostic channel holds at t changes nothing at t + 1
    torch.manual_seed(1)
    torch.nn.init.normal_(model.net.decoder.weight, std=0.1)
    x = torch.as_tensor(np.random.default_rng(0).normal(size=(1, len(table), 32, 64)) + 250.0, dtype=torch.float64)
    f = x[:, model.forcing]
    params = torch.zeros(1, 2)
    static = torch.zeros(1, len(model.static_names), 32, 64, dtype=torch.float64)
    a = model.predict(x, f, params, static)
    y = x.clone()
    y[:, model.diagnostic] += 100.0
    b = model.predict(y, f, params, static)
    assert torch.equal(a[:, model.predicted], b[:, model.predicted])
    assert torch.equal(a[:, model.diagnostic], b[:, model.diagnostic])
    assert not torch.equal(a[:, model.predicted], x[:, model.predicted])  # it did step
    # the loss weights reach the stepper, by variable
    assert float(model.loss_weight[table.index("ts")[0]]) == 2.0


def test_role_errors(physics_cube, tmp_path):
    meta = read_meta(physics_cube)
    with pytest.raises(ValueError, match="both variables and diagnostics"):
        ModelSettings(variables=["ts", "pr"], diagnostics=["pr"])
    with pytest.raises(ConfigError, match="has no variable zz"):
        plan_channels(ModelSettings(variables=["ts"], diagnostics=["zz"]), meta)
    # a step-mean variable of the cube cannot be fed back
    meta.step_means = ["pr"]
    with pytest.raises(ConfigError, match="pr in the cube .* means over the step .* model.diagnostics"):
        plan_channels(ModelSettings(variables=["ts", "pr"]), meta)
    # the model's step must be the cube's
    with pytest.raises(DataError, match="1 days apart, the model steps model.step_days = 0.25"):
        build(ModelSettings(architecture="sfno", variables=["ts", "ps"], step_days=0.25, static=False), meta)
