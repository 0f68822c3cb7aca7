"""Scores of a field against the GCM's, per channel, area-weighted, in the channel's own units.

RMSE = sqrt(Σ w (p − g)² / Σ w) and bias = Σ w (p − g) / Σ w over every leading axis (days) and
the grid, w the cell area; NaN cells (levels below the surface) left out. Pattern correlation is
the area-weighted centred correlation of two maps (e.g. time means). numpy float64 throughout.
"""

from __future__ import annotations

import numpy as np


def _weights(area: np.ndarray, err: np.ndarray) -> np.ndarray:
    w = np.broadcast_to(np.asarray(area, np.float64), err.shape)
    return np.where(np.isfinite(err), w, 0.0)


def rmse_bias(pred: np.ndarray, truth: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pred, truth [..., C, lat, lon] (pred may broadcast against truth) -> (rmse [C], bias [C])."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    err = np.broadcast_to(pred, np.broadcast_shapes(pred.shape, truth.shape)) - truth
    w = _weights(area, err)
    e = np.where(w > 0, err, 0.0)
    axes = tuple(i for i in range(err.ndim) if i != err.ndim - 3)
    total = w.sum(axis=axes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sqrt((w * e**2).sum(axis=axes) / total), (w * e).sum(axis=axes) / total


def rmse_by_lead(pred: np.ndarray, truth: np.ndarray, area: np.ndarray) -> np.ndarray:
    """pred, truth [T, C, lat, lon] -> RMSE [T, C] (one value per day and channel)."""
    return np.stack([rmse_bias(pred[t] if np.ndim(pred) == 4 else pred, truth[t], area)[0]
                     for t in range(truth.shape[0])])


def pattern_correlation(pred: np.ndarray, truth: np.ndarray, area: np.ndarray) -> np.ndarray:
    """pred, truth [C, lat, lon] -> area-weighted centred correlation [C] (NaN for a constant map)."""
    pred, truth = np.asarray(pred, np.float64), np.asarray(truth, np.float64)
    out = np.full(truth.shape[0], np.nan)
    for c in range(truth.shape[0]):
        ok = np.isfinite(pred[c]) & np.isfinite(truth[c])
        w = np.where(ok, np.broadcast_to(area, ok.shape), 0.0)
        if w.sum() == 0:
            continue
        p = pred[c] - (w * np.where(ok, pred[c], 0)).sum() / w.sum()
        g = truth[c] - (w * np.where(ok, truth[c], 0)).sum() / w.sum()
        p, g = np.where(ok, p, 0.0), np.where(ok, g, 0.0)
        denominator = np.sqrt((w * p * p).sum() * (w * g * g).sum())
        out[c] = (w * p * g).sum() / denominator if denominator > 0 else np.nan
    return out


def global_mean(field: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Area-weighted global mean over the last two axes (NaN left out)."""
    field = np.asarray(field, np.float64)
    w = np.where(np.isfinite(field), np.broadcast_to(area, field.shape), 0.0)
    return (w * np.nan_to_num(field)).sum(axis=(-2, -1)) / w.sum(axis=(-2, -1))
