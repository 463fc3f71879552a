"""Adaptive (elliptical-Gaussian-weighted) second moments of many sources."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from . import _kernels as K
from ._inputs import _Pixels, _as_pixels, _per_source, _positions

__all__ = ["AdaptiveMoments", "adaptive_moments"]


@dataclass(frozen=True, slots=True)
class AdaptiveMoments:
    """Adaptive moments of n sources (Bernstein & Jarvis 2002; HSM conventions).

    Attributes
    ----------
    x, y : numpy.ndarray of float64, shape (n,)
        Adaptive centroid (pixels, 0-based).
    ixx, iyy, ixy : numpy.ndarray of float64
        Adaptive second moments :math:`M` in pixels²: the covariance of the best-fit
        elliptical Gaussian (``galsim.hsm`` ``moments_sigma = (ixx iyy - ixy^2)^(1/4)``).
    ixx_err, iyy_err, ixy_err : numpy.ndarray of float64
        1-sigma errors (NaN without a variance or for failures).
    x_err, y_err : numpy.ndarray of float64
        1-sigma errors of the adaptive centroid.
    flux : numpy.ndarray of float64
        Flux of the best-fit Gaussian, ``2 A`` with ``A = sum(w I)`` (galsim
        ``moments_amp``).
    rho4 : numpy.ndarray of float64
        Weighted radial fourth moment ``sum(w I rho^4) / sum(w I)`` (2 for a Gaussian).
    sigma : numpy.ndarray of float64
        Determinant radius ``(ixx iyy - ixy^2)^(1/4)``.
    e1, e2 : numpy.ndarray of float64
        Distortion ``((ixx - iyy), 2 ixy) / (ixx + iyy)``.
    n_iter : numpy.ndarray of int32
        Iterations used.
    flags : numpy.ndarray of int32
        :class:`~lsstdrp.measure.MeasurementFlag` bits (``NOT_CONVERGED``,
        ``NONPOSITIVE``, ``SHIFT``, ``MASKED``, ``EDGE`` ...). Values of failed sources
        are NaN.
    """

    x: np.ndarray
    y: np.ndarray
    ixx: np.ndarray
    iyy: np.ndarray
    ixy: np.ndarray
    ixx_err: np.ndarray
    iyy_err: np.ndarray
    ixy_err: np.ndarray
    x_err: np.ndarray
    y_err: np.ndarray
    flux: np.ndarray
    rho4: np.ndarray
    sigma: np.ndarray
    e1: np.ndarray
    e2: np.ndarray
    n_iter: np.ndarray
    flags: np.ndarray


def _boxes(shape: tuple[int, int], xs: np.ndarray, ys: np.ndarray, half: np.ndarray | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Inclusive per-source boxes clipped to the image, and whether each was clipped."""
    ny, nx = shape
    n = xs.size
    if half is None:
        return (np.zeros(n, np.int64), np.full(n, nx - 1, np.int64), np.zeros(n, np.int64),
                np.full(n, ny - 1, np.int64), np.zeros(n, bool))
    with np.errstate(invalid="ignore"):
        cx = np.where(np.isfinite(xs), np.floor(xs + 0.5), 0).astype(np.int64)
        cy = np.where(np.isfinite(ys), np.floor(ys + 0.5), 0).astype(np.int64)
    h = np.asarray(half, dtype=np.int64)
    x0, x1, y0, y1 = cx - h, cx + h, cy - h, cy + h
    clipped = (x0 < 0) | (y0 < 0) | (x1 > nx - 1) | (y1 > ny - 1)
    return (np.clip(x0, 0, nx - 1), np.clip(x1, 0, nx - 1), np.clip(y0, 0, ny - 1),
            np.clip(y1, 0, ny - 1), clipped)


def _check_options(max_nsig2: float, tol: float, max_iter: int, max_shift: float) -> None:
    if not (max_nsig2 > 0):
        raise InvalidInputError(f"`max_nsig2` must be > 0 (np.inf for no cut); got {max_nsig2!r}")
    if not (np.isfinite(tol) and tol > 0):
        raise InvalidInputError(f"`tol` must be finite and > 0; got {tol!r}")
    if isinstance(max_iter, (bool, np.bool_)) or int(max_iter) != max_iter or max_iter < 1:
        raise InvalidInputError(f"`max_iter` must be an integer >= 1; got {max_iter!r}")
    if not (max_shift > 0):
        raise InvalidInputError(f"`max_shift` must be > 0; got {max_shift!r}")


