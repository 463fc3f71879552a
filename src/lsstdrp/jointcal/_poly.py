"""2-D polynomials of total order n in normalised coordinates (monomial basis).

A map of order ``n`` has ``(n + 1)(n + 2)/2`` terms ``u^p v^q`` (``p + q <= n``), ordered
by total degree then by ``q``: ``1, u, v, u², uv, v², ...``; so the terms of a lower
order are a prefix of those of a higher one and a reduced-order map is the same map with
its trailing coefficients zero. Inputs are normalised to about [-1, 1] by the callers,
which keeps the monomial basis well conditioned up to order ~7.
"""

from __future__ import annotations

import numpy as np

__all__ = ["n_terms", "exponents", "vander", "vander_grad", "order_of_terms", "cheb_vander"]


def n_terms(order: int) -> int:
    """Number of monomials of total order <= ``order``."""
    return (order + 1) * (order + 2) // 2


def order_of_terms(nt: int) -> int:
    """Inverse of :func:`n_terms`."""
    order = 0
    while n_terms(order) < nt:
        order += 1
    if n_terms(order) != nt:
        raise ValueError(f"{nt} is not a triangular number of terms")
    return order


def exponents(order: int) -> np.ndarray:
    """(n_terms, 2) integer exponents (p, q) in the canonical order."""
    return np.array([(d - q, q) for d in range(order + 1) for q in range(d + 1)], dtype=np.int64)


def _powers(u: np.ndarray, order: int) -> np.ndarray:
    out = np.empty(u.shape + (order + 1,))
    out[..., 0] = 1.0
    for k in range(1, order + 1):
        out[..., k] = out[..., k - 1] * u
    return out


def vander(u: np.ndarray, v: np.ndarray, order: int) -> np.ndarray:
    """Design matrix (..., n_terms) of the monomials at (u, v)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    pu, pv = _powers(u, order), _powers(v, order)
    ex = exponents(order)
    return pu[..., ex[:, 0]] * pv[..., ex[:, 1]]


def vander_grad(u: np.ndarray, v: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Design matrix and its derivatives with respect to u and v, each (..., n_terms)."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    pu, pv = _powers(u, order), _powers(v, order)
    ex = exponents(order)
    val = pu[..., ex[:, 0]] * pv[..., ex[:, 1]]
    # d(u^p)/du = p u^(p-1); index p-1 clipped at 0 and multiplied by p (0 when p = 0)
    du = ex[:, 0] * pu[..., np.maximum(ex[:, 0] - 1, 0)] * pv[..., ex[:, 1]]
    dv = ex[:, 1] * pu[..., ex[:, 0]] * pv[..., np.maximum(ex[:, 1] - 1, 0)]
    return val, du, dv


def cheb_vander(u: np.ndarray, v: np.ndarray, order: int) -> np.ndarray:
    """Chebyshev products ``T_p(u) T_q(v)`` (p + q <= order) in the canonical order, (..., n_terms)."""
    from numpy.polynomial import chebyshev

    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    tu = chebyshev.chebvander(u, order)
    tv = chebyshev.chebvander(v, order)
    ex = exponents(order)
    return tu[..., ex[:, 0]] * tv[..., ex[:, 1]]
