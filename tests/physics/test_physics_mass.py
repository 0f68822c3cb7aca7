"""Column masses from ps and the interfaces (σ and hybrid), and the error for a grid without them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid
from astrohpc.physics.mass import (
    HybridInterfaces,
    column_dry_mass,
    column_water_mass,
    global_total,
    layer_mass,
    layer_pressure_thickness,
)
from astrohpc.planet import Planet

PLANET = PlanetConstants.from_planet(Planet())


def fields(grid: SphereGrid, batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    nlev = grid.sigma_half.numel() - 1
    shape = (batch, *grid.area_weight.shape)
    ps = 9e4 + 2e4 * torch.rand(shape, generator=gen, dtype=torch.float64)
    hus = 1e-2 * torch.rand((batch, nlev, *shape[1:]), generator=gen, dtype=torch.float64)
    return ps, hus


def test_dry_mass_is_ps_over_g_less_the_water(small_grid):
    ps, hus = fields(small_grid)
    g = PLANET.gravity_m_s2
    dsigma = small_grid.dsigma[:, None, None]
    expected = ps / g * (1.0 - (hus * dsigma).sum(1))
    torch.testing.assert_close(column_dry_mass(ps, hus, small_grid, PLANET), expected, rtol=1e-14, atol=0)
    torch.testing.assert_close(column_dry_mass(ps, hus, small_grid, PLANET) + column_water_mass(ps, hus, small_grid,
                               PLANET), ps / g, rtol=1e-14, atol=0)
    torch.testing.assert_close(layer_mass(ps, small_grid, PLANET).sum(1), ps / g, rtol=1e-14, atol=0)


def test_global_total_is_sphere_area_times_mean(small_grid):
    column = torch.full((2, *small_grid.area_weight.shape), 7.0, dtype=torch.float64)
    np.testing.assert_allclose(global_total(column, small_grid, PLANET).numpy(),
                               7.0 * 4 * np.pi * PLANET.radius_m ** 2, rtol=1e-14)


def test_hybrid_interfaces_with_zero_hyai_are_sigma(small_grid):
    ps, hus = fields(small_grid)
    sigma_like = HybridInterfaces(torch.zeros_like(small_grid.sigma_half), small_grid.sigma_half.clone(), 1e5)
    torch.testing.assert_close(layer_pressure_thickness(ps, small_grid, sigma_like),
                               layer_pressure_thickness(ps, small_grid), rtol=1e-15, atol=0)
    # a real hybrid column: pure pressure at the top, σ at the bottom; Δp sums to ps − p_top
    hyai = torch.tensor([0.002, 0.08, 0.15, 0.1, 0.02, 0.0], dtype=torch.float64)
    hybi = torch.tensor([0.0, 0.0, 0.12, 0.5, 0.83, 1.0], dtype=torch.float64)
    hybrid = HybridInterfaces(hyai, hybi, 1e5)
    dp = layer_pressure_thickness(ps, small_grid, hybrid)
    assert float(dp.min()) > 0
    torch.testing.assert_close(dp.sum(1), ps - 200.0, rtol=1e-14, atol=1e-9)
    water = column_water_mass(ps, hus, small_grid, PLANET, hybrid)
    torch.testing.assert_close(column_dry_mass(ps, hus, small_grid, PLANET, hybrid) + water,
                               (ps - 200.0) / PLANET.gravity_m_s2, rtol=1e-14, atol=1e-9)


def test_hybrid_interfaces_from_a_cube(cube_steps):
    assert HybridInterfaces.from_meta(cube_steps.meta) is None  # ExoPlaSim: σ levels

    class Meta:
        vertical = {"hyai": [0.0, 0.5, 0.0], "hybi": [0.0, 0.2, 1.0], "p0_Pa": 1e5}

    hybrid = HybridInterfaces.from_meta(Meta())
    assert hybrid.p0_Pa == 1e5 and hybrid.hyai.dtype == torch.float64


def test_a_grid_without_sigma_interfaces_is_an_error(small_grid):
    ps, hus = fields(small_grid)
    no_sigma = SphereGrid(small_grid.area_weight, None, small_grid.lat, small_grid.lon)
    with pytest.raises(ValueError, match="no σ interfaces"):
        column_dry_mass(ps, hus, no_sigma, PLANET)

