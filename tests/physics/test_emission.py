"""The grey two-stream emission spectrum against physics it must obey: Stefan–Boltzmann, Wien,
the optically thin limit, and the greenhouse effect of optical depth over a colder upper atmosphere."""

from __future__ import annotations

import math

import pytest
import torch

from astrohpc.physics.emission import (
    STEFAN_BOLTZMANN_W_M2_K4,
    GreyAtmosphere,
    band_flux,
    emission_spectrum,
    emission_weights,
    planck_band_flux,
    toa_spectral_flux,
    wavenumber_edges,
)
from astrohpc.physics.grid import SphereGrid

# A 4 x 8 grid, 10 σ layers like the T21 cube's, p = σ·ps.
SIGMA_HALF = torch.tensor([0.0, 0.0766, 0.1616, 0.2601, 0.3736, 0.5, 0.6336, 0.7651, 0.8816, 0.9666, 1.0],
                          dtype=torch.float64)
SIGMA_FULL = 0.5 * (SIGMA_HALF[1:] + SIGMA_HALF[:-1])
PS = 1.0e5
WIDE = wavenumber_edges(2000, 1.0, 8001.0)  # 4 cm⁻¹ bins: holds all but ~1e-9 of a <= 320 K blackbody


def column(ta_profile: torch.Tensor, ts: float, lat: int = 4, lon: int = 8):
    """ts [lat, lon], ta [lev, lat, lon], p_half [lev + 1, lat, lon], ps [lat, lon] of identical columns."""
    ps = torch.full((lat, lon), PS, dtype=torch.float64)
    ta = ta_profile.to(torch.float64)[:, None, None].expand(-1, lat, lon)
    return torch.full((lat, lon), ts, dtype=torch.float64), ta, SIGMA_HALF[:, None, None] * ps, ps


def lapse_profile(ts: float, top: float) -> torch.Tensor:
    """Temperature falling from ts at the surface to `top` at σ = 0, linear in σ^(R/cp) like a dry adiabat."""
    return top + (ts - top) * SIGMA_FULL ** (287.0 / 1004.0)


@pytest.mark.parametrize("temperature", [150.0, 255.0, 320.0])
def test_planck_integrates_to_stefan_boltzmann(temperature):
    flux = planck_band_flux(torch.tensor(temperature), WIDE)
    assert band_flux(flux, WIDE).item() == pytest.approx(STEFAN_BOLTZMANN_W_M2_K4 * temperature ** 4, rel=1e-6)
    assert STEFAN_BOLTZMANN_W_M2_K4 == pytest.approx(5.670374419e-8, rel=1e-9)  # CODATA 2018


def test_planck_matches_the_formula_at_one_wavenumber():
    """A 0.02 cm⁻¹ bin at 667 cm⁻¹ (the CO2 band centre), 288 K, against 2hc²ν³/(e^{hcν/kT} − 1) in SI."""
    h, c, k = 6.62607015e-34, 299792458.0, 1.380649e-23
    nu = 66700.0  # m⁻¹
    per_m = 2 * h * c ** 2 * nu ** 3 / math.expm1(h * c * nu / (k * 288.0))  # W m⁻² sr⁻¹ (m⁻¹)⁻¹
    expected = math.pi * per_m * 100.0  # hemispheric flux per cm⁻¹
    edges = torch.tensor([666.99, 667.01], dtype=torch.float64)
    assert planck_band_flux(torch.tensor(288.0), edges).item() == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("tau", [0.0, 0.5, 2.0, 10.0])
def test_isothermal_column_emits_a_blackbody_at_its_temperature(tau):
    ts, ta, p_half, ps = column(torch.full((10,), 260.0), 260.0)
    flux = toa_spectral_flux(ts, ta, p_half, ps, WIDE, GreyAtmosphere(tau_surface=tau))
    assert flux.shape == (2000, 4, 8)
    torch.testing.assert_close(flux[:, 0, 0], planck_band_flux(torch.tensor(260.0), WIDE), rtol=1e-12, atol=0)
    assert band_flux(flux.movedim(0, -1), WIDE)[0, 0].item() == pytest.approx(STEFAN_BOLTZMANN_W_M2_K4 * 260.0 ** 4,
                                                                              rel=1e-6)


def test_peak_moves_with_temperature_as_wien_says():
    """Peak of B per wavenumber at ν = 2.821439 kT/(hc) = 1.96099 cm⁻¹ K⁻¹ · T."""
    edges = wavenumber_edges(1500, 1.0, 1501.0)  # 1 cm⁻¹ bins
    centres = 0.5 * (edges[1:] + edges[:-1])
    for temperature in (150.0, 220.0, 300.0):
        ts, ta, p_half, ps = column(torch.full((10,), temperature), temperature, 1, 1)
        flux = toa_spectral_flux(ts, ta, p_half, ps, edges)[:, 0, 0]
        assert centres[flux.argmax()].item() == pytest.approx(1.96099 * temperature, abs=1.0)


