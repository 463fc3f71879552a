"""Compiled (numba) kernels of detection and SExtractor-compatible extraction.

Private: the validated wrappers live in :mod:`lsstdrp.detect._detect`. Kernels see
C-contiguous arrays of fixed dtypes; a plain-numpy reference of each lives in
``tests/detect/test_detect.py``.

The SExtractor kernels follow the algorithm of SExtractor 2.x / sep (Bertin & Arnouts
1996; Barbary 2016) and keep its float32 arithmetic where SExtractor keeps ``float``,
so that catalogues agree to rounding; they are an independent implementation (run-length
union-find labelling instead of Lutz's one-pass scan, with the object order and the
deblending tree rebuilt to match).
"""

from __future__ import annotations

import math

import numba
import numpy as np

F32 = np.float32

#: sep/SExtractor extraction flags (sep's bit values).
OBJ_MERGED = 1
OBJ_TRUNC = 2
OBJ_DOVERFLOW = 4
OBJ_SINGU = 8

#: Cleaning zone, in units of the sum of the two objects' semi-major axes.
CLEAN_ZONE = 10.0
#: Minimum area of a deblending branch (SExtractor MAXDEBAREA).
MAXDEBAREA = 3
#: Maximum number of branches per deblending level before giving up on the object.
NSONMAX = 1024


# ---------------------------------------------------------------------------------------
# filtering
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sep_convolve(image, kernel, out):  # pragma: no cover - compiled
    """Correlate ``image`` with ``kernel`` (float32), zero outside the image.

    ``out[y, x] = sum_ij kernel[i, j] * image[y + i - kh//2, x + j - kw//2]``,
    accumulated tap by tap in float32 in SExtractor's order.
    """
    h, w = image.shape
    kh, kw = kernel.shape
    kw2 = kw // 2
    for y in range(h):
        for x in range(w):
            out[y, x] = F32(0.0)
        y0 = y - kh // 2
        for cy in range(kh):
            yy = y0 + cy
            if yy < 0 or yy >= h:
                continue
            for cx in range(kw):
                k = kernel[cy, cx]
                d = cx - kw2
                if d >= 0:
                    for x in range(w - d):
                        out[y, x] += k * image[yy, x + d]
                else:
                    for x in range(-d, w):
                        out[y, x] += k * image[yy, x + d]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _sep_matched_filter(image, var, kernel, out):  # pragma: no cover - compiled
    """SExtractor/sep matched filter ``sum(k I / V) / sqrt(sum(k^2 / V))`` (float32).

    Pixels with zero variance are skipped; zero outside the image.
    """
    h, w = image.shape
    kh, kw = kernel.shape
    kw2 = kw // 2
    num = np.empty(w, dtype=np.float32)
    den = np.empty(w, dtype=np.float32)
    for y in range(h):
        for x in range(w):
            num[x] = F32(0.0)
            den[x] = F32(0.0)
        y0 = y - kh // 2
        for cy in range(kh):
            yy = y0 + cy
            if yy < 0 or yy >= h:
                continue
            for cx in range(kw):
                k = kernel[cy, cx]
                d = cx - kw2
                lo = -d if d < 0 else 0
                hi = w - d if d >= 0 else w
                for x in range(lo, hi):
                    v = var[yy, x + d]
                    if v != F32(0.0):
                        num[x] += k * image[yy, x + d] / v
                        den[x] += k * k / v
        for x in range(w):
            out[y, x] = F32(np.float64(num[x]) / math.sqrt(np.float64(den[x])))


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _correlate_separable(src, col, row, out, first):  # pragma: no cover - compiled
    """``out (+)= src`` correlated with the rank-1 kernel ``outer(col, row)``.

    Rows are correlated with ``row`` into a ring buffer of ``len(col)`` rows, then
    combined with ``col``; zero outside the image; float32. Every interior pixel sees
    the same sequence of operations (exact translation equivariance).
    """
    h, w = src.shape
    n = col.shape[0]
    r = n // 2
    m = row.shape[0]
    rr = m // 2
    ring = np.zeros((n, w), dtype=np.float32)
    acc = np.empty(w, dtype=np.float32)
    done = 0  # source rows correlated so far
    for y in range(h):
        last = min(y + r, h - 1)
        while done <= last:
            buf = ring[done % n]
            for x in range(w):
                buf[x] = F32(0.0)
            srow = src[done]
            for j in range(m):
                t = row[j]
                d = j - rr
                lo = -d if d < 0 else 0
                hi = w - d if d > 0 else w
                bv = buf[lo:hi]
                sv = srow[lo + d : hi + d]
                for k in range(hi - lo):
                    bv[k] += t * sv[k]
            done += 1
        for x in range(w):
            acc[x] = F32(0.0)
        i0 = max(0, r - y)
        i1 = min(n, h - y + r)
        for i in range(i0, i1):
            t = col[i]
            buf = ring[(y + i - r) % n]
            for x in range(w):
                acc[x] += t * buf[x]
        orow = out[y]
        if first:
            for x in range(w):
                orow[x] = acc[x]
        else:
            for x in range(w):
                orow[x] += acc[x]


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _significance(num, den, out):  # pragma: no cover - compiled
    """``out = num / sqrt(den)`` where ``den > 0``, else 0 (float32)."""
    h, w = num.shape
    for y in range(h):
        for x in range(w):
            d = den[y, x]
            out[y, x] = num[y, x] / math.sqrt(d) if d > F32(0.0) else F32(0.0)


@numba.njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _significance_table(num, table, cls_y, cls_x, out):  # pragma: no cover - compiled
    """``out = num / sqrt(table[cls_y[y], cls_x[x]])`` (0 where the table is <= 0)."""
    h, w = num.shape
    for y in range(h):
        row = table[cls_y[y]]
        for x in range(w):
            d = row[cls_x[x]]
            out[y, x] = num[y, x] / math.sqrt(d) if d > F32(0.0) else F32(0.0)


