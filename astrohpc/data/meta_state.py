"""A cube's metadata as plain data, so that an exported model carries its training cube's layout.

`meta_state(meta)` turns a CubeMeta (astrohpc.data.cube) into a dict of tensors, lists, numbers
and strings — what `torch.load(weights_only=True)` reads back — and `meta_from_state` rebuilds
an equal CubeMeta: channel table with units, grid and area weights, time axis, run parameters and
their sampling transforms, static fields, vertical coordinate and the normalisation statistics.
Arrays travel as float64/int64 tensors (exact); nothing here touches the cube's file.
"""

from __future__ import annotations

from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrohpc.errors import CheckpointError

VERSION = 1
_ARRAYS = ("time_count", "levels", "time_days", "time_step_s", "lat", "lon", "area_weight")
_DICTS_OF_ARRAYS = ("params", "static")
_PLAIN = ("variables", "level_kinds", "units", "cube_id", "run_names", "static_units", "param_transforms",
          "step_means")


def _to_tensor(value: Any) -> Any:
    if value is None:
        return None
    array = np.asarray(value)
    if array.dtype.kind in "iub":
        return torch.from_numpy(array.astype(np.int64).copy())
    if array.dtype.kind == "f":
        return torch.from_numpy(array.astype(np.float64).copy())
    return array.tolist()  # strings


def _to_array(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    return np.asarray(value)


def _tree(value: Any, leaf) -> Any:
    if isinstance(value, dict):
        return {str(k): _tree(v, leaf) for k, v in value.items()}
    if isinstance(value, (np.ndarray, torch.Tensor, list, tuple)) and not (
            isinstance(value, (list, tuple)) and value and isinstance(value[0], str)):
        return leaf(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


def meta_state(meta: Any) -> dict[str, Any]:
    """Everything of `meta` as plain data (see the module doc)."""
    state: dict[str, Any] = {"version": VERSION, "path": str(meta.path), "shape": list(meta.shape)}
    for name in _ARRAYS:
        state[name] = _to_tensor(getattr(meta, name))
    for name in _DICTS_OF_ARRAYS:
        state[name] = {k: _to_tensor(v) for k, v in getattr(meta, name).items()}
    for name in _PLAIN:
        value = getattr(meta, name)
        state[name] = dict(value) if isinstance(value, dict) else (list(value) if isinstance(value, list) else value)
    state["vertical"] = _tree(dict(meta.vertical), _to_tensor)
    state["stats"] = None if meta.stats is None else _tree(meta.stats, _to_tensor)
    return state


def meta_from_state(state: dict[str, Any], where: str = "") -> Any:
    """The CubeMeta of `meta_state`; CheckpointError naming `where` when the dict is not one."""
    from astrohpc.data.cube import CubeMeta

    if not isinstance(state, dict) or state.get("version") != VERSION:
        found = state.get("version") if isinstance(state, dict) else None
        raise CheckpointError(f"{where}: no readable cube layout (meta version {found!r}, expected {VERSION}); "
                              "re-export the model with `astrohpc export upgrade`")
    known = {f.name for f in dataclass_fields(CubeMeta)}
    kwargs: dict[str, Any] = {"path": Path(state["path"]), "shape": tuple(int(n) for n in state["shape"])}
    for name in _ARRAYS:
        kwargs[name] = _to_array(state[name])
    for name in _DICTS_OF_ARRAYS:
        kwargs[name] = {k: _to_array(v) for k, v in state[name].items()}
    for name in _PLAIN:
        kwargs[name] = state[name]
    kwargs["vertical"] = _tree(state["vertical"], _to_array)
    kwargs["stats"] = None if state["stats"] is None else _tree(state["stats"], _to_array)
    return CubeMeta(**{k: v for k, v in kwargs.items() if k in known})
