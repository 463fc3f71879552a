"""Compiled (numba) kernels of :mod:`lsstdrp.isr.calibs` (private).

Each kernel sees C-contiguous arrays of a fixed dtype and writes into preallocated
outputs; the validated wrappers live in the ``_*.py`` modules, and a plain-numpy
reference of each lives in ``tests/isr/calibs`` (the two must agree).
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Codes of the clipping centre and width passed to :func:`clip_combine`.
CENTER_CODES = {"median": 0, "mean": 1}
SCALE_CODES = {"std": 0, "mad": 1}
METHOD_CODES = {"mean": 0, "median": 1}


@numba.njit(cache=True, nogil=True)
def _sort_inplace(v, n):  # pragma: no cover - compiled
    """Insertion sort of ``v[:n]`` (n is a few tens: frames per pixel)."""
    for i in range(1, n):
        t = v[i]
        j = i - 1
        while j >= 0 and v[j] > t:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = t


@numba.njit(cache=True, nogil=True)
def _median_sorted(v, n):  # pragma: no cover - compiled
    h = n // 2
    if n % 2 == 1:
        return v[h]
    return 0.5 * (v[h - 1] + v[h])


@numba.njit(cache=True, nogil=True)
def clip_combine(stack, inv_scale, offset, method, center, scale, lo, hi, maxiters, min_keep,
                 out, var, nused):  # pragma: no cover - compiled
    """Sigma-clipped combination along axis 0 of ``stack`` (n, ny, nx) float32.

    Each value is ``stack[i] * inv_scale[i] - offset[i]`` (non-finite values skipped).
    Clipping iterates up to ``maxiters`` times: values outside
    ``[c - lo*s, c + hi*s]`` are rejected with ``c`` the median (center 0) or mean (1) and
    ``s`` the standard deviation (scale 0, ddof 0 as ``numpy.std``) or 1.4826 MAD (1) of the
    values kept so far; it stops when nothing changes or fewer than ``min_keep`` would
    remain. ``out`` gets the mean (method 0) or median (1) of the kept values, ``var``
    their variance divided by the number kept (the variance of the combined value; for
    the median times pi/2), ``nused`` the number kept. Pixels with no finite value get
    NaN and 0.
    """
    n, ny, nx = stack.shape
    vals = np.empty(n, dtype=np.float64)
    work = np.empty(n, dtype=np.float64)
    keep = np.empty(n, dtype=np.bool_)
    for y in range(ny):
        for x in range(nx):
            m = 0
            for i in range(n):
                v = stack[i, y, x]
                if math.isfinite(v):
                    vals[m] = v * inv_scale[i] - offset[i]
                    m += 1
            if m == 0:
                out[y, x] = np.nan
                var[y, x] = np.nan
                nused[y, x] = 0
                continue
            for i in range(m):
                keep[i] = True
            k = m
            for _ in range(maxiters):
                if k < 3:
                    break
                # centre and width of the kept values
                s1 = 0.0
                kk = 0
                for i in range(m):
                    if keep[i]:
                        work[kk] = vals[i]
                        s1 += vals[i]
                        kk += 1
                mean = s1 / kk
                if center == 0 or scale == 1:
                    _sort_inplace(work, kk)
                    med = _median_sorted(work, kk)
                else:
                    med = mean
                c = med if center == 0 else mean
                if scale == 0:
                    s2 = 0.0
                    for i in range(m):
                        if keep[i]:
                            d = vals[i] - mean
                            s2 += d * d
                    s = math.sqrt(s2 / kk)
                else:
                    for i in range(kk):
                        work[i] = abs(work[i] - med)
                    _sort_inplace(work, kk)
                    s = 1.482602218505602 * _median_sorted(work, kk)
                lo_v = c - lo * s
                hi_v = c + hi * s
                nk = 0
                for i in range(m):
                    if keep[i] and lo_v <= vals[i] <= hi_v:
                        nk += 1
                if nk == k or nk < min_keep:
                    break
                for i in range(m):
                    if keep[i] and not (lo_v <= vals[i] <= hi_v):
                        keep[i] = False
                k = nk
            s1 = 0.0
            kk = 0
            for i in range(m):
                if keep[i]:
                    work[kk] = vals[i]
                    s1 += vals[i]
                    kk += 1
            mean = s1 / kk
            s2 = 0.0
            for i in range(kk):
                d = work[i] - mean
                s2 += d * d
            v = s2 / (kk - 1) / kk if kk > 1 else np.nan
            if method == 0:
                out[y, x] = mean
                var[y, x] = v
            else:
                _sort_inplace(work, kk)
                out[y, x] = _median_sorted(work, kk)
                var[y, x] = v * (math.pi / 2.0)
            nused[y, x] = kk


@numba.njit(cache=True, nogil=True)
def clip_pair_difference(diff, valid, nsigma, grow):  # pragma: no cover - compiled
    """Flag ``valid[y, x] = False`` where ``|diff - median| > nsigma * sigma`` (sigma from
    the interquartile range of the valid pixels), grown by ``grow`` pixels; returns the
    number of pixels newly flagged."""
    ny, nx = diff.shape
    m = 0
    for y in range(ny):
        for x in range(nx):
            if valid[y, x]:
                m += 1
    if m < 8:
        return 0
    buf = np.empty(m, dtype=np.float64)
    k = 0
    for y in range(ny):
        for x in range(nx):
            if valid[y, x]:
                buf[k] = diff[y, x]
                k += 1
    buf.sort()
    med = buf[m // 2]
    sig = (buf[(3 * m) // 4] - buf[m // 4]) / 1.3489795003921634
    bad = np.zeros((ny, nx), dtype=np.bool_)
    for y in range(ny):
        for x in range(nx):
            if valid[y, x] and abs(diff[y, x] - med) > nsigma * sig:
                bad[y, x] = True
    n_new = 0
    for y in range(ny):
        for x in range(nx):
            if bad[y, x]:
                for yy in range(max(0, y - grow), min(ny, y + grow + 1)):
                    for xx in range(max(0, x - grow), min(nx, x + grow + 1)):
                        if valid[yy, xx]:
                            valid[yy, xx] = False
                            n_new += 1
    return n_new
