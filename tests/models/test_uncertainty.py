"""Uncertainty heads: the Gaussian head and NLL, MC dropout (dropout on, BatchNorm off), and the
deep-ensemble mixture, on small modules whose answers are known in closed form."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm
from torch import nn

from astrohpc.models.uncertainty import (
    GaussianHead,
    GaussianPrediction,
    dropout_active,
    ensemble_predict,
    ensemble_samples,
    gaussian_mixture,
    gaussian_nll,
    mc_dropout_predict,
    mc_dropout_samples,
)


class ConvNet(nn.Module):
    """[B, 2, 4, 6] -> [B, 3, 4, 6] through BatchNorm and dropout: a miniature U-Net block."""

    def __init__(self, p: float = 0.3):
        super().__init__()
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.norm = nn.BatchNorm2d(8)
        self.drop = nn.Dropout2d(p)
        self.out = nn.Conv2d(8, 3, 1)
        self.seen_modes: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.seen_modes.append((self.norm.training, self.drop.training))
        return self.out(self.drop(torch.relu(self.norm(self.conv(x)))))


class Fixed(nn.Module):
    """A member that always predicts N(mean, sigma²) (sigma None: a point prediction)."""

    def __init__(self, mean, sigma=None):
        super().__init__()
        self.m = torch.as_tensor(mean, dtype=torch.float64)
        self.s = None if sigma is None else torch.as_tensor(sigma, dtype=torch.float64)

    def forward(self, x):
        m = self.m.expand(x.shape[0], *self.m.shape)
        return m if self.s is None else (m, self.s.expand_as(m))


def test_gaussian_head_shapes_positivity_and_start():
    head = GaussianHead(5, 3, channel_dim=1, sigma_floor=0.01, init_sigma=1.0)
    pred = head(torch.randn(2, 5, 4, 6))
    assert isinstance(pred, GaussianPrediction)
    assert pred.mean.shape == pred.sigma.shape == (2, 3, 4, 6)
    torch.testing.assert_close(pred.sigma, torch.ones_like(pred.sigma))
    # the mean is a 1×1 convolution
    conv = F.conv2d(torch.ones(1, 5, 1, 1), head.mean.weight[:, :, None, None], head.mean.bias)
    torch.testing.assert_close(head(torch.ones(1, 5, 1, 1)).mean, conv)
    tokens = GaussianHead(16, 7, channel_dim=-1)(torch.randn(2, 9, 16))
    assert tokens.mean.shape == (2, 9, 7)
    with torch.no_grad():
        head.raw_sigma.bias.fill_(-50.0)  # softplus ≈ 0: the floor holds
    assert head(torch.randn(2, 5, 4, 6)).sigma.min() >= 0.01
    with pytest.raises(ValueError, match="sigma_floor"):
        GaussianHead(5, 3, sigma_floor=0.0)


def test_gaussian_nll_matches_torch_and_scipy():
    g = torch.Generator().manual_seed(0)
    mean, target = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    sigma = torch.rand(3, 4, 5, generator=g, dtype=torch.float64) + 0.1
    full = gaussian_nll(mean, sigma, target, reduction="none")
    torch.testing.assert_close(full, torch.as_tensor(-norm.logpdf(target, mean, sigma)))
    torch.testing.assert_close(full, F.gaussian_nll_loss(mean, target, sigma**2, full=True, eps=0, reduction="none"))
    torch.testing.assert_close(gaussian_nll(mean, sigma, target, full=False),
                               F.gaussian_nll_loss(mean, target, sigma**2, eps=0))
    assert gaussian_nll(mean, sigma, target, reduction="sum") == pytest.approx(full.sum().item())
    area = torch.rand(4, 5, generator=g, dtype=torch.float64)  # [lat, lon]
    weighted = gaussian_nll(mean, sigma, target, weights=area)
    assert weighted.item() == pytest.approx(((full * area).sum() / (3 * area.sum())).item())
    assert full[0, 0, 0] - gaussian_nll(mean, sigma, target, reduction="none", full=False)[0, 0, 0] == \
        pytest.approx(0.5 * math.log(2 * math.pi))


def test_head_trained_with_the_nll_learns_the_noise_level():
    torch.manual_seed(0)
    # target = 2 + 0.5 ε wherever feature 0 is 1, and −1 + 2 ε where feature 1 is 1
    features = torch.zeros(4000, 2)
    features[:2000, 0], features[2000:, 1] = 1.0, 1.0
    target = torch.cat([2 + 0.5 * torch.randn(2000, 1), -1 + 2.0 * torch.randn(2000, 1)])
    head = GaussianHead(2, 1, channel_dim=-1)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        loss = gaussian_nll(*head(features), target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = head(torch.eye(2))
    torch.testing.assert_close(pred.mean[:, 0], torch.tensor([2.0, -1.0]), atol=0.1, rtol=0)
    torch.testing.assert_close(pred.sigma[:, 0], torch.tensor([0.5, 2.0]), atol=0.1, rtol=0)


def test_dropout_active_switches_dropout_only_and_restores_every_mode():
    net = ConvNet().train()
    with dropout_active(net):
        assert not net.training and not net.norm.training and net.drop.training
    assert all(m.training for m in net.modules())
    net.eval()
    with pytest.raises(RuntimeError), dropout_active(net):
        raise RuntimeError("boom")
    assert not any(m.training for m in net.modules())
    with pytest.raises(ValueError, match="no dropout layer"):
        with dropout_active(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.0))):
            pass


def test_mc_dropout_keeps_batchnorm_frozen_and_gives_spread():
    net = ConvNet().train()
    x = torch.randn(2, 2, 4, 6)
    net(x)  # one training pass so the running statistics are not the defaults
    stats = (net.norm.running_mean.clone(), net.norm.running_var.clone(), net.norm.num_batches_tracked.clone())
    net.seen_modes.clear()
    pred = mc_dropout_predict(net, x, samples=8)
    assert net.seen_modes == [(False, True)] * 8
    for before, after in zip(stats, (net.norm.running_mean, net.norm.running_var, net.norm.num_batches_tracked)):
        torch.testing.assert_close(before, after)
    assert pred.mean.shape == pred.sigma.shape == (2, 3, 4, 6)
    assert pred.sigma.min() >= 0 and pred.sigma.mean() > 0
    assert not pred.mean.requires_grad
    assert net.training  # mode given back


def test_mc_dropout_moments_of_a_known_dropout():
    # Dropout(p) on ones: each output is 0 or 1/(1−p): mean 1, variance p/(1−p).
    p = 0.25
    model = nn.Sequential(nn.Dropout(p))
    torch.manual_seed(1)
    pred = mc_dropout_predict(model, torch.ones(400), samples=400)
    assert pred.mean.mean().item() == pytest.approx(1.0, abs=0.01)
    assert pred.sigma.square().mean().item() == pytest.approx(p / (1 - p), rel=0.05)


def test_streamed_mixture_equals_the_stacked_samples():
    net = ConvNet()
    x = torch.randn(2, 2, 4, 6)
    torch.manual_seed(7)
    streamed = mc_dropout_predict(net, x, samples=6)
    torch.manual_seed(7)
    samples = mc_dropout_samples(net, x, samples=6)
    assert samples.shape == (6, 2, 3, 4, 6)
    stacked = gaussian_mixture(samples)
    torch.testing.assert_close(streamed.mean, stacked.mean)
    torch.testing.assert_close(streamed.sigma, stacked.sigma, rtol=1e-4, atol=1e-6)


def test_mc_dropout_with_a_gaussian_head_adds_aleatoric_and_epistemic_variance():
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            return {"datacube": {"mean": self.drop(x), "sigma": torch.full_like(x, 0.3)}, "scalar": x.sum(-1)}

    model, x = Noisy(), torch.ones(3, 5)
    torch.manual_seed(3)
    pred = mc_dropout_predict(model, x, samples=10)
    torch.manual_seed(3)
    means = torch.stack([model.drop.train()(x) for _ in range(10)])
    expected = gaussian_mixture(means, torch.full_like(means, 0.3))
    torch.testing.assert_close(pred["datacube"].mean, expected.mean)
    torch.testing.assert_close(pred["datacube"].sigma, expected.sigma)
    assert (pred["datacube"].sigma >= 0.3).all()
    torch.testing.assert_close(pred["scalar"].sigma, torch.zeros(3))  # no dropout on that head
    draws = mc_dropout_samples(model, x, samples=4, generator=torch.Generator().manual_seed(0))
    assert set(draws) == {"datacube", "scalar"} and draws["datacube"].shape == (4, 3, 5)


def test_transformer_dropout_is_switched_on_despite_the_eval_fast_path():
    layer = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 32, dropout=0.2, batch_first=True), 2,
                                  enable_nested_tensor=False).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        torch.testing.assert_close(layer(x), layer(x))  # eval: deterministic
    assert mc_dropout_predict(layer, x, samples=4).sigma.mean() > 0.01
    assert not any(m.training for m in layer.modules())


def test_deep_ensemble_is_the_gaussian_mixture():
    members = [Fixed([0.0, 1.0], [1.0, 0.5]), Fixed([2.0, 1.0], [1.0, 0.5]), Fixed([4.0, 1.0], [2.0, 0.5])]
    for m in members:
        m.train()
    pred = ensemble_predict(members, torch.zeros(1, 1))
    torch.testing.assert_close(pred.mean, torch.tensor([[2.0, 1.0]], dtype=torch.float64))
    # variance = mean σ² + var of means (1/M): (1 + 1 + 4)/3 + 8/3 = 14/3 ; 0.25 + 0
    torch.testing.assert_close(pred.sigma, torch.tensor([[math.sqrt(14 / 3), 0.5]], dtype=torch.float64))
    assert all(m.training for m in members)
    point = ensemble_predict([Fixed([1.0]), Fixed([3.0])], torch.zeros(1, 1))
    torch.testing.assert_close(point.sigma, torch.tensor([[1.0]], dtype=torch.float64))
    with pytest.raises(ValueError, match="mix Gaussian and point"):
        ensemble_predict([Fixed([1.0]), Fixed([1.0], [1.0])], torch.zeros(1, 1))


def test_ensemble_samples_follow_the_mixture():
    members = [Fixed([0.0], [1.0]), Fixed([4.0], [1.0])]
    draws = ensemble_samples(members, torch.zeros(1, 1), samples_per_member=20000,
                             generator=torch.Generator().manual_seed(0))
    assert draws.shape == (40000, 1, 1)
    assert draws[:20000].mean().item() == pytest.approx(0.0, abs=0.05)
    assert draws.std(correction=0).item() == pytest.approx(math.sqrt(1 + 4), rel=0.02)
    points = ensemble_samples([Fixed([1.0]), Fixed([2.0])], torch.zeros(1, 1), samples_per_member=2)
    torch.testing.assert_close(points[:, 0, 0], torch.tensor([1.0, 1.0, 2.0, 2.0], dtype=torch.float64))
