"""The water budget of a step against a hand-worked column."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.water import water_budget_residual


def _state(grid, q: float, pr: float, hfls: float, ps: float = 1.0e5) -> dict:
    nlev = len(grid.sigma_half) - 1
    nlat, nlon = grid.area_weight.shape
    full = lambda v, *shape: torch.full((2, *shape), v, dtype=torch.float64)  # noqa: E731
    return {"ps": full(ps, nlat, nlon), "hus": full(q, nlev, nlat, nlon), "pr": full(pr, nlat, nlon),
            "hfls": full(hfls, nlat, nlon)}


def test_water_budget_of_a_uniform_column(small_grid):
    planet = PlanetConstants(6.371e6, 9.80665, 287.05, 1004.6)
    g, lv, dt = 9.80665, 2.5008e6, 86400.0
    before = _state(small_grid, 0.004, pr=3e-8, hfls=-80.0)
    after = _state(small_grid, 0.0041, pr=4e-8, hfls=-100.0)
    # by hand: W = q ps / g (the sigma layers sum to 1); E = -hfls / Lv; P = pr x 1000 kg m-3
    tendency = (0.0041 - 0.004) * 1.0e5 / g / dt
    flux_after = 100.0 / lv - 4e-8 * 1000.0
    flux_before = 80.0 / lv - 3e-8 * 1000.0
    means = water_budget_residual(before, after, small_grid, planet, dt, "step_means")
    np.testing.assert_allclose(means.numpy(), tendency - flux_after, rtol=1e-12)
    snaps = water_budget_residual(before, after, small_grid, planet, dt)
    np.testing.assert_allclose(snaps.numpy(), tendency - 0.5 * (flux_before + flux_after), rtol=1e-12)
    # a step whose vapour grows by exactly E - P closes
    closing = _state(small_grid, 0.004 + flux_after * dt * g / 1.0e5, pr=4e-8, hfls=-100.0)
    assert float(water_budget_residual(before, closing, small_grid, planet, dt, "step_means").abs().max()) < 1e-15
    with pytest.raises(ValueError, match="flux timing 'hourly'"):
        water_budget_residual(before, after, small_grid, planet, dt, "hourly")
