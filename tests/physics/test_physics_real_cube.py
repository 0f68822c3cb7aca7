"""The diagnostics on the GCM's own fields (the real smoke runs): what holds there, and what
breaks when the fields are scrambled."""

from __future__ import annotations

import numpy as np
import torch

from astrohpc.physics.energy import column_energy, energy_budget_residual, toa_energy_balance, toa_net_flux
from astrohpc.physics.gas import ideal_gas_residual
from astrohpc.physics.grid import global_mean
from astrohpc.physics.humidity import negative_water
from astrohpc.physics.hydrostatic import hydrostatic_residual
from astrohpc.physics.mass import global_dry_mass

# levels out of order, none in its place
SHUFFLE = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]



def test_hydrostatic_residual_small_on_gcm_fields_large_when_shuffled(cube_steps):
    s, grid, planet = cube_steps.before, cube_steps.grid, cube_steps.planet
    own = hydrostatic_residual(s, grid, planet)
    assert own.shape == (8,)
    assert float(own.max()) < 1.0  # m (float32 rounding of zg: ~3e-4 m)
    for name in ("zg", "ta"):
        scrambled = {**s, name: s[name][:, SHUFFLE]}
        assert float(hydrostatic_residual(scrambled, grid, planet).min()) > 100.0, name


def test_ideal_gas_residual_small_on_gcm_fields_large_when_shuffled(cube_steps):
    s, grid, planet = cube_steps.before, cube_steps.grid, cube_steps.planet
    assert float(ideal_gas_residual(s, grid, planet).max()) < 1e-5  # float32 rounding: ~1e-7
    scrambled = {**s, "ta": s["ta"][:, SHUFFLE]}
    assert float(ideal_gas_residual(scrambled, grid, planet).min()) > 1e-2


def test_toa_balance_is_the_cubes_ntr(cube_steps):
    s, grid = cube_steps.before, cube_steps.grid
    balance = toa_energy_balance(s, grid)
    ntr = global_mean(s["ntr"].double(), grid)
    np.testing.assert_allclose(balance.numpy(), ntr.numpy(), rtol=1e-5, atol=1e-3)
    # a cold start heats up: the planet gains tens of W m-2
    assert float(balance.min()) > 10.0


def test_gcm_energy_budget_of_a_daily_step(cube_steps):
    c = cube_steps
    residual = energy_budget_residual(c.before, c.after, c.grid, c.planet, c.step_s)
    assert residual.shape == (8,) and torch.isfinite(residual).all()
    # GCM steps close to ~1 W m-2 (instantaneous fluxes at both ends of a day: -0.51 … +0.79 W m-2) …
    assert float(residual.abs().max()) < 5.0
    # … and the surface fluxes matter: the TOA flux alone misses the ocean's uptake by > 100 W m-2
    tendency = (column_energy(c.after, c.grid, c.planet) - column_energy(c.before, c.grid, c.planet)) / c.step_s
    toa_only = global_mean(tendency - 0.5 * (toa_net_flux(c.before) + toa_net_flux(c.after)), c.grid)
    assert float(toa_only.abs().min()) > 50.0


def test_gcm_conserves_dry_mass_and_has_no_negative_water(cube_steps):
    c = cube_steps
    m0, m1 = global_dry_mass(c.before, c.grid, c.planet), global_dry_mass(c.after, c.grid, c.planet)
    # 4πa² × 1e5 Pa / g ≈ 5.15e18 kg on Earth
    np.testing.assert_allclose(m0.numpy(), 5.153e18, rtol=2e-3)
    assert float(((m1 - m0) / m0).abs().max()) < 1e-5  # observed ~6e-8 a day
    assert float(negative_water(c.after, c.grid, c.planet).abs().max()) == 0.0
