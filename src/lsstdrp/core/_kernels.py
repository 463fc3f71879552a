"""Compiled (numba) kernels of :mod:`lsstdrp.core`; private, narrowly typed.

Every kernel here sits behind a validating Python wrapper (in ``_psf.py``) that casts
its inputs to C-contiguous float64 arrays and allocates the outputs. A plain-numpy
reference of each kernel lives in ``tests/core/test_psf.py`` and the two must agree.

Kernels
-------
``_interp_taps(frac, kind, order, taps)``
    The ``2 * order`` one-dimensional interpolation weights for a sample at fractional
    position ``frac`` in [0, 1), corrected to reproduce constants and straight lines
    exactly (so a resampled image keeps its flux and its centroid).
``_render_shifted(src, step, uy0, ux0, kind, order, out)``
    Separable resampling of a (possibly oversampled) kernel onto an output grid whose
    rows/columns map to source coordinates ``u0 + step * index``; returns the sum.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["KIND_LANCZOS", "KIND_KEYS", "_interp_taps", "_render_shifted"]

#: Windowed sinc ``sinc(t) sinc(t / a)`` on ``|t| < a`` (Lanczos-a).
KIND_LANCZOS = 0
#: Keys (1981) cubic convolution with ``a = -1/2`` (support 2).
KIND_KEYS = 1


@numba.njit(cache=True, nogil=True)
def _sinc(t: float) -> float:  # pragma: no cover - compiled
    if t == 0.0:
        return 1.0
    pt = math.pi * t
    return math.sin(pt) / pt


@numba.njit(cache=True, nogil=True)
def _kernel_value(t: float, kind: int, order: int) -> float:  # pragma: no cover - compiled
    at = abs(t)
    if kind == KIND_LANCZOS:
        if at >= order:
            return 0.0
        return _sinc(t) * _sinc(t / order)
    # Keys cubic convolution, a = -0.5
    if at <= 1.0:
        return (1.5 * at - 2.5) * at * at + 1.0
    if at < 2.0:
        return ((-0.5 * at + 2.5) * at - 4.0) * at + 2.0
    return 0.0


@numba.njit(cache=True, nogil=True)
def _interp_taps(frac: float, kind: int, order: int, taps: np.ndarray) -> None:  # pragma: no cover
    """Fill ``taps[q]``, q = 0 .. 2*order-1, for source samples ``k0 - order + 1 + q``.

    ``frac = u - k0`` with ``k0 = floor(u)``; the offset of tap ``q`` is
    ``t_q = frac + order - 1 - q``. The raw weights ``K(t_q)`` get the minimum-L2-norm
    correction ``lambda0 + lambda1 * t_q`` that makes ``sum(w) = 1`` and
    ``sum(w * t) = 0`` (exact reproduction of constant and linear functions).
    """
    n = 2 * order
    s0 = 0.0
    s1 = 0.0
    st = 0.0
    stt = 0.0
    for q in range(n):
        t = frac + order - 1 - q
        w = _kernel_value(t, kind, order)
        taps[q] = w
        s0 += w
        s1 += w * t
        st += t
        stt += t * t
    # solve [[n, st], [st, stt]] @ (l0, l1) = (1 - s0, -s1)
    det = n * stt - st * st
    r0 = 1.0 - s0
    r1 = -s1
    l0 = (r0 * stt - st * r1) / det
    l1 = (n * r1 - st * r0) / det
    for q in range(n):
        t = frac + order - 1 - q
        taps[q] += l0 + l1 * t


@numba.njit(cache=True, nogil=True, fastmath=True)
def _render_shifted(
    src: np.ndarray, step: int, uy0: float, ux0: float, kind: int, order: int, out: np.ndarray
) -> float:  # pragma: no cover - compiled
    """Separable resampling: ``out[j, i] = sum_pq wy[p] wx[q] src[ky(j) + p, kx(i) + q]``.

    Output row ``j`` sits at continuous source row ``uy0 + step * j`` (column likewise);
    source samples outside ``src`` are zero (no wrap-around). Returns ``out.sum()``.
    ``src`` and ``out`` are finite float64 arrays (``fastmath`` only reassociates sums).
    """
    ny_s, nx_s = src.shape
    ny, nx = out.shape
    n = 2 * order
    fy = math.floor(uy0)
    fx = math.floor(ux0)
    wy = np.empty(n)
    wx = np.empty(n)
    _interp_taps(uy0 - fy, kind, order, wy)
    _interp_taps(ux0 - fx, kind, order, wx)
    ky0 = int(fy) - order + 1
    kx0 = int(fx) - order + 1
    # horizontal pass over every source row: tmp[r, i] = sum_q wx[q] src[r, kx(i) + q]
    tmp = np.zeros((ny_s, nx))
    for i in range(nx):
        base = kx0 + step * i
        qlo = max(0, -base)
        qhi = min(n, nx_s - base)
        for q in range(qlo, qhi):
            w = wx[q]
            col = base + q
            for r in range(ny_s):
                tmp[r, i] += w * src[r, col]
    # vertical pass
    out[:, :] = 0.0
    for j in range(ny):
        base = ky0 + step * j
        plo = max(0, -base)
        phi = min(n, ny_s - base)
        for p in range(plo, phi):
            w = wy[p]
            row = base + p
            for i in range(nx):
                out[j, i] += w * tmp[row, i]
    total = 0.0
    for j in range(ny):
        for i in range(nx):
            total += out[j, i]
    return total