# ---------------------------------------------------------------------------------------
# connected components (8-connectivity) by run-length union-find
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _find(parent, i):  # pragma: no cover - compiled
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _runs(binary):  # pragma: no cover - compiled
    """Horizontal runs of True pixels: (y, x0, x1) arrays (x1 inclusive), raster order."""
    h, w = binary.shape
    n = 0
    for y in range(h):
        prev = False
        for x in range(w):
            b = binary[y, x]
            if b and not prev:
                n += 1
            prev = b
    ry = np.empty(n, dtype=np.int64)
    rx0 = np.empty(n, dtype=np.int64)
    rx1 = np.empty(n, dtype=np.int64)
    k = 0
    for y in range(h):
        x = 0
        while x < w:
            if binary[y, x]:
                x0 = x
                while x < w and binary[y, x]:
                    x += 1
                ry[k] = y
                rx0[k] = x0
                rx1[k] = x - 1
                k += 1
            else:
                x += 1
    return ry, rx0, rx1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _label_runs(ry, rx0, rx1):  # pragma: no cover - compiled
    """Component label (1..n, numbered in raster order of first pixel) of every run."""
    nr = ry.shape[0]
    parent = np.arange(nr)
    # two-pointer sweep between consecutive rows
    start_prev = 0
    end_prev = 0
    i = 0
    while i < nr:
        y = ry[i]
        j = i
        while j < nr and ry[j] == y:
            j += 1
        # runs of this row: [i, j); previous row's: [start_prev, end_prev) if it is y-1
        if end_prev > start_prev and ry[start_prev] == y - 1:
            p = start_prev
            for c in range(i, j):
                while p < end_prev and rx1[p] < rx0[c] - 1:
                    p += 1
                q = p
                while q < end_prev and rx0[q] <= rx1[c] + 1:
                    a = _find(parent, c)
                    b = _find(parent, q)
                    if a != b:
                        if a < b:
                            parent[b] = a
                        else:
                            parent[a] = b
                    q += 1
        start_prev = i
        end_prev = j
        i = j
    labels = np.empty(nr, dtype=np.int64)
    root_label = np.zeros(nr, dtype=np.int64)
    n = 0
    for r in range(nr):
        root = _find(parent, r)
        if root_label[root] == 0:
            n += 1
            root_label[root] = n
        labels[r] = root_label[root]
    return labels, n


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _paint_runs(ry, rx0, rx1, run_label, lab_map, out):  # pragma: no cover - compiled
    """``out[y, x0:x1+1] = lab_map[run_label]`` for every run (skips lab_map <= 0)."""
    for r in range(ry.shape[0]):
        v = lab_map[run_label[r]]
        if v > 0:
            for x in range(rx0[r], rx1[r] + 1):
                out[ry[r], x] = v


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _component_stats(ry, rx0, rx1, run_label, n):  # pragma: no cover - compiled
    """Per component: pixel count, last row, and the last pixel of that row.

    (ymax, xend) orders components as SExtractor's one-pass scan completes them.
    """
    count = np.zeros(n + 1, dtype=np.int64)
    ymax = np.empty(n + 1, dtype=np.int64)
    xend = np.empty(n + 1, dtype=np.int64)
    for k in range(n + 1):
        ymax[k] = -1
        xend[k] = -1
    for r in range(ry.shape[0]):
        lab = run_label[r]
        count[lab] += rx1[r] - rx0[r] + 1
        if ry[r] > ymax[lab] or (ry[r] == ymax[lab] and rx1[r] > xend[lab]):
            ymax[lab] = ry[r]
            xend[lab] = rx1[r]
    return count, ymax, xend


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather_pixels(ry, rx0, rx1, run_label, keep_index, offsets, py, px):  # pragma: no cover
    """Pixel coordinates grouped by kept component (``keep_index[label]`` >= 0), each
    component's pixels in raster order; ``offsets`` is the CSR start of each group."""
    fill = np.empty(offsets.shape[0] - 1, dtype=np.int64)
    for k in range(fill.shape[0]):
        fill[k] = offsets[k]
    for r in range(ry.shape[0]):
        k = keep_index[run_label[r]]
        if k < 0:
            continue
        y = ry[r]
        for x in range(rx0[r], rx1[r] + 1):
            p = fill[k]
            py[p] = y
            px[p] = x
            fill[k] = p + 1



# ---------------------------------------------------------------------------------------
# Lutz's one-pass connected-component scan (gives SExtractor's pixel and object order)
# ---------------------------------------------------------------------------------------

