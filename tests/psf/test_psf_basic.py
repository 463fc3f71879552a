"""lsstdrp.psf: analytic cases and bad input.

Stars are drawn by GalSim (``galsim.Gaussian`` convolved with the pixel), so no lsstdrp
code renders the truth. Tolerances:

- the fitted PSF's adaptive size of a constant Gaussian PSF from N stars of S/N ~ 500:
  the statistical error of dT/T per star is ~2/(S/N); the mean over N = 100 stars has
  sigma 2/(500 * 10) = 4e-4, so |dT/T| < 3e-3 allows 3 sigma plus the model's
  interpolation error (checked noiseless below to 1e-3);
- chi2/dof of the training stars 1 +- 3 sqrt(2 / dof_total).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import QTable

from lsstdrp import InvalidInputError
from lsstdrp.core import Psf
from lsstdrp.psf import PixelGridPsf, fit_psf, select_psf_stars

galsim = pytest.importorskip("galsim")

SIGMA = 1.8
E1 = 0.06


def _field(n_side: int, flux: float, seed: int, noise: bool = True, sky: float = 100.0):
    rng = np.random.default_rng(seed)
    spacing = 32
    shape = (n_side * spacing + spacing, n_side * spacing + spacing)
    gy, gx = np.divmod(np.arange(n_side * n_side), n_side)
    x = (gx + 1) * spacing + rng.uniform(-0.5, 0.5, gx.size)
    y = (gy + 1) * spacing + rng.uniform(-0.5, 0.5, gy.size)
    prof = galsim.Gaussian(sigma=SIGMA, flux=flux).shear(e1=E1, e2=0.0)
    img = np.zeros(shape)
    for xi, yi in zip(x, y):
        X, Y = int(math.floor(xi + 0.5)), int(math.floor(yi + 0.5))
        st = prof.drawImage(nx=31, ny=31, scale=1.0, offset=(xi - X, yi - Y)).array
        img[Y - 15 : Y + 16, X - 15 : X + 16] += st
    var = sky + img
    if noise:
        img = img + rng.normal(0.0, np.sqrt(var))
    return img + 20.0, var, x, y


def _truth_moments():
    prof = galsim.Gaussian(sigma=SIGMA, flux=1.0).shear(e1=E1, e2=0.0)
    k = prof.drawImage(nx=41, ny=41, scale=1.0).array
    r = galsim.hsm.FindAdaptiveMom(galsim.ImageD(k))
    e1, e2 = r.observed_shape.e1, r.observed_shape.e2
    # HSM: sigma = det(M)^(1/4); T = ixx + iyy = 2 sigma^2 / sqrt(1 - e^2)
    return 2 * r.moments_sigma**2 / math.sqrt(1 - e1 * e1 - e2 * e2), e1, e2


def _moments(psf, x, y):
    ixx, iyy, ixy = psf.moments(x, y)
    t = ixx + iyy
    return t, (ixx - iyy) / t, 2 * ixy / t


@pytest.fixture(scope="module")
def noisy_fit():
    img, var, x, y = _field(10, 2.0e5, 1)
    stars = QTable({"x": x + np.random.default_rng(2).normal(0, 0.05, x.size), "y": y})
    return fit_psf(img, var, stars, spatial_order=1, size=17, fit_background=True), x, y


def test_constant_gaussian_recovered(noisy_fit, record_property):
    res, x, y = noisy_fit
    assert res.success and res.reason == ""
    assert isinstance(res.psf, Psf) and isinstance(res.psf, PixelGridPsf)
    # truth: HSM moments of the pixelized Gaussian drawn by GalSim
    t0, e10, e20 = _truth_moments()
    t, e1, e2 = _moments(res.psf, 160.0, 160.0)
    record_property("dT_T", (t - t0) / t0)
    assert abs((t - t0) / t0) < 3e-3
    assert abs(e1 - e10) < 3e-3 and abs(e2 - e20) < 3e-3
    k = res.psf.kernel_image(160.0, 160.0)
    assert k.shape[0] % 2 == 1 and abs(k.sum() - 1) < 1e-12


def test_chi2_and_centroids(noisy_fit, record_property):
    res, x, y = noisy_fit
    dof = float(res.stars["dof"][res.stars["psf_used"]].sum())
    record_property("chi2_dof", res.chi2_dof)
    assert abs(res.chi2_dof - 1) < 3 * math.sqrt(2 / dof) + 0.01
    dx = np.asarray(res.stars["x"].value) - x
    # centroid error of a S/N ~ 500 star with sigma 1.8 px: ~ sigma * sqrt(2) / SN ~ 5e-3
    assert np.sqrt(np.mean(dx**2)) < 0.02


def test_noiseless_interpolation_accuracy(record_property):
    img, var, x, y = _field(6, 1.0e5, 3, noise=False)
    res = fit_psf(img - 20.0, var, QTable({"x": x, "y": y}), spatial_order=0, size=17)
    t0, e10, _ = _truth_moments()
    t, e1, _ = _moments(res.psf, 100.0, 100.0)
    record_property("dT_T_noiseless", (t - t0) / t0)
    # noiseless: only the representation error of the quintic B-spline span (3.7e-5 of
    # the peak in 1-D) remains; the bound on the mean size error is 2e-4
    assert abs((t - t0) / t0) < 2e-4 and abs(e1 - e10) < 2e-4


def test_image_matches_fitted_star(noisy_fit):
    res, x, y = noisy_fit
    st = res.psf.image(100.3, 50.8, shape=21)
    assert st.shape == (21, 21)
    yy, xx = np.mgrid[:21, :21]
    assert abs((st * xx).sum() / st.sum() - 10.3) < 0.01
    assert abs((st * yy).sum() / st.sum() - 9.8) < 0.01


def test_too_few_stars_message():
    img, var, x, y = _field(2, 1e5, 4)
    with pytest.raises(InvalidInputError, match=r"needs at least 12 training stars"):
        fit_psf(img, var, QTable({"x": x, "y": y}), spatial_order=2)


def test_bad_inputs():
    img, var, x, y = _field(3, 1e5, 5)
    st = QTable({"x": x, "y": y})
    with pytest.raises(InvalidInputError, match="variance"):
        fit_psf(img, var[:-1], st, spatial_order=0)
    with pytest.raises(InvalidInputError, match="model"):
        fit_psf(img, var, st, model="psfex")
    with pytest.raises(InvalidInputError, match="'x' and 'y'"):
        fit_psf(img, var, QTable({"x": x}))
    bad = QTable({"x": np.r_[x[:-1], np.nan], "y": y})
    with pytest.raises(InvalidInputError, match="non-finite"):
        fit_psf(img, var, bad, spatial_order=0)


def test_failed_fit_returns_success_false():
    # every star is pure noise with a zero-flux level: no positive fluxes -> failure
    rng = np.random.default_rng(6)
    img = rng.normal(0, 1.0, (200, 200)) - 50.0
    var = np.ones_like(img)
    x, y = np.meshgrid(np.arange(20, 190, 30.0), np.arange(20, 190, 30.0))
    res = fit_psf(img, var, QTable({"x": x.ravel(), "y": y.ravel()}), spatial_order=0, size=11,
                  fit_background=False)
    assert not res.success and res.psf is None and res.reason
    assert len(res.stars) == x.size


def test_input_not_mutated():
    img, var, x, y = _field(4, 1e5, 7)
    img.flags.writeable = False
    var.flags.writeable = False
    st = QTable({"x": x, "y": y})
    before = st.copy()
    fit_psf(img, var, st, spatial_order=0, size=13)
    assert np.array_equal(before["x"], st["x"]) and st.colnames == before.colnames


def test_select_size_locus_and_reserve():
    rng = np.random.default_rng(1)
    n = 300
    T = np.r_[np.full(200, 7.0) * (1 + rng.normal(0, 0.01, 200)), rng.uniform(8.5, 30, 80), rng.uniform(0.5, 3, 20)]
    cat = QTable({"x": rng.uniform(0, 4000, n), "y": rng.uniform(0, 4000, n),
                  "psf_flux": rng.uniform(1e4, 1e6, n), "psf_flux_err": np.full(n, 100.0),
                  "shape_xx": T / 2, "shape_yy": T / 2, "shape_flag": np.zeros(n, bool)})
    cat["shape_flag"][5] = True
    cat["psf_flux"][6] = 1000.0
    sel = select_psf_stars(cat, reserve_fraction=0.2, isolation_radius=None, rng=3)
    assert len(sel) == n
    cand = np.asarray(sel["psf_candidate"])
    assert cand[:200].sum() >= 195 and not cand[200:].any()
    assert str(sel["psf_reject_reason"][5]) == "flagged"
    assert str(sel["psf_reject_reason"][6]) == "S/N below snr_min"
    assert all(str(r) for r, c in zip(sel["psf_reject_reason"], cand) if not c)
    assert sel["psf_reserved"].sum() == round(0.2 * cand.sum())
    assert not np.any(np.asarray(sel["psf_reserved"]) & ~cand)


def test_residual_maps(noisy_fit):
    from lsstdrp.psf import residual_maps

    res, _, _ = noisy_fit
    m = residual_maps(res, bins=3)
    assert m.counts.sum() == int(np.isfinite(np.asarray(res.stars["dT_T"])[np.asarray(res.stars["psf_used"])]).sum())
    assert m.dT_T.shape == (3, 3) and m.mean_residual.shape == res.residuals.shape[1:]
    # a correct model leaves no coherent residual: the mean normalised residual of N stars
    # has per-pixel scatter 1/sqrt(N); allow 5 sigma
    n = res.n_used
    assert np.abs(m.mean_residual).max() < 5 / math.sqrt(n)
    with pytest.raises(InvalidInputError):
        residual_maps(res, which="some")
