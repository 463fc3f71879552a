"""Local background in an annulus around each source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from . import _kernels as K
from ._inputs import _as_pixels, _positions

__all__ = ["LocalBackground", "local_background"]


@dataclass(frozen=True, slots=True)
class LocalBackground:
    """Local background of n sources.

    Attributes
    ----------
    value : numpy.ndarray of float64, shape (n,)
        Sigma-clipped mean per pixel in the annulus (image units).
    err : numpy.ndarray of float64
        Its 1-sigma error, the clipped standard deviation over :math:`\\sqrt{N}`.
    npixels : numpy.ndarray of int32
        Pixels kept after clipping.
    flags : numpy.ndarray of int32
        :class:`~lsstdrp.measure.MeasurementFlag` bits (``EDGE``, ``MASKED``,
        ``NO_PIXELS`` when fewer than 3 pixels are usable).
    """

    value: np.ndarray
    err: np.ndarray
    npixels: np.ndarray
    flags: np.ndarray


def local_background(
    image: Any,
    x: Any,
    y: Any,
    *,
    mask: Any = None,
    bad_planes: Any = None,
    exclude: Any = None,
    inner: float = 7.0,
    outer: float = 15.0,
    nsigma: float = 3.0,
    niter: int = 3,
) -> LocalBackground:
    r"""Sigma-clipped mean of the pixels in an annulus around each source.

    The pixels whose centre lies at :math:`r_\mathrm{in} \le |\mathbf p - \mathbf x|
    < r_\mathrm{out}` (the Rubin ``LocalBackground`` defaults, 7 and 15 pixels), minus
    excluded pixels (``mask``) and pixels of other sources (``exclude``, e.g. the
    detection footprints), are clipped ``niter`` times at ``nsigma`` standard
    deviations around their median; the result is the mean of the rest with error
    :math:`s / \sqrt{N}`.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The image (background-subtracted or not: the result is in the same units).
    x, y : float or array_like of shape (n,)
        Centres, pixels.
    mask, bad_planes
        Excluded pixels (flag ``MASKED``).
    exclude : array_like of bool or int, shape (ny, nx), optional
        Pixels to leave out silently (non-zero = leave out), e.g. ``footprints > 0``.
    inner, outer : float, optional
        Annulus radii in pixels, ``0 <= inner < outer``.
    nsigma : float, optional
        Clipping threshold.
    niter : int, optional
        Clipping rounds (0: plain mean).

    Returns
    -------
    LocalBackground

    Raises
    ------
    InvalidInputError
        Invalid arrays or radii.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.measure import local_background
    >>> img = np.random.default_rng(1).normal(10.0, 1.0, (80, 80))
    >>> img[40, 40] = 1e4   # the source itself is inside the inner radius
    >>> bg = local_background(img, 40.0, 40.0)
    >>> bool(abs(bg.value[0] - 10.0) < 3 * bg.err[0])
    True
    """
    px = _as_pixels(image, mask=mask, bad_planes=bad_planes)
    xs, ys = _positions(x, y)
    if not (np.isfinite(inner) and np.isfinite(outer) and 0 <= inner < outer):
        raise InvalidInputError(f"annulus must satisfy 0 <= inner < outer; got inner={inner!r}, outer={outer!r}")
    if not (np.isfinite(nsigma) and nsigma > 0):
        raise InvalidInputError(f"`nsigma` must be finite and > 0; got {nsigma!r}")
    if isinstance(niter, (bool, np.bool_)) or int(niter) != niter or niter < 0:
        raise InvalidInputError(f"`niter` must be a non-negative integer; got {niter!r}")
    if exclude is None:
        excl = np.zeros((0, 0), dtype=np.uint8)
    else:
        ex = np.asarray(exclude)
        if ex.shape != px.image.shape:
            raise InvalidInputError(f"`exclude` has shape {ex.shape}; it must match `image` {px.image.shape}")
        excl = np.ascontiguousarray(ex != 0).view(np.uint8)
    n = xs.size
    value = np.empty(n)
    err = np.empty(n)
    npix = np.empty(n, dtype=np.int32)
    flags = np.empty(n, dtype=np.int32)
    K._annulus_background(px.image, px.bad, excl, xs, ys, float(inner), float(outer), float(nsigma),
                          int(niter), value, err, npix, flags)
    return LocalBackground(value, err, npix, flags)


