"""Every physics function reads g, a, R and cp from PlanetConstants: a Mars-like planet changes
the numbers as the formulas say, and a batch may mix planets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.correctors import energy_corrector
from astrohpc.physics.energy import column_energy
from astrohpc.physics.gas import ideal_gas_residual
from astrohpc.physics.humidity import negative_water
from astrohpc.physics.hydrostatic import geopotential_full_levels, hydrostatic_residual, virtual_temperature
from astrohpc.physics.mass import column_dry_mass, global_dry_mass
from astrohpc.planet import LATENT_HEAT_VAPORISATION_J_KG, WATER_VAPOUR_GAS_CONSTANT_J_KG_K, Planet

EARTH = PlanetConstants.from_planet(Planet())
MARS = PlanetConstants(radius_m=3.4e6, gravity_m_s2=3.7, gas_constant_J_kg_K=188.9, cp_J_kg_K=735.0)
PS, TA, Q = 6.0e4, 230.0, 2e-3  # Pa, K, kg kg-1


def uniform_state(grid, planet: PlanetConstants, batch: int = 1, flux: float = 0.0) -> dict:
    """A uniform column (ps, T, q everywhere; no wind; sg = 0) in hydrostatic balance for `planet`,
    with every surface flux 0 and ntr = `flux` W m-2."""
    nlev = grid.sigma_half.numel() - 1
    shape2, shape3 = (batch, *grid.area_weight.shape), (batch, nlev, *grid.area_weight.shape)
    ta = torch.linspace(TA - 20, TA + 20, nlev, dtype=torch.float64)[:, None, None].expand(shape3).clone()
    hus = torch.full(shape3, Q, dtype=torch.float64)
    tv = virtual_temperature(ta.numpy(), hus.numpy(), planet.gas_constant_J_kg_K, WATER_VAPOUR_GAS_CONSTANT_J_KG_K)
    zg = geopotential_full_levels(tv, np.zeros(shape2), grid.sigma_half.numpy(), planet.gas_constant_J_kg_K)
    zeros = torch.zeros(shape2, dtype=torch.float64)
    state = {"ps": torch.full(shape2, PS, dtype=torch.float64), "ta": ta, "hus": hus,
             "ua": torch.zeros(shape3, dtype=torch.float64), "va": torch.zeros(shape3, dtype=torch.float64),
             "zg": torch.as_tensor(zg / planet.gravity_m_s2), "sg": zeros, "ntr": zeros + flux}
    state.update({name: zeros for name in ("rst", "rlut", "rss", "rls", "hfss", "hfls")})
    return state


def test_dry_mass_scales_as_one_over_g_and_total_as_a_squared(small_grid):
    earth, mars = uniform_state(small_grid, EARTH), uniform_state(small_grid, MARS)
    column_e = column_dry_mass(earth["ps"], earth["hus"], small_grid, EARTH)
    column_m = column_dry_mass(mars["ps"], mars["hus"], small_grid, MARS)
    torch.testing.assert_close(column_m, column_e * EARTH.gravity_m_s2 / MARS.gravity_m_s2, rtol=1e-14, atol=0)
    expected = 4 * math.pi * MARS.radius_m ** 2 * PS / MARS.gravity_m_s2 * (1 - Q)
    np.testing.assert_allclose(global_dry_mass(mars, small_grid, MARS).numpy(), [expected], rtol=1e-13)
    ratio = global_dry_mass(mars, small_grid, MARS) / global_dry_mass(earth, small_grid, EARTH)
    np.testing.assert_allclose(ratio.numpy(), (MARS.radius_m / EARTH.radius_m) ** 2
                               * EARTH.gravity_m_s2 / MARS.gravity_m_s2, rtol=1e-13)


def test_column_energy_reads_cp_and_g(small_grid):
    state = uniform_state(small_grid, MARS)
    dsigma = small_grid.dsigma[:, None, None]
    mean_t = (state["ta"][0] * dsigma).sum(0)
    expected = PS / MARS.gravity_m_s2 * (MARS.cp_J_kg_K * mean_t + LATENT_HEAT_VAPORISATION_J_KG * Q)
    torch.testing.assert_close(column_energy(state, small_grid, MARS)[0], expected, rtol=1e-14, atol=0)
    # the cp term alone is ∝ cp (q = 0)
    dry = {**state, "hus": torch.zeros_like(state["hus"])}
    for other_cp in (735.0, 1004.6, 14300.0):
        planet = PlanetConstants(MARS.radius_m, MARS.gravity_m_s2, MARS.gas_constant_J_kg_K, other_cp)
        torch.testing.assert_close(column_energy(dry, small_grid, planet),
                                   column_energy(dry, small_grid, MARS) * other_cp / MARS.cp_J_kg_K, rtol=1e-14, atol=0)


def test_hydrostatics_and_ideal_gas_read_r_and_g(small_grid):
    state = uniform_state(small_grid, MARS)  # zg made with Mars' R and g
    assert float(hydrostatic_residual(state, small_grid, MARS)) < 1e-9
    assert float(ideal_gas_residual(state, small_grid, MARS)) < 1e-12
    assert float(hydrostatic_residual(state, small_grid, EARTH)) > 100.0  # m
    assert float(ideal_gas_residual(state, small_grid, EARTH)) > 0.1


def test_negative_water_scales_as_one_over_g(small_grid):
    state = uniform_state(small_grid, MARS)
    state["hus"] = -state["hus"]
    np.testing.assert_allclose(negative_water(state, small_grid, MARS).numpy(), [PS * Q / MARS.gravity_m_s2],
                               rtol=1e-13)
    np.testing.assert_allclose(negative_water(state, small_grid, EARTH).numpy(), [PS * Q / EARTH.gravity_m_s2],
                               rtol=1e-13)


def test_energy_increment_is_flux_over_heat_capacity(small_grid):
    """Same state before and after, F = 10 W m-2 into the air: δT = F·step·g/(cp·ps)."""
    step = 3600.0
    for planet in (EARTH, MARS):
        before, after = uniform_state(small_grid, planet), uniform_state(small_grid, planet, flux=10.0)
        before["ntr"] = after["ntr"]
        increment = energy_corrector(before, after, small_grid, planet, step)["ta"] - after["ta"]
        expected = 10.0 * step * planet.gravity_m_s2 / (planet.cp_J_kg_K * PS)
        # rtol: (ta + δT) − ta keeps δT to ~1e-12 only
        torch.testing.assert_close(increment, torch.full_like(increment, expected), rtol=1e-10, atol=0)


@pytest.mark.parametrize("check", ["dry_mass", "energy", "hydrostatic", "corrector"])
def test_a_batch_mixes_planets(small_grid, check):
    both = PlanetConstants(*(torch.tensor([getattr(EARTH, f), getattr(MARS, f)], dtype=torch.float64)
                             for f in ("radius_m", "gravity_m_s2", "gas_constant_J_kg_K", "cp_J_kg_K")))
    singles = [uniform_state(small_grid, p, flux=5.0) for p in (EARTH, MARS)]
    batch = {k: torch.cat([s[k] for s in singles]) for k in singles[0]}
    def run(state, planet):
        if check == "dry_mass":
            return global_dry_mass(state, small_grid, planet)
        if check == "energy":
            return column_energy(state, small_grid, planet)
        if check == "hydrostatic":
            return hydrostatic_residual({**state, "zg": state["zg"] + 1.0}, small_grid, planet)
        shifted = {**state, "ta": state["ta"] + 0.3}
        return energy_corrector(state, shifted, small_grid, planet, 600.0)["ta"]
    mixed = run(batch, both)
    for i, planet in enumerate((EARTH, MARS)):
        torch.testing.assert_close(mixed[i:i + 1], run(singles[i], planet), rtol=1e-14, atol=1e-12)
