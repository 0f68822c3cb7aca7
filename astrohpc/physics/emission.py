"""The thermal emission spectrum of the GCM's own columns: a grey two-stream formula.

For each column the top-of-atmosphere outgoing spectral flux in a wavenumber bin is

    F(ν) = π B_ν(T_s) · 𝒯_s  +  Σ_k π B_ν(T_k) · (𝒯(p_{k−½}) − 𝒯(p_{k+½}))

    𝒯(p) = exp(−D τ(p)),   τ(p) = τ_s (p / p_s)^n      (grey: the same τ in every bin)

B_ν is Planck's function per wavenumber, T_s the surface temperature (`ts`, a blackbody
surface), T_k the air temperature of layer k (`ta`) between the interfaces p_{k∓½} (top, bottom;
on σ levels p = σ·p_s), 𝒯_s = 𝒯(p_s) = exp(−D τ_s) the transmission of the whole column. This
is the two-stream solution of Schwarzschild's equation for upward flux without scattering,
with the angular integral replaced by the diffusivity approximation (all radiation travels
at the mean slant path D = 1.66, Elsasser 1942), and the source function taken constant
(= B(T_k)) within each layer. τ ∝ p^n mimics an absorber mixed with scale height 1/n of the
pressure scale height: n = 4 for water vapour (Frierson, Held & Zurita-Gotor 2006, whose
grey τ_s of 1.8–7.2 includes D; τ_s = 2 with D = 1.66 is a slant depth of 3.3).

Properties the tests check: the layer weights telescope, so an isothermal column emits
exactly π B_ν(T) and its integral over all wavenumbers is σT⁴; τ_s → 0 gives the surface's
Planck curve; a colder upper atmosphere with more optical depth emits less.

Units: wavenumbers in cm⁻¹; spectral flux in W m⁻² (cm⁻¹)⁻¹, the mean over each bin (a bin's
band flux in W m⁻² is that times its width, `band_flux`). Everything in float64 torch,
differentiable (so a predicted temperature field can be scored by its spectrum).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import numpy as np
import torch

from astrohpc.physics.grid import SphereGrid, global_mean

ArrayLike = Union[torch.Tensor, np.ndarray, float]

# SI 2019 exact values.
PLANCK_J_S = 6.62607015e-34
LIGHT_M_S = 299792458.0
BOLTZMANN_J_K = 1.380649e-23
STEFAN_BOLTZMANN_W_M2_K4 = 2.0 * np.pi ** 5 * BOLTZMANN_J_K ** 4 / (15.0 * PLANCK_J_S ** 3 * LIGHT_M_S ** 2)
# Planck's function per wavenumber ν̃ in cm⁻¹: B = C1 ν̃³ / (exp(C2 ν̃ / T) − 1) in W m⁻² sr⁻¹ (cm⁻¹)⁻¹.
# 2hc²ν³ with ν in m⁻¹ (= 100 ν̃), per m⁻¹ -> per cm⁻¹ multiplies by another 100.
_C1 = 2.0 * PLANCK_J_S * LIGHT_M_S ** 2 * 1e8
_C2 = PLANCK_J_S * LIGHT_M_S / BOLTZMANN_J_K * 100.0  # K cm: hc/k with ν̃ in cm⁻¹
SPECTRAL_FLUX_UNITS = "W m-2 (cm-1)-1"


@dataclass(frozen=True)
class GreyAtmosphere:
    """The formula's parameters: τ(p) = tau_surface · (p/ps)^exponent, transmission exp(−diffusivity·τ).

    tau_surface: vertical grey optical depth of the whole column (1); exponent: n (1);
    diffusivity: D, the two-stream mean slant-path factor (1.66, Elsasser)."""

    tau_surface: float = 2.0
    exponent: float = 4.0
    diffusivity: float = 1.66

    def __post_init__(self) -> None:
        if self.tau_surface < 0 or self.exponent <= 0 or self.diffusivity <= 0:
            raise ValueError(f"grey atmosphere needs tau_surface >= 0, exponent > 0, diffusivity > 0; got {self}")

    def transmission(self, p: torch.Tensor, ps: torch.Tensor) -> torch.Tensor:
        """𝒯 = exp(−D τ(p)) from pressure p to space: p and ps in the same units, broadcast together."""
        return torch.exp(-self.diffusivity * self.tau_surface * (p / ps).clamp(min=0.0) ** self.exponent)


def wavenumber_edges(n_bins: int = 16, low_cm: float = 10.0, high_cm: float = 3000.0) -> torch.Tensor:
    """[n_bins + 1] bin edges in cm⁻¹, evenly spaced from low_cm to high_cm (float64).

    The default range holds all but ~1e-4 of the emission of a 300 K blackbody (and more of
    colder ones)."""
    if n_bins < 1 or not 0.0 <= low_cm < high_cm:
        raise ValueError(f"wavenumber bins need n_bins >= 1 and 0 <= low_cm < high_cm; got {n_bins}, {low_cm}, "
                         f"{high_cm}")
    return torch.linspace(low_cm, high_cm, n_bins + 1, dtype=torch.float64)


def _as64(x: ArrayLike) -> torch.Tensor:
    return torch.as_tensor(x).to(torch.float64) if not isinstance(x, torch.Tensor) else x.to(torch.float64)


def planck_band_flux(temperature: ArrayLike, edges_cm: ArrayLike, points: int = 8) -> torch.Tensor:
    """Blackbody hemispheric flux π B_ν(T), averaged over each bin: [...] K -> [..., n_bins] W m⁻² (cm⁻¹)⁻¹.

    The bin average is a `points`-node Gauss–Legendre quadrature (Planck's function is smooth:
    8 nodes are exact to ~1e-10 for bins up to a few hundred cm⁻¹ wide)."""
    t = _as64(temperature)
    edges = _as64(edges_cm).to(t.device)
    nodes, weights = np.polynomial.legendre.leggauss(points)
    lo, hi = edges[:-1, None], edges[1:, None]
    nu = 0.5 * (lo + hi) + 0.5 * (hi - lo) * torch.as_tensor(nodes, dtype=torch.float64, device=t.device)  # [bin, q]
    w = torch.as_tensor(weights / 2.0, dtype=torch.float64, device=t.device)  # sums to 1: a mean over the bin
    x = _C2 * nu / t[..., None, None]  # [..., bin, q]
    radiance = _C1 * nu ** 3 / torch.expm1(x)
    return torch.pi * (radiance * w).sum(dim=-1)


def band_flux(spectrum: torch.Tensor, edges_cm: ArrayLike) -> torch.Tensor:
    """∫ F dν over the bins: [..., n_bins] W m⁻² (cm⁻¹)⁻¹ -> [...] W m⁻²."""
    edges = _as64(edges_cm).to(spectrum.device)
    return (spectrum * (edges[1:] - edges[:-1]).to(spectrum.dtype)).sum(dim=-1)


def emission_weights(p_half: ArrayLike, ps: ArrayLike, grey: GreyAtmosphere = GreyAtmosphere()
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """How much of the TOA flux each emitter contributes: (surface [..., lat, lon], layers [..., lev, lat, lon]).

    p_half: [..., lev + 1, lat, lon] interface pressures, top -> bottom (Pa); ps: [..., lat, lon] (Pa).
    A layer's weight is its emissivity times the transmission above it, 𝒯(top) − 𝒯(bottom);
    the surface's is 𝒯(ps). With a model top at p = 0 they sum to 1."""
    p_half, ps = _as64(p_half), _as64(ps)
    trans = grey.transmission(p_half, ps[..., None, :, :])
    return grey.transmission(ps, ps), trans[..., :-1, :, :] - trans[..., 1:, :, :]


