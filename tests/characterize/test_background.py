"""Tests of lsstdrp.characterize.estimate_background.

- plain-numpy references of every numba kernel (SExtractor's mesh statistics with its
  original sequential histogram walk, the median filter, the bad-mesh fill, the spline
  recurrences and evaluation, Akima slopes), which must agree exactly or to rounding;
- sep (test-only peer) on the same pixels, bit for bit, for odd shapes and both mask
  forms;
- truth: flat and tilted skies with Gaussian noise, tolerances from the noise;
- dtype policy, read-only inputs, bad input.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsstdrp import InputDataWarning, InvalidInputError
from lsstdrp.characterize import BACKGROUND_BAD_PLANES, BackgroundResult, estimate_background
from lsstdrp.characterize import _kernels as K
from lsstdrp.core import MaskPlane

F32 = np.float32


# ---------------------------------------------------------------------------------------
# plain-numpy references of the kernels
# ---------------------------------------------------------------------------------------


def ref_sextractor_mesh(pix: np.ndarray, area: int) -> tuple[bool, float, float]:
    """SExtractor's backstat + backhisto + backguess on the good pixels ``pix`` (float32),
    written independently from the kernel, with the original sequential median walk."""
    if pix.size == 0 or F32(pix.size) < F32(area * 0.5):
        return False, 0.0, 0.0
    p = pix.astype(np.float64)
    mean = p.sum() / p.size
    var = (p * p).sum() / p.size - mean * mean
    sig = math.sqrt(var) if var > 0 else 0.0
    lcut, hcut = F32(mean - 2 * sig), F32(mean + 2 * sig)
    keep = pix[(pix <= hcut) & (pix >= lcut)].astype(np.float64)
    if keep.size:
        mean = keep.sum() / keep.size
        var = (keep * keep).sum() / keep.size - mean * mean
        sig = math.sqrt(var) if var > 0 else 0.0
        n = keep.size
    else:
        n = p.size
    bm_mean = F32(mean)
    nlev = min(int(math.sqrt(2 / math.pi) * 5 / 4 * n + 1), 4096)
    qscale = F32(2 * 5 * sig / nlev) if sig > 0 else F32(1.0)
    qzero = F32(mean - 5 * sig)
    cste = F32(0.499999 - float(qzero / qscale))
    v = (pix / qscale).astype(np.float32) + cste
    ok = (v > F32(-1)) & (v < F32(nlev))
    histo = np.bincount(v[ok].astype(np.int64), minlength=nlev)[:nlev]
    lcut_i, hcut_i, nlm1 = 0, nlev - 1, nlev - 1
    sig, sig1 = 10.0 * nlm1, 1.0
    mea = med = float(bm_mean)
    it = 100
    while it > 0 and sig >= 0.1 and abs(sig / sig1 - 1.0) > 1e-4:
        it -= 1
        sig1 = sig
        total, mea, sig, lowsum, highsum = 0, 0.0, 0.0, 0, 0
        lo, hi = lcut_i, hcut_i
        for i in range(lcut_i, hcut_i + 1):
            if lowsum < highsum:
                lowsum += histo[lo]
                lo += 1
            else:
                highsum += histo[hi]
                hi -= 1
            total += histo[i]
            mea += float(histo[i]) * i
            sig += float(histo[i]) * i * i
        if hi >= 0:
            a, b = histo[min(max(lo, 0), nlm1)], histo[min(hi, nlm1)]
            med = hi + 0.5 + (float(highsum) - float(lowsum)) / (2.0 * max(a, b))
        else:
            med = 0.0
        if total:
            mea /= total
            sig = sig / total - mea * mea
        sig = math.sqrt(sig) if sig > 0 else 0.0
        ft = med - 3 * sig
        lcut_i = int(ft + 0.5) if ft > 0 else 0
        ft = med + 3 * sig
        hcut_i = int(ft + 0.5 if ft > 0 else ft - 0.5) if ft < nlm1 else nlm1
    qz, qs = float(qzero), float(qscale)
    if abs(sig) > 0:
        mode = qz + ((2.5 * med - 1.5 * mea) if abs((mea - med) / sig) < 0.3 else med) * qs
    else:
        mode = qz + mea * qs
    return True, float(F32(mode)), float(F32(sig * qs))


def ref_walk(histo: np.ndarray, lcut: int, hcut: int) -> int:
    """SExtractor's alternating median walk: the number of bins taken from the low end."""
    lowsum = highsum = 0
    lo, hi = lcut, hcut
    for _ in range(lcut, hcut + 1):
        if lowsum < highsum:
            lowsum += histo[lo]
            lo += 1
        else:
            highsum += histo[hi]
            hi -= 1
    return lo - lcut


