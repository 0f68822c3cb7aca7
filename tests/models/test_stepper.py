"""The emulator's stepper on real cube data: channel <-> state, normalisation, one step and an unroll."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from astrohpc.data.cube import read_meta
from astrohpc.data.dataset import WindowDataset
from astrohpc.models.channels import ChannelTable, Normalizer
from astrohpc.models.stepper import EmulatorStepper, static_normalization
from astrohpc.physics.grid import SphereGrid


class ZeroTendency(nn.Module):
    """Δ = 0: the stepper must then return persistence (plus the given forcings)."""

    def __init__(self, out_channels: int):
        super().__init__()
        self.out_channels = out_channels
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, z, params):
        return self.scale * z[:, : self.out_channels]


def _stepper(meta, net_factory):
    table = ChannelTable.from_meta(meta)
    forcing = table.index("rsdt")
    predicted = [i for i in range(len(table)) if i not in forcing]
    mean, std = static_normalization(meta, ["sg", "lsm"])
    return EmulatorStepper(net_factory(len(predicted)), table, predicted, forcing, Normalizer.from_meta(meta),
                           SphereGrid.from_meta(meta), 86400.0, ["sg", "lsm"], mean, std)


@pytest.fixture(scope="module")
def batch(physics_cube):
    ds = WindowDataset(physics_cube, 1, 1, static=True)
    items = [ds[0], ds[len(ds) - 1]]
    return {k: torch.stack([it[k] for it in items]) for k in ("input", "target", "params", "static")}


def test_state_round_trip_and_shapes(physics_cube, batch):
    meta = read_meta(physics_cube)
    table = ChannelTable.from_meta(meta)
    x = batch["input"][:, 0]
    state = table.to_state(x)
    assert state["ta"].shape == (2, 10, 32, 64) and state["ps"].shape == (2, 32, 64)
    torch.testing.assert_close(table.from_state(state, torch.zeros_like(x)), x, rtol=0, atol=0)
    norm = Normalizer.from_meta(meta)
    torch.testing.assert_close(norm.denormalize(norm.normalize(x.double())), x.double(), rtol=1e-12, atol=1e-9)


def test_zero_tendency_is_persistence_with_the_next_forcing(physics_cube, batch):
    meta = read_meta(physics_cube)
    stepper = _stepper(meta, ZeroTendency)
    x, target = batch["input"][:, 0], batch["target"][:, 0]
    forcing_next = target[:, stepper.forcing]
    nxt = stepper(x, forcing_next, batch["params"], batch["static"], correct=False)
    torch.testing.assert_close(nxt[:, stepper.predicted], x[:, stepper.predicted])
    torch.testing.assert_close(nxt[:, stepper.forcing], forcing_next)
    assert stepper.in_channels == stepper.net_input(x, forcing_next, batch["static"]).shape[1]


def test_the_tendency_is_scaled_by_the_step_change_std(physics_cube, batch):
    meta = read_meta(physics_cube)

    class UnitTendency(ZeroTendency):
        def forward(self, z, params):
            return torch.ones_like(z[:, : self.out_channels])

    stepper = _stepper(meta, UnitTendency)
    x, target = batch["input"][:, 0], batch["target"][:, 0]
    nxt = stepper(x, target[:, stepper.forcing], batch["params"], batch["static"], correct=False)
    diff_std = torch.as_tensor(meta.stats["diffs"]["std"], dtype=torch.float32)
    c = meta.channel("ps")
    torch.testing.assert_close(nxt[:, c], x[:, c] + diff_std[c])
    # a channel that never changed in the data (precipitation of these cold starts) is kept
    p = meta.channel("pr")
    assert meta.stats["diffs"]["std"][p] == 0
    torch.testing.assert_close(nxt[:, p], x[:, p])


def test_unroll_feeds_predictions_back(physics_cube, batch):
    meta = read_meta(physics_cube)
    torch.manual_seed(0)
    stepper = _stepper(meta, lambda c: nn.Sequential())  # placeholder, replaced below

    class Conv(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, 3, padding=1)

        def forward(self, z, params):
            return 0.01 * self.conv(z)

    stepper.net = Conv(stepper.in_channels, len(stepper.predicted))
    x0 = batch["input"][:, 0]
    forcings = batch["target"][:, :, stepper.forcing].repeat(1, 3, 1, 1, 1)
    traj = stepper.unroll(x0, forcings, batch["params"], batch["static"], correct=False)
    assert traj.shape == (2, 3, x0.shape[1], 32, 64) and torch.isfinite(traj).all()
    second = stepper(traj[:, 0], forcings[:, 1], batch["params"], batch["static"], correct=False)
    torch.testing.assert_close(traj[:, 1], second)
    assert not torch.allclose(traj[:, 1], traj[:, 0])
    assert np.isfinite(stepper.step_s)
