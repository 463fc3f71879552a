"""Kron radius and flux (SExtractor's FLUX_AUTO) and fraction-of-light radii."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from . import _kernels as K
from ._inputs import _as_pixels, _per_source, _positions, _subpix

__all__ = ["KronFluxes", "FluxRadii", "kron_radius", "kron_flux", "flux_radius"]


@dataclass(frozen=True, slots=True)
class KronFluxes:
    """Kron radii and fluxes of n sources.

    Attributes
    ----------
    kron_radius : numpy.ndarray of float64, shape (n,)
        First-moment radius :math:`r_1` in units of the ellipse axes (SExtractor's
        ``KRON_RADIUS`` is ``kron_factor * r_1``); NaN where it failed.
    radius : numpy.ndarray of float64
        The same in pixels, :math:`r_1 \\sqrt{ab}` (:math:`\\sigma\\sqrt{\\pi/2}` for a
        round Gaussian of width :math:`\\sigma`).
    scale : numpy.ndarray of float64
        Axis multiplier of the flux aperture, :math:`\\max(k r_1, r_\\mathrm{min})`.
    flux, flux_err, area : numpy.ndarray of float64
        Sum in the ellipse of semi-axes ``scale * (a, b)`` (see
        :class:`~lsstdrp.measure.ApertureFluxes`).
    flags : numpy.ndarray of int32
        :class:`~lsstdrp.measure.MeasurementFlag` bits of the radius and the flux.
    """

    kron_radius: np.ndarray
    radius: np.ndarray
    scale: np.ndarray
    flux: np.ndarray
    flux_err: np.ndarray
    area: np.ndarray
    flags: np.ndarray


@dataclass(frozen=True, slots=True)
class FluxRadii:
    """Radii enclosing given fractions of a normalising flux.

    Attributes
    ----------
    radius : numpy.ndarray of float64, shape (n,) or (n, k)
        Radius in pixels for each fraction (NaN where it failed).
    flags : numpy.ndarray of int32, shape (n,)
        :class:`~lsstdrp.measure.MeasurementFlag` bits (``NOT_CONVERGED`` when a fraction
        is not reached within ``rmax``).
    """

    radius: np.ndarray
    flags: np.ndarray


def _ellipses(x: Any, y: Any, a: Any, b: Any, theta: Any) -> tuple[np.ndarray, ...]:
    xs, ys = _positions(x, y)
    n = xs.size
    return (xs, ys, _per_source(a, n, "a", positive=True), _per_source(b, n, "b", positive=True),
            _per_source(theta, n, "theta"))


def kron_radius(
    image: Any,
    x: Any,
    y: Any,
    a: Any,
    b: Any,
    theta: Any,
    *,
    mask: Any = None,
    bad_planes: Any = None,
    window: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    r"""First-moment (Kron 1980) radius in the elliptical geometry of each source.

    .. math::

        r_1 = \frac{\sum_p \rho_p I_p}{\sum_p I_p}, \qquad
        \rho_p^2 = c_{xx}\Delta x^2 + c_{yy}\Delta y^2 + c_{xy}\Delta x\Delta y,

    over the pixels whose centre has :math:`\rho_p \le` ``window`` (SExtractor and
    sep: 6, i.e. 6 times the ellipse ``(a, b, theta)``), where :math:`c_{xx} =
    \cos^2\theta/a^2 + \sin^2\theta/b^2`, :math:`c_{yy} = \sin^2\theta/a^2 +
    \cos^2\theta/b^2`, :math:`c_{xy} = 2\cos\theta\sin\theta(1/a^2 - 1/b^2)`. The
    radius is in units of the ellipse axes; in pixels it is :math:`r_1\sqrt{ab}`.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image.
    x, y : float or array_like of shape (n,)
        Centres, pixels.
    a, b, theta : float or array_like of shape (n,)
        Shape ellipse: semi-axes (pixels, e.g. the RMS extent along the major and minor
        axes as SExtractor's ``A_IMAGE``/``B_IMAGE``) and angle (radians, from x).
    mask, bad_planes
        Excluded pixels (left out; flag ``MASKED``).
    window : float, optional
        Integration limit in units of the ellipse.

    Returns
    -------
    radius : numpy.ndarray of float64, shape (n,)
        :math:`r_1` (dimensionless); NaN with ``NONPOSITIVE`` when either sum is <= 0.
    flags : numpy.ndarray of int32, shape (n,)
        :class:`~lsstdrp.measure.MeasurementFlag` bits.

    Raises
    ------
    InvalidInputError
        Invalid arrays, non-positive axes or window.

    References
    ----------
    .. [1] Kron, R. G. 1980, ApJS 43, 305.
    .. [2] Bertin, E. & Arnouts, S. 1996, A&AS 117, 393.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.measure import kron_radius
    >>> yy, xx = np.mgrid[0:101, 0:101]
    >>> img = np.exp(-((xx - 50.0) ** 2 + (yy - 50.0) ** 2) / (2 * 4.0**2))
    >>> r1, flags = kron_radius(img, 50.0, 50.0, 4.0, 4.0, 0.0)
    >>> round(float(r1[0]), 3), round(float(np.sqrt(np.pi / 2)), 3)   # sigma sqrt(pi/2) / sigma
    (1.253, 1.253)
    """
    px = _as_pixels(image, mask=mask, bad_planes=bad_planes)
    xs, ys, aa, bb, th = _ellipses(x, y, a, b, theta)
    if not (np.isfinite(window) and window > 0):
        raise InvalidInputError(f"`window` must be finite and > 0; got {window!r}")
    kr = np.empty(xs.size)
    flags = np.empty(xs.size, dtype=np.int32)
    K._kron_radii(px.image, px.bad, xs, ys, aa, bb, th, float(window), kr, flags)
    return kr, flags


def kron_flux(
    image: Any,
    x: Any,
    y: Any,
    a: Any,
    b: Any,
    theta: Any,
    *,
    variance: Any = None,
    error: Any = None,
    mask: Any = None,
    bad_planes: Any = None,
    kron_factor: float = 2.5,
    min_radius: float = 3.5,
    window: float = 6.0,
    subpix: int = 0,
) -> KronFluxes:
    r"""Kron radius and the flux in the Kron ellipse (SExtractor's ``FLUX_AUTO`` rules).

    The aperture is the ellipse ``(a, b, theta)`` scaled by
    :math:`s = \max(k\,r_1, r_\mathrm{min})` with :math:`r_1` from :func:`kron_radius`,
    :math:`k` = ``kron_factor`` (2.5) and :math:`r_\mathrm{min}` = ``min_radius`` (3.5),
    the defaults of SExtractor's ``PHOT_AUTOPARAMS 2.5, 3.5``. When :math:`r_1` cannot
    be measured the aperture uses :math:`r_\mathrm{min}` (NaN flux if that is 0) and
    the source is flagged.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image.
    x, y, a, b, theta : float or array_like of shape (n,)
        Centres and shape ellipses, as in :func:`kron_radius`.
    variance, error, mask, bad_planes
        As in :func:`aperture_flux`.
    kron_factor : float, optional
        :math:`k`.
    min_radius : float, optional
        Smallest aperture scale (units of the axes; 0 disables).
    window : float, optional
        Integration limit of :math:`r_1`.
    subpix : int, optional
        Overlap of the flux aperture: 0 exact (default); SExtractor's ``FLUX_AUTO`` uses
        pixel-centre inclusion, ``subpix=1``.

    Returns
    -------
    KronFluxes

    Raises
    ------
    InvalidInputError
        Invalid arrays or options.

    Notes
    -----
    For a round Gaussian of width :math:`\sigma` measured with :math:`a = b = \sigma`,
    :math:`r_1 = \sqrt{\pi/2}` and the aperture of radius :math:`2.5 r_1 \sigma` holds
    :math:`1 - e^{-\pi \cdot 2.5^2 / 4} = 99.3\%` of the flux.

    References
    ----------
    .. [1] Kron, R. G. 1980, ApJS 43, 305.
    .. [2] Bertin, E. & Arnouts, S. 1996, A&AS 117, 393.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.measure import kron_flux
    >>> yy, xx = np.mgrid[0:101, 0:101]
    >>> img = 1000 * np.exp(-((xx - 50.0) ** 2 + (yy - 50.0) ** 2) / 32.0) / (32 * np.pi)
    >>> res = kron_flux(img, 50.0, 50.0, 4.0, 4.0, 0.0, min_radius=0.0)
    >>> round(float(res.radius[0]), 2), round(float(res.flux[0]), 1)   # 4 sqrt(pi/2); 99.25%
    (5.01, 992.4)
    """
    px = _as_pixels(image, variance=variance, error=error, mask=mask, bad_planes=bad_planes)
    xs, ys, aa, bb, th = _ellipses(x, y, a, b, theta)
    for name, val in (("kron_factor", kron_factor), ("window", window)):
        if not (np.isfinite(val) and val > 0):
            raise InvalidInputError(f"`{name}` must be finite and > 0; got {val!r}")
    if not (np.isfinite(min_radius) and min_radius >= 0):
        raise InvalidInputError(f"`min_radius` must be finite and >= 0; got {min_radius!r}")
    sp = _subpix(subpix)
    n = xs.size
    kr = np.empty(n)
    kflags = np.empty(n, dtype=np.int32)
    K._kron_radii(px.image, px.bad, xs, ys, aa, bb, th, float(window), kr, kflags)
    scale = np.fmax(kron_factor * kr, min_radius)  # fmax: NaN kr -> min_radius
    scale[~(scale > 0)] = np.nan
    flux = np.empty((n, 1))
    fvar = np.empty((n, 1))
    area = np.empty((n, 1))
    fflags = np.empty((n, 1), dtype=np.int32)
    K._sum_ellipses(px.image, px.bad, px.var_mode, px.var, px.var_scalar, xs, ys, aa, bb, th,
                    np.ascontiguousarray(scale[:, None]), sp, flux, fvar, area, fflags)
    flags = kflags | fflags[:, 0]
    f = flux[:, 0]
    err = np.sqrt(fvar[:, 0]) if px.var_mode else np.full(n, np.nan)
    bad = (fflags[:, 0] & K.F_NO_PIXELS) != 0
    f[bad] = np.nan
    err[bad] = np.nan
    return KronFluxes(kr, kr * np.sqrt(aa * bb), scale, f, err, area[:, 0], flags)


def flux_radius(
    image: Any,
    x: Any,
    y: Any,
    rmax: Any,
    fraction: Any,
    *,
    normflux: Any = None,
    mask: Any = None,
    bad_planes: Any = None,
    subpix: int = 5,
    nbins: int = 64,
) -> FluxRadii:
    r"""Radii of circles enclosing fractions of the flux (SExtractor's ``FLUX_RADIUS``).

    The cumulative circular profile :math:`F(<r)` is accumulated within ``rmax`` in
    ``nbins`` radial bins from sub-pixels (``subpix x subpix`` per pixel, each
    assigned to the bin of its centre), and the radius where :math:`F(<r) = f\,F_0` is
    interpolated linearly; :math:`F_0` is ``normflux`` (SExtractor: ``FLUX_AUTO``) or
    the flux within ``rmax``.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image.
    x, y : float or array_like of shape (n,)
        Centres, pixels.
    rmax : float or array_like of shape (n,)
        Outer radius in pixels (sep's recipe for SExtractor: 6 ``A_IMAGE``).
    fraction : float or sequence of float
        Fractions in (0, 1].
    normflux : float or array_like of shape (n,), optional
        Normalising flux :math:`F_0`; default the flux within ``rmax``.
    mask, bad_planes
        Excluded pixels (left out; flag ``MASKED``).
    subpix : int, optional
        Sub-sampling per axis (SExtractor and sep use 5).
    nbins : int, optional
        Radial bins within ``rmax`` (SExtractor and sep use 64).

    Returns
    -------
    FluxRadii
        ``radius`` of shape (n,) for a scalar ``fraction``, (n, k) for k fractions.

    Raises
    ------
    InvalidInputError
        Invalid arrays, fractions outside (0, 1], non-positive ``rmax``.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.measure import flux_radius
    >>> yy, xx = np.mgrid[0:101, 0:101]
    >>> img = np.exp(-((xx - 50.0) ** 2 + (yy - 50.0) ** 2) / 32.0)
    >>> r = flux_radius(img, 50.0, 50.0, 30.0, 0.5, normflux=32 * np.pi).radius
    >>> bool(abs(r[0] - 4.0 * np.sqrt(2 * np.log(2))) < 0.02)   # half-light radius
    True
    """
    px = _as_pixels(image, mask=mask, bad_planes=bad_planes)
    xs, ys = _positions(x, y)
    n = xs.size
    rm = _per_source(rmax, n, "rmax", positive=True)
    fr = np.asarray(fraction, dtype=np.float64)
    scalar = fr.ndim == 0
    fr = np.ascontiguousarray(np.atleast_1d(fr))
    if fr.ndim != 1 or not np.all((fr > 0) & (fr <= 1)):
        raise InvalidInputError(f"`fraction` must be in (0, 1]; got {fraction!r}")
    nf = np.full(n, np.nan) if normflux is None else _per_source(normflux, n, "normflux")
    sp = _subpix(subpix)
    if sp == 0:
        raise InvalidInputError("`subpix` must be >= 1 for flux_radius")
    if isinstance(nbins, (bool, np.bool_)) or int(nbins) != nbins or nbins < 2:
        raise InvalidInputError(f"`nbins` must be an integer >= 2; got {nbins!r}")
    out = np.empty((n, fr.size))
    flags = np.empty(n, dtype=np.int32)
    K._flux_radii(px.image, px.bad, xs, ys, rm, nf, fr, sp, int(nbins), out, flags)
    return FluxRadii(out[:, 0] if scalar else out, flags)

