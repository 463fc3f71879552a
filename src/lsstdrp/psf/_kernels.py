"""Compiled (numba) kernels of :mod:`lsstdrp.psf`; private, narrowly typed.

Every kernel sits behind a validating Python function in ``_pixel.py`` that casts its
inputs to C-contiguous float64 arrays and allocates the outputs. Plain-numpy references
live in ``tests/psf/test_psf_kernels.py`` and the two must agree.

Kernels
-------
``_axis_taps(u, n, order, k0, w)``
    Basis weights along one axis of the PSF grid for the continuous grid coordinates
    ``u`` (one per stamp row or column): cubic B-spline (``order = -2``) or Lanczos
    (corrected to reproduce constants and straight lines exactly).
``_star_normal_band(wy, k0y, wx, k0x, weight, resid, n, band, rhs)``
    One star's contribution :math:`A^T W A` (banded storage) and :math:`A^T W r` to the
    normal equations of the pixel-grid PSF, where :math:`A_{p k}` are the separable
    interpolation weights of grid sample ``k`` at stamp pixel ``p``.
``_band_to_dense(gband, n, nb, amap, na, out)``
    Expand the per-basis-pair banded blocks into the dense normal matrix.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["_axis_taps", "_star_normal_band", "_band_to_dense"]


@numba.njit(cache=True, nogil=True)
def _sinc(t: float) -> float:  # pragma: no cover - compiled
    if t == 0.0:
        return 1.0
    pt = math.pi * t
    return math.sin(pt) / pt


@numba.njit(cache=True, nogil=True)
def _axis_taps(u: np.ndarray, n: int, order: int, k0: np.ndarray, w: np.ndarray) -> None:  # pragma: no cover
    """Fill ``k0[i]`` (first tap index) and ``w[i, q]`` (q < 2*|order|) for positions ``u[i]``.

    ``order > 0``: Lanczos-``order`` taps corrected to reproduce constants and lines;
    ``order == -2`` / ``-3``: the cubic / quintic B-spline (4 / 6 taps, partition of
    unity, reproduce lines).
    Taps are grid samples ``k0[i] + q``; weights of taps outside ``[0, n)`` are kept
    (the samples there are zero, so they simply contribute nothing).
    """
    if order == -3:
        for i in range(u.shape[0]):
            fl = math.floor(u[i])
            frac = u[i] - fl
            k0[i] = int(fl) - 2
            for q in range(6):
                a = abs(frac + 2.0 - q)
                v = 0.0
                if a < 3.0:
                    v = (3.0 - a) ** 5
                    if a < 2.0:
                        v -= 6.0 * (2.0 - a) ** 5
                        if a < 1.0:
                            v += 15.0 * (1.0 - a) ** 5
                w[i, q] = v / 120.0
        return
    if order < 0:
        for i in range(u.shape[0]):
            fl = math.floor(u[i])
            frac = u[i] - fl
            k0[i] = int(fl) - 1
            for q in range(4):
                a = abs(frac + 1.0 - q)
                if a < 1.0:
                    w[i, q] = 2.0 / 3.0 - a * a + 0.5 * a * a * a
                elif a < 2.0:
                    w[i, q] = (2.0 - a) ** 3 / 6.0
                else:
                    w[i, q] = 0.0
        return
    m = 2 * order
    for i in range(u.shape[0]):
        fl = math.floor(u[i])
        frac = u[i] - fl
        k0[i] = int(fl) - order + 1
        s0 = 0.0
        s1 = 0.0
        t1 = 0.0
        t2 = 0.0
        for q in range(m):
            t = frac + order - 1 - q  # u - (k0 + q)
            v = _sinc(t) * _sinc(t / order) if abs(t) < order else 0.0
            w[i, q] = v
            s0 += v
            s1 += v * t
            t1 += t
            t2 += t * t
        # minimum-norm correction w + l0 + l1 t with sum w = 1, sum w t = 0
        det = m * t2 - t1 * t1
        l0 = ((1.0 - s0) * t2 + s1 * t1) / det
        l1 = (-s1 * m - (1.0 - s0) * t1) / det
        for q in range(m):
            t = frac + order - 1 - q
            w[i, q] += l0 + l1 * t


@numba.njit(cache=True, nogil=True)
def _star_normal_band(
    wy: np.ndarray,
    k0y: np.ndarray,
    wx: np.ndarray,
    k0x: np.ndarray,
    weight: np.ndarray,
    resid: np.ndarray,
    n: int,
    band: np.ndarray,
    rhs: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Accumulate ``band[ky, kx, dy, dx] += sum_p w_p A_pk A_pk'`` and ``rhs[ky, kx] += sum_p w_p A_pk r_p``.

    ``k' = (ky + dy - D0, kx + dx - D0)`` with ``D0 = 2*order - 1``; ``band`` has shape
    ``(n, n, 2*D0+1, 2*D0+1)``.
    """
    ny, nx = weight.shape
    m = wy.shape[1]
    d0 = m - 1
    for i in range(ny):
        for j in range(nx):
            wp = weight[i, j]
            if wp <= 0.0:
                continue
            rp = resid[i, j]
            for qy1 in range(m):
                ky1 = k0y[i] + qy1
                if ky1 < 0 or ky1 >= n:
                    continue
                a1y = wy[i, qy1] * wp
                for qx1 in range(m):
                    kx1 = k0x[j] + qx1
                    if kx1 < 0 or kx1 >= n:
                        continue
                    b1 = a1y * wx[j, qx1]
                    rhs[ky1, kx1] += b1 * rp
                    for qy2 in range(m):
                        ky2 = k0y[i] + qy2
                        if ky2 < 0 or ky2 >= n:
                            continue
                        b1y = b1 * wy[i, qy2]
                        for qx2 in range(m):
                            kx2 = k0x[j] + qx2
                            if kx2 < 0 or kx2 >= n:
                                continue
                            band[ky1, kx1, ky2 - ky1 + d0, kx2 - kx1 + d0] += b1y * wx[j, qx2]


@numba.njit(cache=True, nogil=True)
def _band_to_dense(gband: np.ndarray, n: int, nb: int, amap: np.ndarray, na: int, out: np.ndarray) -> None:  # pragma: no cover
    """``out[j*na + amap[k], j2*na + amap[k2]] = gband[k, dy, dx, j, j2]`` over active samples.

    ``amap[k]`` is the index of grid sample ``k = ky*n + kx`` among the active samples,
    -1 for an inactive one (held at zero).
    """
    nd = gband.shape[1]
    d0 = (nd - 1) // 2
    for ky in range(n):
        for kx in range(n):
            k = ky * n + kx
            a1 = amap[k]
            if a1 < 0:
                continue
            for dy in range(nd):
                ky2 = ky + dy - d0
                if ky2 < 0 or ky2 >= n:
                    continue
                for dx in range(nd):
                    kx2 = kx + dx - d0
                    if kx2 < 0 or kx2 >= n:
                        continue
                    a2 = amap[ky2 * n + kx2]
                    if a2 < 0:
                        continue
                    for j in range(nb):
                        for j2 in range(nb):
                            out[j * na + a1, j2 * na + a2] = gband[k, dy, dx, j, j2]
