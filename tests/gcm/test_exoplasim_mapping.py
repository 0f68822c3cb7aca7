"""Planet and gcm sections -> exoplasim.Model.configure arguments, with their units."""

from __future__ import annotations

import pytest

from astrohpc.config import load_config
from astrohpc.errors import ConfigError, GCMError
from astrohpc.gcm.exoplasim_runner import configure_kwargs
from astrohpc.planet import EARTH_RADIUS_M


def _kwargs(*overrides):
    cfg = load_config(None, overrides)
    return configure_kwargs(cfg.planet, cfg.gcm)


def test_units_and_values_are_converted():
    kw = _kwargs("planet.preset=trappist1e", "planet.instellation_W_m2=1200")
    assert kw["radius"] == pytest.approx(5.798e6 / EARTH_RADIUS_M)  # Earth radii
    assert kw["gravity"] == 9.12 and kw["flux"] == 1200.0 and kw["startemp"] == 2566.0
    assert kw["rotationperiod"] == 6.1 and kw["synchronous"] is True and kw["substellarlon"] == 180.0
    assert kw["pN2"] == 1.0 and kw["pO2"] is None and kw["pCO2"] == 0.0004  # bar
    assert kw["gascon"] == 297.0
    assert float(kw["otherargs"]["AKAP@planet_namelist"]) == pytest.approx(297.0 / 1039.0)  # R / cp
    assert kw["aquaplanet"] is True and kw["fixedorbit"] is True


def test_slab_ocean_depth_and_sea_ice():
    kw = _kwargs()
    assert kw["mldepth"] == 50.0 and kw["seaice"] is True  # ExoPlaSim's own defaults, passed explicitly
    kw = _kwargs("gcm.mixed_layer_depth_m=2", "gcm.sea_ice=false")
    assert kw["mldepth"] == 2.0 and kw["seaice"] is False


def test_run_length_and_output_cadence_in_steps():
    kw = _kwargs("gcm.days=30", "gcm.means_interval_days=5", "gcm.snapshot_interval_days=1")
    assert kw["timestep"] == 45.0 and kw["runsteps"] == 30 * 32
    assert kw["snapshots"] == 32 and kw["otherargs"]["NSTPW@plasim_namelist"] == str(5 * 32)
    assert _kwargs("gcm.snapshot_interval_days=0")["snapshots"] is None
    assert _kwargs("gcm.years=2")["runsteps"] == 360 * 32  # per model year


def test_zero_co2_is_zero_not_exoplasims_default():
    kw = _kwargs("planet.pCO2_bar=0")
    assert kw["pCO2"] is None and kw["otherargs"]["CO2@radmod_namelist"] == "0.0"


def test_no_atmosphere_is_refused():
    with pytest.raises(GCMError, match="surface pressure"):
        _kwargs("planet.pN2_bar=0", "planet.pO2_bar=0", "planet.pCO2_bar=0")


@pytest.mark.parametrize("override, message", [
    ("planet.instellation_W_m2=-5", "instellation_W_m2 must be >= 0"),
    ("gcm.days=3", "means_interval_days"),
    ("gcm.timestep_minutes=7", "timestep_minutes"),
    ("gcm.resolutoin=T42", "did you mean 'resolution'"),
])
def test_invalid_parameters_are_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
