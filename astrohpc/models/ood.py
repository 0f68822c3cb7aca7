"""Is a prediction out of distribution? A Mahalanobis distance in the model's embedding space,
and the training envelope of the planet parameters, combined into one flag per prediction.

Embeddings are [N, D] per prediction: the caller pools its features (e.g. the spatial mean of a
U-Net's bottleneck, the mean over a transformer's tokens). All statistics are float64 on the CPU
(D is small; the covariance wants the precision). Each class saves and restores its state as a
plain dict of tensors, lists, floats and strings, so it can ride in a checkpoint loaded with
torch.load(weights_only=True).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch


def _matrix(x: Any, name: str, columns: Optional[int] = None) -> torch.Tensor:
    """[N, K] float64 CPU tensor (a single row [K] becomes [1, K])."""
    t = torch.as_tensor(x).detach().to("cpu", torch.float64)
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2:
        raise ValueError(f"{name} must be [N, {columns or 'D'}], got shape {tuple(t.shape)}")
    if columns is not None and t.shape[1] != columns:
        raise ValueError(f"{name} has {t.shape[1]} columns, the fitted state {columns}")
    return t


def _require(state: dict, keys: Sequence[str], kind: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing or state.get("kind") != kind:
        raise ValueError(f"not a {kind} state (missing {', '.join(missing) or 'kind'}): save it with "
                         f"{kind}.state_dict() and restore it with {kind}.from_state_dict()")


def ledoit_wolf(x: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit–Wolf (2004) shrunk covariance of samples x [N, D] (rows centred here) ->
    (covariance [D, D], shrinkage in [0, 1]): (1 − δ)·S + δ·(tr S/D)·I with S the maximum-
    likelihood covariance (1/N) and δ the estimated optimum (the formula of sklearn's
    `ledoit_wolf_shrinkage`). Well conditioned even when N < D."""
    n, d = x.shape
    xc = x - x.mean(dim=0)
    emp = xc.T @ xc / n
    mu = torch.trace(emp) / d
    # δ = b²/d² with d² = ‖S − μI‖² and b² = (1/N²) Σ_k ‖x_k x_kᵀ − S‖² (Frobenius, /D), b² ≤ d²
    dist2 = ((emp - mu * torch.eye(d, dtype=x.dtype)) ** 2).sum() / d
    b2 = ((xc**2).sum(dim=1) ** 2).sum() / n - (emp**2).sum()
    b2 = torch.clamp(b2 / (n * d), min=0.0)
    shrinkage = 0.0 if dist2 == 0 else float(torch.clamp(b2 / dist2, max=1.0))
    return (1.0 - shrinkage) * emp + shrinkage * mu * torch.eye(d, dtype=x.dtype), shrinkage


