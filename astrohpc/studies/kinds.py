"""The study kinds: each is a module with

    expand(cfg) -> list[dict]                      the tasks (JSON-able; an "id" is added in order)
    run(task, cfg, study_dir) -> dict              one task's result (JSON-able), raised errors fail it
    aggregate(results, cfg, study_dir) -> dict     tables and figures from the finished results

Modules are imported when used, so `astrohpc study status` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from astrohpc.errors import ConfigError

KINDS = {
    "parity": "astrohpc.studies.parity",
    "ablation": "astrohpc.studies.ablation",
    "rollout": "astrohpc.studies.rollout_study",
    "calibration": "astrohpc.studies.calibration",
    "spinup": "astrohpc.studies.spinup",
    "climate": "astrohpc.studies.climate_loo",
}


def kind_module(kind: str) -> ModuleType:
    if kind not in KINDS:
        raise ConfigError(f"unknown study kind {kind!r}; implemented: {', '.join(KINDS)}")
    return importlib.import_module(KINDS[kind])
