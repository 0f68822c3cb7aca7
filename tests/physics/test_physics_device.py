"""Physics follows the state's device: grid and planet constants on the CPU are moved to it.
The `meta` device stands in for a GPU (a CPU tensor mixed into a meta computation is an error)."""

from __future__ import annotations

import torch

from astrohpc.physics.constants import PlanetConstants
from astrohpc.physics.correctors import CORRECTORS, CorrectorChain
from astrohpc.physics.losses import LOSS_TERMS, PhysicsLoss
from astrohpc.physics.mass import HybridInterfaces, global_dry_mass

FIELDS_2D = ("ps", "sg", "ntr", "rst", "rlut", "rss", "rls", "hfss", "hfls")
FIELDS_3D = ("ta", "hus", "ua", "va", "zg")


def test_losses_and_correctors_run_on_the_states_device(small_grid):
    batch, (nlat, nlon), nlev = 2, small_grid.area_weight.shape, small_grid.dsigma.numel()
    state = {name: torch.ones(batch, nlat, nlon, device="meta") for name in FIELDS_2D}
    state.update({name: torch.ones(batch, nlev, nlat, nlon, device="meta") for name in FIELDS_3D})
    planet = PlanetConstants(*(torch.tensor([1.0, 2.0]) for _ in range(4)))  # per sample, on the CPU
    step_s = torch.tensor([60.0, 120.0])
    terms = PhysicsLoss({name: 1.0 for name in LOSS_TERMS})(state, state, small_grid, planet, step_s)
    assert {value.device.type for value in terms.values()} == {"meta"}
    fixed = CorrectorChain(list(CORRECTORS))(state, state, small_grid, planet, step_s)
    assert {value.device.type for value in fixed.values()} == {"meta"}
    hybrid = HybridInterfaces(torch.zeros_like(small_grid.sigma_half), small_grid.sigma_half, 1e5)
    assert global_dry_mass(state, small_grid, planet, hybrid).device.type == "meta"
