"""The datacube U-Net: [B, V_in, Tc, Tg, L, lat, lon] (+ planet parameters) -> [B, V_out, Tc', Tg', L, lat, lon].

Every convolution is depthwise-separable and factorised (blocks.SeparableConv): a depthwise 3-D
kernel over (level, lat, lon) shared by all time steps, a depthwise 1-D kernel along each time
axis longer than one step, then a pointwise channel mix. The globe is padded as a sphere: around
in longitude and across the poles (blocks.pad_globe), so no cell sits at an artificial edge.

    stem      pointwise V_in -> width, + a learned embedding per level (and per latitude row if
              `nlat` is given: the network then knows where it is, e.g. for the Coriolis parameter)
    encoder   `depth` residual blocks, each followed by 2×2 average pooling in (lat, lon) (and 2 in
              level with `level_downsample`); widths width·2^i
    bottleneck  residual block, [multi-head self-attention over every position], residual block
    decoder   nearest-neighbour upsampling, concatenation with the encoder's skip, residual block
    head      pointwise from (width × Tc × Tg) to (V_out × Tc' × Tg'): every input step informs
              every output step, so the time axes may differ in length between input and output

A residual block is SeparableConv -> norm -> FiLM(params) -> GELU -> dropout -> SeparableConv ->
norm, added to the (projected) input, GELU. FiLM's γ, β come from one MLP embedding of the
normalised planet parameters [B, P], through a linear layer of each block's own (no FiLM when
params_dim = 0). Norms are BatchNorm (SyncBatchNorm-convertible), GroupNorm or none; dropout
modules are nn.Dropout, which MC-dropout inference switches on (models/uncertainty.py).

Nothing but pooling, upsampling and per-channel operations touches longitude, so rolling the
input east by a multiple of 2^depth cells rolls the output by the same (tested). Everything is in
normalised units; the model never sees physical ones.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as run_checkpointed

from astrohpc.models.blocks import NORMS, ChannelNorm, FiLM, Pointwise, PositionAttention, SeparableConv
from astrohpc.models.layout import DatacubeLayout


@contextmanager
def running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics left untouched inside the block (momentum 0, batch counter
    restored): the recomputation of a checkpointed segment must not count its batch twice."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)


class ResidualBlock(nn.Module):
    """[B, C_in, Tc, Tg, L, lat, lon] (+ conditioning [B, cond_dim]) -> [B, C_out, Tc, Tg, L, lat, lon]."""

    def __init__(self, channels_in: int, channels_out: int, cond_dim: int, norm: str, dropout: float,
                 kernel: tuple[int, int, int], time_kernels: tuple[int, int]):
        super().__init__()
        self.conv1 = SeparableConv(channels_in, channels_out, kernel, time_kernels)
        self.norm1 = ChannelNorm(channels_out, norm)
        self.film = FiLM(cond_dim, channels_out) if cond_dim else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = SeparableConv(channels_out, channels_out, kernel, time_kernels)
        self.norm2 = ChannelNorm(channels_out, norm)
        self.skip = Pointwise(channels_in, channels_out) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.norm1(self.conv1(x))
        if self.film is not None:
            h = self.film(h, cond)
        h = self.dropout(F.gelu(h))
        return F.gelu(self.norm2(self.conv2(h)) + self.skip(x))


def _fold(x: torch.Tensor) -> torch.Tensor:
    """[B, C, Tc, Tg, L, lat, lon] -> [B, C·Tc·Tg, L, lat, lon] (a view): channels and time steps
    pooled or upsampled alike."""
    return x.reshape(x.shape[0], -1, *x.shape[-3:])


def downsample(x: torch.Tensor, level: bool) -> torch.Tensor:
    """2×2 average over (lat, lon) (and pairs of levels when `level`): [.., L, lat, lon] -> [.., L', lat/2, lon/2]."""
    kernel = (2 if level else 1, 2, 2)
    out = F.avg_pool3d(_fold(x), kernel)
    return out.view(*x.shape[:4], *out.shape[-3:])


def upsample(x: torch.Tensor, level: bool) -> torch.Tensor:
    """Nearest-neighbour ×2 in (lat, lon) (and level when `level`): the inverse grid of `downsample`."""
    out = F.interpolate(_fold(x), scale_factor=(2 if level else 1, 2, 2), mode="nearest")
    return out.view(*x.shape[:4], *out.shape[-3:])


class DatacubeUNet(nn.Module):
    """U-Net on datacubes [B, V, Tc, Tg, L, lat, lon] (see the module doc for the architecture).

    in_vars: V_in, the variables given (predicted ones first or not: the caller's order; extra
        input-only fields such as forcings and static fields are more variables on the var axis).
    out_vars: V_out, the variables predicted. levels: L of the input and output.
    width: channels at full resolution (doubling at each coarser one); depth: number of 2×
        down-samplings in (lat, lon) — lat must be divisible by 2^depth and lon by 2^(depth+1).
    params_dim: P, the normalised planet parameters conditioning every block by FiLM (0: none).
    in_climate_time, in_geo_time: the input's time lengths Tc, Tg; out_climate_time,
        out_geo_time: the output's. Any may be 1.
    attention: multi-head self-attention (`heads`) at the bottleneck over every position.
    norm: "batch", "group" or "none". checkpoint: recompute each block in the backward pass
        (torch.utils.checkpoint, use_reentrant=False): less activation memory, same results.
    dropout: rate inside every residual block and the attention (for MC dropout).
    nlat: the grid's latitudes: adds a learned per-row embedding and checks the input grid.
    level_downsample: halve levels too (L is zero-padded at index 0, the top, to a multiple of
        2^depth and cropped again at the end).
    kernel, time_kernel: odd sizes of the spatial (level, lat, lon) and time kernels (the level
        kernel is 1 when L = 1; a time kernel is skipped for an input time axis of length 1).
    film_dim: width of the parameter embedding read by the FiLM layers.
    """

    def __init__(self, in_vars: int, out_vars: int, levels: int, width: int = 16, depth: int = 2,
                 params_dim: int = 0, out_climate_time: int = 1, out_geo_time: int = 1, attention: bool = False,
                 norm: str = "batch", checkpoint: bool = False, dropout: float = 0.0, *, in_climate_time: int = 1,
                 in_geo_time: int = 1, heads: int = 4, nlat: Optional[int] = None, level_downsample: bool = False,
                 kernel: int = 3, time_kernel: int = 3, film_dim: int = 64):
        super().__init__()
        sizes = dict(in_vars=in_vars, out_vars=out_vars, levels=levels, width=width, depth=depth,
                     in_climate_time=in_climate_time, in_geo_time=in_geo_time,
                     out_climate_time=out_climate_time, out_geo_time=out_geo_time)
        small = [f"{k}={v}" for k, v in sizes.items() if v < 1]
        if small or params_dim < 0:
            raise ValueError(f"DatacubeUNet sizes must be >= 1 (params_dim >= 0): {', '.join(small) or params_dim}")
        if norm not in NORMS:
            raise ValueError(f"norm {norm!r}: expected one of {', '.join(NORMS)}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.in_vars, self.out_vars, self.levels, self.depth = in_vars, out_vars, levels, depth
        self.in_time, self.out_time = (in_climate_time, in_geo_time), (out_climate_time, out_geo_time)
        self.params_dim, self.nlat, self.level_downsample = params_dim, nlat, level_downsample
        self.checkpoint = checkpoint
        self.padded_levels = -(-levels // 2 ** depth) * 2 ** depth if level_downsample else levels

        spatial = (kernel if levels > 1 else 1, kernel, kernel)
        times = tuple(time_kernel if t > 1 else 1 for t in self.in_time)
        cond = film_dim if params_dim else 0
        widths = [width * 2 ** i for i in range(depth + 1)]

        def block(cin: int, cout: int) -> ResidualBlock:
            return ResidualBlock(cin, cout, cond, norm, dropout, spatial, times)

        self.stem = Pointwise(in_vars, width)
        self.level_embedding = nn.Parameter(torch.zeros(width, self.padded_levels))
        self.lat_embedding = nn.Parameter(torch.zeros(width, nlat)) if nlat else None
        self.params_mlp = (nn.Sequential(nn.Linear(params_dim, film_dim), nn.GELU(), nn.Linear(film_dim, film_dim),
                                         nn.GELU()) if params_dim else None)
        self.encoder = nn.ModuleList([block(widths[max(i - 1, 0)], widths[i]) for i in range(depth)])
        self.middle = nn.ModuleList([block(widths[depth - 1], widths[depth]), block(widths[depth], widths[depth])])
        self.attention = PositionAttention(widths[depth], heads, dropout) if attention else None
        self.decoder = nn.ModuleList([block(widths[i + 1] + widths[i], widths[i]) for i in range(depth)])
        self.head = Pointwise(width * in_climate_time * in_geo_time, out_vars * out_climate_time * out_geo_time)

    def check_input(self, x: torch.Tensor, params: Optional[torch.Tensor]) -> None:
        """ValueError naming the mismatch when `x` or `params` do not fit this model."""
        want = (self.in_vars, *self.in_time, self.levels)
        if x.ndim != 7 or tuple(x.shape[1:5]) != want:
            raise ValueError(f"expected a datacube [B, V={want[0]}, Tc={want[1]}, Tg={want[2]}, L={want[3]}, "
                             f"lat, lon], got {tuple(x.shape)} (DatacubeLayout.to_cube makes one from channels)")
        nlat, nlon = x.shape[-2:]
        if nlat % 2 ** self.depth or nlon % 2 ** (self.depth + 1):
            fits = 0
            while nlat % 2 ** (fits + 1) == 0 and nlon % 2 ** (fits + 2) == 0:
                fits += 1
            raise ValueError(f"a {nlat} x {nlon} grid does not fit depth {self.depth}: each level halves lat and lon, "
                             f"so lat must be divisible by {2 ** self.depth} and lon by {2 ** (self.depth + 1)} "
                             f"(even at the coarsest level, for the across-pole padding); use depth <= {fits}")
        if self.nlat is not None and nlat != self.nlat:
            raise ValueError(f"the model was built for {self.nlat} latitudes (nlat), the input has {nlat}")
        if self.params_dim:
            if params is None or params.shape != (x.shape[0], self.params_dim):
                got = None if params is None else tuple(params.shape)
                raise ValueError(f"this model is conditioned on {self.params_dim} planet parameters: pass params "
                                 f"[B={x.shape[0]}, {self.params_dim}] (normalised), got {got}")

    def _block(self, block: nn.Module, *args: Optional[torch.Tensor]) -> torch.Tensor:
        if not (self.checkpoint and torch.is_grad_enabled()):
            return block(*args)
        # the recomputation in the backward pass must not update BatchNorm statistics a second time
        return run_checkpointed(block, *args, use_reentrant=False,
                                context_fn=lambda: (nullcontext(), running_stats_frozen(block)))

    def forward(self, x: torch.Tensor, params: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: [B, in_vars, Tc, Tg, L, lat, lon]; params: [B, P] normalised (None when params_dim = 0).
        Returns [B, out_vars, out_climate_time, out_geo_time, L, lat, lon]."""
        self.check_input(x, params)
        b, nlat, nlon = x.shape[0], x.shape[-2], x.shape[-1]
        h = self.stem(x)
        if self.padded_levels != self.levels:
            h = F.pad(h, (0, 0, 0, 0, self.padded_levels - self.levels, 0))  # zero levels above the top
        h = h + self.level_embedding[None, :, None, None, :, None, None]
        if self.lat_embedding is not None:
            h = h + self.lat_embedding[None, :, None, None, None, :, None]
        cond = self.params_mlp(params.to(h.dtype)) if self.params_mlp is not None else None
        skips = []
        for block in self.encoder:
            h = self._block(block, h, cond)
            skips.append(h)
            h = downsample(h, self.level_downsample)
        h = self._block(self.middle[0], h, cond)
        if self.attention is not None:
            h = self._block(self.attention, h)
        h = self._block(self.middle[1], h, cond)
        for block, skip in zip(reversed(self.decoder), reversed(skips)):
            h = self._block(block, torch.cat([upsample(h, self.level_downsample), skip], dim=1), cond)
        h = h[:, :, :, :, self.padded_levels - self.levels:]
        out = self.head(h.reshape(b, -1, *h.shape[-3:]))
        return out.view(b, self.out_vars, *self.out_time, self.levels, nlat, nlon)


class ChannelUNet(nn.Module):
    """The DatacubeUNet behind a channel interface: net(z, params) with z [B, C_in, lat, lon] (or
    [B, T, C_in, lat, lon]) -> [B, C_out, lat, lon] (or [B, T', C_out, lat, lon]) — the net of
    models/stepper.py. The layouts say where each channel sits in the datacube; input-only channels
    (forcings at t and t+1, static fields) are extra variables of `in_layout` (e.g. named
    "rsdt@next", "sg", level NaN). Both layouts must have the same levels.

    unet_options: DatacubeUNet's keyword arguments (width, depth, params_dim, attention, ...).
    """

    def __init__(self, in_layout: DatacubeLayout, out_layout: DatacubeLayout, **unet_options):
        super().__init__()
        if in_layout.n_levels != out_layout.n_levels or (in_layout.levels and out_layout.levels and
                                                          in_layout.levels != out_layout.levels):
            raise ValueError(f"input levels {list(in_layout.levels)} and output levels {list(out_layout.levels)} "
                             "differ; the U-Net keeps the levels it is given")
        self.in_layout, self.out_layout = in_layout, out_layout
        self.unet = DatacubeUNet(in_layout.n_variables, out_layout.n_variables, in_layout.n_levels, **unet_options)

    def forward(self, z: torch.Tensor, params: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = self.unet(self.in_layout.to_cube(z), params)
        return self.out_layout.from_cube(out, time_axes=z.ndim - 4)
