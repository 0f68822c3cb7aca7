"""Variables computed at conversion from other fields of the same file (`data.derived`).

- `rsdt`: TOA incoming shortwave, W m⁻², positive down. ExoPlaSim writes the net shortwave
  `rst` (down positive) and the outgoing `rsut` (negative: PlaSim's fluxes are positive
  downward), so rsdt = rst − rsut: the model's own insolation at that step, from its orbit,
  rotation and time — exact, where a recomputation from the orbit would not be.
- `zg`: geopotential height of the full levels, m: Φ/g with Φ integrated hydrostatically from
  ta, hus and the surface geopotential sg (astrohpc.physics.hydrostatic, PlaSim's own
  discretisation) with the run's gas constant and gravity. ExoPlaSim 3.4.2's postprocessor
  writes a `zg` on its `levp` axis that is wrong: it takes log(p_{k+1})/p_k for log(p_{k+1}/p_k)
  and its `levp` are midpoints of full levels, not the model's interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from astrohpc.errors import DataError


@dataclass(frozen=True)
class Derivation:
    """How one derived variable is made: its inputs (file names), shape and units."""

    name: str
    inputs: tuple[str, ...]
    levels_of: Optional[str]  # the input whose level axis the result has; None: a 2-D field
    units: str
    long_name: str
    constants: tuple[str, ...]  # planet fields (run parameters) it needs
    compute: Callable[..., np.ndarray]


def _rsdt(values: dict[str, np.ndarray], constants: dict, sigma_half: Optional[np.ndarray], where: str) -> np.ndarray:
    rsut = values["rsut"]
    if np.any(rsut > 1e-3):
        raise DataError(f"{where}: rsut has positive values (max {rsut.max():.3g} W m-2); rsdt = rst - rsut "
                        "assumes PlaSim's convention (upward fluxes negative) — this file uses another")
    return values["rst"] - rsut


def _zg(values: dict[str, np.ndarray], constants: dict, sigma_half: Optional[np.ndarray], where: str) -> np.ndarray:
    from astrohpc.physics.hydrostatic import geopotential_full_levels, virtual_temperature
    from astrohpc.planet import WATER_VAPOUR_GAS_CONSTANT_J_KG_K

    if sigma_half is None:
        raise DataError(f"{where}: zg is derived on sigma levels only (ta is not on sigma levels)")
    tv = virtual_temperature(values["ta"], values["hus"], constants["gas_constant_J_kg_K"],
                             WATER_VAPOUR_GAS_CONSTANT_J_KG_K)
    phi = geopotential_full_levels(tv, values["sg"], sigma_half, constants["gas_constant_J_kg_K"])
    return phi / constants["gravity_m_s2"]


DERIVATIONS: dict[str, Derivation] = {
    "rsdt": Derivation("rsdt", ("rst", "rsut"), None, "W m-2",
                       "toa_incoming_shortwave_flux (rst - rsut, positive down)", (), _rsdt),
    "zg": Derivation("zg", ("ta", "hus", "sg"), "ta", "m",
                     "geopotential_height of full levels (hydrostatic from ta, hus, sg)",
                     ("gas_constant_J_kg_K", "gravity_m_s2"), _zg),
}
