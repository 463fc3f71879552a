"""Residual diagnostics of a PSF fit: mean residual stamp and size/shape maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InvalidInputError

__all__ = ["ResidualMaps", "residual_maps"]


@dataclass(frozen=True)
class ResidualMaps:
    """Binned PSF residuals of a fit (see :func:`residual_maps`).

    Attributes
    ----------
    dT_T, de1, de2 : numpy.ndarray, shape (ny_bins, nx_bins)
        Mean star-minus-model size and ellipticity residuals per bin (NaN if empty).
    counts : numpy.ndarray of int, shape (ny_bins, nx_bins)
        Stars per bin.
    x_edges, y_edges : numpy.ndarray
        Bin edges (pixels, or focal-plane units with ``focal_plane=True``).
    mean_residual : numpy.ndarray, shape (s, s)
        Mean normalised residual stamp :math:`(d - m)/\\sigma` of the selected stars
        (a pattern here is a PSF-shape error common to the stars).
    """

    dT_T: np.ndarray
    de1: np.ndarray
    de2: np.ndarray
    counts: np.ndarray
    x_edges: np.ndarray
    y_edges: np.ndarray
    mean_residual: np.ndarray


def residual_maps(result: Any, *, bins: int | tuple[int, int] = 4, which: str = "used",
                  bounds: Any = None, transforms: Any = None) -> ResidualMaps:
    """Size/shape residual maps and the mean residual stamp of a :class:`PsfFitResult`.

    Parameters
    ----------
    result : PsfFitResult
        From :func:`fit_psf` or :func:`fit_visit_psf`.
    bins : int or (int, int)
        Bins along x and y.
    which : {'used', 'reserved', 'all'}
        Stars entering the maps.
    bounds : (xmin, xmax, ymin, ymax), optional
        Map area (default the stars' extent).
    transforms : mapping, optional
        ``detector -> (2, 3)`` affine matrices (e.g. ``result.psf.transforms`` of a visit
        fit) to map the stars to focal-plane coordinates first.

    Returns
    -------
    ResidualMaps

    Raises
    ------
    InvalidInputError
        Unknown ``which`` or bad ``bins``.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from lsstdrp.psf import residual_maps
    >>> class R:  # anything with the result's ``stars`` and ``residuals``
    ...     stars = QTable({"x": [1.0, 9.0], "y": [1.0, 9.0], "dT_T": [0.01, -0.01], "de1": [0.0, 0.0],
    ...                     "de2": [0.0, 0.0], "psf_used": [True, True], "psf_reserved": [False, False]})
    ...     residuals = np.zeros((2, 5, 5))
    >>> m = residual_maps(R(), bins=2)
    >>> m.dT_T.tolist(), m.counts.tolist()
    ([[0.01, nan], [nan, -0.01]], [[1, 0], [0, 1]])
    """
    if which not in ("used", "reserved", "all"):
        raise InvalidInputError(f"`which` must be 'used', 'reserved' or 'all'; got {which!r}")
    nbx, nby = (bins, bins) if np.ndim(bins) == 0 else tuple(bins)
    if int(nbx) < 1 or int(nby) < 1:
        raise InvalidInputError(f"`bins` must be >= 1; got {bins!r}")
    t = result.stars
    x = np.asarray(getattr(t["x"], "value", t["x"]), dtype=np.float64)
    y = np.asarray(getattr(t["y"], "value", t["y"]), dtype=np.float64)
    if transforms is not None:
        det = np.asarray(t["detector"])
        X, Y = x.copy(), y.copy()
        for d, A in transforms.items():
            s = det == d
            X[s] = A[0, 0] * x[s] + A[0, 1] * y[s] + A[0, 2]
            Y[s] = A[1, 0] * x[s] + A[1, 1] * y[s] + A[1, 2]
        x, y = X, Y
    sel = np.ones(len(t), bool)
    if which == "used":
        sel = np.asarray(t["psf_used"], bool)
    elif which == "reserved":
        sel = np.asarray(t["psf_reserved"], bool)
    if bounds is None:
        bounds = (x[sel].min(), x[sel].max() + 1e-9, y[sel].min(), y[sel].max() + 1e-9) if sel.any() else (0, 1, 0, 1)
    xe = np.linspace(bounds[0], bounds[1], int(nbx) + 1)
    ye = np.linspace(bounds[2], bounds[3], int(nby) + 1)
    out = {}
    counts = np.zeros((int(nby), int(nbx)), dtype=np.int64)
    for name in ("dT_T", "de1", "de2"):
        v = np.asarray(t[name], dtype=np.float64)
        ok = sel & np.isfinite(v)
        s, _, _ = np.histogram2d(y[ok], x[ok], bins=(ye, xe), weights=v[ok])
        c, _, _ = np.histogram2d(y[ok], x[ok], bins=(ye, xe))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[name] = np.where(c > 0, s / np.where(c > 0, c, 1), np.nan)
        if name == "dT_T":
            counts = c.astype(np.int64)
    res = np.asarray(result.residuals)
    mean = res[sel].mean(axis=0) if sel.any() and res.size else np.zeros(res.shape[1:])
    return ResidualMaps(out["dT_T"], out["de1"], out["de2"], counts, xe, ye, mean)
