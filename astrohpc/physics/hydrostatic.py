"""Hydrostatic geopotential on sigma levels (Simmons & Burridge 1981, as PlaSim's dynamics).

Pure numpy, float64. With p = σ·ps, ratios of pressure are ratios of σ, so the geopotential of
the full levels depends on the virtual temperature, the surface geopotential and the σ
interfaces only.
"""

from __future__ import annotations

import numpy as np


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
