"""PSF model classes of :mod:`lsstdrp.psf`: the spatially varying pixel-grid model, the
analytic (Gaussian / Moffat) first-pass model and the visit-level (focal-plane) model.

All satisfy the :class:`lsstdrp.core.Psf` protocol (the visit model: ``VisitPsf``).
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ..core import GaussianPsf, MoffatPsf

__all__ = [
    "PolynomialBasis",
    "PixelGridPsf",
    "AnalyticPsf",
    "VisitPixelGridPsf",
    "render_grid",
    "axis_weights",
    "INTERPOLANTS",
]


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------


def _coord(value: Any, name: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a finite real number; got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidInputError(f"`{name}` must be finite; got {value!r}")
    return v


def _color(value: Any) -> float | None:
    if value is None:
        return None
    if np.ndim(value) != 0:
        raise InvalidInputError(f"`color` must be a scalar AB colour index or None; got {value!r}")
    return _coord(value, "color")


def _shape(shape: Any, default: int) -> tuple[int, int]:
    if shape is None:
        return default, default
    try:
        if np.ndim(shape) == 0:
            ny = nx = int(shape)
        else:
            ny, nx = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`shape` must be an odd int or (ny, nx); got {shape!r}") from None
    if ny % 2 == 0 or nx % 2 == 0 or min(ny, nx) < 1:
        raise InvalidInputError(f"`shape` must be odd and positive; got {shape!r}")
    return ny, nx


# ---------------------------------------------------------------------------------------
# polynomial basis
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolynomialBasis:
    r"""Monomial basis of the spatial (and colour) variation of a PSF model.

    The basis functions are :math:`u^i v^j\,\Delta c^m` with
    :math:`u = (x - x_c)/h_x`, :math:`v = (y - y_c)/h_y` (so the fitted area maps to
    :math:`[-1, 1]^2`), :math:`\Delta c = c - c_\mathrm{ref}`, :math:`i + j \le`
    ``spatial_order`` for :math:`m = 0` and :math:`i + j \le` ``color_spatial_order``
    for :math:`1 \le m \le` ``color_order``.

    Parameters
    ----------
    spatial_order : int
        Total degree of the spatial polynomial (>= 0).
    bounds : (float, float, float, float)
        ``(xmin, xmax, ymin, ymax)`` of the area the polynomial is fitted on, pixels.
    color_order : int
        Degree of the colour dependence (0 = achromatic).
    color_spatial_order : int
        Spatial degree of the colour terms.
    color_ref : float
        Reference colour :math:`c_\mathrm{ref}` (the fitted stars' median colour).

    Examples
    --------
    >>> from lsstdrp.psf import PolynomialBasis
    >>> b = PolynomialBasis(2, (0, 100, 0, 100))
    >>> b.n_terms, b.evaluate([50.0], [50.0]).tolist()
    (6, [[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    """

    spatial_order: int
    bounds: tuple[float, float, float, float]
    _: KW_ONLY
    color_order: int = 0
    color_spatial_order: int = 0
    color_ref: float = 0.0

    def __post_init__(self) -> None:
        for name in ("spatial_order", "color_order", "color_spatial_order"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise InvalidInputError(f"`{name}` must be an integer >= 0; got {v!r}")
            object.__setattr__(self, name, int(v))
        try:
            b = tuple(float(v) for v in self.bounds)
        except (TypeError, ValueError):
            raise InvalidInputError(f"`bounds` must be (xmin, xmax, ymin, ymax); got {self.bounds!r}") from None
        if len(b) != 4 or not all(math.isfinite(v) for v in b) or not (b[1] > b[0] and b[3] > b[2]):
            raise InvalidInputError(f"`bounds` must be finite (xmin, xmax, ymin, ymax) with max > min; got {self.bounds!r}")
        object.__setattr__(self, "bounds", b)
        object.__setattr__(self, "color_ref", _coord(self.color_ref, "color_ref"))

    @cached_property
    def exponents(self) -> tuple[tuple[int, int, int], ...]:
        """The ``(i, j, m)`` exponents of :math:`u^i v^j \\Delta c^m`, in basis order."""
        out = []
        for m in range(self.color_order + 1):
            order = self.spatial_order if m == 0 else self.color_spatial_order
            for deg in range(order + 1):
                for j in range(deg + 1):
                    out.append((deg - j, j, m))
        return tuple(out)

    @property
    def n_terms(self) -> int:
        """Number of basis functions."""
        return len(self.exponents)

    @property
    def chromatic(self) -> bool:
        """Whether the basis has colour terms."""
        return self.color_order > 0

    def evaluate(self, x: Any, y: Any, color: Any = None) -> np.ndarray:
        """Basis values at positions ``(x, y)`` (and colours), shape ``(n, n_terms)``.

        Parameters
        ----------
        x, y : array_like of float, shape (n,)
            Pixel positions.
        color : array_like of float, shape (n,), or None
            Colours; None is the reference colour.

        Returns
        -------
        numpy.ndarray of float64, shape (n, n_terms)
        """
        x = np.atleast_1d(np.asarray(x, dtype=np.float64))
        y = np.atleast_1d(np.asarray(y, dtype=np.float64))
        xmin, xmax, ymin, ymax = self.bounds
        u = (x - 0.5 * (xmin + xmax)) / (0.5 * (xmax - xmin))
        v = (y - 0.5 * (ymin + ymax)) / (0.5 * (ymax - ymin))
        if color is None:
            dc = np.zeros_like(u)
        else:
            dc = np.broadcast_to(np.asarray(color, dtype=np.float64), u.shape) - self.color_ref
        out = np.empty((u.size, self.n_terms))
        for t, (i, j, m) in enumerate(self.exponents):
            out[:, t] = u**i * v**j * dc**m
        return out


# ---------------------------------------------------------------------------------------
# grid rendering (shared by the models and the fitter)
# ---------------------------------------------------------------------------------------

_TAPS: Any = None


def _taps_kernel() -> Any:
    global _TAPS
    if _TAPS is None:
        from ._kernels import _axis_taps

        _TAPS = _axis_taps
    return _TAPS


#: Sub-pixel basis functions of the pixel grid: name -> kernel code (taps = 2 * |code|).
INTERPOLANTS = {"bspline5": -3, "bspline3": -2, "lanczos3": 3, "lanczos5": 5}


def _interp_code(name: Any) -> int:
    if name not in INTERPOLANTS:
        raise InvalidInputError(f"`interpolant` must be one of {list(INTERPOLANTS)}; got {name!r}")
    return INTERPOLANTS[name]


def axis_weights(u: np.ndarray, n: int, order: int = -3) -> tuple[np.ndarray, np.ndarray]:
    """Basis taps for continuous grid coordinates ``u`` on a grid of ``n`` samples.

    Parameters
    ----------
    u : numpy.ndarray of float64, shape (m,)
        Continuous grid coordinates (sample ``k`` sits at ``u = k``).
    n : int
        Grid length.
    order : int
        Kernel code: -2 / -3 for the cubic / quintic B-spline (4 / 6 taps), ``a > 0`` for Lanczos-``a``
        (``2a`` taps).

    Returns
    -------
    k0 : numpy.ndarray of int64, shape (m,)
        Index of the first tap.
    w : numpy.ndarray of float64, shape (m, 2 * abs(order))
        Weights; they sum to 1 and reproduce linear functions exactly.
    """
    u = np.ascontiguousarray(u, dtype=np.float64)
    k0 = np.empty(u.shape[0], dtype=np.int64)
    w = np.empty((u.shape[0], 2 * abs(order)))
    _taps_kernel()(u, int(n), int(order), k0, w)
    return k0, w


def _dense_weights(k0: np.ndarray, w: np.ndarray, n: int) -> np.ndarray:
    m = w.shape[1]
    out = np.zeros((k0.shape[0], n))
    idx = k0[:, None] + np.arange(m)[None, :]
    ok = (idx >= 0) & (idx < n)
    rows = np.broadcast_to(np.arange(k0.shape[0])[:, None], idx.shape)
    out[rows[ok], idx[ok]] = w[ok]  # taps of one row are distinct samples
    return out


def render_grid(
    grid: np.ndarray, oversampling: int, x: float, y: float, x0: int, y0: int, ny: int, nx: int, order: int = -3
) -> np.ndarray:
    r"""Render a PSF grid as a unit-flux star at ``(x, y)`` on a stamp with origin ``(x0, y0)``.

    Stamp pixel ``(i, j)`` is image pixel ``(x0 + j, y0 + i)`` and gets

    .. math:: m_{ij} = \sum_{k_y, k_x} C_{k_y k_x}\, w(u_i - k_y)\, w(u_j - k_x), \qquad
              u_j = c + N (x_0 + j - x),

    with ``c`` the grid centre index, ``N`` the oversampling and ``w`` the basis
    function of :func:`axis_weights` (quintic B-spline by default).

    Parameters
    ----------
    grid : numpy.ndarray, shape (n, n)
        The PSF samples (the effective PSF at offsets ``(k - c) / N`` pixels).
    oversampling : int
        ``N``.
    x, y : float
        Star position, pixels.
    x0, y0 : int
        Image coordinates of stamp pixel (0, 0).
    ny, nx : int
        Stamp shape.
    order : int
        Kernel code (see :func:`axis_weights`).

    Returns
    -------
    numpy.ndarray of float64, shape (ny, nx)
    """
    n = grid.shape[0]
    c = (n - 1) / 2
    N = oversampling
    ky, wy = axis_weights(c + N * (y0 + np.arange(ny) - y), n, order)
    kx, wx = axis_weights(c + N * (x0 + np.arange(nx) - x), n, order)
    return _dense_weights(ky, wy, n) @ grid @ _dense_weights(kx, wx, n).T


def _native_kernel(grid: np.ndarray, oversampling: int, order: int) -> np.ndarray:
    n = grid.shape[0]
    c = (n - 1) // 2
    m = c // oversampling
    k = render_grid(grid, oversampling, 0.0, 0.0, -m, -m, 2 * m + 1, 2 * m + 1, order)
    s = float(k.sum())
    if not s > 0 or not np.isfinite(s):
        return np.full_like(k, np.nan)
    return k / s


def _kernel_moments(kernel: np.ndarray) -> tuple[float, float, float]:
    from ..measure import adaptive_moments

    c = (kernel.shape[0] - 1) / 2
    yy, xx = np.mgrid[: kernel.shape[0], : kernel.shape[1]]
    kp = np.clip(kernel, 0, None)
    r2 = float((kp * ((xx - c) ** 2 + (yy - c) ** 2)).sum() / max(kp.sum(), 1e-300))
    guess = max(math.sqrt(max(r2, 0.25) / 2.0), 0.5)
    res = adaptive_moments(kernel, c, c, guess_sigma=guess)
    if res.flags[0] != 0:
        return (math.nan, math.nan, math.nan)
    return float(res.ixx[0]), float(res.iyy[0]), float(res.ixy[0])


# ---------------------------------------------------------------------------------------
# pixel-grid model
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PixelGridPsf:
    r"""A spatially varying (optionally chromatic) pixel-grid PSF (PSFEx / PIFF PixelGrid family).

    The PSF at position :math:`(x, y)` and colour :math:`c` is the grid

    .. math:: C_k(x, y, c) = \sum_t a_{t k}\, B_t(x, y, c),

    of effective-PSF samples at offsets :math:`(k - k_c)/N` pixels (``N`` the
    oversampling), with :math:`B_t` the :class:`PolynomialBasis`. The grid values are
    the coefficients of shifted quintic B-splines (or other kernels), and a star at
    sub-pixel position is rendered by evaluating that expansion (:func:`render_grid`);
    the fit constrains every coefficient plane so that the grid has unit flux
    (:math:`\sum_k C_k = N^2`) and zero first moment everywhere.

    Parameters
    ----------
    coefficients : numpy.ndarray, shape (n_terms, n, n)
        :math:`a_{tk}`; ``n`` odd.
    basis : PolynomialBasis
        The spatial/colour basis.
    oversampling : int, keyword-only
        Grid samples per pixel.
    color_name : str or None, keyword-only
        Colour index of a chromatic model (e.g. ``"g-i"``); None when achromatic.
    interpolant : {'bspline5', 'bspline3', 'lanczos3', 'lanczos5'}, keyword-only
        Sub-pixel basis function. B-spline spans approximate a smooth PSF far better
        than (corrected) Lanczos kernels: the best approximation of a sigma = 1.8 px
        pixelized Gaussian errs by 3.7e-5 of its peak with the quintic B-spline at one
        sample per pixel (cubic: 5.4e-4; Lanczos-3: 2.1e-3; Lanczos-5: 9.5e-4), which
        is why ``bspline5`` is the default.

    Notes
    -----
    ``kernel_image`` evaluates the expansion at the native pixel centres around a
    pixel-centred star, normalised to unit sum; ``image`` renders the grid at the star's sub-pixel offset with the same
    interpolant the fit used (so a fitted star and its model agree by construction);
    ``moments`` are the adaptive moments of ``kernel_image``.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.psf import PixelGridPsf, PolynomialBasis
    >>> k = GaussianPsf(1.5).kernel_image(0, 0)
    >>> psf = PixelGridPsf(k[None], PolynomialBasis(0, (0, 100, 0, 100)))
    >>> psf.kernel_image(10, 20).shape, round(float(psf.image(10.3, 20.0).sum()), 6)
    ((19, 19), 1.0)
    """

    coefficients: np.ndarray
    basis: PolynomialBasis
    _: KW_ONLY
    oversampling: int = 1
    color_name: str | None = None
    interpolant: str = "bspline5"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_code", _interp_code(self.interpolant))
        a = np.array(self.coefficients, dtype=np.float64)
        if a.ndim != 3 or a.shape[1] != a.shape[2] or a.shape[1] % 2 == 0:
            raise InvalidInputError(f"`coefficients` must have shape (n_terms, n, n) with n odd; got {a.shape}")
        if not isinstance(self.basis, PolynomialBasis):
            raise InvalidInputError(f"`basis` must be a PolynomialBasis; got {type(self.basis).__name__}")
        if a.shape[0] != self.basis.n_terms:
            raise InvalidInputError(
                f"`coefficients` has {a.shape[0]} planes; the basis has {self.basis.n_terms} terms"
            )
        if not np.all(np.isfinite(a)):
            raise InvalidInputError("`coefficients` must be finite")
        N = self.oversampling
        if isinstance(N, bool) or not isinstance(N, (int, np.integer)) or N < 1:
            raise InvalidInputError(f"`oversampling` must be an integer >= 1; got {N!r}")
        if self.color_name is not None and not isinstance(self.color_name, str):
            raise InvalidInputError(f"`color_name` must be None or a str; got {self.color_name!r}")
        if (a.shape[1] - 1) // 2 // int(N) < 1:
            raise InvalidInputError(f"the grid of side {a.shape[1]} spans less than 3 pixels at oversampling {N}")
        a.flags.writeable = False
        object.__setattr__(self, "coefficients", a)
        object.__setattr__(self, "oversampling", int(N))

    def __repr__(self) -> str:
        t, n, _ = self.coefficients.shape
        return (f"PixelGridPsf(<{t} x {n}x{n} coefficients>, spatial_order={self.basis.spatial_order}, "
                f"color_order={self.basis.color_order}, oversampling={self.oversampling}, "
                f"color_name={self.color_name!r})")

    @property
    def grid_size(self) -> int:
        """Side of the coefficient grid (samples)."""
        return int(self.coefficients.shape[1])

    @property
    def kernel_size(self) -> int:
        """Side of :meth:`kernel_image` in pixels."""
        c = (self.grid_size - 1) // 2
        return 2 * (c // self.oversampling) + 1

    def grid(self, x: float, y: float, *, color: float | None = None) -> np.ndarray:
        """The (oversampled) PSF grid at ``(x, y)`` and ``color``, shape (n, n).

        Parameters
        ----------
        x, y : float
            Position, pixels.
        color : float, optional
            Colour (None: the reference colour of the fit).

        Returns
        -------
        numpy.ndarray of float64
        """
        x = _coord(x, "x")
        y = _coord(y, "y")
        c = _color(color)
        b = self.basis.evaluate([x], [y], None if c is None else [c])[0]
        return np.tensordot(b, self.coefficients, axes=(0, 0))

    def kernel_image(self, x: float, y: float, *, color: float | None = None) -> np.ndarray:
        """Pixel-integrated, centred, unit-sum kernel at ``(x, y)`` (native pixels).

        Parameters
        ----------
        x, y : float
            Position, pixels.
        color : float, optional
            AB colour index (used when the model is chromatic).

        Returns
        -------
        numpy.ndarray of float64, shape (kernel_size, kernel_size)
        """
        return _native_kernel(self.grid(x, y, color=color), self.oversampling, self._code)  # type: ignore[attr-defined]

    def image(self, x: float, y: float, *, color: float | None = None,
              shape: int | tuple[int, int] | None = None) -> np.ndarray:
        """The PSF of a unit-flux star at sub-pixel ``(x, y)``, stamp centred on the nearest pixel.

        Parameters
        ----------
        x, y : float
            Star position, pixels.
        color : float, optional
            AB colour index.
        shape : int or (int, int), optional
            Odd stamp shape; default ``kernel_size``.

        Returns
        -------
        numpy.ndarray of float64
            Unit sum over the full support of the shifted grid; a smaller ``shape`` cuts
            the wings.
        """
        g = self.grid(x, y, color=color)
        ny, nx = _shape(shape, self.kernel_size)
        X, Y = math.floor(x + 0.5), math.floor(y + 0.5)
        code = self._code  # type: ignore[attr-defined]
        h = self.kernel_size // 2 + abs(code) + 1
        hy, hx = max(h, (ny - 1) // 2), max(h, (nx - 1) // 2)
        big = render_grid(g, self.oversampling, x, y, X - hx, Y - hy, 2 * hy + 1, 2 * hx + 1, code)
        s = float(big.sum())
        if s > 0:
            big /= s
        oy, ox = hy - (ny - 1) // 2, hx - (nx - 1) // 2
        return np.ascontiguousarray(big[oy : oy + ny, ox : ox + nx])

    def moments(self, x: float, y: float, *, color: float | None = None) -> tuple[float, float, float]:
        """Adaptive second moments ``(ixx, iyy, ixy)`` (pixels²) of :meth:`kernel_image`.

        Parameters
        ----------
        x, y : float
            Position, pixels.
        color : float, optional
            AB colour index.

        Returns
        -------
        tuple of float
            NaNs if the adaptive-moment iteration fails.
        """
        return _kernel_moments(self.kernel_image(x, y, color=color))


# ---------------------------------------------------------------------------------------
# analytic model
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AnalyticPsf:
    r"""A spatially varying analytic PSF (elliptical Gaussian or Moffat) for first passes.

    The profile's size and ellipticity are polynomials over the detector: the fitted
    quantities are the adaptive moments :math:`(I_{xx}, I_{yy}, I_{xy})` of the stars
    (the same :class:`PolynomialBasis` for each), and the profile at :math:`(x, y)` is
    the :class:`~lsstdrp.core.GaussianPsf` or :class:`~lsstdrp.core.MoffatPsf` whose
    pixelized adaptive moments equal them (to first order in the pixel response).

    Parameters
    ----------
    profile : {'gaussian', 'moffat'}
        The profile family.
    coefficients : numpy.ndarray, shape (3, n_terms)
        Polynomial coefficients of ``ixx, iyy, ixy``.
    basis : PolynomialBasis
        Spatial basis.
    beta : float, keyword-only
        Moffat index.
    size : int or None, keyword-only
        Kernel side (None: the profile's default).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.psf import AnalyticPsf, PolynomialBasis
    >>> psf = AnalyticPsf("gaussian", np.array([[4.0], [4.0], [0.0]]), PolynomialBasis(0, (0, 10, 0, 10)))
    >>> [round(abs(v), 2) for v in psf.moments(5, 5)]
    [4.0, 4.0, 0.0]
    """

    profile: str
    coefficients: np.ndarray
    basis: PolynomialBasis
    _: KW_ONLY
    beta: float = 3.5
    size: int | None = None
    color_name: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.profile not in ("gaussian", "moffat"):
            raise InvalidInputError(f"`profile` must be 'gaussian' or 'moffat'; got {self.profile!r}")
        a = np.array(self.coefficients, dtype=np.float64)
        if a.shape != (3, self.basis.n_terms) or not np.all(np.isfinite(a)):
            raise InvalidInputError(f"`coefficients` must be finite with shape (3, {self.basis.n_terms}); got {a.shape}")
        a.flags.writeable = False
        object.__setattr__(self, "coefficients", a)

    def _profile_at(self, x: float, y: float) -> Any:
        b = self.basis.evaluate([_coord(x, "x")], [_coord(y, "y")])[0]
        ixx, iyy, ixy = self.coefficients @ b
        # remove the pixel response (a 1/12 px^2 box) to first order
        ixx, iyy = ixx - 1.0 / 12.0, iyy - 1.0 / 12.0
        det = ixx * iyy - ixy * ixy
        if not (ixx > 0 and iyy > 0 and det > 0):
            raise InvalidInputError(f"the analytic PSF is not positive definite at ({x}, {y})")
        sigma = det**0.25
        e1 = (ixx - iyy) / (ixx + iyy)
        e2 = 2 * ixy / (ixx + iyy)
        if self.profile == "gaussian":
            return GaussianPsf(sigma, e1=e1, e2=e2, size=self.size)
        # a Moffat's adaptive sigma is a fixed multiple of its FWHM (depends on beta only)
        return MoffatPsf(sigma * self._fwhm_per_sigma, beta=self.beta, e1=e1, e2=e2, size=self.size)

    @cached_property
    def _fwhm_per_sigma(self) -> float:
        fwhm = 20.0  # large enough that pixelization is negligible
        ixx, iyy, _ = MoffatPsf(fwhm, beta=self.beta).moments(0, 0)
        return fwhm / math.sqrt(0.5 * (ixx + iyy))

    def kernel_image(self, x: float, y: float, *, color: float | None = None) -> np.ndarray:
        """The kernel of the profile at ``(x, y)`` (``color`` validated and ignored).

        Parameters
        ----------
        x, y : float
            Position, pixels.
        color : float, optional
            Ignored (achromatic).

        Returns
        -------
        numpy.ndarray of float64
        """
        _color(color)
        return self._profile_at(x, y).kernel_image(x, y)

    def image(self, x: float, y: float, *, color: float | None = None,
              shape: int | tuple[int, int] | None = None) -> np.ndarray:
        """The profile as a unit-flux star at ``(x, y)`` shows it.

        Parameters
        ----------
        x, y : float
            Position, pixels.
        color : float, optional
            Ignored (achromatic).
        shape : int or (int, int), optional
            Odd stamp shape.

        Returns
        -------
        numpy.ndarray of float64
        """
        _color(color)
        return self._profile_at(x, y).image(x, y, shape=shape)

    def moments(self, x: float, y: float, *, color: float | None = None) -> tuple[float, float, float]:
        """Adaptive moments of the profile at ``(x, y)``, pixels².

        Parameters
        ----------
        x, y : float
            Position, pixels.
        color : float, optional
            Ignored (achromatic).

        Returns
        -------
        tuple of float
        """
        _color(color)
        return self._profile_at(x, y).moments(x, y)


# ---------------------------------------------------------------------------------------
# visit-level model
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class VisitPixelGridPsf:
    r"""A focal-plane pixel-grid PSF: a smooth shared variation plus per-detector terms.

    The grid at pixel :math:`(x, y)` of detector :math:`d` is

    .. math:: C_k = \sum_t a_{tk} B_t(X, Y, c) + \sum_s b_{d s k} D_s(x, y),

    where :math:`(X, Y) = T_d(x, y)` are focal-plane coordinates (an affine map per
    detector), :math:`B_t` the shared :class:`PolynomialBasis` over the focal plane and
    :math:`D_s` a low-order per-detector polynomial whose coefficients are shrunk
    towards zero (a ridge prior) so that detectors with few stars inherit the shared
    model.

    Parameters
    ----------
    shared : numpy.ndarray, shape (n_shared, n, n)
        :math:`a_{tk}`.
    shared_basis : PolynomialBasis
        Basis over the focal plane (bounds in focal-plane units).
    detector_terms : dict
        ``detector -> (n_det_terms, n, n)`` arrays :math:`b_{dsk}`.
    detector_basis : dict
        ``detector -> PolynomialBasis`` in that detector's pixels.
    transforms : dict
        ``detector -> (2, 3)`` affine matrix, ``[X, Y] = A[:, :2] @ [x, y] + A[:, 2]``.
    oversampling : int, keyword-only
    color_name : str or None, keyword-only

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.psf import PolynomialBasis, VisitPixelGridPsf
    >>> k = GaussianPsf(1.5).kernel_image(0, 0)[None]
    >>> vp = VisitPixelGridPsf(k, PolynomialBasis(0, (-1, 1, -1, 1)), {0: 0 * k},
    ...                        {0: PolynomialBasis(0, (0, 9, 0, 9))}, {0: np.array([[1., 0, 0], [0, 1, 0]])})
    >>> vp.psf_for(0).kernel_image(3, 3).shape
    (19, 19)
    """

    shared: np.ndarray
    shared_basis: PolynomialBasis
    detector_terms: dict
    detector_basis: dict
    transforms: dict
    _: KW_ONLY
    oversampling: int = 1
    color_name: str | None = None
    interpolant: str = "bspline5"

    def __post_init__(self) -> None:
        _interp_code(self.interpolant)
        a = np.array(self.shared, dtype=np.float64)
        if a.ndim != 3 or a.shape[0] != self.shared_basis.n_terms:
            raise InvalidInputError(f"`shared` must have shape ({self.shared_basis.n_terms}, n, n); got {a.shape}")
        a.flags.writeable = False
        object.__setattr__(self, "shared", a)
        keys = set(self.detector_terms)
        if keys != set(self.detector_basis) or keys != set(self.transforms):
            raise InvalidInputError("`detector_terms`, `detector_basis` and `transforms` must have the same detectors")
        terms, tr = {}, {}
        for d in keys:
            t = np.array(self.detector_terms[d], dtype=np.float64)
            if t.shape != (self.detector_basis[d].n_terms,) + a.shape[1:]:
                raise InvalidInputError(f"`detector_terms[{d!r}]` has shape {t.shape}; expected "
                                        f"{(self.detector_basis[d].n_terms,) + a.shape[1:]}")
            t.flags.writeable = False
            terms[d] = t
            m = np.array(self.transforms[d], dtype=np.float64)
            if m.shape != (2, 3) or not np.all(np.isfinite(m)):
                raise InvalidInputError(f"`transforms[{d!r}]` must be a finite (2, 3) affine matrix; got shape {m.shape}")
            m.flags.writeable = False
            tr[d] = m
        object.__setattr__(self, "detector_terms", terms)
        object.__setattr__(self, "transforms", tr)

    @property
    def detectors(self) -> list:
        """The detectors of the model."""
        return sorted(self.detector_terms)

    def psf_for(self, detector: Any) -> PixelGridPsf:
        """The :class:`PixelGridPsf` of ``detector`` in its own pixel coordinates.

        The shared polynomial composed with the affine detector transform is again a
        polynomial of the same degree in detector pixels, so the result is exact.

        Parameters
        ----------
        detector : hashable
            A detector of the model.

        Returns
        -------
        PixelGridPsf

        Raises
        ------
        InvalidInputError
            Unknown detector.
        """
        if detector not in self.detector_terms:
            raise InvalidInputError(f"`detector` {detector!r} is not in the model; it has {self.detectors}")
        db = self.detector_basis[detector]
        order = max(self.shared_basis.spatial_order, db.spatial_order)
        cb = self.shared_basis
        basis = PolynomialBasis(order, db.bounds, color_order=cb.color_order,
                                color_spatial_order=cb.color_spatial_order, color_ref=cb.color_ref)
        # least-squares re-expansion on a grid of points (exact: same polynomial space)
        xmin, xmax, ymin, ymax = db.bounds
        npt = order + 3
        gx, gy = np.meshgrid(np.linspace(xmin, xmax, npt), np.linspace(ymin, ymax, npt))
        gx, gy = gx.ravel(), gy.ravel()
        colors = [None] if not cb.chromatic else list(cb.color_ref + np.linspace(-1, 1, cb.color_order + 2))
        rows_b, rows_v = [], []
        for c in colors:
            cc = None if c is None else np.full(gx.size, c)
            rows_b.append(basis.evaluate(gx, gy, cc))
            rows_v.append(self._grids(detector, gx, gy, cc))
        B = np.concatenate(rows_b)
        V = np.concatenate(rows_v)
        coef, *_ = np.linalg.lstsq(B, V.reshape(V.shape[0], -1), rcond=None)
        coef = coef.reshape((basis.n_terms,) + self.shared.shape[1:])
        return PixelGridPsf(coef, basis, oversampling=self.oversampling, color_name=self.color_name,
                            interpolant=self.interpolant)

    def focal_plane(self, detector: Any, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Focal-plane coordinates of detector pixels.

        Parameters
        ----------
        detector : hashable
        x, y : array_like

        Returns
        -------
        X, Y : numpy.ndarray
        """
        m = self.transforms[detector]
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        return m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]

    def _grids(self, detector: Any, x: np.ndarray, y: np.ndarray, color: Any) -> np.ndarray:
        X, Y = self.focal_plane(detector, x, y)
        bs = self.shared_basis.evaluate(X, Y, color)
        bd = self.detector_basis[detector].evaluate(x, y)
        return np.tensordot(bs, self.shared, axes=(1, 0)) + np.tensordot(bd, self.detector_terms[detector], axes=(1, 0))
