"""The torch hydrostatics (losses, diagnostics) is the numpy one the converter derives zg with."""

from __future__ import annotations

import numpy as np
import torch

from astrohpc.physics.hydrostatic import (
    full_level_alpha,
    full_level_alpha_torch,
    geopotential_full_levels,
    geopotential_full_levels_torch,
    thickness_weights,
    virtual_temperature,
    virtual_temperature_torch,
)
from astrohpc.planet import WATER_VAPOUR_GAS_CONSTANT_J_KG_K


def test_torch_geopotential_is_the_numpy_one(cube_steps):
    s, planet = cube_steps.before, cube_steps.planet
    r, g = float(planet.gas_constant_J_kg_K[0]), float(planet.gravity_m_s2[0])  # both runs share them
    tv = virtual_temperature(s["ta"].numpy(), s["hus"].numpy(), r, WATER_VAPOUR_GAS_CONSTANT_J_KG_K)
    phi = geopotential_full_levels(tv, s["sg"].numpy(), cube_steps.grid.sigma_half.numpy(), r)
    ta, hus, sg = (s[k].double() for k in ("ta", "hus", "sg"))
    tv_t = virtual_temperature_torch(ta, hus, r)
    phi_t = geopotential_full_levels_torch(tv_t, sg, cube_steps.grid.sigma_half, r)
    np.testing.assert_allclose(tv_t.numpy(), tv, rtol=1e-14)
    np.testing.assert_allclose(phi_t.numpy(), phi, rtol=1e-12, atol=1e-6)
    # and the cube's zg is exactly that, in float32
    np.testing.assert_allclose(s["zg"].numpy(), phi / g, rtol=1e-6, atol=1e-3)


def test_torch_alpha_is_the_numpy_one(small_grid, cube_steps):
    for half in (small_grid.sigma_half, cube_steps.grid.sigma_half):
        np.testing.assert_allclose(full_level_alpha_torch(half).numpy(), full_level_alpha(half.numpy()), rtol=1e-15)


def test_thickness_weights_sum_to_a_log_pressure_step(small_grid):
    upper, lower = thickness_weights(small_grid.sigma_half)
    assert upper.shape == lower.shape == (4,)
    assert float(upper.min()) > 0 and float(lower.min()) > 0
    full = 0.5 * (small_grid.sigma_half[1:] + small_grid.sigma_half[:-1])
    # the discretisation's Δ ln p between full levels: within a few % of the exact one
    np.testing.assert_allclose((upper + lower).numpy(), torch.log(full[1:] / full[:-1]).numpy(), rtol=0.05)
