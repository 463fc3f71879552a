"""The composed astrometric model: detector polynomial ∘ visit polynomial ∘ tangent plane."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ._geometry import deproject, radec_from_vectors
from ._poly import n_terms, vander, vander_grad

__all__ = ["AstrometricModel", "identity_visit_coef", "fit_poly"]


@dataclasses.dataclass(frozen=True, eq=False)
class AstrometricModel:
    r"""The fitted pixel -> sky mapping of every (visit, detector).

    .. math::

        (x, y) \xrightarrow{P_d} (U, V) \xrightarrow{V_v} (\xi, \eta)
        \xrightarrow{\mathrm{TAN}^{-1}_{v}} (\alpha, \delta)

    ``P_d`` (per detector) maps normalised pixel coordinates
    ``((x - x_c)/s_x, (y - y_c)/s_y)`` to the common focal-plane frame ``(U, V)``
    (arcsec); ``V_v`` (per visit) maps the normalised frame coordinates
    ``((U, V) - f_c)/R`` to the gnomonic standard coordinates ``(ξ, η)`` (arcsec) about
    the visit's tangent point; both are 2-D polynomials (monomials, total order given
    per detector and per visit). The reference visit's map is the identity (the gauge:
    the frame *is* its tangent plane).

    Attributes
    ----------
    visits, detectors : numpy.ndarray of int
        Ids, in internal order.
    visit_order, detector_order : numpy.ndarray of int
        Polynomial order of each map.
    visit_coef : numpy.ndarray, (n_visits, 2, n_terms_max)
        Coefficients of ``V_v`` (arcsec); trailing terms beyond a map's order are zero.
    detector_coef : numpy.ndarray, (n_detectors, 2, n_terms_max)
        Coefficients of ``P_d`` (arcsec).
    detector_center, detector_scale : numpy.ndarray, (n_detectors, 2)
        Pixel normalisation of each detector.
    detector_bbox : numpy.ndarray, (n_detectors, 4)
        ``x_min, x_max, y_min, y_max`` (outer pixel edges) used for exports.
    frame_center : numpy.ndarray, (2,)
    frame_scale : float
        ``f_c`` and ``R`` (arcsec).
    tangent : numpy.ndarray, (n_visits, 3, 3)
        Per visit the tangent point ``c`` and its east ``e`` and north ``n`` unit vectors.
    reference_visit : int
        Id of the visit whose map is the identity.
    """

    visits: np.ndarray
    detectors: np.ndarray
    visit_order: np.ndarray
    detector_order: np.ndarray
    visit_coef: np.ndarray
    detector_coef: np.ndarray
    detector_center: np.ndarray
    detector_scale: np.ndarray
    detector_bbox: np.ndarray
    frame_center: np.ndarray
    frame_scale: float
    tangent: np.ndarray
    reference_visit: int

    # ----------------------------------------------------------------- indices
    def _vi(self, visit: Any) -> np.ndarray:
        v = np.asarray(visit, dtype=np.int64)
        idx = np.searchsorted(self.visits, v)
        idx = np.clip(idx, 0, len(self.visits) - 1)
        if not np.all(self.visits[idx] == v):
            raise InvalidInputError(f"visit(s) {np.unique(v[self.visits[idx] != v])[:5]} are not in the model")
        return idx

    def _di(self, detector: Any) -> np.ndarray:
        d = np.asarray(detector, dtype=np.int64)
        idx = np.searchsorted(self.detectors, d)
        idx = np.clip(idx, 0, len(self.detectors) - 1)
        if not np.all(self.detectors[idx] == d):
            raise InvalidInputError(f"detector(s) {np.unique(d[self.detectors[idx] != d])[:5]} are not in the model")
        return idx

    @property
    def nt_visit(self) -> int:
        """Number of terms of the largest visit map."""
        return self.visit_coef.shape[2]

    @property
    def nt_detector(self) -> int:
        """Number of terms of the largest detector map."""
        return self.detector_coef.shape[2]

    # ----------------------------------------------------------------- evaluation
    def detector_basis(self, di: np.ndarray, x: np.ndarray, y: np.ndarray, *, grad: bool = False):
        """Monomials of the normalised pixel coordinates (and their pixel derivatives)."""
        xn = (x - self.detector_center[di, 0]) / self.detector_scale[di, 0]
        yn = (y - self.detector_center[di, 1]) / self.detector_scale[di, 1]
        order = int(round((np.sqrt(8 * self.nt_detector + 1) - 3) / 2))
        if not grad:
            return vander(xn, yn, order)
        val, du, dv = vander_grad(xn, yn, order)
        return val, du / self.detector_scale[di, 0, None], dv / self.detector_scale[di, 1, None]

    def visit_basis(self, uv: np.ndarray, *, grad: bool = False):
        """Monomials of the normalised frame coordinates (and their frame derivatives)."""
        un = (uv[..., 0] - self.frame_center[0]) / self.frame_scale
        vn = (uv[..., 1] - self.frame_center[1]) / self.frame_scale
        order = int(round((np.sqrt(8 * self.nt_visit + 1) - 3) / 2))
        if not grad:
            return vander(un, vn, order)
        val, du, dv = vander_grad(un, vn, order)
        return val, du / self.frame_scale, dv / self.frame_scale

    def frame(self, detector: Any, x: Any, y: Any) -> np.ndarray:
        """Focal-plane frame coordinates (..., 2) in arcsec of pixels of ``detector``.

        Parameters
        ----------
        detector : int or array_like of int
        x, y : array_like
            0-based pixel coordinates.

        Returns
        -------
        numpy.ndarray
        """
        d, x, y = np.broadcast_arrays(np.asarray(detector), np.asarray(x, float), np.asarray(y, float))
        di = self._di(d)
        phi = self.detector_basis(di, x, y)
        return np.einsum("...ct,...t->...c", self.detector_coef[di], phi)

    def tangent_plane(self, visit: Any, detector: Any, x: Any, y: Any) -> np.ndarray:
        """Standard coordinates (..., 2) in arcsec about the visit's tangent point.

        Parameters
        ----------
        visit, detector : int or array_like of int
        x, y : array_like
            0-based pixel coordinates.

        Returns
        -------
        numpy.ndarray
        """
        v, d, x, y = np.broadcast_arrays(np.asarray(visit), np.asarray(detector), np.asarray(x, float),
                                         np.asarray(y, float))
        vi = self._vi(v)
        uv = self.frame(d, x, y)
        psi = self.visit_basis(uv)
        return np.einsum("...ct,...t->...c", self.visit_coef[vi], psi)

    def pixel_to_vectors(self, visit: Any, detector: Any, x: Any, y: Any) -> np.ndarray:
        """Unit vectors (..., 3) of the sky positions of pixels."""
        v = np.broadcast_to(np.asarray(visit), np.broadcast_shapes(np.shape(visit), np.shape(x), np.shape(y),
                                                                  np.shape(detector)))
        vi = self._vi(v)
        tp = self.tangent_plane(visit, detector, x, y)
        t = self.tangent[vi]
        return deproject(tp[..., 0], tp[..., 1], t[..., 0, :], t[..., 1, :], t[..., 2, :])

    def pixel_to_sky(self, visit: Any, detector: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """ICRS (ra, dec) in degrees of 0-based pixels of (visit, detector).

        Parameters
        ----------
        visit, detector : int or array_like of int
        x, y : array_like

        Returns
        -------
        ra, dec : numpy.ndarray
        """
        return radec_from_vectors(self.pixel_to_vectors(visit, detector, x, y))

    def replace_coefficients(self, visit_coef: np.ndarray, detector_coef: np.ndarray) -> "AstrometricModel":
        """A copy with new coefficient arrays."""
        return dataclasses.replace(self, visit_coef=visit_coef, detector_coef=detector_coef)


def identity_visit_coef(nt: int, frame_center: np.ndarray, frame_scale: float) -> np.ndarray:
    """Coefficients of the identity map ``(ξ, η) = (U, V)`` in the normalised visit basis."""
    c = np.zeros((2, nt))
    c[0, 0], c[1, 0] = frame_center
    c[0, 1] = frame_scale
    c[1, 2] = frame_scale
    return c


def fit_poly(xn: np.ndarray, yn: np.ndarray, target: np.ndarray, order: int, nt_max: int) -> np.ndarray:
    """Least-squares polynomial (2, nt_max) of ``order`` mapping normalised (xn, yn) to target (n, 2)."""
    a = vander(xn, yn, order)
    coef, *_ = np.linalg.lstsq(a, target, rcond=None)
    out = np.zeros((2, nt_max))
    out[:, : n_terms(order)] = coef.T
    return out
