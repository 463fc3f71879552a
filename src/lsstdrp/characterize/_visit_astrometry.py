"""Visit-level astrometry: one optical-distortion model shared by every detector of a visit."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._errors import InvalidInputError
from ._astrometry import WcsFitResult, fit_wcs
from ._common import check_int, check_pos, col, deproject, project, tangent_basis, unit_vectors
from ._tansip import design, monomials

__all__ = ["VisitWcsResult", "fit_visit_wcs"]

log = logging.getLogger("lsstdrp.characterize")


@dataclasses.dataclass(frozen=True, eq=False)
class VisitWcsResult:
    """Result of :func:`fit_visit_wcs`.

    Attributes
    ----------
    success : bool
    reason : str
    wcs : dict
        ``detector -> astropy.wcs.WCS`` TAN-SIP export of the visit model (empty on
        failure).
    export_error_mas : dict
        ``detector`` -> largest distance (mas) between the exported TAN-SIP WCS and the
        model on a check grid.
    detector_fits : dict
        ``detector ->`` :class:`WcsFitResult` of the single-frame match used to find the
        reference pairs.
    placement : astropy.table.QTable
        Per detector: ``detector, x0_arcsec, y0_arcsec`` (position of the detector
        centre in the visit frame), ``rotation_deg``, ``scale_arcsec_per_px``, ``shear``
        and ``flipped`` (parity; the rotation and shear are those of the map with its
        x axis flipped back) of its fitted affine placement.
    residuals : astropy.table.QTable
        Per reference pair: ``detector, row, x, y, ra, dec, dra_mas, ddec_mas``
        (model minus reference), ``sigma_mas``, ``predicted_mas`` (1-sigma mapping
        error from the fit covariance), ``used``.
    n_used : int
    rms_mas : float
        Per-axis rms of the used residuals.
    chi2_dof : float
    order : int
        Order of the focal-plane polynomial.
    center : (float, float)
        Tangent point (ra, dec) of the visit frame, degrees.
    """

    success: bool
    reason: str
    wcs: dict
    export_error_mas: dict
    detector_fits: dict
    placement: QTable
    residuals: QTable
    n_used: int
    rms_mas: float
    chi2_dof: float
    order: int
    center: tuple[float, float]


class _VisitModel:
    """xi = V(A_d(x)): per-detector affine A_d (pixels -> frame arcsec), common polynomial V."""

    def __init__(self, dets: list[int], centers: dict, halves: dict, order: int, radius: float):
        self.dets = dets
        self.index = {d: i for i, d in enumerate(dets)}
        self.centers = centers
        self.halves = halves
        self.order = order
        self.radius = radius
        self.nl_terms = monomials(order, 2) if order >= 2 else []
        self.n_aff = 6 * len(dets)
        self.n_par = self.n_aff + 2 * len(self.nl_terms)

    def frame(self, p: np.ndarray, det_i: np.ndarray, x: np.ndarray, y: np.ndarray):
        xs = np.empty_like(x)
        ys = np.empty_like(y)
        for d, i in self.index.items():
            m = det_i == i
            xs[m] = (x[m] - self.centers[d][0]) / self.halves[d]
            ys[m] = (y[m] - self.centers[d][1]) / self.halves[d]
        a = p[: self.n_aff].reshape(-1, 6)[det_i]
        fx = a[:, 0] + a[:, 1] * xs + a[:, 2] * ys
        fy = a[:, 3] + a[:, 4] * xs + a[:, 5] * ys
        return fx, fy, xs, ys

    def evaluate(self, p: np.ndarray, det_i: np.ndarray, x: np.ndarray, y: np.ndarray, jac: bool = False):
        fx, fy, xs, ys = self.frame(p, det_i, x, y)
        cv = p[self.n_aff:].reshape(2, -1) if self.nl_terms else np.zeros((2, 0))
        xi, eta = fx.copy(), fy.copy()
        if self.nl_terms:
            d = design(fx / self.radius, fy / self.radius, self.nl_terms) * self.radius
            xi += d @ cv[0]
            eta += d @ cv[1]
        if not jac:
            return xi, eta
        n = x.size
        # dV/df
        jxx = np.ones(n)
        jxy = np.zeros(n)
        jyx = np.zeros(n)
        jyy = np.ones(n)
        if self.nl_terms:
            ex = np.asarray(self.nl_terms)
            ux, vy = fx / self.radius, fy / self.radius
            dpx = np.stack([p_ * _pw(ux, p_ - 1) * _pw(vy, q_) for p_, q_ in ex], -1)
            dpy = np.stack([q_ * _pw(ux, p_) * _pw(vy, q_ - 1) for p_, q_ in ex], -1)
            jxx = jxx + dpx @ cv[0]
            jxy = jxy + dpy @ cv[0]
            jyx = jyx + dpx @ cv[1]
            jyy = jyy + dpy @ cv[1]
        jm = np.zeros((2, n, self.n_par))
        rows = np.arange(n)
        basis = np.stack([np.ones(n), xs, ys], -1)
        for k in range(3):
            cx = det_i * 6 + k
            cy = det_i * 6 + 3 + k
            jm[0, rows, cx] = jxx * basis[:, k]
            jm[1, rows, cx] = jyx * basis[:, k]
            jm[0, rows, cy] = jxy * basis[:, k]
            jm[1, rows, cy] = jyy * basis[:, k]
        if self.nl_terms:
            nt = len(self.nl_terms)
            jm[0, :, self.n_aff:self.n_aff + nt] = d
            jm[1, :, self.n_aff + nt:] = d
        return xi, eta, jm


def _pw(a: np.ndarray, k: int) -> np.ndarray:
    return np.zeros_like(a) if k < 0 else a**k


def fit_visit_wcs(catalogs: Mapping, refcat: Any, *, wcs: Mapping, mjd: float | None,
                  bboxes: Mapping | None = None, order: int = 5, detector_sip_order: int = 2,
                  clip_sigma: float = 4.0, systematic_error_mas: float = 0.0, export_sip_order: int = 5,
                  max_iter: int = 10, **match_kwargs: Any) -> VisitWcsResult:
    r"""Fit the astrometry of a whole visit: a shared focal-plane distortion plus per-detector placement.

    Parameters
    ----------
    catalogs : dict
        ``detector`` -> source catalog (as :func:`fit_wcs` takes).
    refcat : astropy.table.Table
        Astrometric reference catalog (see :func:`fit_wcs`).
    wcs : dict
        ``detector ->`` approximate APE-14 WCS (errors up to the :func:`fit_wcs`
        search limits).
    mjd : float or None
        Epoch of the visit (MJD TAI); required with proper motions.
    bboxes : dict, optional
        ``detector -> (x_min, x_max, y_min, y_max)``; default from each WCS's
        ``pixel_shape`` or the sources.
    order : int
        Total order of the shared focal-plane polynomial ``V`` (2-9; 1 = affine only).
    detector_sip_order : int
        SIP order of the single-frame fits used to find the matches.
    clip_sigma : float
        Outlier threshold on the whitened residual.
    systematic_error_mas : float
        Per-axis error floor added in quadrature.
    export_sip_order : int
        Order of the per-detector TAN-SIP export.
    max_iter : int
        Gauss–Newton / clipping iterations.
    **match_kwargs
        Passed to :func:`fit_wcs` (search limits, ``flux_column`` ...).

    Returns
    -------
    VisitWcsResult

    Raises
    ------
    InvalidInputError
        Mismatched dicts or invalid options (and whatever :func:`fit_wcs` raises for a
        detector's input).

    Notes
    -----
    Every detector is first matched on its own (:func:`fit_wcs`). Then, in the
    tangent plane :math:`(\xi, \eta)` (arcsec) at the visit centre, pixel ``x`` of
    detector ``d`` maps to

    .. math:: (\xi, \eta) = V(A_d\,\hat x), \qquad V(f) = f + \sum_{2 \le p+q \le K}
              c_{pq}\, R\,(f_x/R)^p (f_y/R)^q,

    with :math:`A_d` an affine map of the detector's scaled pixel offsets (its
    placement: shift, rotation, scale, shear; 6 parameters) and ``V`` the optical
    distortion common to all detectors (its constant and linear terms fixed to the
    identity, which removes the degeneracy between ``V`` and the ``A_d``). The model
    is fitted by Gauss–Newton on all reference pairs at once, weighted as in
    :func:`fit_wcs`, with iterative ``clip_sigma`` rejection; each detector's mapping
    is then exported as TAN-SIP (:func:`lsstdrp.jointcal.export_tan_sip`) with its
    error. Sharing ``V`` across the focal plane constrains the distortion with all
    stars of the visit instead of the few per detector (the seed of full-visit
    processing; Bernstein et al. 2017 use the same split across visits).

    References
    ----------
    .. [1] Bernstein, G. M. et al. 2017, PASP 129, 074503 (instrument model shared by
       detectors, per-exposure terms).

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> s = make_survey("tiny", rng=4, render=False, star_density_arcmin2=300.0, airmass_range=(1.0, 1.0),
    ...                 n_visits=1)
    >>> keys = s.keys()
    >>> res = fit_visit_wcs({d: s.catalogs[(v, d)] for v, d in keys}, s.refcat_astrometric,
    ...                     wcs={d: s.truth[(v, d)].tan_sip.wcs for v, d in keys}, mjd=s.truth[keys[0]].mjd, order=3)
    >>> res.success, sorted(res.wcs) == [0, 1, 2, 3]
    (True, True)
    """
    if not isinstance(catalogs, Mapping) or not isinstance(wcs, Mapping) or not catalogs:
        raise InvalidInputError("`catalogs` and `wcs` must be non-empty dicts keyed by detector")
    missing = [d for d in catalogs if d not in wcs]
    if missing:
        raise InvalidInputError(f"`wcs` has no entry for detector(s) {missing}")
    order = check_int(order, "order", 1, 9)
    export_sip_order = check_int(export_sip_order, "export_sip_order", 1, 9)
    max_iter = check_int(max_iter, "max_iter", 1, 100)
    clip_sigma = check_pos(clip_sigma, "clip_sigma")
    sys_mas = check_pos(systematic_error_mas, "systematic_error_mas", allow_zero=True)
    bboxes = dict(bboxes or {})
    det_fits: dict[int, WcsFitResult] = {}
    for d in catalogs:
        det_fits[d] = fit_wcs(catalogs[d], refcat, wcs=wcs[d], mjd=mjd, bbox=bboxes.get(d),
                              sip_order=detector_sip_order, systematic_error_mas=systematic_error_mas, **match_kwargs)
    ok_dets = [d for d in catalogs if det_fits[d].success]
    empty_place = QTable({"detector": np.zeros(0, np.int64)})

    def fail(reason: str) -> VisitWcsResult:
        log.info("fit_visit_wcs failed: %s", reason)
        return VisitWcsResult(False, reason, {}, {}, det_fits, empty_place, QTable(), 0, float("nan"), float("nan"),
                              order, (float("nan"), float("nan")))

    if not ok_dets:
        return fail("no detector matched the reference catalog: " + "; ".join(
            f"{d}: {det_fits[d].reason}" for d in catalogs))
    # visit frame: tangent point at the mean of the detector centres
    centers, halves, boxes = {}, {}, {}
    cvec = np.zeros(3)
    for d in ok_dets:
        f = det_fits[d]
        w = f.wcs
        xr, yr = w.pixel_shape if w.pixel_shape is not None else (1, 1)
        box = bboxes.get(d)
        if box is None:
            shape = getattr(wcs[d], "pixel_shape", None)
            box = (-0.5, shape[0] - 0.5, -0.5, shape[1] - 0.5) if shape else (0.0, float(xr), 0.0, float(yr))
        boxes[d] = tuple(float(b) for b in box)
        centers[d] = (0.5 * (boxes[d][0] + boxes[d][1]), 0.5 * (boxes[d][2] + boxes[d][3]))
        halves[d] = 0.5 * max(boxes[d][1] - boxes[d][0], boxes[d][3] - boxes[d][2])
        r0, d0 = w.pixel_to_world_values(*centers[d])
        cvec += unit_vectors(float(r0), float(d0))
    ra_c = float(np.degrees(np.arctan2(cvec[1], cvec[0])) % 360.0)
    dec_c = float(np.degrees(np.arctan2(cvec[2], np.hypot(cvec[0], cvec[1]))))
    basis = tangent_basis(ra_c, dec_c)
    # data
    det_i, xs, ys, rxi, reta, sig, rows, rra, rdec = [], [], [], [], [], [], [], [], []
    for i, d in enumerate(ok_dets):
        m = det_fits[d].matches
        mm = np.asarray(m["used"], bool)
        if mm.sum() == 0:
            continue
        det_i.append(np.full(int(mm.sum()), i))
        xs.append(col(m, "x")[mm])
        ys.append(col(m, "y")[mm])
        q = project(col(m, "ra")[mm], col(m, "dec")[mm], basis)
        rxi.append(q[0])
        reta.append(q[1])
        rra.append(col(m, "ra")[mm])
        rdec.append(col(m, "dec")[mm])
        sig.append(col(m, "sigma_mas")[mm] / 1000.0)
        rows.append(np.asarray(m["row"])[mm])
    det_i = np.concatenate(det_i)
    x = np.concatenate(xs)
    y = np.concatenate(ys)
    txi = np.concatenate(rxi)
    teta = np.concatenate(reta)
    sig = np.concatenate(sig)
    rows_all = np.concatenate(rows)
    rra = np.concatenate(rra)
    rdec = np.concatenate(rdec)
    radius = float(np.max(np.hypot(txi, teta))) if txi.size else 1.0
    model = _VisitModel(ok_dets, centers, halves, order, max(radius, 1.0))
    if x.size < model.n_par + 2:
        return fail(f"{x.size} reference pairs cannot constrain {model.n_par} parameters")
    # start: per-detector affine from the single-frame WCS, V = identity
    p = np.zeros(model.n_par)
    for i, d in enumerate(ok_dets):
        w = det_fits[d].wcs
        cx_, cy_ = centers[d]
        hh = halves[d]
        px = np.array([cx_, cx_ + hh, cx_])
        py = np.array([cy_, cy_, cy_ + hh])
        r, dd = w.pixel_to_world_values(px, py)
        fx, fy = project(np.asarray(r, float), np.asarray(dd, float), basis)
        p[i * 6: i * 6 + 6] = [fx[0], fx[1] - fx[0], fx[2] - fx[0], fy[0], fy[1] - fy[0], fy[2] - fy[0]]
    used = np.ones(x.size, bool)
    chi2_dof = float("nan")
    cov = None
    for it in range(max_iter):
        for _ in range(5):
            mxi, meta, jm = model.evaluate(p, det_i, x, y, jac=True)
            w_ = 1.0 / sig**2
            r = np.concatenate([(txi - mxi)[used], (teta - meta)[used]])
            jj = np.concatenate([jm[0][used], jm[1][used]])
            ww = np.concatenate([w_[used], w_[used]])
            ata = jj.T @ (jj * ww[:, None])
            atb = jj.T @ (r * ww)
            try:
                step = np.linalg.solve(ata, atb)
            except np.linalg.LinAlgError:
                return fail("singular normal equations (too few stars on some detector?)")
            p = p + step
            if np.max(np.abs(step)) < 1e-7:
                break
        mxi, meta = model.evaluate(p, det_i, x, y)
        chi = np.hypot(mxi - txi, meta - teta) / sig
        dof = max(2 * int(used.sum()) - model.n_par, 1)
        chi2_dof = float(np.sum(chi[used] ** 2) / dof)
        new_used = chi <= clip_sigma * math.sqrt(max(1.0, chi2_dof))
        if np.array_equal(new_used, used):
            break
        used = new_used
        if used.sum() * 2 < model.n_par + 2:
            return fail("too few reference pairs left after outlier rejection")
    _, _, jm = model.evaluate(p, det_i, x, y, jac=True)
    w_ = 1.0 / sig**2
    jj = np.concatenate([jm[0][used], jm[1][used]])
    ww = np.concatenate([w_[used], w_[used]])
    cov = np.linalg.inv(jj.T @ (jj * ww[:, None])) * max(1.0, chi2_dof)
    pred = np.sqrt(0.5 * (np.einsum("np,pq,nq->n", jm[0], cov, jm[0]) + np.einsum("np,pq,nq->n", jm[1], cov, jm[1])))
    # export per detector
    from ..jointcal import export_tan_sip

    out_wcs, out_err = {}, {}
    for i, d in enumerate(ok_dets):
        def to_vectors(xx: np.ndarray, yy: np.ndarray, _i: int = i) -> np.ndarray:
            a, b = model.evaluate(p, np.full(np.size(xx), _i), np.asarray(xx, float), np.asarray(yy, float))
            ra_, dec_ = deproject(a, b, basis)
            return unit_vectors(ra_, dec_)

        ex = export_tan_sip(to_vectors, boxes[d], sip_order=export_sip_order)
        out_wcs[d] = ex.wcs
        out_err[d] = ex.max_error_mas
    res = QTable()
    res["detector"] = np.asarray(ok_dets, np.int64)[det_i]
    res["row"] = rows_all.astype(np.int64)
    res["x"] = x * u.pix
    res["y"] = y * u.pix
    res["ra"] = rra * u.deg
    res["dec"] = rdec * u.deg
    res["dra_mas"] = (mxi - txi) * 1000.0 * u.mas
    res["ddec_mas"] = (meta - teta) * 1000.0 * u.mas
    res["sigma_mas"] = sig * 1000.0 * u.mas
    res["predicted_mas"] = pred * 1000.0 * u.mas
    res["used"] = used
    place = QTable()
    a = p[: model.n_aff].reshape(-1, 6)
    place["detector"] = np.asarray(ok_dets, np.int64)
    place["x0_arcsec"] = a[:, 0] * u.arcsec
    place["y0_arcsec"] = a[:, 3] * u.arcsec
    hv = np.array([halves[d] for d in ok_dets])
    lin = np.stack([[a[:, 1], a[:, 2]], [a[:, 4], a[:, 5]]], 0).transpose(2, 0, 1) / hv[:, None, None]
    flipped = np.linalg.det(lin) < 0  # sky images seen from inside the sphere: east left
    lin = lin.copy()
    lin[flipped, :, 0] *= -1.0  # rotation and shear of the parity-corrected map
    place["rotation_deg"] = np.degrees(np.arctan2(lin[:, 1, 0] - lin[:, 0, 1], lin[:, 0, 0] + lin[:, 1, 1])) * u.deg
    place["scale_arcsec_per_px"] = np.sqrt(np.abs(np.linalg.det(lin))) * u.arcsec / u.pix
    place["shear"] = np.hypot(lin[:, 0, 0] - lin[:, 1, 1], lin[:, 0, 1] + lin[:, 1, 0]) / np.maximum(
        np.hypot(lin[:, 0, 0] + lin[:, 1, 1], lin[:, 1, 0] - lin[:, 0, 1]), 1e-300)
    place["flipped"] = flipped
    rms = float(np.sqrt(np.mean(np.concatenate([(mxi - txi)[used], (meta - teta)[used]]) ** 2)) * 1000.0)
    reason = ""
    if len(ok_dets) < len(catalogs):
        reason = "detectors without a match (not in `wcs`): " + ", ".join(
            f"{d}: {det_fits[d].reason}" for d in catalogs if d not in ok_dets)
    return VisitWcsResult(True, reason, out_wcs, out_err, det_fits, place, res, int(used.sum()), rms, chi2_dof,
                          order, (ra_c, dec_c))