class MahalanobisOOD:
    """Distance of an embedding from the training embeddings' Gaussian:
    √((e − μ)ᵀ Σ⁻¹ (e − μ)), in standard deviations; an embedding is flagged beyond `threshold`.

    Σ: Ledoit–Wolf shrinkage by default (N of order D is common: a few hundred runs, embeddings
    of width 64+), or a fixed shrinkage δ towards (tr S/D)·I. The threshold is the `quantile` of
    the training distances — slightly optimistic, as Σ was fitted to those points; `calibrate`
    resets it from held-out embeddings.
    """

    KIND = "MahalanobisOOD"

    def __init__(self, mean: torch.Tensor, covariance: torch.Tensor, threshold: float, quantile: float,
                 shrinkage: float):
        self.mean = mean.to(torch.float64)
        self.covariance = covariance.to(torch.float64)
        self.threshold, self.quantile, self.shrinkage = float(threshold), float(quantile), float(shrinkage)
        try:
            self._cholesky = torch.linalg.cholesky(self.covariance)
        except RuntimeError as err:  # torch.linalg.LinAlgError subclasses RuntimeError
            raise ValueError("the embedding covariance is singular (fewer samples than dimensions, or a constant "
                             "dimension): fit with shrinkage=None (Ledoit–Wolf) or a shrinkage > 0") from err

    @classmethod
    def fit(cls, train_embeddings: Any, quantile: float = 0.99, shrinkage: Optional[float] = None) -> MahalanobisOOD:
        """train_embeddings: [N, D]. quantile: of the training distances, the threshold.
        shrinkage: None for Ledoit–Wolf, or a fixed δ in [0, 1]."""
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be in (0, 1), e.g. 0.99, got {quantile}")
        x = _matrix(train_embeddings, "train_embeddings")
        if x.shape[0] < 2 or not torch.isfinite(x).all():
            raise ValueError(f"need >= 2 finite training embeddings, got {x.shape[0]} (or a NaN/inf among them)")
        if shrinkage is None:
            covariance, shrinkage = ledoit_wolf(x)
        else:
            if not 0.0 <= shrinkage <= 1.0:
                raise ValueError(f"shrinkage must be in [0, 1] or None (Ledoit–Wolf), got {shrinkage}")
            xc = x - x.mean(dim=0)
            emp = xc.T @ xc / x.shape[0]
            eye = torch.eye(x.shape[1], dtype=torch.float64)
            covariance = (1.0 - shrinkage) * emp + shrinkage * torch.trace(emp) / x.shape[1] * eye
        model = cls(x.mean(dim=0), covariance, float("inf"), quantile, shrinkage)
        model.calibrate(x, quantile)
        return model

    def calibrate(self, embeddings: Any, quantile: Optional[float] = None) -> float:
        """Set the threshold to the `quantile` (default: the fitted one) of these embeddings'
        distances — held-out in-distribution data, for an honest false-alarm rate. Returns it."""
        q = self.quantile if quantile is None else float(quantile)
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        self.threshold, self.quantile = float(torch.quantile(self.score(embeddings), q)), q
        return self.threshold

    def score(self, embeddings: Any) -> torch.Tensor:
        """embeddings [N, D] (or [D]) -> Mahalanobis distances [N], float64, ≥ 0."""
        x = _matrix(embeddings, "embeddings", self.mean.shape[0])
        white = torch.linalg.solve_triangular(self._cholesky, (x - self.mean).T, upper=False)
        return white.square().sum(dim=0).sqrt()

    def is_ood(self, embeddings: Any) -> torch.Tensor:
        """[N] bool: distance > threshold, or not finite (a NaN embedding is never in distribution)."""
        return ~(self.score(embeddings) <= self.threshold)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "mean": self.mean.clone(), "covariance": self.covariance.clone(),
                "threshold": self.threshold, "quantile": self.quantile, "shrinkage": self.shrinkage}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> MahalanobisOOD:
        _require(state, ("mean", "covariance", "threshold", "quantile", "shrinkage"), cls.KIND)
        return cls(state["mean"], state["covariance"], state["threshold"], state["quantile"], state["shrinkage"])