# marker codes left on a row for the next one
_M_NONE = 0
_M_START = 1  # first segment of an object on the row ("S")
_M_START2 = 2  # a further segment of an object already started on the row ("s")
_M_END_OPEN = 3  # end of a segment of an object still open on the row ("f")
_M_END = 4  # end of the last segment of an object on the row ("F")
# status of the previous row under the scan, and of the current pixel run
_COMPLETE = 0
_INCOMPLETE = 1
_NONOBJECT = 2
_OBJECT = 3
_UNKNOWN = -1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chain_append(nxt, dst_first, dst_last, dst_npix, dst_flag, d, src_first, src_last, src_npix, src_flag):  # pragma: no cover
    """Append chain (src_first..src_last) to context ``d`` of the dst arrays."""
    dst_npix[d] += src_npix
    dst_flag[d] |= src_flag
    if dst_first[d] == -1:
        dst_first[d] = src_first
        dst_last[d] = src_last
    elif src_last != -1:
        nxt[dst_last[d]] = src_first
        dst_last[d] = src_last


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lutz_row(ids, xoff, y, img_w, img_h, minarea, nxt, marker, st_first, st_last, st_npix, st_flag,
              c_first, c_last, c_npix, c_flag, c_start, c_end, pstack, state, e_head, e_npix, e_flag):  # pragma: no cover
    """Advance Lutz's (1980) scan by one row.

    ``ids[x]`` is the id of the pixel at region column x (-1: not part of any object;
    ``ids[-1]`` must be -1, the virtual column closing the row). Each object is a chain
    of pixel ids (``nxt``); the chain order and the order in which objects complete
    (are emitted into ``e_*``) are those of SExtractor. ``state`` holds (context stack
    top, status stack top, number emitted). Objects of fewer than ``minarea`` pixels are
    dropped when they complete.
    """
    wr = ids.shape[0] - 1
    co = state[0]
    pstop = state[1]
    ne = state[2]
    ps = _COMPLETE
    cs = _NONOBJECT
    trun = OBJ_TRUNC if (y == 0 or y == img_h - 1) else 0
    for x in range(wr + 1):
        mk = marker[x]
        marker[x] = _M_NONE
        pid = ids[x]
        inside = pid >= 0
        fl = 0
        if inside:
            fl = trun
            ax = x + xoff
            if ax == 0 or ax == img_w - 1:
                fl |= OBJ_TRUNC
            nxt[pid] = -1
            if cs != _OBJECT:  # a run starts here
                cs = _OBJECT
                if ps == _OBJECT:
                    if c_start[co] == _UNKNOWN:
                        marker[x] = _M_START
                        c_start[co] = x
                    else:
                        marker[x] = _M_START2
                else:
                    pstack[pstop] = ps
                    pstop += 1
                    marker[x] = _M_START
                    co += 1
                    c_start[co] = x
                    ps = _COMPLETE
                    c_first[co] = -1
                    c_last[co] = -1
                    c_npix[co] = 0
                    c_flag[co] = 0
        if mk != _M_NONE:  # what the row above left at this column
            if mk == _M_START:
                pstack[pstop] = ps
                pstop += 1
                if cs == _NONOBJECT:
                    pstack[pstop] = _COMPLETE
                    pstop += 1
                    co += 1
                    c_first[co] = st_first[x]
                    c_last[co] = st_last[x]
                    c_npix[co] = st_npix[x]
                    c_flag[co] = st_flag[x]
                    c_start[co] = _UNKNOWN
                else:
                    _chain_append(nxt, c_first, c_last, c_npix, c_flag, co,
                                  st_first[x], st_last[x], st_npix[x], st_flag[x])
                ps = _OBJECT
            elif mk == _M_START2:
                if cs == _OBJECT and ps == _COMPLETE:
                    pstop -= 1
                    x2 = c_start[co]
                    _chain_append(nxt, c_first, c_last, c_npix, c_flag, co - 1,
                                  c_first[co], c_last[co], c_npix[co], c_flag[co])
                    co -= 1
                    if c_start[co] == _UNKNOWN:
                        c_start[co] = x2
                    else:
                        marker[x2] = _M_START2
                ps = _OBJECT
            elif mk == _M_END_OPEN:
                ps = _INCOMPLETE
            else:  # _M_END
                pstop -= 1
                ps = pstack[pstop]
                if cs == _NONOBJECT and ps == _COMPLETE:
                    if c_start[co] == _UNKNOWN:  # nothing continues it: complete
                        if c_npix[co] >= minarea:
                            e_head[ne] = c_first[co]
                            e_npix[ne] = c_npix[co]
                            e_flag[ne] = c_flag[co]
                            ne += 1
                    else:
                        marker[c_end[co]] = _M_END
                        xs = c_start[co]
                        st_first[xs] = c_first[co]
                        st_last[xs] = c_last[co]
                        st_npix[xs] = c_npix[co]
                        st_flag[xs] = c_flag[co]
                    co -= 1
                    pstop -= 1
                    ps = pstack[pstop]
        if inside:
            _chain_append(nxt, c_first, c_last, c_npix, c_flag, co, pid, pid, np.int64(1), fl)
        elif cs == _OBJECT:  # the run ended at x - 1
            cs = _NONOBJECT
            if ps != _COMPLETE:
                marker[x] = _M_END_OPEN
                c_end[co] = x
            else:
                pstop -= 1
                ps = pstack[pstop]
                marker[x] = _M_END
                xs = c_start[co]
                st_first[xs] = c_first[co]
                st_last[xs] = c_last[co]
                st_npix[xs] = c_npix[co]
                st_flag[xs] = c_flag[co]
                co -= 1
    state[0] = co
    state[1] = pstop
    state[2] = ne


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lutz_state(width):  # pragma: no cover - compiled
    """Scratch arrays of a Lutz scan over regions up to ``width`` columns wide."""
    n = width + 2
    marker = np.zeros(n, dtype=np.int8)
    st = np.zeros((4, n), dtype=np.int64)
    ctx = np.zeros((6, n + 1), dtype=np.int64)
    pstack = np.zeros(2 * n + 2, dtype=np.int8)
    return marker, st, ctx, pstack


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lutz_image(det, minarea):  # pragma: no cover - compiled
    """Objects (8-connected groups of >= ``minarea`` True pixels) of a whole image.

    Returns (offsets, py, px, flags): objects in SExtractor's completion order, each
    one's pixels ``offsets[i]:offsets[i+1]`` in SExtractor's chain order, and the
    truncation flag of each object.
    """
    h, w = det.shape
    ntot = 0
    for y in range(h):
        for x in range(w):
            if det[y, x]:
                ntot += 1
    nxt = np.empty(max(ntot, 1), dtype=np.int64)
    ppy = np.empty(max(ntot, 1), dtype=np.int64)
    ppx = np.empty(max(ntot, 1), dtype=np.int64)
    marker, st, ctx, pstack = _lutz_state(w)
    nmax = ntot // max(minarea, 1) + 1
    e_head = np.empty(nmax, dtype=np.int64)
    e_npix = np.empty(nmax, dtype=np.int64)
    e_flag = np.empty(nmax, dtype=np.int64)
    state = np.zeros(3, dtype=np.int64)
    ids = np.empty(w + 1, dtype=np.int64)
    c = 0
    for y in range(h + 1):
        if y < h:
            for x in range(w):
                if det[y, x]:
                    ids[x] = c
                    ppy[c] = y
                    ppx[c] = x
                    c += 1
                else:
                    ids[x] = -1
        else:
            for x in range(ids.shape[0]):
                ids[x] = -1
        ids[w] = -1
        _lutz_row(ids, np.int64(0), y, w, h, minarea, nxt, marker, st[0], st[1], st[2], st[3],
                  ctx[0], ctx[1], ctx[2], ctx[3], ctx[4], ctx[5], pstack, state, e_head, e_npix, e_flag)
    ne = state[2]
    offsets = np.zeros(ne + 1, dtype=np.int64)
    for i in range(ne):
        offsets[i + 1] = offsets[i] + e_npix[i]
    py = np.empty(offsets[ne], dtype=np.int64)
    px = np.empty(offsets[ne], dtype=np.int64)
    for i in range(ne):
        k = offsets[i]
        p = e_head[i]
        while p >= 0:
            py[k] = ppy[p]
            px[k] = ppx[p]
            k += 1
            p = nxt[p]
    flags = np.empty(ne, dtype=np.int64)
    for i in range(ne):
        flags[i] = e_flag[i]
    return offsets, py, px, flags


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _lutz_local(grid, gw, elig, y0, y1, x0, x1, ybase, xbase, img_w, img_h, minarea, nxt,
                marker, st, ctx, pstack, e_head, e_npix, e_flag):  # pragma: no cover - compiled
    """Lutz scan of the eligible pixels of one object inside the local box
    ``[y0, y1] x [x0, x1]`` (inclusive); pixel ids are the object's local indices
    (``grid[y * gw + x]``, -1 outside the object). Returns the number of objects."""
    wr = x1 - x0 + 1
    ids = np.empty(wr + 1, dtype=np.int64)
    state = np.zeros(3, dtype=np.int64)
    for x in range(wr + 2):
        marker[x] = _M_NONE
    for yy in range(y0, y1 + 2):
        if yy <= y1:
            for x in range(wr):
                q = grid[yy * gw + x0 + x]
                ids[x] = q if (q >= 0 and elig[q]) else -1
        else:
            for x in range(ids.shape[0]):
                ids[x] = -1
        ids[wr] = -1
        _lutz_row(ids, x0 + xbase, yy + ybase, img_w, img_h, minarea, nxt, marker, st[0], st[1], st[2], st[3],
                  ctx[0], ctx[1], ctx[2], ctx[3], ctx[4], ctx[5], pstack, state, e_head, e_npix, e_flag)
    return state[2]

