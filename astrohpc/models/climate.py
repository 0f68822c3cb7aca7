"""The climate surrogate: planet parameters (optionally with the first k days of a run) -> the
run's time-mean fields, global-mean scalars and thermal emission spectrum.

Like the emulator's stepper it owns the units: items of `astrohpc.data.runs.RunDataset` come in
physical, the net sees normalised tensors, and `physical()` turns its outputs back into SI units:

    fields   (x − μ)/σ with the cube's per-channel statistics (Normalizer)
    scalars  the area-weighted global mean of the normalised field: an affine normalisation
             commutes with the global mean, so a scalar z de-normalises as z·σ + μ of its channel
    spectrum (F − μ_bin)/σ_bin over the training runs' stored spectra (per bin)

The net: `net(z, params)` with z [B, k·C + S, lat, lon] (spin-up days stacked in channels, static
fields) or None when the surrogate sees parameters alone. It returns the heads of `heads`, each a
tensor or, with a Gaussian head, a GaussianPrediction (mean, σ) in normalised units.
Correctors (`correct`): humidity positivity conserving the predicted water, and the dry-air
mass of the last spin-up day (dry mass does not change over a run), in float64, SI units.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from astrohpc.models.channels import ChannelTable, Normalizer
from astrohpc.models.uncertainty import GaussianPrediction
from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid, global_mean


class ClimateSurrogate(nn.Module):
    """See the module doc. heads: subset of ("datacube", "scalar", "spectral") the net returns;
    scalar_channels: indices into `table` of the 2-D channels whose global means are the scalars."""

    def __init__(self, net: nn.Module, table: ChannelTable, normalizer: Normalizer, grid: SphereGrid,
                 heads: Sequence[str], spinup_steps: int = 0, scalar_channels: Sequence[int] = (),
                 static_names: Sequence[str] = (), static_mean: Optional[torch.Tensor] = None,
                 static_std: Optional[torch.Tensor] = None, spectral_mean: Optional[torch.Tensor] = None,
                 spectral_std: Optional[torch.Tensor] = None, correctors: Any = None):
        super().__init__()
        self.net, self.table, self.normalizer, self.grid = net, table, normalizer, grid
        self.heads, self.spinup_steps = tuple(heads), int(spinup_steps)
        self.scalar_channels = list(scalar_channels)
        self.static_names = list(static_names)
        s = len(self.static_names)
        as64 = lambda v, fill, n: torch.full((n,), fill, dtype=torch.float64) if v is None else \
            torch.as_tensor(v, dtype=torch.float64)  # noqa: E731
        self.register_buffer("static_mean", as64(static_mean, 0.0, s))
        self.register_buffer("static_std", as64(static_std, 1.0, s))
        n_bins = 0 if spectral_mean is None else len(spectral_mean)
        self.register_buffer("spectral_mean", as64(spectral_mean, 0.0, n_bins))
        self.register_buffer("spectral_std", as64(spectral_std, 1.0, n_bins))
        self.correctors = correctors
        if "spectral" in self.heads and not n_bins:
            raise ValueError("a spectral head needs the spectra's normalisation (spectral_mean, spectral_std)")

    @property
    def in_channels(self) -> int:
        return self.spinup_steps * len(self.table) + len(self.static_names)

    def net_input(self, spinup: Optional[torch.Tensor], static: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """[B, k·C + S, lat, lon] normalised (NaN -> 0), or None (parameters only)."""
        parts = []
        if self.spinup_steps:
            if spinup is None or spinup.shape[1] != self.spinup_steps:
                raise ValueError(f"this surrogate reads the first {self.spinup_steps} days of a run: pass spinup "
                                 f"[B, {self.spinup_steps}, C, lat, lon]")
            z = self.normalizer.normalize(spinup.flatten(0, 1).double()).view(*spinup.shape[:2], -1,
                                                                              *spinup.shape[-2:])
            parts.append(z.flatten(1, 2))
        if self.static_names:
            if static is None:
                raise ValueError(f"this surrogate needs the static fields {', '.join(self.static_names)}")
            parts.append((static.double() - self.static_mean[None, :, None, None]) /
                         self.static_std[None, :, None, None])
        if not parts:
            return None
        return torch.nan_to_num(torch.cat(parts, dim=1), nan=0.0)

    def forward(self, params: torch.Tensor, spinup: Optional[torch.Tensor] = None,
                static: Optional[torch.Tensor] = None) -> dict[str, Any]:
        """{head: normalised tensor or GaussianPrediction}."""
        z = self.net_input(spinup, static)
        weight = next(self.net.parameters())
        out = self.net(None if z is None else z.to(weight.dtype), params.to(weight.dtype))
        return out if isinstance(out, dict) else {self.heads[0]: out}

    def targets(self, mean: torch.Tensor, spectrum: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """The normalised targets of the heads from an item's physical time mean (and spectrum)."""
        z = self.normalizer.normalize(mean.double())
        out: dict[str, torch.Tensor] = {}
        if "datacube" in self.heads:
            out["datacube"] = z.float()
        if "scalar" in self.heads:
            out["scalar"] = global_mean(z[:, self.scalar_channels], self.grid).float()
        if "spectral" in self.heads:
            if spectrum is None:
                raise ValueError("the spectral head needs the stored spectra (RunDataset(..., spectra=True))")
            out["spectral"] = ((spectrum.double() - self.spectral_mean) / self.spectral_std).float()
        return out

    def physical(self, out: dict[str, Any]) -> dict[str, Any]:
        """Normalised outputs -> SI units (a Gaussian's σ scales without the shift)."""
        mean_std = {
            "datacube": (self.normalizer.mean, self.normalizer.std),
            "scalar": (self.normalizer.mean[0, self.scalar_channels, 0, 0][None],
                       self.normalizer.std[0, self.scalar_channels, 0, 0][None]),
            "spectral": (self.spectral_mean[None], self.spectral_std[None]),
        }
        result: dict[str, Any] = {}
        for head, value in out.items():
            mu, sd = mean_std[head]
            if isinstance(value, GaussianPrediction):
                result[head] = GaussianPrediction(value.mean.double() * sd + mu, value.sigma.double() * sd)
            else:
                result[head] = value.double() * sd + mu
        return result

    def correct(self, fields: torch.Tensor, spinup: Optional[torch.Tensor], static: Optional[torch.Tensor],
                planet: Optional[PlanetConstants]) -> torch.Tensor:
        """Physical predicted time-mean fields [B, C, lat, lon] after the correctors (float64 inside)."""
        if self.correctors is None:
            return fields
        if planet is None:
            raise ValueError("correctors need the planet's constants (planet=PlanetConstants(...))")
        after = self.table.to_state(fields)
        reference = self.table.to_state(spinup[:, -1].to(fields.dtype)) if self.spinup_steps else after
        if static is not None:
            extra = {name: static[:, i] for i, name in enumerate(self.static_names)}
            after, reference = {**after, **extra}, {**reference, **extra}
        fixed = self.correctors(reference, after, self.grid, planet, 0.0)
        return self.table.from_state({k: v for k, v in fixed.items() if k not in self.static_names}, fields)
