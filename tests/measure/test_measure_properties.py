"""Invariants of lsstdrp.measure (hypothesis) and the analytic cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsstdrp.core import GaussianPsf, MaskPlane
from lsstdrp.measure import (
    adaptive_moments,
    aperture_flux,
    elliptical_aperture_flux,
    flux_radius,
    kron_flux,
    measure_sources,
    psf_flux,
)

galsim = pytest.importorskip("galsim")
PSF = GaussianPsf(1.8)


def _scene(seed: int, n: int = 6, shape=(64, 64), noise: float = 3.0):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, noise, shape)
    xs = rng.uniform(12, shape[1] - 12, n)
    ys = rng.uniform(12, shape[0] - 12, n)
    for x, y, f in zip(xs, ys, rng.uniform(500, 5000, n)):
        img += galsim.Gaussian(sigma=1.8, flux=f).drawImage(
            nx=shape[1], ny=shape[0], scale=1.0, offset=(x - (shape[1] - 1) / 2, y - (shape[0] - 1) / 2),
            method="no_pixel").array
    return img, xs, ys


SETTINGS = settings(deadline=None, derandomize=True, max_examples=12)


@SETTINGS
@given(scale=st.floats(0.01, 100.0), seed=st.integers(0, 1000))
def test_fluxes_are_linear_in_the_image_scale(scale, seed):
    img, xs, ys = _scene(seed)
    a1 = aperture_flux(img, xs, ys, [3.0, 5.0], variance=9.0)
    a2 = aperture_flux(scale * img, xs, ys, [3.0, 5.0], variance=9.0 * scale**2)
    np.testing.assert_allclose(a2.flux, scale * a1.flux, rtol=1e-10, atol=1e-9 * scale)
    np.testing.assert_allclose(a2.flux_err, scale * a1.flux_err, rtol=1e-10)
    p1 = psf_flux(img, xs, ys, psf=PSF, variance=9.0)
    p2 = psf_flux(scale * img, xs, ys, psf=PSF, variance=9.0 * scale**2)
    np.testing.assert_allclose(p2.flux, scale * p1.flux, rtol=1e-10, atol=1e-9 * scale)
    k1 = kron_flux(img, xs, ys, 2.0, 1.5, 0.3, variance=9.0)
    k2 = kron_flux(scale * img, xs, ys, 2.0, 1.5, 0.3, variance=9.0 * scale**2)
    np.testing.assert_allclose(k2.kron_radius, k1.kron_radius, rtol=1e-9)
    np.testing.assert_allclose(k2.flux, scale * k1.flux, rtol=1e-9, atol=1e-9 * scale)


@settings(deadline=None, derandomize=True, max_examples=5)
@given(scale=st.floats(0.1, 10.0), seed=st.integers(0, 100))
def test_measure_sources_fluxes_linear_positions_invariant(scale, seed):
    img, xs, ys = _scene(seed, n=4)
    cat = {"x": np.round(xs), "y": np.round(ys)}
    c1 = measure_sources(img, 9.0, cat, psf=PSF)
    c2 = measure_sources(scale * img, 9.0 * scale**2, cat, psf=PSF)
    np.testing.assert_allclose(c2["x"].value, c1["x"].value, atol=1e-7)
    np.testing.assert_allclose(c2["shape_xx"].value, c1["shape_xx"].value, rtol=1e-6)
    np.testing.assert_allclose(c2["hsm_e1"], c1["hsm_e1"], atol=1e-6)
    for name in ("psf_flux", "ap_flux_r5", "kron_flux", "psf_flux_err"):
        np.testing.assert_allclose(c2[name].value, scale * c1[name].value, rtol=1e-6)


@SETTINGS
@given(shift=st.tuples(st.integers(-7, 7), st.integers(-7, 7)), seed=st.integers(0, 1000))
def test_aperture_photometry_is_translation_equivariant(shift, seed):
    img, xs, ys = _scene(seed)
    moved = np.roll(img, shift, axis=(0, 1))
    a = aperture_flux(img, xs, ys, 4.0)
    b = aperture_flux(moved, xs + shift[1], ys + shift[0], 4.0)
    np.testing.assert_allclose(b.flux, a.flux, rtol=1e-12, atol=1e-9)


@SETTINGS
@given(seed=st.integers(0, 1000), frac=st.floats(0.0, 0.2))
def test_both_mask_forms_agree(seed, frac):
    img, xs, ys = _scene(seed)
    rng = np.random.default_rng(seed)
    bad = rng.random(img.shape) < frac
    bits = np.where(bad, np.uint32(MaskPlane.CR | MaskPlane.DETECTED), np.uint32(MaskPlane.DETECTED))
    a = aperture_flux(img, xs, ys, [2.0, 6.0], mask=bad, variance=1.0)
    b = aperture_flux(img, xs, ys, [2.0, 6.0], mask=bits, variance=1.0)
    c = aperture_flux(img, xs, ys, [2.0, 6.0], mask=bits, bad_planes=["SAT"], variance=1.0)
    d = aperture_flux(img, xs, ys, [2.0, 6.0], variance=1.0)
    np.testing.assert_array_equal(a.flux, b.flux)
    np.testing.assert_array_equal(a.flags, b.flags)
    np.testing.assert_array_equal(c.flux, d.flux)  # CR is not a bad plane here
    m1 = adaptive_moments(img, xs, ys, mask=bad, guess_sigma=2.0)
    m2 = adaptive_moments(img, xs, ys, mask=bits, guess_sigma=2.0)
    np.testing.assert_array_equal(m1.ixx, m2.ixx)
    c1 = measure_sources(img, 9.0, {"x": xs, "y": ys}, psf=PSF, mask=bad)
    c2 = measure_sources(img, 9.0, {"x": xs, "y": ys}, psf=PSF, mask=bits)
    for name in ("x", "psf_flux", "ap_flux_r5", "kron_flux", "shape_xx"):
        np.testing.assert_array_equal(c1[name], c2[name])


@settings(deadline=None, derandomize=True, max_examples=8)
@given(x=st.floats(5.0, 45.0), y=st.floats(5.0, 45.0), r=st.floats(0.3, 4.9),
       q=st.floats(0.2, 1.0), th=st.floats(-3.2, 3.2))
def test_exact_areas(x, y, r, q, th):
    ones = np.ones((51, 51))
    assert aperture_flux(ones, x, y, r).flux[0] == pytest.approx(math.pi * r * r, rel=1e-12)
    e = elliptical_aperture_flux(ones, x, y, r, q * r, th)
    assert e.flux[0] == pytest.approx(math.pi * q * r * r, rel=1e-11)
    assert e.area[0] == pytest.approx(e.flux[0], rel=1e-14)


def test_gaussian_fwhm_from_adaptive_moments():
    # a Gaussian sampled at pixel centres (no pixel convolution): the adaptive moments are
    # its covariance, sigma = FWHM / (2 sqrt(2 ln 2))
    for fwhm in (4.0, 5.0, 8.0):  # (sampling aliases at the 1e-5 level below FWHM 3.5 px)
        img = galsim.Gaussian(fwhm=fwhm, flux=1.0).drawImage(nx=81, ny=81, scale=1.0, offset=(0.31, -0.17),
                                                            method="no_pixel").array
        m = adaptive_moments(img, 40.3, 39.8)
        assert 2 * math.sqrt(2 * math.log(2)) * m.sigma[0] == pytest.approx(fwhm, rel=1e-6)
        assert abs(m.e1[0]) < 1e-8 and abs(m.e2[0]) < 1e-8
        assert m.x[0] == pytest.approx(40.31, abs=1e-7) and m.y[0] == pytest.approx(39.83, abs=1e-7)
        assert m.flux[0] == pytest.approx(1.0, rel=1e-6)


def test_kron_radius_of_a_gaussian():
    # r1 = sigma sqrt(pi / 2) for a round Gaussian (in pixels: kron_flux().radius); the
    # sum over pixel centres misses the cusp of r at the centre by ~0.017 / sigma^2
    for sigma in (4.0, 6.0):
        img = galsim.Gaussian(sigma=sigma, flux=1.0).drawImage(nx=101, ny=101, scale=1.0, method="no_pixel").array
        res = kron_flux(img, 50.0, 50.0, sigma, sigma, 0.0, min_radius=0.0)
        assert res.radius[0] == pytest.approx(sigma * math.sqrt(math.pi / 2), rel=1e-3)
        # 2.5 r1 holds 1 - exp(-pi 2.5^2 / 4) of the flux
        assert res.flux[0] == pytest.approx(1 - math.exp(-math.pi * 6.25 / 4), rel=5e-4)


def test_half_light_radius_of_a_gaussian():
    sigma = 4.0
    img = galsim.Gaussian(sigma=sigma, flux=1.0).drawImage(nx=101, ny=101, scale=1.0, method="no_pixel").array
    r = flux_radius(img, 50.0, 50.0, 30.0, [0.5, 0.9], normflux=1.0).radius[0]
    np.testing.assert_allclose(r, sigma * np.sqrt(-2 * np.log(1 - np.array([0.5, 0.9]))), rtol=5e-3)
