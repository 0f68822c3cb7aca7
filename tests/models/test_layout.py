"""Cube channels <-> datacube tensor [B, V, Tc, Tg, L, lat, lon]: exact both ways, on a hand-made
table and on the real ExoPlaSim cube's channels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from astrohpc.data.cube import read_meta
from astrohpc.data.dataset import WindowDataset
from astrohpc.models.layout import DatacubeLayout

NAN = math.nan
# ts (2-D), ta on three σ levels, ps (2-D), ua on the same levels given bottom -> top
NAMES = ["ts", "ta", "ta", "ta", "ps", "ua", "ua", "ua"]
LEVELS = [NAN, 0.1, 0.5, 0.9, NAN, 0.9, 0.5, 0.1]


def test_hand_made_table_places_every_channel():
    layout = DatacubeLayout.from_channels(NAMES, LEVELS)
    assert layout.variables == ("ts", "ta", "ps", "ua")
    assert layout.levels == (0.1, 0.5, 0.9) and layout.n_levels == 3 and layout.n_channels == 8
    assert layout.surface_level == 2  # the largest σ: nearest the surface
    assert layout.is_3d("ta") and not layout.is_3d("ps")
    assert layout.mask.tolist() == [[False, False, True], [True, True, True], [False, False, True], [True, True, True]]
    x = torch.arange(8.0)[None, :, None, None].expand(2, 8, 4, 6)  # channel c holds the value c
    cube = layout.to_cube(x)
    assert cube.shape == (2, 4, 1, 1, 3, 4, 6)
    column = cube[0, :, 0, 0, :, 0, 0]
    assert column.tolist() == [[0, 0, 0], [1, 2, 3], [0, 0, 4], [7, 6, 5]]  # ua matched by level value
    assert torch.equal(layout.cube_mask().expand_as(cube)[0, :, 0, 0, :, 0, 0], torch.as_tensor(layout.mask))
    assert (cube[~layout.cube_mask().expand_as(cube)] == 0).all()  # padding is zeros


@pytest.mark.parametrize("shape", [(2, 8, 4, 6), (2, 3, 8, 4, 6), (2, 3, 2, 8, 4, 6)])
def test_round_trip_is_exact_for_every_rank_and_ignores_the_padding(shape):
    torch.manual_seed(0)
    layout = DatacubeLayout.from_channels(NAMES, LEVELS)
    x = torch.randn(shape)
    cube = layout.to_cube(x)
    time_axes = len(shape) - 4
    assert cube.shape[2:4] == [(1, 1), (shape[1], 1), shape[1:3]][time_axes]
    assert torch.equal(layout.from_cube(cube, time_axes=time_axes), x)
    noisy = cube + 100 * (~layout.cube_mask()).float()  # a model writing into the padding
    assert torch.equal(layout.from_cube(noisy, time_axes=time_axes), x)
    assert layout.from_cube(cube).ndim == 6  # by default both time axes are kept


def test_surface_only_and_levels_only_layouts():
    surface = DatacubeLayout.from_channels(["ts", "ps", "pr"], [NAN] * 3)
    assert surface.n_levels == 1 and surface.levels == () and surface.mask.all()
    x = torch.randn(2, 3, 4, 6)
    assert surface.to_cube(x).shape == (2, 3, 1, 1, 1, 4, 6)
    assert torch.equal(surface.from_cube(surface.to_cube(x), time_axes=0), x)
    columns = DatacubeLayout.from_channels(["ta"] * 3 + ["ua"] * 3, [0.2, 0.5, 0.8] * 2)
    assert columns.mask.all() and columns.n_levels == 3
    y = torch.randn(2, 6, 4, 6)
    assert torch.equal(columns.from_cube(columns.to_cube(y), time_axes=0), y)
    # 2-D fields put on 3 levels sit at the surface (the largest sigma), the rest is padding
    lifted = surface.on_levels([0.2, 0.5, 0.8])
    cube = lifted.to_cube(x)
    assert cube.shape == (2, 3, 1, 1, 3, 4, 6)
    assert torch.equal(cube[:, :, 0, 0, 2], x) and not cube[:, :, :, :, :2].any()
    assert torch.equal(lifted.from_cube(cube, time_axes=0), x)
    with pytest.raises(ValueError, match="without levels"):
        columns.on_levels([0.1])


def test_layout_errors_name_the_problem():
    with pytest.raises(ValueError, match="different levels"):
        DatacubeLayout.from_channels(["ta", "ta", "ua", "ua"], [0.1, 0.9, 0.1, 0.5])
    with pytest.raises(ValueError, match="repeats a level"):
        DatacubeLayout.from_channels(["ta", "ta"], [0.1, 0.1])
    with pytest.raises(ValueError, match="either 2-D"):
        DatacubeLayout.from_channels(["ta", "ta"], [0.1, NAN])
    layout = DatacubeLayout.from_channels(NAMES, LEVELS)
    with pytest.raises(ValueError, match="7 channels"):
        layout.to_cube(torch.zeros(1, 7, 4, 6))
    with pytest.raises(ValueError, match="cannot drop time axes"):
        layout.from_cube(torch.zeros(1, 4, 2, 1, 3, 4, 6), time_axes=0)
    with pytest.raises(ValueError, match="expected a datacube"):
        layout.from_cube(torch.zeros(1, 4, 1, 1, 2, 4, 6))
    with pytest.raises(KeyError, match="no variable"):
        layout.is_3d("hus")


def test_round_trip_on_the_real_cube_channels(physics_cube):
    """Every channel of the converted ExoPlaSim cube (15 surface fields, 6 variables on 10 σ levels)
    lands on its (variable, level) cell and comes back bit for bit."""
    meta = read_meta(physics_cube)
    layout = DatacubeLayout.from_meta(meta)
    assert layout.n_channels == len(meta.variables) == 75
    assert layout.n_variables == 21 and layout.n_levels == 10
    assert int(layout.mask.sum()) == 75
    sigma = np.array(layout.levels)
    assert layout.surface_level == 9 and sigma[9] == sigma.max()  # σ top -> bottom: the last level
    ds = WindowDataset(physics_cube, 2, 1, normalize=True)
    x = torch.stack([ds[i]["input"] for i in range(3)])  # [3, 2, 75, 32, 64] real windows
    cube = layout.to_cube(x)
    assert cube.shape == (3, 21, 2, 1, 10, 32, 64)
    assert torch.equal(layout.from_cube(cube, time_axes=1), x)
    ta = layout.variables.index("ta")
    for level in (0, 4, 9):
        channel = meta.channel("ta", layout.levels[level])
        assert torch.equal(cube[:, ta, :, 0, level], x[:, :, channel])
    ts = layout.variables.index("ts")
    assert torch.equal(cube[:, ts, :, 0, 9], x[:, :, meta.channel("ts")])
    assert (cube[:, ts, :, :, :9] == 0).all()
    # a variable selection gives the channels WindowDataset(variables=...) yields, in its order
    some = DatacubeLayout.from_meta(meta, ["ts", "ta"])
    picked = WindowDataset(physics_cube, 1, 0, variables=["ts", "ta"])
    assert some.n_channels == len(picked.channel_names) == 11
    assert torch.equal(some.from_cube(some.to_cube(picked[0]["input"][None]), time_axes=1), picked[0]["input"][None])
