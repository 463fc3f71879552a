"""Numba kernels of the jointcal least-squares engine (private; see ``_solver``).

Each kernel has a plain-numpy twin in ``tests/jointcal/test_solver.py`` and the two
must agree. The wrappers in ``_solver`` validate, cast and allocate; the kernels see
contiguous float64/int64 arrays.

Notation (``_solver``): measurement ``i`` has ``r`` whitened residual rows; the camera
Jacobian of a parameter *block* (all visit maps, all detector maps, ...) is

    Jc[i, row, cols[owner[i], c, t]] = coef[i, row, c] * basis[i, t]

(a component ``c`` of the map, a basis term ``t``), and the star Jacobian is
``js[i, row, a]`` for the ``k`` parameters of star ``star[i]``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["star_normal", "fill_schur", "jc_dot", "eval_astrometry", "group_cross", "group_grad", "jc_tdot", "star_apply", "js_dot"]


@numba.njit(cache=True, nogil=True)
def star_normal(star, js, e, n_stars):  # pragma: no cover - compiled
    """Per-star normal matrix ``A_s = sum js^T js`` and gradient ``g_s = sum js^T e``."""
    n, r, k = js.shape
    a_out = np.zeros((n_stars, k, k))
    g_out = np.zeros((n_stars, k))
    for i in range(n):
        s = star[i]
        for row in range(r):
            er = e[i, row]
            for a in range(k):
                ja = js[i, row, a]
                g_out[s, a] += ja * er
                for b in range(a, k):
                    a_out[s, a, b] += ja * js[i, row, b]
    for s in range(n_stars):
        for a in range(k):
            for b in range(a + 1, k):
                a_out[s, b, a] = a_out[s, a, b]
    return a_out, g_out


@numba.njit(cache=True, nogil=True)
def fill_schur(w, rowbase, y, basis, owner, cols):  # pragma: no cover - compiled
    """``w[rowbase[i] + a, cols[owner[i], c, t]] += y[i, a, c] * basis[i, t]``."""
    n, k, nc = y.shape
    nt = basis.shape[1]
    for i in range(n):
        o = owner[i]
        rb = rowbase[i]
        for a in range(k):
            for c in range(nc):
                yv = y[i, a, c]
                if yv == 0.0:
                    continue
                for t in range(nt):
                    w[rb + a, cols[o, c, t]] += yv * basis[i, t]


@numba.njit(cache=True, nogil=True)
def jc_dot(x, coef, basis, owner, cols, out):  # pragma: no cover - compiled
    """``out[i, row] += sum_{c,t} coef[i, row, c] * basis[i, t] * x[cols[owner[i], c, t]]``."""
    n, r, nc = coef.shape
    nt = basis.shape[1]
    for i in range(n):
        o = owner[i]
        for c in range(nc):
            acc = 0.0
            for t in range(nt):
                acc += basis[i, t] * x[cols[o, c, t]]
            for row in range(r):
                out[i, row] += coef[i, row, c] * acc


@numba.njit(cache=True, nogil=True)
def _powers(u, order, out):  # pragma: no cover - compiled
    out[0] = 1.0
    for k in range(1, order + 1):
        out[k] = out[k - 1] * u


@numba.njit(cache=True, nogil=True)
def eval_astrometry(x, y, cpix, vi, di, star, dt, pe, det_c, det_s, det_coef, exd, fc, fs, vis_coef, exv,
                    tangent, p0, es, ns, theta, fixed, floor2, arcsec,
                    phi, psi, uv, tp, r, e, w, wg, js):  # pragma: no cover - compiled
    """The astrometric model, residuals and whitened Jacobian factors of each measurement.

    See ``_astrometry._Evaluator`` for the equations; ``cpix`` holds (xx, yy, xy)
    pixel covariances, ``theta`` the star parameters (k = 2: position offsets in
    arcsec; k = 5: plus pmra, pmdec in mas/yr and parallax in mas), ``fixed`` the known
    (pmra, pmdec, parallax) applied when k = 2.
    """
    n = x.shape[0]
    ntd = exd.shape[0]
    ntv = exv.shape[0]
    od = 0
    for t in range(ntd):
        od = max(od, exd[t, 0] + exd[t, 1])
    ov = 0
    for t in range(ntv):
        ov = max(ov, exv[t, 0] + exv[t, 1])
    k = theta.shape[1]
    pxa = np.empty(od + 1)
    pya = np.empty(od + 1)
    pua = np.empty(ov + 1)
    pva = np.empty(ov + 1)
    dpx = np.empty(ntd)
    dpy = np.empty(ntd)
    dpu = np.empty(ntv)
    dpv = np.empty(ntv)
    kmat = np.zeros((2, k))
    for i in range(n):
        d = di[i]
        v = vi[i]
        s = star[i]
        xn = (x[i] - det_c[d, 0]) / det_s[d, 0]
        yn = (y[i] - det_c[d, 1]) / det_s[d, 1]
        _powers(xn, od, pxa)
        _powers(yn, od, pya)
        for t in range(ntd):
            p, q = exd[t, 0], exd[t, 1]
            phi[i, t] = pxa[p] * pya[q]
            dpx[t] = (p * pxa[p - 1] * pya[q] if p > 0 else 0.0) / det_s[d, 0]
            dpy[t] = (q * pxa[p] * pya[q - 1] if q > 0 else 0.0) / det_s[d, 1]
        j00 = 0.0
        j01 = 0.0
        j10 = 0.0
        j11 = 0.0
        u0 = 0.0
        u1 = 0.0
        for t in range(ntd):
            c0 = det_coef[d, 0, t]
            c1 = det_coef[d, 1, t]
            u0 += c0 * phi[i, t]
            u1 += c1 * phi[i, t]
            j00 += c0 * dpx[t]
            j01 += c0 * dpy[t]
            j10 += c1 * dpx[t]
            j11 += c1 * dpy[t]
        uv[i, 0] = u0
        uv[i, 1] = u1
        un = (u0 - fc[0]) / fs
        vn = (u1 - fc[1]) / fs
        _powers(un, ov, pua)
        _powers(vn, ov, pva)
        for t in range(ntv):
            p, q = exv[t, 0], exv[t, 1]
            psi[i, t] = pua[p] * pva[q]
            dpu[t] = (p * pua[p - 1] * pva[q] if p > 0 else 0.0) / fs
            dpv[t] = (q * pua[p] * pva[q - 1] if q > 0 else 0.0) / fs
        g00 = 0.0
        g01 = 0.0
        g10 = 0.0
        g11 = 0.0
        t0 = 0.0
        t1 = 0.0
        for t in range(ntv):
            c0 = vis_coef[v, 0, t]
            c1 = vis_coef[v, 1, t]
            t0 += c0 * psi[i, t]
            t1 += c1 * psi[i, t]
            g00 += c0 * dpu[t]
            g01 += c0 * dpv[t]
            g10 += c1 * dpu[t]
            g11 += c1 * dpv[t]
        tp[i, 0] = t0
        tp[i, 1] = t1
        # pixel Jacobian and measurement covariance in the tangent plane
        a00 = g00 * j00 + g01 * j10
        a01 = g00 * j01 + g01 * j11
        a10 = g10 * j00 + g11 * j10
        a11 = g10 * j01 + g11 * j11
        cxx, cyy, cxy = cpix[i, 0], cpix[i, 1], cpix[i, 2]
        b00 = a00 * cxx + a01 * cxy
        b01 = a00 * cxy + a01 * cyy
        b10 = a10 * cxx + a11 * cxy
        b11 = a10 * cxy + a11 * cyy
        s00 = b00 * a00 + b01 * a01 + floor2
        s01 = b00 * a10 + b01 * a11
        s11 = b10 * a10 + b11 * a11 + floor2
        l11 = np.sqrt(s00)
        l21 = s01 / l11
        l22 = np.sqrt(max(s11 - l21 * l21, 1e-300))
        w00 = 1.0 / l11
        w10 = -l21 / (l11 * l22)
        w11 = 1.0 / l22
        w[i, 0, 0] = w00
        w[i, 0, 1] = 0.0
        w[i, 1, 0] = w10
        w[i, 1, 1] = w11
        wg[i, 0, 0] = w00 * g00
        wg[i, 0, 1] = w00 * g01
        wg[i, 1, 0] = w10 * g00 + w11 * g10
        wg[i, 1, 1] = w10 * g01 + w11 * g11
        # star: offsets in its tangent plane (arcsec) = K theta (+ known motion)
        kmat[0, 0] = 1.0
        kmat[1, 1] = 1.0
        if k == 5:
            kmat[0, 2] = dt[i] / 1000.0
            kmat[1, 3] = dt[i] / 1000.0
            kmat[0, 4] = -pe[i, 0] / 1000.0
            kmat[1, 4] = -pe[i, 1] / 1000.0
        o0 = 0.0
        o1 = 0.0
        for a in range(k):
            o0 += kmat[0, a] * theta[s, a]
            o1 += kmat[1, a] * theta[s, a]
        if k == 2:
            o0 += (fixed[s, 0] * dt[i] - fixed[s, 2] * pe[i, 0]) / 1000.0
            o1 += (fixed[s, 1] * dt[i] - fixed[s, 2] * pe[i, 1]) / 1000.0
        pcv = 0.0
        pev = 0.0
        pnv = 0.0
        ec = 0.0
        ee = 0.0
        en = 0.0
        nc_ = 0.0
        ne = 0.0
        nn = 0.0
        for m in range(3):
            pm = p0[s, m] + o0 * arcsec * es[s, m] + o1 * arcsec * ns[s, m]
            cm = tangent[v, 0, m]
            em = tangent[v, 1, m]
            nm = tangent[v, 2, m]
            pcv += pm * cm
            pev += pm * em
            pnv += pm * nm
            ec += es[s, m] * cm
            ee += es[s, m] * em
            en += es[s, m] * nm
            nc_ += ns[s, m] * cm
            ne += ns[s, m] * em
            nn += ns[s, m] * nm
        xi = pev / pcv
        eta = pnv / pcv
        d00 = (ee - xi * ec) / pcv
        d01 = (ne - xi * nc_) / pcv
        d10 = (en - eta * ec) / pcv
        d11 = (nn - eta * nc_) / pcv
        r0 = t0 - xi / arcsec
        r1 = t1 - eta / arcsec
        r[i, 0] = r0
        r[i, 1] = r1
        e[i, 0] = w00 * r0
        e[i, 1] = w10 * r0 + w11 * r1
        for a in range(k):
            dk0 = d00 * kmat[0, a] + d01 * kmat[1, a]
            dk1 = d10 * kmat[0, a] + d11 * kmat[1, a]
            js[i, 0, a] = -(w00 * dk0)
            js[i, 1, a] = -(w10 * dk0 + w11 * dk1)


@numba.njit(cache=True, nogil=True)
def group_cross(hloc, group, coef1, basis1, off1, coef2, basis2, off2):  # pragma: no cover - compiled
    """``hloc[g, off1 + c1*nt1 + t1, off2 + c2*nt2 + t2] += sum_rows Jc1 * Jc2`` per group ``g``.

    Uses the Kronecker structure ``Jc[row, (c, t)] = coef[row, c] basis[t]``: the row sum
    ``M[c1, c2] = sum_row coef1[row, c1] coef2[row, c2]`` times ``basis1[t1] basis2[t2]``.
    """
    n, r, nc1 = coef1.shape
    nt1 = basis1.shape[1]
    nc2 = coef2.shape[2]
    nt2 = basis2.shape[1]
    mm = np.empty((nc1, nc2))
    for i in range(n):
        g = group[i]
        for c1 in range(nc1):
            for c2 in range(nc2):
                acc = 0.0
                for row in range(r):
                    acc += coef1[i, row, c1] * coef2[i, row, c2]
                mm[c1, c2] = acc
        for c1 in range(nc1):
            for t1 in range(nt1):
                b1 = basis1[i, t1]
                if b1 == 0.0:
                    continue
                p = off1 + c1 * nt1 + t1
                for c2 in range(nc2):
                    f = mm[c1, c2] * b1
                    q0 = off2 + c2 * nt2
                    for t2 in range(nt2):
                        hloc[g, p, q0 + t2] += f * basis2[i, t2]


@numba.njit(cache=True, nogil=True)
def group_grad(gloc, group, coef, basis, off, e):  # pragma: no cover - compiled
    """``gloc[g, off + c*nt + t] += sum_rows coef * basis * e`` per group ``g``."""
    n, r, nc = coef.shape
    nt = basis.shape[1]
    for i in range(n):
        g = group[i]
        for row in range(r):
            er = e[i, row]
            for c in range(nc):
                cv = coef[i, row, c] * er
                for t in range(nt):
                    gloc[g, off + c * nt + t] += cv * basis[i, t]


@numba.njit(cache=True, nogil=True)
def jc_tdot(y, coef, basis, owner, cols, out):  # pragma: no cover - compiled
    """``out[cols[owner[i], c, t]] += sum_row coef[i, row, c] * basis[i, t] * y[i, row]`` (``Jc^T y``)."""
    n, r, nc = coef.shape
    nt = basis.shape[1]
    for i in range(n):
        o = owner[i]
        for c in range(nc):
            acc = 0.0
            for row in range(r):
                acc += coef[i, row, c] * y[i, row]
            if acc == 0.0:
                continue
            for t in range(nt):
                out[cols[o, c, t]] += acc * basis[i, t]


@numba.njit(cache=True, nogil=True)
def star_apply(star, js, y, ainv, out_z):  # pragma: no cover - compiled
    """``z_s = A_s^-1 sum_i js_i^T y_i`` per star (``out_z`` zeroed by the caller, (n_stars, k))."""
    n, r, k = js.shape
    n_s = ainv.shape[0]
    acc = np.zeros((n_s, k))
    for i in range(n):
        s = star[i]
        for a in range(k):
            v = 0.0
            for row in range(r):
                v += js[i, row, a] * y[i, row]
            acc[s, a] += v
    for s in range(n_s):
        for a in range(k):
            v = 0.0
            for b in range(k):
                v += ainv[s, a, b] * acc[s, b]
            out_z[s, a] = v


@numba.njit(cache=True, nogil=True)
def js_dot(star, js, z, out):  # pragma: no cover - compiled
    """``out[i, row] = sum_a js[i, row, a] * z[star[i], a]``."""
    n, r, k = js.shape
    for i in range(n):
        s = star[i]
        for row in range(r):
            v = 0.0
            for a in range(k):
                v += js[i, row, a] * z[s, a]
            out[i, row] = v
