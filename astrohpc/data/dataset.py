"""A torch Dataset of windows (input steps -> target steps) cut from a datacube.

Windows lie within one run, never across runs. Sharding across ranks follows
`torch.utils.data.distributed.DistributedSampler(drop_last=True)` exactly (`shard_indices`),
so each rank sees a disjoint shard of equal length — which collective reads also require.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from astrohpc.data.cube import LazyCube, read_meta
from astrohpc.data.stats import NEGLIGIBLE_STD
from astrohpc.errors import DataError
from astrohpc.physics.constants import FIELDS as PLANET_CONSTANTS


def planet_params(meta: Any) -> dict[str, np.ndarray]:
    """The planet's SI constants (astrohpc.physics.constants.FIELDS) that every run of `meta`
    carries, raw: name -> [run] (for PlanetConstants; a constant some run lacks is left out)."""
    return {name: meta.params[name] for name in PLANET_CONSTANTS
            if name in meta.params and not np.isnan(meta.params[name]).any()}


def window_index(time_count: np.ndarray, input_steps: int, target_steps: int, stride: int = 1) -> np.ndarray:
    """All windows as int64 [N, 2] rows (run, first time index), run-major."""
    length = input_steps + target_steps
    rows = [(run, t0) for run, count in enumerate(np.asarray(time_count).tolist())
            for t0 in range(0, int(count) - length + 1, stride)]
    return np.array(rows, dtype=np.int64).reshape(-1, 2)


def shard_indices(n: int, rank: int, world_size: int, shuffle: bool = False, seed: int = 0,
                  epoch: int = 0) -> list[int]:
    """Indices of rank `rank`, identical to DistributedSampler(drop_last=True, seed, set_epoch(epoch))."""
    if not 0 <= rank < world_size:
        raise DataError(f"rank {rank} outside world size {world_size}")
    if shuffle:
        g = torch.Generator()
        g.manual_seed(seed + epoch)
        order = torch.randperm(n, generator=g).tolist()
    else:
        order = list(range(n))
    per_rank = n // world_size
    return order[: per_rank * world_size][rank::world_size]


class WindowDataset(Dataset):
    """`dataset[i]` -> a dict of float32 torch tensors (time float64):

        input  [input_steps, C, lat, lon]     target [target_steps, C, lat, lon]
        params [P]   the run's planet parameters, normalised (CubeMeta.param_normalization)
        static [S, lat, lon]  the run's static fields (only when `static=True`)
        planet {radius_m, gravity_m_s2, gas_constant_J_kg_K, cp_J_kg_K}: float64 scalars, raw SI
              (when every run carries them: run folders do)
        time   [input_steps + target_steps]  days since the run's start
        run, t0  ints

    C: every channel, or all levels of `variables`. normalize: fields and static fields as
    (x − mean) / std, fields with the cube's (area-weighted) statistics from its sidecar
    (`astrohpc data stats`), static fields with their own mean/std over the runs.
    mode: "independent" (each process opens the file itself, lazily and cheaply — safe with
    DataLoader workers) or "collective" (MPI-IO; pass `comm`; every rank must read the same
    number of windows, in lockstep, with num_workers=0).
    params: names of the parameters in `params` (default: CubeMeta.param_names); a parameter
    missing for some run is a DataError. param_norm: a saved `param_normalization()` dict (a
    trained model's) to use instead of this cube's.
    fill_nan: value replacing NaN after normalisation (pressure levels outside the column).
    runs: the run indices whose windows the dataset serves (default: all) — a training or a
    held-out split of whole runs (`astrohpc.data.split`).
    """

    def __init__(self, path: str | Path, input_steps: int = 1, target_steps: int = 1, stride: int = 1, *,
                 mode: str = "independent", comm: Any = None, normalize: bool = False,
                 fill_nan: Optional[float] = None, variables: Optional[list[str]] = None,
                 params: Optional[list[str]] = None, param_norm: Optional[dict] = None, static: bool = False,
                 runs: Optional[list[int]] = None):
        if input_steps < 1 or target_steps < 0 or stride < 1:
            raise DataError(f"windows need input_steps >= 1, target_steps >= 0, stride >= 1 "
                            f"(got {input_steps}, {target_steps}, {stride})")
        self.meta = read_meta(path)
        self.input_steps, self.target_steps = input_steps, target_steps
        self.windows = window_index(self.meta.time_count, input_steps, target_steps, stride)
        if runs is not None:
            bad = [r for r in runs if not 0 <= int(r) < self.meta.shape[0]]
            if bad:
                raise DataError(f"{path}: no run {bad[0]} (the cube has runs 0..{self.meta.shape[0] - 1})")
            self.windows = self.windows[np.isin(self.windows[:, 0], np.asarray(runs, dtype=self.windows.dtype))]
        if len(self.windows) == 0:
            raise DataError(f"{path}: no window of {input_steps}+{target_steps} steps fits in any run "
                            f"(run lengths {self.meta.time_count.tolist()})")
        self.channels = self.meta.channels_of(variables) if variables else None
        self.normalize, self.fill_nan = normalize, fill_nan
        self._mean = self._std = None
        if normalize:
            if self.meta.stats is None:
                raise DataError(f"{path}: no statistics stored; run `astrohpc data stats {path}` before normalize=True")
            stats = self.meta.stats["fields"]
            pick = slice(None) if self.channels is None else self.channels
            self._mean = stats["mean"][pick].astype(np.float32)[:, None, None]
            std = stats["std"][pick].astype(np.float32)
            # a numerically constant channel (e.g. the ~1e-34 humidity of a cold start) is centred, not scaled
            self._std = np.where(std > NEGLIGIBLE_STD, std, 1.0).astype(np.float32)[:, None, None]
        self.param_norm = param_norm or self.meta.param_normalization(params)
        self._params = self.meta.normalized_params(self.param_norm).astype(np.float32)  # [run, P]
        self._planet = planet_params(self.meta)
        self.static_names = sorted(self.meta.static) if static else []
        self._static = None
        if static:
            if not self.static_names:
                raise DataError(f"{path}: static=True but the cube has no static fields; reconvert with "
                                "data.static_variables (e.g. [sg, lsm])")
            fields = np.stack([self.meta.static[n] for n in self.static_names], axis=1)  # [run, S, lat, lon]
            if normalize:
                mean = fields.mean(axis=(0, 2, 3), keepdims=True)
                std = fields.std(axis=(0, 2, 3), keepdims=True)
                fields = (fields - mean) / np.where(std > 0, std, 1.0)
            self._static = fields.astype(np.float32)
        self.cube = LazyCube(path, mode, comm, cache_chunks=input_steps + target_steps)
        if mode == "independent":
            self.cube.prepare()  # validate and take chunk offsets once, before DataLoader workers start

    @classmethod
    def from_settings(cls, settings, path: Optional[str | Path] = None, comm: Any = None,
                      fill_nan: Optional[float] = None, **kwargs) -> WindowDataset:
        """Build from the `data:` config section (DataSettings); `path` overrides `settings.cube`."""
        cube = path or settings.cube
        if cube is None:
            raise DataError("no cube given: set data.cube in the config or pass a path")
        return cls(cube, settings.input_steps, settings.target_steps, settings.stride, mode=settings.read_mode,
                   comm=comm, normalize=settings.normalize, fill_nan=fill_nan,
                   variables=list(settings.read_variables) or None, **kwargs)

    @property
    def channel_names(self) -> list[str]:
        """'variable' or 'variable@level' of each channel in the items, in order."""
        names = self.meta.channel_names
        return names if self.channels is None else [names[c] for c in self.channels]

    def __len__(self) -> int:
        return len(self.windows)

    def read_window(self, index: int) -> np.ndarray:
        """float32 [input_steps + target_steps, C, lat, lon], normalised if asked."""
        run, t0 = self.windows[index]
        x = self.cube.read(int(run), int(t0), self.input_steps + self.target_steps)
        if self.channels is not None:
            x = x[:, self.channels]
        if self.normalize:
            x -= self._mean
            x /= self._std
        if self.fill_nan is not None:
            np.nan_to_num(x, copy=False, nan=self.fill_nan)
        return x

    def __getitem__(self, index: int) -> dict:
        x = torch.from_numpy(self.read_window(index))
        run, t0 = (int(v) for v in self.windows[index])
        steps = self.input_steps + self.target_steps
        item = {"input": x[: self.input_steps], "target": x[self.input_steps:], "run": run, "t0": t0,
                "params": torch.from_numpy(self._params[run]),
                "time": torch.from_numpy(self.meta.time_days[run, t0:t0 + steps].copy())}
        if self._static is not None:
            item["static"] = torch.from_numpy(self._static[run])
        if self._planet:
            item["planet"] = {name: torch.tensor(values[run], dtype=torch.float64)
                              for name, values in self._planet.items()}
        return item

    def close(self) -> None:
        self.cube.close()
