"""How one modality's tokens take in another's: cross-attention, or concatenation (the ablation).

Both modules share one interface, `fusion(tokens [B, N, dim], context [B, M, dim]) -> [B, N, dim]`:
the tokens of one modality (state patches, or the learned queries that stand for them) are
updated with information from the context tokens of the others (planet parameters, an input
spectrum). Both are residual and pre-normalised, so a fusion block starts near the identity.

- `CrossAttentionFusion`: each token attends to every context token (multi-head attention,
  queries from the tokens, keys and values from the context), then an MLP. A token can pick
  the parameters it depends on, and different patches can weigh them differently.
- `ConcatFusion`: the context is mean-pooled into one vector, concatenated to every token's
  features and projected back to `dim` by an MLP. Every token sees the same summary: no
  attention between modalities — the baseline that shows what cross-attention adds.
"""

from __future__ import annotations

import torch
from torch import nn

FUSIONS = ("cross", "concat")


def _mlp(d_in: int, dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim),
                         nn.Dropout(dropout))


def _check(tokens: torch.Tensor, context: torch.Tensor) -> None:
    if context.shape[1] == 0:
        raise ValueError("fusion needs at least one context token (give planet parameters or an input spectrum)")
    if tokens.shape[0] != context.shape[0] or tokens.shape[-1] != context.shape[-1]:
        raise ValueError(f"tokens {tuple(tokens.shape)} and context {tuple(context.shape)} must share batch and dim")


class CrossAttentionFusion(nn.Module):
    """tokens <- tokens + MHA(LN(tokens), LN(context)); tokens <- tokens + MLP(LN(tokens)).

    dim: token width (a multiple of `heads`). With `keep_attention` set, `last_attention` holds
    the head-averaged weights of the latest call, [B, N, M], for inspection (off by default:
    returning weights takes PyTorch's slower attention path)."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion dim {dim} must be a multiple of heads {heads}")
        self.norm_tokens, self.norm_context, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.mlp = _mlp(dim, dim, dropout)
        self.keep_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        _check(tokens, context)
        kv = self.norm_context(context)
        attended, weights = self.attention(self.norm_tokens(tokens), kv, kv, need_weights=self.keep_attention)
        self.last_attention = None if weights is None else weights.detach()
        tokens = tokens + attended
        return tokens + self.mlp(self.norm_mlp(tokens))


class ConcatFusion(nn.Module):
    """tokens <- tokens + MLP([LN(tokens), mean(LN(context))]): concatenated features, projected to dim.

    `heads` is accepted for the shared constructor and unused."""

    def __init__(self, dim: int, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        del heads
        self.norm_tokens, self.norm_context = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = _mlp(2 * dim, dim, dropout)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        _check(tokens, context)
        pooled = self.norm_context(context).mean(dim=1, keepdim=True).expand(-1, tokens.shape[1], -1)
        return tokens + self.mlp(torch.cat([self.norm_tokens(tokens), pooled], dim=-1))


def build_fusion(kind: str, dim: int, heads: int = 4, dropout: float = 0.0) -> nn.Module:
    """`cross` -> CrossAttentionFusion, `concat` -> ConcatFusion."""
    if kind == "cross":
        return CrossAttentionFusion(dim, heads, dropout)
    if kind == "concat":
        return ConcatFusion(dim, heads, dropout)
    raise ValueError(f"fusion {kind!r}: expected one of {', '.join(FUSIONS)}")
