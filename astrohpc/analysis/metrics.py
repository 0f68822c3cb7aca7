"""Probabilistic forecast metrics: CRPS, coverage, calibration (ECE, rank histogram), sharpness,
σ-scaling, skill.

Every function takes numpy arrays or torch tensors (anything with `.detach()`; moved to the CPU),
computes in float64 and returns a Python float (`ece_*` return a `ReliabilityCurve`). The
arguments broadcast against each other (a climatology `mean` [lat, lon] against `obs`
[time, lat, lon], a scalar `sigma`); `sigma` is a standard deviation in the units of `obs`.

Weights: optional, ≥ 0, broadcastable to the data without enlarging it — e.g. a cube's
`area_weight` [lat, lon] against data [..., lat, lon]. A metric is Σ w·m / Σ w over the counted
elements (unweighted: the plain mean).

NaN policy: an element counts only where every input at it is finite (for an ensemble: every
member and obs) — so a cube's NaN fill past a run's end drops out, and its weight leaves the
denominator too. No finite element at all is an error, never a silent NaN.

Ensembles: `members` [M, ...], the members on axis 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Optional

import numpy as np
from scipy.special import ndtr, ndtri

_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Kuleshov et al. 2018 levels: p = 0.05 … 0.95; 0 and 1 are calibrated by construction.
DEFAULT_LEVELS = np.arange(1, 20) / 20.0


def _float64(x: Any) -> np.ndarray:
    """numpy array or torch tensor (any device, any float type) -> float64 numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_sigma(sigma: np.ndarray) -> None:
    bad = np.isfinite(sigma) & (sigma <= 0)
    if bad.any():
        raise ValueError(f"sigma must be > 0 (a standard deviation); {int(bad.sum())} element(s) are <= 0, "
                         f"smallest {sigma[bad].min():.4g}: floor it (e.g. softplus + floor) before scoring")


def _weighted_mean(values: np.ndarray, valid: np.ndarray, weights: Optional[Any]) -> float:
    """Σ w·v / Σ w over `valid` elements; `weights` broadcast to `values`.shape."""
    if weights is None:
        w = valid.astype(np.float64)
    else:
        w_in = _float64(weights)
        try:
            shape = np.broadcast_shapes(w_in.shape, values.shape)
        except ValueError:
            shape = None
        if shape != values.shape:
            raise ValueError(f"weights of shape {w_in.shape} do not broadcast to the data's shape {values.shape}; "
                             "give e.g. area weights [lat, lon] for data [..., lat, lon]")
        if not np.isfinite(w_in).all() or (w_in < 0).any():
            raise ValueError("weights must be finite and >= 0")
        w = np.where(valid, np.broadcast_to(w_in, values.shape), 0.0)
    if not valid.any():
        raise ValueError("no finite element to score: every element has a NaN or infinite input")
    total = w.sum()
    if total <= 0:
        raise ValueError("the weights of the finite elements sum to 0: nothing to average")
    return float((w * np.where(valid, values, 0.0)).sum() / total)


def _gaussian(mean: Any, sigma: Any, obs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Broadcast float64 mean, sigma, obs and the mask of elements where all three are finite."""
    m, s, o = np.broadcast_arrays(_float64(mean), _float64(sigma), _float64(obs))
    _check_sigma(s)
    valid = np.isfinite(m) & np.isfinite(s) & np.isfinite(o)
    # Placeholders where invalid keep NaN/inf out of the arithmetic (and its warnings).
    return np.where(valid, m, 0.0), np.where(valid, s, 1.0), np.where(valid, o, 0.0), valid


def _ensemble(members: Any, obs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 members [M, ...] and obs broadcast to members[0], and the mask of all-finite elements."""
    x = _float64(members)
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"members must be [M, ...] with M >= 1 members on axis 0, got shape {x.shape}")
    o = _float64(obs)
    shape = np.broadcast_shapes(x.shape[1:], o.shape)
    x = np.broadcast_to(x, (x.shape[0], *shape))
    o = np.broadcast_to(o, shape)
    valid = np.isfinite(x).all(axis=0) & np.isfinite(o)
    return np.where(valid, x, 0.0), np.where(valid, o, 0.0), valid


def crps_gaussian(mean: Any, sigma: Any, obs: Any, weights: Optional[Any] = None) -> float:
    """Mean CRPS of Gaussian forecasts N(mean, sigma²), in the units of obs (closed form,
    Gneiting et al. 2005): σ·[z(2Φ(z) − 1) + 2φ(z) − 1/√π], z = (obs − mean)/σ."""
    m, s, o, valid = _gaussian(mean, sigma, obs)
    z = (o - m) / s
    crps = s * (z * (2.0 * ndtr(z) - 1.0) + 2.0 * np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi) - _INV_SQRT_PI)
    return _weighted_mean(crps, valid, weights)


