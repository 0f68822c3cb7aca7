"""Reading a physical state: the named fields a computation needs, in float64, with per-sample constants.

A state is a dict of torch tensors in SI units keyed by the cube's variable names: 2-D fields
[B, lat, lon], 3-D fields [B, lev, lat, lon] (σ full levels, top -> bottom), static `sg`
[B, lat, lon]. Physics integrates in float64 whatever the state's dtype (a global energy budget
differences numbers of ~1e9 J m⁻²); the casts are differentiable, so gradients flow back into a
float32 model.
"""

from __future__ import annotations

from typing import Mapping, Union

import torch

from astrohpc.errors import DataError
from astrohpc.physics.grid import SphereGrid

State = Mapping[str, torch.Tensor]
Scalar = Union[float, torch.Tensor]


def require_fields(state: State, names: tuple[str, ...] | list[str], purpose: str) -> None:
    """DataError naming the fields `purpose` needs that `state` lacks."""
    missing = [name for name in names if name not in state]
    if missing:
        raise DataError(f"{purpose} needs {', '.join(names)}; the state lacks {', '.join(missing)} "
                        "(add them to the cube's data.variables / static_variables and to the model's variables; "
                        "configs/data/exoplasim.yaml has all of them)")


def fields64(state: State, names: tuple[str, ...] | list[str], purpose: str) -> list[torch.Tensor]:
    """The fields `names` of `state`, cast to float64 (differentiably), after `require_fields`."""
    require_fields(state, names, purpose)
    return [state[name].to(torch.float64) for name in names]


def per_sample(value: Scalar, like: torch.Tensor) -> Scalar:
    """`value` (a float, a 0-d tensor or a [B] tensor: one per sample) shaped to broadcast against
    `like` [B, ...], as float64 on `like`'s device. Floats pass through unchanged."""
    if not isinstance(value, torch.Tensor):
        return float(value)
    value = value.to(dtype=torch.float64, device=like.device)
    return value.reshape(-1, *([1] * (like.ndim - 1))) if value.ndim == 1 else value


def sigma_half64(grid: SphereGrid, like: torch.Tensor) -> torch.Tensor:
    """[lev + 1] σ interfaces in float64 on `like`'s device (an error for a grid without them)."""
    grid.dsigma  # noqa: B018 -- raises the grid's own message when it has no σ interfaces
    return grid.sigma_half.to(dtype=torch.float64, device=like.device)


def dsigma64(grid: SphereGrid, like: torch.Tensor) -> torch.Tensor:
    """[lev, 1, 1] layer thickness Δσ in float64 on `like`'s device, to broadcast over [B, lev, lat, lon]."""
    return grid.dsigma.to(dtype=torch.float64, device=like.device)[:, None, None]
