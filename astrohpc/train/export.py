"""Trained weights for inference: one file with everything needed to rebuild and use the model.

`export/best.pt` (lowest validation loss) and `export/last.pt` hold

    format        "astrohpc-surrogate/1"
    model_state   the surrogate's state_dict: the net's weights and the normalisation buffers
                  (channel and step-change statistics, static and spectral normalisation)
    config        the whole config as a dict (the `model:` section rebuilds the modules)
    cube          the training cube's path; run_split its train/validation/test run names
    param_norm    how planet parameters become inputs (names, transform, mean, std) — give it
                  to WindowDataset/RunDataset(param_norm=…) when predicting on another cube
    plan          the channel plan (astrohpc.models.build.ChannelPlan.describe()); n_bins
    step, epoch, validation (the metrics of that epoch), provenance

Everything is a tensor, number, string, list or dict: `torch.load(weights_only=True)` reads it.
Written atomically. `load_exported` rebuilds the model on the same cube layout (the grid, the
channel table and static fields come from a cube with the training cube's layout: the training
cube itself, or `cube=` another with the same channels) and loads the weights strictly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from astrohpc.atomic_write import atomic_path
from astrohpc.errors import CheckpointError, DataError

FORMAT = "astrohpc-surrogate/1"


def plain(value: Any) -> Any:
    """numpy arrays and scalars as lists and Python numbers, recursively (weights_only-safe)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def export_weights(path: str | Path, model: torch.nn.Module, info: dict[str, Any]) -> Path:
    """Write `model`'s state and `info` (see the module doc) to `path` atomically."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "model_state": state, **plain(info)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_export(path: str | Path) -> dict[str, Any]:
    """The exported dict, read with weights_only=True; CheckpointError when it is not one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported model (train one with `astrohpc train CONFIG`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise CheckpointError(f"{path}: not a readable exported model ({exc}); re-export it") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an astrohpc exported model (format {payload.get('format')!r}, "
                              f"expected {FORMAT!r})")
    return payload


def load_exported(path: str | Path, cube: Optional[str | Path] = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, the exported dict) — see the module doc. cube: a cube with the training
    cube's layout (default: the training cube)."""
    from astrohpc.config import Config, from_dict
    from astrohpc.data.cube import read_meta
    from astrohpc.models.build import build

    payload = read_export(path)
    cfg = from_dict(Config, payload["config"], source=f"{path} (config)")
    cube_path = Path(cube or payload["cube"])
    if not cube_path.is_file():
        raise DataError(f"{cube_path}: the cube {path} was trained on is not there; pass cube= a cube with "
                        "the same channels and grid")
    meta = read_meta(cube_path)
    model = build(cfg.model, meta, n_bins=payload.get("n_bins") or None)
    missing, unexpected = model.load_state_dict(payload["model_state"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit the model built from its config on {cube_path} "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]}); use the training cube")
    model.eval()
    return model, payload
