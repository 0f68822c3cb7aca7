"""Negative humidity: how much water a state holds below zero (a model's, never the GCM's)."""

from __future__ import annotations

import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.mass import layer_mass
from astrohpc.physics.state import State, fields64


def negative_water_column(state: State, grid: SphereGrid, planet: PlanetConstants) -> torch.Tensor:
    """[B, lat, lon] kg m⁻²: Σ_k max(−q_k, 0) ps Δσ_k/g (reads ps in Pa, hus in kg kg⁻¹)."""
    ps, hus = fields64(state, ("ps", "hus"), "the negative-humidity mass")
    return (torch.relu(-hus) * layer_mass(ps, grid, planet)).sum(dim=-3)


def negative_water(state: State, grid: SphereGrid, planet: PlanetConstants) -> torch.Tensor:
    """[B] kg m⁻²: global mean of `negative_water_column`; 0 when no q < 0."""
    return global_mean(negative_water_column(state, grid, planet), grid)
