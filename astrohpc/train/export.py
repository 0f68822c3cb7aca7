"""Trained weights for inference: one file with everything needed to rebuild and use the model.

`export/best.pt` (lowest validation loss) and `export/last.pt` hold

    format        "astrohpc-surrogate/2"
    model_state   the surrogate's state_dict: the net's weights and the normalisation buffers
                  (channel and step-change statistics, static and spectral normalisation)
    config        the whole config as a dict (the `model:` section rebuilds the modules)
    cube          the training cube's path (provenance: loading never opens it); run_split its
                  train/validation/test run names
    meta          the training cube's layout (astrohpc.data.meta_state): channel table with units,
                  grid and area weights, run parameters and their transforms, static fields,
                  vertical coordinate, normalisation statistics
    data_settings the data settings the cube was converted with (how `astrohpc predict` converts a
                  GCM file given as an initial state)
    envelope      the training runs' parameter envelope (astrohpc.models.ood.ParameterEnvelope state,
                  raw parameters of param_norm's names): what the out-of-envelope flag reads
    param_norm    how planet parameters become inputs (names, transform, mean, std) — give it
                  to WindowDataset/RunDataset(param_norm=…) when predicting on another cube
    plan          the channel plan (astrohpc.models.build.ChannelPlan.describe()); n_bins
    step, epoch, validation (the metrics of that epoch), provenance

Everything is a tensor, number, string, list or dict: `torch.load(weights_only=True)` reads it.
Written atomically. `load_exported` rebuilds the model from the export alone (no cube is read) and
loads the weights strictly. An export of format 1 (which needed its training cube) is refused with
the command that upgrades it: `astrohpc export upgrade OLD.pt --cube TRAINING_CUBE`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from astrohpc.atomic_write import atomic_path
from astrohpc.errors import CheckpointError, DataError

FORMAT = "astrohpc-surrogate/2"
OLD_FORMATS = ("astrohpc-surrogate/1",)


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
    return write_payload(path, {"format": FORMAT, "model_state": state, **plain(info)})


def write_payload(path: str | Path, payload: dict[str, Any]) -> Path:
    """torch.save `payload` to `path` atomically (temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_payload(path: str | Path, hint: str = "train one with `astrohpc train CONFIG`") -> dict[str, Any]:
    """The dict saved at `path`, read with weights_only=True; CheckpointError when the file is
    missing (naming `hint`, how to make one) or unreadable. Formats are the caller's to check."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such exported model ({hint})")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise CheckpointError(f"{path}: not a readable exported model ({exc}); re-export it") from exc
    return payload if isinstance(payload, dict) else {"format": None}


def check_format(payload: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """`payload` when it is an export of this format; CheckpointError otherwise (an older format
    with the command that upgrades it)."""
    if payload.get("format") in OLD_FORMATS:
        raise CheckpointError(f"{path}: exported by an older astrohpc (format {payload['format']!r}), which needs "
                              f"its training cube to load; upgrade it once: `astrohpc export upgrade {path} "
                              f"--cube {payload.get('cube', 'TRAINING_CUBE')}` (writes a self-contained {FORMAT} "
                              "next to it), or re-train")
    if payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an astrohpc exported model (format {payload.get('format')!r}, "
                              f"expected {FORMAT!r})")
    return payload


def read_export(path: str | Path) -> dict[str, Any]:
    """The exported dict, read with weights_only=True; CheckpointError when it is not one."""
    return check_format(load_payload(path), path)


def training_meta(info: dict[str, Any], where: str = "") -> Any:
    """The training cube's layout (a CubeMeta) carried by an export; its path is the training
    cube's, for messages only."""
    from astrohpc.data.meta_state import meta_from_state

    return meta_from_state(info.get("meta"), where or str(info.get("cube", "export")))


def conversion_settings(cube: str | Path) -> dict[str, Any]:
    """The data settings the cube was converted with (its provenance's `settings`), or {}."""
    import json

    from astrohpc.data.cube import open_file

    try:
        f = open_file(cube, validate=False)  # the reader's own opening: the trainer holds the cube open
    except (OSError, ValueError, DataError):
        return {}
    try:
        return dict(json.loads(f.attrs.get("provenance", "{}")).get("settings") or {})
    except ValueError:
        return {}
    finally:
        f.close()


def export_info(meta: Any, param_norm: dict[str, Any], train_runs: list[int]) -> dict[str, Any]:
    """What every export adds to its trainer's info: the cube's layout, the data settings it was
    converted with (`data_settings`: how a GCM file becomes the model's input) and the training
    runs' parameter envelope (raw values of param_norm's names)."""
    from astrohpc.data.meta_state import meta_state
    from astrohpc.models.ood import ParameterEnvelope

    names = list(param_norm["names"])
    rows = np.asarray(list(train_runs), dtype=int)
    envelope = ParameterEnvelope.fit(meta.param_matrix(names)[rows], names) if names and rows.size else None
    return {"meta": meta_state(meta), "envelope": envelope.state_dict() if envelope is not None else None,
            "data_settings": conversion_settings(meta.path)}


def _with_weights(payload: dict[str, Any], meta: Any, where: str | Path, failure: str) -> torch.nn.Module:
    """The model of the export's config built on the layout `meta`, its weights loaded strictly
    (CheckpointError starting with `failure` when they do not fit)."""
    from astrohpc.config import Config, from_dict
    from astrohpc.models.build import build

    cfg = from_dict(Config, payload["config"], source=f"{where} (config)")
    model = build(cfg.model, meta, n_bins=payload.get("n_bins") or None)
    missing, unexpected = model.load_state_dict(payload["model_state"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{failure} (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return model


def model_of(payload: dict[str, Any], path: str | Path) -> torch.nn.Module:
    """The model (eval mode) of an already read export: built from the layout it carries, no cube."""
    model = _with_weights(payload, training_meta(payload, str(path)), path,
                          f"{path}: weights do not fit the model built from its config; re-export it from its "
                          "training run")
    return model.eval()


def load_exported(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(model in eval mode, the exported dict) — see the module doc. Needs no cube."""
    payload = read_export(path)
    return model_of(payload, path), payload


def upgrade_export(path: str | Path, cube: str | Path, output: Optional[str | Path] = None) -> Path:
    """Rewrite an export of an older format as a self-contained one, reading the layout from
    `cube` (its training cube, or one with the same channels and grid); checks that the weights
    fit. Writes `output` (default: PATH with `.v2` before the suffix), atomically."""
    from astrohpc.data.cube import read_meta

    payload = load_payload(path)
    if payload.get("format") not in OLD_FORMATS:
        check_format(payload, path)  # an export of this format (nothing to upgrade) or a foreign file
    cube = Path(cube)
    if not cube.is_file():
        raise DataError(f"{cube}: no such cube; give the cube {path} was trained on (its config's train.cube)")
    meta = read_meta(cube)
    model = _with_weights(payload, meta, path, f"{path}: its weights do not fit a model built on {cube}: give its "
                                         "training cube")
    train_runs = [meta.run_names.index(r) for r in payload["run_split"]["train"] if r in meta.run_names]
    info = {k: v for k, v in payload.items() if k not in ("format", "model_state")}
    info.update(export_info(meta, payload["param_norm"], train_runs))
    path = Path(path)
    output = Path(output) if output else path.with_name(f"{path.stem}.v2{path.suffix}")
    return export_weights(output, model, info)