def ref_median_filter(back: np.ndarray, sigma: np.ndarray, fh: int, fw: int) -> tuple[np.ndarray, np.ndarray]:
    ny, nx = back.shape
    ob, os_ = np.empty_like(back), np.empty_like(sigma)
    for py in range(ny):
        ry = min(fh // 2, py, ny - 1 - py)
        for px in range(nx):
            rx = min(fw // 2, px, nx - 1 - px)
            wb = np.sort(back[py - ry : py + ry + 1, px - rx : px + rx + 1].ravel())
            ws = np.sort(sigma[py - ry : py + ry + 1, px - rx : px + rx + 1].ravel())
            n = wb.size
            med = (lambda v: v[n // 2] if n % 2 else F32((v[n // 2 - 1] + v[n // 2]) / F32(2)))
            ob[py, px], os_[py, px] = med(wb), med(ws)
    return ob, os_


def ref_spline_d2(values: np.ndarray) -> np.ndarray:
    """SExtractor's second-derivative recurrence along axis 0 (float32)."""
    n = values.shape[0]
    out = np.zeros_like(values)
    if n < 2:
        return out
    u = np.zeros_like(values)
    for k in range(1, n - 1):
        temp = F32(-1) / (out[k - 1] + F32(4))
        out[k] = temp
        u[k] = temp * (u[k - 1] - F32(6) * ((values[k + 1] + values[k - 1]) - F32(2) * values[k]))
    for k in range(n - 2, 0, -1):
        out[k] = ((out[k] * out[k + 1] + u[k]).astype(np.float64) / 6.0).astype(np.float32)
    return out


def ref_interpolate(back: np.ndarray, bh: int, bw: int, shape: tuple[int, int]) -> np.ndarray:
    """Full-resolution SExtractor spline map, row by row in float32."""
    h, w = shape
    nby, nbx = back.shape
    dback = ref_spline_d2(back)
    out = np.empty(shape, np.float32)
    # column weights with SExtractor's float32 stepping
    xstep = F32(1.0 / bw)
    dx = (xstep - F32(1)) / F32(2)
    dx0 = F32((bw + 1) % 2) * xstep / F32(2)
    seg, dxs = np.zeros(w, int), np.zeros(w, np.float32)
    s = i = xm = 0
    for x in range(w):
        if i == bw // 2 and 0 < xm < nbx - 1:
            s += 1
            dx = dx0
        seg[x], dxs[x] = s, dx
        if i == bw:
            xm += 1
            i = 0
        i += 1
        dx = dx + xstep
    for y in range(h):
        if nby > 1:
            dy = F32(float(F32(y) / F32(bh)) - 0.5)
            yl = int(dy)
            dy = dy - F32(yl)
            if yl < 0:
                yl, dy = 0, F32(float(dy) - 1.0)
            elif yl >= nby - 1:
                yl, dy = nby - 2, F32(float(dy) + 1.0)
            cdy = F32(1) - dy
            node = (cdy * back[yl] + dy * back[yl + 1] + (cdy * cdy * cdy - cdy) * dback[yl]
                    + (dy * dy * dy - dy) * dback[yl + 1])
            dnode = ref_spline_d2(node[:, None])[:, 0] if nbx > 1 else np.zeros(nbx, np.float32)
        else:
            node, dnode = back[0], dback[0]
        if nbx == 1:
            out[y] = node[0]
            continue
        cdx = F32(1) - dxs
        out[y] = cdx * (node[seg] + (cdx * cdx - F32(1)) * dnode[seg]) + dxs * (node[seg + 1] + (dxs * dxs - F32(1)) * dnode[seg + 1])
    return out


# ---------------------------------------------------------------------------------------
# kernels vs references
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sextractor_mesh_kernel_matches_reference(seed):
    rng = np.random.default_rng(seed)
    img = (200.0 + rng.normal(0, 7.0, (96, 80))).astype(np.float32)
    img[rng.random(img.shape) < 0.03] += 300.0  # sources: a skewed distribution
    bad = rng.random(img.shape) < 0.1
    for use_bad in (False, True):
        back = np.empty((3, 3), np.float32)
        sig = np.empty_like(back)
        valid = np.empty(back.shape, bool)
        badarr = bad if use_bad else np.zeros((1, 1), bool)
        K._mesh_stats_sextractor(img, badarr, use_bad, 32, 32, 0.5, back, sig, valid)
        for j in range(3):
            for i in range(3):
                box = (slice(32 * j, min(32 * j + 32, 96)), slice(32 * i, min(32 * i + 32, 80)))
                pix = img[box][~bad[box]] if use_bad else img[box].ravel()
                area = img[box].size
                ok, mode, s = ref_sextractor_mesh(pix, area)
                assert valid[j, i] == ok
                assert back[j, i] == np.float32(mode)
                assert sig[j, i] == np.float32(s)


@settings(deadline=None, derandomize=True, max_examples=60)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.data())
def test_histogram_walk_bisection_equals_sequential_walk(counts, data):
    histo = np.array(counts, dtype=np.int64)
    n = histo.size
    lcut = data.draw(st.integers(0, n - 1))
    hcut = data.draw(st.integers(lcut, n - 1))
    c0 = np.concatenate([[0], np.cumsum(histo)])
    assert K._histogram_walk(c0, lcut, hcut) == ref_walk(histo, lcut, hcut)


def test_clipped_mesh_kernel_matches_numpy():
    rng = np.random.default_rng(5)
    img = (50.0 + rng.normal(0, 2.0, (64, 64))).astype(np.float32)
    img[10, 10] = 1e4
    back = np.empty((1, 1))
    sig = np.empty((1, 1))
    valid = np.empty((1, 1), bool)
    for kind, name in enumerate(("mean", "median", "mode")):
        K._mesh_stats_clipped(img, np.zeros((1, 1), bool), False, 64, 64, 0.5, kind, 3.0, 5, back, sig, valid)
        v = img.astype(np.float64).ravel()
        for _ in range(5):
            med, std = np.median(v), v.std()
            keep = v[(v >= med - 3 * std) & (v <= med + 3 * std)]
            if keep.size == v.size:
                break
            v = keep
        expect = {"mean": v.mean(), "median": np.median(v), "mode": 2.5 * np.median(v) - 1.5 * v.mean()}[name]
        assert back[0, 0] == pytest.approx(expect, rel=1e-12)
        assert sig[0, 0] == pytest.approx(v.std(), rel=1e-12)


@pytest.mark.parametrize("fh,fw", [(3, 3), (5, 3), (1, 1), (4, 4)])
def test_median_filter_kernel_matches_reference(fh, fw):
    rng = np.random.default_rng(7)
    back = rng.normal(0, 1, (6, 7)).astype(np.float32)
    sigma = rng.uniform(1, 2, (6, 7)).astype(np.float32)
    ob, os_ = np.empty_like(back), np.empty_like(sigma)
    K._median_filter_meshes(back, sigma, fh, fw, 0.0, ob, os_)
    rb, rs = ref_median_filter(back, sigma, fh, fw)
    np.testing.assert_array_equal(ob, rb)
    np.testing.assert_array_equal(os_, rs)


def test_fill_bad_meshes_uses_mean_of_nearest_valid():
    back = np.array([[1, 2, 3], [4, 0, 6], [7, 8, 9]], np.float32)
    sigma = back + 10
    valid = np.ones((3, 3), bool)
    valid[1, 1] = False
    valid[0, 0] = False
    assert K._fill_bad_meshes(back, sigma, valid)
    assert back[1, 1] == np.float32((2 + 4 + 6 + 8) / 4)  # four neighbours at distance 1
    assert back[0, 0] == np.float32((2 + 4) / 2)
    assert sigma[1, 1] == np.float32((12 + 14 + 16 + 18) / 4)
    assert not K._fill_bad_meshes(back, sigma, np.zeros((3, 3), bool))


@pytest.mark.parametrize("shape,bh,bw", [((200, 170), 32, 48), ((64, 300), 64, 64), ((300, 50), 64, 64), ((33, 33), 8, 8)])
def test_spline_interpolation_kernel_matches_reference(shape, bh, bw):
    rng = np.random.default_rng(11)
    ny, nx = (shape[0] - 1) // bh + 1, (shape[1] - 1) // bw + 1
    back = rng.normal(100, 3, (ny, nx)).astype(np.float32)
    sigma = rng.uniform(1, 2, (ny, nx)).astype(np.float32)
    db, ds = np.empty_like(back), np.empty_like(sigma)
    K._sextractor_spline_d2(back, db)
    K._sextractor_spline_d2(sigma, ds)
    np.testing.assert_array_equal(db, ref_spline_d2(back))
    ob = np.empty(shape, np.float32)
    os_ = np.empty(shape, np.float32)
    K._sextractor_interpolate(back, db, sigma, ds, bh, bw, ob, os_)
    np.testing.assert_array_equal(ob, ref_interpolate(back, bh, bw, shape))
    np.testing.assert_array_equal(os_, ref_interpolate(sigma, bh, bw, shape))


def test_akima_kernel_matches_scipy():
    from scipy.interpolate import Akima1DInterpolator

    rng = np.random.default_rng(3)
    yv = rng.normal(0, 1, 7)
    yv[3] = yv[4]  # a flat piece (weights vanish)
    slopes = np.empty(7)
    K._akima_slopes(yv, 1.0, slopes)
    ak = Akima1DInterpolator(np.arange(7.0), yv)
    np.testing.assert_allclose(slopes, ak.derivative()(np.arange(7.0)), rtol=1e-12, atol=1e-12)
    # full-resolution tensor product against scipy applied along y then x
    vals = rng.normal(0, 1, (4, 5))
    out = np.empty((4 * 16, 5 * 16))
    K._akima_interpolate(vals, 16, 16, out)
    yc, xc = (np.arange(4) + 0.5) * 16 - 0.5, (np.arange(5) + 0.5) * 16 - 0.5
    ys, xs = np.arange(64.0), np.arange(80.0)
    along_y = Akima1DInterpolator(yc, vals, axis=0, extrapolate=True)(ys)
    ref = Akima1DInterpolator(xc, along_y, axis=1, extrapolate=True)(xs)
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_count_nonfinite_matches_numpy():
    a = np.ones((5, 6), np.float32)
    a[1, 2], a[3, 3], a[4, 0] = np.nan, np.inf, -np.inf
    assert K._count_nonfinite(a) == 3 == int((~np.isfinite(a)).sum())


# ---------------------------------------------------------------------------------------
# sep (test-only peer) on the same pixels
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,bh,bw,fh,fw", [((300, 257), 32, 64, 5, 3), ((100, 65), 64, 64, 1, 1),
                                               ((50, 500), 64, 64, 3, 3), ((129, 129), 16, 16, 3, 5)])
def test_bit_identical_to_sep_background(shape, bh, bw, fh, fw):
    sep = pytest.importorskip("sep")
    rng = np.random.default_rng(21)
    xx = np.arange(shape[1])[None, :]
    img = (rng.normal(100, 5, shape) + 50 * np.exp(-((xx - shape[1] / 3) ** 2) / 200)).astype(np.float32)
    holes = rng.random(shape) < 0.2
    for mask in (None, holes):
        res = estimate_background(img, mask=mask, bin_size=(bh, bw), filter_size=(fh, fw))
        ref = sep.Background(img, mask=mask, bw=bw, bh=bh, fw=fw, fh=fh)
        np.testing.assert_array_equal(res.background, ref.back(dtype=np.float32))
        np.testing.assert_array_equal(res.rms, ref.rms(dtype=np.float32))
        assert res.global_background == ref.globalback
        assert res.global_rms == ref.globalrms


# ---------------------------------------------------------------------------------------
# truth
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("statistic", ["sextractor", "median", "mean", "mode"])
def test_flat_sky_recovered_within_noise(statistic):
    rng = np.random.default_rng(100)
    level, sigma = 1000.0, 10.0
    img = (level + rng.normal(0, sigma, (256, 256))).astype(np.float32)
    res = estimate_background(img, statistic=statistic, bin_size=64)
    # 16 meshes of 4096 px; the mesh estimates' scatter is <= 2x that of a mean
    err = 2.0 * sigma / math.sqrt(4096)
    assert abs(res.global_background - level) < 4 * err
    assert np.abs(res.background - level).max() < 6 * err
    assert abs(res.global_rms - sigma) < 0.05 * sigma  # clipped estimates: a few % low at most
    assert res.background.dtype == np.float32 and res.rms.dtype == np.float32


@pytest.mark.parametrize("interpolation", ["bicubic", "akima", "chebyshev"])
def test_tilted_sky_recovered(interpolation):
    rng = np.random.default_rng(101)
    yy, xx = np.mgrid[:256, :320]
    sky = 500.0 + 0.3 * xx - 0.2 * yy
    img = (sky + rng.normal(0, 5.0, sky.shape)).astype(np.float32)
    res = estimate_background(img, bin_size=32, interpolation=interpolation, statistic="mean", order=1)
    # a plane is reproduced exactly by all three interpolants; left: the mesh noise
    err = 5.0 / math.sqrt(32 * 32)
    assert np.abs(res.background - sky)[16:-16, 16:-16].max() < 6 * err


def test_detection_iterations_remove_source_bias():
    rng = np.random.default_rng(102)
    img = rng.normal(100.0, 3.0, (256, 256))
    yy, xx = np.mgrid[:256, :256]
    for cx, cy in rng.uniform(10, 246, (60, 2)):
        img += 400.0 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 2.0**2))
    img = img.astype(np.float32)
    plain = estimate_background(img, statistic="mean", bin_size=64)
    iterated = estimate_background(img, statistic="mean", bin_size=64, detect_iterations=2)
    assert abs(iterated.global_background - 100.0) < 0.5 * abs(plain.global_background - 100.0)
    assert abs(iterated.global_background - 100.0) < 0.3
    assert iterated.n_excluded > 0 and iterated.params["detect_iterations"] == 2


