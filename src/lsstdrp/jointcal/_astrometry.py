"""Joint astrometric fit of all visits: composed polynomial model, sparse least squares."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._errors import InvalidInputError
from ..core import as_rng
from ._associate import Association
from ._export import export_many
from ._geometry import ARCSEC, earth_barycentric_au, local_basis, project, radec_from_vectors, unit_vectors
from ._inputs import check_fraction, check_nonneg, check_order, check_positive, column, fast_unique
from ._model import AstrometricModel, fit_poly, identity_visit_coef
from ._poly import n_terms
from ._solver import CameraBlock, Problem, covariance, jc_dot, solve_step, subset_leverage

__all__ = ["AstrometryResult", "ReducedOrder", "fit_astrometry"]

log = logging.getLogger("lsstdrp.jointcal")
_YEAR = 365.25
#: Weak Gaussian priors on the motion of stars without a reference (mas/yr, mas).
PM_PRIOR_MAS_YR = 100.0
PARALLAX_PRIOR_MAS = 50.0


@dataclasses.dataclass(frozen=True)
class ReducedOrder:
    """A visit or detector map fitted with a lower order than requested (or not at all).

    Attributes
    ----------
    kind : str
        ``"visit"`` or ``"detector"``.
    id : int
        Visit or detector id.
    requested, used : int
        Requested and used polynomial order; ``used = -1``: not fitted (no WCS).
    n_stars : int
        Distinct fitted stars on it.
    """

    kind: str
    id: int
    requested: int
    used: int
    n_stars: int


@dataclasses.dataclass(frozen=True, eq=False)
class AstrometryResult:
    """The joint astrometric solution (see :func:`fit_astrometry`).

    Attributes
    ----------
    success : bool
    reason : str
        Empty on success; why the fit failed otherwise.
    wcs : dict
        ``(visit, detector) -> astropy.wcs.WCS`` TAN-SIP export of the fitted model
        (empty when ``success`` is False).
    model : AstrometricModel or None
        The exact fitted model (``pixel_to_sky``, ``tangent_plane`` ...).
    export_error : astropy.table.QTable
        ``visit, detector, max_error_mas, rms_error_mas, inverse_max_error_px``: how far
        each TAN-SIP WCS is from the model.
    chi2, dof, chi2_dof : float
        Total chi² of the fitted measurements and reference priors, degrees of freedom
        (data - parameters) and their ratio.
    chi2_dof_bright : float
        chi² of the measurements of stars with mean S/N >= ``bright_snr`` over its
        expectation (their rows minus their leverage, i.e. the parameters' share,
        estimated on up to 1000 of those stars).
    dof_bright : float
        The expectation of the bright stars' chi² (their degrees of freedom).
    n_measurements, n_stars, n_clipped, n_reserved, n_reference : int
        Fitted measurements (after clipping), fitted stars, clipped measurements,
        reserved stars, fitted stars tied to the reference catalog.
    iterations : int
        Gauss–Newton steps taken.
    epoch : float
        MJD of the star positions (mean epoch of the fitted measurements).
    rms_per_visit, rms_per_detector : astropy.table.QTable
        ``visit`` (or ``detector``), ``n``, ``rms_mas`` (per axis), ``chi2_per_meas``.
    residuals : astropy.table.QTable
        One row per associated measurement: ``row, visit, detector, object, x, y``,
        focal-plane frame ``u, v`` (arcsec), tangent-plane ``xi, eta`` (arcsec, east and
        north at the visit's tangent point), residual ``dxi_mas, deta_mas`` (model minus
        star), ``chi`` (whitened norm), ``used``, ``reserved``, ``clipped``.
    stars : astropy.table.QTable
        One row per associated object: ``object, ra, dec`` (deg at ``epoch``),
        ``ra_err_mas, dec_err_mas``, ``pmra, pmdec, parallax`` (with ``*_err``; the
        reference values or zero when not fitted), ``status`` ("fit", "reserved",
        "other": positioned with the final model but not used), ``n_used``.
    validation : dict
        Reserved stars: ``n_stars, n_measurements, chi2_dof, rms_mas``.
    reduced : tuple of ReducedOrder
        Maps fitted with a lower order than requested, or not at all.
    placement : astropy.table.QTable or None
        ``detector, shift_x_mm, shift_y_mm, rotation_rad`` and their ``*_err``:
        detector placement relative to the nominal layout, gauge: zero mean shift and
        rotation (see :func:`fit_astrometry` Notes); None without a nominal layout.
    placement_chi2_dof : float
        Goodness of the placement decomposition (NaN without a nominal layout).
    covariance : numpy.ndarray
        Covariance of the camera parameters (visit and detector maps).
    """

    success: bool
    reason: str
    wcs: dict
    model: AstrometricModel | None
    export_error: QTable
    chi2: float
    dof: float
    chi2_dof: float
    chi2_dof_bright: float
    dof_bright: float
    n_measurements: int
    n_stars: int
    n_clipped: int
    n_reserved: int
    n_reference: int
    iterations: int
    epoch: float
    rms_per_visit: QTable
    rms_per_detector: QTable
    residuals: QTable
    stars: QTable
    validation: dict
    reduced: tuple
    placement: QTable | None
    placement_chi2_dof: float
    covariance: np.ndarray
    _visit_cols: np.ndarray = dataclasses.field(repr=False, default=None)
    _detector_cols: np.ndarray = dataclasses.field(repr=False, default=None)

    def __repr__(self) -> str:
        return (f"AstrometryResult(success={self.success}, chi2_dof={self.chi2_dof:.3f}, "
                f"n_measurements={self.n_measurements}, n_stars={self.n_stars}, n_clipped={self.n_clipped}, "
                f"wcs={len(self.wcs)} exposures)")

    def wcs_jacobian(self, visit: int, detector: int, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Derivatives of the fitted sky position of pixels with respect to the camera parameters.

        Parameters
        ----------
        visit, detector : int
            The exposure.
        x, y : array_like
            0-based pixel coordinates.

        Returns
        -------
        jacobian : numpy.ndarray, shape (n, 2, m)
            d(east, north) / d(parameter), in mas per parameter unit, for the ``m``
            free parameters the exposure depends on.
        columns : numpy.ndarray of int, shape (m,)
            Their indices in :attr:`covariance`.
        """
        if self.model is None:
            raise InvalidInputError("the fit failed; there is no model")
        m = self.model
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        y = np.atleast_1d(np.asarray(y, dtype=np.float64))
        vi = int(m._vi(visit))
        di = int(m._di(detector))
        phi = m.detector_basis(np.full(x.shape, di), x, y)
        uv = phi @ m.detector_coef[di].T
        psi, pu, pv = m.visit_basis(uv, grad=True)
        g = np.stack([np.stack([pu @ m.visit_coef[vi, c], pv @ m.visit_coef[vi, c]], -1) for c in range(2)], 1)
        nt_v, nt_d = psi.shape[1], phi.shape[1]
        jac = np.zeros((len(x), 2, 2 * nt_v + 2 * nt_d))
        for c in range(2):
            jac[:, c, c * nt_v:(c + 1) * nt_v] = psi
            for cc in range(2):
                jac[:, c, 2 * nt_v + cc * nt_d:2 * nt_v + (cc + 1) * nt_d] = g[:, c, cc, None] * phi
        cols = np.concatenate([self._visit_cols[vi].ravel(), self._detector_cols[di].ravel()])
        keep = cols < self.covariance.shape[0]
        return jac[:, :, keep] * 1000.0, cols[keep]

    def wcs_error(self, visit: int, detector: int, x: Any, y: Any) -> np.ndarray:
        """Predicted covariance (n, 2, 2) of the fitted sky position of pixels, in mas².

        Propagates the camera-parameter covariance through the model at ``(x, y)``;
        axes are (east, north) at the visit's tangent point.

        Parameters
        ----------
        visit, detector : int
            The exposure.
        x, y : array_like
            0-based pixel coordinates.

        Returns
        -------
        numpy.ndarray
        """
        jk, cols = self.wcs_jacobian(visit, detector, x, y)
        sub = self.covariance[np.ix_(cols, cols)]
        return np.einsum("nap,pq,nbq->nab", jk, sub, jk)


