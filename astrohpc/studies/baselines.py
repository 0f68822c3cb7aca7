"""The baselines every parity number stands beside, from the training runs only.

    persistence         the held-out run's initial state, held for the whole run
    climatology         the mean over the training runs of their time-mean fields
    nearest_run         the training run nearest in normalised planet-parameter space, day by day
    linear_regression   per grid cell and channel, the time-mean field as an affine function of
                        the normalised planet parameters, least squares over the training runs
                        (minimum-norm when there are fewer runs than parameters); parameters the
                        training runs share are left out (they carry no information)

Inputs are numpy float64 in physical units; z are parameters normalised as the model saw them.

The two climatologies every study compares with are computed here and nowhere else:

    time_mean / read_time_means   a run's climatology: the time mean of its states from a start step
    climatology                   the training climatology: the mean over training runs of their time
                                  means (`climatology_spread` adds their std, the forecast's σ)
    pooled_climatology            a per-cell climatology of states: mean and std over every state of
                                  the given runs pooled (a daily-state forecast)
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np


def time_mean(states: np.ndarray, start: int = 0) -> np.ndarray:
    """[T, C, lat, lon] -> the mean of states start..T−1 [C, lat, lon] (NaN where every one is NaN)."""
    with np.errstate(invalid="ignore"), _quiet_empty():
        return np.nanmean(np.asarray(states[start:], np.float64), axis=0)


def read_time_means(cube: Any, runs: Sequence[int], channels: Sequence[int], start: int = 0) -> np.ndarray:
    """[R, C, lat, lon] float64: `time_mean` of each run's states from `start` (a step index), for the
    cube's `channels`, read from the cube file (path)."""
    from astrohpc.data.cube import LazyCube, read_meta

    meta = read_meta(cube)
    lazy = LazyCube(cube).prepare()
    try:
        return np.stack([time_mean(lazy.read(r, start, int(meta.time_count[r]) - start)[:, list(channels)])
                         for r in runs])
    finally:
        lazy.close()


def pooled_climatology(states: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Runs' states [T_r, C, lat, lon] pooled -> per-cell (mean, std) [C, lat, lon] float64."""
    pooled = np.concatenate([np.asarray(s, np.float64) for s in states])
    with np.errstate(invalid="ignore"), _quiet_empty():
        return np.nanmean(pooled, axis=0), np.nanstd(pooled, axis=0)


def climatology_spread(train_means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """train_means [R, C, lat, lon] -> (`climatology`, the std over runs) [C, lat, lon]."""
    with np.errstate(invalid="ignore"), _quiet_empty():
        return climatology(train_means), np.nanstd(np.asarray(train_means, np.float64), axis=0)


@contextmanager
def _quiet_empty() -> Iterator[None]:
    """nanmean's "Mean of empty slice" for an all-NaN cell (a level below the surface) is expected."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom <= 0", RuntimeWarning)
        yield


def persistence(initial: np.ndarray) -> np.ndarray:
    """[C, lat, lon]: the state to hold."""
    return np.asarray(initial, np.float64)


def climatology(train_means: np.ndarray) -> np.ndarray:
    """train_means [R, C, lat, lon] -> [C, lat, lon] (NaN where every run is NaN)."""
    with np.errstate(invalid="ignore"), _quiet_empty():
        return np.nanmean(np.asarray(train_means, np.float64), axis=0)


def varying(z_train: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """Columns of z_train [R, P] that differ between training runs."""
    z_train = np.asarray(z_train, np.float64)
    return np.ptp(z_train, axis=0) > tol if len(z_train) else np.zeros(z_train.shape[1], bool)


def nearest_run(z_train: np.ndarray, z_target: np.ndarray) -> int:
    """Index (into z_train's rows) of the training run nearest to z_target (Euclidean over the
    parameters that vary between training runs; ties: the first)."""
    keep = varying(z_train)
    d = np.linalg.norm(np.asarray(z_train, np.float64)[:, keep] - np.asarray(z_target, np.float64)[keep], axis=1)
    return int(np.argmin(d))


def linear_regression(z_train: np.ndarray, train_means: np.ndarray, z_target: np.ndarray) -> np.ndarray:
    """[C, lat, lon]: the affine least-squares prediction at z_target (see the module doc)."""
    from astrohpc.analysis.parametric_baselines import regression

    z_train, means = np.asarray(z_train, np.float64), np.asarray(train_means, np.float64)
    keep = varying(z_train)
    y = means.reshape(len(means), -1)
    finite = np.isfinite(y).all(axis=0)
    out = np.full(y.shape[1], np.nan)
    out[finite] = regression(z_train[:, keep], y[:, finite], np.asarray(z_target, np.float64)[keep][None], 1)[0]
    return out.reshape(means.shape[1:])