def test_optically_thin_column_emits_the_surface_planck_curve():
    ts, ta, p_half, ps = column(lapse_profile(290.0, 180.0), 290.0)
    edges = wavenumber_edges(32)
    surface = planck_band_flux(torch.tensor(290.0), edges)
    thin = toa_spectral_flux(ts, ta, p_half, ps, edges, GreyAtmosphere(tau_surface=0.0))
    torch.testing.assert_close(thin[:, 1, 2], surface, rtol=1e-14, atol=0)
    nearly = toa_spectral_flux(ts, ta, p_half, ps, edges, GreyAtmosphere(tau_surface=1e-8))
    torch.testing.assert_close(nearly[:, 1, 2], surface, rtol=1e-7, atol=0)


def test_optical_depth_over_a_colder_upper_atmosphere_lowers_the_emission():
    edges = wavenumber_edges(32)
    ts, ta, p_half, ps = column(lapse_profile(288.0, 200.0), 288.0)
    olr = [band_flux(toa_spectral_flux(ts, ta, p_half, ps, edges, GreyAtmosphere(tau_surface=tau)).movedim(0, -1),
                     edges)[0, 0].item() for tau in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(a > b for a, b in zip(olr, olr[1:])), olr
    assert olr[0] == pytest.approx(STEFAN_BOLTZMANN_W_M2_K4 * 288.0 ** 4, rel=2e-3)  # 10–3000 cm⁻¹ holds ~all
    # every bin is dimmer than the surface, not just the total
    thick = toa_spectral_flux(ts, ta, p_half, ps, edges, GreyAtmosphere(tau_surface=4.0))[:, 0, 0]
    assert torch.all(thick < planck_band_flux(torch.tensor(288.0), edges))
    # it is the temperature structure that decides: over a warmer upper atmosphere depth brightens
    ts, ta, p_half, ps = column(lapse_profile(288.0, 320.0), 288.0)
    inverted = [band_flux(toa_spectral_flux(ts, ta, p_half, ps, edges, GreyAtmosphere(tau_surface=tau))
                          .movedim(0, -1), edges)[0, 0].item() for tau in (0.0, 2.0)]
    assert inverted[1] > inverted[0]


def test_emission_weights_telescope_and_follow_the_optical_depth():
    grey = GreyAtmosphere(tau_surface=2.0, exponent=4.0, diffusivity=1.66)
    _, _, p_half, ps = column(torch.full((10,), 250.0), 250.0)
    surface, layers = emission_weights(p_half, ps, grey)
    assert layers.shape == (10, 4, 8) and surface.shape == (4, 8)
    torch.testing.assert_close(surface + layers.sum(dim=0), torch.ones(4, 8, dtype=torch.float64))
    assert surface[0, 0].item() == pytest.approx(math.exp(-1.66 * 2.0))
    bottom = math.exp(-1.66 * 2.0 * SIGMA_HALF[-2].item() ** 4) - math.exp(-1.66 * 2.0)
    assert layers[-1, 0, 0].item() == pytest.approx(bottom)
    assert torch.all(layers > 0)


def test_global_mean_spectrum_is_area_weighted_and_differentiable():
    """Two kinds of column: warm on half the area weight, cold on the other half."""
    lat, lon = 4, 8
    weight = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)[:, None].expand(lat, lon) / 64.0
    grid = SphereGrid(weight, SIGMA_HALF, torch.linspace(-60, 60, lat, dtype=torch.float64),
                      torch.arange(lon, dtype=torch.float64) * 45.0)
    edges = wavenumber_edges(16)
    warm = (torch.arange(lat) >= 2)[:, None].expand(lat, lon)  # the northern two rows: half the area weight
    ts = torch.where(warm, 300.0, 250.0).to(torch.float64)
    ta = lapse_profile(1.0, 0.8)[:, None, None].to(torch.float64) * ts  # [lev, lat, lon]
    ta.requires_grad_(True)
    ps = torch.full((lat, lon), PS, dtype=torch.float64)
    spectrum = emission_spectrum(ts, ta, ps, grid, edges)
    assert spectrum.shape == (16,) and spectrum.dtype == torch.float64
    columns = toa_spectral_flux(ts, ta, SIGMA_HALF[:, None, None] * ps, ps, edges)
    torch.testing.assert_close(spectrum, 0.5 * (columns[:, 0, 0] + columns[:, 3, 0]))
    band_flux(spectrum, edges).backward()
    assert torch.all(ta.grad > 0)  # a warmer layer always emits more
    # leading dimensions pass through: [run, time, ...]
    batch = emission_spectrum(ts.expand(2, 3, lat, lon), ta.detach().expand(2, 3, 10, lat, lon),
                              ps.expand(2, 3, lat, lon), grid, edges)
    assert batch.shape == (2, 3, 16)
    torch.testing.assert_close(batch[1, 2], spectrum.detach())


def test_bad_inputs_are_refused_with_a_reason():
    ts, ta, p_half, ps = column(torch.full((10,), 250.0), 250.0)
    with pytest.raises(ValueError, match="interfaces"):
        toa_spectral_flux(ts, ta[:9], p_half, ps, wavenumber_edges(4))
    grid = SphereGrid(torch.full((4, 8), 1 / 32, dtype=torch.float64), None, torch.zeros(4), torch.zeros(8))
    with pytest.raises(ValueError, match="σ interfaces"):
        emission_spectrum(ts, ta, ps, grid, wavenumber_edges(4))
    with pytest.raises(ValueError, match="n_bins"):
        wavenumber_edges(0)
    with pytest.raises(ValueError, match="tau_surface"):
        GreyAtmosphere(tau_surface=-1.0)
