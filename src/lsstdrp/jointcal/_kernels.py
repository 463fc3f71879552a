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

__all__ = ["star_normal", "fill_schur", "jc_dot"]


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
