"""warp(): against a numpy reference, flux/position truth, variance, covariance, masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsstdrp import InvalidInputError
from lsstdrp.coadd import KERNELS, WarpedPsf, warp
from lsstdrp.core import GaussianPsf, MaskPlane

from .conftest import map_pixels, reference_warp, tan_wcs

ND = np.uint32(MaskPlane.NO_DATA)


@pytest.mark.parametrize("kernel", list(KERNELS))
def test_matches_numpy_reference(kernel):
    rng = np.random.default_rng(1)
    img = rng.normal(size=(40, 44))
    var = rng.uniform(0.5, 2.0, size=img.shape)
    mask = np.zeros(img.shape, np.uint32)
    mask[20, 21] = MaskPlane.CR
    mask[10, 30] = MaskPlane.SAT
    w_in = tan_wcs((20, 20))
    w_out = tan_wcs((21.3, 18.6), rot_deg=17.0, scale=1.02)
    r = warp(img, var, mask, wcs_in=w_in, wcs_out=w_out, shape_out=(38, 41), kernel=kernel,
             mapping_tolerance=1e-7)
    ref, refv, refm = reference_warp(img, var, mask, w_in, w_out, (38, 41), a=KERNELS[kernel])
    good = (refm & ND) == 0
    assert np.array_equal((r.mask & ND) != 0, ~good)
    # table-interpolated kernel (2e-8) and interpolated Jacobian
    np.testing.assert_allclose(r.image[good], ref[good], rtol=0, atol=2e-6)
    np.testing.assert_allclose(r.variance[good], refv[good], rtol=2e-6)
    np.testing.assert_array_equal(r.mask, refm)
    assert np.isnan(r.image[~good]).all()
    assert r.mapping_max_error < 1e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, ">f4"])
def test_dtype_and_inputs_not_modified(dtype):
    rng = np.random.default_rng(2)
    img = (rng.normal(size=(30, 30)) * 10).astype(dtype)
    var = np.ones((30, 30), dtype=dtype)
    img.flags.writeable = False
    before = img.copy()
    w = tan_wcs((15, 15))
    r = warp(img, var, wcs_in=w, wcs_out=tan_wcs((15.5, 14.2)), shape_out=(30, 30))
    expect = np.float64 if np.dtype(dtype) in (np.dtype(np.float64), np.dtype(np.int32)) else np.float32
    assert r.image.dtype == expect and r.variance.dtype == expect and r.mask.dtype == np.uint32
    np.testing.assert_array_equal(img, before)


def _star_field(shape, n, sigma, rng, margin=25):
    """Isolated stars on a grid (>= 40 px apart) with random sub-pixel positions."""
    ny, nx = shape
    psf = GaussianPsf(sigma)
    img = np.zeros(shape)
    gy, gx = np.mgrid[margin : ny - margin + 1 : 40, margin : nx - margin + 1 : 40]
    xs = (gx.ravel() + rng.uniform(-0.5, 0.5, gx.size))[:n]
    ys = (gy.ravel() + rng.uniform(-0.5, 0.5, gy.size))[:n]
    for x, y in zip(xs, ys):
        st_ = psf.image(x, y, shape=41)
        X, Y = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        img[Y - 20 : Y + 21, X - 20 : X + 21] += st_
    return img, xs, ys


def _aperture_sum(img, x, y, r):
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    sel = (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    return float(np.nansum(img[sel]))


def _centroid(img, x, y):
    from lsstdrp.measure import adaptive_moments

    m = adaptive_moments(img, x, y, guess_sigma=2.0)
    return float(m.x[0]), float(m.y[0])


@pytest.mark.parametrize("kernel", ["lanczos3", "lanczos5"])
def test_flux_and_position_truth(kernel, record_property):
    """Well-sampled stars (sigma 2 px): flux conserved < 1e-3, positions < 2 mas."""
    rng = np.random.default_rng(3)
    shape = (200, 200)
    img, xs, ys = _star_field(shape, 12, 2.0, rng, margin=35)
    w_in = tan_wcs((100, 100))
    w_out = tan_wcs((103.37, 96.81), rot_deg=23.0, scale=1.02)
    r = warp(img, np.ones(shape), wcs_in=w_in, wcs_out=w_out, shape_out=shape, kernel=kernel)
    xo, yo = map_pixels(w_in, w_out, xs, ys)
    dflux, dpos = [], []
    for x, y in zip(xo, yo):
        dflux.append(_aperture_sum(r.image, x, y, 15.0) / _aperture_sum(img, *map_pixels(w_out, w_in, x, y), 15.0) - 1)
        cx, cy = _centroid(r.image, x, y)
        dpos.append(math.hypot(cx - x, cy - y) * 0.2 * 1.02 * 1000.0)  # mas
    # isolated? neighbours within the aperture affect both sides identically
    record_property(f"warp_{kernel}_max_dflux", float(np.max(np.abs(dflux))))
    record_property(f"warp_{kernel}_max_dpos_mas", float(np.max(dpos)))
    assert np.max(np.abs(dflux)) < 1e-3
    assert np.max(dpos) < 2.0


def test_flux_convention_two_percent_scale(record_property):
    """conserve_flux applies |det J| (flux kept); False keeps surface brightness (flux / 1.02**2)."""
    rng = np.random.default_rng(4)
    shape = (120, 120)
    img, xs, ys = _star_field(shape, 4, 2.0, rng, margin=35)
    w_in = tan_wcs((60, 60))
    w_out = tan_wcs((60, 60), scale=1.02)
    kw = dict(wcs_in=w_in, wcs_out=w_out, shape_out=shape)
    cons = warp(img, np.ones(shape), **kw)
    sb = warp(img, np.ones(shape), conserve_flux=False, **kw)
    total_in = img.sum()
    ratio_c = float(np.nansum(cons.image) / total_in)
    ratio_s = float(np.nansum(sb.image) / total_in)
    record_property("flux_ratio_conserve", ratio_c)
    record_property("flux_ratio_surface_brightness", ratio_s)
    assert abs(ratio_c - 1) < 1e-3
    assert abs(ratio_s * 1.02**2 - 1) < 1e-3
    # surface brightness: a flat image stays flat at the same level
    flat = warp(np.full(shape, 5.0), np.ones(shape), conserve_flux=False, **kw)
    np.testing.assert_allclose(flat.image[~np.isnan(flat.image)], 5.0, rtol=1e-10)


def test_truth_survey_flux_and_positions(tiny_survey, record_property):
    """Simulated exposures (true WCS with distortion and turbulence) warped to TAN
    frames: isolated stars keep their noiseless flux (< 1e-3) and land where the true
    WCS puts them (< 2 mas)."""
    s = tiny_survey
    dfl, dpos = [], []
    for key in s.keys():
        t = s.truth[key]
        ny, nx = t.noiseless.shape
        clean = (t.noiseless - t.background).astype(np.float64)
        ra, dec = t.wcs.pixel_to_world_values(nx / 2, ny / 2)
        w_out = tan_wcs((nx / 2 + 3.3, ny / 2 - 2.7), rot_deg=5.0, crval=(float(ra), float(dec)))
        r = warp(clean, np.ones_like(clean), wcs_in=t.wcs, wcs_out=w_out, shape_out=(ny, nx))
        src = t.sources
        allx, ally = np.asarray(src["x"], float), np.asarray(src["y"], float)
        for row in src[(src["kind"] == "star") & src["in_image"]]:
            x, y, f = float(row["x"]), float(row["y"]), float(row["flux"])
            # total flux: an r = 18 px (3.6", >4 FWHM) aperture around a star with no
            # other source within 40 px (smaller apertures see the interpolation blur)
            if f < 1000 or np.sum(np.hypot(allx - x, ally - y) < 40) > 1:
                continue
            if not (25 < x < nx - 25 and 25 < y < ny - 25):
                continue
            xo, yo = map_pixels(t.wcs, w_out, np.array([x]), np.array([y]))
            if not (25 < xo[0] < nx - 25 and 25 < yo[0] < ny - 25):
                continue
            dfl.append(_aperture_sum(r.image, xo[0], yo[0], 18.0) / _aperture_sum(clean, x, y, 18.0) - 1)
            cx_in, cy_in = _centroid(clean, x, y)
            cx, cy = _centroid(r.image, xo[0], yo[0])
            # the warped centroid against the input centroid mapped through the true WCS
            mx, my = map_pixels(t.wcs, w_out, np.array([cx_in]), np.array([cy_in]))
            dpos.append(math.hypot(cx - mx[0], cy - my[0]) * 200.0)
    record_property("sim_warp_n_stars", len(dfl))
    record_property("sim_warp_max_dflux", float(np.max(np.abs(dfl))))
    record_property("sim_warp_max_dpos_mas", float(np.max(dpos)))
    assert len(dfl) >= 5
    assert np.max(np.abs(dfl)) < 1e-3
    assert np.max(dpos) < 2.0


def test_variance_plane_matches_empirical(record_property):
    """Per-pixel variance of warped noise (250 realisations) vs the warped variance plane,
    binned by the predicted value: within 2% (statistical error ~0.4% per bin)."""
    rng = np.random.default_rng(5)
    shape = (48, 48)
    yy, xx = np.mgrid[:48, :48]
    var = 1.0 + xx / 47.0  # a gradient: the plane must follow it
    w_in = tan_wcs((24, 24))
    w_out = tan_wcs((24.4, 23.7), rot_deg=11.0)
    n = 250
    stack = []
    r = None
    for _ in range(n):
        noise = rng.normal(size=shape) * np.sqrt(var)
        r = warp(noise, var, wcs_in=w_in, wcs_out=w_out, shape_out=shape, covariance_samples=1)
        stack.append(r.image)
    emp = np.var(np.array(stack), axis=0, ddof=1)
    good = (r.mask & ND) == 0
    pred = r.variance[good]
    e = emp[good]
    edges = np.quantile(pred, np.linspace(0, 1, 6))
    worst = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (pred >= lo) & (pred <= hi)
        worst = max(worst, abs(e[sel].mean() / pred[sel].mean() - 1))
    record_property("variance_plane_max_bin_dev", worst)
    # statistical error per bin ~ sqrt(2/(250 * npix_bin)) ~ 0.4%
    assert worst < 0.02


def _measurement_weights():
    """PSF-flux weights (Gaussian sigma 2 px: psf / sum psf^2) and r = 3, 6, 12 px apertures."""
    out = {}
    stamp = GaussianPsf(2.0).kernel_image(0, 0)
    out["psf"] = stamp / np.sum(stamp * stamp)
    for rad in (3, 6, 12):
        yy, xx = np.mgrid[-rad : rad + 1, -rad : rad + 1]
        out[f"ap{rad}"] = (xx**2 + yy**2 <= rad * rad).astype(float)
    return out


def test_measurement_variance_matches_empirical(record_property):
    """Variance of PSF fluxes and r = 3-12 px aperture fluxes on warped noise vs
    measurement_variance: within 5% (>= 10,000 independent placements per kind, so the
    sampling error of the empirical variance is 1.4%); the naive per-pixel errors are
    recorded too."""
    from numpy.lib.stride_tricks import sliding_window_view

    rng = np.random.default_rng(6)
    shape = (640, 640)
    w_in = tan_wcs((320, 320))
    w_out = tan_wcs((322.31, 317.77), rot_deg=33.0, scale=1.01)
    kinds = _measurement_weights()
    fluxes = {k: [] for k in kinds}
    pred, naive, centres = {}, {}, {}
    it = 0
    while min(len(v) for v in fluxes.values()) < 10000:
        noise = rng.normal(size=shape)
        r = warp(noise, np.ones(shape), wcs_in=w_in, wcs_out=w_out, shape_out=shape)
        img = np.where(np.isnan(r.image), np.nan, r.image)
        for k, wts in kinds.items():
            if len(fluxes[k]) >= 10000:
                continue
            h = wts.shape[0]
            spacing = h + 6  # beyond the correlation length: independent placements
            if k not in centres:
                y0s = np.arange(0, shape[0] - h, spacing)
                x0s = np.arange(0, shape[1] - h, spacing)
                win = sliding_window_view(img, (h, h))[np.ix_(y0s, x0s)]
                ok = np.isfinite(win).all(axis=(2, 3))
                jj, ii = np.nonzero(ok)
                centres[k] = (y0s[jj], x0s[ii])
                pred[k] = np.mean([r.measurement_variance(wts, x0=x, y0=y) for y, x in zip(*centres[k])])
                naive[k] = np.mean([r.covariance.naive_variance(wts, x0=x, y0=y) for y, x in zip(*centres[k])])
            ys, xs = centres[k]
            win = sliding_window_view(img, (h, h))[ys, xs]
            fluxes[k].extend(np.einsum("nij,ij->n", win, wts).tolist())
        it += 1
    for k in kinds:
        fl = np.array(fluxes[k])
        assert np.isfinite(fl).all()
        emp = float(np.var(fl, ddof=1))
        record_property(f"meas_var_{k}_emp_over_pred", emp / pred[k])
        record_property(f"meas_var_{k}_emp_over_naive", emp / naive[k])
        record_property(f"meas_var_{k}_n", fl.size)
        assert abs(emp / pred[k] - 1) < 0.05, k
        # the correlations matter: naive errors miss by more than the tolerance
        assert abs(emp / naive[k] - 1) > 0.05, k


def test_mask_propagation_and_nodata():
    img = np.zeros((40, 40))
    var = np.ones((40, 40))
    mask = np.zeros((40, 40), np.uint32)
    mask[20, 20] = MaskPlane.CR
    img[10, 10] = np.nan  # non-finite input -> NO_DATA, excluded from the sums
    w = tan_wcs((20, 20))
    r = warp(img, var, mask, wcs_in=w, wcs_out=tan_wcs((20.5, 20.5)), shape_out=(40, 40))
    cr = (r.mask & np.uint32(MaskPlane.CR)) != 0
    # half-pixel shift: the 2x2 output pixels around the bad pixel carry weight 0.6^2 > 0.05,
    # the next ring 0.6 * 0.6 * ... still > 0.05; the flagged set is compact around (20.5, 20.5)
    ys, xs = np.nonzero(cr)
    assert 4 <= ys.size <= 16 and abs(xs.mean() - 20.5) < 0.01 and abs(ys.mean() - 20.5) < 0.01
    assert np.isfinite(r.image[cr]).all()  # CR is flagged, not excluded (exclude_planes=NO_DATA)
    nd = (r.mask & ND) != 0
    # the NaN pixel is left out and the rest renormalised (flagged INTRP), never NaN-spread
    assert np.isfinite(r.image[~nd]).all() and np.isnan(r.image[nd]).all()
    intrp = (r.mask & np.uint32(MaskPlane.INTRP)) != 0
    assert intrp[8:14, 8:14].any() and not nd[8:14, 8:14].any()
    # outside the input (kernel leaving the image) -> NO_DATA
    assert nd[0, :].all() and nd[:, 0].all()
    assert not nd[20, 20]


def test_no_overlap_and_bad_input():
    img = np.zeros((20, 20))
    w = tan_wcs((10, 10))
    far = tan_wcs((10, 10), crval=(151.0, 2.0))
    with pytest.raises(InvalidInputError, match="overlap"):
        warp(img, img, wcs_in=w, wcs_out=far, shape_out=(20, 20))
    with pytest.raises(InvalidInputError, match="variance"):
        warp(img, np.zeros((20, 21)), wcs_in=w, wcs_out=w, shape_out=(20, 20))
    with pytest.raises(InvalidInputError, match="kernel"):
        warp(img, img, wcs_in=w, wcs_out=w, shape_out=(20, 20), kernel="cubic")
    with pytest.raises(InvalidInputError, match="wcs_out"):
        warp(img, img, wcs_in=w, wcs_out=None, shape_out=(20, 20))
    with pytest.raises(InvalidInputError, match="shape_out"):
        warp(img, img, wcs_in=w, wcs_out=w, shape_out=(0, 20))
    with pytest.raises(InvalidInputError, match="covariance_radius"):
        warp(img, img, wcs_in=w, wcs_out=w, shape_out=(20, 20), covariance_radius=2)


def test_covariance_kernel_shape_and_identity():
    rng = np.random.default_rng(7)
    img = rng.normal(size=(64, 64))
    w = tan_wcs((32, 32))
    r = warp(img, np.ones_like(img), wcs_in=w, wcs_out=tan_wcs((33, 30)), shape_out=(64, 64))
    k = r.covariance.kernel_at(32, 32)
    assert k.shape == (11, 11)  # >= 7x7 lags
    # integer shift: no correlation, variance unchanged
    np.testing.assert_allclose(k[5, 5], 1.0)
    np.testing.assert_allclose(np.delete(k.ravel(), 60), 0.0, atol=1e-9)
    np.testing.assert_allclose(r.image[10:50, 10:50], img[12:52, 9:49], atol=1e-9)


def test_warped_psf_matches_warped_star(record_property):
    """WarpedPsf.image equals the warp of a star rendered with the same input PSF."""
    psf = GaussianPsf(1.8, e1=0.1, e2=-0.05)
    shape = (80, 80)
    w_in = tan_wcs((40, 40))
    w_out = tan_wcs((41.3, 38.8), rot_deg=30.0, scale=1.03)
    xi, yi = 39.37, 41.81
    img = np.zeros(shape)
    img[42 - 20 : 42 + 21, 39 - 20 : 39 + 21] = psf.image(xi, yi, shape=41)
    r = warp(img, np.ones(shape), wcs_in=w_in, wcs_out=w_out, shape_out=shape, psf=psf)
    xo, yo = map_pixels(w_in, w_out, np.array([xi]), np.array([yi]))
    stamp = r.psf.image(xo[0], yo[0], shape=25)
    X, Y = int(math.floor(xo[0] + 0.5)), int(math.floor(yo[0] + 0.5))
    cut = r.image[Y - 12 : Y + 13, X - 12 : X + 13]
    cut = cut / cut.sum()
    diff = float(np.max(np.abs(stamp / stamp.sum() - cut)) / stamp.max())
    record_property("warped_psf_max_rel_diff", diff)
    assert diff < 1e-3
    k = r.psf.kernel_image(30.2, 44.7)
    assert k.shape[0] % 2 == 1 and abs(k.sum() - 1) < 1e-12
    ixx, iyy, ixy = r.psf.moments(30, 44)
    assert np.isfinite([ixx, iyy, ixy]).all() and ixx > 0
    assert isinstance(r.psf, WarpedPsf)


@settings(deadline=None, derandomize=True, max_examples=15)
@given(dx=st.floats(-3, 3), dy=st.floats(-3, 3), rot=st.floats(-180, 180))
def test_flux_conservation_property(dx, dy, rot):
    psf = GaussianPsf(2.2)
    shape = (64, 64)
    img = np.zeros(shape)
    img[32 - 15 : 32 + 16, 32 - 15 : 32 + 16] = psf.image(32.2, 31.7, shape=31) * 1000.0
    w_in = tan_wcs((32, 32))
    w_out = tan_wcs((32 + dx, 32 + dy), rot_deg=rot)
    r = warp(img, np.ones(shape), wcs_in=w_in, wcs_out=w_out, shape_out=shape)
    assert abs(np.nansum(r.image) / img.sum() - 1) < 1e-3
