"""Compiled (numba) kernels of background estimation.

Private: the validated wrappers live in :mod:`lsstdrp.characterize._background`. Every
kernel here sees C-contiguous arrays of a fixed dtype and writes into preallocated
outputs; a plain-numpy reference of each one lives in
``tests/characterize/test_background.py``.

The SExtractor kernels reproduce the arithmetic of SExtractor 2.x / sep (Bertin &
Arnouts 1996; Barbary 2016) *including its float32 rounding*, so that the maps agree with
theirs to the last bit or two: quantities that SExtractor keeps in ``float`` are kept in
``numpy.float32`` here and every constant is cast explicitly (in numba, ``float32 op
float64`` and ``float32 op int`` promote to float64).
"""

from __future__ import annotations

import math

import numba
import numpy as np

F32 = np.float32

#: Histogram limits (in sigma) of the SExtractor mode estimator.
QUANTIF_NSIGMA = 5.0
#: Maximum number of histogram bins.
QUANTIF_NMAXLEVELS = 4096
#: Minimum number of "mode pixels" per bin (sets the bin width).
QUANTIF_AMIN = 4.0


# ---------------------------------------------------------------------------------------
# small helpers (hand-written instead of numba's generic sort/median: much faster to
# compile, and the arrays they see are short)
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _insertion_sort(v, n):  # pragma: no cover - compiled
    """Sort ``v[:n]`` in place (ascending)."""
    for i in range(1, n):
        x = v[i]
        j = i - 1
        while j >= 0 and v[j] > x:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = x


