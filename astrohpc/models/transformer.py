"""The surrogate transformer: planet parameters (and optionally a state, an input spectrum) -> fields,
global scalars and/or a thermal emission spectrum.

Tokens, all of width `dim`:
- parameter tokens: one per normalised planet parameter, token_j = z_j·w_j + b_j with learned
  vectors w_j, b_j of its own (so attention can single out a parameter, and the token says which
  parameter it is without a position embedding); an input spectrum (`in_bins`) is embedded the
  same way, one token per bin. Together they are the context, mixed by one self-attention layer.
- grid tokens: patch tokens of the state [B, C, lat, lon] (`patches.PatchEmbed`; several input
  steps stacked in channels, C = steps × channels), or — with no state (`in_channels=0`, the
  parameters-only climate surrogate) — one learned query token per patch, which only the fusion
  with the context can make differ between planets.
- readout tokens: one learned token per global head (scalar, spectral), read by a linear head.

Each of `depth` blocks fuses the context into the grid and readout tokens (`fusion.py`: cross-
attention, or the concatenation baseline), then runs self-attention over them. Information flows
from the context into the grid, not back: the context is encoded once and read by every block
(what the climate surrogate needs — the planet conditions the fields). With no context (no
parameters, no input spectrum) the fusion is skipped: a plain vision transformer of the state.

Heads (`mode`): `datacube` -> [B, out_channels, lat, lon] (patch unembedding), `scalar` ->
[B, n_scalars] (e.g. global-mean ts and TOA fluxes), `spectral` -> [B, n_bins]; `joint` builds
all three and `forward` returns {"datacube", "scalar", "spectral"}; the single modes return the
tensor. Everything in normalised units: the model never sees physical units.
"""

from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import nn

from astrohpc.models.fusion import FUSIONS, build_fusion
from astrohpc.models.patches import PatchEmbed, PatchUnembed, check_patches

MODES = ("datacube", "scalar", "spectral", "joint")
HEADS = ("datacube", "scalar", "spectral")


