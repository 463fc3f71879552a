"""E/B-mode decomposition of the two-point correlation of astrometric residual vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
from astropy.table import QTable

from .._errors import InvalidInputError
from ..core import as_rng

__all__ = ["eb_correlation"]


def eb_correlation(x: Any, y: Any, dx: Any, dy: Any, *, group: Any = None, bins: Any = None, n_bins: int = 12,
                   max_pairs: int = 20_000_000, rng: Any = None) -> QTable:
    r"""Correlation functions of a 2-D vector field split into E (curl-free) and B (divergence-free) modes.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Positions (any unit, e.g. arcsec of a visit's tangent plane).
    dx, dy : array_like, shape (n,)
        The vectors at the positions (e.g. residuals in mas), in the same axes.
    group : array_like, shape (n,), optional
        Only pairs within the same group count (e.g. the visit: residuals of different
        exposures are uncorrelated).
    bins : array_like, optional
        Separation bin edges (units of ``x``); default ``n_bins`` logarithmic bins from
        1/50 to 1/2 of the largest extent of a group.
    n_bins : int
        Number of default bins.
    max_pairs : int
        Points are subsampled (at random, per group) so that at most about this many
        pairs are formed.
    rng : None, int or numpy.random.Generator
        Seed of the subsampling.

    Returns
    -------
    astropy.table.QTable
        One row per bin: ``r_min, r_max, r`` (pair-weighted mean separation),
        ``n_pairs``, ``xi_plus, xi_minus, xi_e, xi_b`` (units of ``dx`` squared) and
        ``xi_parallel, xi_perp``.

    Notes
    -----
    With the components of the vectors along (∥) and across (⊥) the separation of each
    pair, :math:`\xi_\pm = \langle d_\parallel d'_\parallel\rangle \pm \langle d_\perp
    d'_\perp\rangle`. For an isotropic field with E and B power spectra
    :math:`P_E, P_B`, :math:`\xi_+ = \int (P_E + P_B) J_0(kr)\,k\,dk/2\pi` and
    :math:`\xi_- = -\int (P_E - P_B) J_2(kr)\,k\,dk/2\pi`; the identity
    :math:`\int_r^\infty J_2(kr')\,dr'/r' = J_1(kr)/(kr)` and
    :math:`J_0 + J_2 = 2J_1/x` give

    .. math::

        \xi_E - \xi_B = \xi_-(r) - 2\int_r^\infty \xi_-(r')\,\frac{dr'}{r'},
        \qquad \xi_{E,B} = \tfrac12\left[\xi_+ \pm (\xi_E - \xi_B)\right],

    with :math:`\xi_{E,B}(r) = \int P_{E,B} J_0(kr)\,k\,dk/2\pi` (Bernstein et al.
    2017, sec. 5.2, for astrometric residuals; Schneider, van Waerbeke & Mellier 2002
    for the analogous shear case). The integral is taken over the measured bins
    (logarithmic midpoint rule), i.e. :math:`\xi_-` is assumed to vanish beyond the
    last bin.

    References
    ----------
    .. [1] Bernstein, G. M. et al. 2017, PASP 129, 074503.
    .. [2] Schneider, P., van Waerbeke, L. & Mellier, Y. 2002, A&A 389, 729.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.uniform(0, 100, (2, 2000))
    >>> t = eb_correlation(x, y, np.cos(x / 20), np.zeros_like(x))  # a pure gradient field
    >>> bool(np.all(np.abs(t["xi_b"][:6]) < 0.2 * np.abs(t["xi_e"][:6])))
    True
    """
    arrs = []
    for name, a in (("x", x), ("y", y), ("dx", dx), ("dy", dy)):
        a = np.asarray(getattr(a, "value", a), dtype=np.float64).ravel()
        arrs.append(a)
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise InvalidInputError(f"`x, y, dx, dy` must have the same length; got {[len(a) for a in arrs]}")
    if n < 3:
        raise InvalidInputError(f"at least 3 points are needed; got {n}")
    x, y, dx, dy = arrs
    g = np.zeros(n, np.int64) if group is None else np.asarray(group).ravel()
    if len(g) != n:
        raise InvalidInputError(f"`group` has {len(g)} entries; expected {n}")
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(dx) & np.isfinite(dy)
    x, y, dx, dy, g = x[ok], y[ok], dx[ok], dy[ok], g[ok]
    gen = as_rng(rng)
    groups = [np.nonzero(g == k)[0] for k in np.unique(g)]
    groups = [ix for ix in groups if ix.size >= 2]
    if not groups:
        raise InvalidInputError("no group has two valid points")
    if bins is None:
        ext = max(float(np.hypot(np.ptp(x[ix]), np.ptp(y[ix]))) for ix in groups)
        bins = np.geomspace(ext / 50.0, ext / 2.0, int(n_bins) + 1)
    edges = np.asarray(bins, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0) or edges[0] <= 0:
        raise InvalidInputError("`bins` must be increasing positive separation edges")
    tot_pairs = sum(ix.size * (ix.size - 1) / 2 for ix in groups)
    keep_frac = min(1.0, float(np.sqrt(max_pairs / max(tot_pairs, 1.0))))
    nb = edges.size - 1
    spar = np.zeros(nb)
    sperp = np.zeros(nb)
    sr = np.zeros(nb)
    npair = np.zeros(nb)
    for ix in groups:
        if keep_frac < 1.0:
            m = max(2, int(round(ix.size * keep_frac)))
            ix = gen.choice(ix, size=m, replace=False)
        i, j = np.triu_indices(ix.size, k=1)
        a, b = ix[i], ix[j]
        sx, sy = x[b] - x[a], y[b] - y[a]
        r = np.hypot(sx, sy)
        k = np.searchsorted(edges, r, side="right") - 1
        sel = (k >= 0) & (k < nb) & (r > 0)
        a, b, sx, sy, r, k = a[sel], b[sel], sx[sel], sy[sel], r[sel], k[sel]
        ux, uy = sx / r, sy / r
        pa = dx[a] * ux + dy[a] * uy
        pb = dx[b] * ux + dy[b] * uy
        qa = -dx[a] * uy + dy[a] * ux
        qb = -dx[b] * uy + dy[b] * ux
        spar += np.bincount(k, weights=pa * pb, minlength=nb)
        sperp += np.bincount(k, weights=qa * qb, minlength=nb)
        sr += np.bincount(k, weights=r, minlength=nb)
        npair += np.bincount(k, minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        xpar = spar / npair
        xperp = sperp / npair
        rmean = np.where(npair > 0, sr / npair, np.sqrt(edges[:-1] * edges[1:]))
    xp = xpar + xperp
    xm = xpar - xperp
    xm0 = np.where(np.isfinite(xm), xm, 0.0)
    dln = np.log(edges[1:] / edges[:-1])
    # int_r^inf xi_-(r') dln r': half of the own bin + all later bins
    tail = np.cumsum((xm0 * dln)[::-1])[::-1]
    integral = tail - 0.5 * xm0 * dln
    diff = xm - 2.0 * integral
    t = QTable()
    t["r_min"] = edges[:-1]
    t["r_max"] = edges[1:]
    t["r"] = rmean
    t["n_pairs"] = npair.astype(np.int64)
    t["xi_plus"] = xp
    t["xi_minus"] = xm
    t["xi_e"] = 0.5 * (xp + diff)
    t["xi_b"] = 0.5 * (xp - diff)
    t["xi_parallel"] = xpar
    t["xi_perp"] = xperp
    return t
