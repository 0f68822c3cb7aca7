"""The small interface every reference GCM implements, and the registry that picks one.

A runner turns one resolved config (planet + gcm sections) into NetCDF files in a run
directory. Everything around that (run directories, provenance, summary.json, sweeps,
Slurm) is model-agnostic and lives in run.py / sweep.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from astrohpc.errors import GCMError


@dataclass
class RunOutput:
    """What a runner produced. `files`: (path relative to the run dir, kind) with kind one of
    "means", "snapshots", "restart"."""

    model_version: str
    simulated_days: int
    files: list[tuple[str, str]]
    extra: dict[str, Any] = field(default_factory=dict)


class GCMRunner(Protocol):
    """One reference GCM."""

    name: str

    def build(self, gcm: Any) -> dict[str, Any]:
        """Compile or locate the model for these settings (may take minutes); return build info."""

    def check_ready(self, gcm: Any) -> None:
        """Raise GCMError (telling the user what to run) if `run` would need to compile."""

    def run(self, cfg: Any, run_dir: Path) -> RunOutput:
        """Run one simulation of `cfg` (astrohpc.config.Config) inside `run_dir`; raise GCMError on failure."""


def get_runner(name: str) -> GCMRunner:
    """The runner registered for `gcm.model`."""
    if name == "exoplasim":
        from astrohpc.gcm.exoplasim_runner import ExoPlaSimRunner

        return ExoPlaSimRunner()
    raise GCMError(f"gcm.model {name!r} has no runner; available: exoplasim")
