"""Boundary validation of jointcal inputs: catalogs, visits, WCS dicts, reference catalogs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.table import QTable, Table, vstack

from .._errors import InvalidInputError

__all__ = ["as_catalog", "as_visits", "column", "check_wcs", "check_order", "check_fraction", "fast_unique",
           "check_nonneg", "check_positive"]

REQUIRED = ("visit", "detector", "x", "y", "x_err", "y_err")


def column(table: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """A column as a plain numpy array (units stripped, masked values -> NaN for floats)."""
    col = table[name]
    val = getattr(col, "value", col)
    if hasattr(val, "filled") and np.dtype(dtype).kind == "f":
        val = val.filled(np.nan)
    return np.asarray(val, dtype=dtype)


def as_catalog(catalogs: Any, *, flux_column: str | None) -> QTable:
    """One QTable from a table or a list/dict of per-(visit, detector) tables."""
    if isinstance(catalogs, Table):
        cat = QTable(catalogs, copy=False)
    elif isinstance(catalogs, Mapping):
        tabs = list(catalogs.values())
        if not tabs or not all(isinstance(t, Table) for t in tabs):
            raise InvalidInputError("`catalogs` as a dict must map (visit, detector) to astropy tables")
        cat = QTable(vstack(tabs, metadata_conflicts="silent"), copy=False)
    elif isinstance(catalogs, (list, tuple)):
        if not catalogs or not all(isinstance(t, Table) for t in catalogs):
            raise InvalidInputError("`catalogs` as a list must hold astropy tables")
        cat = QTable(vstack(list(catalogs), metadata_conflicts="silent"), copy=False)
    else:
        raise InvalidInputError(
            f"`catalogs` must be an astropy Table/QTable or a list/dict of them; got {type(catalogs).__name__}")
    need = list(REQUIRED)
    if flux_column is not None:
        need += [flux_column, f"{flux_column}_err"]
    missing = [c for c in need if c not in cat.colnames]
    if missing:
        raise InvalidInputError(f"`catalogs` lacks column(s) {missing}; it needs {need}")
    if len(cat) == 0:
        raise InvalidInputError("`catalogs` has no rows")
    return cat


def as_visits(visits: Any, needed: np.ndarray) -> QTable:
    """The visits table with ``visit, mjd, band`` for every visit in ``needed``."""
    if not isinstance(visits, Table):
        raise InvalidInputError(f"`visits` must be an astropy Table/QTable; got {type(visits).__name__}")
    missing = [c for c in ("visit", "mjd", "band") if c not in visits.colnames]
    if missing:
        raise InvalidInputError(f"`visits` lacks column(s) {missing}; it needs visit, mjd, band")
    vt = QTable(visits, copy=True)
    ids = column(vt, "visit", np.int64)
    if len(np.unique(ids)) != len(ids):
        raise InvalidInputError("`visits['visit']` has duplicate visit ids")
    absent = sorted(set(fast_unique(needed).tolist()) - set(ids.tolist()))
    if absent:
        raise InvalidInputError(f"visits {absent[:5]} of `catalogs` are not in `visits`")
    mjd = column(vt, "mjd")
    if not np.all(np.isfinite(mjd)):
        raise InvalidInputError("`visits['mjd']` must be finite")
    return vt


def check_wcs(wcs: Any, keys: list[tuple[int, int]]) -> dict:
    """The WCS dict, keys normalised to ``(int, int)``; every key of the catalogs present."""
    if not isinstance(wcs, Mapping):
        raise InvalidInputError(f"`wcs` must be a dict keyed by (visit, detector); got {type(wcs).__name__}")
    out = {}
    for k, w in wcs.items():
        try:
            kk = (int(k[0]), int(k[1]))
        except (TypeError, ValueError, IndexError):
            raise InvalidInputError(f"`wcs` keys must be (visit, detector) pairs; got {k!r}") from None
        if not hasattr(w, "pixel_to_world_values"):
            raise InvalidInputError(f"`wcs[{kk}]` is not an APE-14 WCS (no pixel_to_world_values)")
        out[kk] = w
    missing = [k for k in keys if k not in out]
    if missing:
        raise InvalidInputError(f"`wcs` has no entry for (visit, detector) {missing[:5]} present in `catalogs`")
    return out


def check_order(value: Any, name: str, lo: int = 0, hi: int = 9) -> int:
    """An integer polynomial order in [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
        raise InvalidInputError(f"`{name}` must be an integer in [{lo}, {hi}]; got {value!r}")
    return int(value)


def check_fraction(value: Any, name: str, *, upper_open: bool = True) -> float:
    """A float in [0, 1)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a number in [0, 1); got {value!r}") from None
    if not (0.0 <= v < 1.0 if upper_open else 0.0 <= v <= 1.0):
        raise InvalidInputError(f"`{name}` must be in [0, 1); got {value!r}")
    return v


def check_nonneg(value: Any, name: str) -> float:
    """A finite float >= 0."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a finite number >= 0; got {value!r}") from None
    if not (np.isfinite(v) and v >= 0):
        raise InvalidInputError(f"`{name}` must be a finite number >= 0; got {value!r}")
    return v


def check_positive(value: Any, name: str) -> float:
    """A finite float > 0."""
    v = check_nonneg(value, name)
    if v <= 0:
        raise InvalidInputError(f"`{name}` must be > 0; got {value!r}")
    return v


def fast_unique(a: np.ndarray, *, return_index: bool = False, return_inverse: bool = False):
    """Sorted unique values of a 1-D array by one stable argsort (numpy's hash-based
    ``unique`` is slow on millions of integers); optionally the first index of each value
    and the inverse mapping, as :func:`numpy.unique`."""
    a = np.asarray(a).ravel()
    order = np.argsort(a, kind="stable")
    s = a[order]
    flag = np.ones(s.size, bool)
    if s.size:
        flag[1:] = s[1:] != s[:-1]
    values = s[flag]
    out = [values]
    if return_index:
        out.append(order[flag])
    if return_inverse:
        inv = np.empty(a.size, np.int64)
        inv[order] = np.cumsum(flag) - 1
        out.append(inv)
    return out[0] if len(out) == 1 else tuple(out)
