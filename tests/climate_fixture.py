"""Session fixtures of a tiny real climate sweep and its climate study (with the GP export).

`climate_sweep`: 6 cold-start ExoPlaSim planets x 6 days with daily means (configs/gcm/skill.yaml
scaled down: 5 inside a maximin hypercube, task-0005 outside it). `climate_study`: the climate
study on it (leave-one-out, the last 3 days as each run's climate, ts and rlut scored), run locally
and aggregated, so that STUDY/export/gp.pt exists. Used by tests/studies/test_climate_loo.py and
tests/predict/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIMATE_AVERAGE_DAYS = 3


@pytest.fixture(scope="session")
def climate_sweep(tmp_path_factory, smoke_gcm_run):  # smoke_gcm_run: the ExoPlaSim build exists
    from astrohpc.config import load_config
    from astrohpc.gcm.manifest import aggregate
    from astrohpc.gcm.sweep import plan_sweep, write_plan
    from astrohpc.gcm.sweep import run_local as run_sweep

    root = tmp_path_factory.mktemp("climate")
    gcm = load_config(REPO / "configs" / "gcm" / "skill.yaml",
                      [f"run.root={root}", "run.name=sweep", "sweep.samples=5", "gcm.days=6", "sweep.spinup_days=0",
                       "sweep.cache_tasks=false", "gcm.snapshot_interval_days=0"])
    plan = plan_sweep(gcm)
    write_plan(plan, gcm)
    assert sorted(s for _, s, _ in run_sweep(plan.sweep_dir, workers=2)) == ["finished"] * 6
    assert aggregate(plan.sweep_dir)["datacube_means"]["converted"]
    return plan.sweep_dir


def climate_cfg(root, sweep, **study):
    from astrohpc.config import Config, from_dict

    return from_dict(Config, {
        "run": {"root": str(root), "name": "climate", "seed": 0},
        "model": {"task": "climate", "architecture": "gp", "gp": {"restarts": 1, "max_components": 3}},
        "study": {"sweep": str(sweep), "average_days": CLIMATE_AVERAGE_DAYS, "outside_runs": ["task-0005"],
                  "score_channels": ["ts", "rlut"], **study}}, source="test")


@pytest.fixture(scope="session")
def climate_study(climate_sweep, tmp_path_factory) -> Path:
    from astrohpc.studies.execute import aggregate_study, plan_study, run_local

    study = plan_study("climate", climate_cfg(tmp_path_factory.mktemp("climate-study"), climate_sweep))
    assert sorted(s for _, s, _ in run_local(study)) == ["finished"] * 6
    assert aggregate_study(study)["complete"]
    return study
