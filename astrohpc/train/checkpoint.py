"""Checkpoint files: write atomically with a sha256 sidecar, keep the newest few, resume from the newest valid one.

Layout in a checkpoint directory (one writer: rank 0):

    ckpt-000001200.pt          torch.save of a dict, written through atomic_path
    ckpt-000001200.pt.sha256   "<hex>  ckpt-000001200.pt" (sha256sum format), written after the .pt

A sidecar means a complete file: a crash between the two writes leaves a .pt without one, which
is ignored. Everything is read back with torch.load(weights_only=True), so a checkpoint holds only
tensors, numbers, strings, None and dicts/lists/tuples/sets of those; save_checkpoint checks that
before writing and names the offending key, rather than writing a file a resume cannot load.
The usual state_dicts pass as they are: nn.Module, AdamW, GradScaler, and OneCycleLR, which since
torch 2.2 stores its annealing function by name (`_anneal_func_type`) instead of a bound method,
so no sanitising is needed; capture_rng() turns numpy's state array into a tensor for the same reason.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from astrohpc.atomic_write import atomic_path, write_text
from astrohpc.checksum import sha256_file
from astrohpc.errors import CheckpointError

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d+)\.pt(\.sha256)?$")
SIDECAR_SUFFIX = ".sha256"

# What torch's weights_only unpickler rebuilds (exact types: an IntEnum, a namedtuple, a numpy
# scalar or a Path is rejected at load time, so it is rejected here at save time).
_LEAF_TYPES = (bool, int, float, complex, str, bytes, bytearray, type(None), torch.dtype, torch.device, torch.Size)


def capture_rng() -> dict:
    """This process's RNG states: torch CPU, every CUDA device (when CUDA is available), numpy's
    global RandomState and python's `random`, as types torch.load(weights_only=True) accepts."""
    np_name, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "bit_generator": str(np_name),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),  # uint32 values fit in int64
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict) -> None:
    """Inverse of capture_rng: afterwards the next torch/numpy/random draws equal those after the capture.

    CUDA states are restored for the devices present; fewer or no devices than at capture time is
    logged (the draws on the missing devices cannot be reproduced).
    """
    try:
        torch_state = state["torch"]
        np_state = state["numpy"]
        py_state = state["python"]
        numpy_tuple = (
            np_state["bit_generator"],
            np.asarray(torch.as_tensor(np_state["keys"]).cpu().numpy(), dtype=np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
        python_tuple = (int(py_state["version"]), tuple(int(v) for v in py_state["internal"]), py_state["gauss_next"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(
            f"RNG state is incomplete or malformed ({exc!r}); it must come from capture_rng()"
        ) from exc
    torch.set_rng_state(torch_state.cpu() if isinstance(torch_state, torch.Tensor) else torch.as_tensor(torch_state))
    np.random.set_state(numpy_tuple)
    random.setstate(python_tuple)
    _restore_cuda_rng(state.get("cuda"))


def _restore_cuda_rng(cuda_states: list | None) -> None:
    if cuda_states is None:
        return
    if not torch.cuda.is_available():
        logger.info("checkpoint holds %d CUDA RNG states but CUDA is not available; not restored", len(cuda_states))
        return
    devices = torch.cuda.device_count()
    if devices != len(cuda_states):
        logger.warning(
            "checkpoint holds CUDA RNG states for %d devices, this process sees %d; restoring the first %d",
            len(cuda_states), devices, min(devices, len(cuda_states)),
        )
    for device, cuda_state in enumerate(cuda_states[:devices]):
        torch.cuda.set_rng_state(cuda_state.cpu(), device)


def checkpoint_path(directory: str | os.PathLike, step: int) -> Path:
    """`<directory>/ckpt-<step:09d>.pt`."""
    return Path(directory) / f"ckpt-{step:09d}.pt"


def sidecar_path(path: str | os.PathLike) -> Path:
    """The sha256 file beside a checkpoint: `<file>.sha256`."""
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def save_checkpoint(
    directory: str | os.PathLike,
    step: int,
    state: dict,
    keep: int = 3,
    rank_states: list[dict] | None = None,
) -> Path:
    """Write `state` (plus `rank_states`, one dict per rank, under "rank_states") as the checkpoint of
    `step`, then its sha256 sidecar, then remove all but the newest `keep` checkpoints up to `step`.

    Call on one rank only. Checkpoints with a step above `step` (left by a run that was resumed from
    an older one) are not removed, but logged: a later resume would prefer them.
    Raises CheckpointError when `state` holds something torch.load(weights_only=True) would reject.
    """
    if step < 0:
        raise ValueError(f"checkpoint step must be >= 0, got {step}")
    if keep < 1:
        raise ValueError(f"keep must be >= 1 (checkpoints to keep), got {keep}")
    payload = dict(state)
    if rank_states is not None:
        if "rank_states" in payload:
            raise ValueError("state already has a 'rank_states' key; pass per-rank states either way, not both")
        payload["rank_states"] = list(rank_states)
    check_weights_only(payload)

    path = checkpoint_path(directory, step)
    sidecar = sidecar_path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
        digest = sha256_file(tmp)
        # Re-saving a step: the old sidecar must not vouch for the .pt about to replace its file.
        sidecar.unlink(missing_ok=True)
    write_text(sidecar, f"{digest}  {path.name}\n")
    _prune(Path(directory), step, keep)
    return path


def check_weights_only(obj: Any, where: str = "state") -> None:
    """Raise CheckpointError naming the first value in `obj` that torch.load(weights_only=True) rejects."""
    if isinstance(obj, torch.Tensor) or type(obj) in _LEAF_TYPES:
        return
    if type(obj) in (dict, OrderedDict):
        for key, value in obj.items():
            check_weights_only(key, f"{where} key {key!r}")
            check_weights_only(value, f"{where}[{key!r}]")
        return
    if type(obj) in (list, tuple, set):
        for index, value in enumerate(obj):
            check_weights_only(value, f"{where}[{index}]")
        return
    raise CheckpointError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which torch.load(weights_only=True) "
        "rejects; store it as a tensor, a plain number/string, or a dict/list of those"
    )


def list_checkpoints(directory: str | os.PathLike) -> list[Path]:
    """Complete checkpoints (a .pt with its sidecar) in `directory`, oldest first; [] when there is none."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("ckpt-*.pt") if _step_of(p) is not None and sidecar_path(p).is_file()]
    return sorted(found, key=_step_of)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Verify one checkpoint against its sidecar and load it with weights_only=True.

    Raises CheckpointError when the file or sidecar is missing, the sha256 differs, or loading fails.
    """
    path = Path(path)
    sidecar = sidecar_path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if not sidecar.is_file():
        raise CheckpointError(f"{path}: no checksum file {sidecar.name}, so the save did not finish")
    expected = sidecar.read_text(encoding="utf-8").split(maxsplit=1)[0] if sidecar.stat().st_size else ""
    actual = sha256_file(path)
    if actual != expected:
        raise CheckpointError(
            f"{path}: sha256 {actual[:16]}... does not match {sidecar.name} ({expected[:16] or 'empty'}...); "
            "the file is truncated or corrupt"
        )
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a bad file; all mean "not loadable"
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise CheckpointError(f"{path}: torch.load(weights_only=True) failed: {first_line}") from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a checkpoint dict")
    return obj


def load_latest(directory: str | os.PathLike, map_location: Any = "cpu") -> tuple[dict, Path] | None:
    """The newest valid checkpoint in `directory` and its path; None when there is no complete one.

    An invalid one (truncated, sha256 mismatch, not loadable) is skipped with a warning and the next
    older tried. Raises CheckpointError when checkpoints exist but none is valid.
    """
    directory = Path(directory)
    candidates = list_checkpoints(directory)
    if not candidates:
        return None
    for path in reversed(candidates):
        try:
            return load_checkpoint(path, map_location), path
        except CheckpointError as exc:
            logger.warning("skipping checkpoint %s: %s", path.name, exc)
    raise CheckpointError(
        f"{directory}: none of its {len(candidates)} checkpoints is valid ({candidates[0].name} .. "
        f"{candidates[-1].name}; see the warnings for why); delete them to start the run fresh, "
        "or resume from a copy of an intact checkpoint directory"
    )


def _step_of(path: Path) -> int | None:
    match = _NAME.match(path.name)
    return int(match.group(1)) if match else None


def _prune(directory: Path, step: int, keep: int) -> None:
    """Keep the newest `keep` complete checkpoints up to `step`; remove older ones, their leftovers
    (a .pt without sidecar, a sidecar without .pt) and temporary files of writers that were killed."""
    complete = [p for p in list_checkpoints(directory) if _step_of(p) <= step]
    kept_steps = {_step_of(p) for p in complete[-keep:]} | {step}
    newer = sorted({s for p in directory.glob("ckpt-*") if (s := _step_of(p)) is not None and s > step})
    if newer:
        logger.warning(
            "%s holds checkpoints newer than step %d (steps %s), left from an earlier run; a resume would "
            "prefer them: delete them if this run supersedes them", directory, step, newer,
        )
    # Sidecars first: a crash half-way leaves a .pt without one, which is ignored.
    stale = [p for p in directory.glob("ckpt-*") if (s := _step_of(p)) is not None and s < step and s not in kept_steps]
    for path in sorted(stale, key=lambda p: not p.name.endswith(SIDECAR_SUFFIX)):
        path.unlink(missing_ok=True)
    for tmp in directory.glob(".ckpt-*.tmp"):
        tmp.unlink(missing_ok=True)
