"""Ideal-gas consistency: the density hydrostatics implies from zg against p/(R T_v).

Between full levels k and k+1 (top -> bottom) the layer's density implied by hydrostatics is
ρ_hydro = Δp/(g Δz), Δp = (σ_{k+1} − σ_k)·ps, Δz = zg_k − zg_{k+1}; the ideal gas gives ρ_gas =
p̄/(R T̄_v). The means are the ones of PlaSim's Simmons–Burridge discretisation
(`hydrostatic.thickness_weights` w_upper, w_lower): T̄_v = (w_upper T_v,k + w_lower T_v,k+1)/(w_upper
+ w_lower) and p̄ = Δp/(w_upper + w_lower), the pressure whose Δ ln p is the discretisation's. With
plain midpoint means the GCM's own fields would miss by the discretisation error (~1–4 %, largest
at the top), and a loss would pull a model away from the GCM.

Both densities come from the same fields (the cube holds no density), so this is the relative
form of the hydrostatic thickness residual between full levels: dimensionless, without the
surface anchor (sg) the metre residual of `hydrostatic_residual` carries.
"""

from __future__ import annotations

import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.hydrostatic import thickness_weights, virtual_temperature_torch
from astrohpc.physics.state import State, fields64, per_sample, sigma_half64


def ideal_gas_residual_field(state: State, grid: SphereGrid, planet: PlanetConstants) -> torch.Tensor:
    """[B, lev − 1, lat, lon], dimensionless: (ρ_hydro − ρ_gas)/ρ_hydro between full levels k, k+1.

    That is 1 − ρ_gas/ρ_hydro = 1 − g Δz / (R (w_upper T_v,k + w_lower T_v,k+1)): linear in zg,
    divided by temperatures only, so it stays finite (and its gradient bounded) when a prediction
    gets Δz ≤ 0. Reads zg (m), ta (K), hus (kg kg⁻¹), ps (Pa); R, g from `planet`.
    """
    zg, ta, hus, ps = fields64(state, ("zg", "ta", "hus", "ps"), "the ideal-gas residual")
    gas = per_sample(planet.gas_constant_J_kg_K, ta)
    gravity = per_sample(planet.gravity_m_s2, ta)
    half = sigma_half64(grid, ta)
    upper, lower = (w[:, None, None] for w in thickness_weights(half))
    tv = virtual_temperature_torch(ta, hus, gas)
    full = 0.5 * (half[1:] + half[:-1])  # PlaSim's full levels are the interfaces' midpoints
    dp = (full[1:] - full[:-1])[:, None, None] * ps.unsqueeze(-3)  # Pa, [B, lev − 1, lat, lon]
    p_mean = dp / (upper + lower)
    tv_mean = (upper * tv[:, :-1] + lower * tv[:, 1:]) / (upper + lower)
    rho_gas = p_mean / (gas * tv_mean)
    # ρ_gas/ρ_hydro = ρ_gas g Δz / Δp
    return 1.0 - rho_gas * gravity * (zg[:, :-1] - zg[:, 1:]) / dp


def ideal_gas_residual(state: State, grid: SphereGrid, planet: PlanetConstants) -> torch.Tensor:
    """[B] dimensionless: RMS of `ideal_gas_residual_field` over the layers and the globe (area-weighted)."""
    residual = ideal_gas_residual_field(state, grid, planet)
    return torch.sqrt(global_mean((residual ** 2).mean(dim=1), grid))
