"""Sphere and tangent-plane geometry, stellar motion and the Earth ephemeris of jointcal.

Everything here is plain numpy (plus ``erfa`` for the Earth's barycentric position),
vectorised, and written for jointcal alone: the simulator has its own copy of the
physics, so a bug cannot cancel out between the two (DESIGN.md section 6).

Conventions: angles in degrees at the interfaces; tangent-plane (gnomonic standard)
coordinates ``(xi, eta)`` in **arcsec**, ``xi`` towards east and ``eta`` towards north at
the tangent point; time MJD (TAI).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "ARCSEC",
    "MAS",
    "unit_vectors",
    "radec_from_vectors",
    "local_basis",
    "project",
    "deproject",
    "earth_barycentric_au",
    "propagate_refcat",
    "angular_separation_arcsec",
]

#: One arcsec in radians.
ARCSEC = math.pi / (180.0 * 3600.0)
#: One milliarcsecond in radians.
MAS = ARCSEC / 1000.0
_DAYS_PER_JULIAN_YEAR = 365.25
_TT_MINUS_TAI_DAYS = 32.184 / 86400.0
_MJD_ZERO_JD = 2400000.5


def unit_vectors(ra_deg: Any, dec_deg: Any) -> np.ndarray:
    """Unit vectors (..., 3) of ICRS positions in degrees."""
    a = np.deg2rad(np.asarray(ra_deg, dtype=np.float64))
    d = np.deg2rad(np.asarray(dec_deg, dtype=np.float64))
    cd = np.cos(d)
    return np.stack([cd * np.cos(a), cd * np.sin(a), np.sin(d)], axis=-1)


def radec_from_vectors(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in degrees of (not necessarily normalised) vectors (..., 3)."""
    ra = np.rad2deg(np.arctan2(p[..., 1], p[..., 0])) % 360.0
    dec = np.rad2deg(np.arctan2(p[..., 2], np.hypot(p[..., 0], p[..., 1])))
    return ra, dec


def local_basis(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vector ``c`` and its local east ``e`` and north ``n`` unit vectors, (..., 3) each.

    At a pole the east direction is undefined; there ``e`` is taken along +y.
    """
    c = p / np.linalg.norm(p, axis=-1, keepdims=True)
    e = np.stack([-c[..., 1], c[..., 0], np.zeros_like(c[..., 0])], axis=-1)
    ne = np.linalg.norm(e, axis=-1, keepdims=True)
    pole = ne[..., 0] < 1e-12
    if np.any(pole):
        e = np.where(pole[..., None], np.array([0.0, 1.0, 0.0]), e)
        ne = np.where(pole[..., None], 1.0, ne)
    e = e / ne
    n = np.cross(c, e)
    return c, e, n


def project(p: np.ndarray, c: np.ndarray, e: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Gnomonic projection of vectors ``p`` about the tangent point ``c`` (arcsec).

    :math:`\xi = (p\cdot e)/(p\cdot c)`, :math:`\eta = (p\cdot n)/(p\cdot c)`
    (Calabretta & Greisen 2002, sec. 5.1.3), in arcsec. ``p`` need not be normalised;
    ``c, e, n`` broadcast against it.
    """
    pc = np.sum(p * c, axis=-1)
    return np.sum(p * e, axis=-1) / pc / ARCSEC, np.sum(p * n, axis=-1) / pc / ARCSEC


def deproject(xi_arcsec: Any, eta_arcsec: Any, c: np.ndarray, e: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Inverse of :func:`project`: unit vectors (..., 3) of tangent-plane points (arcsec)."""
    xi = np.asarray(xi_arcsec, dtype=np.float64)[..., None] * ARCSEC
    eta = np.asarray(eta_arcsec, dtype=np.float64)[..., None] * ARCSEC
    p = c + xi * e + eta * n
    return p / np.linalg.norm(p, axis=-1, keepdims=True)


def angular_separation_arcsec(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Angle between unit vectors in arcsec (chord formula, accurate at the µas level)."""
    chord = np.linalg.norm(p - q, axis=-1)
    return 2.0 * np.arcsin(np.clip(0.5 * chord, 0.0, 1.0)) / ARCSEC


def earth_barycentric_au(mjd: Any) -> np.ndarray:
    """Barycentric position of the Earth (..., 3), au, ICRS axes, at MJD (TAI) epochs.

    ``erfa.epv00`` (VSOP2000-based, ~5 km) at TDB ≈ TT = TAI + 32.184 s; one call per
    distinct epoch.
    """
    import erfa

    t = np.asarray(mjd, dtype=np.float64)
    tt, inverse = np.unique(np.ravel(t), return_inverse=True)
    _, pvb = erfa.epv00(_MJD_ZERO_JD, tt + _TT_MINUS_TAI_DAYS)
    return np.asarray(pvb["p"], dtype=np.float64)[inverse].reshape(t.shape + (3,))


def propagate_refcat(ra: Any, dec: Any, pmra: Any, pmdec: Any, parallax: Any, *, epoch: Any,
                     mjd: Any) -> tuple[np.ndarray, np.ndarray]:
    r"""Move reference positions to an observation epoch (proper motion and parallax).

    Parameters
    ----------
    ra, dec : array_like
        ICRS barycentric position at ``epoch``, degrees.
    pmra, pmdec : array_like
        Proper motion (``pmra`` includes ``cos dec``), mas/yr.
    parallax : array_like
        Parallax in mas (negative values are used as given: Gaia's are unbiased).
    epoch, mjd : array_like
        Catalog epoch and observation epoch, MJD (TAI). All arguments broadcast.

    Returns
    -------
    ra, dec : numpy.ndarray
        Geocentric astrometric position at ``mjd`` in degrees.

    Notes
    -----
    A star in uniform rectilinear motion, seen from the Earth at barycentric position
    :math:`E(t)` (au), lies along

    .. math:: \hat q \propto p_0 + (\mu_{\alpha*} e + \mu_\delta n)\,\Delta t - \varpi\,E(t),

    with :math:`p_0` the unit vector at the catalog epoch, ``e, n`` its local east and
    north unit vectors, :math:`\Delta t` in Julian years and the angles in radians
    (zero radial velocity; Kaplan 2005, USNO Circular 179, sec. 3; Lindegren et al.
    2021, A&A 649, A2).

    Examples
    --------
    >>> ra, dec = propagate_refcat(10.0, 20.0, 100.0, 0.0, 0.0, epoch=57388.0, mjd=57388.0 + 365.25)
    >>> round(float((ra - 10.0) * 3.6e6 * np.cos(np.radians(20.0))), 3)
    100.0
    """
    ra_, dec_, pa, pd, plx, ep, t = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in
                                                          (ra, dec, pmra, pmdec, parallax, epoch, mjd)))
    p0 = unit_vectors(ra_, dec_)
    _, e, n = local_basis(p0)
    dt = (t - ep) / _DAYS_PER_JULIAN_YEAR
    q = p0 + (pa[..., None] * e + pd[..., None] * n) * (MAS * dt[..., None])
    if np.any(plx != 0):
        q = q - (plx * MAS)[..., None] * earth_barycentric_au(t)
    return radec_from_vectors(q)
