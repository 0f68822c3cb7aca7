"""The global water budget of one step: the vapour the air gains against evaporation less precipitation.

    dW/dt = E − P        kg m⁻² s⁻¹, global means

W is the column water vapour the state holds (astrohpc.physics.mass.column_water_mass: Σ q Δp/g),
E = −hfls / L_v (PlaSim's fluxes are positive downward: evaporation is an upward latent-heat flux)
and P = pr × ρ_w (ExoPlaSim writes pr as a liquid-water rate, m s⁻¹). As for energy, `timing`
says how the states hold the fluxes (astrohpc.physics.energy.step_mean_flux): the mean of both
ends' snapshots, or `after`'s means over the step. ExoPlaSim's own steps close it to ~0.1 % of P
on its step means (docs/skill.md).
"""

from __future__ import annotations

import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.energy import FLUX_TIMINGS
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.mass import column_water_mass
from astrohpc.physics.state import Scalar, State, fields64, per_sample
from astrohpc.planet import LATENT_HEAT_VAPORISATION_J_KG

WATER_DENSITY_KG_M3 = 1000.0
WATER_FIELDS = ("ps", "hus", "pr", "hfls")


def surface_water_flux(state: State) -> torch.Tensor:
    """[B, lat, lon] kg m⁻² s⁻¹: E − P, the water the air gains from the surface (reads pr in m s⁻¹
    and hfls in W m⁻², positive down)."""
    pr, hfls = fields64(state, ("pr", "hfls"), "the water budget (precipitation pr and latent heat flux hfls)")
    return -hfls / LATENT_HEAT_VAPORISATION_J_KG - pr * WATER_DENSITY_KG_M3


def water_budget_residual(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                          step_s: Scalar, timing: str = "snapshots") -> torch.Tensor:
    """[B] kg m⁻² s⁻¹: global mean of (W(after) − W(before))/step − (E − P) over the step; 0 when
    the vapour changes by what the surface exchanges. step_s: s (float or [B])."""
    if timing not in FLUX_TIMINGS:
        raise ValueError(f"flux timing {timing!r}: expected one of {', '.join(FLUX_TIMINGS)}")
    w = [column_water_mass(*fields64(s, ("ps", "hus"), "the water budget"), grid, planet) for s in (before, after)]
    flux = surface_water_flux(after) if timing == "step_means" else \
        0.5 * (surface_water_flux(before) + surface_water_flux(after))
    tendency = w[1] - w[0]
    return global_mean(tendency / per_sample(step_s, tendency) - flux, grid)
