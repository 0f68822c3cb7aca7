"""Physics loss terms: gradients reach a model's weights through every term; config is strict."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from astrohpc.errors import ConfigError, DataError
from astrohpc.physics.losses import LOSS_TERMS, TERM_VARIABLES, PhysicsLoss

# How far the tiny model moves each field per unit of its output (levels scaled apart, so that a
# shift is not the same at every level and thicknesses change too).
SCALES = {"ps": 200.0, "ta": 2.0, "hus": 1e-3, "ua": 3.0, "va": 3.0, "zg": 20.0,
          "ntr": 6.0, "rst": 2.0, "rlut": 1.0, "rss": 4.0, "rls": 1.0, "hfss": 2.0, "hfls": 3.0}


class TinyStep(nn.Module):
    """after = before + scale · Linear(features): one per-pixel output moves every field, so every
    weight reaches every loss term."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 1)

    def forward(self, state: dict) -> dict:
        lat = torch.linspace(-1.0, 1.0, state["ps"].shape[-2])[:, None].expand_as(state["ps"])
        features = torch.stack([state["ts"] / 300.0 - 1.0, state["ps"] / 1e5 - 1.0, lat], dim=-1)
        out = self.linear(features)[..., 0]  # [B, lat, lon], both signs
        after = dict(state)
        for name, scale in SCALES.items():
            value = state[name]
            if value.ndim == 4:
                levels = torch.linspace(1.0, 2.0, value.shape[1])[:, None, None]
                after[name] = value + scale * levels * out[:, None]
            else:
                after[name] = value + scale * out
        return after


def test_gradients_reach_the_weights_through_every_term(cube_steps):
    c = cube_steps
    model = TinyStep()
    loss = PhysicsLoss({name: 1.0 for name in LOSS_TERMS})
    for name in LOSS_TERMS:
        model.zero_grad()
        terms = loss(c.before, model(c.before), c.grid, c.planet, c.step_s)
        assert set(terms) == {*LOSS_TERMS, "total"}
        value = terms[name]
        assert value.ndim == 0 and torch.isfinite(value) and float(value.detach()) > 0, name
        value.backward()
        for pname, param in model.named_parameters():
            assert param.grad is not None, (name, pname)
            assert torch.isfinite(param.grad).all(), (name, pname)
            assert float(param.grad.abs().min()) > 0, (name, pname, param.grad)
    model.zero_grad()
    loss(c.before, model(c.before), c.grid, c.planet, c.step_s)["total"].backward()
    assert all(float(p.grad.abs().min()) > 0 for p in model.parameters())


def test_terms_vanish_or_stay_small_on_the_gcm_step(cube_steps):
    """The GCM's own step: each term near its floor (float32 rounding, ~1 W m-2 of budget)."""
    c = cube_steps
    terms = PhysicsLoss({name: 1.0 for name in LOSS_TERMS})(c.before, c.after, c.grid, c.planet, c.step_s)
    assert float(terms["hydrostatic"]) < 1e-4  # m²
    assert float(terms["ideal_gas"]) < 1e-10
    assert float(terms["dry_mass"]) < 1e-12
    assert float(terms["humidity_negative"]) == 0.0
    assert float(terms["energy_budget"]) < 4.0  # (W m-2)²
    assert float(terms["toa_balance"]) < 1e-6  # ntr is rst + rlut, to float32 rounding


def test_total_is_the_weighted_sum_and_zero_weights_are_off(cube_steps):
    c = cube_steps
    loss = PhysicsLoss({"hydrostatic": 2.0, "ideal_gas": 1e6, "dry_mass": 0.0})
    model = TinyStep()
    with torch.no_grad():
        terms = loss(c.before, model(c.before), c.grid, c.planet, c.step_s)
    assert set(terms) == {"hydrostatic", "ideal_gas", "total"}
    torch.testing.assert_close(terms["total"], 2.0 * terms["hydrostatic"] + 1e6 * terms["ideal_gas"])
    assert loss.required_variables == sorted(set(TERM_VARIABLES["hydrostatic"]) | set(TERM_VARIABLES["ideal_gas"]))
    empty = PhysicsLoss({})(c.before, c.after, c.grid, c.planet, c.step_s)
    assert set(empty) == {"total"} and float(empty["total"]) == 0.0


def test_config_is_strict():
    with pytest.raises(ConfigError, match="unknown term 'hydrostatics'; valid: hydrostatic, energy_budget"):
        PhysicsLoss({"hydrostatics": 1.0})
    with pytest.raises(ConfigError, match="dry_mass must be finite and >= 0"):
        PhysicsLoss({"dry_mass": -1.0})
    with pytest.raises(ConfigError, match="ideal_gas"):
        PhysicsLoss({"ideal_gas": float("nan")})


def test_a_term_names_the_fields_it_lacks(cube_steps):
    c = cube_steps
    after = {k: v for k, v in c.after.items() if k not in ("rls", "hfss")}
    with pytest.raises(DataError, match="lacks rls, hfss"):
        PhysicsLoss({"energy_budget": 1.0})(c.before, after, c.grid, c.planet, c.step_s)


def test_names_agree_with_the_model_config():
    """models/settings.py checks config names without importing torch: its lists must be ours."""
    from astrohpc.models import settings
    from astrohpc.physics.correctors import CORRECTORS

    assert set(settings.LOSS_TERMS) == set(LOSS_TERMS)
    assert set(settings.CORRECTORS) == set(CORRECTORS)


def test_gradients_stay_finite_at_an_exact_zero(small_grid):
    """A residual of exactly 0 (here a 0 K column at zg = 0: unphysical, but exact in floating
    point) gives a finite gradient (the square of an RMS would give NaN there)."""
    from astrohpc.physics.constants import PlanetConstants
    from astrohpc.planet import Planet

    planet = PlanetConstants.from_planet(Planet())
    shape = (1, 5, *small_grid.area_weight.shape)
    ta = torch.zeros(shape, dtype=torch.float64, requires_grad=True)
    zeros = torch.zeros(shape, dtype=torch.float64)
    state = {"ta": ta, "hus": zeros, "zg": zeros, "sg": zeros[:, 0]}
    term = PhysicsLoss({"hydrostatic": 1.0})(state, state, small_grid, planet, 60.0)["hydrostatic"]
    term.backward()
    assert float(term.detach()) == 0.0 and torch.isfinite(ta.grad).all()
