"""jointcal geometry: reference-catalog propagation, projections, TAN-SIP export, E/B split."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from hypothesis import given, settings
from hypothesis import strategies as st

from lsstdrp import sim
from lsstdrp.jointcal import eb_correlation, export_tan_sip, propagate_refcat
from lsstdrp.jointcal._geometry import angular_separation_arcsec, deproject, local_basis, project, unit_vectors


def test_propagation_agrees_with_the_simulator_to_a_microarcsecond():
    rng = np.random.default_rng(0)
    n = 200
    ra, dec = rng.uniform(0, 360, n), rng.uniform(-80, 80, n)
    pmra, pmdec = rng.normal(0, 50, (2, n))
    plx = rng.uniform(0, 10, n)
    mjd = 60676.0 + rng.uniform(0, 400, n)
    a = propagate_refcat(ra, dec, pmra, pmdec, plx, epoch=57388.0, mjd=mjd)
    b = sim.propagate_to_epoch(ra, dec, pmra, pmdec, plx, epoch_mjd=57388.0, mjd=mjd)
    sep = angular_separation_arcsec(unit_vectors(*a), unit_vectors(*b)) * 1e6
    assert sep.max() < 1.0  # µas: independent implementations of the same formula


@settings(max_examples=30)
@given(st.floats(0, 360), st.floats(-89, 89), st.floats(-2000, 2000), st.floats(-2000, 2000))
def test_gnomonic_round_trip(ra0, dec0, xi, eta):
    c, e, n = local_basis(unit_vectors(ra0, dec0))
    p = deproject(np.array([xi]), np.array([eta]), c, e, n)
    x2, e2 = project(p, c, e, n)
    assert abs(x2[0] - xi) < 1e-9 and abs(e2[0] - eta) < 1e-9


def test_tan_sip_export_reproduces_a_distorted_mapping():
    w0 = WCS(naxis=2)
    w0.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w0.wcs.crval = [150.0, 2.0]
    w0.wcs.crpix = [300.0, 200.0]
    w0.wcs.cd = np.array([[-5.5e-5, 1e-6], [1.2e-6, 5.6e-5]])
    w0.wcs.set()

    def to_vec(x, y):  # a cubic distortion on top of the TAN WCS
        xd = x + 2e-8 * (x - 256) ** 3
        ra, dec = w0.wcs_pix2world(xd, y, 0)
        return unit_vectors(ra, dec)

    exp = export_tan_sip(to_vec, (-0.5, 511.5, -0.5, 511.5), sip_order=3)
    assert exp.max_error_mas < 1e-3 and exp.inverse_max_error_px < 1e-4
    gx, gy = np.meshgrid(np.linspace(0, 511, 7), np.linspace(0, 511, 7))
    ra, dec = exp.wcs.pixel_to_world_values(gx.ravel(), gy.ravel())
    sep = angular_separation_arcsec(unit_vectors(ra, dec), to_vec(gx.ravel(), gy.ravel())) * 1e3
    assert sep.max() < 1e-3


def _gaussian_potential(rng, n=256, scale=0.02):
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    p = np.where(k > 0, (k**2 + scale**2) ** -2, 0)
    phi = np.real(np.fft.ifft2(np.fft.fft2(rng.normal(size=(n, n))) * np.sqrt(p)))
    gy, gx = np.gradient(phi)
    return gx, gy


@pytest.mark.parametrize("mode", ["E", "B"])
def test_eb_split_of_pure_fields(mode):
    rng = np.random.default_rng(1)
    gx, gy = _gaussian_potential(rng)
    ix = rng.integers(0, 256, (2, 3000))
    vx, vy = gx[ix[1], ix[0]], gy[ix[1], ix[0]]
    if mode == "B":  # rotate the gradient field by 90 degrees: divergence-free
        vx, vy = -vy, vx
    t = eb_correlation(ix[0], ix[1], vx, vy, bins=np.geomspace(4, 120, 9), rng=0)
    np.testing.assert_allclose(t["xi_e"] + t["xi_b"], t["xi_plus"], rtol=1e-12)
    want, other = (t["xi_e"], t["xi_b"]) if mode == "E" else (t["xi_b"], t["xi_e"])
    # where the correlation is large (> 20% of its peak) the other mode is a small fraction of it
    big = np.abs(t["xi_plus"]) > 0.2 * np.abs(t["xi_plus"]).max()
    assert big.sum() >= 2
    assert np.all(np.abs(other[big]) < 0.1 * np.abs(want[big]))


def test_eb_input_validation():
    with pytest.raises(ValueError, match="same length"):
        eb_correlation([0, 1, 2], [0, 1, 2], [0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="bins"):
        eb_correlation([0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2], bins=[3, 2, 1])
