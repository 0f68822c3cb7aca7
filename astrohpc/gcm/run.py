"""One reference-GCM simulation in its own run directory, ending in summary.json.

Layout of a run directory:

    config.yaml, provenance.json   the resolved config and where it ran (written first)
    exoplasim.log                  the model's own output
    output/                        NetCDF means and snapshots, restart file
    summary.json                   written LAST and atomically

A run is finished exactly when summary.json says `"status": "finished"`; a failed run
writes `"status": "failed"` with a `"reason"`, and a killed one leaves none.

Its cost (astrohpc.cost_clock) in two measures: `core_seconds_per_simulated_day` = wall time ×
gcm.ncpus ÷ days (what the allocation held), `cpu_seconds_per_simulated_day` = CPU time of this
process and its children (the MPI ranks, the postprocessor) ÷ days, the measure the surrogates'
cost is taken in.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Optional

from astrohpc.atomic_write import write_json
from astrohpc.checksum import sha256_file
from astrohpc.cost_clock import cost_clock
from astrohpc.errors import AstrohpcError, GCMError
from astrohpc.provenance import write_run_metadata

SUMMARY = "summary.json"
FINISHED, FAILED = "finished", "failed"


class Terminated(BaseException):
    """A signal ended the run (scancel, preemption, time limit). A BaseException so that the
    model's own `except Exception` crash handling cannot swallow it."""


def read_summary(run_dir: Path) -> Optional[dict]:
    """The summary of a run, or None if there is none (never started, running or killed)."""
    path = Path(run_dir) / SUMMARY
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_finished(run_dir: Path) -> bool:
    summary = read_summary(run_dir)
    return bool(summary) and summary.get("status") == FINISHED


def write_failed_summary(run_dir: Path, reason: str, *, index: Optional[int] = None,
                         point: Optional[dict] = None, model: Optional[str] = None) -> None:
    """Record a failure (never overwrites a finished run)."""
    if is_finished(run_dir):
        return
    write_json(Path(run_dir) / SUMMARY, {"status": FAILED, "reason": reason, "model": model,
                                         "index": index, "point": point or {}})


def run_simulation(cfg: Any, run_dir: str | Path, *, index: Optional[int] = None,
                   point: Optional[dict] = None, force: bool = False) -> dict:
    """Run `cfg` (astrohpc.config.Config) in `run_dir` and return its summary.

    A run directory that already holds a finished run is left alone (its summary is returned)
    unless `force`. Any failure writes a failed summary and raises GCMError.
    """
    from astrohpc.gcm.runner import get_runner

    run_dir = Path(run_dir)
    existing = read_summary(run_dir)
    if existing and existing.get("status") == FINISHED and not force:
        return existing
    runner = get_runner(cfg.gcm.model)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / SUMMARY).unlink(missing_ok=True)
    for stale in ("work", "output", f"{runner.name}_crashed"):  # leftovers of an earlier attempt
        shutil.rmtree(run_dir / stale, ignore_errors=True)
    try:
        provenance = write_run_metadata(run_dir, cfg, extra={"index": index, "point": point or {}})
        with cost_clock(cfg.gcm.ncpus) as cost:
            result = runner.run(cfg, run_dir)
        wall, days = cost["wall_s"], result.simulated_days
        files = [{"path": rel, "kind": kind, "bytes": (run_dir / rel).stat().st_size,
                  "sha256": sha256_file(run_dir / rel)} for rel, kind in result.files]
        summary = {
            "status": FINISHED,
            "model": runner.name,
            "model_version": result.model_version,
            "index": index,
            "point": point or {},
            "planet": dataclasses.asdict(cfg.planet),
            "gcm": dataclasses.asdict(cfg.gcm),
            "simulated_days": result.simulated_days,
            "wall_time_s": round(wall, 3),
            "cpu_time_s": round(cost["cpu_s"], 3),
            # wall × ranks: what the allocation held (setup, postprocessor and waiting included)
            "core_seconds_per_simulated_day": round(cost["wall_core_s"] / days, 4),
            # CPU time of this process and its children (the ranks, the postprocessor): the surrogates' measure
            "cpu_seconds_per_simulated_day": round(cost["cpu_s"] / days, 4),
            "files": files,
            "provenance": provenance,
            **({"extra": result.extra} if result.extra else {}),
        }
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, (AstrohpcError, Terminated)) else f"{type(exc).__name__}: {exc}"
        write_failed_summary(run_dir, reason or type(exc).__name__, index=index, point=point,
                             model=cfg.gcm.model)
        if isinstance(exc, Exception) and not isinstance(exc, AstrohpcError):
            raise GCMError(f"run {run_dir} failed: {reason}") from exc
        raise
    write_json(run_dir / SUMMARY, summary)
    return summary
