"""Export of pixel -> sky mappings to FITS TAN-SIP WCSs, with their errors measured."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
from astropy.wcs import WCS, Sip

from ._geometry import angular_separation_arcsec, local_basis, project, unit_vectors

__all__ = ["TanSipExport", "export_tan_sip", "export_many"]


@dataclasses.dataclass(frozen=True)
class TanSipExport:
    """A TAN-SIP WCS and how well it reproduces the model it was fitted to.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
    max_error_mas, rms_error_mas : float
        Angular distance between ``wcs.pixel_to_world_values`` and the model on an
        independent check grid (the midpoints of the fitting grid and its nodes).
    inverse_max_error_px : float
        Largest error of the non-iterative SIP inverse (AP, BP) on that grid, pixels.
    """

    wcs: WCS
    max_error_mas: float
    rms_error_mas: float
    inverse_max_error_px: float


def _monomials(order: int, lo: int) -> list[tuple[int, int]]:
    return [(n - j, j) for n in range(lo, order + 1) for j in range(n + 1)]


def _design(u: np.ndarray, v: np.ndarray, terms: list[tuple[int, int]], half: float) -> np.ndarray:
    return np.stack([(u / half) ** p * (v / half) ** q for p, q in terms], axis=-1)


@dataclasses.dataclass(frozen=True)
class _Grids:
    bbox: tuple[float, float, float, float]
    gx: np.ndarray
    gy: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    xc: float
    yc: float
    half: float
    pinv: np.ndarray  # (n_terms, n_grid²)


def _grids(bbox: tuple[float, float, float, float], n_grid: int, terms: list[tuple[int, int]]) -> _Grids:
    x0, x1, y0, y1 = (float(b) for b in bbox)
    xc, yc = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    half = 0.5 * max(x1 - x0, y1 - y0)
    gx, gy = np.meshgrid(np.linspace(x0, x1, n_grid), np.linspace(y0, y1, n_grid))
    gx, gy = gx.ravel(), gy.ravel()
    nc = 2 * n_grid - 1  # nodes and midpoints
    cx, cy = np.meshgrid(np.linspace(x0, x1, nc), np.linspace(y0, y1, nc))
    cx, cy = cx.ravel(), cy.ravel()
    design = _design(gx - xc, gy - yc, terms, half)
    return _Grids((x0, x1, y0, y1), gx, gy, cx, cy, xc, yc, half, np.linalg.pinv(design))


def _fit_one(grid: _Grids, vec_grid: np.ndarray, vec_check: np.ndarray, vec_center: np.ndarray, terms,
             sip_order: int, inverse_order: int) -> TanSipExport:
    ra_c = math.degrees(math.atan2(vec_center[1], vec_center[0])) % 360.0
    dec_c = math.degrees(math.atan2(vec_center[2], math.hypot(vec_center[0], vec_center[1])))
    ra_c, dec_c = round(ra_c, 10) % 360.0, round(dec_c, 10)
    c, e, n = local_basis(unit_vectors(ra_c, dec_c))
    xi, eta = project(vec_grid, c, e, n)
    xi, eta = xi / 3600.0, eta / 3600.0  # degrees
    half = grid.half
    coef = grid.pinv @ np.stack([xi, eta], -1)
    coef = coef / np.array([half ** (p + q) for p, q in terms])[:, None]
    # a constant term absorbs the (sub-µas) offset of the rounded tangent point
    const = coef[0]
    cd = np.array([[coef[1, 0], coef[2, 0]], [coef[1, 1], coef[2, 1]]])
    cd_inv = np.linalg.inv(cd)
    shift = cd_inv @ const  # xi = CD (U + shift + ...): CRPIX = centre - shift
    a = np.zeros((sip_order + 1, sip_order + 1))
    b = np.zeros((sip_order + 1, sip_order + 1))
    for (p, q), cc in zip(terms, coef):
        if p + q >= 2:
            a[p, q], b[p, q] = cd_inv @ cc
    crx, cry = grid.xc - shift[0], grid.yc - shift[1]
    up = cd_inv[0, 0] * xi + cd_inv[0, 1] * eta
    vp = cd_inv[1, 0] * xi + cd_inv[1, 1] * eta
    iterms = _monomials(inverse_order, 1)
    di = _design(up, vp, iterms, half)
    ci, *_ = np.linalg.lstsq(di, np.stack([grid.gx - crx - up, grid.gy - cry - vp], -1), rcond=None)
    ci = ci / np.array([half ** (p + q) for p, q in iterms])[:, None]
    ap = np.zeros((inverse_order + 1, inverse_order + 1))
    bp = np.zeros((inverse_order + 1, inverse_order + 1))
    for (p, q), cc in zip(iterms, ci):
        ap[p, q], bp[p, q] = cc
    crpix = np.array([crx + 1.0, cry + 1.0])  # FITS is 1-based
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.crval = [ra_c, dec_c]
    w.wcs.crpix = crpix
    w.wcs.cd = cd
    w.sip = Sip(a, b, ap, bp, crpix)
    x0, x1, y0, y1 = grid.bbox
    w.pixel_shape = (int(round(x1 - x0)), int(round(y1 - y0)))
    w.wcs.set()
    fra, fdec = w.all_pix2world(grid.cx, grid.cy, 0)
    err = angular_separation_arcsec(vec_check, unit_vectors(fra, fdec)) * 1000.0
    # non-iterative inverse: TAN + CD^-1 then U = U' + AP(U', V')
    txi, teta = project(vec_check, c, e, n)
    upc = (cd_inv[0, 0] * txi + cd_inv[0, 1] * teta) / 3600.0
    vpc = (cd_inv[1, 0] * txi + cd_inv[1, 1] * teta) / 3600.0
    corr = _design(upc, vpc, iterms, 1.0) @ np.stack([[ap[p, q] for p, q in iterms], [bp[p, q] for p, q in iterms]], -1)
    ix = crx + upc + corr[:, 0]
    iy = cry + vpc + corr[:, 1]
    inv_err = float(np.max(np.hypot(ix - grid.cx, iy - grid.cy)))
    return TanSipExport(w, float(err.max()), float(np.sqrt(np.mean(err**2))), inv_err)


def export_tan_sip(to_vectors: Callable[[np.ndarray, np.ndarray], np.ndarray], bbox: tuple[float, float, float, float],
                   *, sip_order: int = 4, inverse_order: int | None = None, n_grid: int = 12) -> TanSipExport:
    r"""Fit a TAN-SIP WCS to a mapping ``(x, y) -> unit vectors`` over a pixel box.

    Parameters
    ----------
    to_vectors : callable
        ``(x, y) -> (n, 3)`` unit vectors of the sky positions of 0-based pixels.
    bbox : tuple
        ``(x_min, x_max, y_min, y_max)`` pixel range (outer pixel edges).
    sip_order : int
        Order of the forward polynomials A, B.
    inverse_order : int, optional
        Order of AP, BP (default ``sip_order + 1``).
    n_grid : int
        Fitting points per axis.

    Returns
    -------
    TanSipExport

    Notes
    -----
    ``CRVAL`` is the mapping's position of the box centre (rounded to 1e-10 deg so a
    FITS header keeps it) and ``CRPIX`` the centre + 1 (FITS is 1-based), corrected by
    the sub-µas shift the rounding causes. Grid points are projected about ``CRVAL``
    and fitted by linear least squares in scaled pixel offsets ``U, V`` with
    :math:`(\xi, \eta) = CD\,(U + A(U, V), V + B(U, V))` (Shupe et al. 2005); the
    inverse ``U = U' + AP(U', V')``, :math:`(U', V') = CD^{-1}(\xi, \eta)`, is fitted
    on the same grid. Errors are measured on an independent grid (nodes and midpoints).
    """
    inverse_order = sip_order + 1 if inverse_order is None else inverse_order
    terms = _monomials(sip_order, 0)
    grid = _grids(bbox, n_grid, terms)
    vc = to_vectors(np.array([grid.xc]), np.array([grid.yc]))[0]
    return _fit_one(grid, to_vectors(grid.gx, grid.gy), to_vectors(grid.cx, grid.cy), vc, terms, sip_order,
                    inverse_order)


def export_many(model, keys: list[tuple[int, int]], *, sip_order: int = 4, n_grid: int = 12
                ) -> dict[tuple[int, int], TanSipExport]:
    """:func:`export_tan_sip` for many (visit, detector) of an :class:`AstrometricModel` at once."""
    terms = _monomials(sip_order, 0)
    grids: dict[int, _Grids] = {}
    for _, d in keys:
        if d not in grids:
            di = int(model._di(d))
            grids[d] = _grids(tuple(model.detector_bbox[di]), n_grid, terms)
    vis = np.array([k[0] for k in keys], np.int64)
    dets = np.array([k[1] for k in keys], np.int64)

    def stacked(attr: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        xs = [getattr(grids[d], attr[0]) for d in dets]
        ys = [getattr(grids[d], attr[1]) for d in dets]
        sizes = np.array([len(a) for a in xs])
        return (np.concatenate(xs), np.concatenate(ys), np.repeat(vis, sizes), np.repeat(dets, sizes))

    out: dict[tuple[int, int], TanSipExport] = {}
    if not keys:
        return out
    gx, gy, gv, gd = stacked("gx gy".split())
    vg = model.pixel_to_vectors(gv, gd, gx, gy)
    cx, cy, cv, cd = stacked("cx cy".split())
    vchk = model.pixel_to_vectors(cv, cd, cx, cy)
    ctr = model.pixel_to_vectors(vis, dets, np.array([grids[d].xc for d in dets]),
                                 np.array([grids[d].yc for d in dets]))
    ng = np.array([len(grids[d].gx) for d in dets])
    nc = np.array([len(grids[d].cx) for d in dets])
    og = np.concatenate([[0], np.cumsum(ng)])
    oc = np.concatenate([[0], np.cumsum(nc)])
    for i, key in enumerate(keys):
        out[key] = _fit_one(grids[key[1]], vg[og[i]:og[i + 1]], vchk[oc[i]:oc[i + 1]], ctr[i], terms, sip_order,
                            sip_order + 1)
    return out