def _run(px: _Pixels, xs: np.ndarray, ys: np.ndarray, m0: np.ndarray, half: np.ndarray | None,
         max_nsig2: float, tol: float, max_iter: int, max_shift: float,
         max_moment: float) -> tuple[AdaptiveMoments, tuple[np.ndarray, ...]]:
    n = xs.size
    bx0, bx1, by0, by1, _ = _boxes(px.image.shape, xs, ys, half)
    out = np.empty((n, 10))
    cov = np.empty((n, 6, 6))
    nsig2 = float(max_nsig2) if math.isfinite(max_nsig2) else -1.0
    zeros = np.zeros(n)
    K._adaptive_moments(px.image, px.bad, px.var_mode, px.var, px.var_scalar, xs, ys, m0, m0.copy(),
                        zeros, bx0, bx1, by0, by1, nsig2, float(tol), int(max_iter), float(max_shift),
                        float(max_moment), out, cov)
    flags = np.nan_to_num(out[:, 8], nan=0.0).astype(np.int32)
    flags[out[:, 9] > 1e-3] |= K.F_MASKED
    failed = (flags & (K.F_NOT_CONVERGED | K.F_NONPOSITIVE | K.F_SHIFT | K.F_NONFINITE | K.F_NO_PIXELS)) != 0
    vals = out[:, :7].copy()
    vals[failed] = np.nan
    cov[failed] = np.nan
    x, y, mxx, mxy, myy, amp, rho4 = vals.T
    with np.errstate(invalid="ignore"):
        sigma = (mxx * myy - mxy * mxy) ** 0.25
        tr = mxx + myy
        errs = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        # the 3-sigma extent of the weight crosses the box (image) boundary
        hx = 3.0 * np.sqrt(mxx)
        hy = 3.0 * np.sqrt(myy)
        edge = (x - hx < bx0 - 0.5) | (x + hx > bx1 + 0.5) | (y - hy < by0 - 0.5) | (y + hy > by1 + 0.5)
    flags[edge & ~failed] |= K.F_EDGE
    res = AdaptiveMoments(
        x=x, y=y, ixx=mxx, iyy=myy, ixy=mxy,
        ixx_err=errs[:, 3], iyy_err=errs[:, 4], ixy_err=errs[:, 5],
        x_err=errs[:, 1], y_err=errs[:, 2],
        flux=2.0 * amp, rho4=rho4, sigma=sigma, e1=(mxx - myy) / tr, e2=2.0 * mxy / tr,
        n_iter=np.nan_to_num(out[:, 7], nan=0.0).astype(np.int32), flags=flags,
    )
    return res, (bx0, bx1, by0, by1)


