"""Circular and elliptical aperture photometry with exact pixel overlap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from . import _kernels as K
from ._inputs import _as_pixels, _per_source, _positions, _subpix

__all__ = ["ApertureFluxes", "aperture_flux", "elliptical_aperture_flux"]


@dataclass(frozen=True, slots=True)
class ApertureFluxes:
    """Aperture sums of n sources (at k radii when several were requested).

    Attributes
    ----------
    flux : numpy.ndarray of float64, shape (n,) or (n, k)
        Sum of overlap weight times pixel value (image units).
    flux_err : numpy.ndarray of float64
        1-sigma error, ``sqrt(sum(weight * variance))``; NaN when no variance was given.
    area : numpy.ndarray of float64
        Sum of the overlap weights of the pixels used (pixels); ``pi r^2`` for an
        aperture fully inside the image with nothing masked.
    flags : numpy.ndarray of int32
        :class:`~lsstdrp.measure.MeasurementFlag` bits: ``EDGE`` (part of the aperture
        lies outside the image), ``MASKED`` (masked or non-finite pixels were left
        out), ``NO_PIXELS``, ``NONFINITE`` (position).
    """

    flux: np.ndarray
    flux_err: np.ndarray
    area: np.ndarray
    flags: np.ndarray


def _radii(radius: Any) -> tuple[np.ndarray, bool]:
    arr = np.asarray(radius, dtype=np.float64)
    scalar = arr.ndim == 0
    arr = np.atleast_1d(arr)
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidInputError(f"`radius` must be a positive number or a 1-D sequence of them; got {radius!r}")
    if not (np.all(np.isfinite(arr)) and np.all(arr > 0)):
        raise InvalidInputError(f"`radius` must be finite and > 0; got {radius!r}")
    return np.ascontiguousarray(arr), scalar


def aperture_flux(
    image: Any,
    x: Any,
    y: Any,
    radius: Any,
    *,
    variance: Any = None,
    error: Any = None,
    mask: Any = None,
    bad_planes: Any = None,
    subpix: int = 0,
) -> ApertureFluxes:
    r"""Flux in circular apertures, with the exact area of overlap of circle and pixels.

    .. math::

        F = \sum_p w_p I_p, \qquad \sigma_F^2 = \sum_p w_p V_p,

    where :math:`w_p \in [0, 1]` is the fraction of pixel :math:`p` (a unit square
    centred on integer coordinates) inside the circle of radius :math:`r` centred at
    :math:`(x, y)`. With ``subpix=0`` the weight is the exact area of overlap (as
    ``sep.sum_circle(subpix=0)`` and photutils ``method="exact"``); with ``subpix=n``
    it is the fraction of the :math:`n \times n` sub-pixel centres inside the circle
    (SExtractor's ``FLUX_APER`` uses ``n = 5``, ``n = 1`` is pixel-centre inclusion).
    The variance is weighted by :math:`w_p` (not :math:`w_p^2`), the convention of
    SExtractor, sep and photutils.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image, ``image[y, x]``. Any real dtype (float32 is not
        copied). Non-finite pixels are left out and flagged ``MASKED``.
    x, y : float or array_like of shape (n,)
        Aperture centres in pixels (0-based, integer at pixel centres); a Quantity in
        ``pix`` is accepted.
    radius : float or sequence of float
        Radius or radii in pixels (> 0).
    variance : float or array_like, optional
        Variance of ``image`` (image units squared): a scalar or an array of the image
        shape. Pixels with negative or non-finite variance are left out.
    error : float or array_like, optional
        1-sigma error instead of ``variance`` (not both).
    mask : array_like of bool or uint32, optional
        Boolean (True = exclude) or :class:`~lsstdrp.core.MaskPlane` bits.
    bad_planes : int, MaskPlane or sequence of str, optional
        With an integer mask, the bits that exclude a pixel (default
        :data:`~lsstdrp.core.DEFAULT_BAD_PLANES`).
    subpix : int, optional
        0 (default) for the exact overlap, else the sub-sampling factor per axis.

    Returns
    -------
    ApertureFluxes
        Arrays of shape (n,) for a scalar ``radius``, (n, k) for k radii. Excluded
        pixels are left out (not replaced); the aperture area actually used is
        ``area``.

    Raises
    ------
    InvalidInputError
        Wrong shapes or dtypes, non-positive radii, both ``variance`` and ``error``.

    Notes
    -----
    The exact weight integrates the disk over each pixel row: for the row
    :math:`y_0 \le Y \le y_1` the area left of :math:`X = x_c` is
    :math:`Q(x_c) = P(x_c, y_1) - P(x_c, y_0)` with :math:`P(x, y)` the signed area of
    the disk in the rectangle spanned by the origin and :math:`(x, y)`,

    .. math::

        P(x, y) = \begin{cases} xy & x^2 + y^2 \le r^2 \\
        x_c y + G(x) - G(x_c) & \text{otherwise}, \quad x_c = \sqrt{r^2 - y^2}
        \end{cases}, \qquad G(t) = \tfrac12\left(t\sqrt{r^2-t^2} + r^2 \arcsin\tfrac{t}{r}\right)

    (for :math:`x, y \ge 0`, extended oddly), and the pixel weight is
    :math:`Q(x + \frac12) - Q(x - \frac12)`. Pixels farther than :math:`r` are skipped
    and pixels fully inside get weight 1 without arithmetic. ``EDGE`` is set when a
    pixel outside the image would have had a non-zero weight.

    References
    ----------
    .. [1] Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor).
    .. [2] Barbary, K. 2016, JOSS 1, 58 (sep).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.measure import aperture_flux
    >>> res = aperture_flux(np.ones((50, 50)), 24.3, 25.1, [3.0, 5.0], variance=4.0)
    >>> np.allclose(res.flux, np.pi * np.array([9.0, 25.0]))
    True
    >>> np.allclose(res.flux_err, 2 * np.sqrt(res.area))
    True
    """
    px = _as_pixels(image, variance=variance, error=error, mask=mask, bad_planes=bad_planes)
    xs, ys = _positions(x, y)
    radii, scalar = _radii(radius)
    sp = _subpix(subpix)
    n, k = xs.size, radii.size
    flux = np.empty((n, k))
    fvar = np.empty((n, k))
    area = np.empty((n, k))
    flags = np.empty((n, k), dtype=np.int32)
    K._sum_circles(px.image, px.bad, px.var_mode, px.var, px.var_scalar, xs, ys, radii, sp,
                   flux, fvar, area, flags)
    return _pack(flux, fvar, area, flags, px.var_mode, scalar)


def _pack(flux: np.ndarray, fvar: np.ndarray, area: np.ndarray, flags: np.ndarray, var_mode: int,
          scalar: bool) -> ApertureFluxes:
    no = (flags & K.F_NO_PIXELS) != 0
    flux[no] = np.nan
    err = np.sqrt(fvar) if var_mode else np.full_like(flux, np.nan)
    err[no] = np.nan
    if scalar:
        flux, err, area, flags = flux[:, 0], err[:, 0], area[:, 0], flags[:, 0]
    return ApertureFluxes(flux, err, area, flags)


def elliptical_aperture_flux(
    image: Any,
    x: Any,
    y: Any,
    a: Any,
    b: Any,
    theta: Any,
    scale: Any = 1.0,
    *,
    variance: Any = None,
    error: Any = None,
    mask: Any = None,
    bad_planes: Any = None,
    subpix: int = 0,
) -> ApertureFluxes:
    r"""Flux in elliptical apertures of semi-axes ``scale * (a, b)`` at angle ``theta``.

    Same sums and conventions as :func:`aperture_flux`; the ellipse is

    .. math::

        \left(\frac{\Delta x \cos\theta + \Delta y \sin\theta}{s a}\right)^2 +
        \left(\frac{-\Delta x \sin\theta + \Delta y \cos\theta}{s b}\right)^2 \le 1,

    :math:`\theta` counter-clockwise from the x axis (radians), as in sep and
    SExtractor's ``THETA_IMAGE``.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image.
    x, y : float or array_like of shape (n,)
        Centres in pixels.
    a, b : float or array_like of shape (n,)
        Semi-axes in pixels (> 0); ``a < b`` is allowed (the roles swap).
    theta : float or array_like of shape (n,)
        Position angle of ``a`` in radians.
    scale : float, array_like of shape (n,) or (n, k), optional
        Multiplier of the axes (e.g. 2.5 Kron radii); a 2-D array gives k apertures per
        source. Non-positive or NaN entries give ``NO_PIXELS``.
    variance, error, mask, bad_planes, subpix
        As in :func:`aperture_flux`.

    Returns
    -------
    ApertureFluxes
        Shape (n,) for a scalar or 1-D ``scale``, (n, k) for a 2-D one.

    Raises
    ------
    InvalidInputError
        Mismatched lengths, non-positive axes, both ``variance`` and ``error``.

    Notes
    -----
    For the exact weight the ellipse is mapped onto the unit disk; a pixel becomes a
    parallelogram, and its overlap is the sum over its edges of the signed areas of
    disk-triangle intersections (each a triangle plus circular sectors), times
    :math:`ab`.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.measure import elliptical_aperture_flux
    >>> res = elliptical_aperture_flux(np.ones((60, 60)), 30.2, 29.7, 4.0, 2.0, 0.3)
    >>> bool(np.isclose(res.flux[0], np.pi * 8.0))
    True
    """
    px = _as_pixels(image, variance=variance, error=error, mask=mask, bad_planes=bad_planes)
    xs, ys = _positions(x, y)
    n = xs.size
    aa = _per_source(a, n, "a", positive=True)
    bb = _per_source(b, n, "b", positive=True)
    th = _per_source(theta, n, "theta")
    sc = np.asarray(scale, dtype=np.float64)
    two_d = sc.ndim == 2
    if sc.ndim == 0:
        sc = np.full((n, 1), float(sc))
    elif sc.ndim == 1:
        if sc.shape != (n,):
            raise InvalidInputError(f"`scale` has shape {sc.shape}; expected a scalar, ({n},) or ({n}, k)")
        sc = sc[:, None]
    elif sc.shape[0] != n:
        raise InvalidInputError(f"`scale` has shape {sc.shape}; expected a scalar, ({n},) or ({n}, k)")
    sc = np.ascontiguousarray(sc)
    sp = _subpix(subpix)
    k = sc.shape[1]
    flux = np.empty((n, k))
    fvar = np.empty((n, k))
    area = np.empty((n, k))
    flags = np.empty((n, k), dtype=np.int32)
    K._sum_ellipses(px.image, px.bad, px.var_mode, px.var, px.var_scalar, xs, ys, aa, bb, th, sc, sp,
                    flux, fvar, area, flags)
    return _pack(flux, fvar, area, flags, px.var_mode, not two_d)
