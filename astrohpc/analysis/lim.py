"""A linear inverse model (LIM): the baseline an emulator must beat to have learned anything
nonlinear. It fits in seconds and is stable by construction.

State x [C, lat, lon] (physical) is standardised per channel ((x − μ)/σ over the training
states), weighted by sqrt(cell area) and reduced to its leading EOFs (scikit-learn PCA); the
forcing of the next step (the insolation at t + 1) likewise, with its own EOFs; the planet's
parameters (standardised, as the model reads them) are appended. A ridge regression
(scikit-learn) maps [pcs(x_t), pcs(f_{t+1}), params] to the change of the state's EOF
coefficients over the step; a forecast adds the decoded change to x_t, so the part of the state
outside the EOFs persists.

Fields are float32/64 numpy arrays; `fit` takes pairs (x_t, f_{t+1}, p, x_{t+1}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class LinearInverseModel:
    """See the module doc. components / forcing_components: EOFs kept; alpha: ridge penalty."""

    components: int = 30
    forcing_components: int = 8
    alpha: float = 1.0
    seed: int = 0

    def _encode(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64) - self.mean_) / self.std_ * self.sqrt_w_
        return self.pca_.transform(z.reshape(len(z), -1))

    def _encode_forcing(self, f: np.ndarray) -> np.ndarray:
        if self.f_pca_ is None:  # a model without forcing channels
            return np.zeros((len(f), 0))
        z = (np.asarray(f, np.float64) - self.f_mean_) / self.f_std_ * self.sqrt_w_
        return self.f_pca_.transform(z.reshape(len(z), -1))

    def _decode_change(self, d_pcs: np.ndarray) -> np.ndarray:
        z = (d_pcs @ self.pca_.components_).reshape(len(d_pcs), *self.mean_.shape)
        return z / self.sqrt_w_ * self.std_

    def fit(self, x: np.ndarray, forcing_next: np.ndarray, params: np.ndarray, x_next: np.ndarray,
            area_weight: np.ndarray) -> LinearInverseModel:
        """x, x_next [N, C, lat, lon]; forcing_next [N, F, lat, lon]; params [N, P]; area [lat, lon]."""
        from sklearn.decomposition import PCA
        from sklearn.linear_model import Ridge

        x = np.asarray(x, np.float64)
        self.mean_ = x.mean(axis=0, keepdims=True)[0]
        std = x.std(axis=(0, 2, 3))
        self.std_ = np.where(std > 0, std, 1.0)[:, None, None]
        self.sqrt_w_ = np.sqrt(np.asarray(area_weight, np.float64) / np.mean(area_weight))
        flat = ((x - self.mean_) / self.std_ * self.sqrt_w_).reshape(len(x), -1)
        k = min(self.components, len(x) - 1, flat.shape[1])
        self.pca_ = PCA(n_components=k, svd_solver="randomized", random_state=self.seed).fit(flat)
        f = np.asarray(forcing_next, np.float64)
        self.f_pca_ = None
        if f.shape[1] == 0:
            pcs, pcs_next = self._encode(x), self._encode(x_next)
            inputs = np.concatenate([pcs, np.asarray(params, np.float64)], axis=1)
            self.ridge_ = Ridge(alpha=self.alpha).fit(inputs, pcs_next - pcs)
            return self
        self.f_mean_ = f.mean(axis=0)
        f_std = f.std(axis=(0, 2, 3))
        self.f_std_ = np.where(f_std > 0, f_std, 1.0)[:, None, None]
        f_flat = ((f - self.f_mean_) / self.f_std_ * self.sqrt_w_).reshape(len(f), -1)
        kf = min(self.forcing_components, len(f) - 1, f_flat.shape[1])
        self.f_pca_ = PCA(n_components=kf, svd_solver="randomized", random_state=self.seed).fit(f_flat)
        pcs, pcs_next = self._encode(x), self._encode(x_next)
        inputs = np.concatenate([pcs, self._encode_forcing(f), np.asarray(params, np.float64)], axis=1)
        self.ridge_ = Ridge(alpha=self.alpha).fit(inputs, pcs_next - pcs)
        return self

    def step(self, x: np.ndarray, forcing_next: np.ndarray, params: np.ndarray) -> np.ndarray:
        """x [B, C, lat, lon] -> x at the next step [B, C, lat, lon] (float64)."""
        x = np.asarray(x, np.float64)
        inputs = np.concatenate([self._encode(x), self._encode_forcing(forcing_next),
                                 np.asarray(params, np.float64)], axis=1)
        return x + self._decode_change(self.ridge_.predict(inputs))

    def explained(self) -> Optional[float]:
        """Fraction of the standardised state's variance the EOFs keep."""
        return float(np.sum(self.pca_.explained_variance_ratio_)) if hasattr(self, "pca_") else None
