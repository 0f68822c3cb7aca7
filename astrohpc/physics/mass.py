"""Air and water mass of the columns and of the globe, from ps and the vertical interfaces.

On σ levels (PlaSim) the layer k holds Δp_k/g = ps Δσ_k/g kg m⁻² of moist air, of which q_k is
water vapour, so the dry-air column is m_d = ps/g · (1 − Σ_k q_k Δσ_k). CAM-style hybrid
interfaces (p_half = hyai·p0 + hybi·ps) are accepted too (`HybridInterfaces`). Global totals
are 4πa² times the area-weighted global mean; g and a come from `PlanetConstants`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid, global_mean
from astrohpc.physics.state import State, dsigma64, fields64, per_sample


@dataclass(frozen=True)
class HybridInterfaces:
    """CAM hybrid interfaces: p_half = hyai·p0 + hybi·ps. hyai, hybi: [lev + 1], top -> bottom
    (dimensionless); p0_Pa: the reference pressure."""

    hyai: torch.Tensor
    hybi: torch.Tensor
    p0_Pa: float

    @classmethod
    def from_meta(cls, meta: Any) -> Optional[HybridInterfaces]:
        """From a cube's `vertical/hyai`, `hybi` and attribute `p0_Pa`; None when it has none."""
        vertical = meta.vertical
        if "hyai" not in vertical or "hybi" not in vertical:
            return None
        as64 = lambda a: torch.as_tensor(a, dtype=torch.float64)  # noqa: E731
        return cls(as64(vertical["hyai"]), as64(vertical["hybi"]), float(vertical["p0_Pa"]))

    def pressure_half(self, ps: torch.Tensor) -> torch.Tensor:
        """ps [B, lat, lon] Pa -> interface pressure [B, lev + 1, lat, lon] Pa."""
        hyai = self.hyai.to(dtype=ps.dtype, device=ps.device)[:, None, None]
        hybi = self.hybi.to(dtype=ps.dtype, device=ps.device)[:, None, None]
        return hyai * self.p0_Pa + hybi * ps.unsqueeze(-3)


def layer_pressure_thickness(ps: torch.Tensor, grid: SphereGrid, hybrid: Optional[HybridInterfaces] = None
                             ) -> torch.Tensor:
    """ps [B, lat, lon] Pa -> Δp [B, lev, lat, lon] Pa of each layer: Δσ_k·ps on σ levels (from
    `grid.sigma_half`), or the difference of `hybrid`'s interface pressures. Float64."""
    ps = ps.to(torch.float64)
    if hybrid is not None:
        p_half = hybrid.pressure_half(ps)
        return p_half[:, 1:] - p_half[:, :-1]
    return dsigma64(grid, ps) * ps.unsqueeze(-3)


def layer_mass(ps: torch.Tensor, grid: SphereGrid, planet: PlanetConstants,
               hybrid: Optional[HybridInterfaces] = None) -> torch.Tensor:
    """[B, lev, lat, lon] kg m⁻²: moist-air mass per area of each layer, Δp_k / g."""
    dp = layer_pressure_thickness(ps, grid, hybrid)
    return dp / per_sample(planet.gravity_m_s2, dp)


def column_water_mass(ps: torch.Tensor, hus: torch.Tensor, grid: SphereGrid, planet: PlanetConstants,
                      hybrid: Optional[HybridInterfaces] = None) -> torch.Tensor:
    """[B, lat, lon] kg m⁻²: water vapour per area, Σ_k q_k Δp_k/g (hus [B, lev, lat, lon] kg kg⁻¹)."""
    return (hus.to(torch.float64) * layer_mass(ps, grid, planet, hybrid)).sum(dim=-3)


def column_dry_mass(ps: torch.Tensor, hus: torch.Tensor, grid: SphereGrid, planet: PlanetConstants,
                    hybrid: Optional[HybridInterfaces] = None) -> torch.Tensor:
    """[B, lat, lon] kg m⁻²: dry air per area, Σ_k (1 − q_k) Δp_k/g; on σ levels ps/g (1 − Σ q_k Δσ_k)."""
    return ((1.0 - hus.to(torch.float64)) * layer_mass(ps, grid, planet, hybrid)).sum(dim=-3)


def global_total(column: torch.Tensor, grid: SphereGrid, planet: PlanetConstants) -> torch.Tensor:
    """[B, lat, lon] per-area amount (X m⁻²) -> [B] global total (X): 4πa² × area-weighted mean."""
    mean = global_mean(column.to(torch.float64), grid)
    return per_sample(planet.surface_area_m2, mean) * mean


def global_dry_mass(state: State, grid: SphereGrid, planet: PlanetConstants,
                    hybrid: Optional[HybridInterfaces] = None) -> torch.Tensor:
    """[B] kg: dry air of the whole atmosphere (reads ps in Pa, hus in kg kg⁻¹)."""
    ps, hus = fields64(state, ("ps", "hus"), "the dry-air mass")
    return global_total(column_dry_mass(ps, hus, grid, planet, hybrid), grid, planet)


def global_water_mass(state: State, grid: SphereGrid, planet: PlanetConstants,
                      hybrid: Optional[HybridInterfaces] = None) -> torch.Tensor:
    """[B] kg: water vapour of the whole atmosphere (reads ps in Pa, hus in kg kg⁻¹)."""
    ps, hus = fields64(state, ("ps", "hus"), "the water mass")
    return global_total(column_water_mass(ps, hus, grid, planet, hybrid), grid, planet)