def test_constant_image_gives_constant_background_and_zero_rms():
    img = np.full((128, 128), 42.5, np.float32)
    res = estimate_background(img, bin_size=32)
    assert np.all(res.background == np.float32(42.5))
    assert np.all(res.rms == 0)
    assert res.global_rms == 0.0


# ---------------------------------------------------------------------------------------
# masks, dtypes, inputs
# ---------------------------------------------------------------------------------------


def test_both_mask_forms_agree_and_detected_is_ignored():
    rng = np.random.default_rng(9)
    img = (10 + rng.normal(0, 1, (128, 128))).astype(np.float32)
    img[40:60, 40:60] += 50.0
    boolean = np.zeros(img.shape, bool)
    boolean[40:60, 40:60] = True
    bits = np.zeros(img.shape, np.uint32)
    bits[40:60, 40:60] = MaskPlane.DETECTED
    bits[0:5, 0:5] = MaskPlane.INTRP  # not excluded by default
    a = estimate_background(img, mask=boolean, bin_size=32)
    b = estimate_background(img, mask=bits, bin_size=32)
    np.testing.assert_array_equal(a.background, b.background)
    # unclipped mean, no filtering: the source pixels count only when DETECTED is not excluded
    kw = dict(bin_size=32, statistic="mean", n_iter=0, filter_size=1)
    c = estimate_background(img, mask=bits, bad_planes=["BAD"], **kw)
    d = estimate_background(img, mask=bits, **kw)
    assert c.mesh_background[1, 1] > d.mesh_background[1, 1] + 5.0
    assert abs(d.mesh_background[1, 1] - 10.0) < 0.1
    assert MaskPlane.DETECTED in MaskPlane(int(BACKGROUND_BAD_PLANES))


