"""Tests of lsstdrp.detect: detect_sources, significance_map and extract_sextractor.

- plain-numpy (and scipy) references of the numba kernels: SExtractor's filter and
  matched filter, the separable correlation, run-length and Lutz labelling, peaks,
  growth, isophotal analysis, CLEAN's heap and the CLEAN pass itself;
- truth: the completeness curve against the true matched-filter S/N (50% point within
  0.3 sigma of the threshold), and the number of pure-noise peaks above 3.5 sigma
  against the Gaussian-random-field expectation computed here from the known
  correlation of the matched-filter map (see :func:`expected_noise_peak_density`);
- sep (test-only peer) on the same pixels for the SExtractor-compatible mode;
- invariants (hypothesis): translation equivariance; both mask forms; both polarities;
- bad input and the zero-detection schema.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from astropy import units as u
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, optimize, signal, stats
from scipy.spatial import cKDTree

from lsstdrp import InputDataWarning, InvalidInputError
from lsstdrp.core import GaussianPsf, MaskPlane, MoffatPsf
from lsstdrp.detect import (
    PEAK_COLUMNS,
    SEXTRACTOR_COLUMNS,
    Detections,
    detect_sources,
    extract_sextractor,
    significance_map,
)
from lsstdrp.detect import _detect as D
from lsstdrp.detect import _kernels as K

F32 = np.float32
PSF = GaussianPsf(1.5)


def add_star(img: np.ndarray, x: int, y: int, flux: float, psf=PSF) -> None:
    """Add a star centred on pixel (x, y) (its image is ``flux * kernel``)."""
    k = psf.kernel_image(0.0, 0.0)
    r = k.shape[0] // 2
    img[y - r : y + r + 1, x - r : x + r + 1] += flux * k


# ---------------------------------------------------------------------------------------
# kernels vs references
# ---------------------------------------------------------------------------------------


def ref_sep_convolve(img: np.ndarray, kern: np.ndarray) -> np.ndarray:
    """SExtractor's filtering in float32, tap by tap (zero outside)."""
    h, w = img.shape
    kh, kw = kern.shape
    out = np.zeros((h, w), np.float32)
    pad = np.zeros((h + 2 * kh, w + 2 * kw), np.float32)
    pad[kh : kh + h, kw : kw + w] = img
    for cy in range(kh):
        for cx in range(kw):
            sl = pad[kh + cy - kh // 2 : kh + cy - kh // 2 + h, kw + cx - kw // 2 : kw + cx - kw // 2 + w]
            out += kern[cy, cx] * sl
    return out


def test_sep_convolve_matches_reference():
    rng = np.random.default_rng(0)
    img = rng.normal(0, 1, (40, 37)).astype(np.float32)
    k = D._normalized_filter(D.SEXTRACTOR_FILTER)
    out = np.empty_like(img)
    K._sep_convolve(img, k, out)
    np.testing.assert_array_equal(out, ref_sep_convolve(img, k))
    k5 = D._normalized_filter(rng.uniform(0, 1, (5, 3)))
    K._sep_convolve(img, k5, out)
    np.testing.assert_allclose(out, ndimage.correlate(img.astype(np.float64), k5.astype(np.float64), mode="constant"),
                               rtol=1e-5, atol=1e-5)


def test_sep_matched_filter_matches_reference():
    rng = np.random.default_rng(1)
    img = rng.normal(0, 1, (30, 31)).astype(np.float32)
    var = rng.uniform(0.5, 2.0, img.shape).astype(np.float32)
    var[3, 4] = 0.0  # skipped
    k = D._normalized_filter(D.SEXTRACTOR_FILTER).astype(np.float64)
    out = np.empty_like(img)
    K._sep_matched_filter(img, var, k.astype(np.float32), out)
    w = np.where(var > 0, 1.0 / np.where(var > 0, var, 1.0), 0.0)
    num = ndimage.correlate(img * w, k, mode="constant")
    den = ndimage.correlate(w, k * k, mode="constant")
    np.testing.assert_allclose(out, num / np.sqrt(den), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("psf", [GaussianPsf(1.5), MoffatPsf(3.0, beta=2.5), GaussianPsf(1.2, e1=0.3, e2=-0.2)])
def test_significance_map_matches_scipy_reference(psf):
    rng = np.random.default_rng(2)
    img = rng.normal(0, 1, (90, 110))
    var = rng.uniform(0.5, 2.0, img.shape)
    mask = np.zeros(img.shape, bool)
    mask[20:25, 30:60] = True
    s = significance_map(img, var, psf=psf, mask=mask, kernel_tolerance=1e-10)
    k = psf.kernel_image(55.0, 45.0)
    good = ~mask
    num = ndimage.correlate(np.where(good, img, 0.0), k, mode="constant")
    den = ndimage.correlate(np.where(good, var, 0.0), k * k, mode="constant")
    ref = num / np.sqrt(den)
    np.testing.assert_allclose(s[good], ref[good], rtol=2e-4, atol=2e-4)
    # deep inside a masked block only a few taps remain: float32 rounding of the
    # separable terms then shows at the 1e-3 level of S
    np.testing.assert_allclose(s[mask], ref[mask], rtol=1e-2, atol=2e-3)
    # uniform noise path (edge table) against the same formula
    s2 = significance_map(img, 1.7, psf=psf, kernel_tolerance=1e-10)
    ref = ndimage.correlate(img, k, mode="constant") / np.sqrt(ndimage.correlate(np.full(img.shape, 1.7), k * k, mode="constant"))
    np.testing.assert_allclose(s2, ref, rtol=2e-4, atol=2e-4)


def test_correlate_separable_matches_scipy():
    rng = np.random.default_rng(3)
    src = rng.normal(0, 1, (50, 41)).astype(np.float32)
    col = rng.normal(0, 1, 7).astype(np.float32)
    row = rng.normal(0, 1, 5).astype(np.float32)
    out = np.empty_like(src)
    K._correlate_separable(src, col, row, out, True)
    ref = ndimage.correlate(src.astype(np.float64), np.outer(col, row).astype(np.float64), mode="constant")
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_run_labelling_matches_scipy_label():
    rng = np.random.default_rng(4)
    binary = ndimage.binary_opening(rng.random((120, 100)) < 0.45)
    ry, rx0, rx1 = K._runs(binary)
    lab, n = K._label_runs(ry, rx0, rx1)
    out = np.zeros(binary.shape, np.int32)
    K._paint_runs(ry, rx0, rx1, lab, np.arange(n + 1), out)
    ref, nref = ndimage.label(binary, structure=np.ones((3, 3)))
    assert n == nref
    np.testing.assert_array_equal(out, ref)  # both number components in raster order


def test_lutz_scan_components_and_order():
    rng = np.random.default_rng(5)
    binary = ndimage.binary_opening(rng.random((80, 90)) < 0.5)
    offsets, py, px, flags = K._lutz_image(binary, 3)
    ref, nref = ndimage.label(binary, structure=np.ones((3, 3)))
    sizes = np.bincount(ref.ravel())
    kept = [lab for lab in range(1, nref + 1) if sizes[lab] >= 3]
    assert offsets.size - 1 == len(kept)
    keys = []
    for i in range(offsets.size - 1):
        ys, xs = py[offsets[i] : offsets[i + 1]], px[offsets[i] : offsets[i + 1]]
        labs = np.unique(ref[ys, xs])
        assert labs.size == 1 and sizes[labs[0]] == ys.size  # exactly one whole component
        assert bool(flags[i] & K.OBJ_TRUNC) == bool((ys == 0).any() | (ys == 79).any() | (xs == 0).any() | (xs == 89).any())
        ymax = ys.max()
        keys.append((ymax, xs[ys == ymax].max()))
    assert keys == sorted(keys)  # SExtractor's completion order: last row, then last pixel


def ref_mthresh(values: list[float], minarea: int) -> float:
    """SExtractor's CLEAN heap, transcribed line by line from its description."""
    n = len(values)
    if n < minarea:
        return 0.0
    heap = [F32(v) for v in values[:minarea]]
    if n == minarea:
        return float(heap[0])
    heap.sort()
    for v in values[minarea + 1 :]:
        v = F32(v)
        if v > heap[0]:
            heap[0] = v
            j = 0
            while 2 * (j + 1) <= minarea:
                k = 2 * (j + 1)
                c = k if (k != minarea and heap[k - 1] > heap[k]) else k - 1
                if heap[j] <= heap[c]:
                    break
                heap[j], heap[c] = heap[c], heap[j]
                j = c + 1
    return float(heap[0])


@settings(deadline=None, derandomize=True, max_examples=40)
@given(st.lists(st.floats(-10, 10, width=32), min_size=1, max_size=30), st.integers(1, 8))
def test_mthresh_kernel_matches_reference(values, minarea):
    cd = np.array(values, np.float32)
    thr = np.full(cd.shape, F32(0.5), np.float32)
    idx = np.arange(cd.size)
    got = K._mthresh(idx, cd, thr, minarea)
    assert got == np.float32(ref_mthresh(list(cd - thr), minarea))


def test_find_peaks_matches_reference():
    rng = np.random.default_rng(6)
    sig = ndimage.gaussian_filter(rng.normal(0, 1, (60, 70)), 1.5).astype(np.float32)
    sig[10, 10] = sig[10, 11] = 5.0  # a plateau: one peak, the first in raster order
    labels = (sig > 0).astype(np.int32)
    ys, xs = K._find_peaks(sig, labels, 1, 1, 1.0)
    got = set(zip(ys.tolist(), xs.tolist()))
    pad = np.pad(sig, 1, constant_values=-np.inf)
    ref = set()
    for y, x in zip(*np.nonzero(labels)):
        win = pad[y : y + 3, x : x + 3].ravel()
        v = sig[y, x]
        before, after = win[:4], win[5:]
        if v > 0 and (before < v).all() and (after <= v).all():
            ref.add((int(y), int(x)))
    assert got == ref and (10, 10) in got and (10, 11) not in got


def test_grow_footprints_matches_distance_transform():
    labels = np.zeros((60, 60), np.int32)
    labels[20:24, 20:26] = 1
    labels[40, 40] = 2
    out = labels.copy()
    K._grow_footprints(labels, 3.0, out)
    dist, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
    ref = np.where(dist <= 3.0, labels[iy, ix], 0)
    np.testing.assert_array_equal(out, ref)


def test_analyse_kernel_matches_numpy_moments():
    rng = np.random.default_rng(7)
    py = rng.integers(10, 20, 40)
    px = rng.integers(30, 45, 40)
    key = np.unique(py * 100 + px)
    py, px = key // 100, key % 100
    val = rng.uniform(1, 10, py.size).astype(np.float32)
    cd = rng.uniform(1, 10, py.size).astype(np.float32)
    var = rng.uniform(0.5, 1.5, py.size).astype(np.float32)
    res = np.empty(32)
    K._analyse(np.arange(py.size), py, px, val, cd, var, F32(0.5), False, 0.0, 0.0, 0.0, res)
    wgt = cd.astype(np.float64)
    mx, my = (wgt * px).sum() / wgt.sum(), (wgt * py).sum() / wgt.sum()
    x2 = (wgt * (px - mx) ** 2).sum() / wgt.sum()
    y2 = (wgt * (py - my) ** 2).sum() / wgt.sum()
    xy = (wgt * (px - mx) * (py - my)).sum() / wgt.sum()
    np.testing.assert_allclose(res[14:19], [mx, my, x2, y2, xy], rtol=1e-6)
    errx2 = (var * (px - mx) ** 2).sum() / wgt.sum() ** 2
    np.testing.assert_allclose(res[19], errx2, rtol=1e-6)
    assert res[0] == py.size and res[13] == pytest.approx(val.sum(), rel=1e-6)


def test_clean_kernel_matches_plain_loop():
    rng = np.random.default_rng(8)
    n = 60
    mx, my = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    a = rng.uniform(1, 4, n).astype(np.float32)
    b = (a * rng.uniform(0.5, 1, n)).astype(np.float32)
    cxx = (1 / a**2).astype(np.float32)
    cyy = (1 / b**2).astype(np.float32)
    cxy = np.zeros(n, np.float32)
    abcor = np.ones(n, np.float32)
    flux = rng.uniform(10, 1000, n).astype(np.float32)
    npix = rng.integers(5, 50, n)
    thr = np.full(n, F32(1.0))
    mth = rng.uniform(0, 5, n).astype(np.float32)
    got = K._clean(mx, my, a, b, cxx, cyy, cxy, abcor, flux, npix, thr, mth, 1.0, np.argsort(mx, kind="stable"))

    def params(i):
        unit = math.pi * float(a[i]) * float(b[i])
        amp = float(flux[i]) / (2 * unit * float(abcor[i]))
        return amp, (amp / float(thr[i]) - 1) * unit / float(npix[i])

    ref = np.ones(n, bool)
    for i in range(n):
        if not ref[i]:
            continue
        for j in range(i + 1, n):
            if not ref[j]:
                continue
            dx, dy = F32(mx[i] - mx[j]), F32(my[i] - my[j])
            if float(dx * dx + dy * dy) > float((a[i] + a[j]) ** 2) * 100:
                continue
            big, small = (i, j) if flux[j] < flux[i] else (j, i)
            amp, alpha = params(big)
            val = 1 + alpha * float(cxx[big] * dx * dx + cyy[big] * dy * dy + cxy[big] * dx * dy)
            if val > 1 and F32(amp / val) > mth[small]:
                ref[small] = False
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------------------------------
# truth: completeness and noise peaks
# ---------------------------------------------------------------------------------------


def test_completeness_follows_true_matched_filter_snr():
    """Stars centred on pixels with true S/N nu = F sqrt(sum psi^2 / V) in [3, 7]; the
    probit fit of detection (a peak within 2 px) vs nu puts the 50% point within 0.3
    sigma of the threshold."""
    rng = np.random.default_rng(11)
    k = PSF.kernel_image(0.0, 0.0)
    r = k.shape[0] // 2
    sp, ng = 20, 45
    n = sp * ng + 2 * r
    img = rng.standard_normal((n, n))
    ys, xs = (np.mgrid[:ng, :ng] * sp + r + sp // 2).reshape(2, -1)
    nu = rng.uniform(3.0, 7.0, ys.size)
    for y, x, f in zip(ys, xs, nu / np.sqrt((k * k).sum())):
        add_star(img, int(x), int(y), f)
    det = detect_sources(img.astype(np.float32), 1.0, psf=PSF, threshold=5.0)
    dist, _ = cKDTree(np.column_stack([det.peaks["x"].value, det.peaks["y"].value])).query(np.column_stack([xs, ys]))
    found = dist < 2.0

    def nll(t):
        p = np.clip(stats.norm.cdf(nu - t), 1e-12, 1 - 1e-12)
        return -np.sum(np.where(found, np.log(p), np.log1p(-p)))

    nu50 = optimize.minimize_scalar(nll, bounds=(3.0, 7.0), method="bounded").x
    assert abs(nu50 - 5.0) < 0.3, nu50
    assert found[nu > 6.5].mean() > 0.9 and found[nu < 3.5].mean() < 0.15


def expected_noise_peak_density(psf, u: float, n_samples: int = 400_000, seed: int = 0) -> float:
    """Expected number per pixel of lattice local maxima above ``u`` of the matched-filter
    map of white noise -- a unit-variance Gaussian random field whose correlation is
    ``(psi * psi) / sum(psi^2)`` (exact, from the kernel).

    Semi-analytic: p = P(X0 > u) * P(X0 > max of its 8 neighbours | X0 > u), the second
    factor by Monte Carlo over the exact 9-dimensional Gaussian (X0 drawn from the
    truncated normal, the neighbours from their conditional Gaussian), so no image or
    filter code is involved. The relative statistical error is ~0.2%.
    """
    k = psf.kernel_image(0.0, 0.0)
    ac = signal.correlate2d(k, k, mode="full") / (k * k).sum()
    c0 = ac.shape[0] // 2
    offs = [(0, 0)] + [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    cov = np.array([[ac[c0 + a[0] - b[0], c0 + a[1] - b[1]] for b in offs] for a in offs])
    rng = np.random.default_rng(seed)
    tail = stats.norm.sf(u)
    x0 = stats.norm.isf(tail * rng.uniform(0.0, 1.0, n_samples))
    c = cov[1:, 0]
    chol = np.linalg.cholesky(cov[1:, 1:] - np.outer(c, c))
    nb = rng.standard_normal((n_samples, 8)) @ chol.T + np.outer(x0, c)
    return float(tail * np.mean(x0 > nb.max(axis=1)))


def test_noise_peak_count_matches_gaussian_random_field():
    u, n, margin = 3.5, 1792, 16
    density = expected_noise_peak_density(PSF, u)
    rng = np.random.default_rng(12)
    img = rng.standard_normal((n, n)).astype(np.float32)
    det = detect_sources(img, 1.0, psf=PSF, threshold=u, polarity="both", grow=0)
    p = det.peaks
    ix = np.floor(p["x"].value + 0.5)
    iy = np.floor(p["y"].value + 0.5)
    inner = (ix >= margin) & (ix < n - margin) & (iy >= margin) & (iy < n - margin)
    expected = density * (n - 2 * margin) ** 2
    for sign in (1, -1):  # maxima above u and minima below -u: the same expectation
        observed = int(np.sum(inner & (p["polarity"] == sign)))
        assert abs(observed - expected) < 3 * math.sqrt(expected), (sign, observed, expected)


def test_detects_simulated_stars():
    sim = pytest.importorskip("lsstdrp.sim")
    from lsstdrp.characterize import estimate_background

    survey = sim.make_survey("tiny", rng=3)
    key = next(iter(survey.truth.keys()))
    exp, truth = survey.exposure(*key), survey.truth[key]
    bkg = estimate_background(exp.image, mask=exp.mask, bin_size=32)
    det = detect_sources(exp.image - bkg.background, exp.variance, psf=exp.psf, mask=exp.mask, threshold=5.0)
    src = truth.sources
    sigma_psf = (np.prod(exp.psf.moments(128.0, 128.0)[:2])) ** 0.25
    noise = float(np.median(np.sqrt(exp.variance)))
    snr = np.asarray(src["flux"]) / (noise * math.sqrt(4 * math.pi) * sigma_psf)  # PSF S/N of a star
    xs, ys = np.asarray(src["x"]), np.asarray(src["y"])
    h, w = exp.image.shape
    nearest = cKDTree(np.column_stack([xs, ys])).query(np.column_stack([xs, ys]), k=2)[0][:, 1]
    bright = ((np.asarray(src["kind"]) == "star") & (snr > 20) & (nearest > 10)
              & (xs > 5) & (xs < w - 6) & (ys > 5) & (ys < h - 6))
    assert bright.sum() >= 3
    tree = cKDTree(np.column_stack([det.peaks["x"].value, det.peaks["y"].value]))
    dist, _ = tree.query(np.column_stack([xs[bright], ys[bright]]))
    assert np.all(dist < 1.0), dist


# ---------------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------------


@settings(deadline=None, derandomize=True, max_examples=12)
@given(st.integers(-12, 12), st.integers(-12, 12))
def test_translation_equivariance(dy, dx):
    rng = np.random.default_rng(13)
    base = np.zeros((128, 128))
    for x, y, f in [(40, 50, 80.0), (44, 52, 60.0), (80, 70, 30.0), (60, 90, -50.0)]:
        add_star(base, x, y, f)
    base += rng.normal(0, 1, base.shape)
    shifted = np.zeros_like(base)
    shifted[30 + dy : 98 + dy, 30 + dx : 98 + dx] = base[30:98, 30:98]
    ref = np.zeros_like(base)
    ref[30:98, 30:98] = base[30:98, 30:98]
    a = detect_sources(ref, 1.0, psf=PSF, polarity="both")
    b = detect_sources(shifted, 1.0, psf=PSF, polarity="both")
    assert len(a.peaks) == len(b.peaks) > 0
    np.testing.assert_array_equal(a.peaks["x"].value + dx, b.peaks["x"].value)
    np.testing.assert_array_equal(a.peaks["y"].value + dy, b.peaks["y"].value)
    np.testing.assert_array_equal(a.peaks["significance"], b.peaks["significance"])
    np.testing.assert_array_equal(np.roll(a.footprints, (dy, dx), axis=(0, 1)), b.footprints)


def test_both_mask_forms_give_identical_detections():
    rng = np.random.default_rng(14)
    img = rng.normal(0, 1, (100, 100))
    add_star(img, 50, 50, 200.0)
    add_star(img, 20, 70, 100.0)
    boolean = np.zeros(img.shape, bool)
    boolean[45:55, 10:30] = True
    bits = np.zeros(img.shape, np.uint32)
    bits[45:55, 10:30] = MaskPlane.SAT
    bits[0:3, :] = MaskPlane.INTRP  # not excluded by the default bad planes
    a = detect_sources(img, 1.0, psf=PSF, mask=boolean)
    b = detect_sources(img, 1.0, psf=PSF, mask=bits)
    np.testing.assert_array_equal(a.footprints, b.footprints)
    np.testing.assert_array_equal(a.peaks["significance"], b.peaks["significance"])
    assert a.mask.dtype == np.uint32 and np.all((b.mask & MaskPlane.INTRP)[0:3] != 0)
    c = detect_sources(img, 1.0, psf=PSF, mask=bits, bad_planes=["BAD"], return_significance=True)  # SAT used
    d = detect_sources(img, 1.0, psf=PSF, mask=bits, return_significance=True)
    changed = ~np.isclose(c.significance, d.significance, rtol=1e-4, atol=1e-4)
    assert changed[40:60, 5:35].any() and not changed[80:, :].any()


def test_both_polarities_and_mask_bits():
    rng = np.random.default_rng(15)
    img = rng.normal(0, 1, (96, 96))
    add_star(img, 30, 30, 150.0)
    add_star(img, 65, 60, -150.0)
    both = detect_sources(img, 1.0, psf=PSF, polarity="both")
    assert (both.n_positive, both.n_negative) == (1, 1)
    pos = both.peaks[both.peaks["polarity"] == 1]
    neg = both.peaks[both.peaks["polarity"] == -1]
    assert len(pos) == len(neg) == 1
    assert pos["significance"][0] > 5 and neg["significance"][0] < -5
    assert neg["footprint_id"][0] == 2 and pos["footprint_id"][0] == 1
    assert both.footprints[60, 65] == 2 and both.footprints[30, 30] == 1
    assert both.mask[30, 30] & MaskPlane.DETECTED and not both.mask[30, 30] & MaskPlane.DETECTED_NEGATIVE
    assert both.mask[60, 65] & MaskPlane.DETECTED_NEGATIVE
    only_neg = detect_sources(img, 1.0, psf=PSF, polarity="negative")
    assert only_neg.n_positive == 0 and only_neg.n_negative == 1
    assert abs(only_neg.peaks["x"][0].value - 65) < 0.5


def test_close_neighbours_are_separate_peaks_and_split():
    rng = np.random.default_rng(16)
    img = rng.normal(0, 1, (80, 80))
    add_star(img, 38, 40, 400.0)
    add_star(img, 45, 40, 300.0)  # 7 px apart: one footprint
    det = detect_sources(img, 1.0, psf=PSF)
    assert det.n_positive == 1
    assert len(det.peaks) == 2 and set(det.peaks["footprint_id"]) == {1}
    split = detect_sources(img, 1.0, psf=PSF, deblend_nthresh=32)
    assert split.n_positive == 2
    assert sorted(split.footprints[40, [38, 45]]) == [1, 2]
    assert set(split.peaks["footprint_id"]) == {1, 2}
    # the contrast criterion: at 6 px the fainter branch holds < 0.5% of the summed S
    img2 = np.random.default_rng(16).normal(0, 1, (80, 80))
    add_star(img2, 38, 40, 400.0)
    add_star(img2, 44, 40, 300.0)
    assert detect_sources(img2, 1.0, psf=PSF, deblend_nthresh=32).n_positive == 1
    assert detect_sources(img2, 1.0, psf=PSF, deblend_nthresh=32, deblend_mincont=0.001).n_positive == 2


def test_growth_by_psf_sigma():
    img = np.zeros((64, 64))
    add_star(img, 32, 32, 60.0)
    thin = detect_sources(img, 1e-2, psf=PSF, threshold=5.0, grow=0)
    grown = detect_sources(img, 1e-2, psf=PSF, threshold=5.0, grow=2.0)
    r = 2.0 * grown.params["psf_sigma_pix"]
    assert grown.footprints.astype(bool).sum() > thin.footprints.astype(bool).sum()
    dist = ndimage.distance_transform_edt(thin.footprints == 0)
    np.testing.assert_array_equal(grown.footprints > 0, dist <= r)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, ">f4"])
def test_dtypes_and_read_only_inputs(dtype):
    rng = np.random.default_rng(17)
    img = rng.normal(0, 1, (64, 64))
    add_star(img, 30, 30, 300.0)
    img = (img * 10).astype(dtype)
    var = np.full(img.shape, 100.0)
    mask = np.zeros(img.shape, bool)
    for a in (img, var, mask):
        a.flags.writeable = False
    det = detect_sources(img, var, psf=PSF, mask=mask, return_significance=True)
    assert isinstance(det, Detections)
    assert det.significance.dtype == np.float32 and det.footprints.dtype == np.int32
    assert len(det.peaks) == 1


# ---------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------


def test_zero_detections_give_full_schema():
    det = detect_sources(np.zeros((40, 40)), 1.0, psf=PSF)
    assert len(det.peaks) == 0 and tuple(det.peaks.colnames) == PEAK_COLUMNS
    assert det.peaks["x"].unit == u.pix and det.peaks["peak_value"].unit == u.electron
    assert det.peaks["polarity"].dtype == np.int8
    assert not det.footprints.any() and det.n_positive == det.n_negative == 0
    cat = extract_sextractor(np.zeros((40, 40)), err=1.0)
    assert len(cat) == 0 and set(cat.colnames) == set(SEXTRACTOR_COLUMNS)


def test_nonfinite_pixels_are_masked_and_never_spread():
    rng = np.random.default_rng(18)
    img = rng.normal(0, 1, (64, 64)).astype(np.float32)
    img[20, 20], img[40, 41] = np.nan, np.inf
    with pytest.warns(InputDataWarning):
        det = detect_sources(img, 1.0, psf=PSF, return_significance=True)
    assert np.isfinite(det.significance).all()
    assert det.mask[20, 20] & MaskPlane.NO_DATA and det.mask[40, 41] & MaskPlane.NO_DATA
    assert len(det.peaks) == 0
    with pytest.warns(InputDataWarning):
        cat = extract_sextractor(img, err=1.0, thresh=5.0)
    assert len(cat) == 0


def test_bad_input_raises_naming_the_argument():
    img = np.zeros((40, 40))
    with pytest.raises(InvalidInputError, match="`variance`"):
        detect_sources(img, np.ones((40, 41)), psf=PSF)
    with pytest.raises(InvalidInputError, match="`mask`"):
        detect_sources(img, 1.0, psf=PSF, mask=np.zeros((41, 40), bool))
    with pytest.raises(InvalidInputError, match="`mask`"):
        detect_sources(img, 1.0, psf=PSF, mask=np.ones((40, 40), bool))
    with pytest.raises(InvalidInputError, match="`psf`"):
        detect_sources(np.zeros((8, 8)), 1.0, psf=GaussianPsf(3.0))
    with pytest.raises(InvalidInputError, match="`psf`"):
        detect_sources(img, 1.0, psf=np.ones((3, 3)))
    with pytest.raises(InvalidInputError, match="`variance`"):
        detect_sources(img, np.zeros((40, 40)), psf=PSF)
    with pytest.raises(InvalidInputError, match="`variance`"):
        detect_sources(img, -1.0, psf=PSF)
    with pytest.raises(InvalidInputError, match="`threshold`"):
        detect_sources(img, 1.0, psf=PSF, threshold=0)
    with pytest.raises(InvalidInputError, match="`polarity`"):
        detect_sources(img, 1.0, psf=PSF, polarity="up")
    with pytest.raises(TypeError):
        detect_sources(img, None, psf=PSF)
    with pytest.raises(InvalidInputError, match="`err`"):
        extract_sextractor(img)
    with pytest.raises(InvalidInputError, match="`err`"):
        extract_sextractor(img, err=0.0)
    with pytest.raises(InvalidInputError, match="`err`"):
        extract_sextractor(img, err=np.ones((3, 3)))
    with pytest.raises(InvalidInputError, match="`background`"):
        extract_sextractor(img, err=1.0, background=np.zeros((3, 3)))


# ---------------------------------------------------------------------------------------
# SExtractor-compatible mode vs sep on the same pixels
# ---------------------------------------------------------------------------------------


def _crowded_field(seed: int, shape=(160, 180), n=70) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(0, 1, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for _ in range(n):
        x, y = rng.uniform(0, shape[1]), rng.uniform(0, shape[0])
        s = rng.uniform(0.8, 3.0)
        img += rng.lognormal(3.5, 1.0) * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * s * s)) / (2 * np.pi * s * s) * 10
    return img.astype(np.float32)


_SEP_COLS = [("x", "x"), ("y", "y"), ("iso_x2", "x2"), ("iso_y2", "y2"), ("iso_xy", "xy"), ("iso_errx2", "errx2"),
             ("iso_erry2", "erry2"), ("iso_errxy", "errxy"), ("iso_a", "a"), ("iso_b", "b"), ("iso_theta", "theta"),
             ("iso_cxx", "cxx"), ("iso_cyy", "cyy"), ("iso_cxy", "cxy"), ("iso_flux", "flux"), ("iso_cflux", "cflux"),
             ("peak_value", "peak"), ("iso_cpeak", "cpeak"), ("footprint_area", "npix"), ("iso_npix_above", "tnpix"),
             ("iso_thresh", "thresh"), ("iso_xmin", "xmin"), ("iso_xmax", "xmax"), ("iso_ymin", "ymin"),
             ("iso_ymax", "ymax"), ("iso_flags", "flag")]


def _assert_same_as_sep(cat, objs):
    assert len(cat) == len(objs)
    for ours, theirs in _SEP_COLS:
        col = cat[ours]
        v = np.asarray(col.value if hasattr(col, "value") else col, dtype=np.float64)
        np.testing.assert_array_equal(v, np.asarray(objs[theirs], dtype=np.float64), err_msg=ours)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("clean", [True, False])
def test_extract_identical_to_sep_without_deblending(seed, clean):
    sep = pytest.importorskip("sep")
    img = _crowded_field(seed)
    cat = extract_sextractor(img, thresh=1.5, err=1.0, deblend_mincont=1.0, clean=clean)
    objs = sep.extract(img, 1.5, err=1.0, deblend_cont=1.0, clean=clean)
    _assert_same_as_sep(cat, objs)


def test_extract_identical_to_sep_with_err_array_mask_and_gain():
    sep = pytest.importorskip("sep")
    img = _crowded_field(3)
    rng = np.random.default_rng(3)
    err = rng.uniform(0.8, 1.3, img.shape).astype(np.float32)
    mask = np.zeros(img.shape, bool)
    mask[50:60, 70:140] = True
    for filter_type in ("matched", "conv"):
        cat = extract_sextractor(img, thresh=2.0, err=err, mask=mask, deblend_mincont=1.0, filter_type=filter_type,
                                 gain=2.0)
        objs = sep.extract(img, 2.0, err=err, mask=mask, deblend_cont=1.0, filter_type=filter_type, gain=2.0)
        _assert_same_as_sep(cat, objs)
    cat = extract_sextractor(img, thresh=3.0, err=1.0, filter_kernel=None, deblend_mincont=1.0)
    objs = sep.extract(img, 3.0, err=1.0, filter_kernel=None, deblend_cont=1.0)
    _assert_same_as_sep(cat, objs)


def test_extract_deblending_splits_as_sep():
    """With deblending the split decisions (and so the branch positions) are sep's; only
    the attribution of the faint left-over pixels differs (sep draws it at random)."""
    sep = pytest.importorskip("sep")
    img = _crowded_field(4, n=90)
    cat = extract_sextractor(img, thresh=1.5, err=1.0, clean=False)
    objs = sep.extract(img, 1.5, err=1.0, clean=False)
    assert len(cat) == len(objs)
    np.testing.assert_array_equal(cat["x"].value, objs["x"])
    np.testing.assert_array_equal(cat["y"].value, objs["y"])
    np.testing.assert_array_equal(cat["iso_flag_merged"], (objs["flag"] & sep.OBJ_MERGED) != 0)
    assert cat["iso_flag_merged"].sum() > 0
    # deterministic: the same result twice
    again = extract_sextractor(img, thresh=1.5, err=1.0, clean=False)
    np.testing.assert_array_equal(again["footprint_area"], cat["footprint_area"])


def test_extract_with_background_result_uses_global_rms():
    from lsstdrp.characterize import estimate_background

    img = _crowded_field(5) + np.float32(500.0)
    bkg = estimate_background(img, bin_size=40)
    a = extract_sextractor(img, background=bkg, thresh=2.0)
    b = extract_sextractor(img - bkg.background, thresh=2.0, err=bkg.global_rms)
    np.testing.assert_array_equal(a["x"].value, b["x"].value)
    assert a.meta["err"] == pytest.approx(bkg.global_rms)


def test_extract_does_not_modify_inputs_and_warns_nothing_on_clean_input():
    img = _crowded_field(6)
    img.flags.writeable = False
    before = img.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cat = extract_sextractor(img, err=1.0)
    np.testing.assert_array_equal(img, before)
    assert len(cat) > 10 and cat["iso_theta"].unit == u.rad


def test_detections_pickle_for_dask_workers():
    import pickle

    img = np.random.default_rng(19).normal(0, 1, (64, 64))
    add_star(img, 30, 30, 200.0)
    det = detect_sources(img, 1.0, psf=PSF)
    back = pickle.loads(pickle.dumps(det))
    np.testing.assert_array_equal(back.footprints, det.footprints)
    assert len(back.peaks) == len(det.peaks) == 1 and back.params == det.params
