"""Interpolation over masked pixels (defects, saturated columns, cosmic rays)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core import MaskPlane
from ._common import check_int, float_image, mask_and_bad
from ._kernels import _interpolate_masked

__all__ = ["InterpolationResult", "interpolate_bad_pixels"]

#: Pixels interpolated over by default: defects, saturated pixels and cosmic rays.
INTERPOLATE_PLANES = MaskPlane.BAD | MaskPlane.SAT | MaskPlane.CR


@dataclasses.dataclass(frozen=True, eq=False)
class InterpolationResult:
    """Result of :func:`interpolate_bad_pixels`.

    Attributes
    ----------
    image : numpy.ndarray
        The image with the selected pixels replaced (input dtype).
    mask : numpy.ndarray of uint32
        The input mask plus ``INTRP`` on every replaced pixel and ``NO_DATA`` where no
        good pixel was found within ``max_gap``.
    n_interpolated : int
        Number of replaced pixels.
    n_failed : int
        Number of selected pixels left unchanged (flagged ``NO_DATA``).
    """

    image: np.ndarray
    mask: np.ndarray
    n_interpolated: int
    n_failed: int


def _interpolate(image64: np.ndarray, bad: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty_like(image64)
    status = np.zeros(image64.shape, dtype=np.uint8)
    _interpolate_masked(image64, bad.view(np.uint8) if bad.dtype == np.bool_ else bad, max_gap, out, status)
    return out, status


def interpolate_bad_pixels(
    image: Any,
    mask: Any,
    *,
    bad_planes: Any = None,
    max_gap: int = 64,
) -> InterpolationResult:
    r"""Replace masked pixels by linear interpolation along the row or the column.

    Each selected pixel takes the linear interpolation between the nearest unselected
    pixels on either side of it along its row, or along its column, whichever pair is
    closer (the two estimates are averaged when the spans are equal). A bad *column*
    is therefore bridged along the rows and a bad *row* (or a horizontal bleed) along
    the columns. At an image edge, where only one side has a good pixel, its value is
    copied. Every replaced pixel is flagged ``INTRP`` (its original bits are kept, so
    it stays excluded by bit-aware consumers).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Image (any real dtype; not modified).
    mask : array_like of bool or uint32, shape (ny, nx)
        Pixels to replace: a boolean array (True = replace, recorded as ``BAD``) or
        :class:`~lsstdrp.core.MaskPlane` bits selected by ``bad_planes``.
    bad_planes : int, MaskPlane or sequence of str, optional
        Bits that select pixels to replace; default ``BAD | SAT | CR``. Non-finite
        image pixels are always replaced (and flagged ``NO_DATA``).
    max_gap : int
        Largest distance (pixels) searched for a good neighbour in each direction.

    Returns
    -------
    InterpolationResult
        ``image`` (input dtype), ``mask`` (uint32, with ``INTRP``), counts.

    Raises
    ------
    InvalidInputError
        Mismatched shapes, a non-2-D image, ``max_gap`` < 1.

    Notes
    -----
    For a pixel at column :math:`x` between good pixels :math:`x_l < x < x_r` of the
    same row,

    .. math::

        \hat I(x) = I(x_l) + \frac{x - x_l}{x_r - x_l}\,\big(I(x_r) - I(x_l)\big),

    and likewise along the column. This is the linear interpolation used for defects
    by the Rubin pipelines' ``interpolateOverDefects`` in its simplest (no
    Gaussian-process) form; it preserves a smooth background and the local gradient
    but not small-scale structure (a star core falling on a bad column is
    under-estimated), which is why the pixels stay flagged.

    References
    ----------
    .. [1] Bosch, J. et al. 2018, PASJ 70, S5 (HSC pipeline: defect interpolation).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.isr import interpolate_bad_pixels
    >>> img = np.tile(np.arange(5.0, dtype=np.float32), (3, 1))
    >>> bad = np.zeros((3, 5), bool); bad[:, 2] = True          # a bad column
    >>> res = interpolate_bad_pixels(img, bad)
    >>> res.image[:, 2].tolist(), res.n_interpolated
    ([2.0, 2.0, 2.0], 3)
    """
    img = float_image(image, "image")
    gap = check_int(max_gap, "max_gap", minimum=1)
    default = INTERPOLATE_PLANES | MaskPlane.NO_DATA | MaskPlane.UNMASKEDNAN
    m, sel = mask_and_bad(mask, img.shape, bad_planes, image=img, default=default, warn=False)
    sel |= ~np.isfinite(img)
    work = img.astype(np.float64)
    out, status = _interpolate(work, sel, gap)
    m[status == 1] |= np.uint32(MaskPlane.INTRP)
    failed = status == 2
    m[failed] |= np.uint32(MaskPlane.NO_DATA)
    res = out.astype(img.dtype, copy=False)
    return InterpolationResult(
        image=res,
        mask=m,
        n_interpolated=int(np.count_nonzero(status == 1)),
        n_failed=int(np.count_nonzero(failed)),
    )