class ParameterEnvelope:
    """The training range of each planet parameter: [min, max] per parameter, bounds included.

    A box, not a hull: a combination inside every range but never sampled together (a corner of
    the design) passes; joint novelty is what the Mahalanobis score is for. A value within
    `rtol`·max(|min|, |max|) of a bound counts as inside, so a float32 copy of a float64 training
    value (0.3 -> 0.30000001) is not flagged.
    """

    KIND = "ParameterEnvelope"

    def __init__(self, names: Sequence[str], lower: torch.Tensor, upper: torch.Tensor, rtol: float = 1e-6):
        self.names = [str(n) for n in names]
        self.lower, self.upper = lower.to(torch.float64), upper.to(torch.float64)
        self.rtol = float(rtol)
        if not len(self.names) == self.lower.numel() == self.upper.numel():
            raise ValueError(f"{len(self.names)} names for {self.lower.numel()} bounds")

    @classmethod
    def fit(cls, train_params: Any, names: Sequence[str], rtol: float = 1e-6) -> ParameterEnvelope:
        """train_params: [N, P] in the cube's units (runs/params/<name>); names: the P parameter names."""
        x = _matrix(train_params, "train_params", len(names))
        bad = [n for n, ok in zip(names, torch.isfinite(x).all(dim=0).tolist()) if not ok]
        if bad:
            raise ValueError(f"training parameters {', '.join(bad)} have NaN/inf values (e.g. a missing value): "
                             "drop those parameters or runs before fitting the envelope")
        return cls(names, x.min(dim=0).values, x.max(dim=0).values, rtol)

    def excess(self, params: Any) -> torch.Tensor:
        """[N, P] how far each value lies outside its range (same units): < 0 below the min,
        > 0 above the max, 0 inside (within the tolerance); NaN stays NaN."""
        x = _matrix(params, "params", len(self.names))
        tol = self.rtol * torch.maximum(self.lower.abs(), self.upper.abs())
        below = torch.where(x < self.lower - tol, x - self.lower, torch.zeros_like(x))
        above = torch.where(x > self.upper + tol, x - self.upper, torch.zeros_like(x))
        return torch.where(torch.isnan(x), x, below + above)

    def outside(self, params: Any) -> list[list[str]]:
        """Per row, the names of the parameters outside the envelope (NaN counts as outside)."""
        bad = self.excess(params) != 0  # NaN != 0 is True
        return [[n for n, b in zip(self.names, row) if b] for row in bad.tolist()]

    def check(self, params: Any) -> tuple[torch.Tensor, list[str]]:
        """params [N, P] (or [P]) -> (inside [N] bool, reasons [N]: "" inside, else one clause per
        parameter outside: its value, the training range and the excess)."""
        x = _matrix(params, "params", len(self.names))
        excess = self.excess(x)
        reasons = []
        for row, ex in zip(x.tolist(), excess.tolist()):
            clauses = [self._reason(i, row[i], ex[i]) for i in range(len(self.names)) if ex[i] != 0]
            reasons.append("; ".join(clauses))
        return excess.ne(0).any(dim=1).logical_not(), reasons

    def _reason(self, i: int, value: float, excess: float) -> str:
        name, lo, hi = self.names[i], float(self.lower[i]), float(self.upper[i])
        if excess != excess:  # NaN
            return f"{name} is NaN"
        side = "above the training max" if excess > 0 else "below the training min"
        width = hi - lo
        relative = f" ({abs(excess) / width:.0%} of the range)" if width > 0 else " (constant in training)"
        return (f"{name} = {value:.6g} is {abs(excess):.4g} {side} (training range [{lo:.6g}, {hi:.6g}])"
                f"{relative}")

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "names": list(self.names), "lower": self.lower.clone(),
                "upper": self.upper.clone(), "rtol": self.rtol}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> ParameterEnvelope:
        _require(state, ("names", "lower", "upper", "rtol"), cls.KIND)
        return cls(state["names"], state["lower"], state["upper"], state["rtol"])


class OODFlag:
    """Both checks per prediction: out of distribution if the embedding is beyond the Mahalanobis
    threshold OR a parameter lies outside the training envelope."""

    KIND = "OODFlag"

    def __init__(self, mahalanobis: MahalanobisOOD, envelope: ParameterEnvelope):
        self.mahalanobis, self.envelope = mahalanobis, envelope

    @classmethod
    def fit(cls, train_embeddings: Any, train_params: Any, names: Sequence[str], quantile: float = 0.99,
            shrinkage: Optional[float] = None) -> OODFlag:
        """train_embeddings [N, D], train_params [N, P] with P names (see the two fits)."""
        return cls(MahalanobisOOD.fit(train_embeddings, quantile, shrinkage),
                   ParameterEnvelope.fit(train_params, names))

    def __call__(self, embeddings: Any, params: Any) -> list[dict[str, Any]]:
        """embeddings [N, D], params [N, P] -> per prediction {"ood": bool, "mahalanobis": float,
        "threshold": float, "outside_envelope": [parameter names]}."""
        distances = self.mahalanobis.score(embeddings)
        outside = self.envelope.outside(params)
        if len(outside) != distances.shape[0]:
            raise ValueError(f"{distances.shape[0]} embeddings but {len(outside)} parameter rows")
        threshold = self.mahalanobis.threshold
        # `not d <= threshold`: a NaN distance (NaN embedding) is flagged, never waved through
        return [{"ood": bool(not d <= threshold or names), "mahalanobis": float(d), "threshold": threshold,
                 "outside_envelope": names} for d, names in zip(distances.tolist(), outside)]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.KIND, "mahalanobis": self.mahalanobis.state_dict(), "envelope": self.envelope.state_dict()}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> OODFlag:
        _require(state, ("mahalanobis", "envelope"), cls.KIND)
        return cls(MahalanobisOOD.from_state_dict(state["mahalanobis"]),
                   ParameterEnvelope.from_state_dict(state["envelope"]))
