"""Astrometric truth chain of the simulator: turbulence, the truth WCS, TAN-SIP export,
and the motion of stars (proper motion and annual parallax).

The sky position of pixel ``(x, y)`` of detector ``d`` in a visit is (DESIGN.md
section 2 conventions: 0-based pixels, degrees, MJD TAI)::

    pixel --placement--> focal plane (mm) --optics--> field angle (u, v) (deg)
          --+ turbulence(u, v)--> --rotator--> tangent plane (xi, eta) (deg)
          --TAN deprojection about (ra0, dec0)--> (ra, dec) ICRS

The first two steps live in :mod:`lsstdrp.sim._focalplane`. :class:`TruthWcs` composes
them with a per-visit :class:`TurbulenceField` into an APE-14 WCS, which is the truth
that every astrometric algorithm is tested against; :func:`fit_tan_sip` approximates it
by a FITS-expressible TAN-SIP WCS with measured accuracy; :func:`propagate_to_epoch`
moves catalog stars to the epoch of a visit.

This module imports only numpy, scipy, astropy, erfa and lsstdrp's error taxonomy
(DESIGN.md section 6: the simulator shares no code with the algorithms it tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import erfa
import numpy as np
from scipy.fft import next_fast_len
from astropy.wcs import WCS, Sip
from astropy.wcs.wcsapi import BaseLowLevelWCS, HighLevelWCSMixin
from scipy.interpolate import NdBSpline, RectBivariateSpline

from .._errors import InvalidInputError
from ._focalplane import FocalPlane, _as_det, _check_int, _check_real

__all__ = [
    "TurbulenceField",
    "make_turbulence",
    "TruthWcs",
    "TanSipApprox",
    "fit_tan_sip",
    "propagate_to_epoch",
]

_MAS_PER_DEG = 3.6e6
_DEG = math.pi / 180.0
_MAS = _DEG / _MAS_PER_DEG
_DAYS_PER_JULIAN_YEAR = 365.25
_TT_MINUS_TAI_DAYS = 32.184 / 86400.0
_MJD_ZERO_JD = 2400000.5


def _floats(value: Any, name: str) -> np.ndarray:
    """float64 array (±inf -> NaN, so non-finite coordinates give NaN silently)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"`{name}` must be real numbers; got {value!r}") from exc
    if np.isinf(arr).any():
        arr = np.where(np.isinf(arr), np.nan, arr)
    return arr


