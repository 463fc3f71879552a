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
    ex = np.asarray(terms, dtype=np.int64)
    order = int(ex.sum(axis=1).max())
    uu = np.asarray(u, float) / half
    vv = np.asarray(v, float) / half
    pu = np.ones(uu.shape + (order + 1,))
    pv = np.ones(vv.shape + (order + 1,))
    for k in range(1, order + 1):
        pu[..., k] = pu[..., k - 1] * uu
        pv[..., k] = pv[..., k - 1] * vv
    return pu[..., ex[:, 0]] * pv[..., ex[:, 1]]


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


def _basis_batch(vc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CRVAL (rounded to 1e-10 deg) of centre vectors (K, 3) and its tangent basis."""
    ra = np.round(np.rad2deg(np.arctan2(vc[:, 1], vc[:, 0])) % 360.0, 10) % 360.0
    dec = np.round(np.rad2deg(np.arctan2(vc[:, 2], np.hypot(vc[:, 0], vc[:, 1]))), 10)
    c, e, n = local_basis(unit_vectors(ra, dec))
    return ra, dec, c, e, n


def _fit_batch(grid: _Grids, vg: np.ndarray, vchk: np.ndarray, vc: np.ndarray, terms, sip_order: int,
               inverse_order: int) -> list[TanSipExport]:
    """TAN-SIP fits of K exposures of one detector at once; vg (K, G, 3), vchk (K, C, 3), vc (K, 3)."""
    ra_c, dec_c, c, e, n = _basis_batch(vc)
    pc = np.einsum("kgm,km->kg", vg, c)
    xi = np.einsum("kgm,km->kg", vg, e) / pc * (180.0 / np.pi)  # degrees
    eta = np.einsum("kgm,km->kg", vg, n) / pc * (180.0 / np.pi)
    half = grid.half
    scale = np.array([half ** (p + q) for p, q in terms])
    cx_ = np.einsum("tg,kg->kt", grid.pinv, xi) / scale
    cy_ = np.einsum("tg,kg->kt", grid.pinv, eta) / scale
    # term 0 is the constant (absorbs the sub-µas offset of the rounded tangent point), 1: U, 2: V
    cd = np.stack([np.stack([cx_[:, 1], cx_[:, 2]], -1), np.stack([cy_[:, 1], cy_[:, 2]], -1)], 1)  # (K, 2, 2)
    cd_inv = np.linalg.inv(cd)
    shift = np.einsum("kab,kb->ka", cd_inv, np.stack([cx_[:, 0], cy_[:, 0]], -1))
    ab = np.einsum("kab,kbt->kat", cd_inv, np.stack([cx_, cy_], 1))  # (K, 2, T): CD^-1 c_pq
    crx = grid.xc - shift[:, 0]
    cry = grid.yc - shift[:, 1]
    up = cd_inv[:, 0, 0, None] * xi + cd_inv[:, 0, 1, None] * eta
    vp = cd_inv[:, 1, 0, None] * xi + cd_inv[:, 1, 1, None] * eta
    iterms = _monomials(inverse_order, 1)
    di = _design(up, vp, iterms, half)  # (K, G, T')
    target = np.stack([grid.gx[None] - crx[:, None] - up, grid.gy[None] - cry[:, None] - vp], -1)  # (K, G, 2)
    ci = np.linalg.solve(np.einsum("kgt,kgs->kts", di, di), np.einsum("kgt,kga->kta", di, target))
    ci = ci / np.array([half ** (p + q) for p, q in iterms])[None, :, None]
    out = []
    x0, x1, y0, y1 = grid.bbox
    for k in range(vg.shape[0]):
        a = np.zeros((sip_order + 1, sip_order + 1))
        b = np.zeros((sip_order + 1, sip_order + 1))
        for t, (p, q) in enumerate(terms):
            if p + q >= 2:
                a[p, q], b[p, q] = ab[k, 0, t], ab[k, 1, t]
        ap = np.zeros((inverse_order + 1, inverse_order + 1))
        bp = np.zeros((inverse_order + 1, inverse_order + 1))
        for t, (p, q) in enumerate(iterms):
            ap[p, q], bp[p, q] = ci[k, t, 0], ci[k, t, 1]
        crpix = np.array([crx[k] + 1.0, cry[k] + 1.0])  # FITS is 1-based
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
        w.wcs.cunit = ["deg", "deg"]
        w.wcs.radesys = "ICRS"
        w.wcs.crval = [ra_c[k], dec_c[k]]
        w.wcs.crpix = crpix
        w.wcs.cd = cd[k]
        w.sip = Sip(a, b, ap, bp, crpix)
        w.pixel_shape = (int(round(x1 - x0)), int(round(y1 - y0)))
        w.wcs.set()
        fra, fdec = w.all_pix2world(grid.cx, grid.cy, 0)
        err = angular_separation_arcsec(vchk[k], unit_vectors(fra, fdec)) * 1000.0
        # non-iterative inverse: TAN + CD^-1, then U = U' + AP(U', V')
        pcc = vchk[k] @ c[k]
        txi = (vchk[k] @ e[k]) / pcc * (180.0 / np.pi)
        teta = (vchk[k] @ n[k]) / pcc * (180.0 / np.pi)
        upc = cd_inv[k, 0, 0] * txi + cd_inv[k, 0, 1] * teta
        vpc = cd_inv[k, 1, 0] * txi + cd_inv[k, 1, 1] * teta
        corr = _design(upc, vpc, iterms, 1.0) @ np.stack([[ap[p, q] for p, q in iterms],
                                                          [bp[p, q] for p, q in iterms]], -1)
        inv_err = float(np.max(np.hypot(crx[k] + upc + corr[:, 0] - grid.cx, cry[k] + vpc + corr[:, 1] - grid.cy)))
        out.append(TanSipExport(w, float(err.max()), float(np.sqrt(np.mean(err**2))), inv_err))
    return out


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
    vc = to_vectors(np.array([grid.xc]), np.array([grid.yc]))
    return _fit_batch(grid, to_vectors(grid.gx, grid.gy)[None], to_vectors(grid.cx, grid.cy)[None], vc, terms,
                      sip_order, inverse_order)[0]


def export_many(model, keys: list[tuple[int, int]], *, sip_order: int = 4, n_grid: int = 12
                ) -> dict[tuple[int, int], TanSipExport]:
    """:func:`export_tan_sip` for many (visit, detector) of an :class:`AstrometricModel` at once."""
    terms = _monomials(sip_order, 0)
    out: dict[tuple[int, int], TanSipExport] = {}
    by_det: dict[int, list] = {}
    for key in keys:
        by_det.setdefault(int(key[1]), []).append(key)
    for d, ks in by_det.items():
        di = int(model._di(d))
        grid = _grids(tuple(model.detector_bbox[di]), n_grid, terms)
        vis = np.array([k[0] for k in ks], np.int64)
        ng, nc = grid.gx.size, grid.cx.size
        vg = model.pixel_to_vectors(np.repeat(vis, ng), np.full(vis.size * ng, d), np.tile(grid.gx, vis.size),
                                    np.tile(grid.gy, vis.size)).reshape(vis.size, ng, 3)
        vchk = model.pixel_to_vectors(np.repeat(vis, nc), np.full(vis.size * nc, d), np.tile(grid.cx, vis.size),
                                      np.tile(grid.cy, vis.size)).reshape(vis.size, nc, 3)
        vc = model.pixel_to_vectors(vis, np.full(vis.size, d), np.full(vis.size, grid.xc), np.full(vis.size, grid.yc))
        for key, exp in zip(ks, _fit_batch(grid, vg, vchk, vc, terms, sip_order, sip_order + 1)):
            out[key] = exp
    return {k: out[k] for k in keys}