@numba.njit(cache=True, nogil=True)
def _select(v, n, k):  # pragma: no cover - compiled
    """The k-th smallest of ``v[:n]`` (0-based), by in-place quickselect."""
    lo = 0
    hi = n - 1
    while hi > lo:
        mid = (lo + hi) // 2
        # median of three as pivot
        a, b, c = v[lo], v[mid], v[hi]
        pivot = b if (a <= b <= c or c <= b <= a) else (a if (b <= a <= c or c <= a <= b) else c)
        i = lo
        j = hi
        while i <= j:
            while v[i] < pivot:
                i += 1
            while v[j] > pivot:
                j -= 1
            if i <= j:
                t = v[i]
                v[i] = v[j]
                v[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return v[k]
    return v[k]


@numba.njit(cache=True, nogil=True)
def _median(v, n):  # pragma: no cover - compiled
    """Median of ``v[:n]`` (mean of the two middle values if n is even); reorders v."""
    if n % 2:
        return _select(v, n, n // 2)
    a = _select(v, n, n // 2 - 1)
    b = _select(v, n, n // 2)
    return 0.5 * (a + b)


# ---------------------------------------------------------------------------------------
# mesh statistics
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _count_nonfinite(image):  # pragma: no cover - compiled
    """Number of NaN/inf pixels (no temporary array)."""
    n = 0
    h, w = image.shape
    for y in range(h):
        for x in range(w):
            v = image[y, x]
            if not (v - v == 0.0):
                n += 1
    return n


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def _sum_sq(image, bad, has_bad, y0, y1, x0, x1):  # pragma: no cover - compiled
    """Sum, sum of squares (float64) and count of the good pixels of a box.

    Loops use unsigned column indices (no negative-index wraparound test), which lets
    LLVM vectorise them.
    """
    s = 0.0
    s2 = 0.0
    n = 0
    ux0 = numba.uint64(x0)
    nx = numba.uint64(x1 - x0)
    for y in range(y0, y1):
        row = image[y]
        if has_bad:
            brow = bad[y]
            for k in range(nx):
                x = ux0 + k
                g = not brow[x]
                p = np.float64(row[x]) if g else 0.0
                s += p
                s2 += p * p
                n += 1 if g else 0
        else:
            for k in range(nx):
                p = np.float64(row[ux0 + k])
                s += p
                s2 += p * p
            n += x1 - x0
    return s, s2, n


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "nsz"})
def _sum_sq_clipped(image, bad, has_bad, y0, y1, x0, x1, lcut, hcut):  # pragma: no cover - compiled
    """Sum, sum of squares and count of the good pixels within [lcut, hcut]."""
    s = 0.0
    s2 = 0.0
    n = 0
    ux0 = numba.uint64(x0)
    nx = numba.uint64(x1 - x0)
    for y in range(y0, y1):
        row = image[y]
        if has_bad:
            brow = bad[y]
            for k in range(nx):
                x = ux0 + k
                v = row[x]
                g = (v <= hcut) & (v >= lcut) & (not brow[x])
                p = np.float64(v) if g else 0.0
                s += p
                s2 += p * p
                n += 1 if g else 0
        else:
            for k in range(nx):
                v = row[ux0 + k]
                g = (v <= hcut) & (v >= lcut)
                p = np.float64(v) if g else 0.0
                s += p
                s2 += p * p
                n += 1 if g else 0
    return s, s2, n


@numba.njit(cache=True, nogil=True)
def _fill_histogram(image, bad, has_bad, y0, y1, x0, x1, qscale, cste, nlevels, histo, bins):  # pragma: no cover
    """SExtractor's histogram: bin = int(pix / qscale + cste) (float32), kept if in range."""
    top = F32(nlevels)
    ux0 = numba.uint64(x0)
    nx = numba.uint64(x1 - x0)
    for y in range(y0, y1):
        row = image[y]
        for k in range(nx):  # vectorisable: the bin of every pixel of the row
            v = row[ux0 + k] / qscale + cste
            ok = v > F32(-1.0) and v < top
            bins[k] = np.int32(v) if ok else np.int32(-1)
        if has_bad:
            brow = bad[y]
            for k in range(nx):
                if brow[ux0 + k]:
                    bins[k] = -1
        for k in range(nx):
            b = bins[k]
            if b >= 0:
                histo[b] += 1


@numba.njit(cache=True, nogil=True)
def _histogram_walk(c0, lcut, hcut):  # pragma: no cover - compiled
    """SExtractor's median walk over bins [lcut, hcut] from prefix counts ``c0``.

    SExtractor alternately takes one bin from the low end (when the low sum is smaller
    than the high sum) or the high end until they meet. That is a merge of the two
    cumulative sequences ``X_i`` (low) and ``Y_j`` (high) taking X when ``X_i < Y_j``;
    the number of low bins taken is found by bisection. Returns the number of low bins
    taken (the walk ends with hilow = lcut + p and hihigh = lcut + p - 1).
    """
    n = hcut - lcut + 1
    if n <= 0:
        return 0
    base_lo = c0[lcut]
    top = c0[hcut + 1]
    lo_p = 0
    hi_p = n
    # largest p in [0, n] with p == 0 or X_{p-1} < Y_{n-p}
    while lo_p < hi_p:
        mid = (lo_p + hi_p + 1) // 2
        xv = c0[lcut + mid - 1] - base_lo
        yv = top - c0[hcut + 1 - (n - mid)]
        if xv < yv:
            lo_p = mid
        else:
            hi_p = mid - 1
    return lo_p


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sextractor_mesh(image, bad, has_bad, y0, y1, x0, x1, histo, c0, c1, c2, bins, min_good_fraction):  # pragma: no cover - compiled
    """SExtractor statistics of one mesh: (valid, mode, sigma) in float32.

    Clipped mean and sigma (one 2-sigma clip about the mean), a histogram of 2*5 sigma
    with bins of ~sigma*sqrt(2/pi)*5/4/n, then the iteratively 3-sigma clipped
    histogram mean and median; mode = 2.5 median - 1.5 mean when |mean - median| <
    0.3 sigma, else the median. The histogram sums are integers below 2**53, so the
    prefix sums used here equal SExtractor's running sums exactly.
    """
    s, s2, n = _sum_sq(image, bad, has_bad, y0, y1, x0, x1)
    area = (x1 - x0) * (y1 - y0)
    if F32(n) < F32(area * min_good_fraction) or n == 0:
        return False, F32(0.0), F32(0.0)
    mean = s / n
    var = s2 / n - mean * mean
    sig = math.sqrt(var) if var > 0.0 else 0.0
    lcut = F32(mean - 2.0 * sig)
    hcut = F32(mean + 2.0 * sig)
    s, s2, m = _sum_sq_clipped(image, bad, has_bad, y0, y1, x0, x1, lcut, hcut)
    if m > 0:  # m == 0 only for pathological rounding; keep the first-pass values then
        n = m
        mean = s / n
        var = s2 / n - mean * mean
        sig = math.sqrt(var) if var > 0.0 else 0.0
    bm_mean = F32(mean)
    step = math.sqrt(2.0 / math.pi) * QUANTIF_NSIGMA / QUANTIF_AMIN
    nlevels = int(step * n + 1.0)
    if nlevels > QUANTIF_NMAXLEVELS:
        nlevels = QUANTIF_NMAXLEVELS
    qscale = F32(2.0 * QUANTIF_NSIGMA * sig / nlevels) if sig > 0.0 else F32(1.0)
    qzero = F32(mean - QUANTIF_NSIGMA * sig)
    cste = F32(0.499999 - np.float64(qzero / qscale))
    for i in range(nlevels):
        histo[i] = 0
    _fill_histogram(image, bad, has_bad, y0, y1, x0, x1, qscale, cste, nlevels, histo, bins)
    c0[0] = 0
    c1[0] = 0
    c2[0] = 0
    for i in range(nlevels):
        hv = histo[i]
        c0[i + 1] = c0[i] + hv
        c1[i + 1] = c1[i] + hv * i
        c2[i + 1] = c2[i] + hv * i * i
    # iterative clipped histogram mean / median (SExtractor's backguess)
    nlm1 = nlevels - 1
    lo_cut = np.int64(0)  # np.int64, not a literal: one compiled signature of the callees
    hi_cut = nlm1
    sig = 10.0 * nlm1
    sig1 = 1.0
    mea = np.float64(bm_mean)
    med = mea
    it = 100
    while it > 0 and sig >= 0.1 and abs(sig / sig1 - 1.0) > 1e-4:
        it -= 1
        sig1 = sig
        if hi_cut >= lo_cut:
            total = c0[hi_cut + 1] - c0[lo_cut]
            mea = np.float64(c1[hi_cut + 1] - c1[lo_cut])
            sig = np.float64(c2[hi_cut + 1] - c2[lo_cut])
            p = _histogram_walk(c0, lo_cut, hi_cut)
            lo = lo_cut + p
            hi = lo - 1
            lowsum = c0[lo] - c0[lo_cut]
            highsum = c0[hi_cut + 1] - c0[lo]
        else:
            total = 0
            mea = 0.0
            sig = 0.0
            lo = lo_cut
            hi = hi_cut
            lowsum = 0
            highsum = 0
        if hi >= 0:
            a = histo[min(max(lo, 0), nlm1)]
            b = histo[min(hi, nlm1)]
            denom = 2.0 * (a if a > b else b)
            med = hi + 0.5 + (np.float64(highsum) - np.float64(lowsum)) / denom
        else:
            med = 0.0
        if total:
            mea /= total
            sig = sig / total - mea * mea
        sig = math.sqrt(sig) if sig > 0.0 else 0.0
        ftemp = med - 3.0 * sig
        lo_cut = int(ftemp + 0.5) if ftemp > 0.0 else 0
        ftemp = med + 3.0 * sig
        if ftemp < nlm1:
            lo_h = ftemp + 0.5 if ftemp > 0.0 else ftemp - 0.5
            hi_cut = int(lo_h)
        else:
            hi_cut = nlm1
    qz = np.float64(qzero)
    qs = np.float64(qscale)
    if abs(sig) > 0.0:
        if abs((mea - med) / sig) < 0.3:
            mode = qz + (2.5 * med - 1.5 * mea) * qs
        else:
            mode = qz + med * qs
    else:
        mode = qz + mea * qs
    return True, F32(mode), F32(sig * qs)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _mesh_stats_sextractor(image, bad, has_bad, bh, bw, min_good_fraction, back, sigma, valid):  # pragma: no cover
    """SExtractor mode and sigma of every mesh (see :func:`_sextractor_mesh`).

    ``bad`` is only read when ``has_bad`` (pass a 1x1 array otherwise).
    """
    h, w = image.shape
    ny, nx = back.shape
    histo = np.zeros(QUANTIF_NMAXLEVELS, dtype=np.int64)
    c0 = np.zeros(QUANTIF_NMAXLEVELS + 1, dtype=np.int64)
    c1 = np.zeros(QUANTIF_NMAXLEVELS + 1, dtype=np.int64)
    c2 = np.zeros(QUANTIF_NMAXLEVELS + 1, dtype=np.int64)
    bins = np.empty(bw, dtype=np.int32)
    for j in range(ny):
        y0 = j * bh
        y1 = min(y0 + bh, h)
        for i in range(nx):
            x0 = i * bw
            x1 = min(x0 + bw, w)
            ok, mode, sg = _sextractor_mesh(image, bad, has_bad, y0, y1, x0, x1, histo, c0, c1, c2, bins,
                                            min_good_fraction)
            valid[j, i] = ok
            back[j, i] = mode
            sigma[j, i] = sg


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _mesh_stats_clipped(image, bad, has_bad, bh, bw, min_good_fraction, kind, nsigma, n_iter, back, sigma, valid):  # pragma: no cover
    """Sigma-clipped statistics of every mesh.

    ``kind``: 0 mean, 1 median, 2 mode = 2.5 median - 1.5 mean. Clipping is about the
    median at ``nsigma`` times the standard deviation, for at most ``n_iter``
    iterations (stops when no pixel is rejected). ``sigma`` is the clipped standard
    deviation.
    """
    h, w = image.shape
    ny, nx = back.shape
    buf = np.empty(bh * bw, dtype=np.float64)
    work = np.empty(bh * bw, dtype=np.float64)
    for j in range(ny):
        y0 = j * bh
        y1 = min(y0 + bh, h)
        for i in range(nx):
            x0 = i * bw
            x1 = min(x0 + bw, w)
            n = np.int64(0)
            for y in range(y0, y1):
                for x in range(x0, x1):
                    if not (has_bad and bad[y, x]):
                        buf[n] = image[y, x]
                        n += 1
            area = (x1 - x0) * (y1 - y0)
            if n == 0 or F32(n) < F32(area * min_good_fraction):
                valid[j, i] = False
                back[j, i] = 0.0
                sigma[j, i] = 0.0
                continue
            med = 0.0
            mean = 0.0
            std = 0.0
            for it in range(n_iter + 1):
                for k in range(n):
                    work[k] = buf[k]
                med = _median(work, n)
                s = 0.0
                for k in range(n):
                    s += buf[k]
                mean = s / n
                s2 = 0.0
                for k in range(n):
                    d = buf[k] - mean
                    s2 += d * d
                std = math.sqrt(s2 / n)
                if it == n_iter or std == 0.0:
                    break
                lo = med - nsigma * std
                hi = med + nsigma * std
                m = 0
                for k in range(n):
                    if buf[k] >= lo and buf[k] <= hi:
                        buf[m] = buf[k]
                        m += 1
                if m == n or m == 0:
                    break
                n = m
            valid[j, i] = True
            if kind == 0:
                back[j, i] = mean
            elif kind == 1:
                back[j, i] = med
            else:
                back[j, i] = 2.5 * med - 1.5 * mean
            sigma[j, i] = std


# ---------------------------------------------------------------------------------------
# mesh filtering
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _median_f32(values, n):  # pragma: no cover - compiled
    """Median of ``values[:n]`` with SExtractor's float arithmetic (sorts in place)."""
    v = values
    _insertion_sort(v, n)
    if n < 2:
        return v[0]
    if n & 1:
        return v[n // 2]
    return F32((v[n // 2 - 1] + v[n // 2]) / F32(2.0))


@numba.njit(cache=True, nogil=True)
def _fill_bad_meshes(back, sigma, valid):  # pragma: no cover - compiled
    """Replace invalid meshes by the mean of the nearest valid ones (SExtractor rule).

    Works in place on ``back`` and ``sigma`` (float32); returns False if no mesh is valid.
    """
    ny, nx = back.shape
    any_valid = False
    for j in range(ny):
        for i in range(nx):
            if valid[j, i]:
                any_valid = True
    if not any_valid:
        return False
    out_b = np.empty((ny, nx), dtype=np.float32)
    for py in range(ny):
        for px in range(nx):
            out_b[py, px] = back[py, px]
    for py in range(ny):
        for px in range(nx):
            if valid[py, px]:
                continue
            d2min = F32(1e30)
            val = F32(0.0)
            sval = F32(0.0)
            nmin = 0
            for y in range(ny):
                for x in range(nx):
                    if not valid[y, x]:
                        continue
                    d2 = F32((x - px) * (x - px) + (y - py) * (y - py))
                    if d2 < d2min:
                        val = back[y, x]
                        sval = sigma[y, x]
                        nmin = 1
                        d2min = d2
                    elif d2 == d2min:
                        val = val + back[y, x]
                        sval = sval + sigma[y, x]
                        nmin += 1
            out_b[py, px] = val / F32(nmin)
            sigma[py, px] = sval / F32(nmin)
    for py in range(ny):
        for px in range(nx):
            back[py, px] = out_b[py, px]
    return True


@numba.njit(cache=True, nogil=True)
def _median_filter_meshes(back, sigma, fh, fw, fthresh, out_b, out_s):  # pragma: no cover
    """SExtractor's median filter of the mesh maps.

    The window is ``(2*(fh//2)+1) x (2*(fw//2)+1)`` meshes, shrunk *symmetrically* near
    the map edges (a corner mesh is filtered by a 1x1 window). A mesh is replaced by the
    window medians when ``|median - value| >= fthresh``.
    """
    ny, nx = back.shape
    npx = fw // 2
    npy = fh // 2
    bwin = np.empty((2 * npx + 1) * (2 * npy + 1), dtype=np.float32)
    swin = np.empty((2 * npx + 1) * (2 * npy + 1), dtype=np.float32)
    for py in range(ny):
        npy2 = min(npy, ny - 1 - py, py)
        for px in range(nx):
            npx2 = min(npx, nx - 1 - px, px)
            k = np.int64(0)
            for y in range(py - npy2, py + npy2 + 1):
                for x in range(px - npx2, px + npx2 + 1):
                    bwin[k] = back[y, x]
                    swin[k] = sigma[y, x]
                    k += 1
            med = _median_f32(bwin, k)
            if abs(med - back[py, px]) >= fthresh:
                out_b[py, px] = med
                out_s[py, px] = _median_f32(swin, k)
            else:
                out_b[py, px] = back[py, px]
                out_s[py, px] = sigma[py, px]


# ---------------------------------------------------------------------------------------
# SExtractor bicubic-spline interpolation
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _sextractor_spline_d2(values, out):  # pragma: no cover - compiled
    """Second-derivative coefficients along axis 0 of a node map, SExtractor's way.

    Natural boundary conditions (zero at both ends) and SExtractor's tridiagonal
    recurrence for unit node spacing, in float32. Note: SExtractor divides the
    back-substituted value by 6 at every step, including the one it feeds into the next
    step; this is reproduced, so the result is *not* exactly M/6 of a textbook natural
    spline for maps with more than three nodes along the axis.
    """
    n, m = values.shape
    u = np.empty(max(n - 1, 1), dtype=np.float32)
    for c in range(m):
        if n < 2:
            out[0, c] = F32(0.0)
            continue
        out[0, c] = F32(0.0)
        u[0] = F32(0.0)
        for k in range(1, n - 1):
            temp = F32(-1.0) / (out[k - 1, c] + F32(4.0))
            out[k, c] = temp
            lap = (values[k + 1, c] + values[k - 1, c]) - F32(2.0) * values[k, c]
            u[k] = temp * (u[k - 1] - F32(6.0) * lap)
        out[n - 1, c] = F32(0.0)
        for k in range(n - 2, 0, -1):
            out[k, c] = F32(np.float64(out[k, c] * out[k + 1, c] + u[k]) / 6.0)


@numba.njit(cache=True, nogil=True)
def _sextractor_spline_d2_row(node, out, u):  # pragma: no cover - compiled
    """Second-derivative coefficients of one node row (same recurrence as above)."""
    n = node.shape[0]
    out[0] = F32(0.0)
    if n < 2:
        return
    u[0] = F32(0.0)
    for k in range(1, n - 1):
        temp = F32(-1.0) / (out[k - 1] + F32(4.0))
        out[k] = temp
        lap = (node[k + 1] + node[k - 1]) - F32(2.0) * node[k]
        u[k] = temp * (u[k - 1] - F32(6.0) * lap)
    out[n - 1] = F32(0.0)
    for k in range(n - 2, 0, -1):
        out[k] = F32(np.float64(out[k] * out[k + 1] + u[k]) / 6.0)


@numba.njit(cache=True, nogil=True)
def _sextractor_x_weights(width, nbx, bw, seg, ca, cb, da, db):  # pragma: no cover - compiled
    """Per-column segment index and spline weights, with SExtractor's float32 stepping.

    For column ``x`` the value is ``ca*(blo + cb*dlo) + da*(bhi + db*dhi)`` with
    ``blo = node[seg]``, ``bhi = node[seg + 1]``: ``ca = 1 - dx``, ``cb = ca**2 - 1``,
    ``da = dx``, ``db = dx**2 - 1``, where ``dx`` is accumulated column by column in
    float32 exactly as SExtractor does.
    """
    xstep = F32(1.0 / bw)
    dx = (xstep - F32(1.0)) / F32(2.0)
    dx0 = F32((bw + 1) % 2) * xstep / F32(2.0)
    changepoint = bw // 2
    s = 0
    i = 0
    xm = 0
    for x in range(width):
        if i == changepoint and xm > 0 and xm < nbx - 1:
            s += 1
            dx = dx0
        cdx = F32(1.0) - dx
        seg[x] = s
        ca[x] = cdx
        cb[x] = cdx * cdx - F32(1.0)
        da[x] = dx
        db[x] = dx * dx - F32(1.0)
        if i == bw:
            xm += 1
            i = 0
        i += 1
        dx = dx + xstep


@numba.njit(cache=True, nogil=True)
def _sextractor_interpolate(back, dback, sigma, dsigma, bh, bw, out_b, out_s):  # pragma: no cover
    """Full-resolution background and rms maps by SExtractor's bicubic spline.

    Along y: the node columns' spline (``dback``/``dsigma`` from
    :func:`_sextractor_spline_d2`) evaluated at the row; along x: a natural spline
    through the interpolated node row. With a single node row the x interpolation is
    linear (SExtractor reuses the all-zero y coefficients), reproduced here.
    """
    h, w = out_b.shape
    nby, nbx = back.shape
    seg = np.empty(w, dtype=np.int64)
    ca = np.empty(w, dtype=np.float32)
    cb = np.empty(w, dtype=np.float32)
    da = np.empty(w, dtype=np.float32)
    db = np.empty(w, dtype=np.float32)
    nseg = 0
    seg_start = np.zeros(max(nbx, 1) + 1, dtype=np.int64)
    if nbx > 1:
        _sextractor_x_weights(w, nbx, bw, seg, ca, cb, da, db)
        # column runs of equal segment (segments are non-decreasing in x)
        seg_start[0] = 0
        for x in range(1, w):
            if seg[x] != seg[x - 1]:
                nseg += 1
                seg_start[nseg] = x
        nseg += 1
        seg_start[nseg] = w
    node_b = np.empty(nbx, dtype=np.float32)
    node_s = np.empty(nbx, dtype=np.float32)
    dnode_b = np.zeros(nbx, dtype=np.float32)
    dnode_s = np.zeros(nbx, dtype=np.float32)
    u = np.empty(nbx, dtype=np.float32)
    for y in range(h):
        if nby > 1:
            dy = F32(np.float64(F32(y) / F32(bh)) - 0.5)
            yl = int(dy)
            dy = dy - F32(yl)
            if yl < 0:
                yl = 0
                dy = F32(np.float64(dy) - 1.0)
            elif yl >= nby - 1:
                yl = nby - 2 if nby >= 2 else 0
                dy = F32(np.float64(dy) + 1.0)
            cdy = F32(1.0) - dy
            dy3 = dy * dy * dy - dy
            cdy3 = cdy * cdy * cdy - cdy
            for x in range(nbx):
                node_b[x] = cdy * back[yl, x] + dy * back[yl + 1, x] + cdy3 * dback[yl, x] + dy3 * dback[yl + 1, x]
                node_s[x] = cdy * sigma[yl, x] + dy * sigma[yl + 1, x] + cdy3 * dsigma[yl, x] + dy3 * dsigma[yl + 1, x]
            if nbx > 1:
                _sextractor_spline_d2_row(node_b, dnode_b, u)
                _sextractor_spline_d2_row(node_s, dnode_s, u)
        else:
            for x in range(nbx):
                node_b[x] = back[0, x]
                node_s[x] = sigma[0, x]
                dnode_b[x] = dback[0, x]
                dnode_s[x] = dsigma[0, x]
        if nbx > 1:
            for sg in range(nseg):  # one run of columns per node segment
                ua = numba.uint64(seg_start[sg])
                nrun = numba.uint64(seg_start[sg + 1] - seg_start[sg])
                b0 = node_b[sg]
                d0 = dnode_b[sg]
                b1 = node_b[sg + 1]
                d1 = dnode_b[sg + 1]
                for k in range(nrun):  # unsigned index: no wraparound test, vectorises
                    x = ua + k
                    out_b[y, x] = ca[x] * (b0 + cb[x] * d0) + da[x] * (b1 + db[x] * d1)
                b0 = node_s[sg]
                d0 = dnode_s[sg]
                b1 = node_s[sg + 1]
                d1 = dnode_s[sg + 1]
                for k in range(nrun):
                    x = ua + k
                    out_s[y, x] = ca[x] * (b0 + cb[x] * d0) + da[x] * (b1 + db[x] * d1)
        else:
            for x in range(w):
                out_b[y, x] = node_b[0]
                out_s[y, x] = node_s[0]


# ---------------------------------------------------------------------------------------
# Akima interpolation
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _akima_slopes(yv, delta, out):  # pragma: no cover - compiled
    """Akima (1970) node slopes of equally spaced values ``yv`` (spacing ``delta``).

    End secants are extended linearly (Akima's rule, as in
    :class:`scipy.interpolate.Akima1DInterpolator`); when both weights vanish the
    slope is the mean of the adjacent secants. Two nodes give the secant (linear).
    """
    n = yv.shape[0]
    if n == 1:
        out[0] = 0.0
        return
    if n == 2:
        m = (yv[1] - yv[0]) / delta
        out[0] = m
        out[1] = m
        return
    ext = np.empty(n + 3)  # m_{-2} .. m_{n}
    for i in range(n - 1):
        ext[i + 2] = (yv[i + 1] - yv[i]) / delta
    ext[1] = 2.0 * ext[2] - ext[3]
    ext[0] = 2.0 * ext[1] - ext[2]
    ext[n + 1] = 2.0 * ext[n] - ext[n - 1]
    ext[n + 2] = 2.0 * ext[n + 1] - ext[n]
    for k in range(n):
        m_km2 = ext[k]
        m_km1 = ext[k + 1]
        m_k = ext[k + 2]
        m_kp1 = ext[k + 3]
        w1 = abs(m_kp1 - m_k)
        w2 = abs(m_km1 - m_km2)
        if w1 + w2 > 1e-300 * (abs(m_k) + abs(m_km1) + 1e-300):
            out[k] = (w1 * m_km1 + w2 * m_k) / (w1 + w2)
        else:
            out[k] = 0.5 * (m_km1 + m_k)


@numba.njit(cache=True, nogil=True)
def _hermite_weights(npix, nnode, binw, seg, t):  # pragma: no cover - compiled
    """Segment index and fractional position of each pixel between mesh-centre nodes.

    Node ``k`` sits at pixel ``(k + 0.5) * binw - 0.5``; outside the outer nodes the end
    segment's cubic is extrapolated (``t`` < 0 or > 1).
    """
    for p in range(npix):
        u = (p + 0.5) / binw - 0.5
        k = int(math.floor(u))
        if k < 0:
            k = 0
        if k > nnode - 2:
            k = nnode - 2
        if k < 0:
            k = 0
        seg[p] = k
        t[p] = u - k


@numba.njit(cache=True, nogil=True)
def _akima_interpolate(values, bh, bw, out):  # pragma: no cover - compiled
    """Tensor-product Akima interpolation of a node map to the full-resolution grid."""
    h, w = out.shape
    ny, nx = values.shape
    # slopes along y for every node column (node spacing 1 in mesh units)
    ys = np.empty((ny, nx))
    col = np.empty(ny)
    scol = np.empty(ny)
    for c in range(nx):
        for k in range(ny):
            col[k] = values[k, c]
        _akima_slopes(col, 1.0, scol)
        for k in range(ny):
            ys[k, c] = scol[k]
    segy = np.zeros(h, dtype=np.int64)
    ty = np.zeros(h)
    if ny > 1:
        _hermite_weights(h, ny, np.float64(bh), segy, ty)
    segx = np.zeros(w, dtype=np.int64)
    tx = np.zeros(w)
    if nx > 1:
        _hermite_weights(w, nx, np.float64(bw), segx, tx)
    node = np.empty(nx)
    xs = np.empty(nx)
    for y in range(h):
        if ny > 1:
            k = segy[y]
            t = ty[y]
            t2 = t * t
            t3 = t2 * t
            h00 = 2.0 * t3 - 3.0 * t2 + 1.0
            h10 = t3 - 2.0 * t2 + t
            h01 = -2.0 * t3 + 3.0 * t2
            h11 = t3 - t2
            for c in range(nx):
                node[c] = h00 * values[k, c] + h10 * ys[k, c] + h01 * values[k + 1, c] + h11 * ys[k + 1, c]
        else:
            for c in range(nx):
                node[c] = values[0, c]
        if nx > 1:
            _akima_slopes(node, 1.0, xs)
            for x in range(w):
                k = segx[x]
                t = tx[x]
                t2 = t * t
                t3 = t2 * t
                out[y, x] = ((2.0 * t3 - 3.0 * t2 + 1.0) * node[k] + (t3 - 2.0 * t2 + t) * xs[k]
                             + (-2.0 * t3 + 3.0 * t2) * node[k + 1] + (t3 - t2) * xs[k + 1])
        else:
            for x in range(w):
                out[y, x] = node[0]
