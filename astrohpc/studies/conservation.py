"""Each conserved quantity over one emulator step, before and after the hard correctors.

For the step x -> raw (the network's prediction) -> nxt (after the correctors), per member:

    dry_mass   relative change of the global dry-air mass, (M(·) − M(x)) / M(x)          (1)
    water      water budget residual: ΔW/step − (E − P)  (astrohpc.physics.water)       kg m⁻² day⁻¹
    energy     energy budget residual: ΔE/step − F̄       (astrohpc.physics.energy)      W m⁻²

each as `<quantity>_before` (raw: the network's own error) and `<quantity>_after` (nxt). Every
one is 0 for a step that conserves. Which corrector acts on each (CORRECTED_BY): the dry-mass
corrector makes dry_mass_after rounding by construction; the humidity corrector keeps the raw
global water (it removes negative vapour), so it does not close the water budget; the energy
corrector closes the energy budget when it is in the chain. The fluxes are read as the model's
cube holds them (model.flux_timing: step means or snapshots).

`summarize` turns a series of steps into the figures a report gives: the mean and largest
absolute error per step and the cumulative sum (the drift the errors add up to over a rollout:
for dry_mass_before, how far the mass would have wandered had no corrector put it back, to first
order).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.energy import ENERGY_FIELDS, SURFACE_FLUXES, energy_budget_residual
from astrohpc.physics.grid import global_mean
from astrohpc.physics.mass import column_dry_mass
from astrohpc.physics.water import WATER_FIELDS, water_budget_residual

DAY_S = 86400.0
# quantity -> (units, long name of the per-step error)
QUANTITIES: dict[str, tuple[str, str]] = {
    "dry_mass": ("1", "relative change of the global dry-air mass over the step"),
    "water": ("kg m-2 day-1", "global water budget residual of the step (vapour tendency minus evaporation "
                              "less precipitation)"),
    "energy": ("W m-2", "global energy budget residual of the step (column energy tendency minus the net "
                        "flux into the air)"),
}
CORRECTED_BY = {"dry_mass": "dry_mass", "water": "humidity", "energy": "energy"}
WHEN = {"before": "the network's prediction, before the correctors", "after": "after the correctors"}


def available(model: Any, planet: Optional[PlanetConstants]) -> list[str]:
    """The quantities the model's channels, static fields and grid allow (none without a planet)."""
    have = set(model.table.names) | set(getattr(model, "static_names", []))
    if planet is None or model.grid.sigma_half is None:
        return []
    out = []
    if {"ps", "hus"} <= have:
        out.append("dry_mass")
    timing = getattr(model, "flux_timing", None)
    if timing and set(WATER_FIELDS) <= have:
        out.append("water")
    toa = "ntr" in have or {"rst", "rlut"} <= have
    if timing and toa and set(ENERGY_FIELDS) | set(SURFACE_FLUXES) <= have:
        out.append("energy")
    return out


def series_names(quantities: list[str]) -> list[str]:
    return [f"{q}_{when}" for q in quantities for when in WHEN]


def step_errors(model: Any, quantities: list[str], x: torch.Tensor, raw: torch.Tensor, nxt: torch.Tensor,
                static: Optional[torch.Tensor], planet: PlanetConstants) -> dict[str, torch.Tensor]:
    """{<quantity>_before, <quantity>_after: [B] float64} for the step x -> raw -> nxt (see the module doc)."""
    grid = model.grid.to(torch.float64, x.device)
    s0, s_raw, s_nxt = (model.physics_state(s.to(torch.float64), static) for s in (x, raw, nxt))
    out: dict[str, torch.Tensor] = {}
    if "dry_mass" in quantities:
        m0 = global_mean(column_dry_mass(s0["ps"], s0["hus"], grid, planet), grid)
        for when, s in (("before", s_raw), ("after", s_nxt)):
            out[f"dry_mass_{when}"] = (global_mean(column_dry_mass(s["ps"], s["hus"], grid, planet), grid) - m0) / m0
    timing = getattr(model, "flux_timing", None)
    if "water" in quantities:
        for when, s in (("before", s_raw), ("after", s_nxt)):
            out[f"water_{when}"] = water_budget_residual(s0, s, grid, planet, model.step_s, timing) * DAY_S
    if "energy" in quantities:
        for when, s in (("before", s_raw), ("after", s_nxt)):
            out[f"energy_{when}"] = energy_budget_residual(s0, s, grid, planet, model.step_s, timing)
    return out


def summarize(series: np.ndarray) -> dict[str, Optional[float]]:
    """{mean_abs, max_abs, cumulative} of one member's per-step errors (NaN steps, after a flag, left out)."""
    ok = np.isfinite(series)
    if not ok.any():
        return {"mean_abs": None, "max_abs": None, "cumulative": None, "steps": 0}
    s = series[ok]
    return {"mean_abs": float(np.abs(s).mean()), "max_abs": float(np.abs(s).max()), "cumulative": float(s.sum()),
            "steps": int(ok.sum())}


def describe(model: Any) -> dict[str, str]:
    """quantity -> what acts on it after the network (for reports)."""
    chain = list(getattr(model.correctors, "names", []) or []) if getattr(model, "correctors", None) else []
    notes = {"dry_mass": "the dry-mass corrector (ps rescaled to the previous global dry-air mass, float64)",
             "water": "the humidity corrector keeps the raw global vapour (it only removes negative q): no corrector "
                      "closes the water budget",
             "energy": "the energy corrector (one uniform temperature increment, float64)"}
    return {q: notes[q] if CORRECTED_BY[q] in chain else "no corrector (the 'after' figure changes only through "
                                                          "the other correctors)" for q in QUANTITIES}
