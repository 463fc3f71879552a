"""``select_psf_stars``: PSF-star candidates from a source catalog."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from astropy.table import QTable, Table

from .._errors import InvalidInputError
from ..core import as_rng

__all__ = ["select_psf_stars"]

#: Reasons a source is not a PSF star, in the order they are tested.
REJECT_REASONS = (
    "non-finite position",
    "flagged",
    "S/N below snr_min",
    "S/N above snr_max",
    "size unknown",
    "not in the reference catalog",
    "off the stellar size locus",
    "neighbour within isolation_radius",
)


def _col(t: Any, name: str) -> np.ndarray:
    c = t[name]
    return np.asarray(getattr(c, "value", c))


def _default_flags(colnames: list[str]) -> list[str]:
    out = []
    for c in colnames:
        if c.startswith("pixel_flag_") and c not in ("pixel_flag_interpolated", "pixel_flag_suspect"):
            out.append(c)
        elif c in ("centroid_flag", "shape_flag", "psf_flux_flag"):
            out.append(c)
    return out


def _locus(size: np.ndarray, ok: np.ndarray, window: float) -> tuple[float, float]:
    """Centre and robust width of the densest narrow band of log(size) (the stellar locus)."""
    ls = np.log(size[ok])
    if ls.size == 0:
        return math.nan, math.nan
    srt = np.sort(ls)
    # densest window of width `window` in log size
    j = np.searchsorted(srt, srt + window, side="right")
    counts = j - np.arange(srt.size)
    i = int(np.argmax(counts))
    inwin = srt[i : j[i]]
    med = float(np.median(inwin))
    # iterate a clipped median/MAD around it
    sel = ls
    for _ in range(5):
        mad = 1.4826 * float(np.median(np.abs(sel - med))) if sel.size else 0.0
        wid = max(mad, 1e-4)
        sel = ls[np.abs(ls - med) < 3 * wid]
        if sel.size == 0:
            break
        med = float(np.median(sel))
    mad = 1.4826 * float(np.median(np.abs(sel - med))) if sel.size else math.nan
    return med, mad


def select_psf_stars(
    catalog: Any,
    *,
    flux_column: str = "psf_flux",
    flux_err_column: str | None = "psf_flux_err",
    snr_column: str | None = None,
    size_columns: tuple[str, ...] | str | None = None,
    flag_columns: list[str] | None = None,
    snr_min: float = 50.0,
    snr_max: float = math.inf,
    size_nsigma: float = 3.0,
    size_min_width: float = 0.01,
    locus_window: float = 0.1,
    use_size_locus: bool = True,
    reference: Any = None,
    match_radius: float = 2.0,
    isolation_radius: float | None = 20.0,
    isolation_flux_ratio: float = 0.01,
    reserve_fraction: float = 0.2,
    max_stars: int | None = None,
    rng: Any = 0,
) -> QTable:
    r"""Select PSF stars from a source catalog (size–magnitude locus, S/N, flags, isolation).

    Every row is kept; the selection is reported in new columns. A source is a PSF
    candidate when it (in this order, the first failed test giving the reason):

    1. has a finite position;
    2. has none of ``flag_columns`` set (default: the ``pixel_flag_*`` columns except
       interpolated/suspect, ``centroid_flag``, ``shape_flag``, ``psf_flux_flag``);
    3. has ``snr_min <= S/N <= snr_max`` (S/N from ``snr_column`` or
       ``flux_column / flux_err_column``);
    4. has a finite positive size (``T = shape_xx + shape_yy`` by default, or the
       sum of ``size_columns``);
    5. matches a ``reference`` star within ``match_radius`` pixels (if a reference is
       given);
    6. lies on the stellar size locus (if ``use_size_locus``): the densest band of
       width ``locus_window`` in :math:`\ln T` among the sources that passed 1–5, refined
       by a clipped median :math:`\mu` and MAD width :math:`\sigma`; kept when
       :math:`|\ln T - \mu| < ` ``size_nsigma`` :math:`\max(\sigma,` ``size_min_width``:math:`)`
       (stars share the PSF size; galaxies are larger, cosmic rays and hot pixels smaller);
    7. has no other source brighter than ``isolation_flux_ratio`` times its flux within
       ``isolation_radius`` pixels (neighbours bias the PSF wings).

    Of the candidates, a random ``reserve_fraction`` is held out (``psf_reserved``) to
    validate the model; ``max_stars`` keeps the highest-S/N candidates.

    Parameters
    ----------
    catalog : astropy.table.Table or QTable
        Sources with ``x, y``, a flux and its error (or an S/N column), and sizes.
    flux_column, flux_err_column : str
        Flux and 1-sigma error columns for the S/N and the isolation test.
    snr_column : str, optional
        A precomputed S/N column (e.g. SExtractor ``SNR_WIN``).
    size_columns : str or tuple of str, optional
        Column(s) summed to the size (default ``("shape_xx", "shape_yy")``).
    flag_columns : list of str, optional
        Boolean (or non-zero integer) columns that exclude.
    snr_min, snr_max : float
        S/N window.
    size_nsigma, size_min_width, locus_window : float
        Stellar-locus tolerance, its floor (in :math:`\ln T`) and the search window.
    use_size_locus : bool
        Apply the size-locus cut (False: rely on ``reference`` or pre-selected stars).
    reference : astropy.table.Table, optional
        Known stars with ``x, y`` in the same pixel frame (e.g. a matched Gaia catalog).
    match_radius : float
        Pixels, for ``reference``.
    isolation_radius : float or None
        Pixels; None disables the isolation test.
    isolation_flux_ratio : float
        Neighbours fainter than this fraction of the source's flux are ignored.
    reserve_fraction : float
        Fraction of candidates held out, in [0, 1).
    max_stars : int, optional
        Keep at most this many candidates (the highest S/N).
    rng : None, int or numpy.random.Generator
        Random choice of the reserved stars.

    Returns
    -------
    astropy.table.QTable
        A copy of ``catalog`` with the columns ``psf_candidate`` (bool: passed, reserved
        included), ``psf_reserved`` (bool), ``psf_reject_reason`` (str, "" for
        candidates), ``psf_snr`` and ``psf_size`` (the size used, pixels²). The locus
        centre and width are in ``meta["psf_size_locus"]``.

    Raises
    ------
    InvalidInputError
        Missing columns or invalid options.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from lsstdrp.psf import select_psf_stars
    >>> rng = np.random.default_rng(1)
    >>> n = 60
    >>> cat = QTable({"x": rng.uniform(0, 1000, n), "y": rng.uniform(0, 1000, n),
    ...               "psf_flux": np.full(n, 1e5), "psf_flux_err": np.full(n, 100.0),
    ...               "shape_xx": np.r_[np.full(40, 4.0), np.full(20, 9.0)] + rng.normal(0, 0.01, n),
    ...               "shape_yy": np.full(n, 4.0)})
    >>> sel = select_psf_stars(cat, reserve_fraction=0.0, isolation_radius=None)
    >>> int(sel["psf_candidate"].sum()), str(sel["psf_reject_reason"][-1])
    (40, 'off the stellar size locus')
    """
    if not isinstance(catalog, (Table, QTable)):
        raise InvalidInputError(f"`catalog` must be an astropy Table or QTable; got {type(catalog).__name__}")
    cols = catalog.colnames
    for c in ("x", "y"):
        if c not in cols:
            raise InvalidInputError(f"`catalog` must have columns 'x' and 'y'; it has {cols}")
    if not (0 <= reserve_fraction < 1):
        raise InvalidInputError(f"`reserve_fraction` must be in [0, 1); got {reserve_fraction!r}")
    for name, v in (("snr_min", snr_min), ("size_nsigma", size_nsigma), ("match_radius", match_radius),
                    ("isolation_flux_ratio", isolation_flux_ratio), ("locus_window", locus_window),
                    ("size_min_width", size_min_width)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise InvalidInputError(f"`{name}` must be a finite number >= 0; got {v!r}")
    if max_stars is not None and (isinstance(max_stars, bool) or not isinstance(max_stars, (int, np.integer)) or max_stars < 1):
        raise InvalidInputError(f"`max_stars` must be None or an integer >= 1; got {max_stars!r}")
    out = QTable(catalog, copy=True)
    n = len(out)
    x = np.asarray(_col(out, "x"), dtype=np.float64)
    y = np.asarray(_col(out, "y"), dtype=np.float64)
    # S/N
    if snr_column is not None:
        if snr_column not in cols:
            raise InvalidInputError(f"`snr_column` {snr_column!r} is not a column of `catalog` ({cols})")
        snr = np.asarray(_col(out, snr_column), dtype=np.float64)
        flux = np.asarray(_col(out, flux_column), dtype=np.float64) if flux_column in cols else snr
    else:
        if flux_column not in cols or flux_err_column is None or flux_err_column not in cols:
            raise InvalidInputError(
                f"`catalog` needs `flux_column` {flux_column!r} and `flux_err_column` {flux_err_column!r} "
                f"(or give `snr_column`); it has {cols}"
            )
        flux = np.asarray(_col(out, flux_column), dtype=np.float64)
        ferr = np.asarray(_col(out, flux_err_column), dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(ferr > 0, flux / ferr, np.nan)
    # size
    if size_columns is None:
        size_columns = ("shape_xx", "shape_yy")
    if isinstance(size_columns, str):
        size_columns = (size_columns,)
    for c in size_columns:
        if c not in cols:
            raise InvalidInputError(f"size column {c!r} is not in `catalog` ({cols}); pass `size_columns`")
    size = np.zeros(n)
    for c in size_columns:
        size = size + np.asarray(_col(out, c), dtype=np.float64)
    # flags
    if flag_columns is None:
        flag_columns = _default_flags(cols)
    flagged = np.zeros(n, bool)
    for c in flag_columns:
        if c not in cols:
            raise InvalidInputError(f"flag column {c!r} is not in `catalog` ({cols})")
        flagged |= np.asarray(_col(out, c)).astype(bool)

    reason = np.array([""] * n, dtype=object)

    def _fail(cond: np.ndarray, why: str) -> None:
        sel = cond & (reason == "")
        reason[sel] = why

    _fail(~(np.isfinite(x) & np.isfinite(y)), "non-finite position")
    _fail(flagged, "flagged")
    _fail(~(snr >= snr_min), "S/N below snr_min")
    _fail(snr > snr_max, "S/N above snr_max")
    _fail(~(np.isfinite(size) & (size > 0)), "size unknown")
    if reference is not None:
        if not isinstance(reference, (Table, QTable)) or "x" not in reference.colnames or "y" not in reference.colnames:
            raise InvalidInputError("`reference` must be a table with columns 'x' and 'y'")
        from scipy.spatial import cKDTree

        rx = np.asarray(_col(reference, "x"), dtype=np.float64)
        ry = np.asarray(_col(reference, "y"), dtype=np.float64)
        okr = np.isfinite(rx) & np.isfinite(ry)
        matched = np.zeros(n, bool)
        if okr.any():
            fin = np.isfinite(x) & np.isfinite(y)
            d, _ = cKDTree(np.c_[rx[okr], ry[okr]]).query(np.c_[x[fin], y[fin]], k=1)
            matched[fin] = d <= match_radius
        _fail(~matched, "not in the reference catalog")
    centre, width = math.nan, math.nan
    if use_size_locus:
        ok = reason == ""
        centre, width = _locus(size, ok, locus_window)
        if math.isfinite(centre):
            tol = size_nsigma * max(width, size_min_width)
            with np.errstate(invalid="ignore", divide="ignore"):
                off = ~(np.abs(np.log(np.where(size > 0, size, np.nan)) - centre) < tol)
            _fail(off, "off the stellar size locus")
    if isolation_radius is not None and isolation_radius > 0 and n > 1:
        from scipy.spatial import cKDTree

        fin = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
        tree = cKDTree(np.c_[x[fin], y[fin]])
        fl = np.where(np.isfinite(flux), flux, 0.0)
        crowded = np.zeros(n, bool)
        for i in np.flatnonzero(reason == ""):
            nb = fin[tree.query_ball_point([x[i], y[i]], isolation_radius)]
            nb = nb[nb != i]
            if nb.size and np.any(fl[nb] > isolation_flux_ratio * fl[i]):
                crowded[i] = True
        _fail(crowded, "neighbour within isolation_radius")
    cand = reason == ""
    if max_stars is not None and cand.sum() > max_stars:
        idx = np.flatnonzero(cand)
        keep = idx[np.argsort(-snr[idx])[:max_stars]]
        drop = np.setdiff1d(idx, keep)
        reason[drop] = "beyond max_stars"
        cand = reason == ""
    reserved = np.zeros(n, bool)
    idx = np.flatnonzero(cand)
    nres = int(round(reserve_fraction * idx.size))
    if nres:
        g = as_rng(rng)
        reserved[g.choice(idx, size=nres, replace=False)] = True
    out["psf_candidate"] = cand
    out["psf_reserved"] = reserved
    out["psf_reject_reason"] = np.array([str(r) for r in reason], dtype="U40") if n else np.array([], dtype="U40")
    out["psf_snr"] = snr
    out["psf_size"] = size
    out.meta["psf_size_locus"] = {"ln_size_centre": centre, "ln_size_width": width}
    return out
