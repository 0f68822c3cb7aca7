"""Globe padding, separable convolutions, channel norms, FiLM and position attention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from astrohpc.models.blocks import (
    ChannelNorm,
    FiLM,
    Pointwise,
    PositionAttention,
    SeparableConv,
    pad_across_poles,
    pad_globe,
    pad_longitude,
)

# --- padding --------------------------------------------------------------------------------------------


def _grid() -> torch.Tensor:
    """4 latitudes × 4 longitudes, value 10·row + column: every cell tells where it came from."""
    return (10 * torch.arange(4)[:, None] + torch.arange(4)[None, :]).float()


def test_pole_padding_puts_the_opposite_meridian_across_the_pole_by_hand():
    padded = pad_across_poles(_grid(), 1)
    expected = torch.tensor([[2, 3, 0, 1],  # beyond row 0: row 0 at lon + 180° (rolled by 2 of 4)
                             [0, 1, 2, 3], [10, 11, 12, 13], [20, 21, 22, 23], [30, 31, 32, 33],
                             [32, 33, 30, 31]]).float()  # beyond row 3: row 3 rolled by 2
    assert torch.equal(padded, expected)
    two = pad_across_poles(_grid()[None, None], 2)[0, 0]  # leading dims ride along
    # mirrored: the outermost padded row is the second row from the pole
    assert torch.equal(two[:2], torch.tensor([[12, 13, 10, 11], [2, 3, 0, 1]]).float())
    assert torch.equal(two[-2:], torch.tensor([[32, 33, 30, 31], [22, 23, 20, 21]]).float())
    assert torch.equal(pad_across_poles(_grid(), 0), _grid())


def test_pole_padding_continues_a_smooth_field_over_the_pole():
    """The x coordinate cos φ cos λ of the unit sphere, padded, equals cos φ' cos λ at the
    latitudes φ' beyond ±90° (φ' = ±180° − φ): the padded rows are where one walks over the pole."""
    nlat, nlon = 6, 8
    lat = torch.linspace(-90 + 15, 90 - 15, nlat, dtype=torch.float64)  # cell centres, 30° apart
    lon = torch.arange(nlon, dtype=torch.float64) * 360 / nlon
    field = lambda phi: torch.cos(torch.deg2rad(phi))[:, None] * torch.cos(torch.deg2rad(lon))[None, :]  # noqa: E731
    padded = pad_across_poles(field(lat), 2)
    beyond = torch.cat([torch.tensor([-90 - 45.0, -90 - 15.0]), lat, torch.tensor([90 + 15.0, 90 + 45.0])])
    torch.testing.assert_close(padded, field(beyond.double()))
    # zero or replicate padding would not: the row beyond the pole differs from the polar row
    assert not torch.allclose(padded[0], padded[2])


def test_longitude_padding_wraps_and_globe_padding_fills_the_corners():
    x = _grid()
    assert torch.equal(pad_longitude(x, 1)[:, 0], x[:, -1])
    assert torch.equal(pad_longitude(x, 1)[:, -1], x[:, 0])
    g = pad_globe(x, 1, 1)
    assert g.shape == (6, 6)
    assert torch.equal(g, pad_longitude(pad_across_poles(x, 1), 1))
    assert g[0, 0].item() == 1.0  # beyond row 0 (rolled: 2, 3, 0, 1), wrapped west of lon 0: lon 3 -> 1


def test_padding_refuses_impossible_grids():
    with pytest.raises(ValueError, match="even number of longitudes"):
        pad_across_poles(torch.zeros(4, 5), 1)
    with pytest.raises(ValueError, match="exceeds the 4 latitudes"):
        pad_across_poles(torch.zeros(4, 4), 5)
    with pytest.raises(ValueError, match="exceeds the 4 longitudes"):
        pad_longitude(torch.zeros(4, 4), 5)


# --- separable convolution ---------------------------------------------------------------------------------


def _reference_separable(conv: SeparableConv, x: torch.Tensor) -> torch.Tensor:
    """The same operation written plainly: each time step's [C, L, lat, lon] through a depthwise
    nn.functional.conv3d, then each time axis through a depthwise conv1d, then a 1×1 mix."""
    b, c, t1, t2, nz, ny, nx = x.shape
    kz, ky, kx = conv.kernel
    h = torch.empty_like(x)
    for i in range(t1):
        for j in range(t2):
            step = pad_globe(x[:, :, i, j], ky // 2, kx // 2)
            h[:, :, i, j] = F.conv3d(step, conv.spatial, padding=(kz // 2, 0, 0), groups=c)
    weights = iter(conv.temporal)
    for axis, k in enumerate(conv.time_kernels):
        if k == 1:
            continue
        w = next(weights).reshape(c, 1, k)
        moved = h.movedim(2 + axis, -1)  # time axis last
        flat = moved.reshape(-1, moved.shape[-1]).reshape(b, c, -1, moved.shape[-1]).transpose(1, 2)
        out = F.conv1d(flat.reshape(-1, c, moved.shape[-1]), w, padding=k // 2, groups=c)
        h = out.reshape(b, -1, c, moved.shape[-1]).transpose(1, 2).reshape(moved.shape).movedim(-1, 2 + axis)
    return conv.pointwise(h)


@pytest.mark.parametrize("time_kernels, times",
                         [((3, 3), (3, 2)), ((3, 1), (4, 1)), ((1, 3), (1, 3)), ((1, 1), (1, 1))])
def test_separable_conv_matches_a_plain_reference(time_kernels, times):
    torch.manual_seed(0)
    conv = SeparableConv(3, 5, (3, 3, 3), time_kernels)
    x = torch.randn(2, 3, *times, 4, 6, 8, dtype=torch.float64)
    conv = conv.double()
    out = conv(x)
    assert out.shape == (2, 5, *times, 4, 6, 8)
    torch.testing.assert_close(out, _reference_separable(conv, x))
    assert len(conv.temporal) == sum(k > 1 for k in time_kernels)  # a kernel of 1 has no parameters


def test_separable_conv_works_without_time_axes_and_sees_across_the_date_line():
    torch.manual_seed(0)
    conv = SeparableConv(2, 2, (1, 3, 3), time_kernels=())
    x = torch.zeros(1, 2, 1, 6, 8)
    x[0, :, 0, 3, 0] = 1.0  # a point at lon 0
    base = conv(torch.zeros_like(x))
    reach = (conv(x) - base).abs().sum(dim=(0, 1, 2))
    assert reach[3, 7] > 0 and reach[3, 1] > 0 and reach[3, 4] == 0
    # over the pole: a point on the first row reaches the first row at lon + 180°
    y = torch.zeros(1, 2, 1, 6, 8)
    y[0, :, 0, 0, 0] = 1.0
    reach = (conv(y) - base).abs().sum(dim=(0, 1, 2))
    assert reach[0, 4] > 0 and reach[0, 3] > 0 and reach[0, 2] == 0
    with pytest.raises(ValueError, match="kernel must be odd"):
        SeparableConv(2, 2, (2, 3, 3))
    with pytest.raises(ValueError, match="time axes"):
        conv(torch.zeros(1, 2, 1, 1, 6, 8))


def test_pointwise_mixes_channels_at_every_position():
    torch.manual_seed(0)
    p = Pointwise(3, 4)
    x = torch.randn(2, 3, 5, 6, 7)
    expected = torch.einsum("oc,bcxyz->boxyz", p.conv.weight[:, :, 0], x) + p.conv.bias[None, :, None, None, None]
    torch.testing.assert_close(p(x), expected)


# --- normalisation, FiLM, attention --------------------------------------------------------------------


def test_channel_norm_normalises_each_channel_and_converts_to_sync_batchnorm():
    torch.manual_seed(0)
    x = 3 + 2 * torch.randn(4, 5, 2, 3, 6, 8)
    out = ChannelNorm(5, "batch")(x)
    torch.testing.assert_close(out.mean(dim=(0, 2, 3, 4, 5)), torch.zeros(5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=(0, 2, 3, 4, 5), correction=0), torch.ones(5), atol=1e-3, rtol=0)
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(ChannelNorm(5, "batch"))
    assert isinstance(synced.norm, nn.SyncBatchNorm)
    torch.testing.assert_close(synced(x), out)  # no process group: plain batch statistics
    assert ChannelNorm(8, "group")(x[:, :4].repeat(1, 2, 1, 1, 1, 1)).shape == (4, 8, 2, 3, 6, 8)
    assert torch.equal(ChannelNorm(5, "none")(x), x)
    with pytest.raises(ValueError, match="expected one of"):
        ChannelNorm(5, "layer")
    with pytest.raises(ValueError, match="do not split"):
        ChannelNorm(12, "group")


def test_film_scales_and_shifts_per_sample_and_channel():
    film = FiLM(2, 3)
    x = torch.randn(2, 3, 4, 5)
    with torch.no_grad():
        film.proj.weight.zero_()
        film.proj.bias.zero_()
    assert torch.equal(film(x, torch.randn(2, 2)), x)  # zero conditioning layer: identity
    with torch.no_grad():
        film.proj.weight[0, 0] = 1.0  # γ_0 = cond_0
        film.proj.bias[3 + 2] = 0.5  # β_2 = 0.5
    cond = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    out = film(x, cond)
    torch.testing.assert_close(out[0, 0], 2 * x[0, 0])
    torch.testing.assert_close(out[1, 0], torch.zeros_like(x[1, 0]))
    torch.testing.assert_close(out[:, 2], x[:, 2] + 0.5)
    with pytest.raises(ValueError, match="conditioning must be"):
        film(x, torch.randn(3, 2))


def test_position_attention_is_equivariant_to_permuting_positions():
    torch.manual_seed(0)
    attn = PositionAttention(8, heads=2).eval()
    x = torch.randn(2, 8, 3, 4, 6)
    out = attn(x)
    assert out.shape == x.shape
    torch.testing.assert_close(attn(x.roll(2, dims=-1)), out.roll(2, dims=-1), rtol=1e-5, atol=1e-5)
    # attention mixes positions: a change at one cell changes the output everywhere
    y = x.clone()
    y[:, :, 0, 0, 0] += 5
    assert (attn(y) - out)[:, :, 2, 3, 5].abs().max() > 0
    with pytest.raises(ValueError, match="heads"):
        PositionAttention(6, heads=4)
    assert not math.isnan(out.sum().item())
