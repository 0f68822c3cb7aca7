"""Parameter designs -> points -> task table (pure; no model runs)."""

from __future__ import annotations

import pytest
from tests_gcm_paths import DEMO_CONFIG

from astrohpc.config import load_config
from astrohpc.errors import ConfigError
from astrohpc.gcm.design import design_points
from astrohpc.gcm.settings import SweepSettings
from astrohpc.gcm.sweep import plan_sweep


def test_grid_is_the_product_in_key_order():
    points = design_points(SweepSettings(design="grid", parameters={
        "planet.rotation_period_days": [1.0, 5.0], "planet.pCO2_bar": [4e-4, 1e-2, 0.1]}))
    assert len(points) == 6
    assert points[0] == {"planet.rotation_period_days": 1.0, "planet.pCO2_bar": 4e-4}
    assert points[-1] == {"planet.rotation_period_days": 5.0, "planet.pCO2_bar": 0.1}


@pytest.mark.parametrize("design", ["sobol", "lhs"])
def test_samplers_are_seeded_in_bounds_and_log_scaled(design):
    sweep = SweepSettings(design=design, samples=16, seed=3, log_scale=["planet.pN2_bar"],
                          parameters={"planet.instellation_W_m2": [400, 2400], "planet.pN2_bar": [0.1, 10]})
    points = design_points(sweep)
    assert points == design_points(sweep)  # same seed, same points
    assert points != design_points(SweepSettings(**{**sweep.__dict__, "seed": 4}))
    s = [p["planet.instellation_W_m2"] for p in points]
    n = [p["planet.pN2_bar"] for p in points]
    assert len(points) == 16 and min(s) >= 400 and max(s) <= 2400 and min(n) >= 0.1 and max(n) <= 10
    assert sum(x < 1.0 for x in n) >= 5  # log-uniform: about half below the geometric midpoint


def test_unknown_keys_fail_the_whole_sweep_with_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'planet.instellation_W_m2'"):
        design_points(SweepSettings(design="grid", parameters={"planet.instelation_W_m2": [1.0]}))
    with pytest.raises(ConfigError, match="SECTION.FIELD"):
        design_points(SweepSettings(design="list", points=[{"slurm.mem": "2G"}]))
    with pytest.raises(ConfigError, match=r"\[low, high\]"):
        design_points(SweepSettings(design="lhs", samples=2, parameters={"planet.pN2_bar": [2, 1]}))


def test_invalid_values_fail_only_their_task():
    cfg = load_config(DEMO_CONFIG, ["sweep.design=list", "sweep.parameters={}",
                                    "sweep.points=[{planet.instellation_W_m2: 900}, {planet.instellation_W_m2: -1}]"])
    plan = plan_sweep(cfg)
    assert [t["run_dir"] for t in plan.tasks] == ["task-0000", "task-0001"]
    assert "invalid" not in plan.tasks[0]
    assert "instellation_W_m2 must be >= 0" in plan.tasks[1]["invalid"]


def test_demo_config_is_eight_30_day_runs_branched_from_a_year_of_spin_up():
    cfg = load_config(DEMO_CONFIG)
    plan = plan_sweep(cfg)
    assert len(plan.tasks) == 8 and cfg.gcm.days == 30 and cfg.sweep.spinup_days >= 360
    assert {k for t in plan.tasks for k in t["point"]} == {"planet.rotation_period_days", "planet.instellation_W_m2"}
    # eight distinct planets (no two runs share a parameter value), inside the stated ranges
    periods = [t["point"]["planet.rotation_period_days"] for t in plan.tasks]
    fluxes = [t["point"]["planet.instellation_W_m2"] for t in plan.tasks]
    assert len(set(periods)) == len(set(fluxes)) == 8
    assert 1.0 <= min(periods) and max(periods) <= 10.0 and 1100.0 <= min(fluxes) and max(fluxes) <= 1450.0
    # the cube holds what the physics needs
    assert {"rsdt", "rlut", "hfss", "zg"} <= set(cfg.data.variables) and cfg.data.static_variables == ["sg", "lsm"]
