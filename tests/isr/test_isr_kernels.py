"""The numba kernels of lsstdrp.isr against plain-numpy references (STYLE.md habit 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lsstdrp.isr import _kernels as K

HYP = settings(deadline=None, derandomize=True, max_examples=25)


# -- references ------------------------------------------------------------------------
def ref_zmax(r, var, excl, y, x, rho, tol):
    best = -np.inf
    ny, nx = r.shape
    for d, (dy, dx) in enumerate(((0, 1), (1, 0), (1, 1), (1, -1))):
        inside = [(yy, xx) for yy, xx in ((y - dy, x - dx), (y + dy, x + dx)) if 0 <= yy < ny and 0 <= xx < nx]
        if not inside or any(excl[p] for p in inside):
            continue
        if len(inside) == 1:  # reflected at the edge
            inside = inside * 2
        m = 0.5 * (r[inside[0]] + r[inside[1]])
        vm = 0.25 * (var[inside[0]] + var[inside[1]]) * (2.0 if inside[0] == inside[1] else 1.0)
        p = (1 - tol) * rho[d]
        den = p * p * var[y, x] + vm
        if den > 0:
            best = max(best, (p * r[y, x] - m) / math.sqrt(den))
    return best


def ref_interpolate(image, bad, max_gap):
    ny, nx = image.shape
    out = image.astype(float).copy()
    status = np.zeros(image.shape, np.uint8)
    for y in range(ny):
        for x in range(nx):
            if not bad[y, x]:
                continue

            def near(dy, dx):
                for k in range(1, max_gap + 1):
                    yy, xx = y + k * dy, x + k * dx
                    if not (0 <= yy < ny and 0 <= xx < nx):
                        return None
                    if not bad[yy, xx]:
                        return k
                return None

            kl, kr, kd, ku = near(0, -1), near(0, 1), near(-1, 0), near(1, 0)
            ests = []
            if kl and kr:
                ests.append((kl + kr, (kr * image[y, x - kl] + kl * image[y, x + kr]) / (kl + kr)))
            if kd and ku:
                ests.append((kd + ku, (ku * image[y - kd, x] + kd * image[y + ku, x]) / (kd + ku)))
            if ests:
                span = min(e[0] for e in ests)
                out[y, x] = np.mean([e[1] for e in ests if e[0] == span])
                status[y, x] = 1
                continue
            one = [(k, image[y + k * dy, x + k * dx]) for k, (dy, dx) in
                   ((kl, (0, -1)), (kr, (0, 1)), (kd, (-1, 0)), (ku, (1, 0))) if k]
            if one:
                out[y, x] = min(one, key=lambda t: t[0])[1]
                status[y, x] = 1
            else:
                status[y, x] = 2
    return out, status


def ref_bf_divergence(t, phi):
    div = np.zeros_like(t)
    fx = 0.5 * (t[:, 1:] + t[:, :-1]) * (phi[:, 1:] - phi[:, :-1])
    div[:, :-1] += fx
    div[:, 1:] -= fx
    fy = 0.5 * (t[1:, :] + t[:-1, :]) * (phi[1:, :] - phi[:-1, :])
    div[:-1, :] += fy
    div[1:, :] -= fy
    return 0.5 * div


def ref_bleed(image, sat, threshold):
    out = sat.copy()
    ny, nx = image.shape
    for x in range(nx):
        for y in range(ny):
            if not sat[y, x]:
                continue
            k = y - 1
            while k >= 0 and image[k, x] >= threshold:
                out[k, x] = True
                k -= 1
            k = y + 1
            while k < ny and image[k, x] >= threshold:
                out[k, x] = True
                k += 1
    return out


# -- tests -----------------------------------------------------------------------------------
def test_cr_candidates_and_stats_match_reference():
    rng = np.random.default_rng(0)
    r = rng.normal(0, 1, (23, 31))
    r[5, 7] += 30.0
    r[10:12, 20] += 12.0
    r[0, 3] += 20.0  # at the edge: reflected neighbours
    var = rng.uniform(0.5, 2.0, r.shape)
    excl = (rng.uniform(size=r.shape) < 0.05).astype(np.uint8)
    flag = np.zeros_like(excl)
    flag[5, 8] = 1
    rho = np.array([0.8, 0.75, 0.6, 0.62])
    ys, xs, sz = K._cr_candidates(r, var, excl, flag, rho, 0.05, 1.0, 0.5)
    ref = []
    for y in range(r.shape[0]):
        for x in range(r.shape[1]):
            if excl[y, x] or flag[y, x] or r[y, x] <= 0:
                continue
            s = r[y, x] / math.sqrt(var[y, x])
            z = ref_zmax(r, var, excl, y, x, rho, 0.05)
            if s > 1.0 and z > 0.5:
                ref.append((y, x, s, z))
    assert [(a, b) for a, b, *_ in ref] == list(zip(ys.tolist(), xs.tolist(), strict=True))
    np.testing.assert_allclose(sz, np.array([(s, z) for *_, s, z in ref]), rtol=1e-12)
    assert (0, 3) in set(zip(ys.tolist(), xs.tolist(), strict=True))
    out = np.empty((ys.size, 2))
    K._cr_stats_at(r, var, excl, ys, xs, rho, 0.05, out)
    np.testing.assert_allclose(out, sz, rtol=1e-12)


def test_local_median_clusters_and_neighbours():
    rng = np.random.default_rng(4)
    r = rng.normal(0, 1, (12, 14))
    excl = np.zeros(r.shape, np.uint8)
    excl[3, 3] = 1
    flag = np.zeros(r.shape, np.uint8)
    flag[4, 4] = 1
    ys = np.array([0, 4, 11])
    xs = np.array([0, 3, 13])
    med = np.empty(3)
    K._local_median_at(r, excl, flag, ys, xs, 2, med)
    for k, (y, x) in enumerate(zip(ys, xs, strict=True)):
        box = r[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3]
        good = (excl[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] == 0) & (flag[max(y - 2, 0) : y + 3, max(x - 2, 0) : x + 3] == 0)
        assert med[k] == np.median(box[good])
    pts = np.zeros((12, 14), bool)
    pts[[1, 2, 2, 7, 8, 11], [1, 2, 6, 5, 6, 0]] = True
    py, px = np.nonzero(pts)
    score = np.arange(py.size, dtype=float)
    strong = np.zeros(py.size, bool)
    strong[-1] = True
    label, sums, anys = K._clusters(py, px, 14, score, strong)
    ref, n = ndimage.label(pts, structure=np.ones((3, 3)))
    assert len(sums) == n
    # same partition, sums and flags per cluster
    for lab in range(n):
        members = label == lab
        assert len(set(ref[py[members], px[members]])) == 1
        assert sums[lab] == score[members].sum() and anys[lab] == strong[members].any()
    fl = np.zeros((12, 14), np.uint8)
    fl[2, 2] = 1
    ny_, nx_ = K._neighbours_at(np.array([2, 2]), np.array([2, 3]), excl, fl, 2)
    ring = ndimage.binary_dilation(np.isin(np.arange(12 * 14).reshape(12, 14), [2 * 14 + 2, 2 * 14 + 3]), np.ones((3, 3)))
    ring &= (excl == 0)
    ring[2, 2] = False
    assert set(zip(ny_.tolist(), nx_.tolist(), strict=True)) == set(zip(*np.nonzero(ring), strict=True))
    assert (fl[ring] == 2).all() and fl[2, 2] == 1


@HYP
@given(st.integers(0, 2**31), st.floats(0.0, 0.6), st.integers(1, 6))
def test_interpolate_matches_reference(seed, frac, max_gap):
    rng = np.random.default_rng(seed)
    image = rng.normal(100, 10, (9, 11))
    bad = rng.uniform(size=image.shape) < frac
    out = np.empty_like(image)
    status = np.zeros(image.shape, np.uint8)
    K._interpolate_masked(image, bad.astype(np.uint8), max_gap, out, status)
    ref, ref_status = ref_interpolate(image, bad, max_gap)
    np.testing.assert_array_equal(status, ref_status)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    np.testing.assert_array_equal(out[~bad], image[~bad])  # good pixels untouched
    ys, xs = np.nonzero(bad)
    vals = np.empty(ys.size)
    ok = np.zeros(ys.size, bool)
    K._interpolate_at(image, bad.astype(np.uint8), np.zeros(bad.shape, np.uint8), ys, xs, max_gap, vals, ok)
    np.testing.assert_allclose(vals[ok], ref[ys, xs][ok], rtol=1e-12)
    np.testing.assert_array_equal(ok, ref_status[ys, xs] == 1)


def test_dilate_matches_scipy():
    rng = np.random.default_rng(1)
    flag = (rng.uniform(size=(30, 40)) < 0.03).astype(np.uint8)
    excl = (rng.uniform(size=flag.shape) < 0.1).astype(np.uint8)
    out = np.empty_like(flag)
    K._dilate8(flag, excl, out)
    ref = ndimage.binary_dilation(flag.astype(bool), structure=np.ones((3, 3))) & ~excl.astype(bool)
    ref |= flag.astype(bool)
    np.testing.assert_array_equal(out.astype(bool), ref)


def test_bf_divergence_matches_reference_and_conserves():
    rng = np.random.default_rng(2)
    t = rng.uniform(0, 1000, (17, 13))
    phi = rng.normal(0, 1e-3, t.shape)
    out = np.empty_like(t)
    K._bf_divergence(t, phi, out)
    np.testing.assert_allclose(out, ref_bf_divergence(t, phi), rtol=1e-12, atol=1e-12)
    assert abs(out.sum()) < 1e-9 * np.abs(out).sum()


@HYP
@given(st.integers(0, 2**31))
def test_bleed_columns_matches_reference(seed):
    rng = np.random.default_rng(seed)
    image = rng.uniform(0, 100, (15, 6))
    image[rng.integers(0, 15, 4), rng.integers(0, 6, 4)] = 100.0
    sat = image >= 100.0
    out = np.empty(image.shape, np.uint8)
    n = K._bleed_columns(image, sat.astype(np.uint8), 60.0, out)
    ref = ref_bleed(image, sat, 60.0)
    np.testing.assert_array_equal(out.astype(bool), ref)
    assert n == int(ref.sum() - sat.sum())


def test_snap_outliers_and_grow_match_reference():
    rng = np.random.default_rng(3)
    d = rng.normal(0, 1, (20, 20))
    d[5, 5] = 9.0
    d[5, 6] = 2.5
    d[5, 7] = 2.2  # connected growth reaches it through (5, 6)
    d[12, 12] = -8.0
    vd = np.ones_like(d)
    excl = np.zeros(d.shape, np.uint8)
    flag = np.zeros(d.shape, np.int8)
    n = K._snap_outliers(d, vd, excl, 5.0, flag)
    assert n == int((np.abs(d) > 5).sum())
    np.testing.assert_array_equal(flag == 1, d > 5)
    np.testing.assert_array_equal(flag == -1, d < -5)
    K._snap_grow(d, vd, excl, flag, 2.0, 1)
    # reference: connected components of d > 2 containing a seed
    lab, _ = ndimage.label(d > 2.0, structure=np.ones((3, 3)))
    seeds = np.unique(lab[d > 5])
    ref = np.isin(lab, seeds[seeds > 0])
    np.testing.assert_array_equal(flag == 1, ref)
