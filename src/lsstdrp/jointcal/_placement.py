"""Detector placement from the fitted detector maps (shift and rotation vs a nominal layout)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._errors import InvalidInputError
from ._model import AstrometricModel
from ._poly import n_terms, vander, vander_grad

__all__ = ["fit_placement"]


def fit_placement(model: AstrometricModel, cov: np.ndarray, det_cols: np.ndarray, n_cam: int,
                  nominal: Callable[[Any, Any, Any], tuple[Any, Any]], *, n_grid: int = 6,
                  iterations: int = 8) -> tuple[QTable, float]:
    r"""Decompose the detector maps into a common map and rigid detector placements.

    .. math::

        P_d(x) \approx \Pi_d\, G\bigl(c_d + \delta_d + R(\alpha_d)\,(n_d(x) - c_d)\bigr)

    with ``n_d`` the nominal pixel -> focal-plane (mm) mapping, ``c_d`` the nominal
    position of the detector centre, ``G`` a polynomial of the largest detector order
    (optics and the reference visit's pointing, rotation and turbulence) and
    :math:`\Pi_d` the projection onto detector ``d``'s polynomial basis. The fit is
    generalised least squares on the fitted detector coefficients with their covariance
    (from the joint fit); a common shift and rotation cannot be told from ``G`` (they
    are the pointing and the rotator angle), so :math:`\sum_d \delta_d = 0` and
    :math:`\sum_d \alpha_d = 0`.

    Parameters
    ----------
    model : AstrometricModel
        The fitted model.
    cov : numpy.ndarray
        Camera-parameter covariance of the joint fit.
    det_cols : numpy.ndarray
        Column index of each detector coefficient (``n_cam`` = fixed).
    n_cam : int
        Number of camera parameters.
    nominal : callable
        ``(detector, x, y) -> (fx, fy)`` nominal focal-plane position in mm.
    n_grid : int
        Grid points per axis per detector.
    iterations : int
        Gauss–Newton iterations.

    Returns
    -------
    placement : astropy.table.QTable
        ``detector, shift_x_mm, shift_y_mm, rotation_rad`` and ``*_err``.
    chi2_dof : float
        Goodness of the decomposition.
    """
    nd = len(model.detectors)
    if nd < 2:
        raise InvalidInputError("detector placement needs at least two fitted detectors")
    og = int(model.detector_order.max())
    ntg = n_terms(og)
    grids, nom, phis, pinvs, free = [], [], [], [], []
    centers = np.zeros((nd, 2))
    for di, d in enumerate(model.detectors):
        x0, x1, y0, y1 = model.detector_bbox[di]
        gx, gy = np.meshgrid(np.linspace(x0, x1, n_grid), np.linspace(y0, y1, n_grid))
        gx, gy = gx.ravel(), gy.ravel()
        fx, fy = nominal(int(d), gx, gy)
        cx, cy = nominal(int(d), model.detector_center[di, 0], model.detector_center[di, 1])
        centers[di] = (float(np.asarray(cx)), float(np.asarray(cy)))
        nom.append(np.stack([np.asarray(fx, float), np.asarray(fy, float)], -1))
        phi = model.detector_basis(np.full(gx.shape, di), gx, gy)
        nt_d = n_terms(int(model.detector_order[di]))
        phis.append(phi[:, :nt_d])
        pinvs.append(np.linalg.pinv(phi[:, :nt_d]))
        grids.append((gx, gy))
        free.append(det_cols[di, :, :nt_d].ravel())
    allf = np.concatenate(nom)
    fc = allf.mean(axis=0)
    rf = float(np.max(np.hypot(*(allf - fc).T)))
    data = np.concatenate([model.detector_coef[di, :, :n_terms(int(model.detector_order[di]))].ravel()
                           for di in range(nd)])
    cols = np.concatenate(free)
    sigma = cov[np.ix_(cols, cols)]
    try:
        lw = np.linalg.inv(np.linalg.cholesky(sigma))
    except np.linalg.LinAlgError:
        return _empty(model), math.nan
    # gauge: shifts and rotations with zero sum
    q = np.linalg.svd(np.eye(nd) - 1.0 / nd)[0][:, : nd - 1]

    def focal(di: int, dx: np.ndarray, al: np.ndarray) -> np.ndarray:
        rel = nom[di] - centers[di]
        ca, sa = math.cos(al[di]), math.sin(al[di])
        return centers[di] + dx[di] + np.stack([ca * rel[:, 0] - sa * rel[:, 1], sa * rel[:, 0] + ca * rel[:, 1]], -1)

    def predict(gc: np.ndarray, dx: np.ndarray, al: np.ndarray):
        out, jac_g, jac_d, jac_a = [], [], [], []
        for di in range(nd):
            f = focal(di, dx, al)
            val, du, dv = vander_grad((f[:, 0] - fc[0]) / rf, (f[:, 1] - fc[1]) / rf, og)
            g = val @ gc.T  # (n, 2)
            out.append((pinvs[di] @ g).T.ravel())
            # d(coef)/d(G coef): component c of G -> component c of the detector map
            jg = np.zeros((2 * pinvs[di].shape[0], 2 * ntg))
            pv = pinvs[di] @ val
            jg[: pinvs[di].shape[0], :ntg] = pv
            jg[pinvs[di].shape[0]:, ntg:] = pv
            jac_g.append(jg)
            dgx = np.stack([du @ gc[0], du @ gc[1]], -1) / rf  # dG/dfx (n, 2)
            dgy = np.stack([dv @ gc[0], dv @ gc[1]], -1) / rf
            jac_d.append(np.stack([(pinvs[di] @ dgx).T.ravel(), (pinvs[di] @ dgy).T.ravel()], -1))
            rel = nom[di] - centers[di]
            ca, sa = math.cos(al[di]), math.sin(al[di])
            dfa = np.stack([-sa * rel[:, 0] - ca * rel[:, 1], ca * rel[:, 0] - sa * rel[:, 1]], -1)
            dga = dgx * dfa[:, 0:1] + dgy * dfa[:, 1:2]
            jac_a.append((pinvs[di] @ dga).T.ravel())
        return np.concatenate(out), jac_g, jac_d, jac_a

    # initial G: nominal focal plane -> fitted frame, all detectors together
    tg = np.concatenate([phis[di] @ model.detector_coef[di, :, : phis[di].shape[1]].T for di in range(nd)])
    a0 = vander((allf[:, 0] - fc[0]) / rf, (allf[:, 1] - fc[1]) / rf, og)
    gc = np.linalg.lstsq(a0, tg, rcond=None)[0].T
    dx = np.zeros((nd, 2))
    al = np.zeros(nd)
    sizes = [2 * p.shape[0] for p in pinvs]
    offs = np.concatenate([[0], np.cumsum(sizes)])
    npar = 2 * ntg + 3 * (nd - 1)
    cov_p = np.full((npar, npar), np.nan)
    chi2 = math.nan
    for _ in range(iterations):
        pred, jg, jd, ja = predict(gc, dx, al)
        jac = np.zeros((len(data), npar))
        for di in range(nd):
            rows = slice(offs[di], offs[di + 1])
            jac[rows, : 2 * ntg] = jg[di]
            # shift x, shift y, rotation of detector di via the zero-sum basis q[di]
            jac[rows, 2 * ntg:2 * ntg + nd - 1] = np.outer(jd[di][:, 0], q[di])
            jac[rows, 2 * ntg + nd - 1:2 * ntg + 2 * (nd - 1)] = np.outer(jd[di][:, 1], q[di])
            jac[rows, 2 * ntg + 2 * (nd - 1):] = np.outer(ja[di], q[di])
        wj = lw @ jac
        wr = lw @ (data - pred)
        step, *_ = np.linalg.lstsq(wj, wr, rcond=None)
        gc = gc + step[: 2 * ntg].reshape(2, ntg)
        zx = step[2 * ntg:2 * ntg + nd - 1]
        zy = step[2 * ntg + nd - 1:2 * ntg + 2 * (nd - 1)]
        za = step[2 * ntg + 2 * (nd - 1):]
        dx = dx + np.stack([q @ zx, q @ zy], -1)
        al = al + q @ za
        chi2 = float(np.sum((lw @ (data - predict(gc, dx, al)[0])) ** 2))
        cov_p = np.linalg.pinv(wj.T @ wj)
        if np.max(np.abs(step[2 * ntg:])) < 1e-12:
            break
    dof = len(data) - npar
    # errors of the shifts / rotations through the zero-sum basis
    bx = cov_p[2 * ntg:2 * ntg + nd - 1, 2 * ntg:2 * ntg + nd - 1]
    by = cov_p[2 * ntg + nd - 1:2 * ntg + 2 * (nd - 1), 2 * ntg + nd - 1:2 * ntg + 2 * (nd - 1)]
    ba = cov_p[2 * ntg + 2 * (nd - 1):, 2 * ntg + 2 * (nd - 1):]
    t = QTable()
    t["detector"] = model.detectors.copy()
    t["shift_x_mm"] = dx[:, 0] * u.mm
    t["shift_y_mm"] = dx[:, 1] * u.mm
    t["rotation_rad"] = al * u.rad
    t["shift_x_mm_err"] = np.sqrt(np.clip(np.diag(q @ bx @ q.T), 0, None)) * u.mm
    t["shift_y_mm_err"] = np.sqrt(np.clip(np.diag(q @ by @ q.T), 0, None)) * u.mm
    t["rotation_rad_err"] = np.sqrt(np.clip(np.diag(q @ ba @ q.T), 0, None)) * u.rad
    t.meta.update(gauge="sum of shifts and of rotations is zero", common_map_order=og,
                  chi2_dof=chi2 / dof if dof > 0 else math.nan)
    return t, (chi2 / dof if dof > 0 else math.nan)


def _empty(model: AstrometricModel) -> QTable:
    t = QTable()
    t["detector"] = model.detectors.copy()
    for c in ("shift_x_mm", "shift_y_mm", "rotation_rad", "shift_x_mm_err", "shift_y_mm_err", "rotation_rad_err"):
        t[c] = np.full(len(model.detectors), np.nan)
    return t
