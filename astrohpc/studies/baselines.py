"""The baselines every parity number stands beside, from the training runs only.

    persistence         the held-out run's initial state, held for the whole run
    climatology         the mean over the training runs of their time-mean fields
    nearest_run         the training run nearest in normalised planet-parameter space, day by day
    linear_regression   per grid cell and channel, the time-mean field as an affine function of
                        the normalised planet parameters, least squares over the training runs
                        (minimum-norm when there are fewer runs than parameters); parameters the
                        training runs share are left out (they carry no information)

Inputs are numpy float64 in physical units; z are parameters normalised as the model saw them.
"""

from __future__ import annotations

import numpy as np


def persistence(initial: np.ndarray) -> np.ndarray:
    """[C, lat, lon]: the state to hold."""
    return np.asarray(initial, np.float64)


def climatology(train_means: np.ndarray) -> np.ndarray:
    """train_means [R, C, lat, lon] -> [C, lat, lon] (NaN where every run is NaN)."""
    with np.errstate(invalid="ignore"):
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
    z_train, means = np.asarray(z_train, np.float64), np.asarray(train_means, np.float64)
    keep = varying(z_train)
    design = np.column_stack([np.ones(len(z_train)), z_train[:, keep]])
    y = means.reshape(len(means), -1)
    finite = np.isfinite(y).all(axis=0)
    coef = np.zeros((design.shape[1], y.shape[1]))
    coef[:, finite] = np.linalg.lstsq(design, y[:, finite], rcond=None)[0]
    target = np.concatenate([[1.0], np.asarray(z_target, np.float64)[keep]])
    out = target @ coef
    out[~finite] = np.nan
    return out.reshape(means.shape[1:])
