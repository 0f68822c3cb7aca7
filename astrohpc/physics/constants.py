"""The planet constants physics reads, per sample: floats or tensors of shape [B].

Every physics function takes a `PlanetConstants` instead of literals, so a batch can mix
planets of a sweep that varies gravity or radius. Build it from the `planet:` config section
(`from_planet`) or from a cube's run parameters (`from_run_params`: per run, what the GCM ran with).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Union

import torch

Scalar = Union[float, torch.Tensor]
FIELDS = ("radius_m", "gravity_m_s2", "gas_constant_J_kg_K", "cp_J_kg_K")


@dataclass(frozen=True)
class PlanetConstants:
    """Radius (m), surface gravity (m s⁻²), dry-air gas constant R and heat capacity cp (J kg⁻¹ K⁻¹)."""

    radius_m: Scalar
    gravity_m_s2: Scalar
    gas_constant_J_kg_K: Scalar
    cp_J_kg_K: Scalar

    @classmethod
    def from_planet(cls, planet: Any) -> PlanetConstants:
        """From `astrohpc.planet.Planet` (the config's `planet:` section): floats."""
        return cls(*(float(getattr(planet, name)) for name in FIELDS))

    @classmethod
    def from_run_params(cls, params: Mapping[str, Any], dtype: torch.dtype = torch.float64) -> PlanetConstants:
        """From per-sample run parameters (e.g. a batch's `planet` dict, each value [B]): tensors [B]."""
        missing = [name for name in FIELDS if name not in params]
        if missing:
            raise KeyError(f"run parameters lack {', '.join(missing)} (the cube's runs/params must carry the "
                           "planet section; convert run folders, or give run_params)")
        return cls(*(torch.as_tensor(params[name], dtype=dtype) for name in FIELDS))

    def per_sample(self, value: Scalar, ndim: int) -> Scalar:
        """`value` ([B] tensor or float) shaped to broadcast against a [B, ...] tensor of `ndim` dims."""
        if isinstance(value, torch.Tensor) and value.ndim == 1:
            return value.reshape(-1, *([1] * (ndim - 1)))
        return value

    def to(self, dtype: torch.dtype, device: Any = None) -> PlanetConstants:
        conv = lambda v: v.to(dtype=dtype, device=device) if isinstance(v, torch.Tensor) else v  # noqa: E731
        return PlanetConstants(*(conv(getattr(self, name)) for name in FIELDS))

    @property
    def surface_area_m2(self) -> Scalar:
        return 4.0 * torch.pi * self.radius_m ** 2 if isinstance(self.radius_m, torch.Tensor) \
            else 4.0 * 3.141592653589793 * self.radius_m ** 2
