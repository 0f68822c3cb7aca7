"""The emission-spectrum sidecar CUBE.spectra.h5 on the real two-run ExoPlaSim cube: contents,
round trip, and refusal of a sidecar that belongs to another conversion."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from astrohpc.data.cube import LazyCube, read_meta
from astrohpc.data.spectra import read_spectra, spectra_path, write_spectra
from astrohpc.errors import DataError
from astrohpc.physics.emission import (
    STEFAN_BOLTZMANN_W_M2_K4,
    GreyAtmosphere,
    band_flux,
    emission_spectrum,
    wavenumber_edges,
)
from astrohpc.physics.grid import SphereGrid, global_mean


@pytest.fixture
def cube(physics_cube, tmp_path):
    """A copy of the physics cube (the session's cube is read-only; a sidecar is a write)."""
    path = tmp_path / "cube.h5"
    shutil.copy(physics_cube, path)
    return path


def test_round_trip_and_contents(cube):
    grey = GreyAtmosphere(tau_surface=1.5, exponent=3.0, diffusivity=1.5)
    target = write_spectra(cube, 12, low_cm=20.0, high_cm=2500.0, grey=grey)
    assert target == spectra_path(cube) == cube.with_name("cube.spectra.h5")
    meta = read_meta(cube)
    spectra = read_spectra(cube)
    assert spectra.values.shape == (2, 5, 12) and spectra.n_bins == 12
    np.testing.assert_allclose(spectra.edges_cm, wavenumber_edges(12, 20.0, 2500.0).numpy())
    np.testing.assert_allclose(spectra.centers_cm[0], 20.0 + 2480.0 / 24)
    assert spectra.grey == grey and spectra.quadrature_points == 8
    assert spectra.units == "W m-2 (cm-1)-1" and spectra.cube_id == meta.cube_id != ""
    np.testing.assert_array_equal(spectra.time_days, meta.time_days)
    assert np.all(np.isfinite(spectra.values)) and np.all(spectra.values > 0)
    with h5py.File(target, "r") as f:
        assert "tau(p) = tau_surface (p/ps)^exponent" in f.attrs["formula"]
        assert f["spectrum"].attrs["units"] == "W m-2 (cm-1)-1" and f["wavenumber"].attrs["units"] == "cm-1"

    # the stored value of one step is the formula on that step's own ta, ts, ps channels
    run, t = 1, 3
    x = torch.as_tensor(LazyCube(cube).read(run, t, 1)[0].astype(np.float64))
    expected = emission_spectrum(x[meta.channel("ts")], x[meta.channels_of(["ta"])], x[meta.channel("ps")],
                                 SphereGrid.from_meta(meta), spectra.edges_cm, grey)
    np.testing.assert_allclose(spectra.values[run, t], expected.numpy(), rtol=1e-12)
    # the two runs differ (different instellation): the sidecar is not one spectrum repeated
    assert not np.allclose(spectra.values[0], spectra.values[1], rtol=1e-6, atol=0)


def test_transparent_atmosphere_gives_the_surface_blackbody(cube):
    """τ_s = 0: the integrated spectrum is the global mean of σ ts⁴ from the cube's own ts channel."""
    write_spectra(cube, 24, low_cm=1.0, high_cm=4000.0, grey=GreyAtmosphere(tau_surface=0.0))
    spectra = read_spectra(cube)
    meta = read_meta(cube)
    grid = SphereGrid.from_meta(meta)
    reader = LazyCube(cube)
    for run in range(2):
        ts = torch.as_tensor(reader.read(run, 0, 5)[:, meta.channel("ts")].astype(np.float64))
        expected = global_mean(STEFAN_BOLTZMANN_W_M2_K4 * ts ** 4, grid)
        olr = band_flux(torch.as_tensor(spectra.values[run]), spectra.edges_cm)
        torch.testing.assert_close(olr, expected, rtol=2e-4, atol=0)  # the 1–4000 cm⁻¹ range misses < 1e-4
    # an optically thick grey atmosphere: the GCM's columns emit between 150 and 400 W m⁻²
    write_spectra(cube, 24, low_cm=1.0, high_cm=4000.0)
    olr = band_flux(torch.as_tensor(read_spectra(cube).values), spectra.edges_cm)
    assert torch.all((olr > 150.0) & (olr < 400.0))


def test_spectra_of_another_conversion_are_refused(cube):
    with pytest.raises(DataError, match="astrohpc data spectra"):
        read_spectra(cube)  # none yet
    write_spectra(cube, 4)
    with h5py.File(cube, "r+") as f:
        f.attrs["cube_id"] = "reconverted"  # as a new conversion of the cube would have
    with pytest.raises(DataError, match="cube_id differs"):
        read_spectra(cube)
    write_spectra(cube, 4)
    assert read_spectra(cube).cube_id == "reconverted"


def test_a_damaged_sidecar_is_refused(cube):
    spectra_path(cube).write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="damaged spectra file"):
        read_spectra(cube)


def test_cli_writes_the_sidecar_and_rejects_bad_bins(cube, capsys):
    from astrohpc.cli import main

    assert main(["data", "spectra", str(cube), "--bins", "6", "--low", "50", "--high", "2000"]) == 0
    assert "6 bins" in capsys.readouterr().out
    spectra = read_spectra(cube)
    assert spectra.n_bins == 6 and spectra.edges_cm[0] == 50.0 and spectra.edges_cm[-1] == 2000.0
    assert main(["data", "spectra", str(cube), "--bins", "0"]) == 2
    assert "--bins" in capsys.readouterr().err
    assert read_spectra(cube).n_bins == 6  # the sidecar written before is intact
