"""The cube's channel axis as named physical fields, and its normalisation.

`ChannelTable` splits a channel tensor [B, C, lat, lon] into the state dict physics reads
({"ta": [B, lev, lat, lon], "ps": [B, lat, lon], …}) and merges it back. `Normalizer` holds the
cube's per-channel statistics: fields as (x − mean)/std, step changes Δ scaled by the std of
x[t+1] − x[t] (the tendency scale of the emulator).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from astrohpc.data.stats import NEGLIGIBLE_STD
from astrohpc.errors import DataError


@dataclass(frozen=True)
class ChannelTable:
    """Channel names and levels, in channel order; 3-D variables occupy consecutive channels."""

    variables: tuple[str, ...]
    levels: tuple[float, ...]

    @classmethod
    def from_meta(cls, meta: Any, channels: Optional[Sequence[int]] = None) -> ChannelTable:
        picks = range(len(meta.variables)) if channels is None else channels
        return cls(tuple(meta.variables[c] for c in picks), tuple(float(meta.levels[c]) for c in picks))

    def __len__(self) -> int:
        return len(self.variables)

    @property
    def names(self) -> list[str]:
        """Distinct variables in channel order."""
        return list(dict.fromkeys(self.variables))

    def index(self, variable: str) -> list[int]:
        idx = [i for i, v in enumerate(self.variables) if v == variable]
        if not idx:
            raise DataError(f"no channel {variable!r}; channels hold {', '.join(self.names)}")
        return idx

    def is_3d(self, variable: str) -> bool:
        return not np.isnan(self.levels[self.index(variable)[0]])

    def to_state(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, C, lat, lon] -> {name: [B, lat, lon] (2-D) or [B, lev, lat, lon] (3-D)} (views)."""
        out = {}
        for name in self.names:
            idx = self.index(name)
            out[name] = x[:, idx[0]:idx[-1] + 1] if self.is_3d(name) else x[:, idx[0]]
        return out

    def from_state(self, state: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """The inverse of `to_state`; channels absent from `state` are taken from `like`."""
        out = like.clone()
        for name in self.names:
            if name in state:
                idx = self.index(name)
                value = state[name].to(out.dtype)
                out[:, idx[0]:idx[-1] + 1] = value if self.is_3d(name) else value[:, None]
        return out


class Normalizer(torch.nn.Module):
    """Per-channel normalisation from the cube's statistics (buffers: travel with the weights).

    mean, std: of the fields; diff_std: of x[t+1] − x[t]. A numerically constant field (std ≤
    NEGLIGIBLE_STD, e.g. the ~1e-34 upper-level humidity of a cold start) is centred, not scaled;
    a channel that never changed in the data gets tendency scale 0: the emulator keeps it.
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray, diff_std: np.ndarray):
        super().__init__()
        as_buffer = lambda a: torch.as_tensor(np.asarray(a, np.float64))[None, :, None, None]  # noqa: E731
        std, diff_std = np.nan_to_num(np.asarray(std, np.float64)), np.nan_to_num(np.asarray(diff_std, np.float64))
        self.register_buffer("mean", as_buffer(np.nan_to_num(mean)))
        self.register_buffer("std", as_buffer(np.where(std > NEGLIGIBLE_STD, std, 1.0)))
        self.register_buffer("diff_std", as_buffer(np.where(diff_std > NEGLIGIBLE_STD, diff_std, 0.0)))

    @classmethod
    def from_meta(cls, meta: Any, channels: Optional[Sequence[int]] = None,
                  runs: Optional[Sequence[int]] = None) -> Normalizer:
        """From the cube's statistics sidecar: of every run, or pooled over `runs` only (the
        training runs: held-out runs must not leak into the normalisation) from the per-run
        count, mean and std (population moments pooled exactly)."""
        if meta.stats is None:
            raise DataError(f"{meta.path}: no statistics; run `astrohpc data stats {meta.path}` first")
        pick = slice(None) if channels is None else list(channels)
        if runs is None:
            fields, diffs = meta.stats["fields"], meta.stats["diffs"]
            return cls(fields["mean"][pick], fields["std"][pick], diffs["std"][pick])
        pooled = {part: pool_moments(meta.stats["runs"][part], list(runs)) for part in ("fields", "diffs")}
        return cls(pooled["fields"]["mean"][pick], pooled["fields"]["std"][pick], pooled["diffs"]["std"][pick])

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).to(x.dtype)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        return (z * self.std + self.mean).to(z.dtype)

    def tendency_to_physical(self, delta: torch.Tensor) -> torch.Tensor:
        """Model output Δ (in units of the step-change std) -> the physical step change."""
        return (delta * self.diff_std).to(delta.dtype)

    def physical_to_tendency(self, dx: torch.Tensor) -> torch.Tensor:
        return (dx / self.diff_std).to(dx.dtype)


def pool_moments(per_run: dict[str, np.ndarray], runs: Sequence[int]) -> dict[str, np.ndarray]:
    """Mean and population std [C] of the union of `runs` from per-run {"count", "mean", "std"}
    [run, C], weighted by the counts of valid values: var = Σ n_r (s_r² + (m_r − m)²) / Σ n_r.
    Exact for unweighted statistics, and for area-weighted ones where no value is NaN (every
    step then has the same total area weight); pressure-level cubes with NaN below the surface
    pool with counts in place of area weights."""
    if not len(runs):
        raise DataError("pooling statistics over no run: give at least one training run")
    n = np.asarray(per_run["count"], np.float64)[list(runs)]
    m = np.asarray(per_run["mean"], np.float64)[list(runs)]
    s = np.asarray(per_run["std"], np.float64)[list(runs)]
    total = n.sum(axis=0)
    safe = np.where(total > 0, total, 1.0)
    mean = np.nansum(n * m, axis=0) / safe
    var = np.nansum(n * (s ** 2 + (m - mean) ** 2), axis=0) / safe
    return {"mean": np.where(total > 0, mean, np.nan), "std": np.where(total > 0, np.sqrt(var), np.nan)}
