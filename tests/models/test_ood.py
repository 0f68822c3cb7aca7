"""The out-of-distribution flag: Ledoit–Wolf covariance, Mahalanobis distances and threshold,
the parameter envelope's reasons, and the state round-trip through a weights_only checkpoint."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from astrohpc.models.ood import MahalanobisOOD, OODFlag, ParameterEnvelope, ledoit_wolf

NAMES = ["flux", "rotation_days", "gravity"]


def _embeddings(n: int, seed: int) -> torch.Tensor:
    """[n, 4] correlated, anisotropic: std 10 along (1, 1, 0, 0)/√2, 0.1 along (1, −1, 0, 0)/√2."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 4, generator=g, dtype=torch.float64) * torch.tensor([10.0, 0.1, 1.0, 2.0], dtype=torch.float64)
    rotate = torch.eye(4, dtype=torch.float64)
    rotate[:2, :2] = torch.tensor([[1.0, 1.0], [1.0, -1.0]], dtype=torch.float64) / 2**0.5
    return z @ rotate.T + torch.tensor([5.0, -3.0, 0.0, 1.0], dtype=torch.float64)


def _params(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(800, 1600, n), rng.uniform(1, 100, n), np.full(n, 9.81)], axis=1)


def test_ledoit_wolf_matches_the_definition():
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x[:, 0] *= 5
    n, d = x.shape
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    mu = torch.trace(s) / d
    eye = torch.eye(d, dtype=torch.float64)
    # Ledoit & Wolf (2004), Lemma 3.2 onward, with ‖A‖² = tr(AAᵀ)/d, written per sample
    d2 = ((s - mu * eye) ** 2).sum() / d
    b2 = sum(((torch.outer(r, r) - s) ** 2).sum() / d for r in xc) / n**2
    delta = float(min(b2, d2) / d2)
    cov, shrinkage = ledoit_wolf(x)
    assert shrinkage == pytest.approx(delta, rel=1e-10)
    torch.testing.assert_close(cov, (1 - delta) * s + delta * mu * eye)


def test_ledoit_wolf_shrinks_isotropic_data_and_keeps_structured_data():
    g = torch.Generator().manual_seed(1)
    _, isotropic = ledoit_wolf(torch.randn(30, 20, generator=g, dtype=torch.float64))
    assert isotropic > 0.5  # the target (a multiple of I) is the truth
    _, structured = ledoit_wolf(_embeddings(5000, 2))
    assert structured < 0.05
    cov, _ = ledoit_wolf(torch.randn(10, 50, generator=g, dtype=torch.float64))  # N < D
    assert torch.linalg.eigvalsh(cov).min() > 0


def test_mahalanobis_distance_threshold_and_direction():
    train = _embeddings(4000, 3)
    ood = MahalanobisOOD.fit(train, quantile=0.99, shrinkage=0.0)
    x = _embeddings(5, 4)
    diff = x - train.mean(0)
    xc = train - train.mean(0)
    inv = torch.linalg.inv(xc.T @ xc / train.shape[0])
    torch.testing.assert_close(ood.score(x), torch.einsum("ni,ij,nj->n", diff, inv, diff).sqrt())
    assert ood.threshold == pytest.approx(float(torch.quantile(ood.score(train), 0.99)))

    held_out = _embeddings(4000, 5)
    assert ood.is_ood(held_out).double().mean() < 0.03  # ≈ 1 % false alarms
    # The same Euclidean step: harmless along the wide direction, far out along the narrow one.
    wide, narrow = torch.tensor([1.0, 1.0, 0, 0]) / 2**0.5, torch.tensor([1.0, -1.0, 0, 0]) / 2**0.5
    centre = train.mean(0)
    assert not ood.is_ood(centre + 3 * wide).item()
    assert ood.is_ood(centre + 3 * narrow).item()
    assert ood.is_ood(held_out + 3 * narrow.double()).double().mean() > 0.99
    assert ood.is_ood(torch.full((4,), float("nan"))).item()


