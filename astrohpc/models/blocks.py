"""Building blocks of convolutional surrogates on a latitude–longitude globe.

Tensors are channels-first with the horizontal grid last: [B, C, ..., lat, lon], latitude
south -> north (or north -> south: the padding is symmetric), longitude increasing over a
full circle. On a sphere the grid continues in both directions:

- longitude is periodic: the cells beyond 360° are those after 0° (`pad_longitude`);
- latitude continues across a pole: walking north past the north pole one arrives on the
  meridian at lon + 180°, walking south again (`pad_across_poles`). Zero or replicate padding
  would make the polar rows an artificial wall.

Also here: a depthwise-separable convolution factorised over any number of time axes
(`SeparableConv`), a 1×1 convolution (`Pointwise`) and a channel normalisation (`ChannelNorm`,
which `torch.nn.SyncBatchNorm.convert_sync_batchnorm` converts) for any trailing shape,
feature-wise linear modulation by a conditioning vector (`FiLM`), and self-attention over every
position (`PositionAttention`). None of them knows about units, cubes or training.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "group", "none")


def pad_longitude(x: torch.Tensor, n: int) -> torch.Tensor:
    """[..., lat, lon] -> [..., lat, lon + 2n]: `n` cells on each side, wrapped around the circle."""
    if n == 0:
        return x
    if n > x.shape[-1]:
        raise ValueError(f"longitude padding {n} exceeds the {x.shape[-1]} longitudes of the grid")
    return torch.cat([x[..., -n:], x, x[..., :n]], dim=-1)


def pad_across_poles(x: torch.Tensor, n: int) -> torch.Tensor:
    """[..., lat, lon] -> [..., lat + 2n, lon]: `n` rows beyond each pole, continued over the pole.

    Row k beyond a pole (k = 1 nearest) is row k − 1 from that pole, rolled by nlon/2 (the
    meridian at lon + 180°): the order of the rows is mirrored, the longitudes rotated half a
    turn. The value is continued as a scalar: a wind component changes sign over the pole,
    which learned features need not respect. nlon must be even (the opposite meridian is then a
    grid meridian).
    """
    if n == 0:
        return x
    nlat, nlon = x.shape[-2:]
    if nlon % 2:
        raise ValueError(f"padding across the poles needs an even number of longitudes (the meridian "
                         f"at lon + 180° must be on the grid), got {nlon}")
    if n > nlat:
        raise ValueError(f"latitude padding {n} exceeds the {nlat} latitudes of the grid")
    first = x[..., :n, :].flip(-2).roll(nlon // 2, dims=-1)  # beyond row 0, outermost first
    last = x[..., -n:, :].flip(-2).roll(nlon // 2, dims=-1)  # beyond the last row, nearest first
    return torch.cat([first, x, last], dim=-2)


def pad_globe(x: torch.Tensor, lat: int, lon: int) -> torch.Tensor:
    """[..., nlat, nlon] -> [..., nlat + 2·lat, nlon + 2·lon]: across the poles, then around in
    longitude (so the corner cells are the wrapped continuation of the over-the-pole rows)."""
    return pad_longitude(pad_across_poles(x, lat), lon)


class Pointwise(nn.Module):
    """[B, C_in, ...] -> [B, C_out, ...]: a 1×1 convolution (a linear map of the channels at every position)."""

    def __init__(self, channels_in: int, channels_out: int, bias: bool = True):
        super().__init__()
        self.channels_out = channels_out
        self.conv = nn.Conv1d(channels_in, channels_out, kernel_size=1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x.reshape(x.shape[0], x.shape[1], -1))
        return out.view(x.shape[0], self.channels_out, *x.shape[2:])


def _odd(kernel: int, what: str) -> int:
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"{what} kernel must be odd and >= 1 (a centred 'same' convolution), got {kernel}")
    return kernel


class SeparableConv(nn.Module):
    """Depthwise-separable convolution on [B, C_in, *time, level, lat, lon] -> [B, C_out, *time, level, lat, lon].

    Three factors, each cheap: a depthwise 3-D convolution over (level, lat, lon) — one kernel
    per channel, shared by every time step; then a depthwise 1-D convolution over each time axis
    (kernel 1: skipped); then a pointwise (1×1) convolution mixing the channels. Padding keeps
    every size: across the poles and around in longitude (`pad_globe`), zeros beyond the top and
    bottom level and beyond the ends of each time axis (real boundaries).

    kernel: (level, lat, lon) sizes, odd. time_kernels: one odd size per time axis.
    """

    def __init__(self, channels_in: int, channels_out: int, kernel: Sequence[int] = (3, 3, 3),
                 time_kernels: Sequence[int] = (3, 3)):
        super().__init__()
        if len(kernel) != 3:
            raise ValueError(f"kernel must give (level, lat, lon) sizes, got {tuple(kernel)}")
        self.kernel = tuple(_odd(k, "spatial") for k in kernel)
        self.time_kernels = tuple(_odd(k, "time") for k in time_kernels)
        self.channels_in, self.channels_out = channels_in, channels_out
        self.spatial = nn.Parameter(torch.empty(channels_in, 1, *self.kernel))
        # one depthwise kernel per time axis; size-1 kernels are skipped, so they get no parameter
        self.temporal = nn.ParameterList([nn.Parameter(torch.empty(channels_in, 1, 1, k, 1))
                                          for k in self.time_kernels if k > 1])
        self.pointwise = Pointwise(channels_in, channels_out)
        self.reset_depthwise()

    def reset_depthwise(self) -> None:
        # fan-in of a depthwise kernel is its own size: Kaiming-uniform as nn.Conv3d would
        nn.init.kaiming_uniform_(self.spatial, a=5 ** 0.5)
        for weight in self.temporal:
            nn.init.kaiming_uniform_(weight, a=5 ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_time = len(self.time_kernels)
        if x.ndim != 5 + n_time or x.shape[1] != self.channels_in:
            raise ValueError(f"expected [B, {self.channels_in}, {n_time} time axes, level, lat, lon], "
                             f"got {tuple(x.shape)}")
        b, c = x.shape[:2]
        times, (nz, ny, nx) = tuple(x.shape[2:2 + n_time]), x.shape[-3:]
        steps = 1
        for t in times:
            steps *= t
        kz, ky, kx = self.kernel
        # Depthwise over (level, lat, lon): the time steps become extra groups sharing their channel's
        # kernel, so the [B, C·T, Z, Y, X] view needs no transpose.
        h = pad_globe(x.reshape(b, c * steps, nz, ny, nx), ky // 2, kx // 2)
        weight = self.spatial.repeat_interleave(steps, dim=0)
        h = F.conv3d(h, weight, padding=(kz // 2, 0, 0), groups=c * steps).view(x.shape)
        temporal = iter(self.temporal)
        for axis, k in enumerate(self.time_kernels):
            if k == 1:
                continue
            # [B, C, before, T_axis, after] view: a (1, k, 1) depthwise kernel runs along this axis alone
            before = 1
            for t in times[:axis]:
                before *= t
            view = h.reshape(b, c, before, times[axis], -1)
            h = F.conv3d(view, next(temporal), padding=(0, k // 2, 0), groups=c).view(x.shape)
        return self.pointwise(h)


class ChannelNorm(nn.Module):
    """Normalisation over channel axis 1 of [B, C, ...] of any trailing shape.

    kind: "batch" (an nn.BatchNorm1d on the [B, C, N] view: SyncBatchNorm-convertible),
    "group" (GroupNorm with `groups` groups, batch-independent), "none".
    """

    def __init__(self, channels: int, kind: str = "batch", groups: int = 8):
        super().__init__()
        if kind not in NORMS:
            raise ValueError(f"norm {kind!r}: expected one of {', '.join(NORMS)}")
        self.kind = kind
        if kind == "batch":
            self.norm = nn.BatchNorm1d(channels)
        elif kind == "group":
            g = min(groups, channels)
            if channels % g:
                raise ValueError(f"group norm: {channels} channels do not split into {g} groups; "
                                 "choose a width divisible by 8 or norm='batch'")
            self.norm = nn.GroupNorm(g, channels)
        else:
            self.norm = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "none":
            return x
        return self.norm(x.reshape(x.shape[0], x.shape[1], -1)).view(x.shape)


class FiLM(nn.Module):
    """Feature-wise linear modulation: x·(1 + γ) + β with (γ, β) = Linear(cond) per sample and channel.

    x: [B, C, ...]; cond: [B, cond_dim] (e.g. an embedding of the normalised planet parameters).
    γ is a deviation from 1, so a zero conditioning layer leaves x unchanged.
    """

    def __init__(self, cond_dim: int, channels: int):
        super().__init__()
        self.channels = channels
        self.proj = nn.Linear(cond_dim, 2 * channels)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        if cond.ndim != 2 or cond.shape[0] != x.shape[0]:
            raise ValueError(f"FiLM conditioning must be [B={x.shape[0]}, {self.proj.in_features}], "
                             f"got {tuple(cond.shape)}")
        gamma, beta = self.proj(cond).view(x.shape[0], 2, self.channels, *([1] * (x.ndim - 2))).unbind(1)
        return x * (1 + gamma) + beta


class PositionAttention(nn.Module):
    """Multi-head self-attention over every position of [B, C, ...]: each position is a token of
    width C (pre-LayerNorm, residual). Without a position embedding it is equivariant to any
    permutation of the positions (a longitude roll in particular); position information comes from
    the convolutional features it is given."""

    def __init__(self, channels: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if heads < 1 or channels % heads:
            raise ValueError(f"attention: {channels} channels do not split into {heads} heads; "
                             "choose heads dividing the bottleneck width")
        self.norm = nn.LayerNorm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.reshape(x.shape[0], x.shape[1], -1).transpose(1, 2)  # [B, N, C]
        q = self.norm(tokens)
        out, _ = self.attn(q, q, q, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)
