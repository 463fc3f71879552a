"""Per-source measurement flag bits shared by the functions of :mod:`lsstdrp.measure`."""

from __future__ import annotations

import enum

__all__ = ["MeasurementFlag"]


class MeasurementFlag(enum.IntFlag):
    """Why a per-source measurement is unreliable or failed (bits of a ``flags`` array).

    Every array-level function of :mod:`lsstdrp.measure` returns an integer ``flags``
    array of these bits alongside its values, one per source (and per radius where
    there are several); :func:`~lsstdrp.measure.measure_sources` condenses them into
    the boolean ``<algo>_flag`` catalog columns. A source with a non-zero value is
    never dropped: its numbers are kept (or NaN when nothing could be computed).

    Examples
    --------
    >>> from lsstdrp.measure import MeasurementFlag
    >>> f = MeasurementFlag.EDGE | MeasurementFlag.MASKED
    >>> MeasurementFlag.EDGE in f, int(f)
    (True, 3)
    """

    EDGE = 1  #: the aperture / stamp extends beyond the image
    MASKED = 2  #: an excluded (masked or non-finite) pixel would have contributed
    NO_PIXELS = 4  #: no usable pixel: nothing could be measured (values are NaN)
    NONPOSITIVE = 8  #: a flux or weighted sum needed to be positive and was not
    NOT_CONVERGED = 16  #: an iteration did not converge (or a fit was singular)
    NOT_A_PEAK = 32  #: no local maximum / the curvature is not that of a peak
    SHIFT = 64  #: the centroid moved too far from the input position
    NONFINITE = 128  #: the input position or shape was not finite
    SMALL = 256  #: unresolved: the object is not larger than the PSF (resolution <= 0)