# ---------------------------------------------------------------------------------------
# object analysis (SExtractor preanalyse / analyse)
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _analyse(idx, py, px, val, cd, var, thresh, merged, xprev, yprev, gain, res):  # pragma: no cover
    """Isophotal measurements of the pixels ``idx`` (SExtractor's ``analyse``).

    ``res`` (float64, length 32) receives, by index: 0 fdnpix, 1 fdflux, 2 fdpeak,
    3 dpeak, 4 xpeak, 5 ypeak, 6 xcpeak, 7 ycpeak, 8 xmin, 9 xmax, 10 ymin, 11 ymax,
    12 dnpix, 13 dflux, 14 mx, 15 my, 16 mx2, 17 my2, 18 mxy, 19 errx2, 20 erry2,
    21 errxy, 22 a, 23 b, 24 theta, 25 cxx, 26 cyy, 27 cxy, 28 abcor, 29 singular flag.
    With ``merged`` the second moments are taken about ``(xprev, yprev)``, which is
    also returned as the position (SExtractor's rule for deblended children).
    """
    n = idx.shape[0]
    peak = F32(-1e30)
    cpeak = F32(-1e30)
    rv = 0.0
    xmin = 1 << 40
    ymin = 1 << 40
    xmax = -1
    ymax = -1
    xpk = 0
    ypk = 0
    xcpk = 0
    ycpk = 0
    for k in range(n):
        i = idx[k]
        v = val[i]
        c = cd[i]
        if peak < v:
            peak = v
            xpk = px[i]
            ypk = py[i]
        if cpeak < c:
            cpeak = c
            xcpk = px[i]
            ycpk = py[i]
        rv += np.float64(c)
        xmin = min(xmin, px[i])
        xmax = max(xmax, px[i])
        ymin = min(ymin, py[i])
        ymax = max(ymax, py[i])
    fdflux = F32(rv)
    th = np.float64(thresh)
    rvd = np.float64(fdflux)
    rv2 = rvd * rvd
    thresh2 = (th + np.float64(peak)) / 2.0
    dnpix = 0
    area2 = 0
    tv = 0.0
    mx = 0.0
    my = 0.0
    mx2 = 0.0
    my2 = 0.0
    mxy = 0.0
    for k in range(n):
        i = idx[k]
        fx = F32(px[i] - xmin)
        fy = F32(py[i] - ymin)
        c = cd[i]
        v = val[i]
        tv += np.float64(v)
        if v > th:
            dnpix += 1
        if v > thresh2:
            area2 += 1
        cx = c * fx
        cy = c * fy
        mx += np.float64(cx)
        my += np.float64(cy)
        mx2 += np.float64(cx * fx)
        my2 += np.float64(cy * fy)
        mxy += np.float64(cx * fy)
    xm = mx / rvd
    ym = my / rvd
    if merged:
        xn = xprev - xmin
        yn = yprev - ymin
        xm2 = mx2 / rvd + xn * xn - 2.0 * xm * xn
        ym2 = my2 / rvd + yn * yn - 2.0 * ym * yn
        xym = mxy / rvd + xn * yn - xm * yn - xn * ym
        xm = xn
        ym = yn
    else:
        xm2 = mx2 / rvd - xm * xm
        ym2 = my2 / rvd - ym * ym
        xym = mxy / rvd - xm * ym
    cvarsum = 0.0
    errx2 = 0.0
    erry2 = 0.0
    errxy = 0.0
    for k in range(n):
        i = idx[k]
        cvar = np.float64(var[i])
        if gain > 0.0:
            c = np.float64(cd[i])
            if c > 0.0:
                cvar += c / gain
        dx = np.float64(px[i] - xmin) - xm
        dy = np.float64(py[i] - ymin) - ym
        cvarsum += cvar
        errx2 += cvar * dx * dx
        erry2 += cvar * dy * dy
        errxy += cvar * dx * dy
    errx2 /= rv2
    erry2 /= rv2
    errxy /= rv2
    singu = 0.0
    temp2 = xm2 * ym2 - xym * xym
    if temp2 < 0.00694:
        xm2 += 0.0833333
        ym2 += 0.0833333
        temp2 = xm2 * ym2 - xym * xym
        singu = 1.0
        cvarsum *= 0.08333 / rv2
        if errx2 * erry2 - errxy * errxy < cvarsum * cvarsum:
            errx2 += cvarsum
            erry2 += cvarsum
    temp = xm2 - ym2
    if abs(temp) > 0.0:
        theta = math.atan2(2.0 * xym, temp) / 2.0
    else:
        theta = math.pi / 4.0
    temp = math.sqrt(0.25 * temp * temp + xym * xym)
    pmx2 = 0.5 * (xm2 + ym2) + temp
    pmy2 = 0.5 * (xm2 + ym2) - temp
    a = F32(math.sqrt(pmx2)) if pmx2 > 0 else F32(0.0)
    b = F32(math.sqrt(pmy2)) if pmy2 > 0 else F32(0.0)
    darea = np.float64(area2) - dnpix
    t1t2 = th / thresh2 if thresh2 != 0.0 else 0.0
    if t1t2 > 0.0:
        lg = math.log(t1t2 if t1t2 < 1.0 else 0.99)
        abcor = F32((darea if darea < 0.0 else -1.0) / (2.0 * math.pi * lg * np.float64(a) * np.float64(b)))
        if abcor > F32(1.0):
            abcor = F32(1.0)
    else:
        abcor = F32(1.0)
    res[0] = n
    res[1] = fdflux
    res[2] = cpeak
    res[3] = peak
    res[4] = xpk
    res[5] = ypk
    res[6] = xcpk
    res[7] = ycpk
    res[8] = xmin
    res[9] = xmax
    res[10] = ymin
    res[11] = ymax
    res[12] = dnpix
    res[13] = F32(tv)
    res[14] = xm + xmin
    res[15] = ym + ymin
    res[16] = xm2
    res[17] = ym2
    res[18] = xym
    res[19] = errx2
    res[20] = erry2
    res[21] = errxy
    res[22] = a
    res[23] = b
    res[24] = F32(theta)
    res[25] = F32(ym2 / temp2)
    res[26] = F32(xm2 / temp2)
    res[27] = F32(-2.0 * xym / temp2)
    res[28] = abcor
    res[29] = singu


