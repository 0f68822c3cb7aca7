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
from astrohpc.errors import DataError


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
    """`dataset[i]` -> {"input": [input_steps, C, lat, lon], "target": [target_steps, C, lat, lon],
    "run": int, "t0": int}; float32 torch tensors, optionally normalised by the cube's statistics.

    mode: "independent" (each process opens the file itself, lazily — safe with DataLoader
    workers) or "collective" (MPI-IO; pass `comm`; every rank must read the same number of
    windows, in lockstep, with num_workers=0).
    normalize: (x - mean) / std per channel from the cube's `stats` group (run `astrohpc data stats`).
    fill_nan: value replacing NaN after normalisation (pressure levels outside the column); None keeps NaN.
    """

    def __init__(self, path: str | Path, input_steps: int = 1, target_steps: int = 1, stride: int = 1, *,
                 mode: str = "independent", comm: Any = None, normalize: bool = False,
                 fill_nan: Optional[float] = None):
        if input_steps < 1 or target_steps < 0 or stride < 1:
            raise DataError(f"windows need input_steps >= 1, target_steps >= 0, stride >= 1 "
                            f"(got {input_steps}, {target_steps}, {stride})")
        self.meta = read_meta(path)
        self.input_steps, self.target_steps = input_steps, target_steps
        self.windows = window_index(self.meta.time_count, input_steps, target_steps, stride)
        if len(self.windows) == 0:
            raise DataError(f"{path}: no window of {input_steps}+{target_steps} steps fits in any run "
                            f"(run lengths {self.meta.time_count.tolist()})")
        self.normalize, self.fill_nan = normalize, fill_nan
        self._mean = self._std = None
        if normalize:
            if self.meta.stats is None:
                raise DataError(f"{path}: no statistics stored; run `astrohpc data stats {path}` before normalize=True")
            stats = self.meta.stats["fields"]
            self._mean = stats["mean"].astype(np.float32)[:, None, None]
            std = stats["std"].astype(np.float32)
            self._std = np.where(std > 0, std, 1.0).astype(np.float32)[:, None, None]
        self.cube = LazyCube(path, mode, comm, cache_chunks=input_steps + target_steps)

    @classmethod
    def from_settings(cls, settings, path: Optional[str | Path] = None, comm: Any = None,
                      fill_nan: Optional[float] = None) -> WindowDataset:
        """Build from the `data:` config section (DataSettings); `path` overrides `settings.cube`."""
        cube = path or settings.cube
        if cube is None:
            raise DataError("no cube given: set data.cube in the config or pass a path")
        return cls(cube, settings.input_steps, settings.target_steps, settings.stride, mode=settings.read_mode,
                   comm=comm, normalize=settings.normalize, fill_nan=fill_nan)

    def __len__(self) -> int:
        return len(self.windows)

    def read_window(self, index: int) -> np.ndarray:
        """float32 [input_steps + target_steps, C, lat, lon], normalised if asked."""
        run, t0 = self.windows[index]
        x = self.cube.read(int(run), int(t0), self.input_steps + self.target_steps)
        if self.normalize:
            x -= self._mean
            x /= self._std
        if self.fill_nan is not None:
            np.nan_to_num(x, copy=False, nan=self.fill_nan)
        return x

    def __getitem__(self, index: int) -> dict:
        x = torch.from_numpy(self.read_window(index))
        run, t0 = self.windows[index]
        return {"input": x[: self.input_steps], "target": x[self.input_steps:], "run": int(run), "t0": int(t0)}

    def close(self) -> None:
        self.cube.close()
