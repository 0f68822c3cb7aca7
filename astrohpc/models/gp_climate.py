"""The Gaussian-process climate surrogate (`architecture: gp`): planet parameters -> time-mean fields.

The standard parametric emulator of a GCM from tens of runs (Holden & Edwards' PLASIM-ENTS,
ClimateBench, ESEm), built on scikit-learn:

1. parameters x [run, P] are transformed as their sweep sampled them (log10 or identity) and
   standardised over the training runs (a parameter the runs share is an error);
2. each variable's time-mean field (all its levels) is reduced to EOFs: PCA of the
   area-weighted anomalies about the runs' mean, sqrt(area) weights so that the components are
   orthogonal on the sphere; components are kept up to `variance_kept` of the variance
   (at most `max_components`, and fewer than the runs);
3. one GP per retained component's scores: a constant times an anisotropic Matérn kernel (one
   length scale per parameter; its smoothness ν ∈ {1/2, 3/2, 5/2} chosen per component by the
   training runs' log marginal likelihood), plus a linear term (DotProduct: a linear mean function
   with a Gaussian prior on its coefficients, integrated out), plus white noise; its
   hyperparameters by maximum marginal likelihood with restarts;
4. with `loo_calibration` (fitted on the training runs alone): each component's predictive
   variance is scaled by s_k² = the mean squared standardised leave-one-out residual of its GP
   over the training runs (closed form, Rasmussen & Williams 2006 §5.4.2: r_i = α_i / [K⁻¹]_ii,
   σ_i² = 1 / [K⁻¹]_ii); and the truncation variance is the mean square of each run's part outside
   the EOFs of the other runs (leave-one-out PCA), not of the EOFs fitted to it — what truncation
   costs at a planet the EOFs never saw;
5. a prediction maps the components' means back to fields in physical units; its variance is
   the sum over components of s_k² var_k · EOF_k² plus the truncation variance per grid point.

Fields are float64 [run, channel, lat, lon]; `channel_variables` names each channel's variable.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from astrohpc.data.cube import transform_params
from astrohpc.errors import ConfigError


@dataclass
class _VariableEOF:
    """One variable's EOF reduction and its per-component GPs."""

    channels: np.ndarray  # indices into the channel axis
    mean: np.ndarray  # [c, lat, lon] mean over the training runs
    eofs: np.ndarray  # [k, c*lat*lon] orthonormal rows in sqrt(area)-weighted space
    sqrt_w: np.ndarray  # [c*lat*lon] the weights' square roots
    truncation_var: np.ndarray  # [c, lat, lon] mean squared residual of the dropped components
    gps: list  # k fitted GaussianProcessRegressor
    explained: np.ndarray  # [k] fraction of the variance each component explains
    variance_scale: np.ndarray = None  # [k] s_k² of the leave-one-out calibration (1: none)


def loo_truncation_residual(anomalies: np.ndarray, k: int) -> np.ndarray:
    """[n, D] each run's part outside the span of the first k EOFs of the other runs (their own
    mean removed): what truncation leaves at a run the EOFs were not fitted to. The in-sample
    residual of the same k EOFs is biased low (they were fitted to it)."""
    n = anomalies.shape[0]
    out = np.empty_like(anomalies)
    for i in range(n):
        others = np.delete(anomalies, i, axis=0)
        centre = others.mean(axis=0)
        _, _, vt = np.linalg.svd(others - centre, full_matrices=False)
        basis = vt[:k]
        x = anomalies[i] - centre
        out[i] = x - (x @ basis.T) @ basis
    return out


def loo_variance_scale(gp: Any) -> float:
    """Mean squared standardised leave-one-out residual of a fitted GaussianProcessRegressor over
    its training points, in closed form from its Cholesky factor: z_i = α_i / sqrt([K⁻¹]_ii)."""
    from scipy.linalg import cho_solve

    k_inv = cho_solve((gp.L_, True), np.eye(gp.L_.shape[0]))
    alpha = np.asarray(gp.alpha_).reshape(-1)
    return float(np.mean(alpha ** 2 / np.diag(k_inv)))


