"""Compiled (numba) kernels of instrument signature removal.

Private: the validated wrappers live in the ``_*.py`` modules of :mod:`lsstdrp.isr`.
Every kernel sees C-contiguous arrays of a fixed dtype (float64 images, uint8 flag
planes) and writes into preallocated outputs; a plain-numpy reference of each lives in
``tests/isr/test_kernels.py`` and the two must agree.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: The four directions of the cosmic-ray sharpness test: (dy, dx) of one neighbour;
#: the opposite neighbour is (-dy, -dx). Order: x (row), y (column), diagonal, anti-diagonal.
CR_DIRECTIONS = np.array([[0, 1], [1, 0], [1, 1], [1, -1]], dtype=np.int64)


# ---------------------------------------------------------------------------------------
# cosmic rays
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _cr_zmax(r, var, excl, y, x, rho, tol):  # pragma: no cover - compiled
    """Largest significance, over the four directions, that pixel (y, x) is sharper than the PSF.

    For a direction d with both neighbours a, b usable (inside the image and not
    excluded), ``z_d = (p r0 - m) / sqrt(p^2 v0 + v_m)`` with ``m = (r_a + r_b) / 2``,
    ``v_m = (v_a + v_b) / 4`` and ``p = (1 - tol) rho_d``; at the image edge, where one
    neighbour is outside, the other stands for both (``m = r_b``, ``v_m = v_b``). Returns
    -inf when no direction is usable.
    """
    ny, nx = r.shape
    r0 = r[y, x]
    v0 = var[y, x]
    best = -np.inf
    for d in range(4):
        dy = CR_DIRECTIONS[d, 0]
        dx = CR_DIRECTIONS[d, 1]
        ya = y - dy
        xa = x - dx
        yb = y + dy
        xb = x + dx
        ina = ya >= 0 and ya < ny and xa >= 0 and xa < nx
        inb = yb >= 0 and yb < ny and xb >= 0 and xb < nx
        if ina and inb:
            if excl[ya, xa] or excl[yb, xb]:
                continue
            m = 0.5 * (r[ya, xa] + r[yb, xb])
            vm = 0.25 * (var[ya, xa] + var[yb, xb])
        elif ina:  # at the image edge: the profile is reflected about the pixel
            if excl[ya, xa]:
                continue
            m = r[ya, xa]
            vm = var[ya, xa]
        elif inb:
            if excl[yb, xb]:
                continue
            m = r[yb, xb]
            vm = var[yb, xb]
        else:
            continue
        p = (1.0 - tol) * rho[d]
        den = p * p * v0 + vm
        if den <= 0.0:
            continue
        z = (p * r0 - m) / math.sqrt(den)
        if z > best:
            best = z
    return best


@numba.njit(cache=True, nogil=True)
def _grow_buffers(ys, xs, vals, n):  # pragma: no cover - compiled
    """Double the capacity of the (ys, xs, vals) buffers holding ``n`` entries."""
    cap = 2 * ys.size
    ny = np.empty(cap, np.int64)
    nx = np.empty(cap, np.int64)
    nv = np.empty((cap, vals.shape[1]), np.float64)
    ny[:n] = ys[:n]
    nx[:n] = xs[:n]
    nv[:n] = vals[:n]
    return ny, nx, nv


@numba.njit(cache=True, nogil=True)
def _cr_candidates(r, var, excl, flag, rho, tol, low, zlow):  # pragma: no cover - compiled
    """Pixels with significance ``s = r / sqrt(var) > low`` and sharpness ``z > zlow``.

    Excluded pixels and pixels with ``flag != 0`` are skipped. Returns ``(ys, xs, sz)``
    in scan order (row-major), ``sz[:, 0] = s`` and ``sz[:, 1] = z`` (see
    :func:`_cr_zmax`).
    """
    ny, nx = r.shape
    ys = np.empty(1024, np.int64)
    xs = np.empty(1024, np.int64)
    sz = np.empty((1024, 2), np.float64)
    n = 0
    lim2 = low * low
    for y in range(ny):
        for x in range(nx):
            r0 = r[y, x]
            if r0 <= 0.0 or excl[y, x] or flag[y, x]:
                continue
            v0 = var[y, x]
            if v0 <= 0.0 or r0 * r0 <= lim2 * v0:
                continue
            z = _cr_zmax(r, var, excl, y, x, rho, tol)
            if z <= zlow:
                continue
            if n == ys.size:
                ys, xs, sz = _grow_buffers(ys, xs, sz, n)
            ys[n] = y
            xs[n] = x
            sz[n, 0] = r0 / math.sqrt(v0)
            sz[n, 1] = z
            n += 1
    return ys[:n], xs[:n], sz[:n]


@numba.njit(cache=True, nogil=True)
def _cr_stats_at(r, var, excl, ys, xs, rho, tol, out):  # pragma: no cover - compiled
    """``out[k] = (s, z)`` of the listed pixels (``s = -inf`` where var <= 0)."""
    for k in range(ys.size):
        y = ys[k]
        x = xs[k]
        v0 = var[y, x]
        if v0 <= 0.0:
            out[k, 0] = -np.inf
            out[k, 1] = -np.inf
            continue
        out[k, 0] = r[y, x] / math.sqrt(v0)
        out[k, 1] = _cr_zmax(r, var, excl, y, x, rho, tol)


@numba.njit(cache=True, nogil=True)
def _local_median_at(r, excl, flag, ys, xs, half, out):  # pragma: no cover - compiled
    """``out[k]`` = median of the usable pixels (not excluded, flag 0) of the
    (2 half + 1)^2 box around each listed pixel (NaN when there is none)."""
    ny, nx = r.shape
    buf = np.empty((2 * half + 1) * (2 * half + 1))
    for k in range(ys.size):
        y = ys[k]
        x = xs[k]
        n = 0
        for yy in range(max(y - half, 0), min(y + half + 1, ny)):
            for xx in range(max(x - half, 0), min(x + half + 1, nx)):
                if not excl[yy, xx] and not flag[yy, xx]:
                    buf[n] = r[yy, xx]
                    n += 1
        if n == 0:
            out[k] = np.nan
            continue
        v = np.sort(buf[:n])
        out[k] = v[n // 2] if n % 2 == 1 else 0.5 * (v[n // 2 - 1] + v[n // 2])


@numba.njit(cache=True, nogil=True)
def _find_sorted(keys, key):  # pragma: no cover - compiled
    """Index of ``key`` in the sorted array ``keys``, or -1."""
    i = np.searchsorted(keys, key)
    if i < keys.size and keys[i] == key:
        return i
    return -1


@numba.njit(cache=True, nogil=True)
def _clusters(ys, xs, nx, score, strong):  # pragma: no cover - compiled
    """8-connected clusters of the listed pixels (given in scan order).

    Returns ``(label, sums, any_strong)``: the cluster index of every pixel, and per
    cluster the sum of ``score`` and whether any pixel has ``strong``.
    """
    n = ys.size
    keys = ys * nx + xs
    label = np.full(n, -1, np.int64)
    sums = np.empty(n, np.float64)
    anys = np.zeros(n, np.bool_)
    stack = np.empty(n, np.int64)
    nlab = 0
    for start in range(n):
        if label[start] >= 0:
            continue
        label[start] = nlab
        sums[nlab] = 0.0
        top = 0
        stack[top] = start
        top += 1
        while top > 0:
            top -= 1
            k = stack[top]
            sums[nlab] += score[k]
            if strong[k]:
                anys[nlab] = True
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if dy == 0 and dx == 0:
                        continue
                    yy = ys[k] + dy
                    xx = xs[k] + dx
                    if yy < 0 or xx < 0 or xx >= nx:
                        continue
                    j = _find_sorted(keys, yy * nx + xx)
                    if j >= 0 and label[j] < 0:
                        label[j] = nlab
                        stack[top] = j
                        top += 1
        nlab += 1
    return label, sums[:nlab], anys[:nlab]


@numba.njit(cache=True, nogil=True)
def _neighbours_at(ys, xs, excl, flag, value):  # pragma: no cover - compiled
    """The 8-neighbours of the listed pixels with ``flag == 0`` that are not excluded;
    each is set to ``flag = value`` and returned once, as ``(ys, xs)``."""
    ny, nx = flag.shape
    oy = np.empty(1024, np.int64)
    ox = np.empty(1024, np.int64)
    dummy = np.empty((1024, 1), np.float64)
    n = 0
    for k in range(ys.size):
        y = ys[k]
        x = xs[k]
        for yy in range(max(y - 1, 0), min(y + 2, ny)):
            for xx in range(max(x - 1, 0), min(x + 2, nx)):
                if flag[yy, xx] or excl[yy, xx]:
                    continue
                flag[yy, xx] = value
                if n == oy.size:
                    oy, ox, dummy = _grow_buffers(oy, ox, dummy, n)
                oy[n] = yy
                ox[n] = xx
                n += 1
    return oy[:n], ox[:n]


@numba.njit(cache=True, nogil=True)
def _dilate8(flag, excl, out):  # pragma: no cover - compiled
    """``out`` = ``flag`` dilated by one pixel (8-connected), never onto ``excl`` pixels."""
    ny, nx = flag.shape
    for y in range(ny):
        for x in range(nx):
            out[y, x] = flag[y, x]
    for y in range(ny):
        for x in range(nx):
            if not flag[y, x]:
                continue
            for yy in range(max(y - 1, 0), min(y + 2, ny)):
                for xx in range(max(x - 1, 0), min(x + 2, nx)):
                    if not excl[yy, xx]:
                        out[yy, xx] = 1


@numba.njit(cache=True, nogil=True)
def _snap_outliers(d, vd, excl, nsigma, out):  # pragma: no cover - compiled
    """``out`` = +1 where d > nsigma sqrt(vd), -1 where d < -nsigma sqrt(vd), else 0."""
    ny, nx = d.shape
    n = 0
    for y in range(ny):
        for x in range(nx):
            if excl[y, x]:
                continue
            v = vd[y, x]
            if v <= 0.0:
                continue
            dv = d[y, x]
            if dv * dv > nsigma * nsigma * v:
                out[y, x] = 1 if dv > 0.0 else -1
                n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _snap_grow(d, vd, excl, flag, nsigma, sign):  # pragma: no cover - compiled
    """Grow the pixels of ``flag == sign`` to 8-neighbours with sign*d > nsigma sqrt(vd).

    Connected growth (repeated until nothing changes). Returns the number added.
    """
    ny, nx = d.shape
    total = 0
    changed = True
    while changed:
        changed = False
        for y in range(ny):
            for x in range(nx):
                if flag[y, x] != sign:
                    continue
                for yy in range(max(y - 1, 0), min(y + 2, ny)):
                    for xx in range(max(x - 1, 0), min(x + 2, nx)):
                        if flag[yy, xx] != 0 or excl[yy, xx]:
                            continue
                        v = vd[yy, xx]
                        s = sign * d[yy, xx]
                        if v > 0.0 and s > 0.0 and s * s > nsigma * nsigma * v:
                            flag[yy, xx] = sign
                            total += 1
                            changed = True
    return total


# ---------------------------------------------------------------------------------------
# interpolation over masked pixels
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _interp_pixel(image, bad_a, bad_b, y, x, max_gap):  # pragma: no cover - compiled
    """Interpolated value at (y, x) from pixels good in both ``bad_a`` and ``bad_b``.

    Returns ``(value, ok)``; see :func:`_interpolate_masked` for the rule.
    """
    ny, nx = image.shape
    xl = -1
    for k in range(1, max_gap + 1):
        if x - k < 0:
            break
        if not bad_a[y, x - k] and not bad_b[y, x - k]:
            xl = x - k
            break
    xr = -1
    for k in range(1, max_gap + 1):
        if x + k >= nx:
            break
        if not bad_a[y, x + k] and not bad_b[y, x + k]:
            xr = x + k
            break
    yl = -1
    for k in range(1, max_gap + 1):
        if y - k < 0:
            break
        if not bad_a[y - k, x] and not bad_b[y - k, x]:
            yl = y - k
            break
    yr = -1
    for k in range(1, max_gap + 1):
        if y + k >= ny:
            break
        if not bad_a[y + k, x] and not bad_b[y + k, x]:
            yr = y + k
            break
    big = 1 << 30
    span_x = big
    est_x = 0.0
    if xl >= 0 and xr >= 0:
        span_x = xr - xl
        w = (x - xl) / span_x
        est_x = (1.0 - w) * image[y, xl] + w * image[y, xr]
    span_y = big
    est_y = 0.0
    if yl >= 0 and yr >= 0:
        span_y = yr - yl
        w = (y - yl) / span_y
        est_y = (1.0 - w) * image[yl, x] + w * image[yr, x]
    if span_x < big or span_y < big:
        if span_x < span_y:
            return est_x, True
        if span_y < span_x:
            return est_y, True
        return 0.5 * (est_x + est_y), True
    # one-sided (image edge): the nearest good pixel among the four
    best = big
    val = 0.0
    if xl >= 0 and x - xl < best:
        best = x - xl
        val = image[y, xl]
    if xr >= 0 and xr - x < best:
        best = xr - x
        val = image[y, xr]
    if yl >= 0 and y - yl < best:
        best = y - yl
        val = image[yl, x]
    if yr >= 0 and yr - y < best:
        best = yr - y
        val = image[yr, x]
    if best < big:
        return val, True
    return image[y, x], False


@numba.njit(cache=True, nogil=True)
def _interpolate_masked(image, bad, max_gap, out, status):  # pragma: no cover - compiled
    """Linear interpolation over ``bad`` pixels along the row or the column.

    For each bad pixel, the nearest good pixels to the left/right (along the row) and
    below/above (along the column) are found within ``max_gap`` pixels. The estimate
    along a direction with good pixels on both sides is the linear interpolation
    between them; the direction with the shorter span between its two good pixels is
    used, and the two are averaged when the spans are equal. A direction with a good
    pixel on one side only (an image edge) gives that pixel's value, used only when no
    two-sided direction exists. ``status`` is 1 where a value was interpolated, 2 where
    no good pixel was found (``out`` keeps the input value there).
    """
    ny, nx = image.shape
    for y in range(ny):
        for x in range(nx):
            out[y, x] = image[y, x]
    for y in range(ny):
        for x in range(nx):
            if not bad[y, x]:
                continue
            v, ok = _interp_pixel(image, bad, bad, y, x, max_gap)
            out[y, x] = v
            status[y, x] = 1 if ok else 2


@numba.njit(cache=True, nogil=True)
def _interpolate_at(image, bad_a, bad_b, ys, xs, max_gap, out, ok):  # pragma: no cover - compiled
    """:func:`_interp_pixel` at the listed pixels (bad = ``bad_a`` or ``bad_b``)."""
    for k in range(ys.size):
        v, good = _interp_pixel(image, bad_a, bad_b, ys[k], xs[k], max_gap)
        out[k] = v
        ok[k] = good


# ---------------------------------------------------------------------------------------
# saturation: bleed trails
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _bleed_columns(image, sat, threshold, out):  # pragma: no cover - compiled
    """Extend ``sat`` along columns while the pixel value is >= ``threshold``.

    ``out`` starts as a copy of ``sat``; from every saturated pixel the flag is carried
    up and down its column over contiguous pixels at or above ``threshold``. Returns
    the number of pixels added.
    """
    ny, nx = image.shape
    n = 0
    for y in range(ny):
        for x in range(nx):
            out[y, x] = sat[y, x]
    for x in range(nx):
        y = 0
        while y < ny:
            if not sat[y, x]:
                y += 1
                continue
            # a run of saturated pixels [y, y1)
            y1 = y
            while y1 < ny and sat[y1, x]:
                y1 += 1
            k = y - 1
            while k >= 0 and not out[k, x] and image[k, x] >= threshold:
                out[k, x] = 1
                n += 1
                k -= 1
            k = y1
            while k < ny and not sat[k, x] and image[k, x] >= threshold:
                out[k, x] = 1
                n += 1
                k += 1
            y = max(k, y1)
    return n


# ---------------------------------------------------------------------------------------
# brighter-fatter
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _bf_divergence(t, phi, out):  # pragma: no cover - compiled
    """``out`` = (1/2) div(t grad phi), conservative finite-volume form.

    The flux through the face between pixels p and q (4-neighbours) is
    ``(t_p + t_q)/2 * (phi_q - phi_p)``; ``out[p]`` is half the sum of the fluxes into p.
    No flux crosses the image boundary, so ``out.sum()`` is 0 to rounding.
    """
    ny, nx = t.shape
    for y in range(ny):
        for x in range(nx):
            out[y, x] = 0.0
    for y in range(ny):
        for x in range(nx - 1):
            f = 0.25 * (t[y, x] + t[y, x + 1]) * (phi[y, x + 1] - phi[y, x])
            out[y, x] += f
            out[y, x + 1] -= f
    for y in range(ny - 1):
        for x in range(nx):
            f = 0.25 * (t[y, x] + t[y + 1, x]) * (phi[y + 1, x] - phi[y, x])
            out[y, x] += f
            out[y + 1, x] -= f


@numba.njit(cache=True, nogil=True)
def _max_relative_change(new, old, obs):  # pragma: no cover - compiled
    """max over pixels of |new - old| / sqrt(max(|obs|, 1))."""
    ny, nx = new.shape
    best = 0.0
    for y in range(ny):
        for x in range(nx):
            d = abs(new[y, x] - old[y, x]) / math.sqrt(max(abs(obs[y, x]), 1.0))
            if d > best:
                best = d
    return best
