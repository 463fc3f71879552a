"""Every numba kernel of lsstdrp.measure against an independent plain-numpy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from lsstdrp.core._moments import _adaptive_moments as numpy_adaptive_moments
from lsstdrp.measure import (
    MeasurementFlag,
    adaptive_moments,
    aperture_flux,
    elliptical_aperture_flux,
    flux_radius,
    gaussian_centroid,
    kron_radius,
    local_background,
    psf_flux,
    sdss_centroid,
)
from lsstdrp.measure import _kernels as K

# -- references -------------------------------------------------------------------------


def _piecewise_quad(f, lo, hi, kinks):
    """Integral of a piecewise-smooth f over [lo, hi], split at its kinks."""
    pts = sorted({lo, hi, *[k for k in kinks if lo < k < hi]})
    total = 0.0
    for a, b in zip(pts[:-1], pts[1:]):
        total += integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    return total


def ref_circle_pixel(dx: float, dy: float, r: float) -> float:
    """Area of the unit pixel at (dx, dy) inside the disk |p| <= r, by 1-D quadrature."""
    def chord(x):
        if abs(x) >= r:
            return 0.0
        h = math.sqrt(r * r - x * x)
        return max(0.0, min(dy + 0.5, h) - max(dy - 0.5, -h))

    lo, hi = max(dx - 0.5, -r), min(dx + 0.5, r)
    if hi <= lo:
        return 0.0
    kinks = [sgn * math.sqrt(r * r - yv * yv) for yv in (dy - 0.5, dy + 0.5) if abs(yv) < r for sgn in (-1, 1)]
    return _piecewise_quad(chord, lo, hi, kinks)


def ref_ellipse_pixel(dx: float, dy: float, a: float, b: float, theta: float) -> float:
    """Area of the unit pixel at (dx, dy) inside the ellipse, by 1-D quadrature over x."""
    c, s = math.cos(theta), math.sin(theta)
    # ellipse: A x^2 + B x y + C y^2 <= 1
    A = c * c / a**2 + s * s / b**2
    B = 2 * c * s * (1 / a**2 - 1 / b**2)
    C = s * s / a**2 + c * c / b**2

    def chord(x):
        disc = (B * x) ** 2 - 4 * C * (A * x * x - 1)
        if disc <= 0:
            return 0.0
        sd = math.sqrt(disc)
        y1, y2 = (-B * x - sd) / (2 * C), (-B * x + sd) / (2 * C)
        return max(0.0, min(dy + 0.5, y2) - max(dy - 0.5, y1))

    xmax = 2 * math.sqrt(C / (4 * A * C - B * B))
    kinks = [-xmax, xmax]
    for yv in (dy - 0.5, dy + 0.5):  # where the ellipse crosses the pixel's rows
        qa, qb, qc = A, B * yv, C * yv * yv - 1
        disc = qb * qb - 4 * qa * qc
        if disc > 0:
            kinks += [(-qb - math.sqrt(disc)) / (2 * qa), (-qb + math.sqrt(disc)) / (2 * qa)]
    return _piecewise_quad(chord, dx - 0.5, dx + 0.5, kinks)


def test_flag_constants_match_the_enum():
    for name in ("EDGE", "MASKED", "NO_PIXELS", "NONPOSITIVE", "NOT_CONVERGED", "NOT_A_PEAK", "SHIFT",
                 "NONFINITE", "SMALL"):
        assert getattr(K, f"F_{name}") == int(MeasurementFlag[name])


def test_circle_pixel_overlap_matches_quadrature():
    rng = np.random.default_rng(1)
    for _ in range(300):
        r = rng.uniform(0.2, 6.0)
        dx, dy = rng.uniform(-r - 1, r + 1, 2)
        got = K._circle_weight(dx, dy, r, 0)
        assert got == pytest.approx(ref_circle_pixel(dx, dy, r), abs=1e-11)


def test_ellipse_pixel_overlap_matches_quadrature():
    rng = np.random.default_rng(2)
    for _ in range(300):
        a = rng.uniform(0.3, 5.0)
        b = a * rng.uniform(0.15, 1.0)
        th = rng.uniform(-math.pi, math.pi)
        dx, dy = rng.uniform(-a - 1, a + 1, 2)
        got = K._ellipse_weight(dx, dy, math.cos(th), math.sin(th), a, b, 0)
        assert got == pytest.approx(ref_ellipse_pixel(dx, dy, a, b, th), abs=1e-10)


def ref_aperture(image, variance, x, y, r, subpix):
    ny, nx = image.shape
    flux = var = area = 0.0
    for iy in range(int(y - r) - 1, int(y + r) + 2):
        for ix in range(int(x - r) - 1, int(x + r) + 2):
            if not (0 <= iy < ny and 0 <= ix < nx):
                continue
            dx, dy = ix - x, iy - y
            if subpix == 0:
                w = ref_circle_pixel(dx, dy, r)
            else:
                s = (np.arange(subpix) + 0.5) / subpix - 0.5
                sx, sy = np.meshgrid(dx + s, dy + s)
                w = np.mean(sx**2 + sy**2 < r * r)
            flux += w * image[iy, ix]
            var += w * variance[iy, ix]
            area += w
    return flux, var, area


@pytest.mark.parametrize("subpix", [0, 1, 5])
def test_sum_circles_matches_reference(subpix):
    rng = np.random.default_rng(3)
    img = rng.normal(size=(30, 30))
    var = rng.uniform(0.5, 2.0, size=(30, 30))
    xs = rng.uniform(5, 25, 8)
    ys = rng.uniform(5, 25, 8)
    res = aperture_flux(img, xs, ys, [1.3, 3.7], variance=var, subpix=subpix)
    for i in range(8):
        for j, r in enumerate((1.3, 3.7)):
            f, v, a = ref_aperture(img, var, xs[i], ys[i], r, subpix)
            assert res.flux[i, j] == pytest.approx(f, abs=1e-9)
            assert res.flux_err[i, j] ** 2 == pytest.approx(v, abs=1e-9)
            assert res.area[i, j] == pytest.approx(a, abs=1e-9)


def test_sum_ellipses_matches_reference():
    rng = np.random.default_rng(4)
    img = rng.normal(size=(30, 30))
    for _ in range(4):
        x, y = rng.uniform(10, 20, 2)
        a, b, th = rng.uniform(2, 4), rng.uniform(0.8, 2), rng.uniform(-3, 3)
        res = elliptical_aperture_flux(img, x, y, a, b, th, 1.3)
        ref = 0.0
        for iy in range(30):
            for ix in range(30):
                ref += img[iy, ix] * ref_ellipse_pixel(ix - x, iy - y, 1.3 * a, 1.3 * b, th)
        assert res.flux[0] == pytest.approx(ref, abs=1e-9)


def test_kron_radius_matches_reference():
    rng = np.random.default_rng(5)
    img = rng.normal(size=(40, 40)) + 5 * np.exp(-((np.arange(40)[None] - 20.3) ** 2 + (np.arange(40)[:, None] - 19.6) ** 2) / 18)
    x, y, a, b, th = 20.3, 19.6, 2.5, 1.7, 0.4
    kr, _ = kron_radius(img, x, y, a, b, th, window=6.0)
    yy, xx = np.mgrid[0:40, 0:40]
    dx, dy = xx - x, yy - y
    c, s = math.cos(th), math.sin(th)
    cxx = c * c / a**2 + s * s / b**2
    cyy = s * s / a**2 + c * c / b**2
    cxy = 2 * c * s * (1 / a**2 - 1 / b**2)
    rho = np.sqrt(cxx * dx**2 + cyy * dy**2 + cxy * dx * dy)
    inside = rho <= 6.0
    assert kr[0] == pytest.approx(np.sum(rho[inside] * img[inside]) / np.sum(img[inside]), rel=1e-12)


def test_flux_radius_matches_reference():
    rng = np.random.default_rng(6)
    img = np.exp(-((np.arange(50)[None] - 24.7) ** 2 + (np.arange(50)[:, None] - 25.2) ** 2) / 20.0)
    img += 0.01 * rng.normal(size=img.shape)
    x, y, rmax, sub, nb = 24.7, 25.2, 12.0, 4, 64
    got = flux_radius(img, x, y, rmax, [0.25, 0.5, 0.9], subpix=sub, nbins=nb).radius[0]
    # reference: sub-pixel centres binned in radius, cumulative, linear interpolation
    s = (np.arange(sub) + 0.5) / sub - 0.5
    cum = np.zeros(nb)
    for iy in range(50):
        for ix in range(50):
            sx, sy = np.meshgrid(ix - x + s, iy - y + s)
            rr = np.hypot(sx, sy).ravel()
            rr = rr[rr < rmax]
            np.add.at(cum, np.minimum((rr / (rmax / nb)).astype(int), nb - 1), img[iy, ix] / sub**2)
    cum = np.cumsum(cum)
    edges = np.arange(nb + 1) * rmax / nb
    ref = np.interp(np.array([0.25, 0.5, 0.9]) * cum[-1], np.concatenate([[0.0], cum]), edges)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_local_background_matches_reference():
    rng = np.random.default_rng(7)
    img = rng.normal(3.0, 1.0, (60, 60))
    img[10:14, 30:34] = 50.0  # outliers in the annulus
    x, y = 30.4, 29.6
    got = local_background(img, x, y, inner=7.0, outer=15.0, nsigma=3.0, niter=3)
    yy, xx = np.mgrid[0:60, 0:60]
    d2 = (xx - x) ** 2 + (yy - y) ** 2
    vals = img[(d2 >= 49) & (d2 < 225)]
    keep = np.ones(vals.size, bool)
    for _ in range(3):
        mean, std = vals[keep].mean(), vals[keep].std(ddof=1)
        new = np.abs(vals - np.median(vals[keep])) <= 3 * std
        if np.array_equal(new, keep):
            break
        keep = new
    assert got.value[0] == pytest.approx(vals[keep].mean(), rel=1e-12)
    assert got.err[0] == pytest.approx(vals[keep].std(ddof=1) / math.sqrt(keep.sum()), rel=1e-12)
    assert got.npixels[0] == keep.sum()


def test_adaptive_moments_match_numpy_reference():
    rng = np.random.default_rng(8)
    yy, xx = np.mgrid[0:41, 0:41]
    for _ in range(5):
        x0, y0 = rng.uniform(18, 22, 2)
        sxx, syy = rng.uniform(2, 6, 2)
        sxy = rng.uniform(-0.5, 0.5) * math.sqrt(sxx * syy)
        det = sxx * syy - sxy**2
        dx, dy = xx - x0, yy - y0
        # a non-Gaussian profile (Gaussian plus exponential wings)
        q = (syy * dx**2 - 2 * sxy * dx * dy + sxx * dy**2) / det
        img = np.exp(-0.5 * q) + 0.05 * np.exp(-np.sqrt(q))
        ref = numpy_adaptive_moments(img, guess_sigma=3.0, guess_center=(20.0, 20.0), tol=1e-13, max_iter=500)
        got = adaptive_moments(img, 20.0, 20.0, guess_sigma=3.0, max_nsig2=np.inf, tol=1e-12)
        assert ref[5] and got.flags[0] == 0
        np.testing.assert_allclose([got.ixx[0], got.iyy[0], got.ixy[0]], ref[:3], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose([got.x[0], got.y[0]], ref[3:5], atol=1e-8)


def test_sdss_centroid_matches_numpy_reference():
    rng = np.random.default_rng(9)
    yy, xx = np.mgrid[0:41, 0:41]
    sig = 1.8
    for _ in range(4):
        x0, y0 = rng.uniform(19.5, 20.5, 2)
        img = 100 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 2.1**2)) + rng.normal(0, 0.5, xx.shape)
        got = sdss_centroid(img, 20, 20, sigma=sig, variance=0.25)
        hk = int(math.ceil(3.5 * sig))
        k = np.exp(-(np.arange(-hk, hk + 1)[:, None] ** 2 + np.arange(-hk, hk + 1)[None] ** 2) / (2 * sig**2))
        px, py = 20, 20
        for _ in range(5):  # climb to the smoothed maximum
            S = np.array([[np.sum(k * img[py + j - hk:py + j + hk + 1, px + i - hk:px + i + hk + 1]) / k.sum()
                           for i in (-1, 0, 1)] for j in (-1, 0, 1)])
            j, i = np.unravel_index(np.argmax(S), S.shape)
            if (i, j) == (1, 1):
                break
            px, py = px + i - 1, py + j - 1
        v, u = np.mgrid[-1:2, -1:2]
        design = np.stack([np.ones(9), u.ravel(), v.ravel(), u.ravel() ** 2, (u * v).ravel(), v.ravel() ** 2], 1)
        c = np.linalg.lstsq(design, np.log(S.ravel()), rcond=None)[0]
        H = np.array([[2 * c[3], c[4]], [c[4], 2 * c[5]]])
        d = -np.linalg.solve(H, c[1:3])
        assert got.x[0] == pytest.approx(px + d[0], abs=1e-10)
        assert got.y[0] == pytest.approx(py + d[1], abs=1e-10)
        # the error by finite differences of the estimator w.r.t. each pixel
        assert 0 < got.x_err[0] < 0.1


def test_sdss_centroid_error_matches_finite_differences():
    """The propagated covariance equals J V J^T with J from perturbing pixels one by one."""
    yy, xx = np.mgrid[0:31, 0:31]
    img = 50 * np.exp(-((xx - 15.2) ** 2 + (yy - 14.7) ** 2) / (2 * 2.0**2))
    base = sdss_centroid(img, 15, 15, sigma=2.0, variance=1.0)
    jx = np.zeros(img.shape)
    jy = np.zeros(img.shape)
    h = 1e-4
    for iy in range(5, 26):
        for ix in range(5, 26):
            im2 = img.copy()
            im2[iy, ix] += h
            c = sdss_centroid(im2, 15, 15, sigma=2.0)
            jx[iy, ix] = (c.x[0] - base.x[0]) / h
            jy[iy, ix] = (c.y[0] - base.y[0]) / h
    assert base.x_err[0] == pytest.approx(math.sqrt(np.sum(jx**2)), rel=1e-4)
    assert base.y_err[0] == pytest.approx(math.sqrt(np.sum(jy**2)), rel=1e-4)
    assert base.xy_cov[0] == pytest.approx(np.sum(jx * jy), abs=1e-8)


def test_gaussian_centroid_matches_numpy_reference():
    rng = np.random.default_rng(10)
    yy, xx = np.mgrid[0:41, 0:41]
    img = 100 * np.exp(-((xx - 20.3) ** 2 + (yy - 19.8) ** 2) / (2 * 2.2**2)) + rng.normal(0, 0.3, xx.shape)
    sig, x, y = 2.0, 20.0, 20.0
    for _ in range(30):
        d2 = (xx - x) ** 2 + (yy - y) ** 2
        w = np.where(d2 <= (4 * sig) ** 2, np.exp(-d2 / (2 * sig**2)), 0.0) * img
        sx, sy = 2 * np.sum(w * (xx - x)) / w.sum(), 2 * np.sum(w * (yy - y)) / w.sum()
        x, y = x + sx, y + sy
        if sx * sx + sy * sy < 1e-8:
            break
    got = gaussian_centroid(img, 20.0, 20.0, sigma=sig, tol=1e-4)
    assert got.x[0] == pytest.approx(x, abs=1e-12)
    assert got.y[0] == pytest.approx(y, abs=1e-12)


def test_psf_flux_matches_numpy_reference():
    from lsstdrp.core import GaussianPsf

    rng = np.random.default_rng(11)
    psf = GaussianPsf(1.6)
    img = rng.normal(0, 1, (40, 40))
    var = rng.uniform(0.5, 2, (40, 40))
    x, y = 19.7, 20.4
    got = psf_flux(img, x, y, psf=psf, variance=var, shape=15)
    p = psf.image(x, y, shape=15)
    sl = np.s_[20 - 7:20 + 8, 20 - 7:20 + 8]
    d, v = img[sl], var[sl]
    f = np.sum(p * d) / np.sum(p * p)
    assert got.flux[0] == pytest.approx(f, rel=1e-12)
    assert got.flux_err[0] == pytest.approx(math.sqrt(np.sum(p * p * v)) / np.sum(p * p), rel=1e-12)
    assert got.chi2[0] == pytest.approx(np.sum((d - f * p) ** 2 / v) / (p.size - 1), rel=1e-12)
    assert got.npixels[0] == 225
