"""Mixed precision, chosen by `train.amp` and the device: autocast and the gradient scaler.

    none  float32 everywhere.
    fp16  CUDA only: autocast to float16 and a GradScaler (float16 gradients underflow without
          loss scaling). Asked for on a CPU it is a ConfigError, never a silent float32 run.
    bf16  autocast to bfloat16 on CPU or CUDA; no scaler (bfloat16 has float32's exponent range).

Autocast touches float32 tensors only: the hard correctors, which work in float64, are left
exact (autocast never casts a float64 input), and the physics is computed on de-normalised
float32/float64 states outside the matrix products autocast lowers.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

from astrohpc.errors import ConfigError

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def check_amp(amp: str, device: torch.device) -> None:
    """ConfigError for a mode the device cannot run (fp16 without CUDA, an unknown mode)."""
    if amp not in ("none", *DTYPES):
        raise ConfigError(f"train.amp = {amp!r}: valid values are none, fp16, bf16")
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp = fp16 needs a CUDA device (this run is on the CPU); "
                          "use train.amp=bf16 or train.amp=none")


def autocast(amp: str, device: torch.device) -> ContextManager:
    """The forward-pass context for `amp` on `device` (a no-op for none)."""
    check_amp(amp, device)
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[amp])


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler, enabled for fp16 only (a disabled one passes gradients through unchanged,
    so the training step is written once)."""
    check_amp(amp, device)
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")
