"""Full-visit background: one smooth focal-plane model fitted to the sky of every detector."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.polynomial import legendre as leg

from .._errors import InvalidInputError
from ..core import Exposure
from ._background import estimate_background
from ._common import check_int, check_pos, project, tangent_basis, unit_vectors

__all__ = ["VisitBackground", "fit_visit_background"]

log = logging.getLogger("lsstdrp.characterize")


def _terms(order: int) -> list[tuple[int, int]]:
    return [(i, n - i) for n in range(order + 1) for i in range(n + 1)]


def _design(u: np.ndarray, v: np.ndarray, order: int) -> np.ndarray:
    lu = leg.legvander(u, order)
    lv = leg.legvander(v, order)
    return np.stack([lu[:, i] * lv[:, j] for i, j in _terms(order)], -1)


@dataclasses.dataclass(frozen=True, eq=False)
class VisitBackground:
    r"""Result of :func:`fit_visit_background`.

    Attributes
    ----------
    success : bool
    reason : str
    backgrounds : dict
        ``detector ->`` background image (float32, image units) evaluated from the
        focal-plane model.
    coefficients : numpy.ndarray
        Legendre coefficients of the model in the scaled focal-plane frame.
    order : int
    center : (float, float)
        Tangent point (ra, dec) of the focal-plane frame, degrees.
    scale_arcsec : float
        Half-width of the frame (arcsec) mapped to [-1, 1].
    node_residual_rms : float
        Rms of the mesh nodes about the model (image units).
    n_nodes : int
        Mesh nodes used.
    """

    success: bool
    reason: str
    backgrounds: dict
    coefficients: np.ndarray
    order: int
    center: tuple[float, float]
    scale_arcsec: float
    node_residual_rms: float
    n_nodes: int
    _wcs: dict = dataclasses.field(default_factory=dict, repr=False)

    def evaluate(self, detector: Any, x: Any, y: Any) -> np.ndarray:
        """The model at pixels (x, y) of ``detector``.

        Parameters
        ----------
        detector : hashable
            A key of :attr:`backgrounds`.
        x, y : array_like
            0-based pixel positions.

        Returns
        -------
        numpy.ndarray
        """
        if detector not in self._wcs:
            raise InvalidInputError(f"`detector` {detector!r} is not in this visit background")
        xb, yb = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        u, v = _frame(self._wcs[detector], xb.ravel(), yb.ravel(), self.center, self.scale_arcsec)
        return (_design(u, v, self.order) @ self.coefficients).reshape(xb.shape)


def _frame(wcs: Any, x: np.ndarray, y: np.ndarray, center: tuple[float, float], scale: float
           ) -> tuple[np.ndarray, np.ndarray]:
    ra, dec = wcs.pixel_to_world_values(x, y)
    xi, eta = project(np.asarray(ra, float), np.asarray(dec, float), tangent_basis(*center))
    return xi / scale, eta / scale


def fit_visit_background(exposures: Mapping, *, wcs: Mapping | None = None, order: int = 4, bin_size: int = 64,
                         statistic: str = "sextractor", detect_iterations: int = 1, clip_sigma: float = 3.0,
                         eval_step: int = 16, progress: bool = False) -> VisitBackground:
    r"""Fit one background model over the whole focal plane of a visit.

    Parameters
    ----------
    exposures : dict
        ``detector ->`` :class:`~lsstdrp.core.Exposure` (image with the sky still in,
        variance, mask, and a WCS unless ``wcs`` is given) or a 2-D image array.
    wcs : dict, optional
        ``detector ->`` APE-14 WCS placing the detector on the sky (default each
        exposure's ``wcs``); only relative positions matter, so an approximate WCS with
        the right layout is enough.
    order : int
        Total order of the Legendre polynomial in focal-plane coordinates (0-10).
    bin_size : int
        Mesh size (pixels) of the per-detector sky statistics.
    statistic : str
        Mesh statistic of :func:`estimate_background` (``"sextractor"`` mode estimate
        by default; ``"median"``, ``"mean"``).
    detect_iterations : int
        Source-masking iterations of :func:`estimate_background`.
    clip_sigma : float
        Mesh nodes farther than this many robust sigmas from the model are dropped
        (bright-star halos, trails).
    eval_step : int
        The model is evaluated every ``eval_step`` pixels and interpolated bicubically
        (it is smooth on the focal-plane scale).
    progress : bool
        Show a tqdm progress bar over detectors.

    Returns
    -------
    VisitBackground

    Raises
    ------
    InvalidInputError
        Empty input, a detector without WCS, invalid options.

    Notes
    -----
    Each detector's image is reduced to robust mesh statistics (with sources masked,
    :func:`estimate_background` with ``filter_size=1``), the mesh centres are placed in
    the visit's tangent plane through the WCS, and a single polynomial

    .. math:: B(\xi, \eta) = \sum_{i + j \le n} c_{ij} P_i(\xi / s) P_j(\eta / s)

    (Legendre, ``s`` the half-width of the focal plane) is fitted to all nodes by least
    squares with iterative ``clip_sigma`` rejection. The model is continuous across
    detector gaps by construction and each detector's background uses the information
    of the whole focal plane, so the noise of a few meshes and the edges of a detector
    (where a per-detector spline extrapolates) no longer set its accuracy. Structure
    smaller than the focal-plane scale (e.g. scattered light on one detector) is not
    modelled: follow with a per-detector :func:`estimate_background` of the residual
    image if needed.

    References
    ----------
    .. [1] Bosch, J. et al. 2018, PASJ 70, S5 (HSC full-focal-plane background).
    .. [2] Aihara, H. et al. 2019, PASJ 71, 114 (HSC-SSP PDR2: focal-plane sky model).

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> s = make_survey("tiny", rng=1, n_visits=1)
    >>> exps = {d: s.exposures[(v, d)] for v, d in s.keys()}
    >>> bg = fit_visit_background(exps, order=2)
    >>> bg.success, bg.backgrounds[0].shape
    (True, (256, 256))
    """
    if not isinstance(exposures, Mapping) or not exposures:
        raise InvalidInputError("`exposures` must be a non-empty dict detector -> Exposure or image")
    order = check_int(order, "order", 0, 10)
    bin_size = check_int(bin_size, "bin_size", 4, 4096)
    eval_step = check_int(eval_step, "eval_step", 1, 1024)
    clip_sigma = check_pos(clip_sigma, "clip_sigma")
    wcs = dict(wcs or {})
    items = list(exposures.items())
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="visit background", unit="det")
    nodes_u, nodes_v, vals, dets = [], [], [], []
    wcs_used, shapes = {}, {}
    cvec = np.zeros(3)
    for d, e in items:
        if isinstance(e, Exposure):
            img, var, mask = e.image, e.variance, e.mask
            w = wcs.get(d, e.wcs)
        else:
            img = np.asarray(e)
            var, mask = None, None
            w = wcs.get(d)
        if w is None or not hasattr(w, "pixel_to_world_values"):
            raise InvalidInputError(f"detector {d!r} has no WCS (give `wcs` or exposures with a wcs)")
        if np.ndim(img) != 2:
            raise InvalidInputError(f"`exposures[{d!r}]` must be a 2-D image; got shape {np.shape(img)}")
        bk = estimate_background(img, mask=mask, variance=var, bin_size=bin_size, filter_size=1, statistic=statistic,
                                 detect_iterations=detect_iterations)
        ny, nx = img.shape
        my, mx = bk.mesh_background.shape
        by, bx = min(bin_size, ny), min(bin_size, nx)
        cy = np.minimum((np.arange(my) + 0.5) * by - 0.5, ny - 1)
        cx = np.minimum((np.arange(mx) + 0.5) * bx - 0.5, nx - 1)
        gx, gy = np.meshgrid(cx, cy)
        ok = bk.mesh_valid.ravel()
        ra, dec = w.pixel_to_world_values(gx.ravel()[ok], gy.ravel()[ok])
        nodes_u.append(np.asarray(ra, float))
        nodes_v.append(np.asarray(dec, float))
        vals.append(bk.mesh_background.ravel()[ok].astype(float))
        dets.append(np.full(int(ok.sum()), len(wcs_used)))
        r0, d0 = w.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
        cvec += unit_vectors(float(r0), float(d0))
        wcs_used[d] = w
        shapes[d] = (ny, nx)
    center = (float(np.degrees(np.arctan2(cvec[1], cvec[0])) % 360.0),
              float(np.degrees(np.arctan2(cvec[2], np.hypot(cvec[0], cvec[1])))))
    ra = np.concatenate(nodes_u)
    dec = np.concatenate(nodes_v)
    z = np.concatenate(vals)
    xi, eta = project(ra, dec, tangent_basis(*center))
    # frame half-width from the detector corners
    corners = []
    for d, w in wcs_used.items():
        ny, nx = shapes[d]
        cr, cd = w.pixel_to_world_values(np.array([-0.5, nx - 0.5, nx - 0.5, -0.5]),
                                         np.array([-0.5, -0.5, ny - 0.5, ny - 0.5]))
        corners.append(np.stack(project(np.asarray(cr, float), np.asarray(cd, float), tangent_basis(*center)), -1))
    scale = float(np.max(np.abs(np.concatenate(corners)))) * 1.0001
    u, v = xi / scale, eta / scale
    n_terms = len(_terms(order))
    if z.size < n_terms + 1:
        return VisitBackground(False, f"{z.size} valid mesh nodes cannot constrain {n_terms} coefficients", {},
                               np.zeros(0), order, center, scale, float("nan"), int(z.size), wcs_used)
    a = _design(u, v, order)
    used = np.isfinite(z)
    for _ in range(10):
        c, *_ = np.linalg.lstsq(a[used], z[used], rcond=None)
        res = z - a @ c
        sig = 1.4826 * float(np.median(np.abs(res[used] - np.median(res[used])))) or 1e-30
        new = np.isfinite(z) & (np.abs(res) <= clip_sigma * sig)
        if np.array_equal(new, used) or new.sum() <= n_terms:
            break
        used = new
    rms = float(np.sqrt(np.mean(res[used] ** 2)))
    backgrounds = {}
    from scipy.interpolate import RectBivariateSpline

    for d, w in wcs_used.items():
        ny, nx = shapes[d]
        gx = np.unique(np.append(np.arange(0, nx, eval_step, dtype=float), nx - 1.0))
        gy = np.unique(np.append(np.arange(0, ny, eval_step, dtype=float), ny - 1.0))
        xx, yy = np.meshgrid(gx, gy)
        uu, vv = _frame(w, xx.ravel(), yy.ravel(), center, scale)
        grid = (_design(uu, vv, order) @ c).reshape(gy.size, gx.size)
        if gx.size >= 4 and gy.size >= 4:
            spl = RectBivariateSpline(gy, gx, grid, kx=3, ky=3)
            bg = spl(np.arange(ny), np.arange(nx))
        else:
            xx, yy = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float))
            uu, vv = _frame(w, xx.ravel(), yy.ravel(), center, scale)
            bg = (_design(uu, vv, order) @ c).reshape(ny, nx)
        backgrounds[d] = bg.astype(np.float32)
    log.debug("fit_visit_background: %d nodes, rms %.3g", int(used.sum()), rms)
    return VisitBackground(True, "", backgrounds, c, order, center, scale, rms, int(used.sum()), wcs_used)
