"""The horizontal and vertical grid physics integrates over: area weights and σ interfaces."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch


@dataclass(frozen=True)
class SphereGrid:
    """area_weight: [lat, lon] fraction of the sphere per cell (sums to 1), latitude south -> north;
    sigma_half: [lev + 1] σ of the layer interfaces, 0 at the top, 1 at the surface (p = σ·ps);
    lat, lon: degrees. Tensors in float64 (physics integrates in float64)."""

    area_weight: torch.Tensor
    sigma_half: Optional[torch.Tensor]
    lat: torch.Tensor
    lon: torch.Tensor

    @classmethod
    def from_meta(cls, meta: Any) -> SphereGrid:
        """From `astrohpc.data.cube.CubeMeta` (its area_weight, vertical/sigma_half, lat, lon)."""
        half = meta.vertical.get("sigma_half")
        as64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
        return cls(as64(meta.area_weight), None if half is None else as64(half), as64(meta.lat), as64(meta.lon))

    @property
    def dsigma(self) -> torch.Tensor:
        """[lev] layer thickness in σ (sums to 1)."""
        if self.sigma_half is None:
            raise ValueError("this grid has no σ interfaces (a pressure-level cube): column integrals need them")
        return self.sigma_half[1:] - self.sigma_half[:-1]

    def to(self, dtype: torch.dtype = torch.float64, device: Any = None) -> SphereGrid:
        conv = lambda t: None if t is None else t.to(dtype=dtype, device=device)  # noqa: E731
        return SphereGrid(conv(self.area_weight), conv(self.sigma_half), conv(self.lat), conv(self.lon))


def global_mean(x: torch.Tensor, grid: SphereGrid) -> torch.Tensor:
    """Area-weighted global mean over the last two axes: [..., lat, lon] -> [...] (same units)."""
    w = grid.area_weight.to(dtype=x.dtype, device=x.device)
    return (x * w).sum(dim=(-2, -1)) / w.sum()