@pytest.mark.parametrize("dtype,out", [(np.float32, np.float32), (np.float64, np.float64), (np.int32, np.float64),
                                       (">f4", np.float32), (np.int16, np.float32)])
def test_dtype_policy_and_inputs_not_modified(dtype, out):
    rng = np.random.default_rng(4)
    img = (100 + rng.normal(0, 5, (64, 96))).astype(dtype)
    img.flags.writeable = False
    before = img.copy()
    res = estimate_background(img, bin_size=32)
    assert res.background.dtype == out and res.rms.dtype == out
    np.testing.assert_array_equal(img, before)
    assert isinstance(res, BackgroundResult)
    with pytest.raises(AttributeError):
        res.global_rms = 1.0  # frozen


def test_nonfinite_pixels_are_excluded_and_do_not_spread():
    rng = np.random.default_rng(8)
    img = (100 + rng.normal(0, 1, (128, 128))).astype(np.float32)
    img[10, 10], img[70, 80], img[100, 5] = np.nan, np.inf, -np.inf
    with pytest.warns(InputDataWarning, match="3 pixel"):
        res = estimate_background(img, bin_size=32)
    assert np.isfinite(res.background).all() and np.isfinite(res.rms).all()
    assert res.n_excluded == 3
    assert abs(res.global_background - 100) < 0.2


