"""What a model costs: its parameter count and the floating-point operations of one forward pass.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` while the model runs on the
given inputs: convolutions (grouped and depthwise ones included), matrix products and
scaled-dot-product attention, each multiply-add counted as 2 FLOPs. Element-wise operations
(activations, normalisation, padding, pooling) are not counted — they are a small share of a
convolutional or transformer surrogate's arithmetic, though not of its memory traffic.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (each shared parameter once); only those with requires_grad
    when `trainable_only`."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, *inputs: Any, **kwargs: Any) -> int:
    """FLOPs of `model(*inputs, **kwargs)`, forward only, in the model's current mode (train or
    eval), without building the autograd graph.

    The inputs decide the count: a batch of B costs B times one sample. nn.MultiheadAttention's
    fused inference path (taken in eval mode) is switched off while counting: the counter does
    not know its kernel and would count the attention as free.
    """
    fastpath = torch.backends.mha.get_fastpath_enabled()
    try:
        torch.backends.mha.set_fastpath_enabled(False)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs, **kwargs)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return int(counter.get_total_flops())
