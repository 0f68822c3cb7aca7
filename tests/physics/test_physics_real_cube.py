"""The diagnostics on the GCM's own fields (the real smoke runs): what holds there, and what
breaks when the fields are scrambled."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrohpc.physics.energy import column_energy, energy_budget_residual, toa_energy_balance, toa_net_flux
from astrohpc.physics.gas import ideal_gas_residual
from astrohpc.physics.grid import global_mean
from astrohpc.physics.humidity import negative_water
from astrohpc.physics.hydrostatic import hydrostatic_residual
from astrohpc.physics.mass import global_dry_mass

# levels out of order, none in its place
SHUFFLE = [3, 7, 0, 9, 5, 1, 8, 2, 6, 4]



def test_hydrostatic_residual_of_an_isothermal_column_in_closed_form(small_grid):
    """zg of an isothermal dry column written in closed form — the sum over the layers below of
    R T ln(σ_{j+1/2}/σ_{j−1/2}) telescopes to −R T ln σ_{k+1/2}, plus α_k R T (α in closed form) — not
    through astrohpc's integration: the residual is rounding; zg raised by Δ at one inner level puts
    −Δ and +Δ in the two layers it bounds, an RMS of Δ·sqrt(2/lev) over the levels."""
    from astrohpc.physics.constants import PlanetConstants

    half = small_grid.sigma_half.numpy()
    lev, (nlat, nlon) = len(half) - 1, small_grid.area_weight.shape
    R, g, T, sg = 287.0, 9.81, 250.0, 500.0  # J kg-1 K-1, m s-2, K, m2 s-2
    upper, lower = half[:-1], half[1:]
    alpha = np.full(lev, np.log(2.0))  # Simmons & Burridge 1981: ln 2 in the top layer (σ = 0 above it)
    inner = upper > 0
    alpha[inner] = 1.0 - upper[inner] / (lower[inner] - upper[inner]) * np.log(lower[inner] / upper[inner])
    zg = sg / g + R * T / g * (alpha - np.log(lower))  # [lev], top -> bottom

    def field(column):
        return torch.tensor(np.broadcast_to(column[:, None, None], (lev, nlat, nlon)))[None]
    state = {"zg": field(zg), "ta": field(np.full(lev, T)), "hus": field(np.zeros(lev)),
             "sg": torch.full((1, nlat, nlon), sg, dtype=torch.float64)}
    planet = PlanetConstants(6.371e6, torch.tensor([g], dtype=torch.float64), torch.tensor([R], dtype=torch.float64),
                             torch.tensor([1004.0], dtype=torch.float64))
    assert float(hydrostatic_residual(state, small_grid, planet)[0]) < 1e-9  # m: float64 rounding of ~1e4 m
    delta = 10.0  # m
    raised = zg.copy()
    raised[2] += delta
    residual = hydrostatic_residual({**state, "zg": field(raised)}, small_grid, planet)
    assert float(residual[0]) == pytest.approx(delta * np.sqrt(2.0 / lev), rel=1e-9)


def test_hydrostatic_residual_large_when_shuffled(cube_steps):
    """(The cube's own zg was derived with the same discretisation, so its small residual is no test;
    tests/data/test_training_cube.py checks that zg against the hypsometric equation instead.)"""
    s, grid, planet = cube_steps.before, cube_steps.grid, cube_steps.planet
    assert hydrostatic_residual(s, grid, planet).shape == (8,)
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
