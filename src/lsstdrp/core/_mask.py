"""Mask planes: the uint32 bits that say *why* a pixel is excluded."""

from __future__ import annotations

import enum

__all__ = ["MaskPlane", "DEFAULT_BAD_PLANES"]


class MaskPlane(enum.IntFlag):
    """Bits of the uint32 mask plane carried by every image-producing step.

    A pixel may carry several bits. Functions with a ``mask`` argument accept either a
    boolean array (True = exclude, as in photutils and sep) or a uint32 array of these
    bits; in the latter case ``bad_planes=`` selects which bits exclude a pixel.

    Examples
    --------
    >>> from lsstdrp.core import MaskPlane
    >>> bits = MaskPlane.SAT | MaskPlane.CR
    >>> MaskPlane.SAT in bits, int(bits)
    (True, 10)
    """

    BAD = 1 << 0  #: defective pixel (hot, dead, bad column)
    SAT = 1 << 1  #: saturated
    INTRP = 1 << 2  #: value interpolated from neighbours
    CR = 1 << 3  #: cosmic ray
    EDGE = 1 << 4  #: too close to the image edge for a convolution/kernel
    DETECTED = 1 << 5  #: inside a positive detection footprint
    DETECTED_NEGATIVE = 1 << 6  #: inside a negative detection footprint
    SUSPECT = 1 << 7  #: value in a suspect (e.g. non-linear) regime
    NO_DATA = 1 << 8  #: no valid data (outside the input, non-finite, zero flat)
    CLIPPED = 1 << 9  #: an input was clipped when coadding
    SENSOR_EDGE = 1 << 10  #: near the physical edge of the sensor
    STREAK = 1 << 11  #: satellite or meteor trail
    BRIGHT_OBJECT = 1 << 12  #: in the halo of a very bright object
    INEXACT_PSF = 1 << 13  #: the PSF model is not exact here (coadd input boundaries)
    REJECTED = 1 << 14  #: rejected by an outlier / artifact test
    CROSSTALK = 1 << 15  #: crosstalk from a saturated source was not corrected
    UNMASKEDNAN = 1 << 16  #: was non-finite in the input without being masked
    VIGNETTED = 1 << 17  #: vignetted region


#: Bits that exclude a pixel from statistics and fits unless a function says otherwise.
DEFAULT_BAD_PLANES = (
    MaskPlane.BAD
    | MaskPlane.SAT
    | MaskPlane.CR
    | MaskPlane.NO_DATA
    | MaskPlane.EDGE
    | MaskPlane.SUSPECT
    | MaskPlane.STREAK
    | MaskPlane.UNMASKEDNAN
)
