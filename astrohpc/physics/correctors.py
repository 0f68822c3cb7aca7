"""Hard conservation correctors applied to a predicted state after every step (as in Ai2's ACE).

Each corrector is `(before, after, grid, planet, step_s) -> {name: tensor}` and returns ONLY the
fields it changes. It computes in float64 (whatever the state's dtype) and returns each field in
the dtype it came in: exactness is float64's; a float32 state keeps float32's rounding on top
(~1e-7 relative). σ levels only (p = σ·ps). `before`, `after`: states in SI units
(astrohpc.physics.state); step_s: the time between them, s (float or [B]).

`CorrectorChain(names)` applies a selection in a fixed order, whatever the order the names come
in: humidity (it moves water, and would change the dry mass where it cannot conserve water), then
dry mass (it rescales ps, which every column integral depends on), then energy (its increment is
worked out for the final ps and q).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from astrohpc.errors import ConfigError
from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.energy import FLUX_TIMINGS, column_energy, step_mean_flux
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.mass import column_dry_mass, layer_mass
from astrohpc.physics.state import Scalar, State, dsigma64, fields64, per_sample

Corrector = Callable[[State, State, SphereGrid, PlanetConstants, Scalar], dict[str, torch.Tensor]]


def humidity_corrector(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                       step_s: Scalar) -> dict[str, torch.Tensor]:
    """{"hus"}: q < 0 clipped to 0 and the positive values scaled by one factor per sample so
    that the global water mass Σ q ps Δσ/g equals `after`'s before clipping.

    When that total is ≤ 0 no non-negative field has it: q is clipped only (the water grows).
    A field without negative values comes back unchanged (the factor is exactly 1).
    """
    ps, hus = fields64(after, ("ps", "hus"), "the humidity corrector")
    mass = layer_mass(ps, grid, planet)  # kg m⁻² per layer
    clipped = torch.relu(hus)
    total = global_mean((hus * mass).sum(dim=-3), grid)  # [B] kg m⁻²; × 4πa² cancels in the ratio
    positive = global_mean((clipped * mass).sum(dim=-3), grid)
    conservable = total > 0
    # the safe denominator keeps the unused branch of `where` (and its gradient) finite
    scale = torch.where(conservable, total / torch.where(conservable, positive, torch.ones_like(positive)),
                        torch.ones_like(total))
    return {"hus": (clipped * scale[:, None, None, None]).to(after["hus"].dtype)}


def dry_mass_corrector(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                       step_s: Scalar) -> dict[str, torch.Tensor]:
    """{"ps"}: ps multiplied by one factor per sample so that the global dry-air mass of `after`
    equals `before`'s. Dry mass is linear in ps at fixed q, so the factor M_d(before)/M_d(after)
    is exact (to float64 rounding, ~1e-16) and a second application leaves ps as it is."""
    ps0, hus0 = fields64(before, ("ps", "hus"), "the dry-mass corrector")
    ps1, hus1 = fields64(after, ("ps", "hus"), "the dry-mass corrector")
    target = global_mean(column_dry_mass(ps0, hus0, grid, planet), grid)  # [B] kg m⁻²
    current = global_mean(column_dry_mass(ps1, hus1, grid, planet), grid)
    return {"ps": (ps1 * (target / current)[:, None, None]).to(after["ps"].dtype)}


def energy_corrector(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                     step_s: Scalar, timing: str = "snapshots") -> dict[str, torch.Tensor]:
    """{"ta"}: one temperature increment δT (K) per sample, the same at every level and column,
    added so that the global-mean column energy changes by F̄·step (astrohpc.physics.energy: F is
    the net flux into the atmosphere; F̄ its mean over the step, from the states as `timing` says:
    the two ends' snapshots, or `after`'s step means).

    E is linear in T with dE/dT = cp ps/g Σ Δσ per column, so δT = (F̄·step − ΔĒ) / mean(cp ps/g Σ Δσ)
    closes `energy_budget_residual` to float64 rounding. Reads what the column energy and the
    fluxes need (ps, ta, hus, ua, va, sg; ntr or rst + rlut; rss, rls, hfss, hfls).
    """
    e_before = column_energy(before, grid, planet)
    e_after = column_energy(after, grid, planet)
    gap = global_mean(e_after - e_before, grid)  # [B] J m⁻²
    wanted = global_mean(step_mean_flux(before, after, timing), grid) * per_sample(step_s, gap)  # [B] J m⁻²
    ps, ta = fields64(after, ("ps", "ta"), "the energy corrector")
    heat_capacity = per_sample(planet.cp_J_kg_K, ps) * ps / per_sample(planet.gravity_m_s2, ps) \
        * dsigma64(grid, ta).sum()  # J m⁻² K⁻¹ per column
    increment = (wanted - gap) / global_mean(heat_capacity, grid)  # [B] K
    return {"ta": (ta + increment[:, None, None, None]).to(after["ta"].dtype)}


CORRECTORS: dict[str, Corrector] = {
    "humidity": humidity_corrector,
    "dry_mass": dry_mass_corrector,
    "energy": energy_corrector,
}
ORDER = ("humidity", "dry_mass", "energy")


class CorrectorChain:
    """The correctors `names` (keys of CORRECTORS), applied in ORDER; calling it returns `after`
    with every corrected field replaced (a new dict; the inputs are not modified).
    flux_timing: how the states hold their fluxes, for the energy corrector
    (astrohpc.physics.energy.step_mean_flux)."""

    def __init__(self, names: Sequence[str], flux_timing: str = "snapshots"):
        if flux_timing not in FLUX_TIMINGS:
            raise ConfigError(f"flux timing {flux_timing!r}: expected one of {', '.join(FLUX_TIMINGS)}")
        self.flux_timing = flux_timing
        unknown = [name for name in names if name not in CORRECTORS]
        if unknown:
            raise ConfigError(f"unknown corrector {', '.join(map(repr, unknown))}; valid: {', '.join(CORRECTORS)}")
        repeated = sorted({name for name in names if list(names).count(name) > 1})
        if repeated:
            raise ConfigError(f"corrector {', '.join(map(repr, repeated))} listed more than once")
        self.names = [name for name in ORDER if name in names]

    def __call__(self, before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                 step_s: Scalar) -> dict[str, torch.Tensor]:
        state = dict(after)
        for name in self.names:
            if name == "energy":
                state.update(energy_corrector(before, state, grid, planet, step_s, self.flux_timing))
            else:
                state.update(CORRECTORS[name](before, state, grid, planet, step_s))
        return state

    def __repr__(self) -> str:
        timing = "" if self.flux_timing == "snapshots" else f", flux_timing={self.flux_timing!r}"
        return f"CorrectorChain({self.names}{timing})"
