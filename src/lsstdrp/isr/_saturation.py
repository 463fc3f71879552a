"""Saturation and suspect masking with bleed-trail growth."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import InvalidInputError, MaskPlane, as_image, normalize_mask
from ._common import check_finite_scalar, check_int
from ._kernels import _bleed_columns, _dilate8

__all__ = ["mask_saturation"]


def mask_saturation(
    image: Any,
    *,
    saturation: float,
    suspect_level: float | None = None,
    bleed_threshold: float | None = None,
    grow: int = 1,
    mask: Any = None,
) -> np.ndarray:
    r"""Flag saturated (``SAT``) and suspect (``SUSPECT``) pixels, following bleed trails.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        One amplifier's pixels, in the units of ``saturation`` (ADU above the serial
        overscan for :class:`~lsstdrp.core.Amplifier` levels); not modified.
    saturation : float
        Pixels at or above this level are ``SAT``.
    suspect_level : float, optional
        Pixels at or above this level (and below ``saturation``) are ``SUSPECT``: their
        value is kept but not trusted (e.g. beyond the linearity turn-off).
    bleed_threshold : float, optional
        Bleed trails: from every saturated pixel, ``SAT`` is carried up and down its
        column over the contiguous pixels at or above this level (the partly filled
        ends of a trail, where charge spilled from the full wells). Default
        ``saturation / 2``; pass ``saturation`` (or more) to switch it off.
    grow : int
        Then every ``SAT`` region is dilated by ``grow`` pixels (8-connected): the
        neighbours of a full well have lost or gained charge.
    mask : array_like of bool or uint32, optional
        An input mask whose bits are kept (boolean True becomes ``BAD``).

    Returns
    -------
    numpy.ndarray of uint32
        ``mask`` plus ``SAT``, ``SUSPECT`` (and ``NO_DATA`` for non-finite pixels).

    Raises
    ------
    InvalidInputError
        Non-finite or non-positive ``saturation``, a ``bleed_threshold`` <= 0, a
        mismatched ``mask``.

    Notes
    -----
    A CCD pixel holds at most its full-well charge; excess charge spills along the
    column (the direction of weakest confinement: the parallel clocks) and forms a
    *bleed trail* whose pixels sit at the full-well level, tapering at its ends. The
    trail is found as the connected column run :math:`\{y : I_{yx} \ge t_b\}` touching
    a pixel with :math:`I \ge I_{sat}`. Charge that spilled into neighbouring columns
    or across the amplifier boundary is not recovered by any correction; the flags say
    where the data cannot be trusted.

    References
    ----------
    .. [1] Janesick, J. R. 2001, *Scientific Charge-Coupled Devices*, SPIE (blooming).
    .. [2] Bosch, J. et al. 2018, PASJ 70, S5 (HSC pipeline: saturation masking).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import MaskPlane
    >>> from lsstdrp.isr import mask_saturation
    >>> img = np.zeros((7, 3)); img[2:5, 1] = 1000.0; img[5, 1] = 700.0
    >>> m = mask_saturation(img, saturation=1000.0, grow=0)
    >>> ((m & MaskPlane.SAT) != 0)[:, 1].astype(int).tolist()
    [0, 0, 1, 1, 1, 1, 0]
    """
    img = as_image(image, "image")
    sat = check_finite_scalar(saturation, "saturation", minimum=0.0, strict=True)
    bt = sat / 2.0 if bleed_threshold is None else check_finite_scalar(bleed_threshold, "bleed_threshold", minimum=0.0, strict=True)
    g = check_int(grow, "grow")
    m = normalize_mask(mask, img.shape, image=img, warn=False)
    work = img.astype(np.float64, copy=False)
    finite = np.isfinite(work)
    s = (finite & (work >= sat)).view(np.uint8)
    if bt < sat and s.any():
        out = np.empty_like(s)
        _bleed_columns(np.where(finite, work, -np.inf), s, bt, out)
        s = out
    excl = np.zeros_like(s)
    for _ in range(g):
        if not s.any():
            break
        out = np.empty_like(s)
        _dilate8(s, excl, out)
        s = out
    satb = s.view(bool)
    m[satb] |= np.uint32(MaskPlane.SAT)
    if suspect_level is not None:
        sus = check_finite_scalar(suspect_level, "suspect_level", minimum=0.0, strict=True)
        if sus > sat:
            raise InvalidInputError(f"`suspect_level` ({sus}) is above `saturation` ({sat})")
        m[finite & (work >= sus) & ~satb] |= np.uint32(MaskPlane.SUSPECT)
    return m