def test_bad_input_errors_name_the_argument():
    img = np.zeros((32, 32), np.float32)
    with pytest.raises(InvalidInputError, match="`mask`"):
        estimate_background(img, mask=np.ones((32, 32), bool))
    with pytest.raises(InvalidInputError, match="`mask`"):
        estimate_background(img, mask=np.zeros((32, 31), bool))
    with pytest.raises(InvalidInputError, match="`variance`"):
        estimate_background(img, variance=np.ones((31, 32)))
    with pytest.raises(InvalidInputError, match="`bin_size`"):
        estimate_background(img, bin_size=0)
    with pytest.raises(InvalidInputError, match="`statistic`"):
        estimate_background(img, statistic="mad")
    with pytest.raises(InvalidInputError, match="`interpolation`"):
        estimate_background(img, interpolation="linear")
    with pytest.raises(InvalidInputError, match="`image`"):
        estimate_background(np.zeros(10))
    with pytest.raises(InvalidInputError, match="`bin_size`"):
        m = np.zeros((32, 32), bool)
        m[:, :20] = True  # every 32x32 mesh is 62% masked
        estimate_background(img, mask=m, bin_size=32)
    with pytest.raises(TypeError):
        estimate_background(None)


@settings(deadline=None, derandomize=True, max_examples=10)
@given(st.floats(-1e3, 1e3), st.floats(0.5, 20.0))
def test_affine_equivariance_of_clipped_median(offset, scale):
    rng = np.random.default_rng(12)
    base = rng.normal(0, 1, (96, 96))
    a = estimate_background(base, statistic="median", bin_size=32, interpolation="akima")
    b = estimate_background(base * scale + offset, statistic="median", bin_size=32, interpolation="akima")
    np.testing.assert_allclose(b.background, a.background * scale + offset, rtol=1e-5, atol=1e-4 * scale)
    np.testing.assert_allclose(b.rms, a.rms * scale, rtol=1e-5, atol=1e-5 * scale)


def test_warning_free_on_clean_input():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = estimate_background(np.random.default_rng(1).normal(0, 1, (64, 64)).astype(np.float32), bin_size=16)
    assert caught == [], [str(w.message) for w in caught]
    assert np.isfinite(res.background).all() and np.isfinite(res.rms).all()


def test_result_pickles_for_dask_workers():
    import pickle

    res = estimate_background(np.random.default_rng(2).normal(0, 1, (64, 64)).astype(np.float32), bin_size=16)
    back = pickle.loads(pickle.dumps(res))
    np.testing.assert_array_equal(back.background, res.background)
    assert back.params == res.params and back.global_rms == res.global_rms