def test_ledoit_wolf_default_and_calibration_on_held_out_data():
    train = _embeddings(300, 6)
    ood = MahalanobisOOD.fit(train)
    assert 0.0 <= ood.shrinkage <= 1.0
    threshold = ood.calibrate(_embeddings(3000, 7), 0.95)
    assert ood.threshold == threshold and ood.quantile == 0.95
    assert ood.is_ood(_embeddings(3000, 8)).double().mean() == pytest.approx(0.05, abs=0.02)
    with pytest.raises(ValueError, match="singular"):
        MahalanobisOOD.fit(train[:3], shrinkage=0.0)
    with pytest.raises(ValueError, match="columns"):
        ood.score(torch.zeros(2, 5))


def test_envelope_names_the_parameter_and_the_excess():
    env = ParameterEnvelope.fit(_params(200, 0), NAMES)
    lo, hi = env.lower.tolist(), env.upper.tolist()
    rows = np.array([[1000.0, 50.0, 9.81],  # inside
                     [hi[0] + 400.0, 50.0, 9.81],  # flux too high
                     [1000.0, lo[1] - 0.5, 12.0],  # rotation too low and a gravity never trained on
                     [float(np.float32(lo[0])), float(np.float32(hi[1])), float(np.float32(9.81))],  # float32 bounds
                     [np.nan, 50.0, 9.81]])
    inside, reasons = env.check(rows)
    assert inside.tolist() == [True, False, False, True, False]
    assert reasons[0] == "" and reasons[3] == ""
    assert reasons[1].startswith("flux = ") and "400 above the training max" in reasons[1]
    assert "rotation_days" in reasons[2] and "0.5 below the training min" in reasons[2]
    assert "gravity = 12 is 2.19 above" in reasons[2] and "constant in training" in reasons[2]
    assert reasons[4] == "flux is NaN"
    assert env.outside(rows) == [[], ["flux"], ["rotation_days", "gravity"], [], ["flux"]]
    excess = env.excess(rows)
    assert excess[1, 0].item() == pytest.approx(400.0) and excess[2, 1].item() == pytest.approx(-0.5)
    with pytest.raises(ValueError, match="NaN"):
        ParameterEnvelope.fit([[1.0, np.nan, 2.0]], NAMES)
    with pytest.raises(ValueError, match="columns"):
        env.check([[1.0, 2.0]])


def test_combined_flag_and_weights_only_round_trip():
    train_e, train_p = _embeddings(2000, 9), _params(2000, 9)
    flag = OODFlag.fit(train_e, train_p, NAMES, quantile=0.99)
    query_e = torch.stack([train_e.mean(0), train_e.mean(0) + 5 * torch.tensor([1.0, -1, 0, 0], dtype=torch.float64),
                           train_e.mean(0)])
    query_p = np.array([[1200.0, 10.0, 9.81], [1200.0, 10.0, 9.81], [2000.0, 10.0, 9.81]])
    out = flag(query_e, query_p)
    assert [o["ood"] for o in out] == [False, True, True]
    assert out[0]["outside_envelope"] == [] and out[2]["outside_envelope"] == ["flux"]
    assert out[1]["mahalanobis"] > out[1]["threshold"] > out[0]["mahalanobis"]
    assert set(out[0]) == {"ood", "mahalanobis", "threshold", "outside_envelope"}

    buffer = io.BytesIO()
    torch.save({"model": {}, "ood": flag.state_dict()}, buffer)
    buffer.seek(0)
    restored = OODFlag.from_state_dict(torch.load(buffer, weights_only=True)["ood"])
    assert restored(query_e, query_p) == out
    with pytest.raises(ValueError, match="not a OODFlag state"):
        OODFlag.from_state_dict({"kind": "OODFlag", "mahalanobis": {}})
    with pytest.raises(ValueError, match="rows"):
        flag(query_e, query_p[:2])
