"""A spherical Fourier neural operator (SFNO) for the emulator, on the GCM's Gauss grid.

As in ACE and LUCIE (Bonev et al. 2023's SFNO, transforms from NVIDIA's torch-harmonics):

    z [B, C_in, lat, lon] (+ the planet parameters as constant channels, + sin φ)
      -> encoder (1x1 conv) -> `layers` blocks -> decoder (1x1 conv, starts at zero) -> [B, C_out, lat, lon]
    block: h = x + MLP(GELU(SpectralConv(N(x)) + Linear(N(x)))), N a per-sample norm (GroupNorm(1, C))

SpectralConv: the real spherical-harmonic transform up to the truncation (T21: degrees l ≤ 21),
channels mixed by a weight per degree l (a convolution on the sphere: rotation-equivariant, so
sin φ is given as an input to let the net know where the poles are), and the inverse transform.
The transforms cannot represent a degree above the truncation: the spectral path creates no
grid-scale power. The output can be projected onto the same truncation (`project`), which the
stepper uses to keep the pointwise layers' grid-scale noise out of the tendency too.

The latitudes must be the Gauss–Legendre nodes of the grid (ExoPlaSim's): checked at build.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
from torch import nn

from astrohpc.errors import ConfigError


def check_gauss_grid(lat_deg: np.ndarray) -> None:
    """ConfigError unless `lat_deg` are the Gauss–Legendre latitudes (either order)."""
    nodes, _ = np.polynomial.legendre.leggauss(len(lat_deg))
    gauss = np.degrees(np.arcsin(nodes))
    if not np.allclose(np.sort(lat_deg), np.sort(gauss), atol=1e-3):
        raise ConfigError(f"model.architecture: sfno needs the GCM's Gauss grid ({len(lat_deg)} Gauss–Legendre "
                          f"latitudes); this cube's latitudes are not (first {np.round(lat_deg[:3], 3).tolist()}): "
                          "use architecture: unet on a regular grid")


class SphericalTransform(nn.Module):
    """Real spherical-harmonic transforms on a Gauss grid, truncated at degree `truncation`.

    The quadrature and the normalised associated Legendre functions are torch-harmonics'
    (RealSHT / InverseRealSHT, legendre-gauss); the contractions are done here as batched matrix
    products in a layout that keeps the coefficients as `[M, L, N, 2]` (order m, degree l, every
    other axis flattened, real/imaginary): one transform costs two FFTs and one product, and the
    per-degree channel mixing of SpectralConv works on the same layout without copies.
    """

    def __init__(self, nlat: int, nlon: int, truncation: int):
        super().__init__()
        import torch_harmonics as th

        modes = truncation + 1
        forward_sht = th.RealSHT(nlat, nlon, lmax=modes, mmax=modes, grid="legendre-gauss")
        inverse_sht = th.InverseRealSHT(nlat, nlon, lmax=modes, mmax=modes, grid="legendre-gauss")
        self.register_buffer("analysis", forward_sht.weights.float().contiguous(), persistent=False)  # [M, L, K]
        self.register_buffer("synthesis", inverse_sht.pct.float().transpose(1, 2).contiguous(),
                             persistent=False)  # [M, K, L]
        self.modes, self.nlat, self.nlon = modes, nlat, nlon

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, K, N] (north -> south) -> coefficients [M, L, B*C, 2]."""
        b, c, k, _ = x.shape
        f = torch.view_as_real(2.0 * math.pi * torch.fft.rfft(x, dim=-1, norm="forward")[..., :self.modes])
        f = f.permute(3, 2, 0, 1, 4).reshape(self.modes, k, b * c * 2)  # [M, K, B*C*2]
        return torch.bmm(self.analysis, f).reshape(self.modes, self.modes, b * c, 2)

    def to_grid(self, coeffs: torch.Tensor, b: int, c: int) -> torch.Tensor:
        """coefficients [M, L, B*C, 2] -> x [B, C, K, N]."""
        g = torch.bmm(self.synthesis, coeffs.reshape(self.modes, self.modes, b * c * 2))  # [M, K, B*C*2]
        g = g.reshape(self.modes, self.nlat, b, c, 2).permute(2, 3, 1, 0, 4)
        spec = torch.view_as_complex(g.contiguous())
        spec = torch.cat([spec[..., :1].real.to(spec.dtype), spec[..., 1:]], dim=-1)  # m = 0 carries no phase
        return torch.fft.irfft(spec, n=self.nlon, dim=-1, norm="forward")

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, lat, lon] with only the degrees ≤ truncation kept (float32 inside, dtype kept)."""
        dtype = x.dtype
        b, c = x.shape[:2]
        return self.to_grid(self.to_spectral(x.float()), b, c).to(dtype)


class SpectralProjection(nn.Module):
    """x [..., lat, lon] -> x with only the degrees ≤ truncation kept, in the cube's latitude order."""

    def __init__(self, transform: SphericalTransform, flip: bool):
        super().__init__()
        self.transform, self.flip = transform, bool(flip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            return self.transform.project(x.flip(-2)).flip(-2)
        return self.transform.project(x)


class SpectralConv(nn.Module):
    """Channel mixing per spherical-harmonic degree l (complex coefficients, real weights per l)."""

    def __init__(self, transform: SphericalTransform, channels: int):
        super().__init__()
        self.transform = transform
        scale = 1.0 / math.sqrt(channels)
        self.weight = nn.Parameter(scale * torch.randn(transform.modes, channels, channels))  # [L, C_in, C_out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        m = self.transform.modes
        coeffs = self.transform.to_spectral(x).reshape(m, m, b, c, 2)  # [M, L, B, C, 2]
        per_degree = coeffs.permute(1, 0, 2, 4, 3).reshape(m, m * b * 2, c)  # [L, M*B*2, C]
        mixed = torch.bmm(per_degree, self.weight)  # [L, M*B*2, C_out]
        mixed = mixed.reshape(m, m, b, 2, -1).permute(1, 0, 2, 4, 3)  # [M, L, B, C_out, 2]
        return self.transform.to_grid(mixed.reshape(m, m, b * mixed.shape[3], 2), b, mixed.shape[3])


class Pointwise(nn.Module):
    """A 1x1 convolution as one matrix product over the flattened grid (BLAS; faster on CPU than
    a 1x1 Conv2d, which takes a slow direct path here)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_channels)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        return (torch.matmul(self.weight, x.reshape(b, c, h * w)) + self.bias[:, None]).reshape(b, -1, h, w)


class SFNOBlock(nn.Module):
    def __init__(self, transform: SphericalTransform, channels: int, mlp_ratio: float):
        super().__init__()
        hidden = max(1, int(channels * mlp_ratio))
        self.norm = nn.GroupNorm(1, channels)  # per sample over channels and grid: no batch statistics
        self.spectral = SpectralConv(transform, channels)
        self.local = Pointwise(channels, channels)
        self.mlp = nn.Sequential(Pointwise(channels, hidden), nn.GELU(approximate="tanh"), Pointwise(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.mlp(torch.nn.functional.gelu(self.spectral(h) + self.local(h), approximate="tanh"))


class SFNO(nn.Module):
    """net(z [B, C_in, lat, lon], params [B, P]) -> [B, C_out, lat, lon]; see the module doc."""

    def __init__(self, in_channels: int, out_channels: int, params_dim: int, lat_deg: np.ndarray, nlon: int,
                 truncation: int, embed: int = 48, layers: int = 4, mlp_ratio: float = 2.0):
        super().__init__()
        check_gauss_grid(np.asarray(lat_deg))
        nlat = len(lat_deg)
        if truncation < 1 or truncation >= nlat:
            raise ConfigError(f"model.sfno.truncation must be in [1, {nlat - 1}] on {nlat} latitudes, got {truncation}")
        self.transform = SphericalTransform(nlat, nlon, truncation)
        # the transforms order latitude north -> south; a south -> north grid is flipped in and out
        self.flip = bool(lat_deg[0] < lat_deg[-1])
        sinlat = torch.sin(torch.deg2rad(torch.as_tensor(np.sort(lat_deg)[::-1].copy(), dtype=torch.float32)))
        self.register_buffer("sinlat", sinlat[None, None, :, None].expand(1, 1, nlat, nlon).clone())
        self.params_dim = params_dim
        self.encoder = Pointwise(in_channels + params_dim + 1, embed)
        self.blocks = nn.ModuleList(SFNOBlock(self.transform, embed, mlp_ratio) for _ in range(layers))
        self.decoder = Pointwise(embed, out_channels)
        self.projection = SpectralProjection(self.transform, self.flip)
        nn.init.zeros_(self.decoder.weight)  # the first step predicts no change: persistence
        nn.init.zeros_(self.decoder.bias)

    def forward(self, z: torch.Tensor, params: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.flip:
            z = z.flip(-2)
        b, _, nlat, nlon = z.shape
        parts = [z, self.sinlat.expand(b, -1, -1, -1).to(z.dtype)]
        if self.params_dim:
            parts.append(params.to(z.dtype)[:, :, None, None].expand(-1, -1, nlat, nlon))
        h = self.encoder(torch.cat(parts, dim=1))
        for block in self.blocks:
            h = block(h)
        out = self.decoder(h)
        return out.flip(-2) if self.flip else out

