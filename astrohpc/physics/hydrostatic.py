"""Hydrostatic geopotential on sigma levels (Simmons & Burridge 1981, as PlaSim's dynamics).

numpy in float64 (the converter derives the cube's `zg` with it), and the same discretisation in
torch beside it, differentiable, for the hydrostatic residual a loss reads. With p = σ·ps, ratios
of pressure are ratios of σ, so the geopotential of the full levels depends on the virtual
temperature, the surface geopotential and the σ interfaces only.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.state import Scalar, fields64, per_sample, sigma_half64
from astrohpc.planet import WATER_VAPOUR_GAS_CONSTANT_J_KG_K


def virtual_temperature(ta: np.ndarray, hus: np.ndarray, gas_constant: float, vapour_gas_constant: float
                        ) -> np.ndarray:
    """T_v = T (1 + (R_v / R − 1) q). ta in K, hus in kg kg⁻¹, gas constants in J kg⁻¹ K⁻¹."""
    return np.asarray(ta, np.float64) * (1.0 + (vapour_gas_constant / gas_constant - 1.0)
                                         * np.asarray(hus, np.float64))


def full_level_alpha(sigma_half: np.ndarray) -> np.ndarray:
    """α_k = 1 − σ_{k−1/2}/Δσ_k · ln(σ_{k+1/2}/σ_{k−1/2}); α = ln 2 for the top layer (σ_{1/2} = 0)."""
    half = np.asarray(sigma_half, np.float64)
    upper, lower = half[:-1], half[1:]
    alpha = np.full(upper.shape, np.log(2.0))
    inner = upper > 0
    alpha[inner] = 1.0 - upper[inner] / (lower[inner] - upper[inner]) * np.log(lower[inner] / upper[inner])
    return alpha


def geopotential_full_levels(t_virtual: np.ndarray, surface_geopotential: np.ndarray, sigma_half: np.ndarray,
                             gas_constant: float) -> np.ndarray:
    """Geopotential Φ in m² s⁻² of the full levels.

    t_virtual: [..., lev, lat, lon] in K, levels top -> bottom; surface_geopotential: [..., lat, lon]
    (or broadcastable) in m² s⁻²; sigma_half: [lev + 1] interfaces, 0 at the top, 1 at the surface.
    Φ_{k+1/2} = Φ_s + R Σ_{j>k} T_v,j ln(σ_{j+1/2}/σ_{j−1/2});  Φ_k = Φ_{k+1/2} + α_k R T_v,k.
    """
    tv = np.asarray(t_virtual, np.float64)
    half = np.asarray(sigma_half, np.float64)
    nlev = tv.shape[-3]
    if half.shape != (nlev + 1,):
        raise ValueError(f"sigma_half has {half.size} interfaces for {nlev} levels (need {nlev + 1})")
    alpha = full_level_alpha(half)
    phi = np.empty_like(tv)
    below = np.broadcast_to(np.asarray(surface_geopotential, np.float64), tv[..., 0, :, :].shape).copy()
    for k in range(nlev - 1, -1, -1):
        phi[..., k, :, :] = below + alpha[k] * gas_constant * tv[..., k, :, :]
        if k > 0:
            below = below + gas_constant * tv[..., k, :, :] * np.log(half[k + 1] / half[k])
    return phi


# --- torch, differentiable: the same discretisation for losses and diagnostics -----------------------

def virtual_temperature_torch(ta: torch.Tensor, hus: torch.Tensor, gas_constant: Scalar,
                              vapour_gas_constant: float = WATER_VAPOUR_GAS_CONSTANT_J_KG_K) -> torch.Tensor:
    """T_v = T (1 + (R_v / R − 1) q), as `virtual_temperature`. ta [..] in K, hus [..] in kg kg⁻¹;
    gas_constant (J kg⁻¹ K⁻¹): a float or a tensor broadcastable against ta (per sample)."""
    return ta * (1.0 + (vapour_gas_constant / gas_constant - 1.0) * hus)


def full_level_alpha_torch(sigma_half: torch.Tensor) -> torch.Tensor:
    """[lev] α_k of `full_level_alpha`, on sigma_half's device (no copy to the host)."""
    upper, lower = sigma_half[:-1], sigma_half[1:]
    inner = upper > 0
    safe_upper = torch.where(inner, upper, lower)  # the top layer's ln(σ/0) never enters, not even as NaN
    inner_alpha = 1.0 - safe_upper / (lower - safe_upper) * torch.log(lower / safe_upper)
    return torch.where(inner, inner_alpha, torch.full_like(upper, math.log(2.0)))


