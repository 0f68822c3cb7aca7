"""Whole runs as samples: what the climate surrogate learns (planet -> time-mean climate).

`RunDataset(cube, spinup_steps=k)[i]` is the i-th selected run:

    params  [P]              the run's planet parameters, normalised (CubeMeta.param_normalization)
    spinup  [k, C, lat, lon] its first k states, physical units (k = 0: an empty first axis)
    mean    [C, lat, lon]    the time mean of its states k .. T−1 (the climate the surrogate predicts),
                             physical units, NaN kept (pressure levels below the surface)
    spectrum [n_bins]        the time mean of its stored emission spectrum over the same steps
                             (only with spectra=True: the CUBE.spectra.h5 sidecar, `astrohpc data spectra`)
    static  [S, lat, lon]    its static fields, physical (only with static=True)
    planet  {radius_m, …}    float64 SI constants (when the runs carry them)
    run     int, days [2]    the run index and the averaged interval in days since its start

`mean_window=w` averages the last w states T−w .. T−1 instead of k .. T−1 (the spectrum too): the
run's later state, the target of the spin-up study (astrohpc.studies.spinup). Only the first k and
the last w states are read then.

The model normalises its inputs itself (astrohpc.models.climate), as the emulator's stepper does:
items stay in SI units so physics can read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
from torch.utils.data import Dataset

from astrohpc.data.cube import LazyCube, read_meta
from astrohpc.data.dataset import planet_params
from astrohpc.errors import DataError


class RunDataset(Dataset):
    """One item per run (see the module doc). variables: channel selection (all levels of each);
    channels: instead, the cube's channel indices in the order served (another cube matched to a
    model's layout: astrohpc.data.match); runs: the run indices served (default all); param_norm:
    a trained model's saved normalisation; static: True (every static field, in name order) or the
    names of the fields served, in that order."""

    def __init__(self, path: str | Path, spinup_steps: int = 0, *, variables: Optional[list[str]] = None,
                 runs: Optional[list[int]] = None, params: Optional[list[str]] = None,
                 param_norm: Optional[dict] = None, static: Union[bool, Sequence[str]] = False,
                 spectra: bool = False, mean_window: Optional[int] = None,
                 channels: Optional[Sequence[int]] = None):
        self.path, self.meta = Path(path), read_meta(path)
        self.spinup_steps = int(spinup_steps)
        self.mean_window = None if mean_window is None else int(mean_window)
        if self.mean_window is not None and self.mean_window < 1:
            raise DataError(f"mean_window must be >= 1 state (or None: every state after the spin-up), "
                            f"got {mean_window}")
        n_runs = self.meta.shape[0]
        self.runs = list(range(n_runs)) if runs is None else [int(r) for r in runs]
        bad = [r for r in self.runs if not 0 <= r < n_runs]
        if bad:
            raise DataError(f"{path}: no run {bad[0]} (the cube has runs 0..{n_runs - 1})")
        short = [self.meta.run_names[r] for r in self.runs if self.meta.time_count[r] <= self.spinup_steps]
        if short:
            raise DataError(f"{path}: run(s) {', '.join(short[:5])} have no step after the {self.spinup_steps} "
                            "spin-up steps; lower model.spinup_steps or drop those runs")
        if self.mean_window is not None:
            overlap = [self.meta.run_names[r] for r in self.runs
                       if self.meta.time_count[r] - self.mean_window < self.spinup_steps]
            if overlap:
                raise DataError(f"{path}: in run(s) {', '.join(overlap[:5])} the last {self.mean_window} states "
                                f"overlap the {self.spinup_steps} spin-up steps; shorten the window or the spin-up")
        if channels is not None:
            self.channels = np.asarray(list(channels), dtype=np.int64)
        else:
            self.channels = self.meta.channels_of(variables) if variables else None
        self.param_norm = param_norm or self.meta.param_normalization(params)
        self._params = self.meta.normalized_params(self.param_norm).astype(np.float32)
        self._planet = planet_params(self.meta)
        flag = isinstance(static, (bool, np.bool_))
        self.static_names = (sorted(self.meta.static) if static else []) if flag else list(static)
        if flag and static and not self.static_names:
            raise DataError(f"{path}: static=True but the cube has no static fields; reconvert with "
                            "data.static_variables (e.g. [sg, lsm])")
        lacking = [n for n in self.static_names if n not in self.meta.static]
        if lacking:
            raise DataError(f"{path}: no static field {', '.join(lacking)}; reconvert with data.static_variables")
        self._spectra = None
        if spectra:
            from astrohpc.data.spectra import read_spectra

            self._spectra = read_spectra(path)
        self.cube = LazyCube(path).prepare()

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def n_bins(self) -> int:
        return 0 if self._spectra is None else self._spectra.n_bins

    def __getitem__(self, index: int) -> dict[str, Any]:
        run = self.runs[index]
        steps, k = int(self.meta.time_count[run]), self.spinup_steps
        start = k if self.mean_window is None else steps - self.mean_window  # first averaged state
        if start == k:
            x = self.cube.read(run, 0, steps)  # [T, C, lat, lon] float32, physical
            first, later = x[:k], x[k:]
        else:
            first, later = self.cube.read(run, 0, k), self.cube.read(run, start, steps - start)
        if self.channels is not None:
            first, later = first[:, self.channels], later[:, self.channels]
        with np.errstate(invalid="ignore"):
            mean = np.nanmean(later.astype(np.float64), axis=0) if np.isnan(later).any() else \
                later.astype(np.float64).mean(axis=0)
        days = self.meta.time_days[run]
        item: dict[str, Any] = {
            "params": torch.from_numpy(self._params[run]),
            "spinup": torch.from_numpy(np.ascontiguousarray(first)),
            "mean": torch.from_numpy(mean.astype(np.float32)),
            "run": run, "days": torch.tensor([days[start], days[steps - 1]], dtype=torch.float64),
        }
        if self.static_names:
            item["static"] = torch.from_numpy(np.stack([self.meta.static[n][run] for n in self.static_names])
                                              .astype(np.float32))
        if self._spectra is not None:
            item["spectrum"] = torch.from_numpy(self._spectra.values[run, start:steps].mean(axis=0).astype(np.float32))
        if self._planet:
            item["planet"] = {name: torch.tensor(v[run], dtype=torch.float64) for name, v in self._planet.items()}
        return item

    def close(self) -> None:
        self.cube.close()
