"""Fusion of one modality's tokens with another's: cross-attention and the concatenation baseline."""

from __future__ import annotations

import pytest
import torch

from astrohpc.models.fusion import ConcatFusion, CrossAttentionFusion, build_fusion


@pytest.fixture
def tokens():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 10, 32, generator=g), torch.randn(3, 5, 32, generator=g)


@pytest.mark.parametrize("kind", ["cross", "concat"])
def test_same_interface_and_shape(kind, tokens):
    x, ctx = tokens
    fusion = build_fusion(kind, 32, heads=4)
    assert isinstance(fusion, CrossAttentionFusion if kind == "cross" else ConcatFusion)
    assert fusion(x, ctx).shape == x.shape
    assert fusion(x, ctx[:, :1]).shape == x.shape  # any number of context tokens


@pytest.mark.parametrize("kind", ["cross", "concat"])
def test_output_follows_the_other_modality(kind, tokens):
    torch.manual_seed(0)
    x, ctx = tokens
    fusion = build_fusion(kind, 32, heads=4).eval()
    base = fusion(x, ctx)
    changed = ctx.clone()
    changed[:, 2] = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))  # one context token changes
    assert (fusion(x, changed) - base).abs().max() > 1e-3
    # the context is a set: its order does not matter
    torch.testing.assert_close(fusion(x, ctx.flip(1)), base, rtol=1e-5, atol=1e-5)


def test_cross_attention_attends_per_token(tokens):
    """Each token queries the context itself: its weights are a distribution over the context tokens,
    differ between tokens, and shifting the weight onto one context token moves the output towards it."""
    torch.manual_seed(0)
    x, ctx = tokens
    fusion = CrossAttentionFusion(32, heads=4).eval()
    fusion.keep_attention = True
    base = fusion(x, ctx)
    weights = fusion.last_attention
    assert weights.shape == (3, 10, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 10))
    assert (weights[:, 0] - weights[:, 1]).abs().max() > 1e-3  # tokens look at the context differently
    # tokens do not see each other: changing token 0 leaves token 1 as it was (not self-attention)
    moved = x.clone()
    moved[:, 0] = torch.randn(3, 32, generator=torch.Generator().manual_seed(1))
    out = fusion(moved, ctx)
    torch.testing.assert_close(out[:, 1:], base[:, 1:])
    assert (out[:, 0] - base[:, 0]).abs().max() > 1e-3


def test_concat_sees_only_the_mean_of_the_context(tokens):
    """The baseline sees only the mean of the (normalised) context tokens, so repeating every
    context token changes nothing; nor does it for attention, whose weights renormalise."""
    torch.manual_seed(0)
    x, ctx = tokens
    fusion = ConcatFusion(32).eval()
    a = torch.stack([ctx[:, 0], ctx[:, 1]], dim=1)
    b = torch.stack([ctx[:, 0], ctx[:, 0], ctx[:, 1], ctx[:, 1]], dim=1)  # same tokens, same mean
    torch.testing.assert_close(fusion(x, a), fusion(x, b))
    cross = CrossAttentionFusion(32).eval()
    torch.testing.assert_close(cross(x, a), cross(x, b))  # attention over duplicates: also the same mix
    assert (fusion(x, a) - fusion(x, ctx[:, 2:4])).abs().max() > 1e-3


def test_refusals(tokens):
    x, ctx = tokens
    with pytest.raises(ValueError, match="context token"):
        CrossAttentionFusion(32)(x, ctx[:, :0])
    with pytest.raises(ValueError, match="context token"):
        ConcatFusion(32)(x, ctx[:, :0])
    with pytest.raises(ValueError, match="share batch and dim"):
        CrossAttentionFusion(32)(x, ctx[:2])
    with pytest.raises(ValueError, match="multiple of heads"):
        CrossAttentionFusion(30, heads=4)
    with pytest.raises(ValueError, match="expected one of cross, concat"):
        build_fusion("sum", 32)
