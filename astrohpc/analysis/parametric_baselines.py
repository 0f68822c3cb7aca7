"""Baselines a parametric climate surrogate must beat: fields of held-out planets from those of
the training planets, with no learning beyond least squares (the nearest run is
astrohpc.studies.baselines.nearest_run, which every study uses).

All take standardised parameters z_train [n, P], z_test [m, P] and fields [n, ...]; each returns
[m, ...] float64.

    ensemble_mean   the mean of the training runs
    regression      least squares per grid point on [1, z] (linear) or [1, z, z_i z_j] (quadratic)
"""

from __future__ import annotations

import itertools

import numpy as np


def ensemble_mean(fields: np.ndarray, n_test: int) -> np.ndarray:
    mean = np.asarray(fields, np.float64).mean(axis=0)
    return np.broadcast_to(mean, (n_test, *mean.shape)).copy()


def design_matrix(z: np.ndarray, degree: int) -> np.ndarray:
    """[1, z] for degree 1; [1, z, every product z_i z_j with i <= j] for degree 2."""
    z = np.atleast_2d(np.asarray(z, np.float64))
    columns = [np.ones(len(z)), *z.T]
    if degree == 2:
        columns += [z[:, i] * z[:, j] for i, j in itertools.combinations_with_replacement(range(z.shape[1]), 2)]
    elif degree != 1:
        raise ValueError(f"degree must be 1 or 2, got {degree}")
    return np.stack(columns, axis=1)


def regression(z_train: np.ndarray, fields: np.ndarray, z_test: np.ndarray, degree: int) -> np.ndarray:
    """Least squares per grid point (lstsq: the minimum-norm solution when under-determined)."""
    fields = np.asarray(fields, np.float64)
    a = design_matrix(z_train, degree)
    coef, *_ = np.linalg.lstsq(a, fields.reshape(len(fields), -1), rcond=None)
    return (design_matrix(z_test, degree) @ coef).reshape(len(np.atleast_2d(z_test)), *fields.shape[1:])