# --------------------------------------------------------------------------- TAN
def _tan_deproject(
    xi_deg: np.ndarray, eta_deg: np.ndarray, ra0_deg: float, dec0_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic deprojection of standard coordinates about ``(ra0, dec0)`` (degrees).

    ``ra = ra0 + atan2(xi, cos d0 - eta sin d0)``,
    ``dec = atan2(sin d0 + eta cos d0, hypot(xi, cos d0 - eta sin d0))``
    (Calabretta & Greisen 2002, eqs. 54, 2). The right ascension is formed as
    ``ra0 + delta`` so the rounding error is one ulp of ``ra`` (2e-7 mas).
    """
    xi = xi_deg * _DEG
    eta = eta_deg * _DEG
    sd0, cd0 = math.sin(dec0_deg * _DEG), math.cos(dec0_deg * _DEG)
    den = cd0 - eta * sd0
    dra = np.arctan2(xi, den) / _DEG
    dec = np.arctan2(sd0 + eta * cd0, np.hypot(xi, den)) / _DEG
    ra = ra0_deg + dra
    ra = np.where(ra < 0.0, ra + 360.0, ra)
    ra = np.where(ra >= 360.0, ra - 360.0, ra)
    return ra, dec


def _tan_project(
    ra_deg: np.ndarray, dec_deg: np.ndarray, ra0_deg: float, dec0_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic projection about ``(ra0, dec0)``; NaN for points >= 90 deg away."""
    dra = ra_deg - ra0_deg
    dra = np.where(dra > 180.0, dra - 360.0, dra)
    dra = np.where(dra < -180.0, dra + 360.0, dra)
    dra = dra * _DEG
    dec = dec_deg * _DEG
    sd0, cd0 = math.sin(dec0_deg * _DEG), math.cos(dec0_deg * _DEG)
    sd, cd = np.sin(dec), np.cos(dec)
    cdra = np.cos(dra)
    cosc = sd0 * sd + cd0 * cd * cdra
    with np.errstate(invalid="ignore", divide="ignore"):
        good = cosc > 0
        xi = np.where(good, cd * np.sin(dra) / cosc, np.nan)
        eta = np.where(good, (cd0 * sd - sd0 * cd * cdra) / cosc, np.nan)
    return xi / _DEG, eta / _DEG


def _rotator_matrix(rotation_deg: float) -> np.ndarray:
    """Camera (u, v) -> sky tangent plane (xi east, eta north); its own inverse."""
    c, s = math.cos(rotation_deg * _DEG), math.sin(rotation_deg * _DEG)
    return np.array([[-c, s], [s, c]])


# ------------------------------------------------------------------- turbulence
def _poly_exponents(order: int) -> np.ndarray:
    return np.array([(n - j, j) for n in range(order + 1) for j in range(n + 1)], dtype=int)


def _poly_design(t: np.ndarray, w: np.ndarray, exps: np.ndarray) -> np.ndarray:
    return np.stack([t**p * w**q for p, q in exps], axis=-1)


@dataclass(frozen=True, eq=False)
class TurbulenceField:
    r"""A per-visit astrometric turbulence displacement field over the field of view.

    Build one with :func:`make_turbulence`. Calling the field with camera-frame field
    angles ``(u, v)`` (degrees) returns the displacements ``(du, dv)`` in degrees that
    the atmosphere adds to the apparent positions of stars during the exposure.
    The fields below are also the attributes.

    Parameters
    ----------
    field_radius_deg : float
        Radius of the field over which the field was generated and normalised.
    rms_mas : float
        Per-axis rms ``sqrt(<du² + dv²>/2)`` in mas, *measured* by evaluating the final
        field on the generation grid nodes inside ``field_radius_deg`` (0 for the zero
        field).
    outer_scale_deg : float
        Von Kármán outer scale ``L0`` in degrees.
    polynomial_order : int or None
        None for the Gaussian random field; an int when the field was replaced by its
        least-squares projection onto 2-D polynomials of that total order.
    grid_spacing_deg : float
        Node spacing of the generation grid (0 for the zero field).
    grid_u_deg, grid_v_deg : numpy.ndarray or None
        1-D node coordinates of the interpolation grid (random-field mode only).
    grid_du_deg, grid_dv_deg : numpy.ndarray or None
        Displacements at the nodes, shape ``(len(grid_u_deg), len(grid_v_deg))``,
        indexed ``[i_u, i_v]`` (random-field mode only).
    poly_coeffs_deg : numpy.ndarray or None
        Shape ``(2, n_terms)``: coefficients of ``(u/R)^p (v/R)^q`` (``R`` =
        ``field_radius_deg``) for ``du`` and ``dv``, ordered by total order then by
        ``q`` (polynomial mode only).

    Notes
    -----
    Outside the interpolation grid (which extends a few nodes beyond the field radius)
    the random field is evaluated at the nearest grid boundary point (constant
    extension); polynomial fields are evaluated everywhere.
    """

    field_radius_deg: float
    rms_mas: float
    outer_scale_deg: float
    polynomial_order: int | None
    grid_spacing_deg: float
    grid_u_deg: np.ndarray | None = None
    grid_v_deg: np.ndarray | None = None
    grid_du_deg: np.ndarray | None = None
    grid_dv_deg: np.ndarray | None = None
    poly_coeffs_deg: np.ndarray | None = None
    _splines: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.grid_du_deg is not None:
            for name in ("grid_u_deg", "grid_v_deg", "grid_du_deg", "grid_dv_deg"):
                arr = np.array(getattr(self, name), dtype=np.float64)
                arr.flags.writeable = False
                object.__setattr__(self, name, arr)
            self._build_spline()
        if self.poly_coeffs_deg is not None:
            arr = np.array(self.poly_coeffs_deg, dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, "poly_coeffs_deg", arr)

    def _build_spline(self) -> None:
        # Interpolating bicubic splines (s=0) through the nodes, fitted by
        # RectBivariateSpline; both components share the knots, so they are evaluated
        # together as one vector-valued NdBSpline (half the cost of two .ev calls).
        tx = ty = None
        coeffs = []
        for g in (self.grid_du_deg, self.grid_dv_deg):
            spl = RectBivariateSpline(self.grid_u_deg, self.grid_v_deg, g, kx=3, ky=3, s=0)
            tx, ty, c = spl.tck
            coeffs.append(c.reshape(len(tx) - 4, len(ty) - 4))
        object.__setattr__(self, "_splines", NdBSpline((tx, ty), np.stack(coeffs, -1), 3))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_splines"] = None  # rebuilt from the nodes: smaller pickles
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.grid_du_deg is not None:
            self._build_spline()

    @property
    def is_zero(self) -> bool:
        """True for the identically-zero field (``rms_mas == 0``)."""
        return self._splines is None and self.poly_coeffs_deg is None

    def _clip(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.clip(u, self.grid_u_deg[0], self.grid_u_deg[-1]),
                np.clip(v, self.grid_v_deg[0], self.grid_v_deg[-1]))

    def __call__(self, u_deg: Any, v_deg: Any) -> tuple[np.ndarray, np.ndarray]:
        """Displacement ``(du, dv)`` in degrees at field angles ``(u, v)`` (degrees).

        Parameters
        ----------
        u_deg, v_deg : float or array_like
            Camera-frame field angles (broadcast together).

        Returns
        -------
        du_deg, dv_deg : numpy.ndarray
            Displacements in degrees, same shape as the broadcast input.
        """
        u, v = np.broadcast_arrays(_floats(u_deg, "u_deg"), _floats(v_deg, "v_deg"))
        if self.is_zero:
            return np.zeros(u.shape), np.zeros(u.shape)
        if self.poly_coeffs_deg is not None:
            exps = _poly_exponents(self.polynomial_order)
            r = self.field_radius_deg
            design = _poly_design(u / r, v / r, exps)
            return design @ self.poly_coeffs_deg[0], design @ self.poly_coeffs_deg[1]
        uc, vc = self._clip(u, v)
        out = self._splines(np.stack([uc.ravel(), vc.ravel()], axis=-1))
        return out[:, 0].reshape(u.shape), out[:, 1].reshape(u.shape)

    def jacobian(self, u_deg: Any, v_deg: Any) -> np.ndarray:
        """Gradient of the displacement, ``d(du, dv)/d(u, v)`` (dimensionless).

        Parameters
        ----------
        u_deg, v_deg : float or array_like
            Camera-frame field angles in degrees.

        Returns
        -------
        numpy.ndarray, shape (..., 2, 2)
            ``J[..., i, j] = d(du, dv)_i / d(u, v)_j``; zero outside the grid of a
            random field (constant extension).
        """
        u, v = np.broadcast_arrays(_floats(u_deg, "u_deg"), _floats(v_deg, "v_deg"))
        jac = np.zeros(u.shape + (2, 2))
        if self.is_zero:
            return jac
        if self.poly_coeffs_deg is not None:
            exps = _poly_exponents(self.polynomial_order)
            r = self.field_radius_deg
            t, w = u / r, v / r
            dt = np.stack([p * t ** max(p - 1, 0) * w**q for p, q in exps], axis=-1) / r
            dw = np.stack([q * t**p * w ** max(q - 1, 0) for p, q in exps], axis=-1) / r
            for i in range(2):
                jac[..., i, 0] = dt @ self.poly_coeffs_deg[i]
                jac[..., i, 1] = dw @ self.poly_coeffs_deg[i]
            return jac
        uc, vc = self._clip(u, v)
        inside = (uc == u) & (vc == v)
        pts = np.stack([uc.ravel(), vc.ravel()], axis=-1)
        for j, nu in enumerate(((1, 0), (0, 1))):
            d = self._splines(pts, nu=nu)
            for i in range(2):
                jac[..., i, j] = np.where(inside, d[:, i].reshape(u.shape), 0.0)
        return jac


def make_turbulence(
    field_radius_deg: float,
    *,
    rms_mas: float = 5.0,
    outer_scale_deg: float = 0.5,
    polynomial_order: int | None = None,
    grid_spacing_deg: float | None = None,
    rng: Any = None,
) -> TurbulenceField:
    r"""Draw a Gaussian random astrometric-turbulence field for one visit.

    Parameters
    ----------
    field_radius_deg : float
        Radius of the field of view in degrees (``FocalPlane.field_radius_deg``).
    rms_mas : float
        Requested per-axis rms of the displacement over the field, in mas
        (``sqrt(<du² + dv²>/2)``); 0 returns the zero field. Default 5 mas, the
        typical per-axis turbulence of a 30 s exposure at a 4-8 m telescope
        (DES: ~6-10 mas in 90 s; HSC ~5 mas).
    outer_scale_deg : float
        Von Kármán outer scale ``L0`` in degrees (``k0 = 1/L0`` cycles/deg).
    polynomial_order : int, optional
        If given (>= 1), replace the field by its least-squares projection onto 2-D
        polynomials of this total order in ``(u, v)`` and renormalise it to
        ``rms_mas``, so that a polynomial WCS of that order represents it exactly.
    grid_spacing_deg : float, optional
        Node spacing of the generation grid; default ``min(2R/256, L0/16)``, coarsened
        when needed to keep the FFT box at most 1024² nodes (the grid then has about
        260 nodes across the field diameter).
    rng : None, int or numpy.random.Generator
        Seed or generator (``np.random.default_rng(rng)``).

    Returns
    -------
    TurbulenceField
        The field, with ``rms_mas`` measured.

    Raises
    ------
    InvalidInputError
        Naming the argument: non-positive radius or outer scale, negative rms,
        ``polynomial_order`` < 1 or > 12.

    Notes
    -----
    Each displacement component is an independent, isotropic, zero-mean Gaussian
    random field with the von Kármán power spectrum

    .. math:: P(k) \propto (k^2 + k_0^2)^{-11/6}, \qquad k_0 = 1 / L_0,

    with ``k`` in cycles per degree: Kolmogorov turbulence (``P ∝ k^{-11/3}``) on
    scales below the outer scale, flattening above it. Both components come from one
    complex FFT: complex white noise ``W(k)`` is multiplied by ``sqrt(P(k))`` and
    transformed back; the real and imaginary parts are independent real fields with
    spectrum ``P`` (``P`` is even in ``k``). The periodic FFT box has side
    ``max(4R, 2 L0)``; the central part covering the field (plus 4 nodes) is kept, its
    mean over the field disk is removed (a constant shift is a pointing offset) and it
    is scaled to the requested rms on the disk nodes. Between nodes the field is
    interpolated with bicubic splines (``scipy.interpolate.RectBivariateSpline``,
    ``s=0``), so power above the grid Nyquist frequency ``1/(2h)`` is absent.

    Real atmospheric displacement fields are dominated by the curl-free (E-mode)
    part (Léget et al. 2021); this model has equal E and B power, which does not
    matter for what it tests (that WCS fits and Gaussian-process corrections absorb a
    field with this correlation function).

    References
    ----------
    .. [1] von Kármán, T. 1948, PNAS 34, 530.
    .. [2] Heymans, C. et al. 2012, MNRAS 421, 381 (atmospheric PSF/astrometric
       turbulence, von Kármán spectra).
    .. [3] Bernstein, G. M. et al. 2017, PASP 129, 074503 (DES astrometric turbulence,
       ~10 mas rms, von Kármán-like correlation).
    .. [4] Léget, P.-F. et al. 2021, A&A 650, A81 (HSC astrometric turbulence modelled
       with Gaussian processes, E/B modes).

    Examples
    --------
    >>> turb = make_turbulence(0.3, rms_mas=5.0, rng=0)
    >>> round(turb.rms_mas, 6)
    5.0
    >>> du, dv = turb(0.1, -0.05)
    >>> bool(abs(du) < 1e-4)
    True
    """
    radius = _check_real(field_radius_deg, "field_radius_deg", positive=True)
    rms = _check_real(rms_mas, "rms_mas", nonneg=True)
    outer = _check_real(outer_scale_deg, "outer_scale_deg", positive=True)
    if polynomial_order is not None:
        polynomial_order = _check_int(polynomial_order, "polynomial_order", 1)
        if polynomial_order > 12:
            raise InvalidInputError(
                f"`polynomial_order` must be <= 12; got {polynomial_order}"
            )
    if rms == 0.0:
        return TurbulenceField(
            field_radius_deg=radius, rms_mas=0.0, outer_scale_deg=outer,
            polynomial_order=polynomial_order, grid_spacing_deg=0.0,
        )
    if grid_spacing_deg is None:
        h_target = min(2.0 * radius / 256.0, outer / 16.0)
    else:
        h_target = _check_real(grid_spacing_deg, "grid_spacing_deg", positive=True)
    box = max(4.0 * radius, 2.0 * outer)
    n_fft = min(next_fast_len(int(math.ceil(max(box / h_target, 16.0))), real=False), 1024)
    h = box / n_fft
    m = int(math.ceil(radius / h)) + 4  # half-width of the kept sub-grid in nodes
    if 2 * m + 1 > n_fft:
        raise InvalidInputError(
            f"`grid_spacing_deg`={h_target:g} is too coarse for `field_radius_deg`="
            f"{radius:g}"
        )
    gen = np.random.default_rng(rng)

    k = np.fft.fftfreq(n_fft, d=h)  # cycles / deg
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    amp = (k2 + (1.0 / outer) ** 2) ** (-11.0 / 12.0)
    amp[0, 0] = 0.0
    white = gen.standard_normal((n_fft, n_fft)) + 1j * gen.standard_normal((n_fft, n_fft))
    full = np.fft.fftshift(np.fft.ifft2(amp * white))  # node index n_fft//2 is the origin
    c = n_fft // 2
    sub = full[c - m : c + m + 1, c - m : c + m + 1]
    nodes = (np.arange(2 * m + 1) - m) * h
    du = np.ascontiguousarray(sub.real)
    dv = np.ascontiguousarray(sub.imag)

    uu, vv = np.meshgrid(nodes, nodes, indexing="ij")
    disk = uu**2 + vv**2 <= radius**2
    if np.count_nonzero(disk) < 16:  # pragma: no cover - prevented by the spacing
        raise InvalidInputError("`field_radius_deg` is smaller than the grid spacing")
    target_deg = rms / _MAS_PER_DEG

    if polynomial_order is None:
        du -= du[disk].mean()
        dv -= dv[disk].mean()
        scale = target_deg / math.sqrt(0.5 * np.mean(du[disk] ** 2 + dv[disk] ** 2))
        du *= scale
        dv *= scale
        measured = math.sqrt(0.5 * np.mean(du[disk] ** 2 + dv[disk] ** 2)) * _MAS_PER_DEG
        return TurbulenceField(
            field_radius_deg=radius, rms_mas=measured, outer_scale_deg=outer,
            polynomial_order=None, grid_spacing_deg=h, grid_u_deg=nodes, grid_v_deg=nodes,
            grid_du_deg=du, grid_dv_deg=dv,
        )

    exps = _poly_exponents(polynomial_order)
    design = _poly_design(uu[disk] / radius, vv[disk] / radius, exps)
    coef, *_ = np.linalg.lstsq(design, np.stack([du[disk], dv[disk]], axis=-1), rcond=None)
    coef = coef.T.copy()  # (2, n_terms)
    values = design @ coef.T
    coef[:, 0] -= values.mean(axis=0)  # exps[0] == (0, 0): the constant term
    values = design @ coef.T
    coef *= target_deg / math.sqrt(0.5 * np.mean(np.sum(values**2, axis=1)))
    values = design @ coef.T
    measured = math.sqrt(0.5 * np.mean(np.sum(values**2, axis=1))) * _MAS_PER_DEG
    return TurbulenceField(
        field_radius_deg=radius, rms_mas=measured, outer_scale_deg=outer,
        polynomial_order=polynomial_order, grid_spacing_deg=h, poly_coeffs_deg=coef,
    )


# --------------------------------------------------------------------- TruthWcs
class TruthWcs(BaseLowLevelWCS, HighLevelWCSMixin):
    r"""The true WCS of one detector in one visit, as an APE-14 object.

    Maps 0-based pixel ``(x, y)`` of ``detector`` to ICRS ``(ra, dec)`` in degrees
    through the full truth chain; both the low-level (``pixel_to_world_values``) and
    the high-level (``pixel_to_world`` -> :class:`~astropy.coordinates.SkyCoord`) APE-14
    APIs are available, so it can be passed anywhere lsstdrp takes a WCS.

    Parameters
    ----------
    focal_plane : FocalPlane
        The camera (true placement and optical distortion).
    detector : int
        Detector id in ``[0, focal_plane.n_detectors)``.
    ra0, dec0 : float
        Boresight (the optical axis on the sky), ICRS degrees.
    rotation_deg : float
        Rotator angle: sky position angle of the camera ``+v`` axis (focal plane
        ``+y``), measured from north through east, in degrees.
    turbulence : TurbulenceField, optional
        Per-visit turbulence; None for none.

    Raises
    ------
    InvalidInputError
        Naming the argument (wrong type, detector out of range, dec0 outside
        [-90, 90], non-finite angles).

    Notes
    -----
    With ``(f_x, f_y)`` from the placement and ``(u, v)`` from the optics (see
    :class:`FocalPlane`), the turbulence displaces the field angle,
    ``(u', v') = (u, v) + T(u, v)``, and the rotator maps the camera frame to the sky
    tangent plane (``ξ`` east, ``η`` north):

    .. math::

        \begin{pmatrix} \xi \\ \eta \end{pmatrix} =
        \begin{pmatrix} -\cos\phi & \sin\phi \\ \sin\phi & \cos\phi \end{pmatrix}
        \begin{pmatrix} u' \\ v' \end{pmatrix},

    so the camera ``+v`` axis points to position angle ``φ`` and, at ``φ = 0``, north is
    up and east is left (``+x`` points west): the parity of a sky image seen from
    inside the sphere (determinant -1). This equals a FITS CD matrix
    ``s [[-cos φ, sin φ], [sin φ, cos φ]]``, i.e. ``CROTA2 = -φ``. Finally the gnomonic
    deprojection about ``(α0, δ0)`` (Calabretta & Greisen 2002, sec. 5.1.3):

    .. math::

        \alpha = \alpha_0 + \operatorname{atan2}(\xi, \cos\delta_0 - \eta\sin\delta_0),
        \quad
        \delta = \operatorname{atan2}\left(\sin\delta_0 + \eta\cos\delta_0,
        \sqrt{\xi^2 + (\cos\delta_0 - \eta\sin\delta_0)^2}\right).

    The inverse (:meth:`world_to_pixel_values`) is analytic for TAN and the rotator,
    a fixed-point iteration ``(u, v) <- (u', v') - T(u, v)`` for the turbulence
    (a Newton iteration with the Jacobian approximated by the identity; it contracts
    by ``|∇T| ~ 1e-5`` per step, so two field evaluations), Newton's method for the radial
    distortion and analytic for the placement; the pixel -> world -> pixel round
    trip is exact to ~1e-9 mas.

    References
    ----------
    .. [1] Calabretta, M. R. & Greisen, E. W. 2002, A&A 395, 1077.
    .. [2] Greenfield, P. et al. 2018, APE 14: A shared Python interface for World
       Coordinate Systems, doi:10.5281/zenodo.1188875.

    Examples
    --------
    >>> from lsstdrp.sim._focalplane import make_focal_plane
    >>> fp = make_focal_plane(1, 1, (200, 200), rng=0)
    >>> w = TruthWcs(fp, 0, ra0=150.0, dec0=2.0, rotation_deg=30.0)
    >>> c = w.pixel_to_world(99.5, 99.5)
    >>> round(float(c.ra.deg), 3), round(float(c.dec.deg), 3)
    (150.0, 2.0)
    """

    def __init__(
        self,
        focal_plane: FocalPlane,
        detector: int,
        *,
        ra0: float,
        dec0: float,
        rotation_deg: float,
        turbulence: TurbulenceField | None = None,
    ) -> None:
        if not isinstance(focal_plane, FocalPlane):
            raise InvalidInputError(
                f"`focal_plane` must be a FocalPlane; got {type(focal_plane).__name__}"
            )
        det = _as_det(detector, focal_plane.n_detectors)
        if det.ndim != 0:
            raise InvalidInputError(f"`detector` must be a single id; got shape {det.shape}")
        if turbulence is not None and not isinstance(turbulence, TurbulenceField):
            raise InvalidInputError(
                f"`turbulence` must be a TurbulenceField or None; got "
                f"{type(turbulence).__name__}"
            )
        ra0 = _check_real(ra0, "ra0") % 360.0
        dec0 = _check_real(dec0, "dec0")
        if not -90.0 <= dec0 <= 90.0:
            raise InvalidInputError(f"`dec0` must be in [-90, 90]; got {dec0}")
        rot = _check_real(rotation_deg, "rotation_deg")
        self._fp = focal_plane
        self._det = int(det)
        self._ra0 = ra0
        self._dec0 = dec0
        self._rot = rot
        self._turb = None if turbulence is None or turbulence.is_zero else turbulence
        self._turb_in = turbulence
        self._rmat = _rotator_matrix(rot)

    # ------------------------------------------------------------ attributes
    @property
    def focal_plane(self) -> FocalPlane:
        """The :class:`FocalPlane`."""
        return self._fp

    @property
    def detector(self) -> int:
        """Detector id."""
        return self._det

    @property
    def ra0(self) -> float:
        """Boresight right ascension (deg)."""
        return self._ra0

    @property
    def dec0(self) -> float:
        """Boresight declination (deg)."""
        return self._dec0

    @property
    def rotation_deg(self) -> float:
        """Rotator angle: position angle of the camera +v axis, east of north (deg)."""
        return self._rot

    @property
    def turbulence(self) -> TurbulenceField | None:
        """The turbulence field given at construction (or None)."""
        return self._turb_in

    def __repr__(self) -> str:
        return (
            f"TruthWcs(detector={self._det}, ra0={self._ra0!r}, "
            f"dec0={self._dec0!r}, rotation_deg={self._rot!r}, "
            f"turbulence={'none' if self._turb is None else f'{self._turb.rms_mas:.3g} mas'})"
        )

    # ------------------------------------------------------------- APE 14
    @property
    def pixel_n_dim(self) -> int:
        """2 (x, y)."""
        return 2

    @property
    def world_n_dim(self) -> int:
        """2 (ra, dec)."""
        return 2

    @property
    def world_axis_physical_types(self) -> list[str]:
        """``['pos.eq.ra', 'pos.eq.dec']``."""
        return ["pos.eq.ra", "pos.eq.dec"]

    @property
    def world_axis_units(self) -> list[str]:
        """``['deg', 'deg']``."""
        return ["deg", "deg"]

    @property
    def world_axis_names(self) -> list[str]:
        """``['ra', 'dec']``."""
        return ["ra", "dec"]

    @property
    def pixel_axis_names(self) -> list[str]:
        """``['x', 'y']``."""
        return ["x", "y"]

    @property
    def pixel_shape(self) -> tuple[int, int]:
        """``(nx, ny)`` of the detector (APE-14 pixel order)."""
        ny, nx = self._fp.det_shape
        return (nx, ny)

    @property
    def array_shape(self) -> tuple[int, int]:
        """``(ny, nx)`` of the detector (numpy order)."""
        return tuple(self._fp.det_shape)

    @property
    def pixel_bounds(self) -> list[tuple[float, float]]:
        """``[(-0.5, nx - 0.5), (-0.5, ny - 0.5)]``: the outer pixel edges."""
        ny, nx = self._fp.det_shape
        return [(-0.5, nx - 0.5), (-0.5, ny - 0.5)]

    @property
    def axis_correlation_matrix(self) -> np.ndarray:
        """Both world axes depend on both pixel axes."""
        return np.ones((2, 2), dtype=bool)

    @property
    def world_axis_object_components(self) -> list[tuple[str, int, str]]:
        """Both world axes form one ICRS :class:`~astropy.coordinates.SkyCoord`."""
        return [
            ("celestial", 0, "spherical.lon.degree"),
            ("celestial", 1, "spherical.lat.degree"),
        ]

    @property
    def world_axis_object_classes(self) -> dict[str, tuple]:
        """``{'celestial': (SkyCoord, (), {'frame': ICRS(), 'unit': 'deg'})}``."""
        from astropy.coordinates import ICRS, SkyCoord

        return {"celestial": (SkyCoord, (), {"frame": ICRS(), "unit": "deg"})}

    @property
    def serialized_classes(self) -> bool:
        """False: :attr:`world_axis_object_classes` holds real classes."""
        return False

    # ------------------------------------------------------------ transforms
    def _field(self, x: np.ndarray, y: np.ndarray):
        fx, fy = self._fp.pixel_to_focal(self._det, x, y)
        u, v = self._fp.focal_to_field(fx, fy)
        return fx, fy, u, v

    def pixel_to_world_values(self, *pixel_arrays: Any) -> tuple[np.ndarray, np.ndarray]:
        """Pixel ``(x, y)`` (0-based) -> ``(ra, dec)`` in ICRS degrees.

        Parameters
        ----------
        *pixel_arrays : float or array_like
            ``x`` and ``y``, broadcast together; NaN propagates.

        Returns
        -------
        ra, dec : numpy.ndarray
            ICRS degrees, ``ra`` in ``[0, 360)``.
        """
        if len(pixel_arrays) != 2:
            raise InvalidInputError(
                f"`pixel_arrays` must be (x, y); got {len(pixel_arrays)} array(s)"
            )
        x, y = np.broadcast_arrays(_floats(pixel_arrays[0], "x"), _floats(pixel_arrays[1], "y"))
        _, _, u, v = self._field(x, y)
        if self._turb is not None:
            du, dv = self._turb(u, v)
            u = u + du
            v = v + dv
        r = self._rmat
        xi = r[0, 0] * u + r[0, 1] * v
        eta = r[1, 0] * u + r[1, 1] * v
        return _tan_deproject(xi, eta, self._ra0, self._dec0)

    def world_to_pixel_values(self, *world_arrays: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(ra, dec)`` in ICRS degrees -> 0-based pixel ``(x, y)``.

        Parameters
        ----------
        *world_arrays : float or array_like
            ``ra`` and ``dec`` in degrees, broadcast together.

        Returns
        -------
        x, y : numpy.ndarray
            Pixel coordinates (outside the detector bounds where the point is off the
            detector); NaN for points 90 deg or more from the boresight or where the
            iterations do not converge.

        Notes
        -----
        See the class Notes for the inversion scheme.
        """
        if len(world_arrays) != 2:
            raise InvalidInputError(
                f"`world_arrays` must be (ra, dec); got {len(world_arrays)} array(s)"
            )
        ra, dec = np.broadcast_arrays(_floats(world_arrays[0], "ra"),
                                      _floats(world_arrays[1], "dec"))
        xi, eta = _tan_project(ra, dec, self._ra0, self._dec0)
        r = self._rmat  # its own inverse
        ut = r[0, 0] * xi + r[0, 1] * eta
        vt = r[1, 0] * xi + r[1, 1] * eta
        u, v = ut, vt
        if self._turb is not None:
            u, v = self._remove_turbulence(ut, vt)
        fx, fy = self._fp.field_to_focal(u, v)
        return self._fp.focal_to_pixel(self._det, fx, fy)

    def _remove_turbulence(self, ut: np.ndarray, vt: np.ndarray):
        """Solve ``(u, v) + T(u, v) = (ut, vt)`` by fixed-point iteration.

        Points leave the active set once the predicted remaining error
        ``L·δ_n`` (``L = δ_n/δ_{n-1}``, the measured contraction) or the last change
        ``δ_n`` is below 1e-15 deg (4e-9 mas); with ``|∇T| ~ 1e-5`` that takes two
        evaluations of the field. Non-converged points (30 steps) become NaN.
        """
        shape = ut.shape
        ut, vt = ut.ravel(), vt.ravel()
        u = np.where(np.isfinite(ut) & np.isfinite(vt), ut, np.nan)
        v = np.where(np.isfinite(u), vt, np.nan)
        active = np.flatnonzero(np.isfinite(u))
        prev = np.full(active.size, np.nan)  # no contraction estimate on step 1
        tol = 1e-15
        for _ in range(30):
            if active.size == 0:
                break
            du, dv = self._turb(u[active], v[active])
            un = ut[active] - du
            vn = vt[active] - dv
            delta = np.maximum(np.abs(un - u[active]), np.abs(vn - v[active]))
            u[active] = un
            v[active] = vn
            done = (delta <= tol) | (delta * delta <= tol * prev)
            active, prev = active[~done], delta[~done]
        u[active] = np.nan
        v[active] = np.nan
        return u.reshape(shape), v.reshape(shape)

    def local_jacobian(self, x: Any, y: Any) -> np.ndarray:
        r"""Local linear map from pixel offsets to sky offsets, in arcsec per pixel.

        Parameters
        ----------
        x, y : float or array_like
            0-based pixel coordinates.

        Returns
        -------
        numpy.ndarray, shape (..., 2, 2)
            ``J[..., i, j] = d(east, north)_i / d(x, y)_j`` in arcsec/pixel, where
            east = ``Δα cos δ`` and north = ``Δδ`` at the point. ``|det J|`` is the
            pixel area in arcsec² and ``det J < 0`` (sky parity).

        Notes
        -----
        Analytic chain rule: ``J = 3600 · S · R · (I + ∇T) · D · P``, with ``P`` the
        placement (mm/px), ``D`` the optics Jacobian
        (:meth:`FocalPlane.focal_to_field_jacobian`), ``∇T`` the turbulence gradient,
        ``R`` the rotator matrix and ``S`` the gnomonic Jacobian. For the latter, the
        sky point is ``p = (n_0 + ξ e_0 + η n_0')/ρ``, ``ρ = sqrt(1 + ξ² + η²)``; the
        radial part of ``∂p/∂ξ`` is orthogonal to the local east/north unit vectors
        ``(e, n)`` at ``p``, so ``S = ρ⁻¹ [[e·e_0, e·n_0'], [n·e_0, n·n_0']]``.
        """
        x, y = np.broadcast_arrays(_floats(x, "x"), _floats(y, "y"))
        fx, fy, u, v = self._field(x, y)
        p = self._fp.pixel_size_mm
        alpha = self._fp.rotation_rad[self._det]
        ca, sa = math.cos(alpha), math.sin(alpha)
        jac = self._fp.focal_to_field_jacobian(fx, fy) @ (p * np.array([[ca, -sa], [sa, ca]]))
        if self._turb is not None:
            jt = self._turb.jacobian(u, v)
            jt[..., 0, 0] += 1.0
            jt[..., 1, 1] += 1.0
            jac = jt @ jac
            du, dv = self._turb(u, v)
            u = u + du
            v = v + dv
        jac = self._rmat @ jac
        r = self._rmat
        xi = (r[0, 0] * u + r[0, 1] * v) * _DEG
        eta = (r[1, 0] * u + r[1, 1] * v) * _DEG
        ra, dec = _tan_deproject(xi / _DEG, eta / _DEG, self._ra0, self._dec0)
        a0, d0 = self._ra0 * _DEG, self._dec0 * _DEG
        e0 = np.array([-math.sin(a0), math.cos(a0), 0.0])
        n0 = np.array([-math.sin(d0) * math.cos(a0), -math.sin(d0) * math.sin(a0),
                       math.cos(d0)])
        a, d = ra * _DEG, dec * _DEG
        e = np.stack([-np.sin(a), np.cos(a), np.zeros_like(a)], axis=-1)
        n = np.stack([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)], axis=-1)
        rho = np.sqrt(1.0 + xi**2 + eta**2)
        s = np.empty(x.shape + (2, 2))
        s[..., 0, 0] = e @ e0
        s[..., 0, 1] = e @ n0
        s[..., 1, 0] = n @ e0
        s[..., 1, 1] = n @ n0
        s /= rho[..., None, None]
        return 3600.0 * (s @ jac)


# ----------------------------------------------------------------- TAN-SIP fit
@dataclass(frozen=True)
class TanSipApprox:
    """A FITS TAN-SIP approximation of a truth WCS, with its measured accuracy.

    Returned by :func:`fit_tan_sip`; the fields below are also the attributes.

    Parameters
    ----------
    wcs : astropy.wcs.WCS or None
        ``RA---TAN-SIP`` / ``DEC--TAN-SIP`` WCS with forward (A, B) and inverse
        (AP, BP) SIP polynomials; None when ``success`` is False.
    success : bool
        Whether the fit produced a usable model.
    reason : str
        Empty on success, otherwise why not.
    sip_order : int
        Order of A/B.
    inverse_order : int
        Order of AP/BP.
    max_error_mas, rms_error_mas : float
        Maximum and rms angular distance between ``wcs.all_pix2world`` and the truth on
        an independent grid 3x denser than the fitting grid (in mas).
    inverse_max_error_mas : float
        Maximum error of the non-iterative inverse (``wcs.wcs_world2pix``, i.e. TAN and
        CD⁻¹, then ``U = U' + AP(U', V')``, ``V = V' + BP(U', V')``) on the same grid,
        in pixels converted to mas with the mean pixel scale.
    """

    wcs: WCS | None
    success: bool
    reason: str
    sip_order: int
    inverse_order: int
    max_error_mas: float
    rms_error_mas: float
    inverse_max_error_mas: float


def _monomials(order: int, min_order: int) -> list[tuple[int, int]]:
    return [(n - j, j) for n in range(min_order, order + 1) for j in range(n + 1)]


def _eval_sip(coef: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Evaluate a SIP polynomial ``sum coef[p, q] u^p v^q`` (all p + q <= order)."""
    out = np.zeros(np.shape(u))
    order = coef.shape[0] - 1
    for p in range(order + 1):
        for q in range(order + 1 - p):
            if coef[p, q] != 0.0:
                out = out + coef[p, q] * u**p * v**q
    return out


def _sep_mas(ra1, dec1, ra2, dec2) -> np.ndarray:
    """Angular separation in mas (vector chord formula, accurate at µas)."""
    def vec(ra, dec):
        a, d = np.radians(ra), np.radians(dec)
        return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], -1)

    chord = np.linalg.norm(vec(ra1, dec1) - vec(ra2, dec2), axis=-1)
    return 2.0 * np.arcsin(0.5 * chord) / _MAS


def fit_tan_sip(
    truth_wcs: BaseLowLevelWCS,
    *,
    sip_order: int = 3,
    n_grid: int = 20,
    inverse_order: int | None = None,
) -> TanSipApprox:
    r"""Approximate a WCS over its detector by a FITS TAN-SIP WCS, with measured error.

    Parameters
    ----------
    truth_wcs : APE-14 low-level WCS
        The WCS to approximate (typically a :class:`TruthWcs`); it must have a
        ``pixel_shape``, celestial (ra, dec in degrees) world axes and an accurate
        ``world_to_pixel_values`` (used once, to place ``CRPIX``).
    sip_order : int
        Order of the forward SIP polynomials A, B (2-9).
    n_grid : int
        Fitting points per axis, uniformly spaced over the outer pixel edges
        ``[-0.5, n - 0.5]``; at least ``sip_order + 2``.
    inverse_order : int, optional
        Order of AP, BP; default ``sip_order + 2``: the inverse of a cubic radial
        distortion has a strong 5th-order term (for a single 2k detector with the default
        distortion, AP order 4 leaves 1.3 mas, order 5 leaves 0.004 mas).

    Returns
    -------
    TanSipApprox
        The WCS (0-based pixels through astropy's ``origin=0`` / APE-14 API; FITS
        ``CRPIX`` holds the 1-based value) and its errors measured against the truth.

    Raises
    ------
    InvalidInputError
        Naming the argument: ``truth_wcs`` without a pixel shape or not 2-D, orders or
        ``n_grid`` out of range.

    Notes
    -----
    The tangent point is the truth's sky position of the detector centre
    ``(x_c, y_c) = ((n_x - 1)/2, (n_y - 1)/2)``, rounded to 1e-10 deg so that the value
    survives a FITS header (astropy writes 14 significant digits; unrounded, an RA near
    360 would lose up to 0.02 mas): ``CRVAL`` = that point, ``(x_r, y_r)`` = its truth
    pixel (within 1e-6 px of the centre) and ``CRPIX = (x_r + 1, y_r + 1)`` — the
    **+1** converts lsstdrp's 0-based pixel centres to FITS's 1-based convention.
    The truth positions of the grid are projected gnomonically about ``CRVAL`` to
    standard coordinates ``(ξ, η)`` and fitted by linear least squares (in pixel offsets
    ``U = x - x_r``, ``V = y - y_r`` scaled to ±1 for conditioning) with

    .. math:: (\xi, \eta) = \sum_{1 \le p+q \le N} c_{pq} U^p V^q,

    no constant term since ``(ξ, η) = 0`` at the centre by construction. The SIP form
    ``(ξ, η) = CD · (U + A(U, V), V + B(U, V))`` follows exactly: ``CD`` from the linear
    terms and ``(A_pq, B_pq) = CD⁻¹ c_pq`` for ``p + q >= 2``. The inverse
    ``U = U' + AP(U', V')`` with ``(U', V') = CD⁻¹ (ξ, η)`` is fitted to the truth the
    same way, with terms ``1 <= p + q <= M`` (wcslib evaluates all of them).

    The gnomonic projection about the detector centre differs from that about the
    boresight by a projective map, which polynomials absorb: for a 2k x 2k detector
    at 0.2"/px its non-polynomial residual is far below 1 µas.

    References
    ----------
    .. [1] Shupe, D. L. et al. 2005, ASP Conf. Ser. 347, 491 (the SIP convention).
    .. [2] Calabretta, M. R. & Greisen, E. W. 2002, A&A 395, 1077.
    """
    if not isinstance(truth_wcs, BaseLowLevelWCS) or truth_wcs.pixel_n_dim != 2 \
            or truth_wcs.world_n_dim != 2:
        raise InvalidInputError(
            "`truth_wcs` must be a 2-D APE-14 low-level WCS (e.g. TruthWcs); got "
            f"{type(truth_wcs).__name__}"
        )
    if truth_wcs.pixel_shape is None:
        raise InvalidInputError("`truth_wcs` has no pixel_shape; the detector size is needed")
    sip_order = _check_int(sip_order, "sip_order", 2)
    if sip_order > 9:
        raise InvalidInputError(f"`sip_order` must be in [2, 9]; got {sip_order}")
    inverse_order = sip_order + 2 if inverse_order is None else inverse_order
    inverse_order = _check_int(inverse_order, "inverse_order", 1)
    if inverse_order > 11:
        raise InvalidInputError(f"`inverse_order` must be in [1, 11]; got {inverse_order}")
    n_grid = _check_int(n_grid, "n_grid", 2)
    if n_grid < max(sip_order, inverse_order) + 2:
        raise InvalidInputError(
            f"`n_grid`={n_grid} is too small for polynomial order "
            f"{max(sip_order, inverse_order)}; need >= {max(sip_order, inverse_order) + 2}"
        )

    nx, ny = (int(n) for n in truth_wcs.pixel_shape)
    xc, yc = 0.5 * (nx - 1), 0.5 * (ny - 1)
    half = 0.5 * max(nx, ny)

    def failed(reason: str) -> TanSipApprox:
        return TanSipApprox(None, False, reason, sip_order, inverse_order,
                            math.nan, math.nan, math.nan)

    ra_c, dec_c = (float(np.asarray(a)) for a in truth_wcs.pixel_to_world_values(xc, yc))
    if not (math.isfinite(ra_c) and math.isfinite(dec_c)):
        return failed("truth WCS is not finite at the detector centre")
    # CRVAL rounded to 1e-10 deg (0.4 µas) so that it survives astropy's 14-significant-
    # digit FITS header cards exactly; CRPIX is the truth's pixel of that point.
    ra_c = round(ra_c, 10) % 360.0
    dec_c = round(dec_c, 10)
    xr, yr = (float(np.asarray(a)) for a in truth_wcs.world_to_pixel_values(ra_c, dec_c))
    if not (math.isfinite(xr) and math.isfinite(yr)) or abs(xr - xc) > 1 or abs(yr - yc) > 1:
        return failed("truth WCS world_to_pixel does not invert pixel_to_world at the centre")

    gx, gy = np.meshgrid(np.linspace(-0.5, nx - 0.5, n_grid),
                         np.linspace(-0.5, ny - 0.5, n_grid))
    gx, gy = gx.ravel(), gy.ravel()
    ra, dec = truth_wcs.pixel_to_world_values(gx, gy)
    xi, eta = _tan_project(np.asarray(ra), np.asarray(dec), ra_c, dec_c)
    if not (np.all(np.isfinite(xi)) and np.all(np.isfinite(eta))):
        return failed("truth WCS gives non-finite or far-hemisphere positions on the detector")

    U, V = gx - xr, gy - yr
    fwd_terms = _monomials(sip_order, 1)
    design = np.stack([(U / half) ** p * (V / half) ** q for p, q in fwd_terms], axis=-1)
    coef, _, rank, _ = np.linalg.lstsq(design, np.stack([xi, eta], -1), rcond=None)
    if rank < len(fwd_terms):
        return failed(f"forward design matrix is rank deficient ({rank} < {len(fwd_terms)})")
    coef = coef / np.array([half ** (p + q) for p, q in fwd_terms])[:, None]  # (nterms, 2)
    cd = np.array([[coef[0, 0], coef[1, 0]], [coef[0, 1], coef[1, 1]]])  # terms (1,0),(0,1)
    if not np.isfinite(np.linalg.cond(cd)) or abs(np.linalg.det(cd)) == 0:
        return failed("fitted CD matrix is singular")
    cd_inv = np.linalg.inv(cd)
    a = np.zeros((sip_order + 1, sip_order + 1))
    b = np.zeros((sip_order + 1, sip_order + 1))
    for (p, q), c in zip(fwd_terms, coef):
        if p + q >= 2:
            a[p, q], b[p, q] = cd_inv @ c

    # inverse: U - U' = AP(U', V'), U' = CD^-1 (xi, eta)
    Up = cd_inv[0, 0] * xi + cd_inv[0, 1] * eta
    Vp = cd_inv[1, 0] * xi + cd_inv[1, 1] * eta
    inv_terms = _monomials(inverse_order, 1)
    design_i = np.stack([(Up / half) ** p * (Vp / half) ** q for p, q in inv_terms], axis=-1)
    coef_i, _, rank_i, _ = np.linalg.lstsq(design_i, np.stack([U - Up, V - Vp], -1),
                                           rcond=None)
    if rank_i < len(inv_terms):
        return failed(f"inverse design matrix is rank deficient ({rank_i} < {len(inv_terms)})")
    coef_i = coef_i / np.array([half ** (p + q) for p, q in inv_terms])[:, None]
    ap = np.zeros((inverse_order + 1, inverse_order + 1))
    bp = np.zeros((inverse_order + 1, inverse_order + 1))
    for (p, q), c in zip(inv_terms, coef_i):
        ap[p, q], bp[p, q] = c

    crpix = np.array([xr + 1.0, yr + 1.0])  # FITS is 1-based
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.crval = [ra_c, dec_c]
    w.wcs.crpix = crpix
    w.wcs.cd = cd
    w.sip = Sip(a, b, ap, bp, crpix)
    w.pixel_shape = (nx, ny)
    w.wcs.set()

    # independent, 3x denser check grid
    n_chk = 3 * n_grid
    cx, cy = np.meshgrid(np.linspace(-0.5, nx - 0.5, n_chk), np.linspace(-0.5, ny - 0.5, n_chk))
    cx, cy = cx.ravel(), cy.ravel()
    t_ra, t_dec = (np.asarray(t) for t in truth_wcs.pixel_to_world_values(cx, cy))
    f_ra, f_dec = w.all_pix2world(cx, cy, 0)
    err = _sep_mas(t_ra, t_dec, f_ra, f_dec)
    # non-iterative inverse: TAN + CD^-1 (wcslib, SIP ignored), then U = U' + AP(U', V')
    lx, ly = w.wcs_world2pix(t_ra, t_dec, 0)
    up, vp = lx - xr, ly - yr
    ix = lx + _eval_sip(w.sip.ap, up, vp)
    iy = ly + _eval_sip(w.sip.bp, up, vp)
    scale_mas = math.sqrt(abs(np.linalg.det(cd))) * _MAS_PER_DEG
    inv_err = np.hypot(ix - cx, iy - cy) * scale_mas
    if not (np.all(np.isfinite(err)) and np.all(np.isfinite(inv_err))):
        return failed("approximation is not finite on the check grid")
    return TanSipApprox(
        wcs=w,
        success=True,
        reason="",
        sip_order=sip_order,
        inverse_order=inverse_order,
        max_error_mas=float(err.max()),
        rms_error_mas=float(np.sqrt(np.mean(err**2))),
        inverse_max_error_mas=float(inv_err.max()),
    )


# ------------------------------------------------------------ stellar motion
def propagate_to_epoch(
    ra: Any,
    dec: Any,
    pmra: Any,
    pmdec: Any,
    parallax: Any,
    *,
    epoch_mjd: Any,
    mjd: Any,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Move catalog positions to the epoch of an observation: proper motion + parallax.

    Parameters
    ----------
    ra, dec : float or array_like
        ICRS barycentric position at ``epoch_mjd``, degrees.
    pmra : float or array_like
        Proper motion in right ascension *including* ``cos(dec)`` (Gaia's
        ``pmra``), mas/yr.
    pmdec : float or array_like
        Proper motion in declination, mas/yr.
    parallax : float or array_like
        Parallax in mas (>= 0; 0 for infinitely distant sources).
    epoch_mjd : float or array_like
        Catalog epoch, MJD (TAI); Gaia DR3 is 57388.0 (J2016.0).
    mjd : float or array_like
        Observation time, MJD (TAI). All inputs are broadcast together.

    Returns
    -------
    ra, dec : numpy.ndarray
        Astrometric (geocentric, geometric) position at ``mjd`` in degrees, ``ra`` in
        ``[0, 360)``: no aberration, light deflection or refraction (those belong to the
        pointing/turbulence model, not the catalog).

    Raises
    ------
    InvalidInputError
        Naming the argument: non-finite values, ``dec`` outside [-90, 90], negative
        ``parallax``, or shapes that do not broadcast.

    Notes
    -----
    With the unit vector ``p_0`` at the catalog epoch, the local east/north unit
    vectors ``e, n`` and ``μ = μ_α* e + μ_δ n`` (rad/yr), a star moving uniformly in
    a straight line (zero radial velocity) at distance ``1/ϖ`` au is at
    ``(p_0 + μ Δt)/ϖ`` after ``Δt`` Julian years; seen from the Earth at barycentric
    position ``E`` (au) its direction is

    .. math:: \hat q \propto p_0 + \mu\,\Delta t - \varpi\, E(t),

    which is rigorous on the sphere (no tangent-plane approximation; exactly what
    ``SkyCoord.apply_space_motion`` does with zero radial velocity, up to ERFA's
    light-time term, < 1 µas here). ``E`` comes from ``erfa.epv00`` (VSOP2000-based,
    accuracy ~5 km ≈ 7e-3 mas·ϖ/1") evaluated at TDB ≈ TT = TAI + 32.184 s; the
    neglected TDB - TT (< 1.7 ms) moves the Earth by < 51 m, i.e. < 3.4e-10 ϖ.
    The observer sits at the geocentre (diurnal parallax, < 4.3e-5 ϖ, is neglected).

    References
    ----------
    .. [1] Kaplan, G. H. 2005, USNO Circular 179, sec. 3.
    .. [2] Lindegren, L. et al. 2021, A&A 649, A2 (Gaia astrometric model).
    .. [3] Bretagnon, P. & Francou, G. 1988, A&A 202, 309 (VSOP87, basis of epv00).

    Examples
    --------
    >>> ra, dec = propagate_to_epoch(10.0, 20.0, 100.0, 0.0, 0.0,
    ...                               epoch_mjd=57388.0, mjd=57388.0 + 365.25)
    >>> round(float((ra - 10.0) * 3.6e6 * np.cos(np.radians(20.0))), 3)
    100.0
    """
    names = ("ra", "dec", "pmra", "pmdec", "parallax", "epoch_mjd", "mjd")
    arrays = [_floats(a, n) for a, n in zip((ra, dec, pmra, pmdec, parallax, epoch_mjd, mjd),
                                            names)]
    for a, n in zip(arrays, names):
        if not np.all(np.isfinite(a)):
            raise InvalidInputError(f"`{n}` must be finite")
    try:
        ra_, dec_, pmra_, pmdec_, plx, ep, t = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        shapes = ", ".join(f"{n}{np.shape(a)}" for a, n in zip(arrays, names))
        raise InvalidInputError(f"arguments do not broadcast: {shapes}") from exc
    if np.any(np.abs(dec_) > 90.0):
        raise InvalidInputError("`dec` must be in [-90, 90] degrees")
    if np.any(plx < 0):
        raise InvalidInputError("`parallax` must be >= 0 mas")

    a, d = ra_ * _DEG, dec_ * _DEG
    ca, sa, cd, sd = np.cos(a), np.sin(a), np.cos(d), np.sin(d)
    p0 = np.stack([cd * ca, cd * sa, sd], axis=-1)
    east = np.stack([-sa, ca, np.zeros_like(a)], axis=-1)
    north = np.stack([-sd * ca, -sd * sa, cd], axis=-1)
    dt_yr = (t - ep) / _DAYS_PER_JULIAN_YEAR
    q = p0 + (pmra_[..., None] * east + pmdec_[..., None] * north) * (_MAS * dt_yr[..., None])
    if np.any(plx > 0):
        # one ephemeris call per distinct epoch (usually one per visit), not per object
        tt, inverse = np.unique(np.ravel(t), return_inverse=True)
        _, pvb = erfa.epv00(_MJD_ZERO_JD, tt + _TT_MINUS_TAI_DAYS)  # structured pv (p, v)
        earth = np.asarray(pvb["p"])[inverse].reshape(np.shape(t) + (3,))
        q = q - (plx * _MAS)[..., None] * earth
    ra_out = np.degrees(np.arctan2(q[..., 1], q[..., 0])) % 360.0
    ra_out = np.where(ra_out >= 360.0, ra_out - 360.0, ra_out)
    dec_out = np.degrees(np.arctan2(q[..., 2], np.hypot(q[..., 0], q[..., 1])))
    return np.asarray(ra_out), np.asarray(dec_out)
