"""Predictive uncertainty for any surrogate: a heteroscedastic Gaussian head and its NLL loss,
MC dropout, and deep-ensemble aggregation.

All in the normalised units the net sees (astrohpc.models.stepper owns the physical units: a σ
de-normalises like a tendency, σ_phys = σ·std, without the mean shift).

What a model may return, everywhere here (written against any nn.Module):
- a tensor: a point prediction;
- a Gaussian: a `GaussianPrediction`, a (mean, sigma) tuple/list, or a dict {"mean", "sigma"};
- a dict of named heads ({"datacube": ..., "scalar": ...}) whose values are either of the above.
Aggregates come back in the same structure, each leaf a `GaussianPrediction`.

A set of predictions (MC-dropout passes, ensemble members) is combined as the equal-weight
mixture of its Gaussians (Lakshminarayanan et al. 2017): mean = mean of the means, variance =
mean of the variances (aleatoric; 0 for point predictions) + variance of the means (epistemic,
population form, 1/N: the mixture's own variance, and Gal's MC-dropout estimate).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal, NamedTuple, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn


class GaussianPrediction(NamedTuple):
    """mean and sigma (> 0), same shape, normalised units."""

    mean: torch.Tensor
    sigma: torch.Tensor


Prediction = Union[GaussianPrediction, dict[str, GaussianPrediction]]


class GaussianHead(nn.Module):
    """Features -> (mean, σ): a linear map per position (a 1×1 convolution on [B, C, lat, lon]).

    in_features, out_features: sizes of `channel_dim` in and out (e.g. 1 for a U-Net's
    [B, C, lat, lon], -1 for a transformer's [B, tokens, D]). σ = softplus(raw) + sigma_floor:
    positive and smooth, and the floor (normalised units) stops the NLL rewarding σ → 0 on
    points it fits exactly. σ starts at `init_sigma` everywhere (its weights zero, its bias set):
    1 is the spread of normalised targets, so early NLL steps neither explode nor stall.
    """

    def __init__(self, in_features: int, out_features: int, channel_dim: int = 1, sigma_floor: float = 1e-3,
                 init_sigma: float = 1.0):
        super().__init__()
        if sigma_floor <= 0 or init_sigma <= sigma_floor:
            raise ValueError(f"need 0 < sigma_floor < init_sigma, got {sigma_floor}, {init_sigma}")
        self.channel_dim, self.sigma_floor = channel_dim, float(sigma_floor)
        self.mean = nn.Linear(in_features, out_features)
        self.raw_sigma = nn.Linear(in_features, out_features)
        nn.init.zeros_(self.raw_sigma.weight)
        target = init_sigma - sigma_floor
        # softplus⁻¹(y) = y + log(1 − e^(−y))
        nn.init.constant_(self.raw_sigma.bias, target + math.log(-math.expm1(-target)))

    def forward(self, features: torch.Tensor) -> GaussianPrediction:
        """features: [..., in_features (at channel_dim), ...] -> mean, sigma [..., out_features, ...]."""
        x = features.movedim(self.channel_dim, -1)
        mean = self.mean(x).movedim(-1, self.channel_dim)
        sigma = (F.softplus(self.raw_sigma(x)) + self.sigma_floor).movedim(-1, self.channel_dim)
        return GaussianPrediction(mean, sigma)


def gaussian_nll(mean: torch.Tensor, sigma: torch.Tensor, target: torch.Tensor, weights: Optional[torch.Tensor] = None,
                 reduction: Literal["mean", "sum", "none"] = "mean", full: bool = True) -> torch.Tensor:
    """Gaussian negative log-likelihood per element, nats, normalised units:

        log σ + ½((target − mean)/σ)² [+ ½ log 2π if full]

    The constant ½ log 2π ≈ 0.919 changes no gradient; it is included by default so the value is
    the true NLL (comparable with astrohpc.analysis.metrics.gaussian_nll); `full=False` matches
    torch's GaussianNLLLoss default. sigma must be > 0 (GaussianHead floors it); not checked here,
    which would force a GPU sync every step. weights: broadcastable to the elements (e.g. area
    weights [lat, lon]); `mean` is then Σ w·nll / Σ w over all elements. NaN targets propagate.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    nll = torch.log(sigma) + 0.5 * ((target - mean) / sigma) ** 2
    if full:
        nll = nll + 0.5 * math.log(2.0 * math.pi)
    if weights is not None:
        w = torch.broadcast_to(weights.to(nll.dtype), nll.shape)
        if reduction == "mean":
            return (w * nll).sum() / w.sum()
        nll = w * nll
    if reduction == "none":
        return nll
    return nll.sum() if reduction == "sum" else nll.mean()


def _as_gaussian(out: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A leaf output -> (mean, sigma or None)."""
    if isinstance(out, torch.Tensor):
        return out, None
    if isinstance(out, Mapping) and set(out) == {"mean", "sigma"}:
        return out["mean"], out["sigma"]
    if isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
        return out[0], out[1]
    raise TypeError(f"a model output must be a tensor, a (mean, sigma) pair, a dict {{'mean', 'sigma'}}, or a dict "
                    f"of those by head; got {type(out).__name__}")


def _heads(out: Any) -> dict[Optional[str], tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """An output -> {head name (None for a single output): (mean, sigma or None)}."""
    if isinstance(out, Mapping) and set(out) != {"mean", "sigma"}:
        return {name: _as_gaussian(value) for name, value in out.items()}
    return {None: _as_gaussian(out)}


def _restructure(leaves: dict[Optional[str], Any]) -> Any:
    return leaves[None] if set(leaves) == {None} else dict(leaves)


class _Mixture:
    """Running mean and variance of a stream of predictions of one head (Welford: no N copies)."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2, self.var_sum, self.gaussian = 0, None, None, None, None

    def add(self, mean: torch.Tensor, sigma: Optional[torch.Tensor]) -> None:
        gaussian = sigma is not None
        if self.gaussian is not None and gaussian != self.gaussian:
            raise ValueError("the predictions mix Gaussian and point outputs: every member/pass must return the same")
        self.gaussian, self.n = gaussian, self.n + 1
        if self.mean is None:
            self.mean, self.m2 = mean.clone(), torch.zeros_like(mean)
            self.var_sum = sigma.square() if gaussian else None
            return
        if mean.shape != self.mean.shape:
            raise ValueError(f"predictions differ in shape: {tuple(self.mean.shape)} and {tuple(mean.shape)}")
        delta = mean - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (mean - self.mean)
        if gaussian:
            self.var_sum += sigma.square()

    def result(self) -> GaussianPrediction:
        var = self.m2 / self.n
        if self.gaussian:
            var = var + self.var_sum / self.n
        return GaussianPrediction(self.mean, var.clamp_min(0).sqrt())


class _Stream:
    """Mixtures per head over a stream of whole model outputs."""

    def __init__(self) -> None:
        self.heads: Optional[dict[Optional[str], _Mixture]] = None

    def add(self, out: Any) -> None:
        heads = _heads(out)
        if self.heads is None:
            self.heads = {name: _Mixture() for name in heads}
        if set(heads) != set(self.heads):
            raise ValueError(f"predictions differ in their heads: {sorted(map(str, self.heads))} and "
                             f"{sorted(map(str, heads))}")
        for name, (mean, sigma) in heads.items():
            self.heads[name].add(mean, sigma)

    def result(self) -> Prediction:
        return _restructure({name: mix.result() for name, mix in self.heads.items()})


def gaussian_mixture(means: Union[torch.Tensor, Sequence[torch.Tensor]],
                     sigmas: Optional[Union[torch.Tensor, Sequence[torch.Tensor]]] = None) -> GaussianPrediction:
    """Aggregate M predictions: means [M, ...] (and sigmas [M, ...], or None for point predictions
    or samples) -> the mixture's mean and σ [...] (see the module doc)."""
    mu = torch.stack(list(means)) if not isinstance(means, torch.Tensor) else means
    var = mu.var(dim=0, correction=0)
    if sigmas is not None:
        sd = torch.stack(list(sigmas)) if not isinstance(sigmas, torch.Tensor) else sigmas
        if sd.shape != mu.shape:
            raise ValueError(f"sigmas {tuple(sd.shape)} and means {tuple(mu.shape)} differ in shape")
        var = var + sd.square().mean(dim=0)
    return GaussianPrediction(mu.mean(dim=0), var.sqrt())


# Modules whose own `training` flag switches dropout on. torch's attention and transformer
# layers apply their dropout (and skip their eval-only fast path, which ignores dropout) from it.
_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_ATTENTION_TYPES = (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer,
                    nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer)


def _dropout_rate(module: nn.Module) -> float:
    if isinstance(module, _DROPOUT_TYPES):
        return float(module.p)
    if isinstance(module, nn.MultiheadAttention):
        return float(module.dropout)
    return 0.0


@contextmanager
def dropout_active(model: nn.Module) -> Iterator[nn.Module]:
    """MC-dropout mode inside the block: the model in eval (BatchNorm uses its running
    statistics and never updates them), then only dropout modules — and torch's attention and
    transformer layers, which own theirs — back in train mode. Every module's previous mode is
    restored on exit, even after an exception.

    Raises if no dropout with p > 0 is found: MC dropout would return zero spread. Dropout
    called as F.dropout(..., training=self.training) inside a custom module is not switched:
    use nn.Dropout modules.
    """
    modules = list(model.modules())
    if not any(_dropout_rate(m) > 0 for m in modules):
        raise ValueError(f"{type(model).__name__} has no dropout layer with p > 0: MC dropout needs a model "
                         "built with dropout (e.g. model.unet.dropout or model.transformer.dropout > 0)")
    before = [m.training for m in modules]
    try:
        model.eval()
        for m in modules:
            if isinstance(m, _DROPOUT_TYPES + _ATTENTION_TYPES):
                m.training = True  # the flag only: .train() would recurse into children (e.g. a BatchNorm)
        yield model
    finally:
        for m, mode in zip(modules, before):
            m.training = mode


@contextmanager
def _evaluating(models: Sequence[nn.Module]) -> Iterator[None]:
    modes = [[m.training for m in model.modules()] for model in models]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for model, before in zip(models, modes):
            for m, mode in zip(model.modules(), before):
                m.training = mode


def _check_count(n: int, what: str) -> None:
    if n < 1:
        raise ValueError(f"{what} must be >= 1, got {n}")


def mc_dropout_predict(model: nn.Module, *inputs: Any, samples: int, **kwargs: Any) -> Prediction:
    """`samples` stochastic forward passes model(*inputs, **kwargs) with dropout on (see
    `dropout_active`), no gradients -> the mixture mean and σ (per head). For reproducible masks
    seed torch's global RNG (torch.manual_seed): dropout draws from it."""
    _check_count(samples, "samples")
    stream = _Stream()
    with dropout_active(model), torch.no_grad():
        for _ in range(samples):
            stream.add(model(*inputs, **kwargs))
    return stream.result()


def ensemble_predict(members: Sequence[nn.Module], *inputs: Any, **kwargs: Any) -> Prediction:
    """Deep ensemble: each member (trained from its own seed) in eval mode, no gradients ->
    the mixture mean and σ (per head). The members' modes are restored afterwards."""
    _check_count(len(members), "the number of ensemble members")
    stream = _Stream()
    with _evaluating(members), torch.no_grad():
        for member in members:
            stream.add(member(*inputs, **kwargs))
    return stream.result()


def _draw(out: Any, generator: Optional[torch.Generator]) -> dict[Optional[str], torch.Tensor]:
    """One sample per head: the point prediction itself, or one draw mean + σ·ε from a Gaussian."""
    draws = {}
    for name, (mean, sigma) in _heads(out).items():
        if sigma is None:
            draws[name] = mean
        else:
            eps = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
            draws[name] = mean + sigma * eps
    return draws


def _stack(draws: list[dict[Optional[str], torch.Tensor]]) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
    return _restructure({name: torch.stack([d[name] for d in draws]) for name in draws[0]})


def mc_dropout_samples(model: nn.Module, *inputs: Any, samples: int, generator: Optional[torch.Generator] = None,
                       **kwargs: Any) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
    """`samples` MC-dropout passes stacked: [samples, ...] per head — an ensemble for
    astrohpc.analysis.metrics.crps_ensemble / coverage_ensemble. A Gaussian output contributes one
    draw mean + σ·ε per pass (ε from `generator`, on the outputs' device), so the samples follow the
    predictive mixture."""
    _check_count(samples, "samples")
    with dropout_active(model), torch.no_grad():
        draws = [_draw(model(*inputs, **kwargs), generator) for _ in range(samples)]
    return _stack(draws)


def ensemble_samples(members: Sequence[nn.Module], *inputs: Any, samples_per_member: int = 1,
                     generator: Optional[torch.Generator] = None,
                     **kwargs: Any) -> Union[torch.Tensor, dict[str, torch.Tensor]]:
    """Deep ensemble as samples: [members·samples_per_member, ...] per head, member-major. A point
    member gives its prediction (repeated samples_per_member times); a Gaussian member gives
    samples_per_member draws mean + σ·ε (ε from `generator`)."""
    _check_count(len(members), "the number of ensemble members")
    _check_count(samples_per_member, "samples_per_member")
    draws = []
    with _evaluating(members), torch.no_grad():
        for member in members:
            out = member(*inputs, **kwargs)
            draws.extend(_draw(out, generator) for _ in range(samples_per_member))
    return _stack(draws)
