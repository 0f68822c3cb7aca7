"""Physics loss terms of a predicted step, weighted by config; differentiable through every term.

`PhysicsLoss(weights)(before, after, grid, planet, step_s)` -> {term: scalar, …, "total": Σ w·term}
for the terms with a weight > 0 (0 or absent: off, not computed). States are in SI units
(astrohpc.physics.state); `after` is the prediction gradients flow through, `before` the state it
stepped from. Each term is a batch mean, float64, ≥ 0, and 0 for a state that obeys the physics;
the squared ones have the square of their diagnostic's unit, so a weight has the inverse unit:

- hydrostatic (m²): mean square of zg's layer-thickness error against T_v, area-weighted over
  levels and globe. Diagnostic: hydrostatic.hydrostatic_residual (its RMS, m).
- energy_budget ((W m⁻²)²): (global mean of ΔE/step − F̄)², F the net flux into the atmosphere.
  Diagnostic: energy.energy_budget_residual (W m⁻²).
- toa_balance ((W m⁻²)²): area-weighted mean square of ntr − (rst + rlut): the TOA balance the
  state reports is the one its shortwave and longwave make. Diagnostic: energy.toa_energy_balance.
- dry_mass (1): ((M_d(after) − M_d(before)) / M_d(before))², M_d the global dry-air mass.
  Diagnostic: mass.global_dry_mass (kg).
- ideal_gas (1): mean square of (ρ_hydro − ρ_gas)/ρ_hydro over layers and globe. Diagnostic:
  gas.ideal_gas_residual (its RMS).
- humidity_negative (kg m⁻²): global mean of Σ max(−q, 0) ps Δσ/g, linear (a hinge: a constant
  pull on every negative value). Diagnostic: humidity.negative_water.

The mean squares are taken directly, not as squares of the RMS diagnostics: the square root's
gradient is NaN at an exact zero.

toa_balance penalises no global imbalance: a planet that is warming or cooling (a cold start, a
season) has one, and a loss pulling it to zero would fight the GCM.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch

from astrohpc.errors import ConfigError
from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.energy import ENERGY_FIELDS, FLUX_TIMINGS, SURFACE_FLUXES, energy_budget_residual
from astrohpc.physics.gas import ideal_gas_residual_field
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.humidity import negative_water
from astrohpc.physics.hydrostatic import hydrostatic_thickness_residual
from astrohpc.physics.mass import global_dry_mass
from astrohpc.physics.state import Scalar, State, fields64


def hydrostatic_loss(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                     step_s: Scalar) -> torch.Tensor:
    return global_mean((hydrostatic_thickness_residual(after, grid, planet) ** 2).mean(dim=1), grid).mean()


def energy_budget_loss(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                       step_s: Scalar, timing: str = "snapshots") -> torch.Tensor:
    return (energy_budget_residual(before, after, grid, planet, step_s, timing) ** 2).mean()


def toa_balance_loss(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                     step_s: Scalar) -> torch.Tensor:
    ntr, rst, rlut = fields64(after, ("ntr", "rst", "rlut"), "the toa_balance loss")
    return global_mean((ntr - (rst + rlut)) ** 2, grid).mean()


def dry_mass_loss(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                  step_s: Scalar) -> torch.Tensor:
    reference = global_dry_mass(before, grid, planet)
    return (((global_dry_mass(after, grid, planet) - reference) / reference) ** 2).mean()


def ideal_gas_loss(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                   step_s: Scalar) -> torch.Tensor:
    return global_mean((ideal_gas_residual_field(after, grid, planet) ** 2).mean(dim=1), grid).mean()


def humidity_negative_loss(before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                           step_s: Scalar) -> torch.Tensor:
    return negative_water(after, grid, planet).mean()


LossTerm = Callable[[State, State, SphereGrid, PlanetConstants, Scalar], torch.Tensor]
TERMS: dict[str, LossTerm] = {
    "hydrostatic": hydrostatic_loss,
    "energy_budget": energy_budget_loss,
    "toa_balance": toa_balance_loss,
    "dry_mass": dry_mass_loss,
    "ideal_gas": ideal_gas_loss,
    "humidity_negative": humidity_negative_loss,
}
LOSS_TERMS = tuple(TERMS)
# The state variables (static sg included) each term reads, for CubeMeta.require before training.
TERM_VARIABLES: dict[str, tuple[str, ...]] = {
    "hydrostatic": ("zg", "ta", "hus", "sg"),
    "energy_budget": (*ENERGY_FIELDS, "ntr", *SURFACE_FLUXES),
    "toa_balance": ("ntr", "rst", "rlut"),
    "dry_mass": ("ps", "hus"),
    "ideal_gas": ("zg", "ta", "hus", "ps"),
    "humidity_negative": ("ps", "hus"),
}


class PhysicsLoss:
    """Weighted physics loss terms (see the module doc for each term's value and unit).

    weights: {term: weight ≥ 0}; terms from LOSS_TERMS; an unknown term, or a negative or
    non-finite weight, is a ConfigError. Terms of weight 0 are off. flux_timing: how the states hold
    their fluxes, for energy_budget (astrohpc.physics.energy.step_mean_flux).
    """

    def __init__(self, weights: Mapping[str, float], flux_timing: str = "snapshots"):
        if flux_timing not in FLUX_TIMINGS:
            raise ConfigError(f"flux timing {flux_timing!r}: expected one of {', '.join(FLUX_TIMINGS)}")
        self.flux_timing = flux_timing
        unknown = [name for name in weights if name not in TERMS]
        if unknown:
            raise ConfigError(f"physics loss: unknown term {', '.join(map(repr, unknown))}; "
                              f"valid: {', '.join(LOSS_TERMS)}")
        bad = [name for name, w in weights.items() if not (math.isfinite(float(w)) and float(w) >= 0)]
        if bad:
            raise ConfigError(f"physics loss: the weight of {', '.join(bad)} must be finite and >= 0")
        self.weights = {name: float(w) for name, w in weights.items() if float(w) > 0}

    @property
    def required_variables(self) -> list[str]:
        """Every state variable the active terms read (for `CubeMeta.require`)."""
        return sorted({v for name in self.weights for v in TERM_VARIABLES[name]})

    def __call__(self, before: State, after: State, grid: SphereGrid, planet: PlanetConstants,
                 step_s: Scalar) -> dict[str, torch.Tensor]:
        """{term: float64 scalar} for the active terms, and "total" = Σ weight·term (0 when none is on)."""
        terms = {name: energy_budget_loss(before, after, grid, planet, step_s, self.flux_timing)
                 if name == "energy_budget" else TERMS[name](before, after, grid, planet, step_s)
                 for name in self.weights}
        total = sum((self.weights[name] * value for name, value in terms.items()),
                    torch.zeros((), dtype=torch.float64, device=next(iter(after.values())).device))
        return {**terms, "total": total}

    def __repr__(self) -> str:
        return f"PhysicsLoss({self.weights})"
