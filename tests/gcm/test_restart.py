"""ExoPlaSim restart files rescaled to another rotation period (astrohpc/gcm/restart.py), on a
hand-made file of the same layout; a real one is branched in tests/gcm/test_sweep_local.py."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from astrohpc.errors import GCMError
from astrohpc.gcm.restart import PLANETARY_VORTICITY, read_records, rescale_rotation, write_records

NRSP, NLEV = 6, 2


def _restart(path, rng):
    spectral = {name: rng.normal(size=(NLEV, NRSP)) for name in ("sz", "sd", "st", "sq", "sr", "szm", "sdm", "stm")}
    for name in ("sz", "szm"):
        spectral[name][:, 2] += PLANETARY_VORTICITY  # absolute vorticity: the planet's rotation on (m=0, n=1)
    records = [("nstep", struct.pack("<i", 42)), ("nrsp", struct.pack("<i", NRSP)),
               *[(k, v.astype("<f8").tobytes()) for k, v in spectral.items()],
               ("sp", rng.normal(size=NRSP).tobytes()), ("so", np.zeros(NRSP).tobytes()),
               ("dt", rng.normal(size=8).tobytes())]
    write_records(path, records)
    return spectral, records


def _field(records, name):
    return np.frombuffer(dict(records)[name], "<f8").reshape(-1, NRSP)


def test_rescaled_restart_holds_the_same_physical_state(tmp_path):
    spectral, records = _restart(tmp_path / "r", np.random.default_rng(0))
    assert read_records(tmp_path / "r") == records  # the layout round-trips byte for byte
    rescale_rotation(tmp_path / "r", tmp_path / "same", 3.0, 3.0)
    assert (tmp_path / "same").read_bytes() == (tmp_path / "r").read_bytes()
    out = read_records(rescale_rotation(tmp_path / "r", tmp_path / "slow", 1.0, 4.0))  # Omega_old / Omega_new = 4
    assert [name for name, _ in out] == [name for name, _ in records]
    # physical field = nondimensional x its scale: vorticity and divergence scale with Omega, temperature
    # deviations with Omega^2, so the file for the slower planet holds 4x and 16x the numbers
    np.testing.assert_allclose(_field(out, "sd"), 4.0 * spectral["sd"], rtol=1e-15)
    np.testing.assert_allclose(_field(out, "stm"), 16.0 * spectral["stm"], rtol=1e-15)
    relative = spectral["sz"].copy()
    relative[:, 2] -= PLANETARY_VORTICITY
    expected = 4.0 * relative
    expected[:, 2] += PLANETARY_VORTICITY  # the planet's own vorticity is 2 sin(latitude) at any rate
    np.testing.assert_allclose(_field(out, "sz"), expected, rtol=1e-14, atol=1e-15)
    for name in ("sq", "sp", "dt", "nstep"):  # humidity, ln ps, grid-point fields: untouched
        assert dict(out)[name] == dict(records)[name]
    assert PLANETARY_VORTICITY == pytest.approx(2.0 / math.sqrt(1.5))  # 2 sin(phi) = 2 sqrt(2/3) P_1 normalised


def test_a_file_of_another_layout_is_refused(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x10\x00\x00\x00not a restart")
    with pytest.raises(GCMError, match="not an ExoPlaSim restart file"):
        rescale_rotation(tmp_path / "junk", tmp_path / "out", 1.0, 2.0)
    write_records(tmp_path / "fields", [("nstep", struct.pack("<i", 1))])
    with pytest.raises(GCMError, match="no nrsp/sz/sd/st"):
        rescale_rotation(tmp_path / "fields", tmp_path / "out", 1.0, 2.0)
    assert not (tmp_path / "out").exists()