# ------------------------------------------------------------------------------------ state
@dataclasses.dataclass
class _Stars:
    p0: np.ndarray        # (n_s, 3)
    e: np.ndarray
    n: np.ndarray
    theta: np.ndarray     # (n_s, k)
    ref_j: np.ndarray     # (n_s, k, k) whitened reference prior rows: residual = ref_j @ theta - ref_z
    ref_z: np.ndarray     # (n_s, k)
    base_j: np.ndarray    # (n_s, k, k) prior of a star without an active reference tie
    has_prior: np.ndarray  # (n_s,) bool (reference tie active)
    fixed_motion: np.ndarray  # (n_s, 3) known (pmra, pmdec, parallax) applied in static mode

    def prior(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Effective whitened prior rows (J, residual) of stars ``idx``."""
        hp = self.has_prior[idx, None, None]
        j = np.where(hp, self.ref_j[idx], self.base_j[idx])
        z = np.where(hp[:, :, 0], self.ref_z[idx], 0.0)
        return j, np.einsum("spk,sk->sp", j, self.theta[idx]) - z


@dataclasses.dataclass
class _Meas:
    x: np.ndarray
    y: np.ndarray
    cov: np.ndarray       # (n, 3) pixel covariance (xx, yy, xy)
    vi: np.ndarray
    di: np.ndarray
    star: np.ndarray      # star index (-1 none)
    dt: np.ndarray        # years from the epoch
    pe: np.ndarray        # Earth position projected on the star's east/north (au), (n, 2)


def _inv_chol_2x2(c: np.ndarray) -> np.ndarray:
    """Whitening matrices W = L^-1 of 2x2 covariances (n, 2, 2), L L^T = C."""
    a, b, d = c[:, 0, 0], c[:, 0, 1], c[:, 1, 1]
    l11 = np.sqrt(a)
    l21 = b / l11
    l22 = np.sqrt(np.maximum(d - l21 * l21, 1e-300))
    w = np.zeros_like(c)
    w[:, 0, 0] = 1.0 / l11
    w[:, 1, 1] = 1.0 / l22
    w[:, 1, 0] = -l21 / (l11 * l22)
    return w


def _motion_matrix(k: int, dt: np.ndarray, pe: np.ndarray) -> np.ndarray:
    """K (n, 2, k): star offset (arcsec) = K theta."""
    n = len(dt)
    kmat = np.zeros((n, 2, k))
    kmat[:, 0, 0] = 1.0
    kmat[:, 1, 1] = 1.0
    if k == 5:
        kmat[:, 0, 2] = dt / 1000.0
        kmat[:, 1, 3] = dt / 1000.0
        kmat[:, 0, 4] = -pe[:, 0] / 1000.0
        kmat[:, 1, 4] = -pe[:, 1] / 1000.0
    return kmat


class _Evaluator:
    r"""Model, residuals and whitened Jacobian factors for a subset of measurements.

    For measurement ``i`` (visit ``v``, detector ``d``, star ``s``): frame position
    ``U = P_d(x)``, model ``t = V_v(U)`` with ``G = dV_v/dU``; the pixel Jacobian
    ``J = G dP_d/dx`` maps the pixel covariance to ``C = J C_pix J^T + floor² I``,
    whitened by ``W = L^-1`` (``L L^T = C``); the star is at ``p_s + o e_s + o' n_s``
    with ``(o, o') = K theta_s`` (plus the known motion of a reference star in the
    static model), projected about the visit's tangent point with Jacobian ``D``; the
    residual is ``r = t - TAN_v(star)``. Returned: ``phi, psi`` (bases), ``uv``, ``tp``,
    ``r``, ``e = W r``, ``w``, ``wg = W G`` and ``js = -W D K``. Computed by the numba
    kernel :func:`_kernels.eval_astrometry`; ``tests/jointcal/test_solver.py`` holds a
    plain-numpy twin.
    """

    def __init__(self, model: AstrometricModel, meas: _Meas, stars: _Stars, k: int, floor_arcsec: float):
        self.model, self.meas, self.stars, self.k, self.floor = model, meas, stars, k, floor_arcsec

    _cache_idx: Any = None
    _cache: Any = None

    def _gather(self, idx: np.ndarray) -> tuple:
        if self._cache_idx is idx:
            return self._cache
        me = self.meas
        g = (me.x[idx], me.y[idx], me.cov[idx], me.vi[idx].astype(np.int64), me.di[idx].astype(np.int64),
             me.star[idx].astype(np.int64), me.dt[idx], me.pe[idx])
        self._cache_idx, self._cache = idx, g
        return g

    def restrict(self, idx: np.ndarray, res: dict, keep: np.ndarray) -> tuple[np.ndarray, dict]:
        """``idx[keep]`` and the residual dict restricted to it (no re-evaluation)."""
        new = idx[keep]
        if self._cache_idx is idx:
            self._cache_idx, self._cache = new, tuple(a[keep] for a in self._cache)
        return new, {k_: v[keep] for k_, v in res.items()}

    def residuals(self, idx: np.ndarray, theta: np.ndarray | None = None) -> dict:
        from . import _kernels
        from ._poly import exponents, order_of_terms

        m, st = self.model, self.stars
        n = len(idx)
        ntd, ntv, k = m.nt_detector, m.nt_visit, self.k
        out = {"phi": np.empty((n, ntd)), "psi": np.empty((n, ntv)), "uv": np.empty((n, 2)),
               "tp": np.empty((n, 2)), "r": np.empty((n, 2)), "e": np.empty((n, 2)), "w": np.empty((n, 2, 2)),
               "wg": np.empty((n, 2, 2)), "js": np.empty((n, 2, k))}
        th = st.theta if theta is None else theta
        _kernels.eval_astrometry(
            *self._gather(idx), m.detector_center, m.detector_scale,
            m.detector_coef, exponents(order_of_terms(ntd)), m.frame_center, float(m.frame_scale), m.visit_coef,
            exponents(order_of_terms(ntv)), m.tangent, st.p0, st.e, st.n, np.ascontiguousarray(th),
            st.fixed_motion, float(self.floor) ** 2, ARCSEC,
            out["phi"], out["psi"], out["uv"], out["tp"], out["r"], out["e"], out["w"], out["wg"], out["js"])
        return out


# ------------------------------------------------------------------------------------ setup
def _detector_boxes(assoc: Association, det_ids: np.ndarray, x: np.ndarray, y: np.ndarray,
                    dets: np.ndarray) -> np.ndarray:
    box = np.zeros((len(det_ids), 4))
    for i, d in enumerate(det_ids):
        sel = dets == d
        shape = None
        for (kv, kd), w in assoc.wcs.items():
            if kd == d and getattr(w, "pixel_shape", None) is not None:
                shape = w.pixel_shape
                break
        if shape is not None:
            nx, ny = (int(s) for s in shape)
            box[i] = (-0.5, nx - 0.5, -0.5, ny - 0.5)
        else:
            box[i] = (np.floor(x[sel].min()) - 0.5, np.ceil(x[sel].max()) + 0.5,
                      np.floor(y[sel].min()) - 0.5, np.ceil(y[sel].max()) + 0.5)
    return box


def _grid(box: np.ndarray, n: int = 7) -> tuple[np.ndarray, np.ndarray]:
    gx, gy = np.meshgrid(np.linspace(box[0], box[1], n), np.linspace(box[2], box[3], n))
    return gx.ravel(), gy.ravel()


def _initial_model(assoc: Association, vis_ids, det_ids, vorder, dorder, ref_vi, box, present) -> AstrometricModel:
    """Initial model from the initial WCSs (see fit_astrometry Notes)."""
    nv, nd = len(vis_ids), len(det_ids)
    ntv, ntd = n_terms(int(vorder.max())), n_terms(int(dorder.max()))
    center = np.stack([(box[:, 0] + box[:, 1]) / 2, (box[:, 2] + box[:, 3]) / 2], 1)
    scale = np.stack([(box[:, 1] - box[:, 0]) / 2, (box[:, 3] - box[:, 2]) / 2], 1)
    # tangent points: mean direction of the detector centres of each visit
    tangent = np.zeros((nv, 3, 3))
    for v in range(nv):
        vecs = []
        for d in range(nd):
            if present[v, d]:
                w = assoc.wcs[(int(vis_ids[v]), int(det_ids[d]))]
                ra, dec = w.pixel_to_world_values(center[d, 0], center[d, 1])
                vecs.append(unit_vectors(float(ra), float(dec)))
        c, e, n = local_basis(np.mean(vecs, axis=0))
        tangent[v] = np.stack([c, e, n])

    def target(v: int, d: int, gx, gy):
        w = assoc.wcs[(int(vis_ids[v]), int(det_ids[d]))]
        ra, dec = w.pixel_to_world_values(gx, gy)
        xi, eta = project(unit_vectors(np.asarray(ra), np.asarray(dec)), *tangent[v])
        return np.stack([xi, eta], -1)

    det_coef = np.zeros((nd, 2, ntd))
    vis_coef = np.zeros((nv, 2, ntv))
    det_done = np.zeros(nd, bool)
    vis_done = np.zeros(nv, bool)
    for d in range(nd):
        if present[ref_vi, d]:
            gx, gy = _grid(box[d])
            det_coef[d] = fit_poly((gx - center[d, 0]) / scale[d, 0], (gy - center[d, 1]) / scale[d, 1],
                                   target(ref_vi, d, gx, gy), int(dorder[d]), ntd)
            det_done[d] = True
    # frame normalisation from the reference visit's detectors
    corners = []
    for d in np.nonzero(det_done)[0]:
        gx, gy = _grid(box[d], 3)
        phi = fit_basis(gx, gy, center[d], scale[d], ntd)
        corners.append(phi @ det_coef[d].T)
    corners = np.concatenate(corners)
    fc = np.zeros(2)
    rscale = float(np.max(np.hypot(corners[:, 0], corners[:, 1]))) * 1.05
    vis_coef[ref_vi] = identity_visit_coef(ntv, fc, rscale)
    vis_done[ref_vi] = True
    for _ in range(nv + nd):
        progress = False
        for v in np.nonzero(~vis_done)[0]:
            ds = np.nonzero(present[v] & det_done)[0]
            if ds.size == 0:
                continue
            uvs, tgs = [], []
            for d in ds:
                gx, gy = _grid(box[d])
                uvs.append(fit_basis(gx, gy, center[d], scale[d], ntd) @ det_coef[d].T)
                tgs.append(target(v, d, gx, gy))
            uv = np.concatenate(uvs)
            vis_coef[v] = fit_poly((uv[:, 0] - fc[0]) / rscale, (uv[:, 1] - fc[1]) / rscale, np.concatenate(tgs),
                                   int(vorder[v]), ntv)
            vis_done[v] = True
            progress = True
        for d in np.nonzero(~det_done)[0]:
            vs = np.nonzero(present[:, d] & vis_done)[0]
            if vs.size == 0:
                continue
            v = vs[0]
            gx, gy = _grid(box[d])
            uv = _invert_visit(vis_coef[v], target(v, d, gx, gy), fc, rscale)
            det_coef[d] = fit_poly((gx - center[d, 0]) / scale[d, 0], (gy - center[d, 1]) / scale[d, 1], uv,
                                   int(dorder[d]), ntd)
            det_done[d] = True
            progress = True
        if vis_done.all() and det_done.all():
            break
        if not progress:
            raise InvalidInputError("the visits and detectors do not form one connected set (no shared stars)")
    return AstrometricModel(
        visits=np.asarray(vis_ids, np.int64), detectors=np.asarray(det_ids, np.int64),
        visit_order=np.asarray(vorder, np.int64), detector_order=np.asarray(dorder, np.int64),
        visit_coef=vis_coef, detector_coef=det_coef, detector_center=center, detector_scale=scale,
        detector_bbox=box, frame_center=fc, frame_scale=rscale, tangent=tangent,
        reference_visit=int(vis_ids[ref_vi]))


def fit_basis(gx, gy, center, scale, nt):
    from ._poly import order_of_terms, vander

    return vander((gx - center[0]) / scale[0], (gy - center[1]) / scale[1], order_of_terms(nt))


def _invert_visit(coef: np.ndarray, target: np.ndarray, fc: np.ndarray, rscale: float) -> np.ndarray:
    """Frame coordinates (n, 2) whose visit map gives ``target`` (Newton iterations)."""
    from ._poly import order_of_terms, vander_grad

    order = order_of_terms(coef.shape[1])
    lin = np.array([[coef[0, 1], coef[0, 2]], [coef[1, 1], coef[1, 2]]]) / rscale
    uv = (np.linalg.solve(lin, (target - coef[:, 0]).T)).T + fc
    for _ in range(20):
        val, du, dv = vander_grad((uv[:, 0] - fc[0]) / rscale, (uv[:, 1] - fc[1]) / rscale, order)
        f = val @ coef.T - target
        jac = np.stack([du @ coef.T, dv @ coef.T], -1) / rscale
        step = np.linalg.solve(jac, f[..., None])[..., 0]
        uv = uv - step
        if np.max(np.abs(step)) < 1e-9:
            break
    return uv


# ------------------------------------------------------------------------------------ fit
def fit_astrometry(association: Association, *, visit_order: int = 3, detector_order: int = 3,
                   fit_motion: bool = False, systematic_error_mas: float = 0.0, clip_sigma: float = 5.0,
                   reserve_fraction: float = 0.1, min_snr: float = 5.0, isolated_only: bool = True,
                   min_stars_per_term: float = 3.0, bright_snr: float = 100.0, max_iter: int = 15,
                   reference_visit: int | None = None,
                   nominal_focal_plane: Callable[[Any, Any, Any], tuple[Any, Any]] | None = None,
                   sip_order: int | None = None, rng: Any = None, progress: bool = False) -> AstrometryResult:
    r"""Fit the astrometric calibration of all visits jointly (Gaia fixes the large scales).

    Parameters
    ----------
    association : Association
        From :func:`associate` (measurements, objects, reference matches, initial WCS).
    visit_order, detector_order : int
        Total order of the per-visit and per-detector polynomials (1-7).
    fit_motion : bool
        Fit proper motion and parallax of every star (reference stars with their Gaia
        values as priors, others with weak priors of 100 mas/yr and 50 mas); otherwise
        stars are static at the fit epoch and reference stars move with their
        catalog proper motion and parallax.
    systematic_error_mas : float
        Per-axis error added in quadrature to every measurement (>= 0).
    clip_sigma : float
        Outlier threshold on the whitened 2-D residual norm; the worst measurement of a
        star beyond it is removed per iteration (and a reference tie beyond it).
    reserve_fraction : float
        Fraction of the eligible stars held out of the fit and used for validation.
    min_snr : float
        Minimum measurement S/N (flux / error) used in the fit.
    isolated_only : bool
        Fit only objects marked ``isolated`` by :func:`associate`.
    min_stars_per_term : float
        A map needs ``min_stars_per_term * n_terms(order)`` distinct stars; otherwise
        its order is reduced (down to 1; below that it is not fitted), and listed in
        ``reduced``.
    bright_snr : float
        Mean measurement S/N defining the bright stars of ``chi2_dof_bright``.
    max_iter : int
        Maximum Gauss–Newton iterations (outlier rejection included).
    reference_visit : int, optional
        The visit whose map is held at the identity (default: the one with the most
        fitted measurements among those covering every detector).
    nominal_focal_plane : callable, optional
        ``(detector, x, y) -> (fx, fy)`` nominal focal-plane position (mm) of pixels;
        when given, the result's ``placement`` holds each detector's shift and rotation
        relative to it (e.g. ``FocalPlane.nominal_pixel_to_focal``).
    sip_order : int, optional
        Order of the exported TAN-SIP polynomials (default ``max(3, visit_order,
        detector_order) + 1``).
    rng : None, int or numpy.random.Generator
        Seed for the choice of reserved stars.
    progress : bool
        Show a tqdm progress bar over the iterations.

    Returns
    -------
    AstrometryResult
        Frozen: ``wcs`` dict (TAN-SIP per (visit, detector)) with ``export_error``,
        ``model``, chi²/dof, rms per visit and detector, residual vectors, fitted star
        positions, validation statistics, ``reduced``, ``placement``, ``success`` and
        ``reason``. A failed fit has ``success=False``, a ``reason`` and no model.

    Raises
    ------
    InvalidInputError
        Invalid options, fewer than two visits with fitted stars, or no reference star
        among the fitted stars.

    Notes
    -----
    **Model** (:class:`AstrometricModel`): pixel ``x`` of detector ``d`` in visit
    ``v`` lands at :math:`\mathrm{TAN}^{-1}_v(V_v(P_d(x)))`; the star at
    :math:`s + K_i\theta_s` (offsets in its local tangent plane: position, plus proper
    motion :math:`\mu\,\Delta t` and parallax :math:`-\varpi\,E_\perp(t)` with
    ``fit_motion``). The residual is taken in the visit's tangent plane,

    .. math::

        r_i = V_v(P_d(x_i)) - \mathrm{TAN}_v(s + K_i\theta_s), \qquad
        C_i = J_i C^{\rm pix}_i J_i^T + \sigma_{\rm sys}^2 I,

    with :math:`J_i` the model's pixel Jacobian, and
    :math:`\chi^2 = \sum_i r_i^T C_i^{-1} r_i + \sum_{s \in \rm ref}
    (\theta_s - \theta^{\rm Gaia}_s)^T C_{\rm Gaia}^{-1} (\ldots)`, the Gaia terms
    propagated to the fit epoch. It is minimised by Gauss–Newton steps; each linear
    system is solved exactly with the star parameters eliminated (Schur complement,
    ``_solver``), so the cost is :math:`O(n_{\rm stars} n_{\rm camera}^2)`.

    **Degeneracies.** ``V_v ∘ P_d`` is unchanged by ``P_d -> A ∘ P_d``,
    ``V_v -> V_v ∘ A^{-1}`` for any invertible affine ``A`` (and nearly so for
    higher-order ``A``); holding one visit's map at the identity removes them (as
    gbdes' reference exposure). Its pointing is still free through the common terms of
    the detector maps, so the absolute frame follows the reference catalog.

    **Placement.** With a nominal layout :math:`n_d(x)`, the fitted detector maps are
    decomposed as :math:`P_d(x) = G(c_d + \delta_d + R(\alpha_d)(n_d(x) - c_d))` with
    ``G`` a common polynomial (optics, the reference visit's pointing and turbulence)
    of order ``detector_order``, by generalised least squares on the detector
    coefficients with their full covariance; the mean shift and rotation are the
    pointing and rotator angle (gauge: both zero).

    **Initial model**: the reference visit's tangent plane defines the frame; its
    detector maps are fitted to its initial WCSs on a grid, then every other visit's
    map to its initial WCSs through the detector maps, and detectors absent from the
    reference visit by inverting a visit map.

    References
    ----------
    .. [1] Bernstein, G. M. et al. 2017, PASP 129, 074503 (gbdes/WCSFit: astrometric
       calibration of DES).
    .. [2] Triggs, B. et al. 2000, Bundle Adjustment -- A Modern Synthesis.
    .. [3] Lindegren, L. et al. 2021, A&A 649, A2 (the Gaia astrometric model).

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> from lsstdrp.jointcal import associate, fit_astrometry
    >>> s = make_survey("tiny", rng=3, render=False, turbulence_polynomial_order=2, star_density_arcmin2=150.0,
    ...                 airmass_range=(1.0, 1.0))
    >>> wcs = {k: s.truth[k].tan_sip.wcs for k in s.keys()}
    >>> assoc = associate(s.all_catalogs(), s.visits, wcs, s.refcat_astrometric)
    >>> res = fit_astrometry(assoc, visit_order=2, detector_order=2, rng=0)
    >>> res.success, bool(0.7 < res.chi2_dof < 1.3)
    (True, True)
    """
    if not isinstance(association, Association):
        raise InvalidInputError(f"`association` must be an Association (from associate()); got "
                                f"{type(association).__name__}")
    vorder_req = check_order(visit_order, "visit_order", 1, 7)
    dorder_req = check_order(detector_order, "detector_order", 1, 7)
    floor = check_nonneg(systematic_error_mas, "systematic_error_mas") / 1000.0
    clip = check_positive(clip_sigma, "clip_sigma")
    reserve = check_fraction(reserve_fraction, "reserve_fraction")
    min_snr = check_nonneg(min_snr, "min_snr")
    per_term = check_positive(min_stars_per_term, "min_stars_per_term")
    bright_snr = check_nonneg(bright_snr, "bright_snr")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise InvalidInputError(f"`max_iter` must be an integer >= 1; got {max_iter!r}")
    if sip_order is not None:
        sip_order = check_order(sip_order, "sip_order", 2, 9)
    else:
        sip_order = max(3, vorder_req, dorder_req) + 1
    gen = as_rng(rng)
    k = 5 if fit_motion else 2

    assoc = association
    me_t = assoc.measurements
    obj_t = assoc.objects
    x = column(me_t, "x")
    y = column(me_t, "y")
    xe = column(me_t, "x_err")
    ye = column(me_t, "y_err")
    xyc = column(me_t, "xy_cov")
    visit = column(me_t, "visit", np.int64)
    det = column(me_t, "detector", np.int64)
    obj = column(me_t, "object", np.int64)
    mjd = column(me_t, "mjd")
    snr = column(me_t, "snr")
    n_all = len(me_t)
    n_obj = len(obj_t)

    ok = (obj >= 0) & np.isfinite(x) & np.isfinite(y) & np.isfinite(xe) & np.isfinite(ye) & (xe > 0) & (ye > 0)
    ok &= np.isfinite(xyc) & (xyc**2 < xe**2 * ye**2)
    ok &= ~(np.isfinite(snr) & (snr < min_snr)) if min_snr > 0 else True
    isolated = np.asarray(obj_t["isolated"], bool)
    ref_index = np.asarray(obj_t["ref_index"], np.int64)
    if isolated_only:
        ok &= isolated[np.maximum(obj, 0)]
    cnt = np.bincount(obj[ok], minlength=n_obj)
    eligible = (cnt >= 2) | ((cnt >= 1) & (ref_index >= 0))
    elig_idx = np.nonzero(eligible)[0]
    reserved_obj = np.zeros(n_obj, bool)
    if reserve > 0 and elig_idx.size:
        n_res = int(round(reserve * elig_idx.size))
        reserved_obj[gen.choice(elig_idx, size=n_res, replace=False)] = True
    fit_obj = eligible & ~reserved_obj
    if not np.any(fit_obj & (ref_index >= 0)):
        raise InvalidInputError("no reference star among the fitted stars: the reference catalog does not overlap "
                                "the isolated, well-measured stars (no absolute astrometric tie)")
    in_fit = ok & fit_obj[np.maximum(obj, 0)]

    # visits / detectors and their orders (distinct constraining stars per map), iterated:
    # dropping a map can leave stars with a single measurement and other maps too thin
    n_vis_fit = len(fast_unique(visit[in_fit]))
    if n_vis_fit < 2:
        raise InvalidInputError(f"only {n_vis_fit} visit(s) have fitted stars; joint "
                                "calibration needs at least 2")

    def order_for(nstars: int, req: int) -> int:
        o = req
        while o >= 1 and per_term * n_terms(o) > nstars:
            o -= 1
        return o

    if reference_visit is not None and int(reference_visit) not in set(fast_unique(visit[in_fit]).tolist()):
        raise InvalidInputError(f"`reference_visit`={reference_visit!r} has no fitted stars")
    ukv, vinv = fast_unique(visit, return_inverse=True)
    ukd, dinv = fast_unique(det, return_inverse=True)

    def distinct_stars(key_inv: np.ndarray, n_keys: int, sel: np.ndarray) -> np.ndarray:
        """Distinct objects per key among the selected measurements."""
        pairs = fast_unique(obj[sel] * n_keys + key_inv[sel])
        return np.bincount(pairs % n_keys, minlength=n_keys)

    def as_dict(ids: np.ndarray, counts: np.ndarray) -> dict:
        return {int(i): int(c) for i, c in zip(ids, counts) if c > 0}

    det_first = as_dict(ukd, distinct_stars(dinv, len(ukd), in_fit))
    vis_first = as_dict(ukv, distinct_stars(vinv, len(ukv), in_fit))
    ref_v = None
    for _ in range(20):
        n_before = int(in_fit.sum())
        dstars = as_dict(ukd, distinct_stars(dinv, len(ukd), in_fit))
        dorders = {d: order_for(n, dorder_req) for d, n in dstars.items()}
        in_fit &= np.isin(det, [d for d, o in dorders.items() if o >= 1])
        nmeas_v = as_dict(ukv, np.bincount(vinv[in_fit], minlength=len(ukv)))
        if reference_visit is not None:
            ref_v = int(reference_visit)
        elif nmeas_v:
            vd = np.bincount(vinv[in_fit] * len(ukd) + dinv[in_fit], minlength=len(ukv) * len(ukd))
            vd = vd.reshape(len(ukv), len(ukd)) > 0
            dset = vd.any(axis=0)
            full_ = {int(ukv[i]) for i in range(len(ukv)) if np.all(vd[i] >= dset)}
            full = [v for v in nmeas_v if v in full_]
            ref_v = max(full if full else list(nmeas_v), key=lambda v: nmeas_v[v])
        vstars = as_dict(ukv, distinct_stars(vinv, len(ukv), in_fit))
        vorders = {v: (vorder_req if v == ref_v else order_for(n, vorder_req)) for v, n in vstars.items()}
        in_fit &= np.isin(visit, [v for v, o in vorders.items() if o >= 1])
        cnt = np.bincount(obj[in_fit], minlength=n_obj)
        thin = (cnt < 2) & ~((cnt >= 1) & (ref_index >= 0))
        in_fit &= ~thin[np.maximum(obj, 0)]
        if int(in_fit.sum()) == n_before:
            break
    det_ids = np.array(sorted(d for d, o in dorders.items() if o >= 1 and np.any(in_fit & (det == d))), np.int64)
    vis_ids = np.array(sorted(v for v, o in vorders.items() if o >= 1 and np.any(in_fit & (visit == v))), np.int64)
    reduced: list[ReducedOrder] = []
    for d, n0 in det_first.items():
        o = dorders.get(d, -1) if d in det_ids else -1
        if o < dorder_req:
            reduced.append(ReducedOrder("detector", d, dorder_req, o, dstars.get(d, n0)))
    for v, n0 in vis_first.items():
        o = vorders.get(v, -1) if v in vis_ids else -1
        if o < vorder_req:
            reduced.append(ReducedOrder("visit", v, vorder_req, o, vstars.get(v, n0)))
    if len(vis_ids) < 2 or ref_v not in vis_ids:
        raise InvalidInputError("fewer than two visits have enough stars shared with other visits for a fit "
                                f"(need {per_term:g} x the number of polynomial terms per map); see the "
                                "`min_stars_per_term` option")
    if not np.any(in_fit & (ref_index[np.maximum(obj, 0)] >= 0)):
        raise InvalidInputError("no reference star remains among the fitted stars")
    fit_obj = fit_obj & (np.bincount(obj[in_fit], minlength=n_obj) > 0)

    # measurement and star arrays (all associated measurements on fitted visits/detectors)
    cover = (obj >= 0) & np.isin(visit, vis_ids) & np.isin(det, det_ids) & np.isfinite(x) & np.isfinite(y)
    vi_all = np.searchsorted(vis_ids, visit).clip(0, len(vis_ids) - 1)
    di_all = np.searchsorted(det_ids, det).clip(0, len(det_ids) - 1)
    epoch = float(np.mean(mjd[in_fit]))
    ocol = {c: column(obj_t, c) for c in ("ra", "dec")}
    p0 = unit_vectors(ocol["ra"], ocol["dec"])
    _, e_s, n_s = local_basis(p0)
    earth = earth_barycentric_au(mjd)
    o_safe = np.maximum(obj, 0)
    pe = np.stack([np.sum(earth * e_s[o_safe], -1), np.sum(earth * n_s[o_safe], -1)], -1)
    pixcov = np.stack([np.where(ok, xe**2, 1.0), np.where(ok, ye**2, 1.0), np.where(ok, xyc, 0.0)], -1)
    meas = _Meas(x=np.where(cover, x, 0.0), y=np.where(cover, y, 0.0), cov=pixcov, vi=vi_all, di=di_all,
                 star=np.where(obj >= 0, obj, -1), dt=(mjd - epoch) / _YEAR, pe=pe)

    stars = _setup_stars(assoc, p0, e_s, n_s, k, epoch, ref_index, fit_obj)
    present = np.zeros((len(vis_ids), len(det_ids)), bool)
    present[vi_all[in_fit], di_all[in_fit]] = True
    box = _detector_boxes(assoc, det_ids, x[in_fit], y[in_fit], det[in_fit])
    ref_vi = int(np.searchsorted(vis_ids, ref_v))
    model = _initial_model(assoc, vis_ids, det_ids, np.array([vorders[int(v)] for v in vis_ids]),
                           np.array([dorders[int(d)] for d in det_ids]), ref_vi, box, present)

    # camera parameter columns (fixed = n_cam)
    ntv, ntd = model.nt_visit, model.nt_detector
    vis_cols = np.empty((len(vis_ids), 2, ntv), np.int64)
    det_cols = np.empty((len(det_ids), 2, ntd), np.int64)
    pos = 0
    fixed_v = np.zeros((len(vis_ids), 2, ntv), bool)
    for i in range(len(vis_ids)):
        nt = n_terms(int(model.visit_order[i]))
        for c in range(2):
            for t in range(ntv):
                if i == ref_vi or t >= nt:
                    fixed_v[i, c, t] = True
                    vis_cols[i, c, t] = -1
                else:
                    vis_cols[i, c, t] = pos
                    pos += 1
    for i in range(len(det_ids)):
        nt = n_terms(int(model.detector_order[i]))
        for c in range(2):
            for t in range(ntd):
                if t >= nt:
                    det_cols[i, c, t] = -1
                else:
                    det_cols[i, c, t] = pos
                    pos += 1
    n_cam = pos
    vis_cols[vis_cols < 0] = n_cam
    det_cols[det_cols < 0] = n_cam

    # star eligibility within the fit: initial star positions from the initial model
    ev = _Evaluator(model, meas, stars, k, floor)
    active = np.nonzero(in_fit)[0]
    active = active[np.argsort(meas.star[active], kind="stable")]  # kept sorted by star
    stars.theta[:] = 0.0
    # robust start: each star at the median of its measurements under the initial model; a
    # measurement farther from it than the association radius cannot belong to it (gross outlier)
    clipped = np.zeros(n_all, bool)
    res0 = ev.residuals(active)
    sa0 = meas.star[active]
    med = np.stack([_median_by(sa0, res0["r"][:, c], n_obj) for c in range(2)], -1)
    good_s = np.isfinite(med[:, 0])
    stars.theta[good_s, 0] += med[good_s, 0]
    stars.theta[good_s, 1] += med[good_s, 1]
    gross = np.hypot(*(res0["r"] - med[sa0]).T) > assoc.match_radius_arcsec
    if np.any(gross):
        clipped[active[gross]] = True
        keep = ~gross & _thin_keep(active, clipped, meas, stars)
        active = active[keep]
    _star_only_solve(ev, active, fit_obj, iterations=1)

    it_range = range(max_iter)
    if progress:
        from tqdm.auto import tqdm

        it_range = tqdm(it_range, desc="fit_astrometry", unit="iter")
    success, reason = True, ""
    step = None
    factor = None
    n_changed = 0  # measurements / ties removed since the reduced matrix was built
    converged = False
    change = np.inf
    iterations = 0
    res = ev.residuals(active)
    for it in it_range:
        iterations = it + 1
        prob, uniq = _problem(res, meas, stars, active, n_cam, vis_cols, det_cols)
        # after the first step, the reduced matrix of an earlier step preconditions an exact CG solve
        step = solve_step(prob, factor=factor)
        if step.built:
            n_changed = 0
        factor = step.factor
        if not step.pivot_ok:
            log.warning("fit_astrometry: reduced camera matrix not positive definite at iteration %d", it + 1)
        _apply(ev, step.dc, vis_cols, det_cols, uniq, step.ds)
        jdc = jc_dot(prob.blocks, step.dc, len(active), 2)
        jds = np.einsum("nak,nk->na", prob.js, step.ds[prob.star])
        change = float(np.max(np.hypot(*(jdc + jds).T))) if len(active) else 0.0
        res = ev.residuals(active)
        # outlier rejection: gross outliers at once, the rest once the linearisation has converged
        thr = clip + 3.0 * change
        chi = np.hypot(res["e"][:, 0], res["e"][:, 1])
        sa = meas.star[active]
        cand = np.nonzero(chi > thr)[0]
        n_new = 0
        if cand.size:
            srt = cand[np.lexsort((-chi[cand], sa[cand]))]
            firsts = np.ones(srt.size, bool)
            firsts[1:] = sa[srt][1:] != sa[srt][:-1]
            worst = active[srt[firsts]]
            clipped[worst] = True
            n_new += worst.size
        n_new += _clip_priors(stars, uniq, thr)
        if n_new:
            keep = ~clipped[active] & _thin_keep(active, clipped, meas, stars)
            n_new += int(np.sum(~keep & ~clipped[active]))
            n_changed += n_new
            active, res = ev.restrict(active, res, keep)
        log.info("fit_astrometry: iteration %d chi2=%.6g change=%.3g sigma, %d rejected (%s, %d CG iterations)",
                 it + 1, step.chi2, change, n_new, "built S" if step.built else "reused S", step.cg_iterations)
        if n_new == 0 and change < 1e-3:
            converged = True
            break
    if not converged:
        success, reason = False, f"not converged after {max_iter} iterations (last change {change:.3g} sigma)"
    if step is not None and not step.pivot_ok and success:
        success, reason = False, "the reduced camera system is singular (degenerate geometry)"

    model = ev.model
    # final statistics at the solution. The covariance is that of the reduced matrix of the step
    # that built it: rebuilt at the solution unless at most 0.1% of the data changed since then
    # (relinearisation changes it by ~1e-6 relative: the model moves by << its own scale)
    fit_stars = fast_unique(meas.star[active])
    if not converged or n_changed > 1e-3 * max(len(active), 1):
        prob, uniq = _problem(res, meas, stars, active, n_cam, vis_cols, det_cols)
        step = solve_step(prob)
    cov = covariance(step.factor)
    a_s = step.star_a
    chi2_meas = np.sum(res["e"] ** 2, axis=1)
    pj, pe = stars.prior(fit_stars)
    chi2 = float(chi2_meas.sum() + np.sum(pe**2))
    n_prior_rows = int(np.sum(np.any(pj != 0, axis=2)))
    n_data = 2 * len(active) + n_prior_rows
    n_par = n_cam + k * len(fit_stars)
    dof = float(n_data - n_par)
    chi2_dof = chi2 / dof if dof > 0 else math.nan
    # bright stars: chi2 of their measurements over their expected value (rows - leverage)
    sa = meas.star[active]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_snr = np.bincount(sa, weights=snr[active], minlength=n_obj) / np.bincount(sa, minlength=n_obj)
    bright = mean_snr >= bright_snr
    bm = bright[sa]
    chi2_b = float(chi2_meas[bm].sum())
    if bm.any():
        prob_b, uniq_b = _problem(res, meas, stars, active, n_cam, vis_cols, det_cols)
        dof_b = 2.0 * float(bm.sum()) - subset_leverage(prob_b, cov, bright[uniq_b], max_stars=1000)
    else:
        dof_b = 0.0
    chi2_dof_bright = chi2_b / dof_b if dof_b > 0 else math.nan

    # every other associated object: position it with the final model (static, no priors)
    other_obj = ~fit_obj & (np.bincount(obj[cover], minlength=n_obj) > 0)
    other_idx = np.nonzero(cover & other_obj[np.maximum(obj, 0)])[0]
    res_idx = np.nonzero(cover & reserved_obj[np.maximum(obj, 0)] & ok)[0]
    _star_only_solve(ev, other_idx, other_obj, iterations=2, use_priors=False)
    validation = _validate(ev, res_idx, reserved_obj, k)

    # residual table of everything covered
    cov_idx = np.nonzero(cover)[0]
    rr = ev.residuals(cov_idx)
    residuals = QTable()
    residuals["row"] = cov_idx
    residuals["visit"] = visit[cov_idx]
    residuals["detector"] = det[cov_idx]
    residuals["object"] = obj[cov_idx]
    residuals["x"] = x[cov_idx] * u.pix
    residuals["y"] = y[cov_idx] * u.pix
    residuals["u"] = rr["uv"][:, 0] * u.arcsec
    residuals["v"] = rr["uv"][:, 1] * u.arcsec
    residuals["xi"] = rr["tp"][:, 0] * u.arcsec
    residuals["eta"] = rr["tp"][:, 1] * u.arcsec
    residuals["dxi_mas"] = rr["r"][:, 0] * 1000.0 * u.mas
    residuals["deta_mas"] = rr["r"][:, 1] * 1000.0 * u.mas
    residuals["chi"] = np.hypot(rr["e"][:, 0], rr["e"][:, 1])
    used = np.zeros(n_all, bool)
    used[active] = True
    residuals["used"] = used[cov_idx]
    residuals["reserved"] = reserved_obj[obj[cov_idx]] & ok[cov_idx]
    residuals["clipped"] = clipped[cov_idx]
    residuals.meta.update(epoch_mjd=epoch)

    def rms_table(key_name: str, keys: np.ndarray, ids: np.ndarray) -> QTable:
        t = QTable()
        t[key_name] = ids
        r2 = np.sum(res["r"] ** 2, axis=1) / 2.0 * 1e6
        nn = np.bincount(keys, minlength=len(ids))
        t["n"] = nn
        with np.errstate(invalid="ignore", divide="ignore"):
            t["rms_mas"] = np.sqrt(np.bincount(keys, weights=r2, minlength=len(ids)) / nn) * u.mas
            t["chi2_per_meas"] = np.bincount(keys, weights=chi2_meas, minlength=len(ids)) / nn
        return t

    rms_v = rms_table("visit", meas.vi[active], vis_ids)
    rms_d = rms_table("detector", meas.di[active], det_ids)
    stars_t = _star_table(stars, a_s, fit_stars, k, epoch, fit_obj, reserved_obj, other_obj, meas, active, n_obj, obj_t)

    # exports
    wcs_out: dict = {}
    export = QTable(names=("visit", "detector", "max_error_mas", "rms_error_mas", "inverse_max_error_px"),
                    dtype=(np.int64, np.int64, float, float, float))
    placement, pl_chi2 = None, math.nan
    if success:
        keys = [k_ for k_ in sorted(assoc.wcs) if k_[0] in vis_ids and k_[1] in det_ids]
        exports = export_many(model, keys, sip_order=sip_order)
        rows = []
        for key, exp in exports.items():
            wcs_out[key] = exp.wcs
            rows.append((key[0], key[1], exp.max_error_mas, exp.rms_error_mas, exp.inverse_max_error_px))
        if rows:
            export = QTable(rows=rows, names=export.colnames, dtype=(np.int64, np.int64, float, float, float))
        if nominal_focal_plane is not None:
            from ._placement import fit_placement

            placement, pl_chi2 = fit_placement(model, cov, det_cols, n_cam, nominal_focal_plane)
    export["max_error_mas"].unit = u.mas
    export["rms_error_mas"].unit = u.mas
    return AstrometryResult(
        success=success, reason=reason, wcs=wcs_out, model=model if success else None, export_error=export,
        chi2=chi2, dof=dof, chi2_dof=chi2_dof, chi2_dof_bright=chi2_dof_bright, dof_bright=dof_b,
        n_measurements=len(active),
        n_stars=len(fit_stars), n_clipped=int(clipped.sum()), n_reserved=int(reserved_obj.sum()),
        n_reference=int(np.sum(stars.has_prior[fit_stars])), iterations=iterations, epoch=epoch,
        rms_per_visit=rms_v, rms_per_detector=rms_d, residuals=residuals, stars=stars_t, validation=validation,
        reduced=tuple(reduced), placement=placement, placement_chi2_dof=pl_chi2, covariance=cov,
        _visit_cols=vis_cols, _detector_cols=det_cols)


# ------------------------------------------------------------------------------------ helpers
def _setup_stars(assoc: Association, p0, e_s, n_s, k, epoch, ref_index, fit_obj) -> _Stars:
    n_obj = len(p0)
    ref_j = np.zeros((n_obj, k, k))
    ref_z = np.zeros((n_obj, k))
    base_j = np.zeros((n_obj, k, k))
    has_prior = np.zeros(n_obj, bool)
    fixed = np.zeros((n_obj, 3))
    ref = assoc.refcat
    rc = {c: column(ref, c) for c in ("ra", "dec", "ra_err_mas", "dec_err_mas", "pmra", "pmdec", "pmra_err",
                                       "pmdec_err", "parallax", "parallax_err", "epoch")}
    has = np.nonzero(ref_index >= 0)[0]
    good = np.ones(has.size, bool)
    rows = ref_index[has]
    for c in rc:
        good &= np.isfinite(rc[c][rows])
    good &= (rc["ra_err_mas"][rows] > 0) & (rc["dec_err_mas"][rows] > 0)
    has, rows = has[good], rows[good]
    pg = unit_vectors(rc["ra"][rows], rc["dec"][rows])
    # Gaia position as offsets in each star's tangent plane (arcsec)
    ag, bg = project(pg, p0[has], e_s[has], n_s[has])
    dt_ref = (rc["epoch"][rows] - epoch) / _YEAR  # catalog epoch relative to the fit epoch (yr)
    pmra, pmdec, plx = rc["pmra"][rows], rc["pmdec"][rows], rc["parallax"][rows]
    spm_a, spm_d = np.maximum(rc["pmra_err"][rows], 1e-6), np.maximum(rc["pmdec_err"][rows], 1e-6)
    s_plx = np.maximum(rc["parallax_err"][rows], 1e-6)
    sa, sd = rc["ra_err_mas"][rows] / 1000.0, rc["dec_err_mas"][rows] / 1000.0
    if k == 5:
        # rows: position at the catalog epoch, pm, parallax (independent Gaia errors)
        ref_j[has, 0, 0] = 1.0 / sa
        ref_j[has, 0, 2] = dt_ref / 1000.0 / sa
        ref_z[has, 0] = ag / sa
        ref_j[has, 1, 1] = 1.0 / sd
        ref_j[has, 1, 3] = dt_ref / 1000.0 / sd
        ref_z[has, 1] = bg / sd
        ref_j[has, 2, 2] = 1.0 / spm_a
        ref_z[has, 2] = pmra / spm_a
        ref_j[has, 3, 3] = 1.0 / spm_d
        ref_z[has, 3] = pmdec / spm_d
        ref_j[has, 4, 4] = 1.0 / s_plx
        ref_z[has, 4] = plx / s_plx
        # weak priors on the motion of the stars without a reference tie
        base_j[:, 2, 2] = 1.0 / PM_PRIOR_MAS_YR
        base_j[:, 3, 3] = 1.0 / PM_PRIOR_MAS_YR
        base_j[:, 4, 4] = 1.0 / PARALLAX_PRIOR_MAS
    else:
        # barycentric position at the fit epoch, known motion applied per measurement
        target = np.stack([ag - dt_ref * pmra / 1000.0, bg - dt_ref * pmdec / 1000.0], -1)
        earth0 = earth_barycentric_au(epoch)
        f = np.stack([e_s[has] @ earth0, n_s[has] @ earth0], -1)
        cp = np.zeros((has.size, 2, 2))
        cp[:, 0, 0] = sa**2 + (dt_ref * spm_a / 1000.0) ** 2
        cp[:, 1, 1] = sd**2 + (dt_ref * spm_d / 1000.0) ** 2
        cp += (s_plx / 1000.0)[:, None, None] ** 2 * f[:, :, None] * f[:, None, :]
        w = _inv_chol_2x2(cp)
        ref_j[has] = w
        ref_z[has] = np.einsum("nab,nb->na", w, target)
        fixed[has] = np.stack([pmra, pmdec, plx], -1)
    has_prior[has] = True
    return _Stars(p0=p0, e=e_s, n=n_s, theta=np.zeros((n_obj, k)), ref_j=ref_j, ref_z=ref_z, base_j=base_j,
                  has_prior=has_prior, fixed_motion=fixed)


def _problem(res: dict, meas: _Meas, stars: _Stars, active: np.ndarray, n_cam: int, vis_cols, det_cols
             ) -> tuple[Problem, np.ndarray]:
    sa = meas.star[active]
    if sa.size and np.all(sa[1:] >= sa[:-1]):  # sorted by star (the fit keeps it so)
        first = np.ones(sa.size, bool)
        first[1:] = sa[1:] != sa[:-1]
        uniq = sa[first]
        sloc = np.cumsum(first) - 1
    else:
        uniq, sloc = fast_unique(sa, return_inverse=True)
    vi, di = meas.vi[active].astype(np.int64), meas.di[active].astype(np.int64)
    vb = CameraBlock(owner=vi, cols=vis_cols, coef=res["w"], basis=res["psi"])
    db = CameraBlock(owner=di, cols=det_cols, coef=res["wg"], basis=res["phi"])
    pj, pe = stars.prior(uniq)
    prob = Problem(n_camera=n_cam, blocks=(vb, db), star=np.ravel(sloc).astype(np.int64), n_stars=len(uniq),
                   js=res["js"], e=res["e"], prior_j=pj, prior_e=pe, group=vi * (int(di.max()) + 1 if di.size else 1) + di)
    return prob, uniq


def _apply(ev: _Evaluator, dc, vis_cols, det_cols, uniq, ds) -> None:
    dce = np.append(dc, 0.0)
    m = ev.model
    ev.model = m.replace_coefficients(m.visit_coef + dce[vis_cols], m.detector_coef + dce[det_cols])
    ev.stars.theta[uniq] += ds


def _clip_priors(stars: _Stars, idx: np.ndarray, clip: float) -> int:
    hp = idx[stars.has_prior[idx]]
    if hp.size == 0:
        return 0
    _, pe = stars.prior(hp)
    bad = hp[np.hypot(pe[:, 0], pe[:, 1]) > clip]
    stars.has_prior[bad] = False
    return int(bad.size)


def _thin_keep(active: np.ndarray, clipped: np.ndarray, meas: _Meas, stars: _Stars) -> np.ndarray:
    """Measurements of ``active`` whose star keeps enough unclipped measurements (2, or 1 + a tie)."""
    n_s = len(stars.p0)
    sa = meas.star[active]
    cnt = np.bincount(sa[~clipped[active]], minlength=n_s)
    ok = (cnt >= 2) | ((cnt >= 1) & stars.has_prior)
    return ok[sa]


def _median_by(group: np.ndarray, val: np.ndarray, n: int) -> np.ndarray:
    out = np.full(n, np.nan)
    if group.size == 0:
        return out
    order = np.lexsort((val, group))
    g, v = group[order], val[order]
    starts = np.searchsorted(g, np.arange(n))
    ends = np.searchsorted(g, np.arange(n), side="right")
    has = ends > starts
    mid_lo = (starts + (ends - starts - 1) // 2)[has]
    mid_hi = (starts + (ends - starts) // 2)[has]
    out[has] = 0.5 * (v[mid_lo] + v[mid_hi])
    return out


def _star_only_solve(ev: _Evaluator, idx: np.ndarray, which: np.ndarray, *, iterations: int,
                     use_priors: bool = True) -> None:
    """Update the parameters of the stars of measurements ``idx`` with the camera fixed."""
    from . import _kernels

    if idx.size == 0:
        return
    st = ev.stars
    n_s = len(st.p0)
    s = ev.meas.star[idx].astype(np.int64)
    upd = which & (np.bincount(s, minlength=n_s) > 0)
    ui = np.nonzero(upd)[0]
    for _ in range(iterations):
        res = ev.residuals(idx)
        a, g = _kernels.star_normal(s, res["js"], res["e"], n_s)
        if use_priors:
            pj, pe = st.prior(ui)
        else:
            pj = st.base_j[ui]
            pe = np.einsum("spk,sk->sp", pj, st.theta[ui])
        aa = a[ui] + np.einsum("spa,spb->sab", pj, pj)
        gg = g[ui] + np.einsum("spa,sp->sa", pj, pe)
        ok = np.linalg.det(aa) > 0
        d = np.zeros((ui.size, ev.k))
        d[ok] = -np.linalg.solve(aa[ok], gg[ok][..., None])[..., 0]
        st.theta[ui] += d


def _validate(ev: _Evaluator, idx: np.ndarray, reserved: np.ndarray, k: int) -> dict:
    """Fit the reserved stars with the camera fixed and report their residuals."""
    if idx.size == 0:
        return {"n_stars": 0, "n_measurements": 0, "chi2_dof": math.nan, "rms_mas": math.nan}
    st = ev.stars
    cnt = np.bincount(ev.meas.star[idx], minlength=len(st.p0))
    keep = cnt[ev.meas.star[idx]] >= 2
    idx = idx[keep]
    if idx.size == 0:
        return {"n_stars": 0, "n_measurements": 0, "chi2_dof": math.nan, "rms_mas": math.nan}
    saved = st.has_prior.copy()
    st.has_prior[reserved] = False
    _star_only_solve(ev, idx, reserved, iterations=2, use_priors=False)
    st.has_prior[:] = saved
    res = ev.residuals(idx)
    chi2 = float(np.sum(res["e"] ** 2))
    n_st = len(fast_unique(ev.meas.star[idx]))
    kk = 2
    dof = 2 * idx.size - kk * n_st
    return {"n_stars": n_st, "n_measurements": int(idx.size), "chi2_dof": chi2 / dof if dof > 0 else math.nan,
            "rms_mas": float(np.sqrt(np.mean(res["r"] ** 2)) * 1000.0)}


def _star_table(stars: _Stars, a_s, uniq, k, epoch, fit_obj, reserved_obj, other_obj, meas, active, n_obj,
                obj_t) -> QTable:
    p = stars.p0 + (stars.theta[:, 0:1] * ARCSEC) * stars.e + (stars.theta[:, 1:2] * ARCSEC) * stars.n
    ra, dec = radec_from_vectors(p)
    t = QTable()
    t["object"] = np.arange(n_obj, dtype=np.int64)
    t["ra"] = ra * u.deg
    t["dec"] = dec * u.deg
    err = np.full((n_obj, k), np.nan)
    with np.errstate(invalid="ignore"):
        inv = np.linalg.inv(a_s)
    err[uniq] = np.sqrt(np.clip(np.diagonal(inv, axis1=1, axis2=2), 0, None))
    t["ra_err_mas"] = err[:, 0] * 1000.0 * u.mas
    t["dec_err_mas"] = err[:, 1] * 1000.0 * u.mas
    if k == 5:
        t["pmra"] = stars.theta[:, 2] * u.mas / u.yr
        t["pmdec"] = stars.theta[:, 3] * u.mas / u.yr
        t["parallax"] = stars.theta[:, 4] * u.mas
        t["pmra_err"] = err[:, 2] * u.mas / u.yr
        t["pmdec_err"] = err[:, 3] * u.mas / u.yr
        t["parallax_err"] = err[:, 4] * u.mas
    else:
        t["pmra"] = stars.fixed_motion[:, 0] * u.mas / u.yr
        t["pmdec"] = stars.fixed_motion[:, 1] * u.mas / u.yr
        t["parallax"] = stars.fixed_motion[:, 2] * u.mas
    status = np.full(n_obj, "none", dtype="U8")
    status[other_obj] = "other"
    status[reserved_obj] = "reserved"
    status[fit_obj] = "fit"
    t["status"] = status
    t["n_used"] = np.bincount(meas.star[active], minlength=n_obj)
    t["reference"] = stars.has_prior
    t.meta.update(epoch_mjd=epoch)
    return t