def crps_ensemble(members: Any, obs: Any, weights: Optional[Any] = None,
                  estimator: Literal["fair", "standard"] = "fair") -> float:
    """Mean CRPS of an ensemble forecast, in the units of obs: E|X − y| − ½·E|X − X'|.

    members: [M, ...]. estimator:
    - `fair` (default; Ferro 2014): E|X − X'| over the M(M − 1) pairs of distinct members — an
      unbiased estimate of the CRPS of the distribution the members are drawn from, so a
      5-member deep ensemble and 50 MC-dropout passes are compared fairly (as WeatherBench 2).
      Needs M ≥ 2. scoringrules `estimator="fair"`.
    - `standard`: the CRPS of the members' empirical distribution (M² pairs; properscoring's
      `crps_ensemble`, scoringrules `"nrg"`); favours larger ensembles.
    """
    if estimator not in ("fair", "standard"):
        raise ValueError(f"estimator must be 'fair' or 'standard', got {estimator!r}")
    x, o, valid = _ensemble(members, obs)
    m = x.shape[0]
    if estimator == "fair" and m < 2:
        raise ValueError("the fair CRPS needs at least 2 members; use estimator='standard' for one")
    skill = np.abs(x - o).mean(axis=0)
    # Σ_ij |x_i − x_j| = 2 Σ_i (2i − M − 1) x_(i) over the sorted members: O(M log M), not O(M²).
    rank_weight = (2.0 * np.arange(1, m + 1) - m - 1.0).reshape((m,) + (1,) * (x.ndim - 1))
    pair_sum = 2.0 * (rank_weight * np.sort(x, axis=0)).sum(axis=0)
    pairs = m * (m - 1) if estimator == "fair" else m * m
    return _weighted_mean(skill - 0.5 * pair_sum / pairs, valid, weights)


def crps_skill_score(crps: float, crps_reference: float) -> float:
    """1 − CRPS/CRPS_ref: 1 perfect, 0 as good as the reference, < 0 worse. The reference is
    typically climatology: `crps_gaussian(clim_mean [lat, lon], clim_std [lat, lon], obs)`
    on the same obs and weights."""
    if not math.isfinite(crps_reference) or crps_reference <= 0:
        raise ValueError(f"the reference CRPS must be finite and > 0, got {crps_reference}")
    return 1.0 - float(crps) / float(crps_reference)


def gaussian_nll(mean: Any, sigma: Any, obs: Any, weights: Optional[Any] = None) -> float:
    """Mean negative log-likelihood of obs under N(mean, sigma²), nats per element, with the
    constant: ½log(2π) + log σ + ½((obs − mean)/σ)². Depends on the units of obs through log σ."""
    m, s, o, valid = _gaussian(mean, sigma, obs)
    z = (o - m) / s
    return _weighted_mean(_HALF_LOG_2PI + np.log(s) + 0.5 * z * z, valid, weights)


def coverage(mean: Any, sigma: Any, obs: Any, level: float = 0.95, weights: Optional[Any] = None) -> float:
    """Fraction of obs inside the central Gaussian interval mean ± z·σ holding probability
    `level`, z = Φ⁻¹((1 + level)/2) (level 0.95: z = 1.960; ±1σ is level 0.6827, not 0.68).
    Bounds included. A calibrated forecast gives ≈ level."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m, s, o, valid = _gaussian(mean, sigma, obs)
    inside = np.abs(o - m) <= ndtri(0.5 + 0.5 * level) * s
    return _weighted_mean(inside.astype(np.float64), valid, weights)


def _ensemble_quantile(x: np.ndarray, p: float) -> np.ndarray:
    # Hyndman–Fan type 6 (numpy "weibull"): the p-quantile sits at order statistic (M + 1)p, and a
    # calibrated ensemble's outcome falls below the k-th member with probability k/(M + 1) — so the
    # expected frequency is exactly p for p in [1/(M+1), M/(M+1)] (numpy's default "linear" is
    # biased by up to 1/(M+1)); outside that range the quantile saturates at the min or max.
    return np.quantile(x, p, axis=0, method="weibull")


def coverage_ensemble(members: Any, obs: Any, level: float = 0.95, weights: Optional[Any] = None) -> float:
    """Fraction of obs inside the members' central interval [q_(1−level)/2, q_(1+level)/2]
    (empirical quantiles, Hyndman–Fan type 6; bounds included). members: [M, ...]. An ensemble of
    M members resolves levels up to (M − 1)/(M + 1) (its [min, max]); a wider level is capped there."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x, o, valid = _ensemble(members, obs)
    lower, upper = _ensemble_quantile(x, 0.5 - 0.5 * level), _ensemble_quantile(x, 0.5 + 0.5 * level)
    inside = (o >= lower) & (o <= upper)
    return _weighted_mean(inside.astype(np.float64), valid, weights)


@dataclass(frozen=True)
class ReliabilityCurve:
    """Quantile calibration (Kuleshov et al. 2018). levels: [L] the probabilities p;
    observed: [L] the (weighted) frequency of obs ≤ the predicted p-quantile; ece: mean |observed − p|.
    Plot observed against levels for a reliability diagram (the diagonal is perfect calibration;
    below it at high p: over-confident)."""

    levels: np.ndarray
    observed: np.ndarray
    ece: float