def adaptive_moments(
    image: Any,
    x: Any,
    y: Any,
    *,
    variance: Any = None,
    error: Any = None,
    mask: Any = None,
    bad_planes: Any = None,
    guess_sigma: Any = 5.0,
    half_size: Any = None,
    max_nsig2: float = 50.0,
    tol: float = 1e-8,
    max_iter: int = 400,
    max_shift: float = 15.0,
    max_moment: float = 8000.0,
) -> AdaptiveMoments:
    r"""Adaptive second moments (Bernstein & Jarvis 2002; Hirata & Seljak 2003) of n sources.

    Finds, for each source, the elliptical Gaussian weight
    :math:`w(\mathbf p) = \exp(-\tfrac12 \rho^2)`, :math:`\rho^2 = \mathbf d^T M^{-1}
    \mathbf d`, :math:`\mathbf d = \mathbf p - \mathbf x_0`, that satisfies

    .. math::

        \sum_p w_p I_p \mathbf d_p = 0, \qquad
        \frac{\sum_p w_p I_p \mathbf d_p \mathbf d_p^T}{\sum_p w_p I_p} = \frac{M}{2},

    i.e. the best least-squares elliptical Gaussian; :math:`M` is its covariance (the
    convention of ``galsim.hsm.FindAdaptiveMom``, whose results these match to
    :math:`|\Delta\sigma|/\sigma \lesssim 10^{-7}` on real SDSS stamps).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image (or a postage stamp).
    x, y : float or array_like of shape (n,)
        Starting centroids, pixels (0-based). (GalSim's default guess is the stamp
        centre, ``((nx - 1) / 2, (ny - 1) / 2)`` here.)
    variance, error : float or array_like, optional
        Pixel variance (or 1-sigma error) for the moment errors.
    mask : array_like of bool or uint32, optional
        Excluded pixels (they carry no weight, as masked pixels in HSM); flagged
        ``MASKED`` when their weight exceeds 1e-3 of the peak weight within
        :math:`\rho < 3`.
    bad_planes : optional
        MaskPlane bits that exclude, for an integer ``mask``.
    guess_sigma : float or array_like of shape (n,), optional
        Initial round weight width in pixels (GalSim's default is 5).
    half_size : int or array_like of int, optional
        Restrict each source to the box of this half-size around its nearest pixel.
        Default: the whole image, with pixels beyond ``max_nsig2`` skipped.
    max_nsig2 : float, optional
        Pixels with :math:`\rho^2 >` ``max_nsig2`` are skipped (weight below
        :math:`e^{-25} \approx 10^{-11}` at the default); ``numpy.inf`` sums the whole box.
    tol : float, optional
        Convergence: centroid step (in units of the minor axis) and moment change
        (relative to the minor axis squared) both below ``tol``.
    max_iter : int, optional
        Maximum iterations.
    max_shift : float, optional
        Failure (``SHIFT``) when the centroid moves farther than this (pixels).
    max_moment : float, optional
        Failure (``SHIFT``) when an element of :math:`M` exceeds this (pixels²).

    Returns
    -------
    AdaptiveMoments

    Raises
    ------
    InvalidInputError
        Invalid arrays or options.

    Notes
    -----
    The iteration is HSM's (``find_ellipmom_2``): with the weighted sums :math:`A =
    \sum wI`, :math:`\mathbf B = \sum wI\mathbf d`, :math:`C = \sum wI\mathbf d\mathbf
    d^T`, the updates :math:`\Delta\mathbf x_0 = 2\mathbf B/A` and :math:`\Delta M =
    4(C/A - M/2)` are normalised by the minor axis :math:`b` of :math:`M`
    (:math:`\Delta\mathbf x_0 / b`, :math:`\Delta M / b^2`) and bounded by 0.25. The
    update of :math:`M` has zero derivative at the fixed point for a Gaussian profile,
    so convergence is fast near the solution.

    Errors: adaptive moments are the least-squares fit of :math:`m = a\,w` with
    parameters :math:`\theta = (a, x_0, y_0, M_{xx}, M_{yy}, M_{xy})`; with
    :math:`J = \partial m / \partial\theta` at the solution,
    :math:`\mathrm{Cov}(\theta) = H^{-1} (J^T V J) H^{-1}`, :math:`H = J^T J`.

    References
    ----------
    .. [1] Bernstein, G. M. & Jarvis, M. 2002, AJ 123, 583.
    .. [2] Hirata, C. & Seljak, U. 2003, MNRAS 343, 459.
    .. [3] Mandelbaum, R. et al. 2005, MNRAS 361, 1287.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.measure import adaptive_moments
    >>> star = GaussianPsf(2.0, e1=0.2).image(20.0, 20.0, shape=41)
    >>> m = adaptive_moments(star, 20.0, 20.0)
    >>> round(float(m.e1[0]), 3), round(float(m.sigma[0]), 2)   # the pixel adds 1/12
    (0.196, 2.02)
    """
    px = _as_pixels(image, variance=variance, error=error, mask=mask, bad_planes=bad_planes)
    xs, ys = _positions(x, y)
    n = xs.size
    g = _per_source(guess_sigma, n, "guess_sigma", positive=True)
    _check_options(max_nsig2, tol, max_iter, max_shift)
    half = None
    if half_size is not None:
        h = np.asarray(half_size)
        if h.ndim == 0:
            h = np.full(n, h)
        if h.shape != (n,) or np.any(h < 1) or np.any(h != np.round(h)):
            raise InvalidInputError(f"`half_size` must be a positive integer or {n} of them")
        half = h.astype(np.int64)
    res, _ = _run(px, xs, ys, g * g, half, max_nsig2, tol, max_iter, max_shift, max_moment)
    return res
