"""Weighted least-squares TAN-SIP fits of matched pixel <-> sky positions, with covariance."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from astropy.wcs import WCS, Sip

from .._errors import InvalidInputError
from ._common import ARCSEC, check_int, deproject, project, tangent_basis, unit_vectors

__all__ = ["TanSipFit", "fit_tan_sip", "monomials", "design"]


def monomials(order: int, lo: int = 0) -> list[tuple[int, int]]:
    """Exponents (p, q) of x^p y^q with lo <= p + q <= order, by total order."""
    return [(n - j, j) for n in range(lo, order + 1) for j in range(n + 1)]


def design(u: np.ndarray, v: np.ndarray, terms: list[tuple[int, int]]) -> np.ndarray:
    """Design matrix (n, len(terms)) of monomials u^p v^q."""
    order = max(p + q for p, q in terms)
    u = np.asarray(u, np.float64)
    v = np.asarray(v, np.float64)
    pu = np.ones(u.shape + (order + 1,))
    pv = np.ones(v.shape + (order + 1,))
    for k in range(1, order + 1):
        pu[..., k] = pu[..., k - 1] * u
        pv[..., k] = pv[..., k - 1] * v
    ex = np.asarray(terms)
    return pu[..., ex[:, 0]] * pv[..., ex[:, 1]]


@dataclasses.dataclass(frozen=True, eq=False)
class TanSipFit:
    r"""A TAN-SIP WCS fitted by :func:`fit_tan_sip`, with the covariance of its mapping.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        ``RA---TAN-SIP``/``DEC--TAN-SIP`` with forward (A, B) and inverse (AP, BP)
        polynomials; ``CRPIX`` = centre of ``bbox`` (FITS 1-based), ``CRVAL`` = the
        fitted position there.
    order : int
        Total order of the forward polynomials (1 = plain TAN).
    covariance : numpy.ndarray, shape (T, T)
        Covariance (arcsec²) of the coefficients of each tangent-plane axis in the
        scaled monomial basis (the same matrix for xi and eta: isotropic weights),
        multiplied by ``max(1, chi2_dof)`` when ``scale_covariance`` was set.
    chi2, dof : float
        Weighted chi² of the fit and its degrees of freedom (2 n - 2 T).
    rms_arcsec : float
        Per-axis rms of the residuals (fitted minus given, tangent plane).
    residuals_arcsec : numpy.ndarray, shape (n, 2)
        Fitted-minus-given position in the tangent plane at ``CRVAL`` (east, north).
    inverse_max_error_px : float
        Largest error of the non-iterative inverse (AP, BP) on a check grid.
    """

    wcs: WCS
    order: int
    covariance: np.ndarray
    chi2: float
    dof: float
    rms_arcsec: float
    residuals_arcsec: np.ndarray
    inverse_max_error_px: float
    _center: tuple[float, float] = (0.0, 0.0)
    _half: float = 1.0

    def mapping_error_arcsec(self, x: Any, y: Any) -> np.ndarray:
        r"""Predicted 1-sigma per-axis error of the fitted mapping at pixels (x, y).

        :math:`\sigma^2(x, y) = d(x, y)^T C\, d(x, y)`, with ``d`` the monomials at the
        point and ``C`` :attr:`covariance`.

        Parameters
        ----------
        x, y : array_like
            0-based pixel positions.

        Returns
        -------
        numpy.ndarray
            Arcsec, same shape as the broadcast inputs.
        """
        xb, yb = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        d = design((xb.ravel() - self._center[0]) / self._half, (yb.ravel() - self._center[1]) / self._half,
                   monomials(self.order))
        var = np.einsum("nt,ts,ns->n", d, self.covariance, d)
        return np.sqrt(np.clip(var, 0, None)).reshape(xb.shape)


def _weighted_solve(d: np.ndarray, w: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sw = np.sqrt(w)
    a = d * sw[:, None]
    q, r = np.linalg.qr(a)
    coef = np.linalg.solve(r, q.T @ (t * sw[:, None]))
    rinv = np.linalg.inv(r)
    return coef, rinv @ rinv.T


def fit_tan_sip(x: Any, y: Any, ra: Any, dec: Any, *, order: int = 3, sigma_arcsec: Any = None,
                bbox: tuple[float, float, float, float] | None = None, inverse_order: int | None = None,
                radesys: str = "ICRS", equinox: float | None = None, scale_covariance: bool = True) -> TanSipFit:
    r"""Fit a TAN-SIP WCS to matched pixel and sky positions by weighted least squares.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        0-based pixel positions.
    ra, dec : array_like, shape (n,)
        Sky positions (degrees) in the frame of ``radesys``.
    order : int
        Total order of the SIP polynomials (1: TAN only, up to 21: wide-field
        zenithal projections such as ZPN over 13 degrees need ~19 for 1 mas). Needs
        ``n >= (order + 1)(order + 2) / 2 + 1`` points.
    sigma_arcsec : float or array_like, optional
        Per-axis 1-sigma error of each pair (arcsec), measurement and reference
        combined; default 1 (unit weights).
    bbox : tuple, optional
        ``(x_min, x_max, y_min, y_max)`` pixel range the WCS is meant for (CRPIX at its
        centre, inverse fitted over it); default the range of the points.
    inverse_order : int, optional
        Order of AP, BP (default ``order + 1``).
    radesys : str
        ``RADESYS`` of the output (``"ICRS"``, ``"FK5"`` ...).
    equinox : float, optional
        ``EQUINOX`` for FK4/FK5 frames.
    scale_covariance : bool
        Multiply the covariance by ``max(1, chi2/dof)``.

    Returns
    -------
    TanSipFit

    Raises
    ------
    InvalidInputError
        Mismatched or non-finite input, too few points for ``order``.

    Notes
    -----
    Sky positions are projected gnomonically about a tangent point :math:`(\alpha_0,
    \delta_0)` to :math:`(\xi, \eta)` and each axis is fitted by a polynomial in the
    scaled pixel offsets :math:`U = (x - x_c)/h, V = (y - y_c)/h`. The tangent point is
    then moved to the fitted position of the centre and the fit repeated until the
    constant terms vanish (< 1e-9 arcsec), so that CRVAL is exact. With
    :math:`CD` the linear terms, the SIP polynomials are
    :math:`(A, B)_{pq} = CD^{-1} (c^\xi_{pq}, c^\eta_{pq}) / h^{p+q}`, i.e.
    :math:`(\xi, \eta) = CD\,(u + A(u, v), v + B(u, v))` (Shupe et al. 2005). The
    inverse polynomials are fitted on a 30 x 30 grid over ``bbox``. Weighted least
    squares by QR; the coefficient covariance is :math:`(D^T W D)^{-1}`.

    References
    ----------
    .. [1] Shupe, D. L. et al. 2005, ASP Conf. Ser. 347, 491 (the SIP convention).
    .. [2] Calabretta, M. R. & Greisen, E. W. 2002, A&A 395, 1077 (gnomonic projection).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.wcs import WCS
    >>> w0 = WCS(naxis=2); w0.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    >>> w0.wcs.crval = [30.0, -20.0]; w0.wcs.crpix = [50.0, 50.0]; w0.wcs.cdelt = [-5e-5, 5e-5]
    >>> gx, gy = np.meshgrid(np.arange(0, 100, 10.0), np.arange(0, 100, 10.0))
    >>> ra, dec = w0.pixel_to_world_values(gx.ravel(), gy.ravel())
    >>> fit = fit_tan_sip(gx.ravel(), gy.ravel(), ra, dec, order=2)
    >>> bool(fit.rms_arcsec < 1e-6)
    True
    """
    order = check_int(order, "order", 1, 21)
    x = np.asarray(x, np.float64).ravel()
    y = np.asarray(y, np.float64).ravel()
    ra = np.asarray(ra, np.float64).ravel()
    dec = np.asarray(dec, np.float64).ravel()
    n = x.size
    if not (y.size == ra.size == dec.size == n):
        raise InvalidInputError(f"`x, y, ra, dec` must have one length; got {x.size}, {y.size}, {ra.size}, {dec.size}")
    if not all(np.isfinite(a).all() for a in (x, y, ra, dec)):
        raise InvalidInputError("`x, y, ra, dec` must be finite")
    terms = monomials(order)
    if n < len(terms) + 1:
        raise InvalidInputError(f"order {order} needs at least {len(terms) + 1} points; got {n}")
    sig = np.ones(n) if sigma_arcsec is None else np.broadcast_to(np.asarray(sigma_arcsec, float), (n,)).copy()
    if not (np.isfinite(sig).all() and (sig > 0).all()):
        raise InvalidInputError("`sigma_arcsec` must be finite and > 0")
    w = 1.0 / sig**2
    if bbox is None:
        bbox = (float(x.min()), float(x.max()), float(y.min()), float(y.max()))
    x0, x1, y0, y1 = (float(b) for b in bbox)
    xc, yc = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    half = max(0.5 * max(x1 - x0, y1 - y0), 1.0)
    u, v = (x - xc) / half, (y - yc) / half
    d = design(u, v, terms)
    # starting tangent point: the weighted mean position
    pm = unit_vectors(ra, dec).mean(axis=0)
    ra0 = float(np.degrees(np.arctan2(pm[1], pm[0])) % 360.0)
    dec0 = float(np.degrees(np.arctan2(pm[2], np.hypot(pm[0], pm[1]))))
    for _ in range(8):
        basis = tangent_basis(ra0, dec0)
        xi, eta = project(ra, dec, basis)
        coef, cov = _weighted_solve(d, w, np.stack([xi, eta], -1))
        if np.hypot(coef[0, 0], coef[0, 1]) < 1e-9:
            break
        r0, d0 = deproject(coef[0, 0], coef[0, 1], basis)
        ra0, dec0 = float(r0), float(d0)
    res = d @ coef - np.stack([xi, eta], -1)
    chi2 = float(np.sum(w[:, None] * res**2))
    dof = float(2 * n - 2 * len(terms))
    if scale_covariance and dof > 0:
        cov = cov * max(1.0, chi2 / dof)
    cd = np.array([[coef[1, 0], coef[2, 0]], [coef[1, 1], coef[2, 1]]]) / half / 3600.0  # deg / px
    if abs(np.linalg.det(cd)) < 1e-30:
        raise InvalidInputError("the points do not constrain a WCS (degenerate linear terms)")
    cd_inv = np.linalg.inv(cd)
    a = np.zeros((order + 1, order + 1))
    b = np.zeros((order + 1, order + 1))
    for t, (p, q) in enumerate(terms):
        if p + q >= 2:
            ab = cd_inv @ (coef[t] / 3600.0) / half ** (p + q)
            a[p, q], b[p, q] = ab
    iorder = order + 1 if inverse_order is None else check_int(inverse_order, "inverse_order", 1, 22)
    w_out = WCS(naxis=2)
    sip_on = order >= 2
    w_out.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"] if sip_on else ["RA---TAN", "DEC--TAN"]
    w_out.wcs.cunit = ["deg", "deg"]
    w_out.wcs.radesys = str(radesys)
    if equinox is not None:
        w_out.wcs.equinox = float(equinox)
    w_out.wcs.crval = [ra0, dec0]
    w_out.wcs.crpix = [xc + 1.0, yc + 1.0]
    w_out.wcs.cd = cd
    inv_err = 0.0
    if sip_on:
        ng = 30
        gx, gy = np.meshgrid(np.linspace(x0, x1, ng), np.linspace(y0, y1, ng))
        gx, gy = gx.ravel(), gy.ravel()
        gu, gv = gx - xc, gy - yc
        full = design(gu / half, gv / half, terms) @ coef / 3600.0  # deg
        up = full @ cd_inv.T
        iterms = monomials(iorder, 1)
        di = design(up[:, 0] / half, up[:, 1] / half, iterms)
        ci, *_ = np.linalg.lstsq(di, np.stack([gu - up[:, 0], gv - up[:, 1]], -1), rcond=None)
        inv_err = float(np.max(np.hypot(*(up + di @ ci - np.stack([gu, gv], -1)).T)))
        ap = np.zeros((iorder + 1, iorder + 1))
        bp = np.zeros((iorder + 1, iorder + 1))
        for t, (p, q) in enumerate(iterms):
            ap[p, q], bp[p, q] = ci[t] / half ** (p + q)
        w_out.sip = Sip(a, b, ap, bp, w_out.wcs.crpix)
    w_out.pixel_shape = (max(int(round(x1 - x0)) + 1, 1), max(int(round(y1 - y0)) + 1, 1))
    w_out.wcs.set()
    rms = float(np.sqrt(np.mean(res**2)))
    return TanSipFit(w_out, order, cov, chi2, dof, rms, res, inv_err, (xc, yc), half)


def sky_offsets_arcsec(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    """(east, north) offsets (arcsec) of position 1 relative to position 2, (n, 2)."""
    p1 = unit_vectors(ra1, dec1)
    p2 = unit_vectors(ra2, dec2)
    e = np.stack([-p2[..., 1], p2[..., 0], np.zeros_like(p2[..., 0])], -1)
    e = e / np.maximum(np.linalg.norm(e, axis=-1, keepdims=True), 1e-300)
    nn = np.cross(p2, e)
    dp = p1 - p2
    return np.stack([np.sum(dp * e, -1), np.sum(dp * nn, -1)], -1) / ARCSEC
