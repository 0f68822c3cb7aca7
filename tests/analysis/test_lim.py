"""The linear inverse model baseline (astrohpc/analysis/lim.py) on a system it can represent
exactly: x_{t+1} = x_t + A·x_t + B·f_{t+1} in a few spatial patterns."""

from __future__ import annotations

import numpy as np

from astrohpc.analysis.lim import LinearInverseModel


def test_lim_recovers_a_linear_system_in_a_few_patterns():
    rng = np.random.default_rng(0)
    lat, lon, n = 6, 8, 400
    patterns = rng.normal(size=(3, 2, lat, lon))  # 3 patterns of a 2-channel state
    f_pattern = rng.normal(size=(1, 1, lat, lon))
    a = np.array([[-0.2, 0.1, 0.0], [0.0, -0.1, 0.05], [0.02, 0.0, -0.3]])
    b = np.array([0.5, -0.2, 0.1])
    c = rng.normal(size=3)
    xs, fs, ys = [], [], []
    for _ in range(n):
        f = rng.normal()
        c_next = c + a @ c + b * f
        xs.append(np.tensordot(c, patterns, 1))
        ys.append(np.tensordot(c_next, patterns, 1))
        fs.append(f * f_pattern[0])
        c = c_next + 0.3 * rng.normal(size=3)  # kicks keep the states spread
    xs, fs, ys = map(np.array, (xs, fs, ys))
    params = np.zeros((n, 1))
    area = np.ones((lat, lon))
    lim = LinearInverseModel(components=3, forcing_components=1, alpha=1e-8).fit(xs, fs, params, ys, area)
    assert lim.explained() > 0.999
    pred = lim.step(xs[:50], fs[:50], params[:50])
    np.testing.assert_allclose(pred, ys[:50], atol=1e-6 * np.abs(ys).max())
    # persistence is far worse on the same pairs
    assert np.abs(xs[:50] - ys[:50]).max() > 1e3 * np.abs(pred - ys[:50]).max()
