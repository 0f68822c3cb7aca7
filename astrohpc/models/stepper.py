"""The emulator's step: normalise, predict the tendency, de-normalise, correct in SI units.

As in ACE (Ai2's fme stepper): the network sees normalised tensors only; this thin layer
owns the units. One step maps the full channel state x_t (physical units, every cube channel)
to x_{t+1}:

    z = [(x_t − μ)/σ of the prognostic channels, forcings at t and t+1, static fields] (normalised)
    Δ, d = net(z, params)                   tendency in units of the step-change std σ_Δ; diagnostics
    x_{t+1} = x_t + Δ·σ_Δ                  prognostic channels; forcings at t+1 are given;
                                            diagnostic channels = μ + d·σ (never fed back)
    x_{t+1} = correctors(x_t, x_{t+1})      float64, SI, the planet's constants (astrohpc.physics)

Roles (ACE's): prognostic = predicted and fed back, forcing = input only, diagnostic = output
only. With `project`, Δ and d are projected onto the GCM's spectral truncation each step.

`unroll` repeats it, feeding each prediction back (the rollout, and the multi-step loss).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from astrohpc.models.channels import ChannelTable, Normalizer
from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.grid import SphereGrid

# net(z [B, C_in, lat, lon], params [B, P]) -> Δ [B, C_out, lat, lon]
Net = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class EmulatorStepper(nn.Module):
    """x_t -> x_{t+1} for a cube's channels.

    table: every channel of the state (the cube's channel table, or a selection), physical units.
    predicted, forcing, diagnostic: channel indices into `table` (disjoint; together every channel):
        the prognostic, forcing and diagnostic channels.
    normalizer: statistics of every channel of `table` (fields and step changes).
    static_mean/static_std: [S] normalisation of the static fields (over the training runs).
    correctors: a callable (before, after, grid, planet, step_s) -> state, or None.
    step_s: the time between two states (the cube's output interval), s.
    flux_timing (attribute): how the states hold their fluxes, "snapshots" or "step_means"
    (astrohpc.physics.energy.step_mean_flux; set by build_emulator from the cube), or None when
    the cube holds them both ways and no energy budget can be closed.
    """

    def __init__(self, net: nn.Module, table: ChannelTable, predicted: Sequence[int], forcing: Sequence[int],
                 normalizer: Normalizer, grid: SphereGrid, step_s: float, static_names: Sequence[str] = (),
                 static_mean: Optional[torch.Tensor] = None, static_std: Optional[torch.Tensor] = None,
                 correctors: Optional[Callable[..., dict]] = None, diagnostic: Sequence[int] = (),
                 project: Optional[Callable[[torch.Tensor], torch.Tensor]] = None):
        super().__init__()
        if sorted([*predicted, *forcing, *diagnostic]) != list(range(len(table))):
            raise ValueError("prognostic, forcing and diagnostic channels must split the channel table exactly")
        self.net, self.table, self.grid, self.step_s = net, table, grid, float(step_s)
        self.register_buffer("predicted", torch.as_tensor(list(predicted), dtype=torch.long))
        self.register_buffer("forcing", torch.as_tensor(list(forcing), dtype=torch.long))
        self.register_buffer("diagnostic", torch.as_tensor(list(diagnostic), dtype=torch.long))
        # per-channel weight of the data loss (model.loss_weights by variable; 1 elsewhere)
        self.register_buffer("loss_weight", torch.ones(len(table), dtype=torch.float64))
        self.project = project
        self.normalizer = normalizer
        self.static_names = list(static_names)
        s = len(self.static_names)
        self.register_buffer("static_mean", torch.zeros(s, dtype=torch.float64) if static_mean is None
                             else torch.as_tensor(static_mean, dtype=torch.float64))
        self.register_buffer("static_std", torch.ones(s, dtype=torch.float64) if static_std is None
                             else torch.as_tensor(static_std, dtype=torch.float64))
        self.correctors = correctors
        self.flux_timing: Optional[str] = "snapshots"

    @property
    def in_channels(self) -> int:
        """Channels the net sees: predicted at t, forcings at t and t+1, static fields."""
        return len(self.predicted) + 2 * len(self.forcing) + len(self.static_names)

    def net_input(self, x: torch.Tensor, forcing_next: torch.Tensor, static: Optional[torch.Tensor]) -> torch.Tensor:
        """The normalised input z [B, C_in, lat, lon] of the net (see the module doc)."""
        z = self.normalizer.normalize(x)
        mean, std = self.normalizer.mean[:, self.forcing], self.normalizer.std[:, self.forcing]
        parts = [z[:, self.predicted], z[:, self.forcing], ((forcing_next - mean) / std).to(x.dtype)]
        if self.static_names:
            if static is None:
                raise ValueError(f"this stepper needs the static fields {', '.join(self.static_names)}")
            parts.append(((static - self.static_mean[None, :, None, None]) /
                          self.static_std[None, :, None, None]).to(x.dtype))
        return torch.cat(parts, dim=1)

    def physics_state(self, x: torch.Tensor, static: Optional[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The state dict physics reads (SI units), static fields included (e.g. `sg`)."""
        state = self.table.to_state(x)
        if static is not None:
            state.update({name: static[:, i] for i, name in enumerate(self.static_names)})
        return state

    def predict(self, x: torch.Tensor, forcing_next: torch.Tensor, params: torch.Tensor,
                static: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x_t + Δ·σ_Δ before any corrector (what a physics loss should judge): [B, C, lat, lon] in
        x's dtype; the net runs in its own dtype (a float64 rollout of a float32 net works)."""
        z = self.net_input(x, forcing_next, static)
        weight = next(self.net.parameters(), None)
        if weight is not None and z.dtype != weight.dtype and weight.is_floating_point():
            z = z.to(weight.dtype)
        out = self.net(z, params.to(z.dtype))
        if self.project is not None:
            out = self.project(out)
        n_prog = len(self.predicted)
        delta = out[:, :n_prog]
        diff_std = self.normalizer.diff_std[:, self.predicted]  # 0 for a channel that never changed
        nxt = x.clone()
        nxt[:, self.predicted] = x[:, self.predicted] + (delta.to(diff_std.dtype) * diff_std).to(x.dtype)
        nxt[:, self.forcing] = forcing_next.to(x.dtype)
        if len(self.diagnostic):
            mean, std = self.normalizer.mean[:, self.diagnostic], self.normalizer.std[:, self.diagnostic]
            nxt[:, self.diagnostic] = (mean + out[:, n_prog:].to(std.dtype) * std).to(x.dtype)
        return nxt

    def correct(self, x: torch.Tensor, nxt: torch.Tensor, static: Optional[torch.Tensor],
                planet: Optional[PlanetConstants]) -> torch.Tensor:
        """The correctors applied to the step x -> nxt (float64 inside; nxt's dtype out)."""
        if self.correctors is None:
            return nxt
        if planet is None:
            raise ValueError("correctors need the planet's constants (planet=PlanetConstants(...))")
        before, after = self.physics_state(x, static), self.physics_state(nxt, static)
        fixed = self.correctors(before, after, self.grid, planet, self.step_s)
        return self.table.from_state({k: v for k, v in fixed.items() if k not in self.static_names}, nxt)

    def forward(self, x: torch.Tensor, forcing_next: torch.Tensor, params: torch.Tensor,
                static: Optional[torch.Tensor] = None, planet: Optional[PlanetConstants] = None,
                correct: bool = True) -> torch.Tensor:
        """One step. x: [B, C, lat, lon] physical at t; forcing_next: [B, F, lat, lon] physical at t+1;
        params: [B, P] normalised; static: [B, S, lat, lon] physical. Returns x_{t+1} [B, C, lat, lon]
        in x's dtype: give float64 states for conservation to float64 rounding."""
        nxt = self.predict(x, forcing_next, params, static)
        return self.correct(x, nxt, static, planet) if correct else nxt

    def unroll(self, x0: torch.Tensor, forcings: torch.Tensor, params: torch.Tensor,
               static: Optional[torch.Tensor] = None, planet: Optional[PlanetConstants] = None,
               correct: bool = True) -> torch.Tensor:
        """forcings: [B, T, F, lat, lon] physical at steps 1..T -> trajectory [B, T, C, lat, lon]."""
        out, x = [], x0
        for t in range(forcings.shape[1]):
            x = self(x, forcings[:, t], params, static, planet, correct)
            out.append(x)
        return torch.stack(out, dim=1)


def static_normalization(meta: Any, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """[S] mean and std of the cube's static fields over its runs (std 0, e.g. an aquaplanet's
    land mask, is taken as 1)."""
    import numpy as np

    fields = np.stack([meta.static[n] for n in names]) if names else np.zeros((0, 1, 1, 1))
    mean = fields.mean(axis=(1, 2, 3))
    std = fields.std(axis=(1, 2, 3))
    return torch.as_tensor(mean), torch.as_tensor(np.where(std > 0, std, 1.0))
