"""Shared helpers of the characterize calibration steps: columns, reference catalogs, geometry."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from astropy.table import Table

from .._errors import InvalidInputError

__all__ = ["ARCSEC", "col", "check_table", "unit_vectors", "radec_from_vectors", "tangent_basis", "project",
           "deproject", "refcat_positions", "check_pos", "check_int"]

#: One arcsec in radians.
ARCSEC = math.pi / (180.0 * 3600.0)


def col(table: Any, name: str, dtype: Any = np.float64, unit: Any = None) -> np.ndarray:
    """A column as a plain array (masked entries -> NaN for floats).

    With ``unit``, a column carrying a unit (Quantity or ``Column.unit``) is converted to
    it first (e.g. radians -> degrees); unitless columns are taken as already in ``unit``.
    """
    c = table[name]
    if unit is not None:
        cu = getattr(c, "unit", None)
        if cu is not None and cu != unit:
            from astropy import units as _u

            try:
                factor = _u.Unit(cu).to(unit)
            except _u.UnitConversionError:
                raise InvalidInputError(f"column {name!r} has unit {cu}; expected one convertible to {unit}") from None
            v = getattr(c, "value", c)
            if hasattr(v, "filled") and np.dtype(dtype).kind == "f":
                v = v.filled(np.nan)
            return np.asarray(v, dtype=dtype) * factor
    v = getattr(c, "value", c)
    if hasattr(v, "filled") and np.dtype(dtype).kind == "f":
        v = v.filled(np.nan)
    return np.asarray(v, dtype=dtype)


def check_table(table: Any, name: str, needed: tuple[str, ...] = ()) -> Table:
    """An astropy table with the needed columns (rows may be zero)."""
    if not isinstance(table, Table):
        raise InvalidInputError(f"`{name}` must be an astropy Table/QTable; got {type(table).__name__}")
    missing = [c for c in needed if c not in table.colnames]
    if missing:
        raise InvalidInputError(f"`{name}` lacks column(s) {missing}; it needs {list(needed)}")
    return table


def check_pos(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """A finite float > 0 (or >= 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a finite number; got {value!r}") from None
    if not (math.isfinite(v) and (v >= 0 if allow_zero else v > 0)):
        raise InvalidInputError(f"`{name}` must be a finite number {'>=' if allow_zero else '>'} 0; got {value!r}")
    return v


def check_int(value: Any, name: str, lo: int, hi: int) -> int:
    """An integer in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise InvalidInputError(f"`{name}` must be an integer in [{lo}, {hi}]; got {value!r}")
    return int(value)


def unit_vectors(ra_deg: Any, dec_deg: Any) -> np.ndarray:
    """Unit vectors (..., 3) of positions in degrees."""
    a = np.deg2rad(np.asarray(ra_deg, dtype=np.float64))
    d = np.deg2rad(np.asarray(dec_deg, dtype=np.float64))
    cd = np.cos(d)
    return np.stack([cd * np.cos(a), cd * np.sin(a), np.sin(d)], axis=-1)


def radec_from_vectors(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) in degrees of vectors (..., 3)."""
    ra = np.rad2deg(np.arctan2(p[..., 1], p[..., 0])) % 360.0
    dec = np.rad2deg(np.arctan2(p[..., 2], np.hypot(p[..., 0], p[..., 1])))
    return ra, dec


def tangent_basis(ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, east and north unit vectors at (ra0, dec0) (deg)."""
    c = unit_vectors(ra0, dec0)
    e = np.array([-c[1], c[0], 0.0])
    ne = np.linalg.norm(e)
    e = np.array([0.0, 1.0, 0.0]) if ne < 1e-12 else e / ne
    return c, e, np.cross(c, e)


def project(ra: Any, dec: Any, basis: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    r"""Gnomonic standard coordinates :math:`(\xi, \eta)` in arcsec about ``basis``'s centre."""
    c, e, n = basis
    p = unit_vectors(ra, dec)
    pc = p @ c
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.where(pc > 0, (p @ e) / pc, np.nan) / ARCSEC
        eta = np.where(pc > 0, (p @ n) / pc, np.nan) / ARCSEC
    return xi, eta


def deproject(xi: Any, eta: Any, basis: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`project`: (ra, dec) in degrees."""
    c, e, n = basis
    xi = np.asarray(xi, dtype=np.float64)[..., None] * ARCSEC
    eta = np.asarray(eta, dtype=np.float64)[..., None] * ARCSEC
    return radec_from_vectors(c + xi * e + eta * n)


def refcat_positions(refcat: Table, mjd: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference positions at ``mjd`` and their per-axis error (mas).

    Proper motion (and parallax) are applied with :func:`lsstdrp.jointcal.propagate_refcat`
    when the catalog has ``pmra, pmdec, epoch``; the position error then grows with the
    proper-motion error times the epoch difference. Catalogs without motion columns
    (e.g. a photometric catalog) are used as they are, with ``ra_err_mas``/``dec_err_mas``
    when present (else 0).
    """
    from astropy import units as _u

    ra = col(refcat, "ra", unit=_u.deg)
    dec = col(refcat, "dec", unit=_u.deg)
    n = len(ra)
    era = col(refcat, "ra_err_mas") if "ra_err_mas" in refcat.colnames else np.zeros(n)
    edec = col(refcat, "dec_err_mas") if "dec_err_mas" in refcat.colnames else np.zeros(n)
    err2 = 0.5 * (np.nan_to_num(era) ** 2 + np.nan_to_num(edec) ** 2)
    has_pm = all(c in refcat.colnames for c in ("pmra", "pmdec", "epoch"))
    if has_pm and mjd is not None:
        from ..jointcal import propagate_refcat

        pmra = np.nan_to_num(col(refcat, "pmra"))
        pmdec = np.nan_to_num(col(refcat, "pmdec"))
        plx = np.nan_to_num(col(refcat, "parallax")) if "parallax" in refcat.colnames else np.zeros(n)
        epoch = col(refcat, "epoch")
        epoch = np.where(np.isfinite(epoch), epoch, float(mjd))
        ra, dec = propagate_refcat(ra, dec, pmra, pmdec, plx, epoch=epoch, mjd=float(mjd))
        dt = (float(mjd) - epoch) / 365.25
        epm = [np.nan_to_num(col(refcat, c)) if c in refcat.colnames else np.zeros(n) for c in ("pmra_err", "pmdec_err")]
        err2 = err2 + 0.5 * (epm[0] ** 2 + epm[1] ** 2) * dt**2
        if "parallax_err" in refcat.colnames:
            err2 = err2 + 0.5 * np.nan_to_num(col(refcat, "parallax_err")) ** 2
    return np.asarray(ra, float), np.asarray(dec, float), np.sqrt(err2)
