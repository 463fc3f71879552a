"""Compiled (numba) kernels of :mod:`lsstdrp.measure`.

Every kernel here is private and narrowly typed: the validated Python wrappers in the
sibling ``_*.py`` modules allocate the outputs and pass C-contiguous arrays and scalars.
Conventions shared by all kernels:

- ``image`` is a 2-D float32 or float64 array, ``image[y, x]``, 0-based, integer
  coordinates at pixel centres;
- ``bad`` is a uint8 array of the image shape (1 = exclude) or a (0, 0) array when
  nothing is masked;
- the variance is given as ``var_mode`` (0: none, 1: the scalar ``var_scalar``,
  2: the array ``var``; ``var`` is a (0, 0) array unless ``var_mode == 2``);
- flags are the bits of :class:`lsstdrp.measure.MeasurementFlag` (duplicated here as
  integer constants, since numba cannot read an ``enum``).

Each kernel has a plain-numpy reference in ``tests/measure/test_kernels.py``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# MeasurementFlag bits (keep in sync with _flags.py; a test checks)
F_EDGE = 1
F_MASKED = 2
F_NO_PIXELS = 4
F_NONPOSITIVE = 8
F_NOT_CONVERGED = 16
F_NOT_A_PEAK = 32
F_SHIFT = 64
F_NONFINITE = 128
F_SMALL = 256

_TWO_PI = 2.0 * math.pi


# ---------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _var_at(var_mode, var, var_scalar, iy, ix):
    if var_mode == 2:
        return var[iy, ix]
    if var_mode == 1:
        return var_scalar
    return 0.0


@njit(nogil=True, cache=True)
def _is_bad(bad, image, iy, ix):
    """Excluded pixel: flagged in ``bad`` or non-finite in ``image``."""
    if bad.shape[0] > 0 and bad[iy, ix] != 0:
        return True
    return not math.isfinite(image[iy, ix])


@njit(nogil=True, cache=True)
def _is_bad_v(bad, image, var_mode, var, iy, ix):
    """As :func:`_is_bad`, also excluding negative or non-finite variance."""
    if _is_bad(bad, image, iy, ix):
        return True
    if var_mode == 2:
        v = var[iy, ix]
        return not (v >= 0.0 and math.isfinite(v))
    return False


# ---------------------------------------------------------------------------------------
# exact overlap geometry
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _disk_quadrant(x, y, r):
    """Signed area of the disk |p| <= r within the rectangle spanned by (0, 0) and (x, y)."""
    sx = 1.0 if x >= 0.0 else -1.0
    sy = 1.0 if y >= 0.0 else -1.0
    ax = min(abs(x), r)
    ay = min(abs(y), r)
    if ax * ax + ay * ay <= r * r:
        return sx * sy * ax * ay
    xc = math.sqrt(max(r * r - ay * ay, 0.0))
    r2 = r * r
    fa = 0.5 * (ax * math.sqrt(max(r2 - ax * ax, 0.0)) + r2 * math.asin(min(ax / r, 1.0)))
    fc = 0.5 * (xc * math.sqrt(max(r2 - xc * xc, 0.0)) + r2 * math.asin(min(xc / r, 1.0)))
    return sx * sy * (xc * ay + fa - fc)


@njit(nogil=True, cache=True)
def _circle_rect_overlap(x0, y0, x1, y1, r):
    """Area of the disk of radius r at the origin inside [x0, x1] x [y0, y1]."""
    return (
        _disk_quadrant(x1, y1, r)
        - _disk_quadrant(x0, y1, r)
        - _disk_quadrant(x1, y0, r)
        + _disk_quadrant(x0, y0, r)
    )


@njit(nogil=True, cache=True)
def _disk_triangle(ax, ay, bx, by, r):
    """Signed area of the disk |p| <= r inside the triangle (0, A, B)."""
    dx = bx - ax
    dy = by - ay
    qa = dx * dx + dy * dy
    r2 = r * r
    if qa <= 0.0:
        return 0.0
    qb = ax * dx + ay * dy
    qc = ax * ax + ay * ay - r2
    disc = qb * qb - qa * qc
    if disc <= 0.0:
        return 0.5 * r2 * math.atan2(ax * by - ay * bx, ax * bx + ay * by)
    s = math.sqrt(disc)
    t1 = (-qb - s) / qa
    t2 = (-qb + s) / qa
    if t1 >= 1.0 or t2 <= 0.0:
        return 0.5 * r2 * math.atan2(ax * by - ay * bx, ax * bx + ay * by)
    t1 = max(t1, 0.0)
    t2 = min(t2, 1.0)
    p1x = ax + t1 * dx
    p1y = ay + t1 * dy
    p2x = ax + t2 * dx
    p2y = ay + t2 * dy
    area = 0.5 * (p1x * p2y - p1y * p2x)
    if t1 > 0.0:
        area += 0.5 * r2 * math.atan2(ax * p1y - ay * p1x, ax * p1x + ay * p1y)
    if t2 < 1.0:
        area += 0.5 * r2 * math.atan2(p2x * by - p2y * bx, p2x * bx + p2y * by)
    return area


@njit(nogil=True, cache=True)
def _ellipse_pixel_overlap(dx, dy, cth, sth, a, b):
    """Area of the unit pixel centred at (dx, dy) inside the ellipse (a, b, theta) at the origin.

    The ellipse is mapped onto the unit disk; the pixel becomes a parallelogram whose
    overlap with the disk is the sum of disk-triangle areas over its edges.
    """
    us = np.empty(4)
    vs = np.empty(4)
    cx = (-0.5, 0.5, 0.5, -0.5)
    cy = (-0.5, -0.5, 0.5, 0.5)
    for k in range(4):
        px = dx + cx[k]
        py = dy + cy[k]
        us[k] = (cth * px + sth * py) / a
        vs[k] = (-sth * px + cth * py) / b
    area = 0.0
    for k in range(4):
        k2 = (k + 1) % 4
        area += _disk_triangle(us[k], vs[k], us[k2], vs[k2], 1.0)
    return abs(area) * a * b


@njit(nogil=True, cache=True)
def _circle_weight(dx, dy, r, subpix):
    """Fraction of the pixel centred at (dx, dy) inside the circle of radius r at the origin."""
    adx = abs(dx)
    ady = abs(dy)
    ex = max(adx - 0.5, 0.0)
    ey = max(ady - 0.5, 0.0)
    if ex * ex + ey * ey >= r * r:
        return 0.0
    fx = adx + 0.5
    fy = ady + 0.5
    if fx * fx + fy * fy <= r * r:
        return 1.0
    if subpix == 0:
        return _circle_rect_overlap(dx - 0.5, dy - 0.5, dx + 0.5, dy + 0.5, r)
    step = 1.0 / subpix
    r2 = r * r
    n = 0
    for j in range(subpix):
        sy = dy - 0.5 + (j + 0.5) * step
        for i in range(subpix):
            sx = dx - 0.5 + (i + 0.5) * step
            if sx * sx + sy * sy < r2:
                n += 1
    return n * step * step


@njit(nogil=True, cache=True)
def _ellipse_weight(dx, dy, cth, sth, a, b, subpix):
    """Fraction of the pixel at (dx, dy) inside the ellipse with semi-axes a >= b, angle theta."""
    d2 = dx * dx + dy * dy
    adx = abs(dx)
    ady = abs(dy)
    ex = max(adx - 0.5, 0.0)
    ey = max(ady - 0.5, 0.0)
    if ex * ex + ey * ey >= a * a:
        return 0.0
    fx = adx + 0.5
    fy = ady + 0.5
    if fx * fx + fy * fy <= b * b:
        return 1.0
    if subpix == 0:
        # all four corners inside -> whole pixel inside (both shapes are convex)
        inside = 0
        for k in range(4):
            px = dx + (-0.5 if k == 0 or k == 3 else 0.5)
            py = dy + (-0.5 if k < 2 else 0.5)
            u = (cth * px + sth * py) / a
            v = (-sth * px + cth * py) / b
            if u * u + v * v <= 1.0:
                inside += 1
        if inside == 4:
            return 1.0
        return _ellipse_pixel_overlap(dx, dy, cth, sth, a, b)
    step = 1.0 / subpix
    n = 0
    for j in range(subpix):
        sy = dy - 0.5 + (j + 0.5) * step
        for i in range(subpix):
            sx = dx - 0.5 + (i + 0.5) * step
            u = (cth * sx + sth * sy) / a
            v = (-sth * sx + cth * sy) / b
            if u * u + v * v < 1.0:
                n += 1
    _ = d2
    return n * step * step


# ---------------------------------------------------------------------------------------
# aperture sums
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _big_f(t, r):
    """Primitive of sqrt(r^2 - t^2) on [0, r]."""
    return 0.5 * (t * math.sqrt(max(r * r - t * t, 0.0)) + r * r * math.asin(min(t / r, 1.0)))


@njit(nogil=True, cache=True)
def _row_q(xc, y0, y1, r, ay0, xc0, f0, ay1, xc1, f1):
    """Signed area of the disk within X in [0, xc], Y in [y0, y1] (see _disk_quadrant).

    ``ay* = min(|y*|, r)``, ``xc* = sqrt(r^2 - ay*^2)`` and ``f* = _big_f(xc*)`` are
    precomputed per pixel row so that each corner costs at most one arcsine.
    """
    ax = min(abs(xc), r)
    fa = math.nan
    # quadrant (ax, ay1)
    if ax <= xc1:
        a1 = ax * ay1
    else:
        fa = _big_f(ax, r)
        a1 = xc1 * ay1 + fa - f1
    if ax <= xc0:
        a0 = ax * ay0
    else:
        if fa != fa:
            fa = _big_f(ax, r)
        a0 = xc0 * ay0 + fa - f0
    sx = 1.0 if xc >= 0.0 else -1.0
    s1 = 1.0 if y1 >= 0.0 else -1.0
    s0 = 1.0 if y0 >= 0.0 else -1.0
    return sx * (s1 * a1 - s0 * a0)


@njit(nogil=True, cache=True)
def _sum_circle_one(image, bad, var_mode, var, var_scalar, x, y, r, subpix, out):
    """One circular aperture; ``out`` = (flux, fvar, area, flags) as float64."""
    ny, nx = image.shape
    flux = 0.0
    fvar = 0.0
    area = 0.0
    flags = 0
    iy0 = int(math.floor(y - r + 0.5))
    iy1 = int(math.floor(y + r + 0.5))
    r2 = r * r
    hasbad = bad.shape[0] > 0
    for iy in range(iy0, iy1 + 1):
        dy = iy - y
        y0 = dy - 0.5
        y1 = dy + 0.5
        if y1 <= -r or y0 >= r:
            continue
        ynear = 0.0 if (y0 < 0.0 < y1) else min(abs(y0), abs(y1))
        yfar = max(abs(y0), abs(y1))
        hmax = math.sqrt(max(r2 - ynear * ynear, 0.0))
        hmin = math.sqrt(r2 - yfar * yfar) if yfar < r else 0.0
        ix0 = int(math.floor(x - hmax + 0.5))
        ix1 = int(math.floor(x + hmax + 0.5))
        inside_y = 0 <= iy < ny
        if subpix == 0:
            ay0 = min(abs(y0), r)
            ay1 = min(abs(y1), r)
            xc0 = math.sqrt(max(r2 - ay0 * ay0, 0.0))
            xc1 = math.sqrt(max(r2 - ay1 * ay1, 0.0))
            f0 = _big_f(xc0, r)
            f1 = _big_f(xc1, r)
        else:
            ay0 = ay1 = xc0 = xc1 = f0 = f1 = 0.0
        qx = math.nan
        qv = 0.0
        for ix in range(ix0, ix1 + 1):
            dx = ix - x
            xl = dx - 0.5
            xr = dx + 0.5
            if subpix == 0:
                if xl >= -hmin and xr <= hmin:
                    w = 1.0
                else:
                    if xl == qx:
                        ql = qv
                    else:
                        ql = _row_q(xl, y0, y1, r, ay0, xc0, f0, ay1, xc1, f1)
                    qr = _row_q(xr, y0, y1, r, ay0, xc0, f0, ay1, xc1, f1)
                    qx = xr
                    qv = qr
                    w = qr - ql
            else:
                w = _circle_weight(dx, dy, r, subpix)
            if w <= 0.0:
                continue
            if not (inside_y and 0 <= ix < nx):
                flags |= F_EDGE
                continue
            if hasbad and bad[iy, ix] != 0:
                flags |= F_MASKED
                continue
            pix = image[iy, ix]
            if var_mode == 2:
                v = var[iy, ix]
                # finite pixel, finite non-negative variance (x - x == 0 is False for inf, nan)
                if not (pix - pix == 0.0 and v >= 0.0 and v - v == 0.0):
                    flags |= F_MASKED
                    continue
                fvar += w * v
            elif not (pix - pix == 0.0):
                flags |= F_MASKED
                continue
            flux += w * pix
            area += w
    if var_mode == 1:
        fvar = area * var_scalar
    if area <= 0.0:
        flags |= F_NO_PIXELS
    out[0] = flux
    out[1] = fvar
    out[2] = area
    out[3] = flags


@njit(nogil=True, cache=True)
def _sum_circles(image, bad, var_mode, var, var_scalar, xs, ys, radii, subpix, flux, fvar, area, flags):
    """Exact (subpix=0) or subsampled circular-aperture sums at several radii.

    Outputs have shape (n, k): ``flux`` = sum of weight * pixel, ``fvar`` = sum of
    weight * variance (the SExtractor/sep/photutils convention), ``area`` = sum of the
    weights of the pixels used, ``flags`` bits EDGE (a pixel outside the image would
    have had a non-zero weight), MASKED (a bad pixel with non-zero weight was skipped),
    NO_PIXELS. Sources are visited in raster order of their position (memory locality);
    the exact weights integrate the disk over each pixel row by differences of
    :func:`_strip_area` at the pixel corners.
    """
    ny, nx = image.shape
    n = xs.shape[0]
    k = radii.shape[0]
    key = np.empty(n)
    for i in range(n):
        if math.isfinite(xs[i]) and math.isfinite(ys[i]):
            key[i] = math.floor(ys[i]) * (nx + 1.0) + xs[i]
        else:
            key[i] = -1.0
    order = np.argsort(key)
    out = np.empty(4)
    for ii in range(n):
        i = order[ii]
        x = xs[i]
        y = ys[i]
        if not (math.isfinite(x) and math.isfinite(y)):
            for j in range(k):
                flux[i, j] = 0.0
                fvar[i, j] = 0.0
                area[i, j] = 0.0
                flags[i, j] = F_NONFINITE | F_NO_PIXELS
            continue
        for j in range(k):
            _sum_circle_one(image, bad, var_mode, var, var_scalar, x, y, radii[j], subpix, out)
            flux[i, j] = out[0]
            fvar[i, j] = out[1]
            area[i, j] = out[2]
            flags[i, j] = int(out[3])


@njit(nogil=True, cache=True)
def _ellipse_row(y, qa, qb, qc):
    """x-range [lo, hi] of the ellipse qa x^2 + qb x y + qc y^2 <= 1 at height y (lo > hi: empty)."""
    disc = qb * qb * y * y - 4.0 * qa * (qc * y * y - 1.0)
    if disc < 0.0:
        return 1.0, -1.0
    sd = math.sqrt(disc)
    return (-qb * y - sd) / (2.0 * qa), (-qb * y + sd) / (2.0 * qa)


@njit(nogil=True, cache=True)
def _sum_ellipse_one(image, bad, var_mode, var, var_scalar, x, y, a, b, cth, sth, subpix, out):
    """One elliptical aperture, semi-axes a >= b at angle (cth, sth); ``out`` as _sum_circle_one.

    Row by row: the ellipse's x-range at the row's two edges gives the pixels that are
    fully inside (weight 1, no geometry) and the x-range over the whole row strip the
    pixels that can overlap at all; only the few in between get the exact overlap.
    """
    ny, nx = image.shape
    ia2 = 1.0 / (a * a)
    ib2 = 1.0 / (b * b)
    qa = cth * cth * ia2 + sth * sth * ib2
    qb = 2.0 * cth * sth * (ia2 - ib2)
    qc = sth * sth * ia2 + cth * cth * ib2
    qd = 4.0 * qa * qc - qb * qb
    ymax = math.sqrt(4.0 * qa / qd)  # vertical half-extent
    xext = math.sqrt(4.0 * qc / qd)  # horizontal half-extent, reached at y = -qb x / (2 qc)
    yl = qb * xext / (2.0 * qc)  # height of the leftmost point (-xext, yl)
    flux = 0.0
    fvar = 0.0
    area = 0.0
    flags = 0
    hasbad = bad.shape[0] > 0
    iy0 = int(math.floor(y - ymax + 0.5))
    iy1 = int(math.floor(y + ymax + 0.5))
    for iy in range(iy0, iy1 + 1):
        dy = iy - y
        y0 = dy - 0.5
        y1 = dy + 0.5
        if y1 <= -ymax or y0 >= ymax:
            continue
        lo0, hi0 = _ellipse_row(max(y0, -ymax), qa, qb, qc)
        lo1, hi1 = _ellipse_row(min(y1, ymax), qa, qb, qc)
        lo = min(lo0, lo1)
        hi = max(hi0, hi1)
        if y0 < yl < y1:
            lo = -xext
        if y0 < -yl < y1:
            hi = xext
        if y0 >= -ymax and y1 <= ymax:
            in_lo = max(lo0, lo1)
            in_hi = min(hi0, hi1)
        else:
            in_lo = 1.0
            in_hi = -1.0
        ix0 = int(math.floor(x + lo + 0.5))
        ix1 = int(math.floor(x + hi + 0.5))
        inside_y = 0 <= iy < ny
        for ix in range(ix0, ix1 + 1):
            dx = ix - x
            if dx - 0.5 >= in_lo and dx + 0.5 <= in_hi:
                w = 1.0
            elif subpix == 0:
                w = _ellipse_pixel_overlap(dx, dy, cth, sth, a, b)
            else:
                w = _ellipse_weight(dx, dy, cth, sth, a, b, subpix)
            if w <= 0.0:
                continue
            if not (inside_y and 0 <= ix < nx):
                flags |= F_EDGE
                continue
            if hasbad and bad[iy, ix] != 0:
                flags |= F_MASKED
                continue
            pix = image[iy, ix]
            if var_mode == 2:
                v = var[iy, ix]
                if not (pix - pix == 0.0 and v >= 0.0 and v - v == 0.0):
                    flags |= F_MASKED
                    continue
                fvar += w * v
            elif not (pix - pix == 0.0):
                flags |= F_MASKED
                continue
            flux += w * pix
            area += w
    if var_mode == 1:
        fvar = area * var_scalar
    if area <= 0.0:
        flags |= F_NO_PIXELS
    out[0] = flux
    out[1] = fvar
    out[2] = area
    out[3] = flags


@njit(nogil=True, cache=True)
def _sum_ellipses(image, bad, var_mode, var, var_scalar, xs, ys, aa, bb, th, scales, subpix,
                  flux, fvar, area, flags):
    """Elliptical-aperture sums; semi-axes ``scales[i, j] * (aa[i], bb[i])`` at angle ``th[i]``.

    Outputs (n, k) as in :func:`_sum_circles`. A non-positive or non-finite axis or
    scale gives NO_PIXELS. Sources are visited in raster order.
    """
    ny, nx = image.shape
    n = xs.shape[0]
    k = scales.shape[1]
    key = np.empty(n)
    for i in range(n):
        key[i] = math.floor(ys[i]) * (nx + 1.0) + xs[i] if math.isfinite(xs[i]) and math.isfinite(ys[i]) else -1.0
    order = np.argsort(key)
    out = np.empty(4)
    for ii in range(n):
        i = order[ii]
        x = xs[i]
        y = ys[i]
        for j in range(k):
            flux[i, j] = 0.0
            fvar[i, j] = 0.0
            area[i, j] = 0.0
            flags[i, j] = 0
        ok = math.isfinite(x) and math.isfinite(y) and math.isfinite(aa[i]) and math.isfinite(bb[i])
        ok = ok and math.isfinite(th[i]) and aa[i] > 0.0 and bb[i] > 0.0
        if not ok:
            for j in range(k):
                flags[i, j] |= F_NONFINITE | F_NO_PIXELS
            continue
        a0 = max(aa[i], bb[i])
        b0 = min(aa[i], bb[i])
        theta = th[i] if aa[i] >= bb[i] else th[i] + 0.5 * math.pi
        cth = math.cos(theta)
        sth = math.sin(theta)
        for j in range(k):
            s = scales[i, j]
            if not (s > 0.0 and math.isfinite(s)):
                flags[i, j] |= F_NO_PIXELS
                continue
            _sum_ellipse_one(image, bad, var_mode, var, var_scalar, x, y, s * a0, s * b0, cth, sth, subpix, out)
            flux[i, j] = out[0]
            fvar[i, j] = out[1]
            area[i, j] = out[2]
            flags[i, j] = int(out[3])


# ---------------------------------------------------------------------------------------
# Kron radius, flux radius, local background
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _kron_radii(image, bad, xs, ys, aa, bb, th, window, kr, flags):
    """First-moment radius in units of (a, b) within the ellipse of scale ``window``.

    ``kr = sum(rho * I) / sum(I)`` over unmasked pixels whose centre has elliptical
    radius ``rho <= window`` (Kron 1980; SExtractor, sep.kron_radius). NaN with
    NONPOSITIVE when either sum is <= 0, NO_PIXELS when no pixel is usable.
    """
    ny, nx = image.shape
    n = xs.shape[0]
    w2 = window * window
    for i in range(n):
        kr[i] = math.nan
        flags[i] = 0
        x = xs[i]
        y = ys[i]
        ok = math.isfinite(x) and math.isfinite(y) and math.isfinite(aa[i]) and math.isfinite(bb[i])
        ok = ok and math.isfinite(th[i]) and aa[i] > 0.0 and bb[i] > 0.0
        if not ok:
            flags[i] = F_NONFINITE | F_NO_PIXELS
            continue
        c = math.cos(th[i])
        s = math.sin(th[i])
        ia2 = 1.0 / (aa[i] * aa[i])
        ib2 = 1.0 / (bb[i] * bb[i])
        cxx = c * c * ia2 + s * s * ib2
        cyy = s * s * ia2 + c * c * ib2
        cxy = 2.0 * c * s * (ia2 - ib2)
        # bounding box of the ellipse rho <= window
        det = cxx * cyy - 0.25 * cxy * cxy
        hx = window * math.sqrt(cyy / det)
        hy = window * math.sqrt(cxx / det)
        ix0 = int(math.floor(x - hx))
        ix1 = int(math.ceil(x + hx))
        iy0 = int(math.floor(y - hy))
        iy1 = int(math.ceil(y + hy))
        r1 = 0.0
        v1 = 0.0
        npix = 0
        for iy in range(iy0, iy1 + 1):
            dy = iy - y
            for ix in range(ix0, ix1 + 1):
                dx = ix - x
                rho2 = cxx * dx * dx + cyy * dy * dy + cxy * dx * dy
                if rho2 > w2:
                    continue
                if not (0 <= iy < ny and 0 <= ix < nx):
                    flags[i] |= F_EDGE
                    continue
                if _is_bad(bad, image, iy, ix):
                    flags[i] |= F_MASKED
                    continue
                pix = image[iy, ix]
                r1 += math.sqrt(rho2) * pix
                v1 += pix
                npix += 1
        if npix == 0:
            flags[i] |= F_NO_PIXELS
        elif r1 <= 0.0 or v1 <= 0.0:
            flags[i] |= F_NONPOSITIVE
        else:
            kr[i] = r1 / v1


@njit(nogil=True, cache=True)
def _flux_radii(image, bad, xs, ys, rmax, normflux, fracs, subpix, nbins, out, flags):
    """Radii enclosing ``fracs * normflux``: cumulative circular profile in ``nbins`` bins.

    Each pixel within ``rmax[i]`` is split into ``subpix x subpix`` sub-pixels, whose
    flux goes to the radial bin of their centre (bin width ``rmax / nbins``); the
    radius is interpolated linearly in the cumulative profile (SExtractor FLUX_RADIUS,
    sep.flux_radius). ``normflux`` NaN means the flux within ``rmax``.
    """
    ny, nx = image.shape
    n = xs.shape[0]
    nf = fracs.shape[0]
    cum = np.empty(nbins)
    step_s = 1.0 / subpix
    w_s = step_s * step_s
    for i in range(n):
        for q in range(nf):
            out[i, q] = math.nan
        flags[i] = 0
        x = xs[i]
        y = ys[i]
        rm = rmax[i]
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(rm) and rm > 0.0):
            flags[i] = F_NONFINITE | F_NO_PIXELS
            continue
        for b in range(nbins):
            cum[b] = 0.0
        binw = rm / nbins
        rm2 = rm * rm
        ix0 = int(math.floor(x - rm + 0.5))
        ix1 = int(math.floor(x + rm + 0.5))
        iy0 = int(math.floor(y - rm + 0.5))
        iy1 = int(math.floor(y + rm + 0.5))
        used = 0
        for iy in range(iy0, iy1 + 1):
            dy = iy - y
            for ix in range(ix0, ix1 + 1):
                dx = ix - x
                ex = max(abs(dx) - 0.5, 0.0)
                ey = max(abs(dy) - 0.5, 0.0)
                if ex * ex + ey * ey >= rm2:
                    continue
                if not (0 <= iy < ny and 0 <= ix < nx):
                    flags[i] |= F_EDGE
                    continue
                if _is_bad(bad, image, iy, ix):
                    flags[i] |= F_MASKED
                    continue
                pix = image[iy, ix] * w_s
                used += 1
                for sj in range(subpix):
                    sy = dy - 0.5 + (sj + 0.5) * step_s
                    for si in range(subpix):
                        sx = dx - 0.5 + (si + 0.5) * step_s
                        rr = math.sqrt(sx * sx + sy * sy)
                        if rr < rm:
                            b = int(rr / binw)
                            if b >= nbins:
                                b = nbins - 1
                            cum[b] += pix
        if used == 0:
            flags[i] |= F_NO_PIXELS
            continue
        for b in range(1, nbins):
            cum[b] += cum[b - 1]
        total = normflux[i] if math.isfinite(normflux[i]) else cum[nbins - 1]
        if not (total > 0.0):
            flags[i] |= F_NONPOSITIVE
            continue
        for q in range(nf):
            target = fracs[q] * total
            prev = 0.0
            found = False
            for b in range(nbins):
                if cum[b] >= target:
                    dv = cum[b] - prev
                    frac = (target - prev) / dv if dv > 0.0 else 0.0
                    out[i, q] = binw * (b + frac)
                    found = True
                    break
                prev = cum[b]
            if not found:
                flags[i] |= F_NOT_CONVERGED


@njit(nogil=True, cache=True)
def _annulus_background(image, bad, exclude, xs, ys, r_in, r_out, nsigma, niter, value, err, npix, flags):
    """Sigma-clipped mean of the pixels whose centre lies in the annulus [r_in, r_out).

    Pixels flagged in ``bad`` or ``exclude`` (e.g. other footprints; (0, 0) = none)
    are skipped. Clipping: ``niter`` rounds at ``nsigma`` times the standard deviation
    around the median. ``err`` is the clipped standard deviation over sqrt(n).
    """
    ny, nx = image.shape
    n = xs.shape[0]
    ri2 = r_in * r_in
    ro2 = r_out * r_out
    hmax = int(math.ceil(r_out)) + 1
    buf = np.empty((2 * hmax + 1) * (2 * hmax + 1))
    keep = np.empty((2 * hmax + 1) * (2 * hmax + 1), dtype=np.bool_)
    for i in range(n):
        value[i] = math.nan
        err[i] = math.nan
        npix[i] = 0
        flags[i] = 0
        x = xs[i]
        y = ys[i]
        if not (math.isfinite(x) and math.isfinite(y)):
            flags[i] = F_NONFINITE | F_NO_PIXELS
            continue
        ixc = int(math.floor(x + 0.5))
        iyc = int(math.floor(y + 0.5))
        m = 0
        for iy in range(iyc - hmax, iyc + hmax + 1):
            dy = iy - y
            for ix in range(ixc - hmax, ixc + hmax + 1):
                dx = ix - x
                d2 = dx * dx + dy * dy
                if d2 < ri2 or d2 >= ro2:
                    continue
                if not (0 <= iy < ny and 0 <= ix < nx):
                    flags[i] |= F_EDGE
                    continue
                if _is_bad(bad, image, iy, ix):
                    flags[i] |= F_MASKED
                    continue
                if exclude.shape[0] > 0 and exclude[iy, ix] != 0:
                    continue
                buf[m] = image[iy, ix]
                m += 1
        if m < 3:
            flags[i] |= F_NO_PIXELS
            continue
        for q in range(m):
            keep[q] = True
        mean = 0.0
        std = 0.0
        cnt = m
        for it in range(niter + 1):
            s = 0.0
            s2 = 0.0
            cnt = 0
            for q in range(m):
                if keep[q]:
                    s += buf[q]
                    cnt += 1
            if cnt < 2:
                break
            mean = s / cnt
            for q in range(m):
                if keep[q]:
                    s2 += (buf[q] - mean) ** 2
            std = math.sqrt(s2 / (cnt - 1))
            if it == niter:
                break
            med = np.median(buf[:m][keep[:m]])
            changed = False
            for q in range(m):
                k_new = abs(buf[q] - med) <= nsigma * std
                if k_new != keep[q]:
                    changed = True
                keep[q] = k_new
            if not changed:
                break
        if cnt < 2:
            flags[i] |= F_NO_PIXELS
            continue
        value[i] = mean
        err[i] = std / math.sqrt(cnt)
        npix[i] = cnt


# ---------------------------------------------------------------------------------------
# adaptive moments (Bernstein & Jarvis 2002; Hirata & Seljak 2003)
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _row_span(bx0, bx1, x0, dy, ixx, ixy, iyy, nsig2, use_cut):
    """Columns of one row inside the ellipse rho^2 <= nsig2 (``ixy`` is M^{-1}_xy), clipped."""
    if not use_cut:
        return bx0, bx1
    qb = 2.0 * ixy * dy
    qc = iyy * dy * dy - nsig2
    disc = qb * qb - 4.0 * ixx * qc
    if disc < 0.0:
        return 1, 0
    sd = math.sqrt(disc)
    return (max(bx0, int(math.ceil((-qb - sd) * 0.5 / ixx + x0))),
            min(bx1, int(math.floor((-qb + sd) * 0.5 / ixx + x0))))


@njit(nogil=True, cache=True)
def _ellipmom1(image, bad, bx0, bx1, by0, by1, x0, y0, mxx, mxy, myy, nsig2, sums):
    """Gaussian-weighted sums over the box [bx0, bx1] x [by0, by1] (inclusive, in the image).

    Weight ``w = exp(-rho^2 / 2)``, ``rho^2 = d^T M^{-1} d``, ``d = p - (x0, y0)``; pixels
    with ``rho^2 > nsig2`` are skipped (``nsig2 <= 0``: none). ``sums`` receives A, Bx,
    By, Cxx, Cxy, Cyy, rho4w (the sums of w*I times 1, dx, dy, dx^2, dx dy, dy^2,
    rho^4) and the summed weight of skipped bad pixels within rho^2 < 9. Returns
    False when M is not positive definite.
    """
    det = mxx * myy - mxy * mxy
    for q in range(8):
        sums[q] = 0.0
    if not (det > 0.0 and mxx > 0.0 and myy > 0.0):
        return False
    ixx = myy / det
    ixy2 = -2.0 * mxy / det
    iyy = mxx / det
    use_cut = nsig2 > 0.0 and math.isfinite(nsig2)
    ylo = by0
    yhi = by1
    if use_cut:
        h = math.sqrt(nsig2 * myy)
        ylo = max(by0, int(math.ceil(y0 - h)))
        yhi = min(by1, int(math.floor(y0 + h)))
    A = 0.0
    bx = 0.0
    by = 0.0
    cxx = 0.0
    cxy = 0.0
    cyy = 0.0
    r4 = 0.0
    wbad = 0.0
    hasbad = bad.shape[0] > 0
    for y in range(ylo, yhi + 1):
        dy = y - y0
        xlo = bx0
        xhi = bx1
        if use_cut:
            qb = ixy2 * dy
            qc = iyy * dy * dy - nsig2
            disc = qb * qb - 4.0 * ixx * qc
            if disc < 0.0:
                continue
            sd = math.sqrt(disc)
            xlo = max(bx0, int(math.ceil((-qb - sd) * 0.5 / ixx + x0)))
            xhi = min(bx1, int(math.floor((-qb + sd) * 0.5 / ixx + x0)))
        t1 = iyy * dy * dy
        t2 = ixy2 * dy
        # the weight along the row by recurrence: rho^2 is quadratic in x, so
        # w(x + 1) = w(x) r(x) with r(x + 1) = r(x) exp(-ixx) (two products, no exp)
        dx = xlo - x0
        rho2 = t1 + t2 * dx + ixx * dx * dx
        w = math.exp(-0.5 * rho2)
        ratio = math.exp(-0.5 * (t2 + ixx * (2.0 * dx + 1.0)))
        rstep = math.exp(-ixx)
        for x in range(xlo, xhi + 1):
            pix = image[y, x]
            if (hasbad and bad[y, x] != 0) or not (pix - pix == 0.0):
                if rho2 < 9.0:
                    wbad += w
            else:
                iw = w * pix
                A += iw
                bx += iw * dx
                by += iw * dy
                cxx += iw * dx * dx
                cxy += iw * dx * dy
                cyy += iw * dy * dy
                r4 += iw * rho2 * rho2
            rho2 += t2 + ixx * (2.0 * dx + 1.0)
            dx += 1.0
            w *= ratio
            ratio *= rstep
    sums[0] = A
    sums[1] = bx
    sums[2] = by
    sums[3] = cxx
    sums[4] = cxy
    sums[5] = cyy
    sums[6] = r4
    sums[7] = wbad
    return True


@njit(nogil=True, cache=True)
def _admom_one(image, bad, bx0, bx1, by0, by1, x0, y0, mxx, mxy, myy, nsig2, tol, max_iter,
               max_shift, max_moment, res):
    """Adaptive moments of one object; iteration of Hirata & Seljak (2003, HSM).

    Update: the Bernstein & Jarvis deconvolution step where it is well defined, else
    HSM's ``find_ellipmom_2`` step (``dx = 2 Bx / A``, ``dM = 4 (C / A - M / 2)``, each
    normalised by the minor axis of the weight and bounded by 0.25), relaxed when
    successive steps oscillate; stops when the normalised centroid step and the
    normalised moment change are both below ``tol``. ``res`` receives x0, y0, mxx,
    mxy, myy, A, rho4 (normalised by A), niter, flags, bad-pixel weight fraction.
    """
    sums = np.empty(8)
    xs0 = x0
    ys0 = y0
    flags = 0
    it = 0
    a_amp = math.nan
    rho4 = math.nan
    converged = False
    wbadfrac = 0.0
    lam = 1.0
    pdx = pdy = pdxx = pdxy = pdyy = 0.0
    while it < max_iter:
        ok = _ellipmom1(image, bad, bx0, bx1, by0, by1, x0, y0, mxx, mxy, myy, nsig2, sums)
        if not ok:
            flags |= F_NOT_CONVERGED
            break
        a_amp = sums[0]
        if not (a_amp > 0.0):
            flags |= F_NONPOSITIVE
            break
        two_psi = math.atan2(2.0 * mxy, mxx - myy)
        semi_a2 = 0.5 * ((mxx + myy) + (mxx - myy) * math.cos(two_psi)) + mxy * math.sin(two_psi)
        semi_b2 = mxx + myy - semi_a2
        if not (semi_b2 > 0.0):
            flags |= F_NOT_CONVERGED
            break
        sc = math.sqrt(semi_b2)
        # Bernstein & Jarvis (2002, sec. 3.1) "deconvolution" step: the weighted central
        # moments m of I w give the Gaussian estimate S = (m^-1 - M^-1)^-1 (exact in one
        # step for a Gaussian); used when S is positive definite (its size change
        # limited to a factor 3), otherwise HSM's bounded step
        mux = sums[1] / a_amp
        muy = sums[2] / a_amp
        m11 = sums[3] / a_amp - mux * mux
        m12 = sums[4] / a_amp - mux * muy
        m22 = sums[5] / a_amp - muy * muy
        mdet = m11 * m22 - m12 * m12
        use_bj = False
        n11 = n12 = n22 = ux = uy = 0.0
        if mdet > 0.0 and m11 > 0.0:
            det = mxx * myy - mxy * mxy
            p11 = m22 / mdet - myy / det
            p22 = m11 / mdet - mxx / det
            p12 = -m12 / mdet + mxy / det
            pdet = p11 * p22 - p12 * p12
            if pdet > 0.0 and p11 > 0.0:
                n11 = p22 / pdet
                n22 = p11 / pdet
                n12 = -p12 / pdet
                # a size change beyond a factor 3 per step is scaled back to 3 (far
                # from the solution, e.g. a wide first guess, the estimate is rough)
                ratio = (n11 + n22) / (mxx + myy)
                if ratio < 1.0 / 3.0 or ratio > 3.0:
                    f = (1.0 / 3.0 if ratio < 1.0 / 3.0 else 3.0) / ratio
                    n11 *= f
                    n22 *= f
                    n12 *= f
                use_bj = True
                ux = (m22 * mux - m12 * muy) / mdet
                uy = (-m12 * mux + m11 * muy) / mdet
        if use_bj:
            dx = (n11 * ux + n12 * uy) / sc
            dy = (n12 * ux + n22 * uy) / sc
            dxx = (n11 - mxx) / semi_b2
            dxy = (n12 - mxy) / semi_b2
            dyy = (n22 - myy) / semi_b2
            if abs(dx) > 0.5 or abs(dy) > 0.5:  # keep the centre step bounded
                f = 0.5 / max(abs(dx), abs(dy))
                dx *= f
                dy *= f
        else:
            dx = 2.0 * sums[1] / (a_amp * sc)
            dy = 2.0 * sums[2] / (a_amp * sc)
            dxx = 4.0 * (sums[3] / a_amp - 0.5 * mxx) / semi_b2
            dxy = 4.0 * (sums[4] / a_amp - 0.5 * mxy) / semi_b2
            dyy = 4.0 * (sums[5] / a_amp - 0.5 * myy) / semi_b2
            dx = min(max(dx, -0.25), 0.25)
            dy = min(max(dy, -0.25), 0.25)
            dxx = min(max(dxx, -0.25), 0.25)
            dxy = min(max(dxy, -0.25), 0.25)
            dyy = min(max(dyy, -0.25), 0.25)
        conv = max(abs(dx), abs(dy), abs(dxx), abs(dxy), abs(dyy))
        rho4 = sums[6] / a_amp
        wbadfrac = sums[7]
        it += 1
        if conv < tol:
            converged = True
            break
        # relaxation: on noisy images the map can overshoot (derivative near -1) and
        # oscillate; halve the step while successive steps reverse without shrinking by
        # half, restore it otherwise. The fixed point is unchanged.
        dot = dx * pdx + dy * pdy + dxx * pdxx + dxy * pdxy + dyy * pdyy
        n2 = dx * dx + dy * dy + dxx * dxx + dxy * dxy + dyy * dyy
        p2 = pdx * pdx + pdy * pdy + pdxx * pdxx + pdxy * pdxy + pdyy * pdyy
        if dot < 0.0 and n2 > 0.25 * p2:  # reversing without shrinking: oscillation
            lam = max(0.5 * lam, 0.0625)
        else:
            lam = min(2.0 * lam, 1.0)
        pdx, pdy, pdxx, pdxy, pdyy = dx, dy, dxx, dxy, dyy
        dx *= lam
        dy *= lam
        dxx *= lam
        dxy *= lam
        dyy *= lam
        x0 += dx * sc
        y0 += dy * sc
        mxx += dxx * semi_b2
        mxy += dxy * semi_b2
        myy += dyy * semi_b2
        if (abs(mxx) > max_moment or abs(myy) > max_moment or abs(mxy) > max_moment
                or abs(x0 - xs0) > max_shift or abs(y0 - ys0) > max_shift):
            flags |= F_SHIFT
            break
        if not (math.isfinite(x0) and math.isfinite(y0) and math.isfinite(mxx)
                and math.isfinite(myy) and math.isfinite(mxy)):
            flags |= F_NONFINITE
            break
    if not converged:
        flags |= F_NOT_CONVERGED
    res[0] = x0
    res[1] = y0
    res[2] = mxx
    res[3] = mxy
    res[4] = myy
    res[5] = a_amp
    res[6] = rho4
    res[7] = it
    res[8] = flags
    res[9] = wbadfrac
    return converged


@njit(nogil=True, cache=True)
def _admom_cov(image, bad, var_mode, var, var_scalar, bx0, bx1, by0, by1, x0, y0, mxx, mxy, myy,
               nsig2, cov):
    """Covariance of (amp, x0, y0, mxx, myy, mxy) of the best-fit Gaussian, sandwich form.

    Adaptive moments are the least-squares fit of ``m = a w`` (Bernstein & Jarvis 2002):
    with the Jacobian J of m with respect to the six parameters at the solution,
    ``cov = H^{-1} (J^T V J) H^{-1}``, ``H = J^T J``. Returns False if H is singular.
    """
    det = mxx * myy - mxy * mxy
    if not (det > 0.0):
        return False
    ixx = myy / det
    ixy = -mxy / det
    iyy = mxx / det
    use_cut = nsig2 > 0.0 and math.isfinite(nsig2)
    ylo = by0
    yhi = by1
    if use_cut:
        hh = math.sqrt(nsig2 * myy)
        ylo = max(by0, int(math.ceil(y0 - hh)))
        yhi = min(by1, int(math.floor(y0 + hh)))
    # amplitude of the least-squares model
    sw2 = 0.0
    siw = 0.0
    for y in range(ylo, yhi + 1):
        dy = y - y0
        xlo, xhi = _row_span(bx0, bx1, x0, dy, ixx, ixy, iyy, nsig2, use_cut)
        dx = xlo - x0
        w = math.exp(-0.5 * (ixx * dx * dx + 2.0 * ixy * dx * dy + iyy * dy * dy))
        ratio = math.exp(-0.5 * (2.0 * ixy * dy + ixx * (2.0 * dx + 1.0)))
        rstep = math.exp(-ixx)
        for x in range(xlo, xhi + 1):
            if not _is_bad(bad, image, y, x):
                sw2 += w * w
                siw += w * image[y, x]
            w *= ratio
            ratio *= rstep
    if not (sw2 > 0.0):
        return False
    amp = siw / sw2
    h = np.zeros((6, 6))
    s = np.zeros((6, 6))
    jac = np.empty(6)
    for y in range(ylo, yhi + 1):
        dy = y - y0
        xlo, xhi = _row_span(bx0, bx1, x0, dy, ixx, ixy, iyy, nsig2, use_cut)
        dx = xlo - x0
        w = math.exp(-0.5 * (ixx * dx * dx + 2.0 * ixy * dx * dy + iyy * dy * dy))
        ratio = math.exp(-0.5 * (2.0 * ixy * dy + ixx * (2.0 * dx + 1.0)))
        rstep = math.exp(-ixx)
        for x in range(xlo, xhi + 1):
            if not _is_bad(bad, image, y, x):
                ux = ixx * dx + ixy * dy
                uy = ixy * dx + iyy * dy
                aw = amp * w
                jac[0] = w
                jac[1] = aw * ux
                jac[2] = aw * uy
                jac[3] = 0.5 * aw * ux * ux
                jac[4] = 0.5 * aw * uy * uy
                jac[5] = aw * ux * uy
                v = _var_at(var_mode, var, var_scalar, y, x)
                for p in range(6):
                    for q in range(p, 6):
                        jj = jac[p] * jac[q]
                        h[p, q] += jj
                        s[p, q] += jj * v
            dx += 1.0
            w *= ratio
            ratio *= rstep
    for p in range(6):
        for q in range(p):
            h[p, q] = h[q, p]
            s[p, q] = s[q, p]
    # H^{-1} via Gauss-Jordan with partial pivoting (small, numba-friendly)
    inv = np.eye(6)
    m = h.copy()
    for c in range(6):
        piv = c
        best = abs(m[c, c])
        for r in range(c + 1, 6):
            if abs(m[r, c]) > best:
                best = abs(m[r, c])
                piv = r
        if not (best > 0.0):
            return False
        if piv != c:
            for q in range(6):
                t = m[c, q]
                m[c, q] = m[piv, q]
                m[piv, q] = t
                t = inv[c, q]
                inv[c, q] = inv[piv, q]
                inv[piv, q] = t
        d = m[c, c]
        for q in range(6):
            m[c, q] /= d
            inv[c, q] /= d
        for r in range(6):
            if r != c:
                f = m[r, c]
                if f != 0.0:
                    for q in range(6):
                        m[r, q] -= f * m[c, q]
                        inv[r, q] -= f * inv[c, q]
    tmp = inv @ s
    res = tmp @ inv
    for p in range(6):
        for q in range(6):
            cov[p, q] = res[p, q]
    return True


@njit(nogil=True, cache=True)
def _adaptive_moments(image, bad, var_mode, var, var_scalar, xs, ys, mxx0, myy0, mxy0,
                      bx0, bx1, by0, by1, nsig2, tol, max_iter, max_shift, max_moment,
                      out, cov_out):
    """Adaptive moments of n objects; ``out`` (n, 10) as :func:`_admom_one` ``res``.

    ``bx0..by1`` are per-object inclusive boxes (clipped to the image by the caller).
    ``cov_out`` (n, 6, 6) receives the covariance of (amp, x0, y0, mxx, myy, mxy), NaN
    when it cannot be computed (no variance or a singular Hessian).
    """
    n = xs.shape[0]
    res = np.empty(10)
    cov = np.empty((6, 6))
    for i in range(n):
        for q in range(10):
            out[i, q] = math.nan
        for p in range(6):
            for q in range(6):
                cov_out[i, p, q] = math.nan
        if not (math.isfinite(xs[i]) and math.isfinite(ys[i]) and mxx0[i] > 0.0 and myy0[i] > 0.0):
            out[i, 8] = F_NONFINITE
            continue
        if bx1[i] < bx0[i] or by1[i] < by0[i]:
            out[i, 8] = F_NO_PIXELS | F_EDGE
            continue
        conv = _admom_one(image, bad, bx0[i], bx1[i], by0[i], by1[i], xs[i], ys[i], mxx0[i], mxy0[i],
                          myy0[i], nsig2, tol, max_iter, max_shift, max_moment, res)
        for q in range(10):
            out[i, q] = res[q]
        if conv and var_mode > 0:
            if _admom_cov(image, bad, var_mode, var, var_scalar, bx0[i], bx1[i], by0[i], by1[i],
                          res[0], res[1], res[2], res[3], res[4], nsig2, cov):
                for p in range(6):
                    for q in range(6):
                        cov_out[i, p, q] = cov[p, q]


# ---------------------------------------------------------------------------------------
# re-Gaussianization PSF correction (Hirata & Seljak 2003, sec. 2.4)
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _shearmult(e1a, e2a, e1b, e2b):
    """Distortion of a round object sheared by ``a`` and then by ``b`` (Bernstein & Jarvis eq. 2-13)."""
    dotp = e1a * e1b + e2a * e2b
    eb2 = e1b * e1b + e2b * e2b
    if eb2 < 1e-30:
        factor = 0.5
    else:
        factor = (1.0 - math.sqrt(max(1.0 - eb2, 0.0))) / eb2
    e1 = (e1a + e1b + e2b * factor * (e2a * e1b - e1a * e2b)) / (1.0 + dotp)
    e2 = (e2a + e2b + e1b * factor * (e1a * e2b - e2a * e1b)) / (1.0 + dotp)
    return e1, e2


@njit(nogil=True, cache=True)
def _psf_corr_bj(tratio, e1p, e2p, a4p, e1o, e2o, a4o):
    """Bernstein & Jarvis (2002, appendix) dilution correction in the circular-PSF frame."""
    coshetap = 1.0 / math.sqrt(1.0 - e1p * e1p - e2p * e2p)
    coshetao = 1.0 / math.sqrt(1.0 - e1o * e1o - e2o * e2o)
    sig2ratio = tratio * coshetao / coshetap
    e1red, e2red = _shearmult(e1o, e2o, -e1p, -e2p)
    coshetao = 1.0 / math.sqrt(1.0 - e1red * e1red - e2red * e2red)
    r = 1.0 - sig2ratio * (1.0 - a4p) / (1.0 + a4p) * (1.0 + a4o) / (1.0 - a4o) / coshetao
    e1red /= r
    e2red /= r
    return _shearmult(e1red, e2red, e1p, e2p)


@njit(nogil=True, cache=True)
def _regauss_one(image, bad, gx0, gx1, gy0, gy1, psf, psf_guess, gal, nsig2, tol, max_iter,
                 max_shift, max_moment, nsig_rg, nsig_rg2, out, psf_res, psf_known):
    """Re-Gaussianization of one galaxy.

    ``gal`` = (x0, y0, mxx, mxy, myy, amp, rho4) of the galaxy's adaptive moments in
    the box [gx0, gx1] x [gy0, gy1]; ``psf`` an odd, centred PSF image; ``psf_guess``
    the starting moment. ``out`` receives e1, e2 (distortion), R, sigma of the
    re-Gaussianized image, flux, psf sigma, psf e1, psf e2, flags.
    """
    for q in range(9):
        out[q] = math.nan
    flags = 0
    kny, knx = psf.shape
    nobad = np.zeros((0, 0), dtype=np.uint8)
    flux_psf = 0.0
    for yy in range(kny):
        for xx in range(knx):
            flux_psf += psf[yy, xx]
    res = np.empty(10)
    if not psf_known:  # the PSF's adaptive moments (reused while the PSF image repeats)
        _admom_one(psf, nobad, 0, knx - 1, 0, kny - 1, 0.5 * (knx - 1), 0.5 * (kny - 1), psf_guess,
                   0.0, psf_guess, nsig2, tol, max_iter, max_shift, max_moment, psf_res)
    if psf_res[8] != 0:
        out[8] = F_NOT_CONVERGED
        return
    x0p = psf_res[0]
    y0p = psf_res[1]
    mxxp = psf_res[2]
    mxyp = psf_res[3]
    myyp = psf_res[4]
    tpsf = mxxp + myyp
    out[5] = (mxxp * myyp - mxyp * mxyp) ** 0.25
    out[6] = (mxxp - myyp) / tpsf
    out[7] = 2.0 * mxyp / tpsf
    x0g = gal[0]
    y0g = gal[1]
    mxxg = gal[2]
    mxyg = gal[3]
    myyg = gal[4]
    flux_gal = gal[6] * gal[5]
    # approximate deconvolved moments, kept positive definite (regauss_too_small = 1)
    mfxx = mxxg - mxxp
    mfxy = mxyg - mxyp
    mfyy = myyg - myyp
    two_phi = math.atan2(2.0 * mfxy, mfxx - mfyy)
    a2 = 0.5 * (mfxx + mfyy + (mfxx - mfyy) * math.cos(two_phi)) + mfxy * math.sin(two_phi)
    b2 = mfxx + mfyy - a2
    if a2 <= 0.25:
        a2 = 0.25
    if b2 <= 0.25:
        b2 = 0.25
    mfxx = 0.5 * (a2 + b2 + (a2 - b2) * math.cos(two_phi))
    mfyy = 0.5 * (a2 + b2 - (a2 - b2) * math.cos(two_phi))
    mfxy = 0.5 * (a2 - b2) * math.sin(two_phi)
    detmf = mfxx * mfyy - mfxy * mfxy
    # Gaussian approximation of the pre-seeing galaxy, in "galaxy minus PSF" coordinates
    fxc = x0g - x0p
    fyc = y0g - y0p
    fxs = math.sqrt(mfxx if mfxx > 1.0 else 1.0)
    fys = math.sqrt(mfyy if mfyy > 1.0 else 1.0)
    fx0 = gx0 - (knx - 1)
    fx1 = gx1
    fy0 = gy0 - (kny - 1)
    fy1 = gy1
    if nsig_rg > 0.0:
        if fx0 < fxc - nsig_rg * fxs:
            fx0 = int(math.floor(fxc - nsig_rg * fxs))
        if fx1 > fxc + nsig_rg * fxs:
            fx1 = int(math.ceil(fxc + nsig_rg * fxs))
        if fy0 < fyc - nsig_rg * fys:
            fy0 = int(math.floor(fyc - nsig_rg * fys))
        if fy1 > fyc + nsig_rg * fys:
            fy1 = int(math.ceil(fyc + nsig_rg * fys))
    ifxx = mfyy / detmf
    ifxy = -mfxy / detmf
    ifyy = mfxx / detmf
    fg = np.empty((fy1 - fy0 + 1, fx1 - fx0 + 1))
    fsum = 0.0
    for yy in range(fy0, fy1 + 1):
        dy = yy - fyc
        for xx in range(fx0, fx1 + 1):
            dx = xx - fxc
            v = math.exp(-0.5 * (ifxx * dx * dx + ifyy * dy * dy) - ifxy * dx * dy)
            fg[yy - fy0, xx - fx0] = v
            fsum += v
    norm = flux_gal / (fsum * flux_psf)
    # residual of the PSF from its Gaussian approximation (cut at nsig_rg2 sigma of the galaxy)
    px0 = 0
    px1 = knx - 1
    py0 = 0
    py1 = kny - 1
    if nsig_rg2 > 0.0:
        qx0 = int(math.floor(x0p - nsig_rg2 * math.sqrt(mxxg) - nsig_rg * fxs))
        qx1 = int(math.ceil(x0p + nsig_rg2 * math.sqrt(mxxg) + nsig_rg * fxs))
        qy0 = int(math.floor(y0p - nsig_rg2 * math.sqrt(myyg) - nsig_rg * fys))
        qy1 = int(math.ceil(y0p + nsig_rg2 * math.sqrt(myyg) + nsig_rg * fys))
        px0 = max(px0, qx0)
        px1 = min(px1, qx1)
        py0 = max(py0, qy0)
        py1 = min(py1, qy1)
    detp = mxxp * myyp - mxyp * mxyp
    ipxx = myyp / detp
    ipxy = -mxyp / detp
    ipyy = mxxp / detp
    camp = flux_psf / (_TWO_PI * math.sqrt(detp))
    resid = np.empty((py1 - py0 + 1, px1 - px0 + 1))
    for yy in range(py0, py1 + 1):
        dy = yy - y0p
        for xx in range(px0, px1 + 1):
            dx = xx - x0p
            g = camp * math.exp(-0.5 * (ipxx * dx * dx + ipyy * dy * dy) - ipxy * dx * dy)
            resid[yy - py0, xx - px0] = g - psf[yy, xx]
    # re-Gaussianized image I' = I + fgauss (x) (G - P) on the galaxy box
    gny = gy1 - gy0 + 1
    gnx = gx1 - gx0 + 1
    ip = np.empty((gny, gnx))
    ipbad = np.zeros((gny, gnx), dtype=np.uint8)
    for yy in range(gny):
        for xx in range(gnx):
            if _is_bad(bad, image, gy0 + yy, gx0 + xx):
                ipbad[yy, xx] = 1
                ip[yy, xx] = 0.0
            else:
                ip[yy, xx] = image[gy0 + yy, gx0 + xx]
    for uy in range(fy0, fy1 + 1):
        for ux in range(fx0, fx1 + 1):
            fv = fg[uy - fy0, ux - fx0] * norm
            if fv == 0.0:
                continue
            for vy in range(py0, py1 + 1):
                ty = uy + vy - gy0
                if ty < 0 or ty >= gny:
                    continue
                for vx in range(px0, px1 + 1):
                    tx = ux + vx - gx0
                    if tx < 0 or tx >= gnx:
                        continue
                    ip[ty, tx] += fv * resid[vy - py0, vx - px0]
    okg = _admom_one(ip, ipbad, 0, gnx - 1, 0, gny - 1, x0g - gx0, y0g - gy0, mxxg, mxyg, myyg,
                     nsig2, tol, max_iter, max_shift, max_moment, res)
    if not okg:
        out[8] = F_NOT_CONVERGED
        return
    mxx2 = res[2]
    mxy2 = res[3]
    myy2 = res[4]
    rho4 = res[6]
    if not (mxx2 > 0.0 and myy2 > 0.0 and mxx2 * myy2 > mxy2 * mxy2):
        out[8] = F_NOT_CONVERGED
        return
    tgal = mxx2 + myy2
    e1g = (mxx2 - myy2) / tgal
    e2g = 2.0 * mxy2 / tgal
    e1, e2 = _psf_corr_bj(tpsf / tgal, out[6], out[7], 0.0, e1g, e2g, 0.5 * rho4 - 1.0)
    rr = 1.0 - tpsf / tgal
    out[0] = e1
    out[1] = e2
    out[2] = rr
    out[3] = (mxx2 * myy2 - mxy2 * mxy2) ** 0.25
    out[4] = flux_gal
    if not (rr > 0.0):
        flags |= F_SMALL
    if not (math.isfinite(e1) and math.isfinite(e2)):
        flags |= F_NONFINITE
    out[8] = flags


@njit(nogil=True, cache=True)
def _regauss(image, bad, bx0, bx1, by0, by1, psfs, psf_guess, gals, nsig2, tol, max_iter, max_shift,
             max_moment, nsig_rg, nsig_rg2, out):
    """Re-Gaussianization of n galaxies; ``psfs`` (n, k, k), ``gals`` (n, 7), ``out`` (n, 9)."""
    n = gals.shape[0]
    o = np.empty(9)
    psf_res = np.empty(10)
    last = -1
    for i in range(n):
        for q in range(9):
            out[i, q] = math.nan
        ok = True
        for q in range(7):
            if not math.isfinite(gals[i, q]):
                ok = False
        if not ok or bx1[i] < bx0[i] or by1[i] < by0[i]:
            out[i, 8] = F_NO_PIXELS
            continue
        known = last >= 0 and psf_guess[i] == psf_guess[last] and np.array_equal(psfs[i], psfs[last])
        _regauss_one(image, bad, bx0[i], bx1[i], by0[i], by1[i], psfs[i], psf_guess[i], gals[i],
                     nsig2, tol, max_iter, max_shift, max_moment, nsig_rg, nsig_rg2, o, psf_res, known)
        last = i
        for q in range(9):
            out[i, q] = o[q]


# ---------------------------------------------------------------------------------------
# centroids
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _smooth_at(image, bad, kern, hk, px, py):
    """Normalised convolution of the image with ``kern`` (size 2 hk + 1) at pixel (px, py).

    Bad and off-image pixels are skipped and the kernel renormalised over the rest.
    Returns (value, used kernel weight, off-image kernel weight, bad-pixel kernel weight).
    """
    ny, nx = image.shape
    s = 0.0
    wsum = 0.0
    wout = 0.0
    wbad = 0.0
    for j in range(-hk, hk + 1):
        y = py + j
        for i in range(-hk, hk + 1):
            x = px + i
            w = kern[j + hk, i + hk]
            if y < 0 or y >= ny or x < 0 or x >= nx:
                wout += w
                continue
            if _is_bad(bad, image, y, x):
                wbad += w
                continue
            s += w * image[y, x]
            wsum += w
    return s, wsum, wout, wbad


@njit(nogil=True, cache=True)
def _sdss_centroids(image, bad, var_mode, var, var_scalar, xs, ys, sigmas, lsq, max_move, out):
    """SDSS-style centroids (Pier et al. 2003) of n sources; ``out`` (n, 6).

    The image is smoothed with a circular Gaussian of width ``sigmas[i]`` (the PSF),
    the smoothed maximum is located within ``max_move`` pixels of the input position,
    and a quadratic ``c0 + c1 u + c2 v + c3 u^2 + c4 u v + c5 v^2`` is fitted by least
    squares (``lsq``, the 6x9 matrix of the 3x3 design) to the logarithm of the 3x3
    smoothed values around it (exact for a Gaussian profile), or to the values
    themselves when one is not positive. The vertex gives the centroid; its
    covariance follows from linear propagation of the pixel variances through the
    smoothing and the fit. ``out`` = x, y, var_x, var_y, cov_xy, flags.
    """
    ny, nx = image.shape
    n = xs.shape[0]
    vals = np.empty(9)
    uu = np.empty(9)
    kern_sig = -1.0
    hk = 0
    kern = np.empty((1, 1))
    for i in range(n):
        for q in range(5):
            out[i, q] = math.nan
        out[i, 5] = 0
        x = xs[i]
        y = ys[i]
        sig = sigmas[i]
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(sig) and sig > 0.0):
            out[i, 5] = F_NONFINITE
            continue
        flags = 0
        if sig != kern_sig:  # one PSF for many sources: build the kernel only when it changes
            kern_sig = sig
            hk = int(math.ceil(3.5 * sig))
            kern = np.empty((2 * hk + 1, 2 * hk + 1))
            g1 = np.empty(2 * hk + 1)
            for q in range(-hk, hk + 1):
                g1[q + hk] = math.exp(-0.5 * q * q / (sig * sig))
            for j in range(2 * hk + 1):
                for q in range(2 * hk + 1):
                    kern[j, q] = g1[j] * g1[q]
        px = int(math.floor(x + 0.5))
        py = int(math.floor(y + 0.5))
        if px < 0 or px >= nx or py < 0 or py >= ny:
            out[i, 5] = F_EDGE | F_NO_PIXELS
            continue
        # climb to the local maximum of the smoothed image
        moved = 0
        wedge = 0.0
        wmask = 0.0
        for it in range(2 * max_move + 2):
            wedge = 0.0
            wmask = 0.0
            for j in range(-1, 2):
                for q in range(-1, 2):
                    s, ws, wo, wb = _smooth_at(image, bad, kern, hk, px + q, py + j)
                    vals[(j + 1) * 3 + (q + 1)] = s / ws if ws > 0.0 else math.nan
                    wedge = max(wedge, wo)
                    wmask = max(wmask, wb)
            best = 4
            for q in range(9):
                if vals[q] > vals[best]:
                    best = q
            if best == 4 or not math.isfinite(vals[4]):
                break
            px += best % 3 - 1
            py += best // 3 - 1
            moved += 1
            if moved > max_move or px < 0 or px >= nx or py < 0 or py >= ny:
                break
        if moved > max_move or px < 0 or px >= nx or py < 0 or py >= ny:
            out[i, 5] = F_SHIFT | F_NOT_A_PEAK
            continue
        if wedge > 0.0:
            flags |= F_EDGE
        if wmask > 0.0:
            flags |= F_MASKED
        usable = True
        for q in range(9):
            if not math.isfinite(vals[q]):
                usable = False
        if not usable:
            out[i, 5] = flags | F_NO_PIXELS
            continue
        use_log = True
        for q in range(9):
            if not (vals[q] > 0.0):
                use_log = False
        for q in range(9):
            uu[q] = math.log(vals[q]) if use_log else vals[q]
        c = np.zeros(6)
        for p in range(6):
            for q in range(9):
                c[p] += lsq[p, q] * uu[q]
        h11 = 2.0 * c[3]
        h12 = c[4]
        h22 = 2.0 * c[5]
        det = h11 * h22 - h12 * h12
        if not (h11 < 0.0 and det > 0.0):
            out[i, 5] = flags | F_NOT_A_PEAK
            continue
        # vertex d = -H^{-1} g
        i11 = h22 / det
        i12 = -h12 / det
        i22 = h11 / det
        ddx = -(i11 * c[1] + i12 * c[2])
        ddy = -(i12 * c[1] + i22 * c[2])
        if abs(ddx) > 1.0 or abs(ddy) > 1.0:
            out[i, 5] = flags | F_NOT_A_PEAK
            continue
        out[i, 0] = px + ddx
        out[i, 1] = py + ddy
        out[i, 5] = flags
        if var_mode == 0:
            continue
        # linear error propagation: delta d = -H^{-1} Mc L diag(1/S) delta S, S = K (x) I
        # Mc rows: x: [0, 1, 0, 2 dx, dy, 0]; y: [0, 0, 1, 0, dx, 2 dy]
        wx = np.zeros(9)
        wy = np.zeros(9)
        for q in range(9):
            gx = lsq[1, q] + 2.0 * ddx * lsq[3, q] + ddy * lsq[4, q]
            gy = lsq[2, q] + ddx * lsq[4, q] + 2.0 * ddy * lsq[5, q]
            scale = 1.0 / vals[q] if use_log else 1.0
            wx[q] = -(i11 * gx + i12 * gy) * scale
            wy[q] = -(i12 * gx + i22 * gy) * scale
        # coefficient maps on the union of the 9 kernel supports
        m = 2 * hk + 3
        gxm = np.zeros((m, m))
        gym = np.zeros((m, m))
        for j in range(-1, 2):
            for q in range(-1, 2):
                s, ws, wo, wb = _smooth_at(image, bad, kern, hk, px + q, py + j)
                idx = (j + 1) * 3 + (q + 1)
                for jj in range(-hk, hk + 1):
                    yy = py + j + jj
                    for qq in range(-hk, hk + 1):
                        xx = px + q + qq
                        if yy < 0 or yy >= ny or xx < 0 or xx >= nx or _is_bad(bad, image, yy, xx):
                            continue
                        kv = kern[jj + hk, qq + hk] / ws
                        gxm[j + jj + hk + 1, q + qq + hk + 1] += wx[idx] * kv
                        gym[j + jj + hk + 1, q + qq + hk + 1] += wy[idx] * kv
        vxx = 0.0
        vyy = 0.0
        vxy = 0.0
        for jj in range(m):
            yy = py + jj - hk - 1
            for qq in range(m):
                xx = px + qq - hk - 1
                if yy < 0 or yy >= ny or xx < 0 or xx >= nx or _is_bad(bad, image, yy, xx):
                    continue
                v = _var_at(var_mode, var, var_scalar, yy, xx)
                vxx += gxm[jj, qq] * gxm[jj, qq] * v
                vyy += gym[jj, qq] * gym[jj, qq] * v
                vxy += gxm[jj, qq] * gym[jj, qq] * v
        out[i, 2] = vxx
        out[i, 3] = vyy
        out[i, 4] = vxy


@njit(nogil=True, cache=True)
def _gaussian_centroids(image, bad, var_mode, var, var_scalar, xs, ys, sigmas, nsig, tol, max_iter,
                        max_shift, out):
    """Gaussian-weighted (windowed) centroids, iterated as SExtractor's XWIN_IMAGE.

    ``x <- x + 2 sum(w I dx) / sum(w I)`` with ``w = exp(-r^2 / 2 sigma^2)`` over pixel
    centres within ``nsig * sigma``, until the step is below ``tol`` pixels. The fixed
    point solves ``F(x) = sum(w I d) = 0``; its covariance is ``J^{-1} (sum w^2 d d^T V)
    J^{-T}`` with ``J = sum w I (1 - d d^T / sigma^2)``. ``out`` (n, 7) = x, y, var_x,
    var_y, cov_xy, niter, flags.
    """
    ny, nx = image.shape
    n = xs.shape[0]
    for i in range(n):
        for q in range(6):
            out[i, q] = math.nan
        out[i, 6] = 0
        x = xs[i]
        y = ys[i]
        sig = sigmas[i]
        if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(sig) and sig > 0.0):
            out[i, 6] = F_NONFINITE
            continue
        x_start = x
        y_start = y
        flags = 0
        r = nsig * sig
        r2 = r * r
        inv2s2 = 0.5 / (sig * sig)
        converged = False
        it = 0
        while it < max_iter:
            it += 1
            ix0 = int(math.floor(x - r))
            ix1 = int(math.ceil(x + r))
            iy0 = int(math.floor(y - r))
            iy1 = int(math.ceil(y + r))
            swi = 0.0
            sx = 0.0
            sy = 0.0
            for yy in range(iy0, iy1 + 1):
                dy = yy - y
                for xx in range(ix0, ix1 + 1):
                    dx = xx - x
                    d2 = dx * dx + dy * dy
                    if d2 > r2:
                        continue
                    if yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                        flags |= F_EDGE
                        continue
                    if _is_bad(bad, image, yy, xx):
                        flags |= F_MASKED
                        continue
                    wi = math.exp(-d2 * inv2s2) * image[yy, xx]
                    swi += wi
                    sx += wi * dx
                    sy += wi * dy
            if not (swi > 0.0):
                flags |= F_NONPOSITIVE
                break
            stx = 2.0 * sx / swi
            sty = 2.0 * sy / swi
            x += stx
            y += sty
            if abs(x - x_start) > max_shift or abs(y - y_start) > max_shift:
                flags |= F_SHIFT
                break
            if stx * stx + sty * sty < tol * tol:
                converged = True
                break
        if not converged:
            flags |= F_NOT_CONVERGED
            if flags & (F_SHIFT | F_NONPOSITIVE):
                out[i, 6] = flags
                out[i, 5] = it
                continue
        out[i, 0] = x
        out[i, 1] = y
        out[i, 5] = it
        out[i, 6] = flags
        if var_mode == 0:
            continue
        ix0 = int(math.floor(x - r))
        ix1 = int(math.ceil(x + r))
        iy0 = int(math.floor(y - r))
        iy1 = int(math.ceil(y + r))
        j11 = 0.0
        j12 = 0.0
        j22 = 0.0
        s11 = 0.0
        s12 = 0.0
        s22 = 0.0
        for yy in range(max(iy0, 0), min(iy1, ny - 1) + 1):
            dy = yy - y
            for xx in range(max(ix0, 0), min(ix1, nx - 1) + 1):
                dx = xx - x
                d2 = dx * dx + dy * dy
                if d2 > r2 or _is_bad_v(bad, image, var_mode, var, yy, xx):
                    continue
                w = math.exp(-d2 * inv2s2)
                wi = w * image[yy, xx]
                j11 += wi * (1.0 - dx * dx / (sig * sig))
                j12 += wi * (-dx * dy / (sig * sig))
                j22 += wi * (1.0 - dy * dy / (sig * sig))
                v = _var_at(var_mode, var, var_scalar, yy, xx) * w * w
                s11 += v * dx * dx
                s12 += v * dx * dy
                s22 += v * dy * dy
        det = j11 * j22 - j12 * j12
        if not (det > 0.0):
            out[i, 6] = flags | F_NOT_A_PEAK
            continue
        a11 = j22 / det
        a12 = -j12 / det
        a22 = j11 / det
        # A S A^T with A = J^{-1} (symmetric)
        t11 = a11 * s11 + a12 * s12
        t12 = a11 * s12 + a12 * s22
        t21 = a12 * s11 + a22 * s12
        t22 = a12 * s12 + a22 * s22
        out[i, 2] = t11 * a11 + t12 * a12
        out[i, 3] = t21 * a12 + t22 * a22
        out[i, 4] = t11 * a12 + t12 * a22


# ---------------------------------------------------------------------------------------
# PSF flux
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _psf_fluxes(image, bad, var_mode, var, var_scalar, psfs, ix0s, iy0s, max_excluded, out):
    """Linear least-squares amplitude of a PSF stamp per source; ``out`` (n, 5).

    ``psfs[i]`` is the unit-flux PSF at the source position on a stamp whose pixel
    (0, 0) is image pixel (ix0s[i], iy0s[i]). Unweighted fit over the usable pixels,
    ``F = sum(P I) / sum(P^2)``, ``var F = sum(P^2 V) / (sum P^2)^2``, ``chi2 = sum((I -
    F P)^2 / V) / (n - 1)``. Flags EDGE / MASKED when off-image / bad pixels carry more
    than ``max_excluded`` of ``sum P^2``. ``out`` = flux, var, chi2, npix, flags.
    """
    ny, nx = image.shape
    n = psfs.shape[0]
    ky = psfs.shape[1]
    kx = psfs.shape[2]
    for i in range(n):
        spp = 0.0
        spi = 0.0
        sppv = 0.0
        sexcl_edge = 0.0
        sexcl_bad = 0.0
        stot = 0.0
        npix = 0
        for j in range(ky):
            yy = iy0s[i] + j
            for q in range(kx):
                xx = ix0s[i] + q
                p = psfs[i, j, q]
                p2 = p * p
                stot += p2
                if yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                    sexcl_edge += p2
                    continue
                if _is_bad_v(bad, image, var_mode, var, yy, xx):
                    sexcl_bad += p2
                    continue
                spp += p2
                spi += p * image[yy, xx]
                sppv += p2 * _var_at(var_mode, var, var_scalar, yy, xx)
                npix += 1
        flags = 0
        if stot > 0.0 and sexcl_edge > max_excluded * stot:
            flags |= F_EDGE
        if stot > 0.0 and sexcl_bad > max_excluded * stot:
            flags |= F_MASKED
        if not (spp > 0.0) or npix < 2:
            out[i, 0] = math.nan
            out[i, 1] = math.nan
            out[i, 2] = math.nan
            out[i, 3] = npix
            out[i, 4] = flags | F_NO_PIXELS
            continue
        f = spi / spp
        out[i, 0] = f
        out[i, 1] = sppv / (spp * spp) if var_mode > 0 else math.nan
        chi2 = 0.0
        if var_mode > 0:
            for j in range(ky):
                yy = iy0s[i] + j
                for q in range(kx):
                    xx = ix0s[i] + q
                    if yy < 0 or yy >= ny or xx < 0 or xx >= nx or _is_bad_v(bad, image, var_mode, var, yy, xx):
                        continue
                    v = _var_at(var_mode, var, var_scalar, yy, xx)
                    if v > 0.0:
                        rr = image[yy, xx] - f * psfs[i, j, q]
                        chi2 += rr * rr / v
            out[i, 2] = chi2 / (npix - 1)
        else:
            out[i, 2] = math.nan
        out[i, 3] = npix
        out[i, 4] = flags


# ---------------------------------------------------------------------------------------
# pixel flags
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def _footprint_mask_bits(labels, mask, nlabels, bits, touches_edge, area):
    """OR of the mask bits over each footprint label; border contact; area. One pass."""
    ny, nx = labels.shape
    for lab in range(nlabels + 1):
        bits[lab] = 0
        touches_edge[lab] = False
        area[lab] = 0
    for y in range(ny):
        for x in range(nx):
            lab = labels[y, x]
            if lab <= 0 or lab > nlabels:
                continue
            bits[lab] |= mask[y, x]
            area[lab] += 1
            if y == 0 or x == 0 or y == ny - 1 or x == nx - 1:
                touches_edge[lab] = True


@njit(nogil=True, cache=True)
def _disk_mask_bits(mask, xs, ys, radius, center_radius, bits, center_bits, touches_edge):
    """OR of the mask bits within ``radius`` (footprint stand-in) and within the 3x3 centre."""
    ny, nx = mask.shape
    n = xs.shape[0]
    for i in range(n):
        bits[i] = 0
        center_bits[i] = 0
        touches_edge[i] = False
        x = xs[i]
        y = ys[i]
        if not (math.isfinite(x) and math.isfinite(y)):
            touches_edge[i] = True
            continue
        r = radius[i]
        ix = int(math.floor(x + 0.5))
        iy = int(math.floor(y + 0.5))
        if ix < 0 or ix >= nx or iy < 0 or iy >= ny:
            touches_edge[i] = True
        h = int(math.ceil(r))
        for yy in range(iy - h, iy + h + 1):
            for xx in range(ix - h, ix + h + 1):
                dx = xx - x
                dy = yy - y
                if dx * dx + dy * dy > r * r:
                    continue
                if yy < 0 or yy >= ny or xx < 0 or xx >= nx:
                    touches_edge[i] = True
                    continue
                if yy == 0 or xx == 0 or yy == ny - 1 or xx == nx - 1:
                    touches_edge[i] = True
                bits[i] |= mask[yy, xx]
        for yy in range(iy - center_radius, iy + center_radius + 1):
            for xx in range(ix - center_radius, ix + center_radius + 1):
                if 0 <= yy < ny and 0 <= xx < nx:
                    center_bits[i] |= mask[yy, xx]
