"""Hard correctors: exact conservation on a perturbed "prediction" of a real GCM step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from astrohpc.errors import ConfigError, DataError
from astrohpc.physics.correctors import (
    CORRECTORS,
    ORDER,
    CorrectorChain,
    dry_mass_corrector,
    energy_corrector,
    humidity_corrector,
)
from astrohpc.physics.energy import energy_budget_residual
from astrohpc.physics.humidity import negative_water
from astrohpc.physics.mass import global_dry_mass, global_water_mass


def as64(state: dict) -> dict:
    return {k: v.to(torch.float64) for k, v in state.items()}


def prediction(cube_steps, seed: int = 0) -> tuple[dict, dict]:
    """(before, after) in float64: the GCM's step t -> t+1 with model-like errors in `after`:
    ps, ta, winds and fluxes off, humidity partly negative (the cold start's q is ~0)."""
    gen = torch.Generator().manual_seed(seed)
    before, after = as64(cube_steps.before), as64(cube_steps.after)
    noise = lambda like, scale: scale * torch.randn(like.shape, generator=gen, dtype=torch.float64)  # noqa: E731
    after["ps"] = after["ps"] * (1.0 + noise(after["ps"], 1e-3)) + 30.0
    after["ta"] = after["ta"] + noise(after["ta"], 0.5) + 0.2
    after["hus"] = after["hus"] + 2e-4 + noise(after["hus"], 3e-4)
    for name in ("ua", "va"):
        after[name] = after[name] + noise(after[name], 2.0)
    for name in ("ntr", "rss", "rls", "hfss", "hfls"):
        after[name] = after[name] + noise(after[name], 5.0)
    return before, after


def test_dry_mass_corrector_exact_and_idempotent(cube_steps):
    c = cube_steps
    before, after = prediction(c)
    target = global_dry_mass(before, c.grid, c.planet)
    assert float(((global_dry_mass(after, c.grid, c.planet) - target) / target).abs().min()) > 1e-5
    fixed = dry_mass_corrector(before, after, c.grid, c.planet, c.step_s)
    assert set(fixed) == {"ps"}
    once = {**after, **fixed}
    relative = (global_dry_mass(once, c.grid, c.planet) - target) / target
    assert float(relative.abs().max()) <= 1e-12
    twice = dry_mass_corrector(before, once, c.grid, c.planet, c.step_s)["ps"]
    torch.testing.assert_close(twice, once["ps"], rtol=1e-14, atol=0.0)
    # a multiplicative fix: the pattern of ps is kept
    ratio = once["ps"] / after["ps"]
    torch.testing.assert_close(ratio, ratio[:, :1, :1].expand_as(ratio), rtol=1e-14, atol=0.0)


def test_corrector_returns_the_dtype_it_got(cube_steps):
    c = cube_steps
    before, after = prediction(c)
    after32 = {k: v.float() for k, v in after.items()}
    for corrector in CORRECTORS.values():
        for name, value in corrector(before, after32, c.grid, c.planet, c.step_s).items():
            assert value.dtype == torch.float32, name


def test_energy_corrector_closes_the_budget(cube_steps):
    c = cube_steps
    before, after = prediction(c)
    step_s = torch.full((8,), c.step_s, dtype=torch.float64)
    step_s[::2] = 43200.0  # per-sample step lengths
    assert float(energy_budget_residual(before, after, c.grid, c.planet, step_s).abs().min()) > 1.0
    fixed = energy_corrector(before, after, c.grid, c.planet, step_s)
    assert set(fixed) == {"ta"}
    closed = energy_budget_residual(before, {**after, **fixed}, c.grid, c.planet, step_s)
    assert float(closed.abs().max()) <= 1e-6  # W m-2
    # one increment per sample, the same at every level and column
    increment = fixed["ta"] - after["ta"]
    torch.testing.assert_close(increment, increment[:, :1, :1, :1].expand_as(increment), rtol=0.0, atol=1e-9)
    assert increment[:, 0, 0, 0].unique().numel() == 8


def test_energy_corrector_needs_the_surface_fluxes(cube_steps):
    c = cube_steps
    before, after = prediction(c)
    del after["hfls"], after["rss"]
    with pytest.raises(DataError, match="lacks rss, hfls"):
        energy_corrector(before, after, c.grid, c.planet, c.step_s)


def test_humidity_corrector_conserves_water_and_leaves_no_negative(cube_steps):
    c = cube_steps
    before, after = prediction(c)
    assert float(negative_water(after, c.grid, c.planet).min()) > 0
    water = global_water_mass(after, c.grid, c.planet)
    assert float(water.min()) > 0
    fixed = humidity_corrector(before, after, c.grid, c.planet, c.step_s)
    assert set(fixed) == {"hus"}
    assert float(fixed["hus"].min()) >= 0.0
    corrected = {**after, **fixed}
    np.testing.assert_allclose(global_water_mass(corrected, c.grid, c.planet).numpy(), water.numpy(), rtol=1e-12)
    # water conserved and ps untouched: the global dry mass is unchanged too
    np.testing.assert_allclose(global_dry_mass(corrected, c.grid, c.planet).numpy(),
                               global_dry_mass(after, c.grid, c.planet).numpy(), rtol=1e-14)
    # a field without negative values is left exactly as it is
    again = humidity_corrector(before, corrected, c.grid, c.planet, c.step_s)["hus"]
    assert torch.equal(again, corrected["hus"])


def test_humidity_corrector_clips_when_the_water_is_negative(cube_steps):
    c = cube_steps
    before, after = prediction(c)
    after["hus"] = after["hus"] - 1e-3  # global total < 0: no non-negative field holds it
    fixed = humidity_corrector(before, after, c.grid, c.planet, c.step_s)["hus"]
    torch.testing.assert_close(fixed, after["hus"].clamp_min(0.0), rtol=0.0, atol=0.0)


def test_chain_applies_in_order_and_closes_everything(cube_steps):
    c = cube_steps
    before, after = prediction(c)
    untouched = {k: v.clone() for k, v in after.items()}
    chain = CorrectorChain(["energy", "humidity", "dry_mass"])
    assert chain.names == list(ORDER) == ["humidity", "dry_mass", "energy"]
    state = chain(before, after, c.grid, c.planet, c.step_s)
    assert set(state) == set(after)
    assert all(torch.equal(after[k], untouched[k]) for k in after)  # inputs not modified
    target = global_dry_mass(before, c.grid, c.planet)
    assert float(((global_dry_mass(state, c.grid, c.planet) - target) / target).abs().max()) <= 1e-12
    assert float(energy_budget_residual(before, state, c.grid, c.planet, c.step_s).abs().max()) <= 1e-6
    assert float(state["hus"].min()) >= 0.0
    assert torch.equal(state["ua"], after["ua"])  # what no corrector changes comes through
    # a selection applies only itself
    only_mass = CorrectorChain(["dry_mass"])(before, after, c.grid, c.planet, c.step_s)
    assert torch.equal(only_mass["ta"], after["ta"]) and torch.equal(only_mass["hus"], after["hus"])


def test_chain_rejects_unknown_and_repeated_names():
    with pytest.raises(ConfigError, match="unknown corrector 'mass'; valid: humidity, dry_mass, energy"):
        CorrectorChain(["mass"])
    with pytest.raises(ConfigError, match="more than once"):
        CorrectorChain(["energy", "energy"])
    assert set(ORDER) == set(CORRECTORS)
    assert CorrectorChain([]).names == []



def test_energy_corrector_with_step_mean_fluxes_uses_the_fluxes_into_after(cube_steps):
    """On a step-mean cube `after` holds F averaged over the step: the corrector closes
    ΔE/step = F(after) alone, whatever `before`'s fluxes are (the trapezoid would mix in the
    instant of the earlier snapshot)."""
    from astrohpc.physics.energy import atmosphere_net_flux, column_energy
    from astrohpc.physics.grid import global_mean

    c = cube_steps
    before, after = prediction(c)
    before_other = {**before, "ntr": before["ntr"] + 40.0}  # another instant of the sun: F(before) differs
    fixed = CorrectorChain(["energy"], "step_means")(before_other, after, c.grid, c.planet, c.step_s)
    # reference by hand: the global-mean column energy changes by the mean flux into `after` × step
    gain = global_mean(column_energy(fixed, c.grid, c.planet) - column_energy(before, c.grid, c.planet), c.grid)
    wanted = global_mean(atmosphere_net_flux(after), c.grid) * c.step_s
    np.testing.assert_allclose((gain / c.step_s).numpy(), (wanted / c.step_s).numpy(), rtol=0, atol=1e-6)
    assert float(energy_budget_residual(before_other, fixed, c.grid, c.planet, c.step_s,
                                        "step_means").abs().max()) <= 1e-6
    # the snapshot rule asks for the mean of both ends instead: ½(F(before) − F(after)) more per second
    trapezoid = CorrectorChain(["energy"])(before_other, after, c.grid, c.planet, c.step_s)
    delta = global_mean(column_energy(trapezoid, c.grid, c.planet) - column_energy(fixed, c.grid, c.planet), c.grid)
    half_gap = 0.5 * global_mean(atmosphere_net_flux(before_other) - atmosphere_net_flux(after), c.grid)
    assert float(half_gap.abs().min()) > 10.0  # the two rules differ by more than rounding here
    np.testing.assert_allclose((delta / c.step_s).numpy(), half_gap.numpy(), rtol=1e-6)


def test_flux_timing_from_the_cube():
    from astrohpc.physics.energy import flux_timing

    fluxes = ["ntr", "rss", "rls", "hfss", "hfls"]
    assert flux_timing(["ta", *fluxes], []) == "snapshots"
    assert flux_timing(["ta", *fluxes], ["pr", *fluxes]) == "step_means"
    assert flux_timing(["ta", "ps"], ["pr"]) == "snapshots"  # no flux at all
    with pytest.raises(ConfigError, match=r"cube x\.h5 holds ntr, rss as means over the step but rls, hfss, hfls "
                                          r"as snapshots.*data\.step_mean_variables"):
        flux_timing(fluxes, ["ntr", "rss"], "the cube x.h5")
    with pytest.raises(ConfigError, match="flux timing 'daily'"):
        CorrectorChain(["energy"], "daily")
