"""Photometric calibration: instrumental e⁻ -> calibrated nJy, with spatial variation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.polynomial import chebyshev as _cheb

from .._errors import InvalidInputError

__all__ = ["PhotoCalib", "AB_MAG_OF_1_NJY", "njy_to_abmag", "abmag_to_njy"]

#: AB magnitude of a 1 nJy source: m_AB = -2.5 log10(f / 3631 Jy) = 31.4 for f = 1 nJy.
AB_MAG_OF_1_NJY = 31.4


def njy_to_abmag(flux_njy: Any) -> np.ndarray:
    """AB magnitude of a flux in nJy, :math:`m = 31.4 - 2.5\\log_{10} f_{\\rm nJy}`.

    Parameters
    ----------
    flux_njy : array_like
        Flux density in nJy; non-positive fluxes give NaN (no magnitude exists).

    Returns
    -------
    numpy.ndarray
        AB magnitudes.

    Examples
    --------
    >>> float(njy_to_abmag(1.0))
    31.4
    """
    f = np.asarray(flux_njy, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, AB_MAG_OF_1_NJY - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


def abmag_to_njy(mag: Any) -> np.ndarray:
    """Flux in nJy of an AB magnitude, :math:`f = 10^{-0.4 (m - 31.4)}`.

    Parameters
    ----------
    mag : array_like
        AB magnitudes.

    Returns
    -------
    numpy.ndarray
        Flux densities in nJy.

    Examples
    --------
    >>> float(abmag_to_njy(31.4))
    1.0
    """
    return 10.0 ** (-0.4 * (np.asarray(mag, dtype=np.float64) - AB_MAG_OF_1_NJY))


@dataclasses.dataclass(frozen=True, eq=False)
class PhotoCalib:
    r"""Map instrumental fluxes (e⁻) to calibrated flux densities (nJy).

    .. math::

        f_{\rm nJy}(x, y) = c_0\,[1 + s(x, y)]\; F_{e^-},\qquad
        c_0 = 10^{-0.4\,({\rm zp} - 31.4)},

    where ``zp`` is the AB magnitude of a source giving 1 e⁻ in the exposure and
    :math:`s(x,y)=\sum_{ij} a_{ij} T_i(\hat x) T_j(\hat y)` an optional smooth
    Chebyshev variation over ``bbox`` (:math:`\hat x,\hat y\in[-1,1]`). The error of
    the calibration (``zeropoint_err`` in mag) is propagated to calibrated fluxes in
    quadrature.

    Parameters
    ----------
    zeropoint : float
        AB magnitude of 1 e⁻ (instrumental flux) at the reference point.
    zeropoint_err : float, optional
        1-sigma error of ``zeropoint`` in magnitudes (>= 0).
    spatial_coefficients : array_like, shape (n+1, n+1), optional
        Chebyshev coefficients :math:`a_{ij}` (i in x, j in y) of the fractional
        variation; requires ``bbox``.
    bbox : tuple (x_min, x_max, y_min, y_max), optional
        Pixel domain mapped onto [-1, 1]² for the Chebyshev variation.

    Raises
    ------
    InvalidInputError
        Non-finite zeropoint, negative error, malformed coefficients or bbox.

    Examples
    --------
    >>> from lsstdrp.core import PhotoCalib
    >>> pc = PhotoCalib(zeropoint=31.4)
    >>> float(pc.instflux_to_njy(5.0))
    5.0
    >>> float(PhotoCalib(zeropoint=28.9).instflux_to_mag(1.0))
    28.9
    """

    zeropoint: float
    zeropoint_err: float = 0.0
    spatial_coefficients: Any = None
    bbox: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        try:
            zp = float(self.zeropoint)
            err = float(self.zeropoint_err)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"`zeropoint` and `zeropoint_err` must be numbers; got {self.zeropoint!r}, {self.zeropoint_err!r}"
            ) from None
        if not np.isfinite(zp):
            raise InvalidInputError(f"`zeropoint` must be finite; got {self.zeropoint!r}")
        if not (np.isfinite(err) and err >= 0):
            raise InvalidInputError(f"`zeropoint_err` must be finite and >= 0; got {self.zeropoint_err!r}")
        object.__setattr__(self, "zeropoint", zp)
        object.__setattr__(self, "zeropoint_err", err)
        if self.spatial_coefficients is not None:
            c = np.array(self.spatial_coefficients, dtype=np.float64)
            if c.ndim != 2 or c.shape[0] != c.shape[1] or not np.isfinite(c).all():
                raise InvalidInputError(
                    f"`spatial_coefficients` must be a finite square 2-D array; got shape {c.shape}"
                )
            if self.bbox is None:
                raise InvalidInputError("`bbox` is required with `spatial_coefficients`")
            c.flags.writeable = False
            object.__setattr__(self, "spatial_coefficients", c)
        if self.bbox is not None:
            b = tuple(float(v) for v in self.bbox)
            if len(b) != 4 or not (b[1] > b[0] and b[3] > b[2]) or not np.isfinite(b).all():
                raise InvalidInputError(f"`bbox` must be (x_min, x_max, y_min, y_max) with max > min; got {self.bbox!r}")
            object.__setattr__(self, "bbox", b)

    @property
    def calibration_mean(self) -> float:
        """nJy per e⁻ at the reference point (no spatial term)."""
        return float(10.0 ** (-0.4 * (self.zeropoint - AB_MAG_OF_1_NJY)))

    def calibration(self, x: Any = 0.0, y: Any = 0.0) -> np.ndarray:
        """nJy per e⁻ at pixel position(s) (x, y).

        Parameters
        ----------
        x, y : array_like
            0-based pixel coordinates (broadcast together).

        Returns
        -------
        numpy.ndarray
            The calibration factor(s).
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        scale = np.ones(np.broadcast(x, y).shape)
        if self.spatial_coefficients is not None:
            x0, x1, y0, y1 = self.bbox  # type: ignore[misc]
            xs = (2.0 * x - (x0 + x1)) / (x1 - x0)
            ys = (2.0 * y - (y0 + y1)) / (y1 - y0)
            scale = scale + _cheb.chebval2d(xs, ys, self.spatial_coefficients)
        return self.calibration_mean * scale

    def instflux_to_njy(self, instflux: Any, x: Any = 0.0, y: Any = 0.0, instflux_err: Any = None) -> Any:
        """Calibrate instrumental fluxes (e⁻) to nJy.

        Parameters
        ----------
        instflux : array_like
            Instrumental fluxes in e⁻.
        x, y : array_like
            Pixel positions of the sources.
        instflux_err : array_like, optional
            1-sigma errors in e⁻. If given, ``(flux, flux_err)`` is returned with the
            calibration error added in quadrature:
            :math:`\\sigma_f^2 = c^2\\sigma_F^2 + (0.4\\ln 10\\, \\sigma_{\\rm zp} f)^2`.

        Returns
        -------
        numpy.ndarray or tuple of numpy.ndarray
            Fluxes in nJy (and their errors).
        """
        c = self.calibration(x, y)
        flux = np.asarray(instflux, dtype=np.float64) * c
        if instflux_err is None:
            return flux
        err = np.asarray(instflux_err, dtype=np.float64) * c
        zp_term = 0.4 * np.log(10.0) * self.zeropoint_err * flux
        return flux, np.hypot(err, zp_term)

    def njy_to_instflux(self, flux_njy: Any, x: Any = 0.0, y: Any = 0.0) -> np.ndarray:
        """Inverse of :meth:`instflux_to_njy`: nJy -> e⁻ at (x, y).

        Parameters
        ----------
        flux_njy : array_like
            Fluxes in nJy.
        x, y : array_like
            Pixel positions.

        Returns
        -------
        numpy.ndarray
            Instrumental fluxes in e⁻.
        """
        return np.asarray(flux_njy, dtype=np.float64) / self.calibration(x, y)

    def instflux_to_mag(self, instflux: Any, x: Any = 0.0, y: Any = 0.0) -> np.ndarray:
        """AB magnitudes of instrumental fluxes (NaN for non-positive flux).

        Parameters
        ----------
        instflux : array_like
            e⁻.
        x, y : array_like
            Pixel positions.

        Returns
        -------
        numpy.ndarray
            AB magnitudes.
        """
        return njy_to_abmag(self.instflux_to_njy(instflux, x, y))

    def to_dict(self) -> dict:
        """Plain-data form (for FITS headers / JSON); inverse of :meth:`from_dict`."""
        return {
            "zeropoint": self.zeropoint,
            "zeropoint_err": self.zeropoint_err,
            "spatial_coefficients": None if self.spatial_coefficients is None else self.spatial_coefficients.tolist(),
            "bbox": None if self.bbox is None else list(self.bbox),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "PhotoCalib":
        """Build from :meth:`to_dict` output.

        Parameters
        ----------
        data : dict
            Keys ``zeropoint``, ``zeropoint_err``, ``spatial_coefficients``, ``bbox``.

        Returns
        -------
        PhotoCalib
        """
        return cls(
            zeropoint=data["zeropoint"],
            zeropoint_err=data.get("zeropoint_err", 0.0),
            spatial_coefficients=data.get("spatial_coefficients"),
            bbox=None if data.get("bbox") is None else tuple(data["bbox"]),
        )

    def __repr__(self) -> str:
        extra = ""
        if self.spatial_coefficients is not None:
            extra = f", spatial_coefficients={self.spatial_coefficients.tolist()!r}, bbox={self.bbox!r}"
        return f"PhotoCalib(zeropoint={self.zeropoint!r}, zeropoint_err={self.zeropoint_err!r}{extra})"
