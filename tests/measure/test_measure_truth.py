"""lsstdrp.measure against injected truth, with tolerances derived from the noise.

Stars are rendered by GalSim (``galsim.Gaussian`` convolved with the pixel, at random
sub-pixel positions), so no lsstdrp code renders the truth; the measurements use
:class:`lsstdrp.core.GaussianPsf` as the PSF model. Noise is Gaussian with a known
variance, fixed seeds.

- Centroids (SDSS-style and Gaussian-weighted) at matched-filter S/N 20, 50, 100:
  N = 2 x 300 stars per S/N (two noise realisations of 300 stars), x and y pooled (1200
  errors per S/N). The rms error must be within 1.2x the Cramér–Rao bound (statistical
  uncertainty of the rms ratio: 1/sqrt(2 x 1200) = 2%) and the rms of the pulls
  (error / reported error) 1 ± 0.1 (uncertainty 2%).
- PSF fluxes at S/N 50–200 (log-uniform), variance = sky + source: N = 4 x 500 = 2000.
  The mean pull must be within 3/sqrt(N) = 0.067 of 0 (unbiased at 3 sigma of the mean
  error) and the pull rms 1 ± 0.05 (uncertainty 1/sqrt(2N) = 0.016).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsstdrp.core import GaussianPsf
from lsstdrp.measure import gaussian_centroid, measure_sources, psf_flux, sdss_centroid

galsim = pytest.importorskip("galsim")

SIGMA = 2.0  # PSF sigma (pixels), before the pixel
SPACING = 24
STAMP = 25
SKY_SIGMA = 10.0


def _render(n: int, seed: int) -> dict:
    """n unit-flux GalSim stars at random sub-pixel positions on a grid (noiseless)."""
    rng = np.random.default_rng(seed)
    side = math.ceil(math.sqrt(n))
    shape = (side * SPACING + SPACING, side * SPACING + SPACING)
    gy, gx = np.divmod(np.arange(n), side)
    cx = (gx + 1) * SPACING
    cy = (gy + 1) * SPACING
    off = rng.uniform(-0.5, 0.5, (n, 2))
    prof = galsim.Gaussian(sigma=SIGMA, flux=1.0)
    stamps = np.empty((n, STAMP, STAMP))
    for i in range(n):
        stamps[i] = prof.drawImage(nx=STAMP, ny=STAMP, scale=1.0, offset=tuple(off[i])).array
    return {"shape": shape, "cx": cx, "cy": cy, "x": cx + off[:, 0], "y": cy + off[:, 1],
            "stamps": stamps, "off": off}


def _compose(field: dict, flux: np.ndarray) -> np.ndarray:
    img = np.zeros(field["shape"])
    h = STAMP // 2
    for i in range(flux.size):
        y0, x0 = field["cy"][i] - h, field["cx"][i] - h
        img[y0:y0 + STAMP, x0:x0 + STAMP] += flux[i] * field["stamps"][i]
    return img


def _crb_variance(sky_var: float, flux: float) -> float:
    """Mean over sub-pixel phases of the Cramér–Rao variance of x for (flux, x, y) free."""
    prof = galsim.Gaussian(sigma=SIGMA, flux=1.0)
    h = 1e-3
    out = []
    for px in np.linspace(-0.5, 0.5, 5, endpoint=False):
        for py in np.linspace(-0.5, 0.5, 5, endpoint=False):
            def draw(dx, dy):
                return prof.drawImage(nx=STAMP, ny=STAMP, scale=1.0, offset=(px + dx, py + dy)).array

            p = draw(0, 0)
            dpx = (draw(h, 0) - draw(-h, 0)) / (2 * h)
            dpy = (draw(0, h) - draw(0, -h)) / (2 * h)
            g = np.stack([p.ravel(), flux * dpx.ravel(), flux * dpy.ravel()])
            fisher = g @ g.T / sky_var
            out.append(np.linalg.inv(fisher)[1, 1])
    return float(np.mean(out))


@pytest.fixture(scope="module")
def field():
    return _render(300, seed=11)


@pytest.fixture(scope="module")
def psf():
    return GaussianPsf(SIGMA)


def _flux_for_snr(snr: float) -> float:
    # matched-filter S/N = F sqrt(sum P^2) / sigma_sky for uniform noise
    p = galsim.Gaussian(sigma=SIGMA, flux=1.0).drawImage(nx=STAMP, ny=STAMP, scale=1.0).array
    return snr * SKY_SIGMA / math.sqrt(np.sum(p * p))


@pytest.mark.parametrize("method", ["sdss", "gaussian"])
def test_centroid_errors_reach_the_cramer_rao_bound(field, psf, method):
    n = field["x"].size
    for snr in (20.0, 50.0, 100.0):
        flux = _flux_for_snr(snr)
        clean = _compose(field, np.full(n, flux))
        crb = _crb_variance(SKY_SIGMA**2, flux)
        errs, pulls = [], []
        for seed in (1, 2):
            rng = np.random.default_rng([seed, int(snr)])
            img = clean + rng.normal(0.0, SKY_SIGMA, clean.shape)
            x0 = np.floor(field["x"] + 0.5)
            y0 = np.floor(field["y"] + 0.5)
            fn = sdss_centroid if method == "sdss" else gaussian_centroid
            c = fn(img, x0, y0, psf=psf, variance=SKY_SIGMA**2)
            assert np.all(np.isfinite(c.x)) and np.all(np.isfinite(c.x_err))
            dx, dy = c.x - field["x"], c.y - field["y"]
            errs += [dx, dy]
            pulls += [dx / c.x_err, dy / c.y_err]
        errs = np.concatenate(errs)
        pulls = np.concatenate(pulls)
        ratio = math.sqrt(np.mean(errs**2) / crb)
        assert ratio < 1.2, (method, snr, ratio)
        assert abs(np.mean(errs)) < 4 * math.sqrt(crb / errs.size), (method, snr)  # no bias
        assert abs(np.sqrt(np.mean(pulls**2)) - 1.0) < 0.1, (method, snr, np.sqrt(np.mean(pulls**2)))


def test_psf_flux_is_unbiased_with_correct_errors(psf):
    field = _render(500, seed=12)
    n = field["x"].size
    rng = np.random.default_rng(5)
    snr = np.exp(rng.uniform(np.log(50.0), np.log(200.0), n))
    # flux giving that S/N for the unweighted PSF fit with sky + source noise:
    # var F = (sky sum P^2 + F sum P^3) / (sum P^2)^2  ->  a quadratic in F
    p = field["stamps"][0]
    a2, a3 = np.sum(p**2), np.sum(p**3)
    b = snr**2 * a3
    flux = (b + np.sqrt(b * b + 4 * a2**2 * snr**2 * SKY_SIGMA**2 * a2)) / (2 * a2**2)
    clean = _compose(field, flux)
    variance = SKY_SIGMA**2 + clean  # sky + source (gain 1)
    peaks = {"x": np.floor(field["x"] + 0.5), "y": np.floor(field["y"] + 0.5)}
    pulls, rel = [], []
    for seed in range(4):
        noise = np.random.default_rng([seed, 99]).normal(0.0, 1.0, clean.shape) * np.sqrt(variance)
        cat = measure_sources(clean + noise, variance, peaks, psf=psf, shapes=False)
        f = cat["psf_flux"].value
        fe = cat["psf_flux_err"].value
        assert not np.any(cat["psf_flux_flag"])
        assert np.all(f / fe > 45)  # every star is at S/N >= ~50
        pulls.append((f - flux) / fe)
        rel.append(f / flux - 1)
    pulls = np.concatenate(pulls)
    assert pulls.size == 2000
    assert abs(np.mean(pulls)) < 3.0 / math.sqrt(pulls.size), np.mean(pulls)
    assert abs(np.std(pulls) - 1.0) < 0.05, np.std(pulls)
    # and directly: the direct psf_flux at the true positions agrees
    direct = psf_flux(clean, field["x"], field["y"], psf=psf, variance=variance)
    np.testing.assert_allclose(direct.flux, flux, rtol=2e-5)  # GalSim vs core Gaussian rendering


def test_adaptive_moments_errors_are_calibrated(psf):
    from lsstdrp.measure import adaptive_moments

    field = _render(200, seed=13)
    n = field["x"].size
    flux = np.full(n, _flux_for_snr(80.0))
    clean = _compose(field, flux)
    res = []
    for seed in range(3):
        img = clean + np.random.default_rng([seed, 7]).normal(0.0, SKY_SIGMA, clean.shape)
        m = adaptive_moments(img, field["x"], field["y"], variance=SKY_SIGMA**2, guess_sigma=2.0)
        assert np.all(m.flags == 0)
        res.append(m)
    noiseless = adaptive_moments(clean, field["x"], field["y"], guess_sigma=2.0)
    for attr in ("ixx", "iyy", "ixy"):
        d = np.concatenate([getattr(m, attr) - getattr(noiseless, attr) for m in res])
        e = np.concatenate([getattr(m, attr + "_err") for m in res])
        # the Gaussian-fit error model is exact for a Gaussian star with uniform noise
        assert abs(np.std(d / e) - 1.0) < 0.1, (attr, np.std(d / e))
