"""Defects (hot pixels, dead pixels, bad columns) from master darks and flats."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import ndimage

from ...core import BBox, InvalidInputError
from .._common import check_finite_scalar, check_int

__all__ = ["DefectResult", "find_defects"]


@dataclasses.dataclass(frozen=True, eq=False)
class DefectResult:
    """Defects found in master calibration frames.

    Attributes
    ----------
    mask : numpy.ndarray of bool
        True = defect (for ``Calibs.defects``).
    boxes : tuple of BBox
        The mask as column runs (bad columns as one box each, single pixels as 1 x 1).
    hot, dead, bad_columns : numpy.ndarray of bool
        The three kinds (a pixel may be in several).
    thresholds : dict
        Hot rate (e⁻/s), dead and bright response limits used.
    """

    mask: np.ndarray
    boxes: tuple[BBox, ...]
    hot: np.ndarray
    dead: np.ndarray
    bad_columns: np.ndarray
    thresholds: dict

    @property
    def n_defects(self) -> int:
        """Number of defective pixels."""
        return int(self.mask.sum())


def _column_runs(mask: np.ndarray) -> tuple[BBox, ...]:
    boxes = []
    for x in np.flatnonzero(mask.any(axis=0)):
        col = np.concatenate([[False], mask[:, x], [False]])
        d = np.diff(col.astype(np.int8))
        for y0, y1 in zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True):
            boxes.append(BBox(int(y0), int(y1), int(x), int(x) + 1))
    return tuple(sorted(boxes, key=BBox.to_tuple))


def _robust_sigma(v: np.ndarray) -> tuple[float, float]:
    med = float(np.median(v))
    return med, 1.4826 * float(np.median(np.abs(v - med)))


def find_defects(
    dark: Any = None,
    flat: Any = None,
    *,
    hot_rate: float | None = None,
    nsigma: float = 6.0,
    dead_fraction: float = 0.2,
    bright_fraction: float = 0.2,
    smooth: int = 15,
    column_fraction: float = 1.0,
    min_column_run: int = 10,
) -> DefectResult:
    """Hot pixels from a master dark, dead/bright pixels and bad columns from a master flat.

    - hot: :math:`D > \\max(r_{hot}, \\tilde D + \\kappa\\sigma_D)` (e⁻/s; median and
      MAD of the dark);
    - dead / bright: the flat divided by its running median (``smooth`` px, which
      removes vignetting and edge roll-off) below ``1 - dead_fraction`` or above
      ``1 + bright_fraction``;
    - bad columns: runs of at least ``min_column_run`` flagged pixels along a column
      become one defect, and a column with more than ``column_fraction`` of its pixels
      flagged is flagged whole; pixels between flagged pixels of a run are included.

    Parameters
    ----------
    dark : array_like, optional
        Master dark, e⁻/s.
    flat : array_like, optional
        Master flat (mean ~1), same shape.
    hot_rate : float, optional
        e⁻/s above which a pixel is hot (default: only the sigma cut).
    nsigma : float
        Sigma cut of the dark.
    dead_fraction, bright_fraction : float
        Relative response deficit / excess that makes a pixel defective.
    smooth : int
        Size of the running median of the flat (odd, px).
    column_fraction : float
        Fraction of flagged pixels above which a whole column is flagged (1: never;
        partially blocked columns stay partial).
    min_column_run : int
        Shortest run along a column reported as a bad-column segment.

    Returns
    -------
    DefectResult

    Raises
    ------
    InvalidInputError
        Neither frame given, different shapes, non-2-D input, bad thresholds.

    Examples
    --------
    >>> import numpy as np
    >>> dark = np.full((50, 40), 0.02); dark[10, 10] = 40.0
    >>> flat = np.ones((50, 40)); flat[20:, 30] = 0.3
    >>> r = find_defects(dark, flat, hot_rate=5.0)
    >>> r.n_defects, r.boxes
    (31, (BBox(y0=10, y1=11, x0=10, x1=11), BBox(y0=20, y1=50, x0=30, x1=31)))
    """
    if dark is None and flat is None:
        raise InvalidInputError("give a master `dark` and/or a master `flat`")
    nsigma = check_finite_scalar(nsigma, "nsigma", minimum=0.0, strict=True)
    dead_fraction = check_finite_scalar(dead_fraction, "dead_fraction", minimum=0.0, strict=True)
    bright_fraction = check_finite_scalar(bright_fraction, "bright_fraction", minimum=0.0, strict=True)
    column_fraction = check_finite_scalar(column_fraction, "column_fraction", minimum=0.0, strict=True)
    smooth = check_int(smooth, "smooth", minimum=3)
    min_column_run = check_int(min_column_run, "min_column_run", minimum=1)
    arrs = {}
    for name, v in (("dark", dark), ("flat", flat)):
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float64)
        if a.ndim != 2 or a.size == 0:
            raise InvalidInputError(f"`{name}` must be a 2-D image; got shape {a.shape}")
        arrs[name] = a
    shapes = {a.shape for a in arrs.values()}
    if len(shapes) > 1:
        raise InvalidInputError(f"`dark` {arrs['dark'].shape} and `flat` {arrs['flat'].shape} have different shapes")
    shape = shapes.pop()
    hot = np.zeros(shape, bool)
    dead = np.zeros(shape, bool)
    th: dict[str, float] = {}
    if "dark" in arrs:
        d = arrs["dark"]
        fin = np.isfinite(d)
        med, sig = _robust_sigma(d[fin])
        lim = med + nsigma * sig
        if hot_rate is not None:
            lim = max(lim, check_finite_scalar(hot_rate, "hot_rate", minimum=0.0))
        hot = fin & (d > lim)
        hot |= ~fin
        th["hot_rate"] = lim
    if "flat" in arrs:
        f = arrs["flat"]
        fin = np.isfinite(f)
        size = smooth | 1
        ref = ndimage.median_filter(np.where(fin, f, np.nanmedian(f)), size=size, mode="nearest")
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.where(ref > 0, f / ref, 0.0)
        dead = ~fin | (rel < 1 - dead_fraction) | (rel > 1 + bright_fraction)
        th["dead_below"] = 1 - dead_fraction
        th["bright_above"] = 1 + bright_fraction
    any_bad = hot | dead
    cols = np.zeros(shape, bool)
    frac = any_bad.mean(axis=0)
    cols[:, frac > column_fraction] = True
    for b in _column_runs(any_bad):
        if b.shape[0] >= min_column_run:
            cols[b.slices] = True
    mask = any_bad | cols
    return DefectResult(mask=mask, boxes=_column_runs(mask), hot=hot, dead=dead, bad_columns=cols, thresholds=th)
