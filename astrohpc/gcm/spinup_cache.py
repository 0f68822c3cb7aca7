"""Finished spin-up runs — and sweep tasks branched from them — kept outside any clone and reused
by later sweeps with the same spin-up (or the same task).

A 360-day ExoPlaSim spin-up costs ~8 minutes of one core; every `make demo` on a machine, and
every sweep of a design that shares it, would otherwise redo it. The key is the hash of what
determines the spin-up's result — the planet and gcm sections of its config and the ExoPlaSim
version (the run is bit-reproducible for a given binary) — never the run folder's name. Entries
are written to a temporary folder and renamed, so a killed copy is never taken for a finished one.

    $ASTROHPC_SPINUP_CACHE or $ASTROHPC_CACHE/spinups (default ~/.cache/astrohpc/spinups)/<key>/
    sweep tasks: $ASTROHPC_RUN_CACHE or $ASTROHPC_CACHE/runs/<key>/ (key: the task's planet and gcm settings, its
    restart file named by the spin-up's key)
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Optional

from astrohpc.config import to_dict
from astrohpc.gcm.run import is_finished, read_summary

log = logging.getLogger(__name__)
RESTORED_NOTE = "restored_from_cache.json"


CACHE_ENV = {"spinups": "ASTROHPC_SPINUP_CACHE", "runs": "ASTROHPC_RUN_CACHE"}


def cache_root(kind: str = "spinups") -> Path:
    """$ASTROHPC_SPINUP_CACHE (spin-ups) or $ASTROHPC_RUN_CACHE (sweep tasks), else
    $ASTROHPC_CACHE/<kind>, else ~/.cache/astrohpc/<kind>."""
    if os.environ.get(CACHE_ENV[kind]):
        return Path(os.environ[CACHE_ENV[kind]])
    base = os.environ.get("ASTROHPC_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "astrohpc") / kind


NEW_OPTIONAL_GCM_FIELDS = ("start_step",)
# fields added later, with the default they had implicitly before: equal to it, they leave the key as it was
NEW_DEFAULTED_GCM_FIELDS = {"mixed_layer_depth_m": 50.0, "sea_ice": True}


def spinup_key(cfg: Any, model_version: str) -> str:
    """Hash of the spin-up's planet and gcm settings and the model version (16 hex digits)."""
    settings = to_dict(cfg)
    # a field added with a default of None must not invalidate the spin-ups already cached
    gcm = {k: v for k, v in settings["gcm"].items() if not (k in NEW_OPTIONAL_GCM_FIELDS and v is None)
           and not (k in NEW_DEFAULTED_GCM_FIELDS and v == NEW_DEFAULTED_GCM_FIELDS[k])}
    blob = json.dumps({"planet": settings["planet"], "gcm": gcm, "model_version": model_version},
                      sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _copy_tree(src: Path, dst: Path) -> None:
    """Copy `src` to `dst` through a temporary sibling and a rename (dst must not exist)."""
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("work"))
    os.replace(tmp, dst)


def restore(key: str, run_dir: Path, kind: str = "spinups") -> Optional[dict]:
    """Copy the cached run `key` into `run_dir` (which must hold no finished run); its summary, or None."""
    entry = cache_root(kind) / key
    if not is_finished(entry):
        return None
    run_dir = Path(run_dir)
    if run_dir.exists():
        shutil.rmtree(run_dir)  # an unfinished or failed earlier attempt
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _copy_tree(entry, run_dir)
    from astrohpc.atomic_write import write_json

    write_json(run_dir / RESTORED_NOTE, {"cache_entry": str(entry), "key": key})
    log.info("run restored from %s", entry)
    return read_summary(run_dir)


def store(key: str, run_dir: Path, kind: str = "spinups") -> Optional[Path]:
    """Keep the finished run in `run_dir` under `key` (a no-op if already there); the entry."""
    entry = cache_root(kind) / key
    if is_finished(entry) or not is_finished(run_dir):
        return entry if is_finished(entry) else None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        _copy_tree(Path(run_dir), entry)
    except OSError as exc:  # another process stored it first, or the disk is full: the sweep goes on
        log.warning("run not cached (%s)", exc)
        return None
    return entry