# ---------------------------------------------------------------------------------------
# multi-threshold deblending (SExtractor's tree), deterministic pixel attribution
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _deblend_object(py, px, val, cd, start, stop, thresh0, nthresh, mincont, minarea, w, h, assign, rank, core, out_flag, out_thr):  # pragma: no cover
    """SExtractor's multi-threshold deblending of one object (pixels ``start:stop``,
    in SExtractor's chain order).

    Builds the tree of 8-connected branches above ``nthresh - 1`` thresholds spaced
    exponentially between ``thresh0`` and the object's filtered peak (a branch needs
    ``min(minarea, 3)`` pixels), keeps a split where at least two branches each hold
    more than ``mincont`` of the object's filtered flux above their own threshold, and
    returns the selected branches as the output objects. Their cores get ``assign``
    (output index), ``rank`` (position in the output's pixel list, in SExtractor's
    order) and ``core``; the other pixels are attributed by :func:`_gatherup`.
    Returns the number of outputs (1: not split) or -1 when a level holds
    :data:`NSONMAX` branches or more (the object is then kept whole).
    """
    npx = stop - start
    for k in range(npx):
        assign[k] = 0
        rank[k] = k
        core[k] = True
    out_flag[0] = 0
    out_thr[0] = thresh0
    if nthresh < 2 or npx < 2:
        return 1
    xmin = px[start]
    xmax = px[start]
    ymin = py[start]
    ymax = py[start]
    fdpeak = F32(-1e30)
    rv = 0.0
    for k in range(npx):
        i = start + k
        xmin = min(xmin, px[i])
        xmax = max(xmax, px[i])
        ymin = min(ymin, py[i])
        ymax = max(ymax, py[i])
        if fdpeak < cd[i]:
            fdpeak = cd[i]
        rv += np.float64(cd[i])
    value0 = np.float64(F32(rv)) * mincont
    gw = xmax - xmin + 1
    gh = ymax - ymin + 1
    grid = np.empty(gh * gw, dtype=np.int64)
    for k in range(gh * gw):
        grid[k] = -1
    for k in range(npx):
        grid[(py[start + k] - ymin) * gw + (px[start + k] - xmin)] = k
    marker, st, ctx, pstack = _lutz_state(gw)
    nxt = np.empty(npx, dtype=np.int64)
    e_head = np.empty(npx + 1, dtype=np.int64)
    e_npix = np.empty(npx + 1, dtype=np.int64)
    e_flag = np.empty(npx + 1, dtype=np.int64)
    elig = np.empty(npx, dtype=np.bool_)
    deb_min = min(minarea, MAXDEBAREA)
    cap = 64
    node_parent = np.empty(cap, dtype=np.int64)
    node_level = np.empty(cap, dtype=np.int64)
    node_flux = np.empty(cap, dtype=np.float32)
    node_npix = np.empty(cap, dtype=np.int64)
    node_thr = np.empty(cap, dtype=np.float32)
    node_ok = np.empty(cap, dtype=np.bool_)
    node_head = np.empty(cap, dtype=np.int64)
    node_box = np.empty((cap, 4), dtype=np.int64)  # y0, y1, x0, x1 (local, inclusive)
    node_parent[0] = -1
    node_level[0] = 0
    node_flux[0] = F32(rv)
    node_npix[0] = npx
    node_thr[0] = thresh0
    node_ok[0] = True
    node_head[0] = 0
    node_box[0, 0] = 0
    node_box[0, 1] = gh - 1
    node_box[0, 2] = 0
    node_box[0, 3] = gw - 1
    nn = 1
    member_prev = np.zeros(npx, dtype=np.int64)
    member_cur = np.empty(npx, dtype=np.int64)
    deepest = np.zeros(npx, dtype=np.int64)
    level_first = np.zeros(nthresh + 1, dtype=np.int64)
    level_first[1] = 1
    t0 = np.float64(thresh0)
    for lev in range(1, nthresh):
        if fdpeak > 0.0:
            thr = F32(t0 * math.pow(np.float64(fdpeak) / t0, np.float64(lev) / nthresh))
        else:
            thr = thresh0
        if level_first[lev] - level_first[lev - 1] >= NSONMAX:
            return -1
        for k in range(npx):
            member_cur[k] = -1
            elig[k] = member_prev[k] >= 0 and cd[start + k] > thr
        for i in range(level_first[lev - 1], level_first[lev]):
            ne = _lutz_local(grid, gw, elig, node_box[i, 0], node_box[i, 1], node_box[i, 2], node_box[i, 3],
                             ymin, xmin, w, h, deb_min, nxt, marker, st, ctx, pstack, e_head, e_npix, e_flag)
            for e in range(ne):
                head = e_head[e]
                if member_prev[head] != i:  # a piece of another branch inside this box
                    continue
                if nn >= cap:
                    cap *= 2
                    node_parent = _grow_i(node_parent, cap)
                    node_level = _grow_i(node_level, cap)
                    node_flux = _grow_f(node_flux, cap)
                    node_npix = _grow_i(node_npix, cap)
                    node_thr = _grow_f(node_thr, cap)
                    node_ok = _grow_b(node_ok, cap)
                    node_head = _grow_i(node_head, cap)
                    nb = np.empty((cap, 4), dtype=np.int64)
                    for q in range(nn):
                        for c in range(4):
                            nb[q, c] = node_box[q, c]
                    node_box = nb
                fl = 0.0
                by0 = gh
                by1 = -1
                bx0 = gw
                bx1 = -1
                q = head
                while q >= 0:
                    fl += np.float64(cd[start + q])
                    yy = py[start + q] - ymin
                    xx = px[start + q] - xmin
                    by0 = min(by0, yy)
                    by1 = max(by1, yy)
                    bx0 = min(bx0, xx)
                    bx1 = max(bx1, xx)
                    member_cur[q] = nn
                    deepest[q] = nn
                    q = nxt[q]
                node_parent[nn] = i
                node_level[nn] = lev
                node_flux[nn] = F32(fl)
                node_npix[nn] = e_npix[e]
                node_thr[nn] = thr
                node_ok[nn] = True
                node_head[nn] = head
                node_box[nn, 0] = by0
                node_box[nn, 1] = by1
                node_box[nn, 2] = bx0
                node_box[nn, 3] = bx1
                nn += 1
        level_first[lev + 1] = nn
        for k in range(npx):
            member_prev[k] = member_cur[k]
        if nn == level_first[lev]:
            for rest in range(lev + 2, nthresh + 1):
                level_first[rest] = nn
            break
    # prune top-down: a node splits when >= 2 of its children are significant
    selected = np.empty(nn, dtype=np.int64)
    nsel = 0
    for lev in range(nthresh - 2, -1, -1):
        for i in range(level_first[lev], level_first[lev + 1]):
            m = 0
            for j in range(level_first[lev + 1], level_first[lev + 2]):
                if node_parent[j] != i:
                    continue
                if node_flux[j] - node_thr[j] * F32(node_npix[j]) > value0:
                    m += 1
                node_ok[i] = node_ok[i] and node_ok[j]
            if m > 1:
                for j in range(level_first[lev + 1], level_first[lev + 2]):
                    if node_parent[j] != i:
                        continue
                    if node_ok[j] and node_flux[j] - node_thr[j] * F32(node_npix[j]) > value0:
                        selected[nsel] = j
                        nsel += 1
                node_ok[i] = False
    if node_ok[0] or nsel == 0:
        return 1
    # the selected branches' pixel chains, rebuilt by the scan that found them
    for k in range(npx):
        assign[k] = -1
        rank[k] = -1
        core[k] = False
    for s in range(nsel):
        j = selected[s]
        lev = node_level[j]
        p = node_parent[j]
        for k in range(npx):
            node = deepest[k]
            while node_level[node] > lev - 1:
                node = node_parent[node]
            elig[k] = node_level[node] == lev - 1 and cd[start + k] > node_thr[j]
        ne = _lutz_local(grid, gw, elig, node_box[p, 0], node_box[p, 1], node_box[p, 2], node_box[p, 3],
                         ymin, xmin, w, h, deb_min, nxt, marker, st, ctx, pstack, e_head, e_npix, e_flag)
        for e in range(ne):
            if e_head[e] != node_head[j]:
                continue
            q = e_head[e]
            r = 0
            while q >= 0:
                assign[q] = s
                rank[q] = r
                core[q] = True
                r += 1
                q = nxt[q]
            out_flag[s] = OBJ_MERGED | e_flag[e]
        out_thr[s] = node_thr[j]
    return nsel


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grow_i(a, cap):  # pragma: no cover - compiled
    """A copy of ``a`` in a new array of length ``cap`` (explicit loop: cheap to compile)."""
    out = np.empty(cap, dtype=a.dtype)
    for i in range(a.shape[0]):
        out[i] = a[i]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grow_f(a, cap):  # pragma: no cover - compiled
    """A copy of ``a`` in a new array of length ``cap`` (explicit loop: cheap to compile)."""
    out = np.empty(cap, dtype=a.dtype)
    for i in range(a.shape[0]):
        out[i] = a[i]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grow_b(a, cap):  # pragma: no cover - compiled
    """A copy of ``a`` in a new array of length ``cap`` (explicit loop: cheap to compile)."""
    out = np.empty(cap, dtype=a.dtype)
    for i in range(a.shape[0]):
        out[i] = a[i]
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gatherup(py, px, val, cd, var, start, stop, nsel, thresh0, assign, rank, core, out_thr, gain):  # pragma: no cover
    """Attribute the non-core pixels of a split object to its most probable branch.

    Each branch is analysed on its core (threshold = its level); pixel p goes to the
    branch maximising ``amp * exp(-d)``, ``d = 0.5 (cxx dx^2 + cyy dy^2 + cxy dx dy) /
    abcor``, ``amp = thresh0 * exp(npix / (2 pi abcor a b))`` capped at 4 x the
    branch's filtered peak (SExtractor's model); the closest branch when all vanish.
    Returns the branches' core barycentres (x, y), used as their positions.
    """
    npx = stop - start
    res = np.empty(32)
    amp = np.empty(nsel, dtype=np.float32)
    bx = np.empty(nsel)
    by = np.empty(nsel)
    cxx = np.empty(nsel, dtype=np.float32)
    cyy = np.empty(nsel, dtype=np.float32)
    cxy = np.empty(nsel, dtype=np.float32)
    abc = np.empty(nsel, dtype=np.float32)
    ncore = np.zeros(nsel, dtype=np.int64)
    for k in range(npx):
        if assign[k] >= 0:
            ncore[assign[k]] += 1
    for s in range(nsel):
        m = ncore[s]
        idx = np.empty(m, dtype=np.int64)
        for k in range(npx):
            if assign[k] == s:
                idx[rank[k]] = start + k
        # (a runtime bool, not the literal False: one compiled signature of _analyse)
        _analyse(idx, py, px, val, cd, var, out_thr[s], m < 0, 0.0, 0.0, 0.0, res)
        bx[s] = res[14]
        by[s] = res[15]
        cxx[s] = F32(res[25])
        cyy[s] = F32(res[26])
        cxy[s] = F32(res[27])
        abc[s] = F32(res[28])
        a = res[22]
        b = res[23]
        fdpeak = F32(res[2])
        dist = F32(np.float64(m) / (2.0 * math.pi * np.float64(abc[s]) * a * b))
        if dist < F32(70.0):
            amp[s] = F32(np.float64(thresh0) * math.exp(np.float64(dist)))
        else:
            amp[s] = F32(4.0 * np.float64(fdpeak))
        if np.float64(amp[s]) > 4.0 * np.float64(fdpeak):
            amp[s] = F32(4.0 * np.float64(fdpeak))
    for k in range(npx):
        if core[k]:
            continue
        i = start + k
        best = -1
        bestp = -1.0
        dmin = F32(1e31)
        iclst = 0
        for s in range(nsel):
            dx = F32(np.float64(px[i]) - bx[s])
            dy = F32(np.float64(py[i]) - by[s])
            dist = F32(0.5 * np.float64(cxx[s] * dx * dx + cyy[s] * dy * dy + cxy[s] * dx * dy) / np.float64(abc[s]))
            p = np.float64(amp[s]) * math.exp(-np.float64(dist)) if dist < F32(70.0) else 0.0
            if p > bestp:
                bestp = p
                best = s
            if dist < dmin:
                dmin = dist
                iclst = s
        s = best if bestp > 1e-31 else iclst
        assign[k] = s
        rank[k] = ncore[s]
        ncore[s] += 1
    return bx, by


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _mthresh(idx, cd, thr, minarea):  # pragma: no cover - compiled
    """CLEAN's reference level of an object: SExtractor's heap over ``cd - thr``.

    Intended as the ``minarea``-th largest value of the pixels ``idx`` (in
    SExtractor's pixel order). SExtractor's heap, reproduced here, differs in three
    ways: it ignores the ``minarea + 1``-th pixel of the list, returns the first
    pixel's value when the object has exactly ``minarea`` pixels, and its sift-down
    continues from the node after the one it swapped. 0 for fewer pixels.
    """
    n = idx.shape[0]
    if n < minarea or minarea < 1:
        return F32(0.0)
    heap = np.empty(minarea, dtype=np.float32)
    for k in range(minarea):
        heap[k] = cd[idx[k]] - thr[idx[k]]
    if n == minarea:
        return heap[0]
    for i in range(1, minarea):  # insertion sort of the (short) heap
        x = heap[i]
        j = i - 1
        while j >= 0 and heap[j] > x:
            heap[j + 1] = heap[j]
            j -= 1
        heap[j + 1] = x
    for k in range(minarea + 1, n):
        v = cd[idx[k]] - thr[idx[k]]
        if v > heap[0]:
            heap[0] = v
            j = 0
            while True:
                kk = 2 * (j + 1)
                if kk > minarea:
                    break
                c = kk - 1
                if kk != minarea and heap[kk - 1] > heap[kk]:
                    c = kk
                if heap[j] <= heap[c]:
                    break
                tmp = heap[c]
                heap[c] = heap[j]
                heap[j] = tmp
                j = c + 1
    return heap[0]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _extract_objects(py, px, val, cd, var, thr, offsets, thresh_obj, nthresh, mincont, minarea, gain, w, h, edge_flag):  # pragma: no cover
    """Deblend and analyse every detected object (CSR groups of pixels).

    Returns (results (n, 32) float64, flags int64, thresh float32, mthresh float32,
    owner int64 (index of the detection each output object came from), and for every
    pixel the output object it belongs to).
    """
    nobj = offsets.shape[0] - 1
    cap = nobj + 16
    results = np.empty((cap, 32))
    flags = np.empty(cap, dtype=np.int64)
    othr = np.empty(cap, dtype=np.float32)
    omth = np.empty(cap, dtype=np.float32)
    owner = np.empty(cap, dtype=np.int64)
    pix_out = np.empty(py.shape[0], dtype=np.int64)
    res = np.empty(32)
    maxn = 1
    for o in range(nobj):
        maxn = max(maxn, offsets[o + 1] - offsets[o])
    assign = np.empty(maxn, dtype=np.int64)
    rank = np.empty(maxn, dtype=np.int64)
    core = np.empty(maxn, dtype=np.bool_)
    out_flag = np.empty(maxn + 1, dtype=np.int64)
    out_thr = np.empty(maxn + 1, dtype=np.float32)
    nout = 0
    for o in range(nobj):
        start = offsets[o]
        stop = offsets[o + 1]
        npx = stop - start
        t0 = thresh_obj[o]
        nsel = _deblend_object(py, px, val, cd, start, stop, t0, nthresh, mincont, minarea, w, h,
                               assign, rank, core, out_flag, out_thr)
        extra = 0
        if nsel < 0:
            nsel = 1
            extra = OBJ_DOVERFLOW
            for k in range(npx):
                assign[k] = 0
                rank[k] = k
        if nsel > 1:
            bx, by = _gatherup(py, px, val, cd, var, start, stop, nsel, t0, assign, rank, core, out_thr, gain)
        else:
            bx = np.zeros(1)
            by = np.zeros(1)
        if nout + nsel > cap:
            newcap = max(2 * cap, nout + nsel + 16)
            r2 = np.empty((newcap, 32))
            for q in range(nout):
                for c in range(32):
                    r2[q, c] = results[q, c]
            results = r2
            flags = _grow_i(flags, newcap)
            othr = _grow_f(othr, newcap)
            omth = _grow_f(omth, newcap)
            owner = _grow_i(owner, newcap)
            cap = newcap
        counts = np.zeros(nsel, dtype=np.int64)
        for k in range(npx):
            counts[assign[k]] += 1
        for s in range(nsel):
            idx = np.empty(counts[s], dtype=np.int64)
            for k in range(npx):
                if assign[k] == s:
                    i = start + k
                    idx[rank[k]] = i
                    pix_out[i] = nout
            if nsel == 1:
                fl = edge_flag[o]
                merged = False
            else:
                fl = out_flag[s]
                merged = True
            _analyse(idx, py, px, val, cd, var, t0, merged, bx[s] if merged else 0.0, by[s] if merged else 0.0, gain, res)
            for c in range(32):
                results[nout, c] = res[c]
            if res[29] > 0.0:
                fl |= OBJ_SINGU
            flags[nout] = fl | extra
            othr[nout] = t0
            omth[nout] = _mthresh(idx, cd, thr, minarea)
            owner[nout] = o
            nout += 1
    res_out = np.empty((nout, 32))
    for q in range(nout):
        for c in range(32):
            res_out[q, c] = results[q, c]
    nn = np.int64(nout)
    return res_out, _grow_i(flags[:nout], nn), _grow_f(othr[:nout], nn), _grow_f(omth[:nout], nn), \
        _grow_i(owner[:nout], nn), pix_out


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _bisect(xs, v):  # pragma: no cover - compiled
    """First index i with xs[i] >= v in the sorted ``xs``."""
    lo = 0
    hi = xs.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if xs[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _clean(mx, my, a, b, cxx, cyy, cxy, abcor, fdflux, fdnpix, thresh, mthresh, beta, order):  # pragma: no cover
    """SExtractor's CLEAN: which objects survive (a bright object's extrapolated
    Moffat-like profile ``amp * (1 + alpha r^2)^-beta`` above a fainter neighbour's
    ``mthresh`` absorbs it). Objects are processed in catalogue order, as SExtractor;
    ``order`` sorts ``mx`` (it only speeds up the neighbour search)."""
    n = mx.shape[0]
    survives = np.ones(n, dtype=np.bool_)
    if n < 2:
        return survives
    xs = np.empty(n)
    for q in range(n):
        xs[q] = mx[order[q]]
    amax = F32(0.0)
    for i in range(n):
        if a[i] > amax:
            amax = a[i]
    for i in range(n):
        if not survives[i]:
            continue
        unitareain = math.pi * np.float64(a[i]) * np.float64(b[i])
        ampin = np.float64(fdflux[i]) / (2.0 * unitareain * np.float64(abcor[i]))
        alphain = (math.pow(ampin / np.float64(thresh[i]), 1.0 / beta) - 1.0) * unitareain / np.float64(fdnpix[i])
        reach = (np.float64(a[i]) + np.float64(amax)) * CLEAN_ZONE + 1.0
        lo = _bisect(xs, mx[i] - reach)
        hi = _bisect(xs, mx[i] + reach + 1e-9 * (1.0 + abs(mx[i]) + reach))  # the reach is padded anyway
        for q in range(lo, hi):
            j = order[q]
            if j <= i or not survives[j]:
                continue
            dx = F32(mx[i] - mx[j])
            dy = F32(my[i] - my[j])
            rlim = a[i] + a[j]
            rlim = rlim * rlim
            if np.float64(dx * dx + dy * dy) > np.float64(rlim) * CLEAN_ZONE * CLEAN_ZONE:
                continue
            if fdflux[j] < fdflux[i]:
                val = 1.0 + alphain * np.float64(cxx[i] * dx * dx + cyy[i] * dy * dy + cxy[i] * dx * dy)
                if val > 1.0:
                    prof = F32(ampin * math.pow(val, -beta)) if val < 1e10 else F32(0.0)
                    if prof > mthresh[j]:
                        survives[j] = False
            else:
                unitarea = math.pi * np.float64(a[j]) * np.float64(b[j])
                amp = np.float64(fdflux[j]) / (2.0 * unitarea * np.float64(abcor[j]))
                alpha = (math.pow(amp / np.float64(thresh[j]), 1.0 / beta) - 1.0) * unitarea / np.float64(fdnpix[j])
                val = 1.0 + alpha * np.float64(cxx[j] * dx * dx + cyy[j] * dy * dy + cxy[j] * dx * dy)
                if val > 1.0:
                    prof = F32(amp * math.pow(val, -beta)) if val < 1e10 else F32(0.0)
                    if prof > mthresh[i]:
                        survives[i] = False
    return survives


# ---------------------------------------------------------------------------------------
# peaks and footprint growth
# ---------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _find_peaks(sig, labels, lab_lo, lab_hi, sign):  # pragma: no cover - compiled
    """Local maxima of ``sign * sig`` at pixels labelled ``lab_lo..lab_hi``.

    A pixel is a peak when its value exceeds those of its 8 neighbours that come before
    it in raster order and is not below those after it (so plateaus give one peak).
    Returns (y, x) int64 arrays in raster order; only pixels whose label is in range
    and whose ``sign * sig`` is > 0 are considered.
    """
    h, w = sig.shape
    cap = 1024
    ys = np.empty(cap, dtype=np.int64)
    xs = np.empty(cap, dtype=np.int64)
    n = 0
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab < lab_lo or lab > lab_hi:
                continue
            v = sign * sig[y, x]
            if v <= 0.0:
                continue
            ok = True
            for dy in (-1, 0, 1):
                yy = y + dy
                if yy < 0 or yy >= h:
                    continue
                for dx in (-1, 0, 1):
                    if dy == 0 and dx == 0:
                        continue
                    xx = x + dx
                    if xx < 0 or xx >= w:
                        continue
                    u = sign * sig[yy, xx]
                    before = dy < 0 or (dy == 0 and dx < 0)
                    if before:
                        if u >= v:
                            ok = False
                            break
                    elif u > v:
                        ok = False
                        break
                if not ok:
                    break
            if ok:
                if n >= cap:
                    cap *= 2
                    ys = _grow_i(ys, cap)
                    xs = _grow_i(xs, cap)
                ys[n] = y
                xs[n] = x
                n += 1
    return ys[:n], xs[:n]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _grow_footprints(labels, radius, out):  # pragma: no cover - compiled
    """Grow labelled regions by ``radius`` pixels (Euclidean disk) into unlabelled
    pixels; a pixel reached by several footprints goes to the nearest (ties: the one
    reached first in raster order). ``out`` must be a copy of ``labels``; ``radius``
    must be below 255."""
    h, w = labels.shape
    r = int(math.floor(radius))
    r2 = radius * radius
    # offsets of the disk
    m = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= r2 and not (dx == 0 and dy == 0):
                m += 1
    ody = np.empty(m, dtype=np.int64)
    odx = np.empty(m, dtype=np.int64)
    od2 = np.empty(m, dtype=np.uint16)
    m = 0
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dx * dx + dy * dy <= r2 and not (dx == 0 and dy == 0):
                ody[m] = dy
                odx[m] = dx
                od2[m] = dx * dx + dy * dy
                m += 1
    best = np.empty((h, w), dtype=np.uint16)
    for y in range(h):
        for x in range(w):
            best[y, x] = 65535
    for y in range(h):
        for x in range(w):
            lab = labels[y, x]
            if lab <= 0:
                continue
            # boundary pixels only: a 4-neighbour outside the footprint or the image
            inner = True
            if y == 0 or labels[y - 1, x] != lab:
                inner = False
            elif y == h - 1 or labels[y + 1, x] != lab:
                inner = False
            elif x == 0 or labels[y, x - 1] != lab:
                inner = False
            elif x == w - 1 or labels[y, x + 1] != lab:
                inner = False
            if inner:
                continue
            for k in range(m):
                yy = y + ody[k]
                xx = x + odx[k]
                if yy < 0 or yy >= h or xx < 0 or xx >= w:
                    continue
                if labels[yy, xx] != 0:
                    continue
                if od2[k] < best[yy, xx]:
                    best[yy, xx] = od2[k]
                    out[yy, xx] = lab


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _set_detection_bits(mask, labels, n_pos, clear, pos_bit, neg_bit):  # pragma: no cover - compiled
    """Clear ``clear`` bits of ``mask`` and set ``pos_bit`` on labels 1..n_pos and
    ``neg_bit`` on labels > n_pos (in place)."""
    h, w = mask.shape
    keep = ~clear
    for y in range(h):
        for x in range(w):
            m = mask[y, x] & keep
            lab = labels[y, x]
            if lab > 0:
                m |= pos_bit if lab <= n_pos else neg_bit
            mask[y, x] = m