class ValueTokens(nn.Module):
    """[B, n] -> [B, n, dim]: entry j becomes x_j·w_j + b_j (learned w_j, b_j per entry)."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, dim) * 0.02)
        self.bias = nn.Parameter(torch.randn(n, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., None] * self.weight + self.bias


def _encoder_layer(dim: int, heads: int, dropout: float) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(dim, heads, dim_feedforward=4 * dim, dropout=dropout, activation="gelu",
                                      batch_first=True, norm_first=True)


class SurrogateTransformer(nn.Module):
    """Surrogate of a GCM run from its planet parameters and optionally its state.

    in_channels: channels of the state input (steps × cube channels, + static fields if given);
        0: no state, parameters only.
    params_dim: P, the number of normalised planet parameters (0: none).
    grid: (lat, lon) of the state and of the datacube output; patch: (lat, lon) cells per token.
    dim, depth, heads, dropout: transformer sizes. mode: one of MODES (see the module doc).
    out_channels, n_scalars, n_bins: sizes of the datacube, scalar and spectral heads (each
        needed by its mode; `joint` needs all three).
    fusion: "cross" (cross-attention) or "concat" (the ablation baseline), see fusion.py.
    in_bins: bins of an input spectrum given as a third modality (0: none).
    learned_task_weights: joint mode only — learn one homoscedastic log-variance per head
        (`task_log_vars`, Kendall et al. 2018) for `multitask_loss`.
    """

    def __init__(self, in_channels: int, params_dim: int, grid: tuple[int, int] = (32, 64),
                 patch: tuple[int, int] = (4, 4), dim: int = 64, depth: int = 2, heads: int = 4,
                 mode: str = "datacube", out_channels: int = 0, n_scalars: int = 0, n_bins: int = 0,
                 fusion: str = "cross", dropout: float = 0.0, in_bins: int = 0,
                 learned_task_weights: bool = False):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion {fusion!r}: expected one of {', '.join(FUSIONS)}")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        if min(in_channels, params_dim, in_bins) < 0 or in_channels + params_dim + in_bins == 0:
            raise ValueError("the transformer needs an input: a state (in_channels), planet parameters (params_dim) "
                             "or an input spectrum (in_bins)")
        self.head_names = HEADS if mode == "joint" else (mode,)
        sizes = {"datacube": (out_channels, "out_channels"), "scalar": (n_scalars, "n_scalars"),
                 "spectral": (n_bins, "n_bins")}
        missing = [sizes[h][1] for h in self.head_names if sizes[h][0] < 1]
        if missing:
            raise ValueError(f"mode {mode!r} needs {' and '.join(missing)} >= 1")
        if learned_task_weights and mode != "joint":
            raise ValueError("learned_task_weights weighs the heads of mode 'joint'; this model has one head")
        self.mode, self.grid, self.patch = mode, tuple(grid), tuple(patch)
        self.in_channels, self.params_dim, self.in_bins = in_channels, params_dim, in_bins
        n_patches = check_patches(self.grid, self.patch)
        n_patches = n_patches[0] * n_patches[1]

        self.params_embed = ValueTokens(params_dim, dim) if params_dim else None
        self.spectrum_embed = ValueTokens(in_bins, dim) if in_bins else None
        self.context_encoder = _encoder_layer(dim, heads, dropout) if params_dim or in_bins else None
        self.patch_embed = PatchEmbed(in_channels, dim, self.grid, self.patch) if in_channels else None
        # parameters only: the datacube patches are learned queries, filled in by the fusion
        self.patch_queries = (nn.Parameter(torch.randn(1, n_patches, dim) * 0.02)
                              if not in_channels and "datacube" in self.head_names else None)
        self.n_grid = n_patches if in_channels or "datacube" in self.head_names else 0
        self.readouts = [h for h in self.head_names if h != "datacube"]
        self.readout_tokens = nn.Parameter(torch.randn(1, len(self.readouts), dim) * 0.02) if self.readouts else None
        has_context = self.context_encoder is not None
        self.fusions = nn.ModuleList([build_fusion(fusion, dim, heads, dropout) for _ in range(depth)]
                                     if has_context else [])
        self.blocks = nn.ModuleList([_encoder_layer(dim, heads, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head_modules = nn.ModuleDict()
        if "datacube" in self.head_names:
            self.head_modules["datacube"] = PatchUnembed(dim, out_channels, self.grid, self.patch)
        if "scalar" in self.head_names:
            self.head_modules["scalar"] = nn.Linear(dim, n_scalars)
        if "spectral" in self.head_names:
            self.head_modules["spectral"] = nn.Linear(dim, n_bins)
        self.task_log_vars = (nn.ParameterDict({h: nn.Parameter(torch.zeros(())) for h in self.head_names})
                              if learned_task_weights else None)

    def _batch(self, state, params, spectrum) -> int:
        given = {"state": (state, self.in_channels, "in_channels"), "params": (params, self.params_dim, "params_dim"),
                 "spectrum": (spectrum, self.in_bins, "in_bins")}
        sizes = []
        for name, (value, expected, option) in given.items():
            if expected and value is None:
                raise ValueError(f"this model was built with {option}={expected}: pass `{name}`")
            if not expected and value is not None:
                raise ValueError(f"this model takes no `{name}` ({option}=0): build it with {option} > 0")
            if value is not None:
                if value.shape[1] != expected:
                    raise ValueError(f"`{name}` has {value.shape[1]} channels/entries; the model was built for "
                                     f"{option}={expected}")
                sizes.append(value.shape[0])
        if len(set(sizes)) != 1:
            raise ValueError(f"inputs disagree on the batch size: {sizes}")
        return sizes[0]

    def forward(self, state: Optional[torch.Tensor] = None, params: Optional[torch.Tensor] = None,
                spectrum: Optional[torch.Tensor] = None) -> torch.Tensor | dict[str, torch.Tensor]:
        """state: [B, in_channels, lat, lon], or [B, steps, C, lat, lon] (steps stacked into channels);
        params: [B, params_dim]; spectrum: [B, in_bins]; all normalised.

        Returns the head's tensor (datacube [B, out_channels, lat, lon], scalar [B, n_scalars],
        spectral [B, n_bins]); in mode `joint`, a dict of all three."""
        if state is not None and state.ndim == 5:
            state = state.flatten(1, 2)
        batch = self._batch(state, params, spectrum)
        context = [embed(x) for embed, x in ((self.params_embed, params), (self.spectrum_embed, spectrum))
                   if embed is not None]
        ctx = self.context_encoder(torch.cat(context, dim=1)) if context else None
        parts = []
        if self.patch_embed is not None:
            parts.append(self.patch_embed(state))
        elif self.patch_queries is not None:
            parts.append(self.patch_queries.expand(batch, -1, -1))
        if self.readout_tokens is not None:
            parts.append(self.readout_tokens.expand(batch, -1, -1))
        tokens = torch.cat(parts, dim=1)
        for k, block in enumerate(self.blocks):
            if ctx is not None:
                tokens = self.fusions[k](tokens, ctx)
            tokens = block(tokens)
        tokens = self.norm(tokens)
        out: dict[str, torch.Tensor] = {}
        if "datacube" in self.head_names:
            out["datacube"] = self.head_modules["datacube"](tokens[:, : self.n_grid])
        for i, head in enumerate(self.readouts):
            out[head] = self.head_modules[head](tokens[:, self.n_grid + i])
        return out if self.mode == "joint" else out[self.mode]


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the target's finite entries (NaN: a value the cube does not have)."""
    if pred.shape != target.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    finite = torch.isfinite(target)
    return ((pred - torch.where(finite, target, pred.detach())) ** 2).sum() / finite.sum().clamp(min=1)


def multitask_loss(pred: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                   weights: Optional[Mapping[str, float]] = None,
                   log_vars: Optional[Mapping[str, torch.Tensor]] = None
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the heads' mean squared errors: (total, {head: its MSE}).

    pred: the joint model's output dict (a single-mode model's tensor goes in as {mode: tensor});
    target: the same heads, same shapes, normalised like the prediction.

    weights: fixed weight w_h per head (default 1; a head of weight 0 is left out). Fixed:
    total = Σ w_h L_h. With log_vars (learned s_h = log σ_h², e.g. `model.task_log_vars`), the
    homoscedastic-uncertainty weighting of Kendall, Gal & Cipolla (2018) for regression:
    total = Σ w_h (½ e^{−s_h} L_h + ½ s_h) — a noisier head is down-weighted, the ½ s_h term
    keeps σ_h from growing without bound."""
    weights = dict(weights or {})
    unknown = [h for h in weights if h not in pred]
    if unknown:
        raise ValueError(f"weights for heads the model does not have: {', '.join(unknown)}; heads: {', '.join(pred)}")
    missing = [h for h in pred if h not in target and weights.get(h, 1.0) != 0]
    if missing:
        raise ValueError(f"no target for head(s) {', '.join(missing)} (targets: {', '.join(target) or 'none'})")
    parts: dict[str, torch.Tensor] = {}
    total = None
    for head, value in pred.items():
        w = float(weights.get(head, 1.0))
        if w == 0:
            continue
        parts[head] = term = masked_mse(value, target[head])
        if log_vars is not None:
            term = 0.5 * torch.exp(-log_vars[head]) * term + 0.5 * log_vars[head]
        total = w * term if total is None else total + w * term
    if total is None:
        raise ValueError("every head has weight 0: nothing to train")
    return total, parts
