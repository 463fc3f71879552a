"""The :class:`Exposure` carrier: image, variance, mask and the metadata stages need."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ._validate import as_image, check_same_shape, normalize_mask

__all__ = ["Exposure"]


@dataclasses.dataclass(frozen=True, eq=False)
class Exposure:
    """A frozen bundle of image, variance, mask and metadata.

    ``Exposure`` is a *carrier*, not a god object: stage functions take the arrays they
    need, and ``dataclasses.replace(exp, psf=new_psf)`` makes the next exposure. The
    constructor validates and normalises at the boundary: ``image`` and ``variance``
    follow the dtype policy (float32 stays float32), ``mask`` becomes uint32
    :class:`~lsstdrp.core.MaskPlane` bits, and non-finite image/variance pixels (or
    negative variance) are flagged ``NO_DATA``. Inputs are never modified: a new mask
    array is always made, and image/variance are copied only when a conversion is
    needed. The arrays are then marked read-only so a downstream stage cannot mutate a
    shared exposure by accident.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
        Pixel values in e⁻ (calibrated level, background included unless stated).
    variance : numpy.ndarray, shape (ny, nx)
        Per-pixel variance in e⁻².
    mask : numpy.ndarray of bool or uint32, shape (ny, nx), optional
        Boolean (True = exclude, becomes ``BAD``) or MaskPlane bits.
    psf : Psf, optional
        Any object satisfying the :class:`~lsstdrp.core.Psf` protocol.
    wcs : APE-14 WCS, optional
        Pixel -> sky mapping (0-based pixel centres).
    photo_calib : PhotoCalib, optional
        e⁻ -> nJy calibration.
    band, visit, detector, mjd, exptime, airmass : optional
        Metadata (MJD is TAI; exptime in seconds).
    metadata : dict, optional
        Anything else (copied into a new dict).

    Raises
    ------
    InvalidInputError
        If the planes' shapes disagree or are not 2-D, or ``exptime`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import Exposure, MaskPlane
    >>> img = np.zeros((4, 5), dtype=np.float32); img[0, 0] = np.nan
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     exp = Exposure(img, np.ones((4, 5), np.float32))
    >>> bool(exp.mask[0, 0] & MaskPlane.NO_DATA)
    True
    """

    image: np.ndarray
    variance: np.ndarray
    mask: Any = None
    psf: Any = None
    wcs: Any = None
    photo_calib: Any = None
    band: str | None = None
    visit: int | None = None
    detector: int | None = None
    mjd: float | None = None
    exptime: float | None = None
    airmass: float | None = None
    metadata: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        image = as_image(self.image, "image")
        variance = as_image(self.variance, "variance")
        check_same_shape(image, "image", variance=variance, mask=self.mask)
        mask = normalize_mask(self.mask, image.shape, image=image, variance=variance)
        if image is self.image or np.shares_memory(image, np.asarray(self.image)):
            image = image.view()
        if variance is self.variance or np.shares_memory(variance, np.asarray(self.variance)):
            variance = variance.view()
        for arr in (image, variance, mask):
            arr.flags.writeable = False
        if self.exptime is not None and not (np.isfinite(self.exptime) and self.exptime >= 0):
            raise InvalidInputError(f"`exptime` must be finite and >= 0; got {self.exptime!r}")
        if self.mjd is not None and not np.isfinite(self.mjd):
            raise InvalidInputError(f"`mjd` must be finite; got {self.mjd!r}")
        if self.band is not None and not isinstance(self.band, str):
            raise InvalidInputError(f"`band` must be a string such as 'r'; got {self.band!r}")
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "variance", variance)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the pixel planes."""
        return self.image.shape  # type: ignore[return-value]

    def replace(self, **changes: Any) -> "Exposure":
        """Return a new exposure with ``changes`` applied (``dataclasses.replace``).

        Parameters
        ----------
        **changes
            Field values to change.

        Returns
        -------
        Exposure
        """
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        ny, nx = self.shape
        return (
            f"Exposure(shape=({ny}, {nx}), dtype={self.image.dtype}, band={self.band!r}, "
            f"visit={self.visit!r}, detector={self.detector!r}, mjd={self.mjd!r}, "
            f"psf={'set' if self.psf is not None else None}, wcs={'set' if self.wcs is not None else None}, "
            f"photo_calib={'set' if self.photo_calib is not None else None})"
        )