def _levels(levels: Optional[Any]) -> np.ndarray:
    p = DEFAULT_LEVELS if levels is None else np.atleast_1d(_float64(levels))
    if p.ndim != 1 or p.size == 0 or not ((p > 0) & (p < 1)).all():
        raise ValueError("levels must be a non-empty 1-D list of probabilities in (0, 1)")
    return p


def _reliability(below: Any, levels: np.ndarray, valid: np.ndarray, weights: Optional[Any]) -> ReliabilityCurve:
    """below(p) -> bool array: obs ≤ the predicted p-quantile."""
    observed = np.array([_weighted_mean(below(p).astype(np.float64), valid, weights) for p in levels])
    return ReliabilityCurve(levels=levels, observed=observed, ece=float(np.abs(observed - levels).mean()))


def ece_regression(mean: Any, sigma: Any, obs: Any, levels: Optional[Any] = None,
                   weights: Optional[Any] = None) -> ReliabilityCurve:
    """Expected calibration error of Gaussian forecasts (Kuleshov et al. 2018): for each level p
    (default 0.05, 0.10, …, 0.95) the frequency of obs ≤ mean + σ·Φ⁻¹(p), i.e. PIT = Φ(z) ≤ p;
    ECE = mean over levels of |frequency − p|. 0: calibrated; σ 3× too small (over-confident): ≈ 0.14."""
    p = _levels(levels)
    m, s, o, valid = _gaussian(mean, sigma, obs)
    pit = ndtr((o - m) / s)
    return _reliability(lambda q: pit <= q, p, valid, weights)


def ece_ensemble(members: Any, obs: Any, levels: Optional[Any] = None,
                 weights: Optional[Any] = None) -> ReliabilityCurve:
    """ECE of an ensemble forecast: the predicted p-quantile is the members' empirical quantile
    (Hyndman–Fan type 6, unbiased for a calibrated ensemble; see `coverage_ensemble`). members: [M, ...]."""
    p = _levels(levels)
    x, o, valid = _ensemble(members, obs)
    return _reliability(lambda q: o <= _ensemble_quantile(x, q), p, valid, weights)


def rank_histogram(members: Any, obs: Any, weights: Optional[Any] = None) -> np.ndarray:
    """The (weighted) frequency of each rank of obs among the M members: [M + 1], summing to 1;
    rank k = how many members lie below obs, a tied member counting half (the expected rank under
    random tie-breaking; a half-integer rank is split between its two neighbouring bins). Flat for a
    calibrated ensemble; U-shaped: over-confident (obs outside the members too often); peaked in
    the middle: under-confident."""
    x, o, valid = _ensemble(members, obs)
    m = x.shape[0]
    rank = (x < o).sum(axis=0) + 0.5 * (x == o).sum(axis=0)
    # a half-integer rank (ties) is shared between its two neighbouring bins
    low, frac = np.floor(rank).astype(int), rank - np.floor(rank)
    out = np.empty(m + 1)
    for k in range(m + 1):
        share = np.where(low == k, 1.0 - frac, 0.0) + np.where((low == k - 1) & (frac > 0), frac, 0.0)
        out[k] = _weighted_mean(share, valid, weights)
    return out


def sharpness(sigma: Any, weights: Optional[Any] = None, statistic: Literal["rms", "mean"] = "rms") -> float:
    """How narrow the forecasts are, in the units of sigma (smaller: sharper; judge it only
    together with calibration). `rms` (default): √(mean σ²), the root of Kuleshov et al.'s mean
    predictive variance, the spread to compare with an RMSE; `mean`: mean σ."""
    if statistic not in ("rms", "mean"):
        raise ValueError(f"statistic must be 'rms' or 'mean', got {statistic!r}")
    s = _float64(sigma)
    _check_sigma(s)
    valid = np.isfinite(s)
    if statistic == "mean":
        return _weighted_mean(s, valid, weights)
    return math.sqrt(_weighted_mean(np.where(valid, s, 0.0) ** 2, valid, weights))


def fit_sigma_scale(mean: Any, sigma: Any, obs: Any, weights: Optional[Any] = None) -> float:
    """Post-hoc σ-scaling (Levi et al. 2019): the factor s > 0 minimising the Gaussian NLL of
    N(mean, (s·σ)²), in closed form s = √(mean(((obs − mean)/σ)²)). Fit it on VALIDATION data
    (never on the test set), apply it with `apply_sigma_scale`. One s for all elements given;
    per channel: call it per channel slice. s > 1: the forecasts were over-confident."""
    m, s, o, valid = _gaussian(mean, sigma, obs)
    z = (o - m) / s
    scale = math.sqrt(_weighted_mean(z * z, valid, weights))
    if scale == 0.0:
        raise ValueError("every obs equals its mean: the σ-scale is 0 and undefined; fit on real validation data")
    return scale


def apply_sigma_scale(sigma: Any, scale: float) -> Any:
    """sigma · scale, in the type, dtype and device of sigma (numpy array or torch tensor)."""
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"the σ-scale must be finite and > 0, got {scale}")
    return sigma * scale