def _kernel(p: int, nu: float):
    """constant × anisotropic Matérn(ν) over p parameters + constant × linear + white noise."""
    from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct, Matern, WhiteKernel

    matern = Matern(length_scale=np.ones(p), length_scale_bounds=(5e-2, 1e2), nu=nu)
    return (ConstantKernel(1.0, (1e-3, 1e3)) * matern
            + ConstantKernel(0.1, (1e-5, 1e2)) * DotProduct(sigma_0=1.0, sigma_0_bounds=(1e-3, 1e2))
            + WhiteKernel(1e-2, (1e-8, 1.0)))


class GPClimate:
    """Fit with `fit`, predict with `predict` (see the module doc)."""

    def __init__(self, variance_kept: float = 0.999, max_components: int = 8, restarts: int = 4,
                 seed: int = 0, smoothness: Sequence[float] = (0.5, 1.5, 2.5), loo_calibration: bool = True) -> None:
        if not 0 < variance_kept <= 1:
            raise ConfigError(f"model.gp.variance_kept must be in (0, 1], got {variance_kept}")
        if max_components < 1:
            raise ConfigError(f"model.gp.max_components must be >= 1, got {max_components}")
        self.variance_kept = variance_kept
        self.max_components = max_components
        self.restarts = restarts
        self.seed = seed
        self.smoothness = tuple(smoothness)
        self.loo_calibration = bool(loo_calibration)
        if not self.smoothness or any(nu not in (0.5, 1.5, 2.5) for nu in self.smoothness):
            raise ConfigError(f"model.gp.smoothness: Matérn ν among 0.5, 1.5, 2.5, got {list(smoothness)}")
        self.param_names: list[str] = []
        self.transforms: list[str] = []
        self.x_mean = self.x_std = None
        self.blocks: dict[str, _VariableEOF] = {}
        self.n_channels = 0

    # -- inputs -----------------------------------------------------------------------------------
    def _inputs(self, params: np.ndarray) -> np.ndarray:
        return (transform_params(params, self.param_names, self.transforms) - self.x_mean) / self.x_std

    # -- fit --------------------------------------------------------------------------------------
    def fit(self, params: np.ndarray, param_names: Sequence[str], transforms: Sequence[str], fields: np.ndarray,
            channel_variables: Sequence[str], area_weight: np.ndarray, run_names: Sequence[str] = ()) -> GPClimate:
        """params [run, P] raw, transforms per parameter ("log10"/"identity"); fields [run, C, lat, lon]
        time means in physical units; area_weight [lat, lon]. ConfigError on bad input."""
        from sklearn.decomposition import PCA

        params = np.asarray(params, np.float64)
        fields = np.asarray(fields, np.float64)
        n = params.shape[0]
        names = list(run_names) or [str(i) for i in range(n)]
        if fields.shape[0] != n:
            raise ConfigError(f"gp climate surrogate: {n} parameter rows but {fields.shape[0]} runs of fields")
        bad = [names[i] for i in range(n) if not np.all(np.isfinite(fields[i]))]
        if bad:
            raise ConfigError(f"gp climate surrogate: NaN or inf in the time mean of run(s) {', '.join(bad)} — "
                              "a failed or truncated run; drop it (study.runs / train.*_runs) or rerun it")
        if n <= self.max_components:
            raise ConfigError(f"gp climate surrogate: {n} training run(s) cannot support up to {self.max_components} "
                              f"EOF components (each needs a run beyond the mean): lower model.gp.max_components to "
                              f"{max(n - 1, 1)} or less, or add runs (~10 per parameter)")
        self.param_names, self.transforms = list(param_names), list(transforms)
        x = transform_params(params, self.param_names, self.transforms)
        std = x.std(axis=0)
        constant = [p for p, s in zip(self.param_names, std) if not s > 0]
        if constant:
            raise ConfigError(f"gp climate surrogate: parameter(s) {', '.join(constant)} take one value across the "
                              "training runs; a GP cannot learn a dependence on them — leave them out of model.params")
        self.x_mean, self.x_std = x.mean(axis=0), std
        z = (x - self.x_mean) / self.x_std
        self.n_channels = fields.shape[1]
        variables = list(dict.fromkeys(channel_variables))
        rng = np.random.RandomState(self.seed)
        self.blocks = {}
        for var in variables:
            idx = np.array([i for i, v in enumerate(channel_variables) if v == var])
            block = fields[:, idx]
            mean = block.mean(axis=0)
            sqrt_w = np.sqrt(np.broadcast_to(area_weight, block.shape[1:]).reshape(-1))
            anomalies = (block - mean).reshape(n, -1) * sqrt_w
            k_max = self.max_components
            pca = PCA(n_components=k_max, svd_solver="full").fit(anomalies)
            cumulative = np.cumsum(pca.explained_variance_ratio_)
            k = int(min(k_max, np.searchsorted(cumulative, self.variance_kept) + 1))
            eofs = pca.components_[:k]
            scores = anomalies @ eofs.T
            residual = (loo_truncation_residual(anomalies, k) if self.loo_calibration
                        else anomalies - scores @ eofs)
            truncation = (residual ** 2).mean(axis=0) / np.where(sqrt_w > 0, sqrt_w ** 2, 1.0)
            gps = [self._fit_gp(z, scores[:, j], rng) for j in range(k)]
            scale = np.array([loo_variance_scale(gp) if self.loo_calibration else 1.0 for gp in gps])
            self.blocks[var] = _VariableEOF(idx, mean, eofs, sqrt_w, truncation.reshape(mean.shape), gps,
                                            pca.explained_variance_ratio_[:k], scale)
        return self

    def _fit_gp(self, z: np.ndarray, y: np.ndarray, rng: np.random.RandomState):
        """The GP of one component: for each Matérn smoothness ν of `smoothness` the hyperparameters
        of maximum marginal likelihood; the ν whose fit has the highest log marginal likelihood of
        the training runs is kept (model selection on the training data only)."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor

        best = None
        for nu in self.smoothness:
            gp = GaussianProcessRegressor(kernel=_kernel(z.shape[1], nu), normalize_y=True,
                                          n_restarts_optimizer=self.restarts,
                                          random_state=rng)
            with warnings.catch_warnings():  # a bound reached is information, not an error, on ~20 runs
                warnings.simplefilter("ignore", ConvergenceWarning)
                gp.fit(z, y)
            if best is None or gp.log_marginal_likelihood_value_ > best.log_marginal_likelihood_value_:
                best = gp
        return best

    # -- predict ----------------------------------------------------------------------------------
    def predict(self, params: np.ndarray, param_names: Optional[Sequence[str]] = None) -> tuple[np.ndarray, np.ndarray]:
        """params [m, P] raw (in `param_names` order when given: each must be one the model knows,
        all of them given) -> (mean, std), each [m, C, lat, lon] float64 in physical units."""
        params = np.atleast_2d(np.asarray(params, np.float64))
        if param_names is not None:
            params = self._reorder(params, list(param_names))
        if params.shape[1] != len(self.param_names):
            raise ConfigError(f"gp climate surrogate: {params.shape[1]} parameter(s) given, the model takes "
                              f"{len(self.param_names)}: {', '.join(self.param_names)}")
        z = self._inputs(params)
        m = z.shape[0]
        some = next(iter(self.blocks.values()))
        shape = (m, self.n_channels, *some.mean.shape[1:])
        mean, var = np.zeros(shape), np.zeros(shape)
        for block in self.blocks.values():
            k = len(block.gps)
            mu_k, sd_k = np.zeros((m, k)), np.zeros((m, k))
            for j, gp in enumerate(block.gps):
                mu_k[:, j], sd_k[:, j] = gp.predict(z, return_std=True)
            w = np.where(block.sqrt_w > 0, block.sqrt_w, 1.0)
            field = (mu_k @ block.eofs) / w
            field_var = ((sd_k ** 2 * block.variance_scale) @ (block.eofs ** 2)) / w ** 2
            mean[:, block.channels] = block.mean + field.reshape(m, *block.mean.shape)
            var[:, block.channels] = field_var.reshape(m, *block.mean.shape) + block.truncation_var
        # a cell that never varies across the runs has no spread to predict: floor at the smallest
        # positive double so that σ > 0 everywhere (scores divide by it)
        return mean, np.sqrt(np.maximum(var, np.finfo(np.float64).tiny))

    def _reorder(self, params: np.ndarray, names: list[str]) -> np.ndarray:
        unknown = [n for n in names if n not in self.param_names]
        if unknown:
            raise ConfigError(f"gp climate surrogate: unknown parameter(s) {', '.join(unknown)}; the model knows "
                              f"{', '.join(self.param_names)}")
        missing = [n for n in self.param_names if n not in names]
        if missing:
            raise ConfigError(f"gp climate surrogate: parameter(s) {', '.join(missing)} not given; the model needs "
                              f"{', '.join(self.param_names)}")
        return params[:, [names.index(n) for n in self.param_names]]

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The fitted model as tensors, lists and numbers (torch.load(weights_only=True) reads it):
        settings, parameter scaling, and per variable its EOFs and, per component, the GP's kernel
        smoothness, fitted hyperparameters (log θ) and training data. `from_state_dict` rebuilds the
        GPs with those hyperparameters, without optimising: the predictions are the same."""
        import torch

        if not self.blocks:
            raise ConfigError("gp climate surrogate: not fitted; call fit() before state_dict()")
        t = lambda a: torch.from_numpy(np.array(a, dtype=np.float64))  # noqa: E731 (a local shorthand)
        blocks = {}
        for var, b in self.blocks.items():
            blocks[var] = {"channels": torch.from_numpy(np.asarray(b.channels, np.int64)), "mean": t(b.mean),
                           "eofs": t(b.eofs), "sqrt_w": t(b.sqrt_w), "truncation_var": t(b.truncation_var),
                           "explained": t(b.explained), "variance_scale": t(b.variance_scale),
                           "gps": [{"nu": float(gp.kernel_.k1.k1.k2.nu), "theta": t(gp.kernel_.theta),
                                    "x": t(gp.X_train_), "y": t(gp.y_train_ * gp._y_train_std + gp._y_train_mean)}
                                   for gp in b.gps]}
        return {"kind": "GPClimate", "version": 1, "variance_kept": self.variance_kept,
                "max_components": self.max_components, "restarts": self.restarts, "seed": self.seed,
                "smoothness": list(self.smoothness), "loo_calibration": self.loo_calibration,
                "param_names": list(self.param_names),
                "transforms": list(self.transforms), "x_mean": t(self.x_mean), "x_std": t(self.x_std),
                "n_channels": int(self.n_channels), "blocks": blocks}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> GPClimate:
        """The model `state_dict` saved (ConfigError when `state` is not one)."""
        from sklearn.gaussian_process import GaussianProcessRegressor

        if not isinstance(state, dict) or state.get("kind") != "GPClimate" or state.get("version") != 1:
            raise ConfigError("not a saved GP climate surrogate (kind GPClimate, version 1): re-export it with "
                              "`astrohpc study climate CONFIG` (its aggregation writes export/gp.pt)")
        model = cls(state["variance_kept"], state["max_components"], state["restarts"], state["seed"],
                    state["smoothness"], state["loo_calibration"])
        model.param_names, model.transforms = list(state["param_names"]), list(state["transforms"])
        model.x_mean, model.x_std = state["x_mean"].numpy(), state["x_std"].numpy()
        model.n_channels = int(state["n_channels"])
        for var, b in state["blocks"].items():
            gps = []
            for g in b["gps"]:
                x = g["x"].numpy()
                kernel = _kernel(x.shape[1], g["nu"]).clone_with_theta(g["theta"].numpy())
                gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, optimizer=None)
                gps.append(gp.fit(x, g["y"].numpy()))
            model.blocks[var] = _VariableEOF(b["channels"].numpy(), b["mean"].numpy(), b["eofs"].numpy(),
                                             b["sqrt_w"].numpy(), b["truncation_var"].numpy(), gps,
                                             b["explained"].numpy(), b["variance_scale"].numpy())
        return model

    # -- description ------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        """Components kept, variance explained and fitted kernels per variable (plain data)."""
        return {var: {"components": len(b.gps), "explained": b.explained.tolist(),
                      "loo_variance_scale": b.variance_scale.tolist(),
                      "kernels": [str(gp.kernel_) for gp in b.gps]} for var, b in self.blocks.items()}
