"""Fixtures for the physics tests: consecutive daily states of the real smoke runs (physics_cube),
as the state dicts astrohpc.physics reads, and a small uniform state for exact arithmetic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid


@dataclass
class CubeSteps:
    """Every (t, t+1) pair of daily snapshots of the cube's two runs, batched: B = 8."""

    before: dict  # state at t, float32 as read (SI units)
    after: dict   # state at t+1
    grid: SphereGrid
    planet: PlanetConstants  # [B] tensors, the runs' own constants
    step_s: float
    meta: object


def split_state(x: torch.Tensor, meta, static: torch.Tensor, static_names: list[str]) -> dict:
    """[B, C, lat, lon] -> {variable: [B, lat, lon] or [B, lev, lat, lon]} plus static fields."""
    state = {}
    for name in dict.fromkeys(meta.variables):
        channels = meta.channels_of([name])
        state[name] = x[:, channels] if len(channels) > 1 else x[:, channels[0]]
    state.update({name: static[:, i] for i, name in enumerate(static_names)})
    return state


@pytest.fixture(scope="session")
def cube_steps(physics_cube) -> CubeSteps:
    from astrohpc.data.dataset import WindowDataset

    ds = WindowDataset(physics_cube, 1, 1, normalize=False, static=True)
    try:
        items = [ds[i] for i in range(len(ds))]
        meta, names = ds.meta, ds.static_names
    finally:
        ds.close()
    static = torch.stack([it["static"] for it in items])
    before = split_state(torch.stack([it["input"][0] for it in items]), meta, static, names)
    after = split_state(torch.stack([it["target"][0] for it in items]), meta, static, names)
    planet = PlanetConstants.from_run_params({k: torch.stack([it["planet"][k] for it in items])
                                              for k in items[0]["planet"]})
    step_days = {float(it["time"][1] - it["time"][0]) for it in items}
    assert step_days == {1.0}, step_days  # daily snapshots
    return CubeSteps(before, after, SphereGrid.from_meta(meta), planet, 86400.0, meta)


@pytest.fixture
def small_grid() -> SphereGrid:
    """An 8 × 16 Gaussian grid (area weights sum to 1) with 5 σ layers."""
    nlat, nlon = 8, 16
    x, w = np.polynomial.legendre.leggauss(nlat)
    area = np.repeat((w / 2.0 / nlon)[:, None], nlon, axis=1)
    return SphereGrid(torch.as_tensor(area), torch.tensor([0.0, 0.1, 0.3, 0.6, 0.85, 1.0], dtype=torch.float64),
                      torch.as_tensor(np.degrees(np.arcsin(x))), torch.arange(nlon, dtype=torch.float64) * 360.0 / nlon)
