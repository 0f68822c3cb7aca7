"""Column energy, the fluxes that change it, the TOA balance, and the global budget of one step.

Fluxes follow PlaSim: every one is positive DOWNWARD (docs/datacube.md). The atmosphere gains
energy at the top (ntr = rst + rlut) and loses what goes into the surface (rss + rls + hfss +
hfls, each positive into the surface), so the net flux INTO THE ATMOSPHERE is

    F = ntr − (rss + rls + hfss + hfls)        W m⁻²

The TOA flux alone is not the atmosphere's budget: the ocean takes up tens of W m⁻² in our runs,
and charging that to the air would call a correct step wrong by as much.
"""

from __future__ import annotations

import torch

from astrohpc.errors import ConfigError
from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.state import Scalar, State, dsigma64, fields64, per_sample
from astrohpc.planet import LATENT_HEAT_VAPORISATION_J_KG

SURFACE_FLUXES = ("rss", "rls", "hfss", "hfls")
FLUX_VARIABLES = ("ntr", "rst", "rlut", *SURFACE_FLUXES)
FLUX_TIMINGS = ("snapshots", "step_means")
ENERGY_FIELDS = ("ps", "ta", "hus", "ua", "va", "sg")


def column_energy(state: State, grid: SphereGrid, planet: PlanetConstants) -> torch.Tensor:
    """[B, lat, lon] J m⁻²: E = ps/g Σ_k Δσ_k (cp T_k + L_v q_k + ½(u_k² + v_k²)) + sg·ps/g.

    Reads ps (Pa), ta (K), hus (kg kg⁻¹), ua, va (m s⁻¹) [B, lev, lat, lon], sg (m² s⁻²); cp and g
    from `planet`, L_v from astrohpc.planet. Float64.
    """
    ps, ta, hus, ua, va, sg = fields64(state, ENERGY_FIELDS, "the column energy")
    cp = per_sample(planet.cp_J_kg_K, ta)
    specific = cp * ta + LATENT_HEAT_VAPORISATION_J_KG * hus + 0.5 * (ua ** 2 + va ** 2)  # J kg⁻¹
    mass = ps / per_sample(planet.gravity_m_s2, ps)  # kg m⁻²
    return mass * ((dsigma64(grid, ta) * specific).sum(dim=-3) + sg)


def toa_net_flux(state: State) -> torch.Tensor:
    """[B, lat, lon] W m⁻², positive down: the state's `ntr`, else rst + rlut."""
    if "ntr" in state:
        return state["ntr"].to(torch.float64)
    rst, rlut = fields64(state, ("rst", "rlut"), "the TOA net flux (ntr, or rst and rlut)")
    return rst + rlut


def atmosphere_net_flux(state: State) -> torch.Tensor:
    """[B, lat, lon] W m⁻²: F = ntr − (rss + rls + hfss + hfls), the net flux into the atmosphere
    (see the module doc). Reads ntr (or rst + rlut) and the four surface fluxes."""
    rss, rls, hfss, hfls = fields64(state, SURFACE_FLUXES, "the atmosphere's energy budget (the net flux "
                                    "into it: the TOA flux less what enters the surface)")
    return toa_net_flux(state) - (rss + rls + hfss + hfls)


def flux_timing(flux_names: list[str] | tuple[str, ...], step_means: list[str] | tuple[str, ...],
                where: str = "the cube") -> str:
    """How states carrying the fluxes `flux_names` hold them: "step_means" when every one of them is
    among `step_means` (the variables averaged over the step into each state), "snapshots" when none
    is; a ConfigError naming `where` when they are mixed (no budget can be closed from both)."""
    fluxes = [v for v in flux_names if v in FLUX_VARIABLES]
    means = [v for v in fluxes if v in step_means]
    if means and len(means) < len(fluxes):
        raise ConfigError(f"{where} holds {', '.join(means)} as means over the step but "
                          f"{', '.join(v for v in fluxes if v not in means)} as snapshots: the energy budget "
                          "needs all its fluxes alike (list every flux in data.step_mean_variables, or none)")
    return "step_means" if means else "snapshots"


def toa_energy_balance(state: State, grid: SphereGrid) -> torch.Tensor:
    """[B] W m⁻²: absorbed shortwave − outgoing longwave, the global mean of rst + rlut (= ntr);
    > 0: the planet gains energy."""
    rst, rlut = fields64(state, ("rst", "rlut"), "the TOA energy balance")
    return global_mean(rst + rlut, grid)


def step_mean_flux(before: State, after: State, timing: str = "snapshots") -> torch.Tensor:
    """[B, lat, lon] W m⁻²: F averaged over the step before -> after.

    timing (FLUX_TIMINGS): "snapshots" — both states hold instantaneous fluxes, and the mean of the
    two ends is what they allow (a poor estimate when the sun moves between them: a day of a slowly
    rotating planet); "step_means" — `after` holds the fluxes averaged over the step into it (a
    cube's step_mean_variables, astrohpc/data/step_means.py): that is F̄ itself."""
    if timing == "step_means":
        return atmosphere_net_flux(after)
    if timing != "snapshots":
        raise ValueError(f"flux timing {timing!r}: expected one of {', '.join(FLUX_TIMINGS)}")
    return 0.5 * (atmosphere_net_flux(before) + atmosphere_net_flux(after))


def energy_budget_residual(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                           step_s: Scalar, timing: str = "snapshots") -> torch.Tensor:
    """[B] W m⁻²: global mean of (E(after) − E(before))/step − F̄; 0 when the column energy changes
    by what the fluxes bring. step_s: the time between the states, s (float or [B]); timing: how
    the states hold their fluxes (step_mean_flux)."""
    tendency = column_energy(after, grid, planet) - column_energy(before, grid, planet)
    flux = step_mean_flux(before, after, timing)
    return global_mean(tendency / per_sample(step_s, tendency) - flux, grid)
