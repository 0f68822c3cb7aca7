"""The cube's channel axis as a datacube tensor [B, V, Tc, Tg, L, lat, lon] and back, exactly.

A datacube has one axis per kind of dimension, so a convolution can run along levels as it runs
along latitude:

    V   variables (the distinct names, in channel order)
    Tc  climate time: the steps of a window ([B, T, C, lat, lon] -> Tc = T; 1 for one state)
    Tg  geo time: a second time axis the caller may use (the phase of a diurnal or orbital cycle,
        ensemble members, lead times); 1 when unused
    L   levels: the levels of the 3-D variables (every 3-D variable must share them)

Surface (2-D) variables have no levels. Each sits at the level nearest the surface — the one
with the largest coordinate (σ, pressure and hybrid η all grow downward) — and the other L − 1
cells of its column are zeros. `mask` says which (variable, level) cells hold a channel, so a
loss can ignore the padding; `from_cube` reads only those cells, so whatever a model writes into
the padding never reaches the channels. With no 3-D variable, L = 1; with no 2-D variable there
is no padding at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class DatacubeLayout:
    """Where each channel of a [.., C, lat, lon] tensor sits in the [B, V, Tc, Tg, L, lat, lon] datacube.

    variables: V names, in order of first appearance in the channels.
    levels: the L coordinates of the 3-D variables' levels in the order the channels give them
        (the cube's: top -> bottom for σ); empty when every variable is 2-D (L is then 1).
    channel_variable, channel_level: per channel, its variable and level index in the datacube.
    three_d: indices of the variables on the levels (the others are 2-D).
    """

    variables: tuple[str, ...]
    levels: tuple[float, ...]
    channel_variable: tuple[int, ...]
    channel_level: tuple[int, ...]
    three_d: tuple[int, ...] = ()

    @classmethod
    def from_channels(cls, variables: Sequence[str], levels: Sequence[float]) -> DatacubeLayout:
        """From per-channel names and level coordinates (NaN: a 2-D variable), as the cube's channel
        table gives them; 3-D variables may come in any order but must all have the same levels."""
        names, coords = list(variables), np.asarray(levels, dtype=np.float64)
        if len(names) != len(coords):
            raise ValueError(f"{len(names)} channel names but {len(coords)} levels")
        distinct = list(dict.fromkeys(names))
        per_var = {v: coords[[i for i, n in enumerate(names) if n == v]] for v in distinct}
        for v, values in per_var.items():
            if len(values) > 1 and np.isnan(values).any():
                raise ValueError(f"variable {v!r} has several channels, some without a level (NaN): "
                                 "a variable is either 2-D (one channel, level NaN) or 3-D (one channel per level)")
            if len(np.unique(values)) != len(values):
                raise ValueError(f"variable {v!r} repeats a level: {values.tolist()}")
        columns = [v for v in distinct if not np.isnan(per_var[v][0])]
        shared = per_var[columns[0]] if columns else np.zeros(0)
        for v in columns[1:]:
            if len(per_var[v]) != len(shared) or not np.isclose(np.sort(per_var[v]), np.sort(shared)).all():
                raise ValueError(f"3-D variables {columns[0]!r} and {v!r} are on different levels "
                                 f"({shared.tolist()} vs {per_var[v].tolist()}); a datacube needs one level "
                                 "set: select variables on the same levels, or convert with `--levels pressure:...`")
        surface = int(np.argmax(shared)) if len(shared) else 0
        channel_level = [surface if np.isnan(c) else int(np.flatnonzero(np.isclose(shared, c))[0]) for c in coords]
        return cls(tuple(distinct), tuple(float(c) for c in shared), tuple(distinct.index(n) for n in names),
                   tuple(channel_level), tuple(distinct.index(v) for v in columns))

    @classmethod
    def from_meta(cls, meta: Any, variables: Optional[Sequence[str]] = None) -> DatacubeLayout:
        """The layout of a cube's channels (`CubeMeta`): every channel, or every level of `variables`
        in the cube's channel order — the channels `WindowDataset(..., variables=variables)` yields."""
        picks = meta.channels_of(list(variables)) if variables else range(len(meta.variables))
        return cls.from_channels([meta.variables[c] for c in picks], [float(meta.levels[c]) for c in picks])

    def on_levels(self, levels: Sequence[float]) -> DatacubeLayout:
        """This all-2-D layout on `levels` (its fields at the surface level, like the 2-D fields of a
        layout with levels): the input of a U-Net whose output has levels, e.g. a climate surrogate
        that sees only static fields."""
        if self.levels:
            raise ValueError(f"on_levels is for a layout without levels; this one has {list(self.levels)}")
        surface = int(np.argmax(np.asarray(levels, dtype=np.float64))) if len(levels) else 0
        return DatacubeLayout(self.variables, tuple(float(v) for v in levels), self.channel_variable,
                              (surface,) * len(self.channel_level), ())

    @property
    def n_variables(self) -> int:
        return len(self.variables)

    @property
    def n_levels(self) -> int:
        return max(1, len(self.levels))

    @property
    def n_channels(self) -> int:
        return len(self.channel_variable)

    @property
    def surface_level(self) -> int:
        """Level index holding the 2-D variables: the level with the largest coordinate."""
        return int(np.argmax(self.levels)) if self.levels else 0

    def is_3d(self, variable: str) -> bool:
        """True for a variable on the levels, False for a surface (2-D) one."""
        if variable not in self.variables:
            raise KeyError(f"no variable {variable!r} in the layout; variables: {', '.join(self.variables)}")
        return self.variables.index(variable) in self.three_d

    @property
    def mask(self) -> np.ndarray:
        """bool [V, L]: True where a (variable, level) cell holds a channel, False for padding."""
        out = np.zeros((self.n_variables, self.n_levels), dtype=bool)
        out[list(self.channel_variable), list(self.channel_level)] = True
        return out

    def cube_mask(self, device: Optional[torch.device | str] = None) -> torch.Tensor:
        """The mask as bool [1, V, 1, 1, L, 1, 1], broadcastable against a datacube."""
        return torch.as_tensor(self.mask, device=device)[None, :, None, None, :, None, None]

    def _positions(self, device: torch.device) -> torch.Tensor:
        """Per channel, its flat index v·L + l in the [V·L] (variable, level) cells."""
        flat = [v * self.n_levels + lev for v, lev in zip(self.channel_variable, self.channel_level)]
        return torch.as_tensor(flat, dtype=torch.long, device=device)

    def to_cube(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, lat, lon], [B, Tc, C, lat, lon] or [B, Tc, Tg, C, lat, lon] -> [B, V, Tc, Tg, L, lat, lon]
        (missing time axes have length 1; padding cells are zeros; values copied exactly)."""
        if x.ndim not in (4, 5, 6):
            raise ValueError(f"expected [B, C, lat, lon], [B, T, C, lat, lon] or [B, Tc, Tg, C, lat, lon], "
                             f"got {x.ndim} dimensions {tuple(x.shape)}")
        if x.shape[-3] != self.n_channels:
            raise ValueError(f"the tensor has {x.shape[-3]} channels (axis -3), the layout {self.n_channels} "
                             f"({', '.join(self.variables)}); build the layout from the same channel selection")
        b, (c, ny, nx) = x.shape[0], x.shape[-3:]
        times = tuple(x.shape[1:-3]) + (1,) * (6 - x.ndim)
        flat = x.reshape(b, *times, c, ny, nx)
        cells = flat.new_zeros(b, *times, self.n_variables * self.n_levels, ny, nx)
        cells = cells.index_copy(3, self._positions(x.device), flat)
        cube = cells.view(b, *times, self.n_variables, self.n_levels, ny, nx)
        return cube.permute(0, 3, 1, 2, 4, 5, 6).contiguous()

    def from_cube(self, cube: torch.Tensor, time_axes: int = 2) -> torch.Tensor:
        """[B, V, Tc, Tg, L, lat, lon] -> the channels, padding ignored:
        time_axes 2: [B, Tc, Tg, C, lat, lon]; 1: [B, Tc, C, lat, lon] (needs Tg = 1);
        0: [B, C, lat, lon] (needs Tc = Tg = 1) — the inverse of `to_cube` of that rank."""
        expected = (self.n_variables, self.n_levels)
        if cube.ndim != 7 or (cube.shape[1], cube.shape[4]) != expected:
            raise ValueError(f"expected a datacube [B, V={expected[0]}, Tc, Tg, L={expected[1]}, lat, lon], "
                             f"got {tuple(cube.shape)}")
        if time_axes not in (0, 1, 2):
            raise ValueError(f"time_axes must be 0, 1 or 2, got {time_axes}")
        b, _, tc, tg, _, ny, nx = cube.shape
        if (time_axes < 2 and tg != 1) or (time_axes < 1 and tc != 1):
            raise ValueError(f"cannot drop time axes of length (Tc={tc}, Tg={tg}) to return {time_axes} time axes")
        cells = cube.permute(0, 2, 3, 1, 4, 5, 6).reshape(b, tc, tg, -1, ny, nx)
        x = cells.index_select(3, self._positions(cube.device))
        return x.reshape(b, *(tc, tg)[:time_axes], self.n_channels, ny, nx)
