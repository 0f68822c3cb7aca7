"""Planet and star constants. Physics code reads these from the config, never from literals.

Units are in the field names. Presets: `earth` and `trappist1e` (the THAI Hab1 set-up:
Turbet et al. 2022, Fauchez et al. 2020), chosen in YAML with `planet: {preset: NAME}`;
keys given beside `preset` override the preset's values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

EARTH_RADIUS_M = 6.371e6  # used only to express radii in Earth units for GCMs that want them
# Properties of water, not of a planet (the values PlaSim uses).
WATER_VAPOUR_GAS_CONSTANT_J_KG_K = 461.51  # R_v
LATENT_HEAT_VAPORISATION_J_KG = 2.5008e6  # L_v at 0 °C


@dataclass
class Planet:
    """A planet, its atmosphere and its host star."""

    preset: Optional[str] = None
    name: str = "earth"
    radius_m: float = 6.371e6
    gravity_m_s2: float = 9.80665
    rotation_period_days: float = 1.0
    synchronous: bool = False
    substellar_longitude_deg: float = 180.0
    obliquity_deg: float = 23.44
    eccentricity: float = 0.0167
    instellation_W_m2: float = 1361.0
    stellar_temperature_K: float = 5772.0
    gas_constant_J_kg_K: float = 287.05
    cp_J_kg_K: float = 1004.6
    pN2_bar: float = 0.7809
    pO2_bar: float = 0.2095
    pCO2_bar: float = 0.0004
    aquaplanet: bool = True

    def __post_init__(self) -> None:
        positive = ("radius_m", "gravity_m_s2", "rotation_period_days", "gas_constant_J_kg_K",
                    "cp_J_kg_K", "stellar_temperature_K")
        non_negative = ("instellation_W_m2", "pN2_bar", "pO2_bar", "pCO2_bar", "eccentricity")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"planet.{name} must be > 0, got {getattr(self, name)!r}")
        for name in non_negative:
            if not getattr(self, name) >= 0:
                raise ValueError(f"planet.{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.eccentricity < 1:
            raise ValueError(f"planet.eccentricity must be < 1, got {self.eccentricity!r}")

    @property
    def surface_pressure_bar(self) -> float:
        """Sum of the partial pressures given (N2 + O2 + CO2), in bar."""
        return self.pN2_bar + self.pO2_bar + self.pCO2_bar

    @property
    def rotation_rate_rad_s(self) -> float:
        """Ω in rad s⁻¹ from the rotation period (days of 86 400 s)."""
        import math

        return 2.0 * math.pi / (self.rotation_period_days * 86400.0)


PRESETS: dict[str, Planet] = {
    "earth": Planet(name="earth"),
    # THAI Hab1: 1 bar N2 + 400 ppm CO2, synchronous, aquaplanet.
    "trappist1e": Planet(
        name="trappist1e",
        radius_m=5.798e6,
        gravity_m_s2=9.12,
        rotation_period_days=6.1,
        synchronous=True,
        substellar_longitude_deg=180.0,
        obliquity_deg=0.0,
        eccentricity=0.0,
        instellation_W_m2=900.0,
        stellar_temperature_K=2566.0,
        gas_constant_J_kg_K=297.0,
        cp_J_kg_K=1039.0,
        pN2_bar=1.0,
        pO2_bar=0.0,
        pCO2_bar=0.0004,
        aquaplanet=True,
    ),
}


def preset_values(name: str) -> dict:
    """The field values of preset `name` (with `preset` set), for merging under user keys."""
    if name not in PRESETS:
        raise KeyError(name)
    values = dataclasses.asdict(PRESETS[name])
    values["preset"] = name
    return values
