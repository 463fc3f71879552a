"""Bias, dark and flat corrections, variance and defect masks on assembled images."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core import BBox, InvalidInputError, MaskPlane, as_image, check_same_shape, normalize_mask
from ._common import check_finite_scalar

__all__ = [
    "CalibrationResult",
    "FlatResult",
    "subtract_bias",
    "subtract_dark",
    "apply_flat",
    "make_variance",
    "mask_defects",
]


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationResult:
    """Result of :func:`subtract_bias` and :func:`subtract_dark`.

    Attributes
    ----------
    image : numpy.ndarray
        The corrected image (input float dtype); NaN where the calibration frame is not
        finite.
    mask : numpy.ndarray of uint32
        The input mask plus ``NO_DATA`` where the calibration frame is not finite.
    n_no_data : int
        Pixels newly flagged ``NO_DATA``.
    """

    image: np.ndarray
    mask: np.ndarray
    n_no_data: int


@dataclasses.dataclass(frozen=True, eq=False)
class FlatResult:
    """Result of :func:`apply_flat`.

    Attributes
    ----------
    image : numpy.ndarray
        ``image / flat`` (input float dtype); NaN where the flat is unusable.
    variance : numpy.ndarray or None
        ``variance / flat**2`` when a variance was given.
    mask : numpy.ndarray of uint32
        The input mask plus ``NO_DATA`` where the flat is not finite or below
        ``min_flat``.
    n_no_data : int
        Pixels newly flagged ``NO_DATA``.
    """

    image: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray
    n_no_data: int


def _calib_frame(frame: Any, name: str, image: np.ndarray) -> np.ndarray:
    arr = as_image(frame, name)
    check_same_shape(image, "image", **{name: arr})
    return arr


def _flag_nonfinite(m: np.ndarray, bad: np.ndarray) -> int:
    newly = bad & ((m & np.uint32(MaskPlane.NO_DATA)) == 0)
    m[bad] |= np.uint32(MaskPlane.NO_DATA)
    return int(np.count_nonzero(newly))


def subtract_bias(image: Any, bias: Any, *, mask: Any = None) -> CalibrationResult:
    r"""Subtract a (residual) bias frame.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Assembled, overscan-subtracted image in e⁻; not modified.
    bias : array_like, shape (ny, nx)
        The bias structure left after overscan subtraction (e⁻), e.g.
        :attr:`lsstdrp.core.Calibs.bias`. Non-finite pixels mark pixels without a
        calibration.
    mask : array_like of bool or uint32, optional
        Kept and returned.

    Returns
    -------
    CalibrationResult
        ``image`` = image - bias (NaN and ``NO_DATA`` where the bias is not finite).

    Raises
    ------
    InvalidInputError
        If the shapes differ.

    Notes
    -----
    :math:`I' = I - B`. The bias frame adds its own noise (its read noise divided by
    the square root of the number of frames combined); with a master of many frames
    that is negligible and not added to the variance.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.isr import subtract_bias
    >>> subtract_bias(np.full((2, 2), 10.0), np.ones((2, 2))).image.tolist()
    [[9.0, 9.0], [9.0, 9.0]]
    """
    img = as_image(image, "image")
    b = _calib_frame(bias, "bias", img)
    m = normalize_mask(mask, img.shape, image=img, warn=False)
    bad = ~np.isfinite(b)
    out = (img - b.astype(img.dtype, copy=False)).astype(img.dtype, copy=False)
    n = _flag_nonfinite(m, bad)
    if n or bad.any():
        out[bad] = np.nan
    return CalibrationResult(image=out, mask=m, n_no_data=n)


def subtract_dark(image: Any, dark: Any, *, dark_time: float, mask: Any = None) -> CalibrationResult:
    r"""Subtract dark current scaled by the dark time.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Assembled image in e⁻; not modified.
    dark : array_like, shape (ny, nx)
        Dark current in e⁻/s (e.g. :attr:`lsstdrp.core.Calibs.dark`); non-finite
        pixels mark pixels without a calibration.
    dark_time : float
        Seconds over which dark current accumulated (:attr:`RawFrame.dark_time`:
        exposure plus read-out, not the open-shutter time), >= 0.
    mask : array_like of bool or uint32, optional
        Kept and returned.

    Returns
    -------
    CalibrationResult
        ``image`` = image - dark * dark_time.

    Raises
    ------
    InvalidInputError
        If the shapes differ or ``dark_time`` is negative or not finite.

    Notes
    -----
    :math:`I' = I - D\,t_{dark}`. The Poisson noise of the dark charge stays in the
    image and belongs in the variance (:func:`make_variance` with the signal before
    this subtraction).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.isr import subtract_dark
    >>> subtract_dark(np.full((1, 2), 10.0), np.full((1, 2), 0.5), dark_time=4.0).image.tolist()
    [[8.0, 8.0]]
    """
    img = as_image(image, "image")
    d = _calib_frame(dark, "dark", img)
    t = check_finite_scalar(dark_time, "dark_time", minimum=0.0)
    m = normalize_mask(mask, img.shape, image=img, warn=False)
    bad = ~np.isfinite(d)
    out = (img - (d.astype(np.float64) * t).astype(img.dtype)).astype(img.dtype, copy=False)
    n = _flag_nonfinite(m, bad)
    if bad.any():
        out[bad] = np.nan
    return CalibrationResult(image=out, mask=m, n_no_data=n)


def apply_flat(
    image: Any,
    flat: Any,
    *,
    variance: Any = None,
    mask: Any = None,
    min_flat: float = 1e-3,
) -> FlatResult:
    r"""Divide by the flat field (and the variance by its square).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Assembled, bias- and dark-subtracted image in e⁻; not modified.
    flat : array_like, shape (ny, nx)
        Relative response, mean ~1 (e.g. :attr:`lsstdrp.core.Calibs.flat`).
    variance : array_like, shape (ny, nx), optional
        The image's variance (e⁻²), divided by ``flat**2``.
    mask : array_like of bool or uint32, optional
        Kept and returned.
    min_flat : float
        Pixels whose flat is below this (or not finite) have no usable response: they
        become NaN and ``NO_DATA`` instead of being amplified without bound.

    Returns
    -------
    FlatResult
        ``image``, ``variance`` (or None), ``mask``, ``n_no_data``.

    Raises
    ------
    InvalidInputError
        Mismatched shapes, ``min_flat`` <= 0.

    Notes
    -----
    :math:`I' = I / F`, :math:`V' = V / F^2`: the image becomes the number of
    electrons the pixel would have collected with the mean response (a flat that
    includes pixel-area variations also removes them from the *surface brightness*,
    which is what makes the sky flat but biases point-source fluxes by the pixel
    area; see the docs).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import MaskPlane
    >>> from lsstdrp.isr import apply_flat
    >>> r = apply_flat(np.array([[10.0, 10.0]]), np.array([[2.0, 0.0]]))
    >>> r.image[0, 0], bool(r.mask[0, 1] & MaskPlane.NO_DATA)
    (np.float64(5.0), True)
    """
    img = as_image(image, "image")
    f = _calib_frame(flat, "flat", img)
    mf = check_finite_scalar(min_flat, "min_flat", minimum=0.0, strict=True)
    var = None
    if variance is not None:
        var = as_image(variance, "variance")
        check_same_shape(img, "image", variance=var)
    m = normalize_mask(mask, img.shape, image=img, warn=False)
    f64 = f.astype(np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(f64) | (f64 < mf)
    safe = np.where(bad, 1.0, f64)
    out = (img / safe).astype(img.dtype, copy=False)
    out[bad] = np.nan
    vout = None
    if var is not None:
        vout = (var / (safe * safe)).astype(var.dtype, copy=False)
        vout[bad] = np.nan
    n = _flag_nonfinite(m, bad)
    return FlatResult(image=out, variance=vout, mask=m, n_no_data=n)


def make_variance(image: Any, *, read_noise: Any, gain: float = 1.0) -> np.ndarray:
    r"""Per-pixel variance from the signal (Poisson) and the read noise.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The signal *before* flat fielding, with the dark charge still in it (or added
        back): in e⁻ (``gain=1``) or in ADU (pass the gain). Not modified.
    read_noise : float or array_like broadcastable to ``image``
        Read noise in e⁻ (a scalar, or a per-pixel map, e.g. one value per amplifier).
    gain : float
        e⁻/ADU of ``image``.

    Returns
    -------
    numpy.ndarray
        Variance in the units of ``image`` squared (input float dtype); non-finite
        where ``image`` is not finite.

    Raises
    ------
    InvalidInputError
        Non-positive ``gain``, negative or non-finite ``read_noise``, a map that does
        not broadcast.

    Notes
    -----
    In electrons, :math:`V = \max(I, 0) + \sigma_{RN}^2`; in ADU,
    :math:`V = \max(I, 0)/g + (\sigma_{RN}/g)^2`. Using the measured pixel value for
    the Poisson term makes the variance itself noisy (and correlated with the pixel);
    its *mean* over a region is the expected variance.

    References
    ----------
    .. [1] Janesick, J. R. 2001, *Scientific Charge-Coupled Devices*, SPIE (photon
       transfer).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.isr import make_variance
    >>> make_variance(np.array([[100.0, -5.0]]), read_noise=5.0).tolist()
    [[125.0, 25.0]]
    """
    img = as_image(image, "image")
    g = check_finite_scalar(gain, "gain", minimum=0.0, strict=True)
    rn = np.asarray(read_noise, dtype=np.float64)
    if not np.isfinite(rn).all() or (rn < 0).any():
        raise InvalidInputError("`read_noise` must be finite and >= 0 (e⁻)")
    try:
        np.broadcast_shapes(rn.shape, img.shape)
    except ValueError:
        raise InvalidInputError(f"`read_noise` has shape {rn.shape}; it must broadcast to `image` {img.shape}") from None
    with np.errstate(invalid="ignore"):
        v = np.maximum(img.astype(np.float64), 0.0) / g + (rn / g) ** 2
    v = np.where(np.isfinite(img), v, np.nan)
    return v.astype(img.dtype, copy=False)


def mask_defects(defects: Any, shape: tuple[int, int], *, mask: Any = None) -> np.ndarray:
    """Flag defects (bad pixels, columns, regions) ``BAD`` in a mask.

    Parameters
    ----------
    defects : sequence of BBox or (y0, y1, x0, x1), or bool array of ``shape``
        The defects in image coordinates (e.g. :attr:`lsstdrp.core.Calibs.defects`).
    shape : tuple of int
        (ny, nx) of the image.
    mask : array_like of bool or uint32, optional
        Kept and returned.

    Returns
    -------
    numpy.ndarray of uint32
        ``mask`` plus ``BAD`` on every defect pixel.

    Raises
    ------
    InvalidInputError
        A box outside the image, or a boolean mask of the wrong shape.

    Examples
    --------
    >>> from lsstdrp.core import BBox
    >>> from lsstdrp.isr import mask_defects
    >>> mask_defects([BBox(0, 2, 1, 2)], (2, 3)).tolist()
    [[0, 1, 0], [0, 1, 0]]
    """
    shp = tuple(int(v) for v in shape)
    m = normalize_mask(mask, shp, warn=False)
    if defects is None:
        return m
    if isinstance(defects, np.ndarray) and defects.ndim == 2:
        if defects.shape != shp:
            raise InvalidInputError(f"`defects` mask has shape {defects.shape}; it must match the image {shp}")
        m[defects.astype(bool)] |= np.uint32(MaskPlane.BAD)
        return m
    for i, d in enumerate(defects):
        b = d if isinstance(d, BBox) else BBox(*d)
        if not b.fits_in(shp):
            raise InvalidInputError(f"`defects[{i}]` {b} is outside the image {shp}")
        m[b.slices] |= np.uint32(MaskPlane.BAD)
    return m
