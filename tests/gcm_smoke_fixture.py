"""Session fixture `smoke_gcm_run`: a finished ExoPlaSim run of configs/gcm/smoke.yaml.

Import it into a conftest.py (`from tests.gcm_smoke_fixture import smoke_gcm_run`). The model
is compiled at most once per machine (cached under ~/.cache/astrohpc/exoplasim, or
$ASTROHPC_CACHE); the 5-day run itself takes a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = REPO / "configs" / "gcm" / "smoke.yaml"


@pytest.fixture(scope="session")
def smoke_gcm_run(tmp_path_factory) -> Path:
    """The run directory of a finished smoke run (summary.json, output/exoplasim.nc,
    output/exoplasim_snapshot.nc, output/exoplasim_restart)."""
    from astrohpc.config import load_config
    from astrohpc.gcm.run import run_simulation
    from astrohpc.gcm.runner import get_runner

    run_dir = tmp_path_factory.mktemp("gcm") / "smoke"
    cfg = load_config(SMOKE_CONFIG, [f"run.root={run_dir.parent}"])
    get_runner(cfg.gcm.model).build(cfg.gcm)
    summary = run_simulation(cfg, run_dir)
    assert summary["status"] == "finished", summary
    return run_dir
