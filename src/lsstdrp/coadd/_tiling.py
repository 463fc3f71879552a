"""Sky tiling: a tract (one TAN projection) cut into overlapping patches."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ._warp import _boundary, _check_wcs, _map

__all__ = ["Tract", "Patch", "select_inputs"]


def _tan_wcs(ra: float, dec: float, crpix_x: float, crpix_y: float, scale_deg: float) -> Any:
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra, dec]
    w.wcs.crpix = [crpix_x + 1.0, crpix_y + 1.0]  # FITS is 1-based
    w.wcs.cd = [[-scale_deg, 0.0], [0.0, scale_deg]]
    w.wcs.set()
    return w


@dataclasses.dataclass(frozen=True)
class Patch:
    """One patch of a tract: a rectangle of tract pixels with its own WCS.

    Attributes
    ----------
    index : (int, int)
        (ix, iy) patch index in the tract.
    x0, y0 : int
        Tract pixel of the patch's pixel (0, 0) (outer box, overlap included).
    shape : (int, int)
        (ny, nx) of the outer box.
    inner : (int, int, int, int)
        The inner (non-overlapping) box ``(x0, y0, x1, y1)`` in patch pixels, half-open.
    wcs : astropy.wcs.WCS
        TAN WCS of the patch (the tract's projection shifted to the patch origin).
    """

    index: tuple[int, int]
    x0: int
    y0: int
    shape: tuple[int, int]
    inner: tuple[int, int, int, int]
    wcs: Any


@dataclasses.dataclass(frozen=True)
class Tract:
    r"""A tract: one tangent-plane projection about ``(ra, dec)`` cut into patches.

    The tract is ``n_patches[0] x n_patches[1]`` patches of ``patch_size`` pixels
    (inner boxes tile the tract without gaps) each grown by ``overlap`` pixels on every
    side (clipped to the tract), as the LSST skymap's patches. Every patch shares the
    tract's projection, so patch pixels map to tract pixels by an integer offset and
    coadds of neighbouring patches agree in their overlap.

    Parameters
    ----------
    ra, dec : float
        Tract centre (degrees); the tangent point.
    pixel_scale_arcsec : float
        Pixel scale.
    n_patches : (int, int)
        Patches along x and y.
    patch_size : int
        Inner patch side (pixels).
    overlap : int
        Border added on each side of a patch (pixels).

    Examples
    --------
    >>> t = Tract(150.0, 2.0, n_patches=(3, 3), patch_size=1000, overlap=50)
    >>> p = t.patch(1, 1)
    >>> p.shape, p.x0, p.inner
    ((1100, 1100), 950, (50, 50, 1050, 1050))
    """

    ra: float
    dec: float
    pixel_scale_arcsec: float = 0.2
    n_patches: tuple[int, int] = (9, 9)
    patch_size: int = 4000
    overlap: int = 100

    def __post_init__(self) -> None:
        if not (np.isfinite(self.ra) and np.isfinite(self.dec) and -90 < self.dec < 90):
            raise InvalidInputError(f"`ra`, `dec` must be finite with |dec| < 90; got ({self.ra}, {self.dec})")
        if not self.pixel_scale_arcsec > 0:
            raise InvalidInputError(f"`pixel_scale_arcsec` must be > 0; got {self.pixel_scale_arcsec!r}")
        try:
            nx, ny = (int(v) for v in self.n_patches)
        except (TypeError, ValueError):
            raise InvalidInputError(f"`n_patches` must be (nx, ny); got {self.n_patches!r}") from None
        if nx < 1 or ny < 1:
            raise InvalidInputError(f"`n_patches` must be positive; got {self.n_patches!r}")
        if int(self.patch_size) < 1 or int(self.overlap) < 0:
            raise InvalidInputError("`patch_size` must be >= 1 and `overlap` >= 0")
        object.__setattr__(self, "n_patches", (nx, ny))

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the whole tract in pixels."""
        return (self.n_patches[1] * self.patch_size, self.n_patches[0] * self.patch_size)

    @property
    def wcs(self) -> Any:
        """TAN WCS of the whole tract (tangent point at the tract centre)."""
        ny, nx = self.shape
        return _tan_wcs(self.ra, self.dec, (nx - 1) / 2.0, (ny - 1) / 2.0, self.pixel_scale_arcsec / 3600.0)

    def patch(self, ix: int, iy: int) -> Patch:
        """The patch with index ``(ix, iy)``.

        Parameters
        ----------
        ix, iy : int
            Patch index along x and y.

        Returns
        -------
        Patch

        Raises
        ------
        InvalidInputError
            Index out of range.
        """
        nxp, nyp = self.n_patches
        if not (0 <= int(ix) < nxp and 0 <= int(iy) < nyp):
            raise InvalidInputError(f"patch index ({ix}, {iy}) outside the tract's {nxp} x {nyp} patches")
        ny, nx = self.shape
        s, o = int(self.patch_size), int(self.overlap)
        x0 = max(int(ix) * s - o, 0)
        y0 = max(int(iy) * s - o, 0)
        x1 = min((int(ix) + 1) * s + o, nx)
        y1 = min((int(iy) + 1) * s + o, ny)
        inner = (int(ix) * s - x0, int(iy) * s - y0, (int(ix) + 1) * s - x0, (int(iy) + 1) * s - y0)
        wcs = _tan_wcs(self.ra, self.dec, (nx - 1) / 2.0 - x0, (ny - 1) / 2.0 - y0, self.pixel_scale_arcsec / 3600.0)
        return Patch((int(ix), int(iy)), x0, y0, (y1 - y0, x1 - x0), inner, wcs)

    def patches(self) -> list[Patch]:
        """Every patch, row by row.

        Returns
        -------
        list of Patch
        """
        return [self.patch(ix, iy) for iy in range(self.n_patches[1]) for ix in range(self.n_patches[0])]

    def find_patch(self, ra: float, dec: float) -> Patch:
        """The patch whose inner box contains ``(ra, dec)``.

        Parameters
        ----------
        ra, dec : float
            Sky position (degrees).

        Returns
        -------
        Patch

        Raises
        ------
        InvalidInputError
            If the position lies outside the tract.
        """
        x, y = self.wcs.world_to_pixel_values(ra, dec)
        ix, iy = int(math.floor((float(x) + 0.5) / self.patch_size)), int(math.floor((float(y) + 0.5) / self.patch_size))
        return self.patch(ix, iy)


def _polygons_overlap(px: np.ndarray, py: np.ndarray, shape: tuple[int, int]) -> bool:
    """Does the closed polygon (px, py) overlap the box [-0.5, nx-0.5] x [-0.5, ny-0.5]?"""
    ny, nx = shape
    ok = np.isfinite(px) & np.isfinite(py)
    if not ok.all():
        return bool(ok.any() and np.any((px[ok] > -0.5) & (px[ok] < nx - 0.5) & (py[ok] > -0.5) & (py[ok] < ny - 0.5)))
    if np.any((px > -0.5) & (px < nx - 0.5) & (py > -0.5) & (py < ny - 0.5)):
        return True
    # a box corner (or the box centre) inside the polygon: the polygon covers the box
    bx, by = _boundary(shape, per_side=8)
    for x, y in zip(np.append(bx, (nx - 1) / 2.0), np.append(by, (ny - 1) / 2.0)):
        c = False
        for k in range(px.size):
            xa, ya, xb, yb = px[k], py[k], px[(k + 1) % px.size], py[(k + 1) % px.size]
            if (ya > y) != (yb > y) and x < xa + (y - ya) * (xb - xa) / (yb - ya):
                c = not c
        if c:
            return True
    return False


def select_inputs(patch: Any, inputs: Mapping[Any, tuple[Any, tuple[int, int]]]) -> list[Any]:
    """The keys of the inputs (e.g. ``(visit, detector)``) whose pixels overlap a patch.

    Parameters
    ----------
    patch : Patch or (wcs, shape)
        The output frame.
    inputs : mapping
        ``key -> (wcs, shape)`` of every candidate input (APE-14 WCS, (ny, nx)).

    Returns
    -------
    list
        The overlapping keys, in the mapping's order.

    Raises
    ------
    InvalidInputError
        A malformed patch or input entry.

    Notes
    -----
    Each input's outline (64 points along its pixel edges) is mapped to patch pixels
    through the sky; an input overlaps if an outline point falls inside the patch or the
    patch (its border points and centre) lies inside the outline.

    Examples
    --------
    >>> t = Tract(150.0, 2.0, n_patches=(3, 3), patch_size=500, overlap=20)
    >>> p = t.patch(0, 0)
    >>> select_inputs(p, {"a": (p.wcs, (100, 100)), "b": (t.patch(2, 2).wcs, (100, 100))})
    ['a']
    """
    if isinstance(patch, Patch):
        wcs_p, shape_p = patch.wcs, patch.shape
    else:
        try:
            wcs_p, shape_p = patch
        except (TypeError, ValueError):
            raise InvalidInputError("`patch` must be a Patch or a (wcs, shape) pair") from None
    _check_wcs(wcs_p, "patch.wcs")
    shape_p = (int(shape_p[0]), int(shape_p[1]))
    keep = []
    for key, entry in inputs.items():
        try:
            wcs_i, shape_i = entry
            shape_i = (int(shape_i[0]), int(shape_i[1]))
        except (TypeError, ValueError):
            raise InvalidInputError(f"`inputs[{key!r}]` must be a (wcs, (ny, nx)) pair") from None
        _check_wcs(wcs_i, f"inputs[{key!r}] wcs")
        bx, by = _boundary(shape_i)
        px, py = _map(wcs_i, wcs_p, bx, by)
        if _polygons_overlap(px, py, shape_p):
            keep.append(key)
    return keep