def toa_spectral_flux(ts: ArrayLike, ta: ArrayLike, p_half: ArrayLike, ps: ArrayLike, edges_cm: ArrayLike,
                      grey: GreyAtmosphere = GreyAtmosphere(), points: int = 8) -> torch.Tensor:
    """Outgoing spectral flux of every column: [..., n_bins, lat, lon] in W m⁻² (cm⁻¹)⁻¹, float64.

    ts: [..., lat, lon] K; ta: [..., lev, lat, lon] K (layer means, top -> bottom);
    p_half: [..., lev + 1, lat, lon] Pa; ps: [..., lat, lon] Pa. Memory: lev·lat·lon·n_bins·points
    float64 per leading index, so evaluate a long series a few steps at a time."""
    ts, ta = _as64(ts), _as64(ta)
    surface, layers = emission_weights(p_half, ps, grey)
    if layers.shape[-3] != ta.shape[-3]:
        raise ValueError(f"ta has {ta.shape[-3]} levels but p_half has {layers.shape[-3] + 1} interfaces "
                         "(need lev + 1)")
    flux = planck_band_flux(ts, edges_cm, points) * surface[..., None]  # [..., lat, lon, bin]
    flux = flux + (planck_band_flux(ta, edges_cm, points) * layers[..., None]).sum(dim=-4)
    return flux.movedim(-1, -3)


def emission_spectrum(ts: ArrayLike, ta: ArrayLike, ps: ArrayLike, grid: SphereGrid, edges_cm: ArrayLike,
                      grey: GreyAtmosphere = GreyAtmosphere(), points: int = 8) -> torch.Tensor:
    """The area-weighted global mean of `toa_spectral_flux` on σ levels: [...] -> [..., n_bins] W m⁻² (cm⁻¹)⁻¹.

    ts, ps: [..., lat, lon] (K, Pa); ta: [..., lev, lat, lon] K on the grid's σ layers
    (p = σ·ps, interfaces `grid.sigma_half`)."""
    ps = _as64(ps)
    if grid.sigma_half is None:
        raise ValueError("the emission spectrum needs σ interfaces (grid.sigma_half): a cube on model σ levels")
    sigma_half = grid.sigma_half.to(dtype=torch.float64, device=ps.device)
    p_half = sigma_half[:, None, None] * ps[..., None, :, :]
    return global_mean(toa_spectral_flux(ts, ta, p_half, ps, edges_cm, grey, points), grid)