def thickness_weights(sigma_half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Simmons–Burridge thickness between full levels k and k+1 (top -> bottom): ([lev−1], [lev−1])
    weights (w_upper, w_lower) with Φ_k − Φ_{k+1} = R (w_upper_k T_v,k + w_lower_k T_v,k+1).

    From `geopotential_full_levels`: w_upper_k = α_k, w_lower_k = ln(σ_{k+3/2}/σ_{k+1/2}) − α_{k+1}.
    Their sum is the discretisation's Δ ln p between the two full levels.
    """
    alpha = full_level_alpha_torch(sigma_half)
    log_ratio = torch.log(sigma_half[2:] / sigma_half[1:-1])  # ln(σ_{k+3/2}/σ_{k+1/2}), k = 0 … lev−2
    return alpha[:-1], log_ratio - alpha[1:]


def geopotential_full_levels_torch(t_virtual: torch.Tensor, surface_geopotential: torch.Tensor,
                                   sigma_half: torch.Tensor, gas_constant: Scalar) -> torch.Tensor:
    """`geopotential_full_levels` in torch, differentiable: Φ [..., lev, lat, lon] in m² s⁻².

    t_virtual: [..., lev, lat, lon] K, top -> bottom; surface_geopotential: [..., lat, lon] m² s⁻²;
    sigma_half: [lev + 1]; gas_constant: float or a tensor broadcastable against t_virtual.
    """
    nlev = t_virtual.shape[-3]
    if sigma_half.shape != (nlev + 1,):
        raise ValueError(f"sigma_half has {sigma_half.numel()} interfaces for {nlev} levels (need {nlev + 1})")
    half = sigma_half.to(dtype=t_virtual.dtype, device=t_virtual.device)
    alpha = full_level_alpha_torch(half)[:, None, None]
    # ln(σ_{k+1/2}/σ_{k−1/2}) of each layer; the top one (σ_{1/2} = 0) never enters an interface
    log_ratio = torch.cat([half.new_zeros(1), torch.log(half[2:] / half[1:-1])])[:, None, None]
    layer = t_virtual * log_ratio
    below = torch.flip(torch.cumsum(torch.flip(layer, [-3]), -3), [-3]) - layer  # Σ_{j>k}
    return surface_geopotential.unsqueeze(-3) + gas_constant * (below + alpha * t_virtual)


def hydrostatic_thickness_residual(state: Mapping[str, torch.Tensor], grid: SphereGrid,
                                   planet: PlanetConstants) -> torch.Tensor:
    """[B, lev, lat, lon] in m: zg's thickness minus the hydrostatic one, layer by layer.

    k < lev−1: (zg_k − zg_{k+1}) − R/g (w_upper_k T_v,k + w_lower_k T_v,k+1) (`thickness_weights`);
    the bottom level: (zg_lev − sg/g) − α R T_v / g. Reads zg (m), ta (K), hus (kg kg⁻¹), sg
    (m² s⁻²); R, R_v, g from `planet` and astrohpc.planet. Summed from the bottom they give zg −
    Φ(ta, hus, sg)/g; layer by layer each error is charged to the layer that makes it.
    """
    zg, ta, hus, sg = fields64(state, ("zg", "ta", "hus", "sg"), "the hydrostatic residual")
    gas = per_sample(planet.gas_constant_J_kg_K, ta)
    gravity = per_sample(planet.gravity_m_s2, ta)
    half = sigma_half64(grid, ta)
    tv = virtual_temperature_torch(ta, hus, gas)
    upper, lower = thickness_weights(half)
    thickness = gas / gravity * (upper[:, None, None] * tv[:, :-1] + lower[:, None, None] * tv[:, 1:])
    alpha_bottom = full_level_alpha_torch(half)[-1]
    bottom = zg[:, -1] - sg / per_sample(planet.gravity_m_s2, sg) - alpha_bottom * (gas / gravity * tv)[:, -1]
    return torch.cat([(zg[:, :-1] - zg[:, 1:]) - thickness, bottom[:, None]], dim=1)


def hydrostatic_residual(state: Mapping[str, torch.Tensor], grid: SphereGrid, planet: PlanetConstants
                         ) -> torch.Tensor:
    """[B] in m: RMS of `hydrostatic_thickness_residual` over the levels and the globe (area-weighted).
    On the GCM's own fields (the cube's zg is Φ/g of `geopotential_full_levels`) it is float32
    rounding of zg (≲ 1e-3 m); levels out of order make it hundreds of metres or more."""
    residual = hydrostatic_thickness_residual(state, grid, planet)
    return torch.sqrt(global_mean((residual ** 2).mean(dim=1), grid))
