"""Patch tokens of a gridded state and back: [B, C, lat, lon] <-> [B, N, dim], longitude-circular.

A patch covers `patch = (p_lat, p_lon)` cells; N = (lat / p_lat)·(lon / p_lon) tokens in
row-major order (latitude south -> north, then longitude east from 0°). Longitude is periodic:
the embedding sees `halo` cells beyond each patch edge, wrapped around the date line, so the
patches at 0° and 360° are neighbours like any others (latitude is padded by repeating the
polar rows: the grid does not continue across a pole). The unembedding projects each token
back onto its cells and smooths the patch seams with a per-channel (depthwise) 3×3 convolution,
wrapped the same way: the linear projection already mixes channels, and a full 3×3 channel-mixing
convolution at full resolution would cost more than the whole transformer.
"""

from __future__ import annotations

import torch
from torch import nn


def pad_sphere(x: torch.Tensor, lat: int, lon: int) -> torch.Tensor:
    """[..., lat, lon] padded by `lon` cells circularly in longitude and `lat` polar rows repeated."""
    if lon:
        x = torch.cat([x[..., -lon:], x, x[..., :lon]], dim=-1)
    if lat:
        x = torch.cat([x[..., :1, :].expand(*x.shape[:-2], lat, x.shape[-1]), x,
                       x[..., -1:, :].expand(*x.shape[:-2], lat, x.shape[-1])], dim=-2)
    return x


def check_patches(grid: tuple[int, int], patch: tuple[int, int]) -> tuple[int, int]:
    """(patches in latitude, patches in longitude); ValueError unless `patch` tiles `grid` exactly."""
    (nlat, nlon), (plat, plon) = grid, patch
    if plat < 1 or plon < 1 or nlat % plat or nlon % plon:
        raise ValueError(f"patch {tuple(patch)} must tile the grid {tuple(grid)} exactly (lat and lon divisible); "
                         f"for a {nlat} x {nlon} grid try e.g. (4, 4) or (2, 4)")
    return nlat // plat, nlon // plon


class PatchEmbed(nn.Module):
    """[B, C, lat, lon] -> [B, N, dim]: a strided convolution whose kernel reaches `halo` cells past
    each patch (longitude wrapped), plus a learned position embedding per patch.

    channels: C (several input steps stacked in channels count each step's channels)."""

    def __init__(self, channels: int, dim: int, grid: tuple[int, int], patch: tuple[int, int] = (4, 4),
                 halo: int = 1):
        super().__init__()
        self.grid_patches = check_patches(grid, patch)
        self.grid, self.patch, self.halo = tuple(grid), tuple(patch), halo
        kernel = (patch[0] + 2 * halo, patch[1] + 2 * halo)
        self.proj = nn.Conv2d(channels, dim, kernel_size=kernel, stride=patch)
        self.position = nn.Parameter(torch.zeros(1, self.n_tokens, dim))
        nn.init.trunc_normal_(self.position, std=0.02)

    @property
    def n_tokens(self) -> int:
        return self.grid_patches[0] * self.grid_patches[1]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The patch projection alone, without position: [B, C, lat, lon] -> [B, N, dim]."""
        if tuple(x.shape[-2:]) != self.grid:
            raise ValueError(f"state grid {tuple(x.shape[-2:])} differs from the model's {self.grid}")
        return self.proj(pad_sphere(x, self.halo, self.halo)).flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tokens(x) + self.position


class PatchUnembed(nn.Module):
    """[B, N, dim] -> [B, channels, lat, lon]: each token projected onto its patch's cells, then a
    depthwise 3×3 convolution across the patch seams (longitude wrapped), added as a residual."""

    def __init__(self, dim: int, channels: int, grid: tuple[int, int], patch: tuple[int, int] = (4, 4)):
        super().__init__()
        self.grid_patches = check_patches(grid, patch)
        self.grid, self.patch, self.channels = tuple(grid), tuple(patch), channels
        self.proj = nn.Linear(dim, channels * patch[0] * patch[1])
        self.seams = nn.Conv2d(channels, channels, kernel_size=3, groups=channels)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        (glat, glon), (plat, plon) = self.grid_patches, self.patch
        b = tokens.shape[0]
        x = self.proj(tokens).reshape(b, glat, glon, self.channels, plat, plon)
        x = x.permute(0, 3, 1, 4, 2, 5).reshape(b, self.channels, glat * plat, glon * plon)
        return x + self.seams(pad_sphere(x, 1, 1))
