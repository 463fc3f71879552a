"""Truth geometry of the simulated camera: detectors on a focal plane and its optics.

The chain modelled here is the camera half of the astrometric truth used by
:class:`lsstdrp.sim._astrometry.TruthWcs`::

    pixel (x, y) of detector d  --placement-->  focal plane (fx, fy) [mm]
                                --optics----->  field angle (u, v)   [deg]

Conventions (DESIGN.md section 2): pixels are 0-based with integer coordinates at
pixel centres, ``x`` is the column and ``y`` the row (``image[y, x]``); detector ids run
0..N-1 row-major over the detector grid (``det = iy * n_x + ix``, ``ix`` along the
focal-plane x axis); the focal-plane origin is the optical axis (the boresight), which
sits at the centre of the detector grid.

The field angle ``(u, v)`` is expressed as *gnomonic standard coordinates* (tangent-plane
coordinates, in degrees) about the boresight, in the camera frame (``u`` along focal
plane ``+x``, ``v`` along ``+y``). With no optical distortion a focal plane therefore maps
onto the sky exactly like a FITS ``TAN`` projection; the difference between the
tangent-plane radius and the true angle from the axis (``tan θ`` versus ``θ``, 2" at
1.75 deg) is absorbed in the radial distortion polynomial, as a real optical design
would be.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InvalidInputError

__all__ = [
    "DEFAULT_EDGE_DISTORTION",
    "FocalPlane",
    "make_focal_plane",
]

#: Default fractional radial distortion ``k3 r^2`` at the corner of the focal plane.
#: The LSST optical design has ~0.1-0.5 % radial distortion at the 1.75 deg field
#: edge; 0.3 % is used and scaled to the size of the simulated focal plane (see
#: :func:`make_focal_plane`).
DEFAULT_EDGE_DISTORTION = 3.0e-3

_ARCSEC_PER_DEG = 3600.0


def _as_float(value: Any, name: str) -> np.ndarray:
    """Return ``value`` as a float64 array (±inf -> NaN) or raise naming ``name``.

    Coordinates follow numpy/astropy semantics: a non-finite input gives NaN output,
    silently (no RuntimeWarning from inf arithmetic).
    """
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"`{name}` must be real numbers; got {value!r}") from exc
    if np.isinf(arr).any():
        arr = np.where(np.isinf(arr), np.nan, arr)
    return arr


def _as_det(det: Any, n_det: int) -> np.ndarray:
    """Validate detector ids: integers in ``[0, n_det)``."""
    arr = np.asarray(det)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InvalidInputError(
                f"`det` must be integer detector id(s) in [0, {n_det}); got dtype {arr.dtype}"
            )
    if arr.size and (arr.min() < 0 or arr.max() >= n_det):
        raise InvalidInputError(
            f"`det` must be in [0, {n_det}); got values in [{arr.min()}, {arr.max()}]"
        )
    return arr.astype(np.int64, copy=False)


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"`{name}` must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise InvalidInputError(f"`{name}` must be >= {minimum}; got {value}")
    return int(value)


def _check_real(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"`{name}` must be a real number; got {value!r}") from exc
    if not math.isfinite(out):
        raise InvalidInputError(f"`{name}` must be finite; got {value!r}")
    if positive and out <= 0:
        raise InvalidInputError(f"`{name}` must be > 0; got {out}")
    if nonneg and out < 0:
        raise InvalidInputError(f"`{name}` must be >= 0; got {out}")
    return out


@dataclass(frozen=True, eq=False)
class FocalPlane:
    r"""A grid of identical detectors on a focal plane, with true placement errors.

    Instances are immutable; build one with :func:`make_focal_plane`, which draws the
    placement errors. All methods are vectorised over their array arguments (numpy
    broadcasting) and return float64 arrays.

    Parameters
    ----------
    n_x, n_y : int
        Number of detectors along the focal-plane x and y axes.
    det_shape : tuple of int
        ``(ny, nx)``: pixels of one detector (numpy shape order).
    pixel_size_mm : float
        Pixel pitch in mm (LSST: 0.01).
    plate_scale_arcsec_per_mm : float
        Paraxial plate scale ``s`` in arcsec/mm (LSST: 20.0, i.e. 0.2"/pixel).
    gap_px : float
        Nominal gap between adjacent detectors, in pixels.
    shift_x_mm, shift_y_mm : array_like, shape (n_x * n_y,)
        True offsets of each detector centre from its nominal position, in mm.
    rotation_rad : array_like, shape (n_x * n_y,)
        True rotation of each detector about its centre (counter-clockwise from focal
        plane ``+x`` towards ``+y``), in radians.
    distortion_k3 : float
        Cubic radial distortion coefficient, in mm⁻².
    distortion_k5 : float
        Quintic radial distortion coefficient, in mm⁻⁴.

    Raises
    ------
    InvalidInputError
        Naming the field: non-positive sizes, placement arrays of the wrong length or
        non-finite, or a distortion that is not monotonic over the focal plane (its
        inverse would not be unique).

    Notes
    -----
    **Placement.** Detector ``d = iy * n_x + ix`` has its nominal centre at

    .. math::

        c_x = \left(i_x - \tfrac{n_x - 1}{2}\right) (N_x + g)\,p, \qquad
        c_y = \left(i_y - \tfrac{n_y - 1}{2}\right) (N_y + g)\,p

    (``N_x, N_y`` pixels per detector, gap ``g`` pixels, pitch ``p`` mm). A pixel
    ``(x, y)`` lands at

    .. math::

        \begin{pmatrix} f_x \\ f_y \end{pmatrix} =
        \begin{pmatrix} c_x + \delta_x \\ c_y + \delta_y \end{pmatrix} +
        p \begin{pmatrix} \cos\alpha & -\sin\alpha \\ \sin\alpha & \cos\alpha
        \end{pmatrix}
        \begin{pmatrix} x - x_c \\ y - y_c \end{pmatrix},

    with ``(x_c, y_c) = ((N_x - 1)/2, (N_y - 1)/2)`` the detector centre and
    ``δ, α`` the true placement errors.

    **Optics.** A rotationally symmetric distortion maps the focal-plane radius
    ``r`` (mm) to the field angle

    .. math:: \theta = s\, r\, (1 + k_3 r^2 + k_5 r^4),

    i.e. ``(u, v) = s (f_x, f_y) (1 + k_3 r^2 + k_5 r^4) / 3600`` in degrees, the
    classical Seidel/Zernike radial-distortion expansion in odd powers of ``r``
    (Born & Wolf 1999, sec. 5.3). ``k3 > 0`` is pincushion (the plate scale grows
    outwards).

    References
    ----------
    .. [1] Born, M. & Wolf, E. 1999, *Principles of Optics*, 7th ed., CUP, sec. 5.3.
    .. [2] Ivezić, Ž. et al. 2019, ApJ 873, 111 (LSST: 3.5 deg field, 0.2"/px,
       10 µm pixels, 20"/mm).

    Examples
    --------
    >>> fp = make_focal_plane(2, 2, (100, 120), rng=1)
    >>> fx, fy = fp.pixel_to_focal(0, 10.0, 20.0)
    >>> x, y = fp.focal_to_pixel(0, fx, fy)
    >>> bool(abs(x - 10.0) < 1e-9 and abs(y - 20.0) < 1e-9)
    True
    """

    n_x: int
    n_y: int
    det_shape: tuple[int, int]
    pixel_size_mm: float
    plate_scale_arcsec_per_mm: float
    gap_px: float
    shift_x_mm: np.ndarray
    shift_y_mm: np.ndarray
    rotation_rad: np.ndarray
    distortion_k3: float
    distortion_k5: float = 0.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "n_x", _check_int(self.n_x, "n_x", 1))
        set_(self, "n_y", _check_int(self.n_y, "n_y", 1))
        shape = tuple(np.atleast_1d(np.asarray(self.det_shape)).tolist())
        if len(shape) != 2:
            raise InvalidInputError(f"`det_shape` must be (ny, nx); got {self.det_shape!r}")
        set_(self, "det_shape", (_check_int(shape[0], "det_shape[0]", 1),
                                 _check_int(shape[1], "det_shape[1]", 1)))
        set_(self, "pixel_size_mm", _check_real(self.pixel_size_mm, "pixel_size_mm", positive=True))
        set_(self, "plate_scale_arcsec_per_mm",
             _check_real(self.plate_scale_arcsec_per_mm, "plate_scale_arcsec_per_mm",
                         positive=True))
        set_(self, "gap_px", _check_real(self.gap_px, "gap_px", nonneg=True))
        n_det = self.n_x * self.n_y
        for name in ("shift_x_mm", "shift_y_mm", "rotation_rad"):
            arr = np.array(_as_float(getattr(self, name), name), dtype=np.float64)
            if arr.shape != (n_det,):
                raise InvalidInputError(
                    f"`{name}` has shape {arr.shape}; expected ({n_det},) = n_x * n_y"
                )
            if not np.all(np.isfinite(arr)):
                raise InvalidInputError(f"`{name}` must be finite")
            arr.flags.writeable = False
            set_(self, name, arr)
        set_(self, "distortion_k3", _check_real(self.distortion_k3, "distortion_k3"))
        set_(self, "distortion_k5", _check_real(self.distortion_k5, "distortion_k5"))
        r_need = 1.5 * self._corner_radius_mm()
        if not self._monotonic_up_to(r_need):
            raise InvalidInputError(
                f"`distortion_k3`={self.distortion_k3:g}, `distortion_k5`="
                f"{self.distortion_k5:g} make the radial distortion non-monotonic within "
                f"r = {r_need:.4g} mm (1.5x the focal-plane corner radius); "
                "d(theta)/dr must stay > 0"
            )

    # ------------------------------------------------------------------ basics
    @property
    def n_detectors(self) -> int:
        """Number of detectors, ``n_x * n_y``."""
        return self.n_x * self.n_y

    @property
    def pixel_scale_arcsec(self) -> float:
        """Paraxial pixel scale in arcsec/pixel (``plate_scale * pixel_size``)."""
        return self.plate_scale_arcsec_per_mm * self.pixel_size_mm

    @functools.cached_property
    def field_radius_deg(self) -> float:
        """Radius (deg) of the circle about the boresight enclosing every detector.

        Computed from the true corners of all detectors (pixel edges), through the
        optical distortion; use it to size the turbulence field and sky catalogs.
        """
        u, v = self.detector_corners(np.arange(self.n_detectors))
        return float(np.max(np.hypot(u, v)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FocalPlane):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, f), getattr(other, f))
            for f in self.__dataclass_fields__
        )

    __hash__ = None  # type: ignore[assignment]

    def _corner_radius_mm(self) -> float:
        ny, nx = self.det_shape
        half_x = 0.5 * (self.n_x * (nx + self.gap_px) - self.gap_px) * self.pixel_size_mm
        half_y = 0.5 * (self.n_y * (ny + self.gap_px) - self.gap_px) * self.pixel_size_mm
        return math.hypot(half_x, half_y)

    def _monotonic_up_to(self, r_max: float) -> bool:
        r = np.linspace(0.0, r_max, 2001)
        deriv = 1.0 + 3.0 * self.distortion_k3 * r**2 + 5.0 * self.distortion_k5 * r**4
        return bool(np.all(deriv > 0))

    def _centres_mm(self, det: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ny, nx = self.det_shape
        ix = det % self.n_x
        iy = det // self.n_x
        cx = (ix - 0.5 * (self.n_x - 1)) * (nx + self.gap_px) * self.pixel_size_mm
        cy = (iy - 0.5 * (self.n_y - 1)) * (ny + self.gap_px) * self.pixel_size_mm
        return cx, cy

    # -------------------------------------------------------- pixel <-> focal
    def pixel_to_focal(self, det: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map pixel coordinates of detector(s) to the focal plane (true placement).

        Parameters
        ----------
        det : int or array_like of int
            Detector id(s), broadcast against ``x`` and ``y``.
        x, y : float or array_like
            0-based pixel coordinates (column, row; integer values at pixel centres).

        Returns
        -------
        fx, fy : numpy.ndarray
            Focal-plane position in mm (origin on the optical axis).

        Raises
        ------
        InvalidInputError
            If ``det`` is not an integer id in ``[0, n_detectors)``.

        Notes
        -----
        See the class Notes for the placement equation.
        """
        return self._pixel_to_focal(det, x, y, nominal=False)

    def nominal_pixel_to_focal(self, det: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`pixel_to_focal` but with the nominal (error-free) placement.

        This is the "design" camera geometry a pipeline starts from; the difference to
        :meth:`pixel_to_focal` is what a joint astrometric fit has to recover.

        Parameters
        ----------
        det : int or array_like of int
            Detector id(s).
        x, y : float or array_like
            0-based pixel coordinates.

        Returns
        -------
        fx, fy : numpy.ndarray
            Nominal focal-plane position in mm.
        """
        return self._pixel_to_focal(det, x, y, nominal=True)

    def _pixel_to_focal(self, det: Any, x: Any, y: Any, *, nominal: bool):
        det = _as_det(det, self.n_detectors)
        x = _as_float(x, "x")
        y = _as_float(y, "y")
        det, x, y = np.broadcast_arrays(det, x, y)
        ny, nx = self.det_shape
        dx = x - 0.5 * (nx - 1)
        dy = y - 0.5 * (ny - 1)
        cx, cy = self._centres_mm(det)
        p = self.pixel_size_mm
        if nominal:
            return cx + p * dx, cy + p * dy
        ca = np.cos(self.rotation_rad[det])
        sa = np.sin(self.rotation_rad[det])
        fx = cx + self.shift_x_mm[det] + p * (ca * dx - sa * dy)
        fy = cy + self.shift_y_mm[det] + p * (sa * dx + ca * dy)
        return fx, fy

    def focal_to_pixel(self, det: Any, fx: Any, fy: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map focal-plane positions to pixel coordinates of detector(s) (true placement).

        The exact inverse of :meth:`pixel_to_focal`; positions off the detector give
        pixel coordinates outside ``[-0.5, n - 0.5)``.

        Parameters
        ----------
        det : int or array_like of int
            Detector id(s), broadcast against ``fx`` and ``fy``.
        fx, fy : float or array_like
            Focal-plane position in mm.

        Returns
        -------
        x, y : numpy.ndarray
            0-based pixel coordinates.

        Raises
        ------
        InvalidInputError
            If ``det`` is not an integer id in ``[0, n_detectors)``.
        """
        det = _as_det(det, self.n_detectors)
        fx = _as_float(fx, "fx")
        fy = _as_float(fy, "fy")
        det, fx, fy = np.broadcast_arrays(det, fx, fy)
        ny, nx = self.det_shape
        cx, cy = self._centres_mm(det)
        ex = fx - cx - self.shift_x_mm[det]
        ey = fy - cy - self.shift_y_mm[det]
        ca = np.cos(self.rotation_rad[det])
        sa = np.sin(self.rotation_rad[det])
        p = self.pixel_size_mm
        x = (ca * ex + sa * ey) / p + 0.5 * (nx - 1)
        y = (-sa * ex + ca * ey) / p + 0.5 * (ny - 1)
        return x, y

    # -------------------------------------------------------- focal <-> field
    def focal_to_field(self, fx: Any, fy: Any) -> tuple[np.ndarray, np.ndarray]:
        r"""Apply the optical distortion: focal plane (mm) -> field angle (deg).

        Parameters
        ----------
        fx, fy : float or array_like
            Focal-plane position in mm.

        Returns
        -------
        u, v : numpy.ndarray
            Field angle from the boresight in the camera frame, as gnomonic standard
            coordinates in degrees.

        Notes
        -----
        .. math:: (u, v) = \frac{s}{3600} (f_x, f_y) (1 + k_3 r^2 + k_5 r^4),
                  \quad r^2 = f_x^2 + f_y^2.
        """
        fx = _as_float(fx, "fx")
        fy = _as_float(fy, "fy")
        r2 = fx * fx + fy * fy
        scale = (self.plate_scale_arcsec_per_mm / _ARCSEC_PER_DEG) * (
            1.0 + r2 * (self.distortion_k3 + self.distortion_k5 * r2)
        )
        return fx * scale, fy * scale

    def focal_to_field_jacobian(self, fx: Any, fy: Any) -> np.ndarray:
        r"""Jacobian ``d(u, v)/d(fx, fy)`` of :meth:`focal_to_field`, in deg/mm.

        Parameters
        ----------
        fx, fy : float or array_like
            Focal-plane position in mm.

        Returns
        -------
        numpy.ndarray, shape (..., 2, 2)
            ``J[..., i, j] = d(u, v)_i / d(fx, fy)_j``.

        Notes
        -----
        With ``D(r) = 1 + k3 r² + k5 r⁴`` and ``D' = 2 k3 + 4 k5 r²`` (derivative
        with respect to ``r²`` times 2):
        ``du/dfx = (s/3600)(D + fx² D')``, ``du/dfy = dv/dfx = (s/3600) fx fy D'``,
        ``dv/dfy = (s/3600)(D + fy² D')``.
        """
        fx = _as_float(fx, "fx")
        fy = _as_float(fy, "fy")
        fx, fy = np.broadcast_arrays(fx, fy)
        r2 = fx * fx + fy * fy
        k3, k5 = self.distortion_k3, self.distortion_k5
        c = self.plate_scale_arcsec_per_mm / _ARCSEC_PER_DEG
        d = 1.0 + r2 * (k3 + k5 * r2)
        dp = 2.0 * k3 + 4.0 * k5 * r2
        jac = np.empty(fx.shape + (2, 2))
        jac[..., 0, 0] = c * (d + fx * fx * dp)
        jac[..., 0, 1] = c * fx * fy * dp
        jac[..., 1, 0] = jac[..., 0, 1]
        jac[..., 1, 1] = c * (d + fy * fy * dp)
        return jac

    def field_to_focal(self, u: Any, v: Any) -> tuple[np.ndarray, np.ndarray]:
        r"""Invert the optical distortion: field angle (deg) -> focal plane (mm).

        Parameters
        ----------
        u, v : float or array_like
            Field angle (gnomonic standard coordinates, degrees, camera frame).

        Returns
        -------
        fx, fy : numpy.ndarray
            Focal-plane position in mm, accurate to < 1e-12 mm inside the monotonic
            range of the distortion; NaN where Newton's method does not converge
            (far outside the focal plane, where the distortion folds over).

        Notes
        -----
        The distortion is radial, so the inverse is a 1-D root find: with
        ``ρ = 3600 |(u, v)| / s`` (the paraxial radius), solve
        ``g(r) = r (1 + k3 r² + k5 r⁴) - ρ = 0`` by Newton's method from ``r = ρ``
        (monotone convergence since ``g`` is convex for ``k3, k5 >= 0`` and concave
        otherwise within the validated range), then
        ``(fx, fy) = 3600 (u, v) / (s D(r))`` with ``D = 1 + k3 r² + k5 r⁴``, which
        is regular at ``r = 0``.
        """
        u = _as_float(u, "u")
        v = _as_float(v, "v")
        u, v = np.broadcast_arrays(u, v)
        c = _ARCSEC_PER_DEG / self.plate_scale_arcsec_per_mm
        lin_x = u * c
        lin_y = v * c
        rho = np.hypot(lin_x, lin_y)
        k3, k5 = self.distortion_k3, self.distortion_k5
        r = rho.copy()
        converged = np.zeros(r.shape, dtype=bool)
        if k3 == 0.0 and k5 == 0.0:
            converged[...] = True
        else:
            for _ in range(60):
                r2 = r * r
                g = r * (1.0 + r2 * (k3 + k5 * r2)) - rho
                gp = 1.0 + r2 * (3.0 * k3 + 5.0 * k5 * r2)
                with np.errstate(invalid="ignore", divide="ignore"):
                    step = np.where(gp > 0, g / gp, np.nan)
                r = r - step
                # relative + absolute tolerance: ~1e-14 mm at 300 mm, far below 1e-9 mm
                done = np.abs(step) <= 1e-15 * (1.0 + np.abs(r))
                converged |= done
                if np.all(converged | ~np.isfinite(r)):
                    # one more polishing step already folded into the loop exit test
                    break
        r2 = r * r
        d = 1.0 + r2 * (k3 + k5 * r2)
        bad = ~converged | ~np.isfinite(r) | (d <= 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            fx = np.where(bad, np.nan, lin_x / d)
            fy = np.where(bad, np.nan, lin_y / d)
        return fx, fy

    # ------------------------------------------------------------- lookups
    def detector_center_field(self, det: Any) -> tuple[np.ndarray, np.ndarray]:
        """Field angle (deg) of the centre of detector(s), with true placement.

        Parameters
        ----------
        det : int or array_like of int
            Detector id(s).

        Returns
        -------
        u, v : numpy.ndarray
            Field angle of the detector centre pixel ``((nx-1)/2, (ny-1)/2)``.
        """
        ny, nx = self.det_shape
        fx, fy = self.pixel_to_focal(det, 0.5 * (nx - 1), 0.5 * (ny - 1))
        return self.focal_to_field(fx, fy)

    def detector_corners(self, det: Any, *, frame: str = "field") -> tuple[np.ndarray, np.ndarray]:
        """Outer corners (pixel edges) of detector(s), with true placement.

        Parameters
        ----------
        det : int or array_like of int
            Detector id(s).
        frame : {"field", "focal"}
            Return field angles in degrees (default) or focal-plane mm.

        Returns
        -------
        a, b : numpy.ndarray, shape det.shape + (4,)
            ``(u, v)`` or ``(fx, fy)`` of pixel positions ``(-0.5, -0.5)``,
            ``(nx-0.5, -0.5)``, ``(nx-0.5, ny-0.5)``, ``(-0.5, ny-0.5)``
            (counter-clockwise in the pixel frame).

        Raises
        ------
        InvalidInputError
            For an unknown ``frame`` or bad ``det``.
        """
        if frame not in ("field", "focal"):
            raise InvalidInputError(f"`frame` must be 'field' or 'focal'; got {frame!r}")
        ny, nx = self.det_shape
        det = _as_det(det, self.n_detectors)[..., None]
        xc = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
        yc = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
        fx, fy = self.pixel_to_focal(det, xc, yc)
        if frame == "focal":
            return fx, fy
        return self.focal_to_field(fx, fy)

    def detector_of(self, u: Any, v: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Find the detector (true placement) that sees field angle(s) ``(u, v)``.

        Parameters
        ----------
        u, v : float or array_like
            Field angle in degrees (camera frame).

        Returns
        -------
        det : numpy.ndarray of int64
            Detector id, or -1 where the position falls in a gap or off the focal plane.
        x, y : numpy.ndarray
            0-based pixel coordinates on that detector (NaN where ``det == -1``).

        Notes
        -----
        A pixel covers ``[x - 0.5, x + 0.5)``. The nominal grid gives a first guess and
        the 3x3 neighbouring detectors are tested with their true placement; where
        placement errors make two detectors overlap (only possible with ``gap_px``
        comparable to the placement errors) the first match in the order
        (guess, then neighbours) wins.
        """
        fx, fy = self.field_to_focal(u, v)
        ny, nx = self.det_shape
        pitch_x = (nx + self.gap_px) * self.pixel_size_mm
        pitch_y = (ny + self.gap_px) * self.pixel_size_mm
        finite = np.isfinite(fx) & np.isfinite(fy)
        with np.errstate(invalid="ignore"):
            ix0 = np.round(np.where(finite, fx, 0.0) / pitch_x + 0.5 * (self.n_x - 1))
            iy0 = np.round(np.where(finite, fy, 0.0) / pitch_y + 0.5 * (self.n_y - 1))
        ix0 = ix0.astype(np.int64)
        iy0 = iy0.astype(np.int64)
        det_out = np.full(fx.shape, -1, dtype=np.int64)
        x_out = np.full(fx.shape, np.nan)
        y_out = np.full(fx.shape, np.nan)
        for diy in (0, -1, 1):
            for dix in (0, -1, 1):
                ix = ix0 + dix
                iy = iy0 + diy
                cand = (
                    finite & (det_out < 0)
                    & (ix >= 0) & (ix < self.n_x) & (iy >= 0) & (iy < self.n_y)
                )
                if not np.any(cand):
                    continue
                det = iy[cand] * self.n_x + ix[cand]
                x, y = self.focal_to_pixel(det, fx[cand], fy[cand])
                inside = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
                idx = np.flatnonzero(cand)[inside]
                det_out.flat[idx] = det[inside]
                x_out.flat[idx] = x[inside]
                y_out.flat[idx] = y[inside]
        return det_out, x_out, y_out


def make_focal_plane(
    n_x: int,
    n_y: int,
    det_shape: tuple[int, int],
    *,
    pixel_scale_arcsec: float = 0.2,
    pixel_size_mm: float = 0.01,
    gap_px: float = 50,
    placement_sigma_um: float = 5.0,
    rotation_sigma_arcsec: float = 20.0,
    distortion_k3: float | None = None,
    distortion_k5: float = 0.0,
    rng: Any = None,
) -> FocalPlane:
    r"""Build a :class:`FocalPlane` with random true detector placement errors.

    Parameters
    ----------
    n_x, n_y : int
        Detectors along focal-plane x and y (LSST: a 15x15 grid with 189 science
        CCDs of 4k x 4k; a few 2k x 2k detectors are typical for tests).
    det_shape : tuple of int
        ``(ny, nx)`` pixels per detector.
    pixel_scale_arcsec : float
        Paraxial pixel scale in arcsec/pixel (LSST 0.2); the plate scale is
        ``pixel_scale_arcsec / pixel_size_mm`` arcsec/mm.
    pixel_size_mm : float
        Pixel pitch in mm (LSST 0.01).
    gap_px : float
        Gap between adjacent detectors in pixels.
    placement_sigma_um : float
        Gaussian sigma of the true detector-centre offset per axis, in µm
        (5 µm = 0.5 pixel at 10 µm pixels).
    rotation_sigma_arcsec : float
        Gaussian sigma of the true detector rotation, in arcsec (20" tilts a 2k
        detector edge by 0.1 pixel).
    distortion_k3 : float, optional
        Cubic radial distortion in mm⁻². Default (None): LSST-like fractional
        distortion ``k3 r_c² = DEFAULT_EDGE_DISTORTION`` (0.3 %) at the corner radius
        ``r_c`` of *this* focal plane, i.e. the LSST distortion pattern scaled to the
        simulated camera; see Notes.
    distortion_k5 : float
        Quintic radial distortion in mm⁻⁴ (default 0).
    rng : None, int or numpy.random.Generator
        Seed or generator for the placement errors (``np.random.default_rng(rng)``).

    Returns
    -------
    FocalPlane
        The camera, with ``shift_x_mm``, ``shift_y_mm``, ``rotation_rad`` drawn
        independently per detector.

    Raises
    ------
    InvalidInputError
        Naming the argument: non-positive counts/sizes, negative sigmas, a
        non-monotonic distortion.

    Notes
    -----
    The LSST optics have ~0.1-0.5 % radial distortion at the 1.75 deg edge of the
    field, i.e. ``k3 ≈ 3e-8 mm⁻²`` at ``r = 315 mm`` (19" at the edge). Taken
    literally, a 3x3 grid of 2k detectors (corner radius 44.5 mm) would see only
    53 mas of distortion at its corners, too little for a test of a distortion fit.
    The default therefore keeps the *fractional* distortion at the corner of the
    simulated focal plane at 0.3 %:

    .. math:: k_3 = 0.003 / r_c^2,

    e.g. ``k3 = 1.5e-6 mm⁻²`` for 3x3 x 2k (2.7" at the corner, 0.36" of quadratic
    distortion across a corner detector) and ``k3 = 1.4e-5 mm⁻²`` for a single 2k
    detector (0.87" at its corners). For a full-size camera the default reproduces
    the LSST value. Pass ``distortion_k3`` explicitly to fix an absolute value.

    Examples
    --------
    >>> fp = make_focal_plane(3, 3, (2048, 2048), rng=42)
    >>> fp.n_detectors, round(fp.pixel_scale_arcsec, 3)
    (9, 0.2)
    """
    n_x = _check_int(n_x, "n_x", 1)
    n_y = _check_int(n_y, "n_y", 1)
    pixel_scale_arcsec = _check_real(pixel_scale_arcsec, "pixel_scale_arcsec", positive=True)
    pixel_size_mm = _check_real(pixel_size_mm, "pixel_size_mm", positive=True)
    placement_sigma_um = _check_real(placement_sigma_um, "placement_sigma_um", nonneg=True)
    rotation_sigma_arcsec = _check_real(
        rotation_sigma_arcsec, "rotation_sigma_arcsec", nonneg=True
    )
    gen = np.random.default_rng(rng)
    n_det = n_x * n_y
    shift_x = gen.normal(0.0, placement_sigma_um * 1e-3, n_det)
    shift_y = gen.normal(0.0, placement_sigma_um * 1e-3, n_det)
    rot = gen.normal(0.0, math.radians(rotation_sigma_arcsec / _ARCSEC_PER_DEG), n_det)
    if distortion_k3 is None:
        probe = FocalPlane(
            n_x=n_x, n_y=n_y, det_shape=det_shape, pixel_size_mm=pixel_size_mm,
            plate_scale_arcsec_per_mm=pixel_scale_arcsec / pixel_size_mm, gap_px=gap_px,
            shift_x_mm=np.zeros(n_det), shift_y_mm=np.zeros(n_det),
            rotation_rad=np.zeros(n_det), distortion_k3=0.0, distortion_k5=0.0,
        )
        distortion_k3 = DEFAULT_EDGE_DISTORTION / probe._corner_radius_mm() ** 2
    return FocalPlane(
        n_x=n_x,
        n_y=n_y,
        det_shape=det_shape,
        pixel_size_mm=pixel_size_mm,
        plate_scale_arcsec_per_mm=pixel_scale_arcsec / pixel_size_mm,
        gap_px=gap_px,
        shift_x_mm=shift_x,
        shift_y_mm=shift_y,
        rotation_rad=rot,
        distortion_k3=distortion_k3,
        distortion_k5=distortion_k5,
    )
