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


@pytest.mark.parametrize("design", ["sobol", "lhs", "maximin-lhs"])
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


def test_maximin_hypercube_is_a_latin_hypercube_spread_wider_than_a_plain_one():
    import numpy as np
    from scipy.spatial.distance import pdist
    from scipy.stats import qmc

    from astrohpc.gcm.design import maximin_lhs

    unit = maximin_lhs(2, 20, seed=5)
    # one point in each of the 20 strata of each axis
    for axis in range(2):
        assert sorted(np.floor(unit[:, axis] * 20).astype(int).tolist()) == list(range(20))
    # its closest pair is farther apart than that of every plain hypercube drawn from 20 other seeds
    plain = [pdist(qmc.LatinHypercube(d=2, seed=s).random(20)).min() for s in range(100, 120)]
    assert pdist(unit).min() > max(plain)


def test_listed_points_follow_a_sampled_design():
    outside = {"planet.rotation_period_days": 16.0, "planet.instellation_W_m2": 1500.0}
    sweep = SweepSettings(design="maximin-lhs", samples=6, seed=1, points=[outside],
                          parameters={"planet.rotation_period_days": [1.0, 10.0],
                                      "planet.instellation_W_m2": [1100.0, 1450.0]})
    points = design_points(sweep)
    assert len(points) == 7 and points[-1] == outside
    assert all(1.0 <= p["planet.rotation_period_days"] <= 10.0 for p in points[:-1])
    with pytest.raises(ConfigError, match="unknown sweep key"):
        design_points(SweepSettings(**{**sweep.__dict__, "points": [{"planet.rotaton_period_days": 2.0}]}))
