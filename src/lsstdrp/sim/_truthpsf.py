"""The simulator's truth PSF of one visit: chromatic, spatially varying, rendered by GalSim.

:class:`TruthPsf` is a frozen description of the PSF on the sky for one visit, and
:func:`make_truth_psf` draws one with random field variations. The PSF is deliberately
*not* built from :mod:`lsstdrp.core`'s PSF classes: GalSim renders it, so a bug in the
algorithms under test cannot cancel out (DESIGN.md section 6).

Notes
-----
At focal-plane position (u, v) (deg from the boresight) and wavelength lambda (nm)::

    atmosphere = Kolmogorov(fwhm = FWHM_atm(lambda, X) * sqrt(1 + dT/T(u, v)))
                 .shear(Shear(e1=e1(u, v), e2=e2(u, v)))           # distortion e
    optics     = Gaussian(fwhm = sqrt(optics_fwhm**2 + (1.028 lambda / D)**2)) # if > 0
    psf        = Convolve(atmosphere, optics)                      # arcsec units

with ``FWHM_atm`` from :func:`lsstdrp.sim._chromatic.atmospheric_fwhm_arcsec`
(Kolmogorov: proportional to lambda**(-1/5) X**(3/5)), and dT/T, e1, e2 second-order
polynomials in (u, v). A star of SED S is rendered with the monochromatic PSF at its
own photon-weighted effective wavelength (the *effective-wavelength approximation*);
this is what makes the truth PSF chromatic (bluer stars have broader PSFs). The optical
blur is dominated by achromatic aberrations and figure errors; only its small
diffraction part (1.028 lambda / D, D = 6.423 m, 0.017 arcsec at 500 nm) scales with
wavelength.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import galsim
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._errors import InvalidInputError
from ._chromatic import BANDS, atmospheric_fwhm_arcsec, effective_wavelength

__all__ = ["TruthPsf", "make_truth_psf", "GSPARAMS", "N_FIELD_TERMS"]

N_FIELD_TERMS = 6
"""Number of coefficients of a field polynomial: 1, u, v, u^2, u v, v^2."""

#: Effective clear aperture diameter (m) of an LSST-like telescope, for diffraction.
LSST_APERTURE_M = 6.423
_RAD_TO_ARCSEC = 180.0 * 3600.0 / math.pi

GSPARAMS = galsim.GSParams(
    minimum_fft_size=64,
    maximum_fft_size=4096,
    folding_threshold=5e-3,
    maxk_threshold=1e-3,
)
"""GalSim accuracy/speed parameters of every truth-PSF profile.

GalSim's default accuracy (folding 5e-3, maxk 1e-3), but a minimum FFT size of 64
instead of 128: small postage stamps (25x25 at 0.2 arcsec) draw about twice as fast,
and the rendered stamp still agrees with a high-accuracy rendering (folding 1e-4,
maxk 1e-5) to < 1e-5 of the peak and < 2e-4 in flux. ``maximum_fft_size`` 4096
fails fast on absurd requests instead of allocating gigabytes.
"""


def _field_basis(u: NDArray[np.float64], v: NDArray[np.float64]) -> NDArray[np.float64]:
    """Polynomial terms (1, u, v, u^2, u v, v^2), shape (..., 6)."""
    return np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)


def _as_coefficients(value: Any, name: str) -> tuple[float, ...]:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"`{name}` must be {N_FIELD_TERMS} real numbers") from exc
    if arr.shape != (N_FIELD_TERMS,) or not np.all(np.isfinite(arr)):
        raise InvalidInputError(
            f"`{name}` must be {N_FIELD_TERMS} finite coefficients of (1, u, v, u^2, u v, "
            f"v^2); got {value!r}"
        )
    return tuple(float(x) for x in arr)


def _positive(value: Any, name: str, *, minimum: float = 0.0, inclusive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"`{name}` must be a real number; got {value!r}") from exc
    ok = v >= minimum if inclusive else v > minimum
    if not (math.isfinite(v) and ok):
        rel = ">=" if inclusive else ">"
        raise InvalidInputError(f"`{name}` must be finite and {rel} {minimum:g}; got {value!r}")
    return v


@dataclass(frozen=True, slots=True)
class TruthPsf:
    """The true PSF on the sky of one visit: chromatic, spatially varying (GalSim).

    Parameters
    ----------
    band : str
        The band, one of :data:`~lsstdrp.sim._chromatic.BANDS`.
    airmass : float
        Airmass of the visit, >= 1.
    fwhm_500 : float
        Atmospheric seeing FWHM (arcsec) at 500 nm and zenith, > 0.
    optics_fwhm : float, optional
        FWHM (arcsec) of the achromatic part of the Gaussian optics component (aberrations,
        figure errors); diffraction is added in quadrature. 0 switches the optics
        component off.
    size_gradient : tuple of 6 float, optional
        Coefficients of dT/T(u, v), the fractional change of the second-moment size
        T = Ixx + Iyy of the atmospheric component, in the terms (1, u, v, u^2, u v,
        v^2) with u, v in degrees from the boresight.
    e1_field, e2_field : tuple of 6 float, optional
        Coefficients of the distortion e1(u, v), e2(u, v) of the atmospheric component
        (same terms).

    Notes
    -----
    The profile at (u, v) and wavelength :math:`\\lambda` is

    .. math::

        {\\rm PSF} = {\\rm Kolmogorov}\\left({\\rm FWHM}_{500}
        \\left(\\tfrac{\\lambda}{500\\,{\\rm nm}}\\right)^{-1/5} X^{3/5}
        \\sqrt{1 + \\tfrac{dT}{T}(u, v)}\\right)
        \\circ {\\rm Shear}(e_1, e_2) \\;\\ast\\;
        {\\rm Gaussian}\\left(\\sqrt{{\\rm FWHM}_{\\rm opt}^2 + (1.028\\,\\lambda/D)^2}\\right).

    *Size*: the FWHM is scaled by :math:`\\sqrt{1 + dT/T}`, so the adaptive second-moment
    size of the atmospheric component changes by exactly the factor
    :math:`1 + dT/T` (Kolmogorov's unweighted moments diverge; any weighted moment
    scales as FWHM^2). *Shape*: ``galsim.Shear(e1=..., e2=...)``, i.e. the
    **distortion** :math:`e = (a^2 - b^2)/(a^2 + b^2)`, not the reduced shear
    :math:`g = (a - b)/(a + b)`; the shear conserves area. Size and shape act on the
    atmospheric component only; the optics component is round and position-independent.

    *Chromaticity (effective-wavelength approximation)*: a source of photon SED S is
    drawn with the monochromatic PSF at its :math:`\\lambda_{\\rm eff}`
    (:func:`~lsstdrp.sim._chromatic.effective_wavelength`, which includes the local
    bandpass shift). The exact polychromatic PSF is the photon-weighted mixture
    :math:`\\int {\\rm PSF}_\\lambda S T\\,d\\lambda / \\int S T\\,d\\lambda`; for the
    atmospheric size :math:`\\propto\\lambda^{-2/5}` the approximation errs in T by
    about :math:`0.28\\,{\\rm Var}(\\lambda)/\\lambda_{\\rm eff}^2` (~0.2% in g, nearly
    SED-independent). The within-band DCR smear along the zenith direction is *not*
    included (DCR moves the centroid only, see
    :func:`~lsstdrp.sim._chromatic.dcr_offset_arcsec`); its size is given by
    :func:`~lsstdrp.sim._chromatic.dcr_variance_arcsec2`.

    Examples
    --------
    >>> psf = TruthPsf(band="r", airmass=1.2, fwhm_500=0.7, optics_fwhm=0.0)
    >>> prof = psf.sky_profile(0.0, 0.0, 500.0)   # a galsim.Kolmogorov
    >>> round(prof.fwhm / (0.7 * 1.2**0.6), 12)
    1.0
    """

    band: str
    airmass: float
    fwhm_500: float
    optics_fwhm: float = 0.35
    size_gradient: tuple[float, ...] = (0.0,) * N_FIELD_TERMS
    e1_field: tuple[float, ...] = (0.0,) * N_FIELD_TERMS
    e2_field: tuple[float, ...] = (0.0,) * N_FIELD_TERMS

    def __post_init__(self) -> None:
        if not isinstance(self.band, str) or self.band not in BANDS:
            raise InvalidInputError(f"`band` must be one of {BANDS}; got {self.band!r}")
        set_ = object.__setattr__
        set_(self, "airmass", _positive(self.airmass, "airmass", minimum=1.0, inclusive=True))
        set_(self, "fwhm_500", _positive(self.fwhm_500, "fwhm_500"))
        set_(self, "optics_fwhm",
             _positive(self.optics_fwhm, "optics_fwhm", inclusive=True))
        for name in ("size_gradient", "e1_field", "e2_field"):
            set_(self, name, _as_coefficients(getattr(self, name), name))

    # -- field polynomials ------------------------------------------------------------

    def size_change(self, u_deg: ArrayLike, v_deg: ArrayLike) -> Any:
        """Return dT/T, the fractional size change of the atmospheric component.

        Parameters
        ----------
        u_deg, v_deg : array_like
            Focal-plane position (deg from the boresight); broadcast together.

        Returns
        -------
        numpy.ndarray or numpy.float64
            The fractional size change dT/T at each position.

        Examples
        --------
        >>> psf = TruthPsf("r", 1.2, 0.7, size_gradient=(0, 0.01, 0, 0, 0, 0))
        >>> float(psf.size_change(1.0, 0.5))
        0.01
        """
        u, v = np.broadcast_arrays(np.asarray(u_deg, float), np.asarray(v_deg, float))
        out = _field_basis(u, v) @ np.asarray(self.size_gradient)
        return out[()] if out.ndim == 0 else out

    def shape(self, u_deg: ArrayLike, v_deg: ArrayLike) -> tuple[Any, Any]:
        """Return the distortion (e1, e2) of the atmospheric component.

        Parameters
        ----------
        u_deg, v_deg : array_like
            Focal-plane position (deg from the boresight); broadcast together.

        Returns
        -------
        e1 : numpy.ndarray or numpy.float64
            First distortion component (GalSim ``Shear(e1=, e2=)`` convention).
        e2 : numpy.ndarray or numpy.float64
            Second distortion component.

        Examples
        --------
        >>> psf = TruthPsf("r", 1.2, 0.7, e1_field=(0.02, 0, 0, 0, 0, 0))
        >>> [float(e) for e in psf.shape(0.3, 0.3)]
        [0.02, 0.0]
        """
        u, v = np.broadcast_arrays(np.asarray(u_deg, float), np.asarray(v_deg, float))
        basis = _field_basis(u, v)
        e1 = basis @ np.asarray(self.e1_field)
        e2 = basis @ np.asarray(self.e2_field)
        return (e1[()] if e1.ndim == 0 else e1), (e2[()] if e2.ndim == 0 else e2)

    def atmospheric_fwhm(self, u_deg: ArrayLike, v_deg: ArrayLike, wave_nm: ArrayLike) -> Any:
        """Return the FWHM (arcsec) of the (unsheared) Kolmogorov component.

        Parameters
        ----------
        u_deg, v_deg : array_like
            Focal-plane position (deg).
        wave_nm : array_like
            Wavelength (nm). All three broadcast.

        Returns
        -------
        numpy.ndarray or numpy.float64
            ``atmospheric_fwhm_arcsec(fwhm_500, wave_nm, airmass) * sqrt(1 + dT/T)``.

        Raises
        ------
        InvalidInputError
            Where ``1 + dT/T <= 0`` (the size polynomial is unphysical there).

        Examples
        --------
        >>> psf = TruthPsf("r", 1.0, 0.7)
        >>> round(float(psf.atmospheric_fwhm(0.0, 0.0, 500.0)), 12)
        0.7
        """
        factor = 1.0 + np.asarray(self.size_change(u_deg, v_deg))
        if np.any(~(factor > 0.0)):
            raise InvalidInputError(
                "`u_deg`, `v_deg`: the size polynomial gives 1 + dT/T <= 0 at this "
                "position; it lies outside the field the PSF was made for"
            )
        out = atmospheric_fwhm_arcsec(self.fwhm_500, wave_nm, self.airmass) * np.sqrt(factor)
        return out[()] if np.ndim(out) == 0 else out

    def optics_fwhm_at(self, wave_nm: ArrayLike) -> Any:
        """FWHM (arcsec) of the optics component: ``sqrt(optics_fwhm**2 + (1.028 lambda/D)**2)``.

        Parameters
        ----------
        wave_nm : array_like
            Wavelength (nm).

        Returns
        -------
        numpy.ndarray or numpy.float64
            FWHM (arcsec); 0 when the optics component is switched off.

        Examples
        --------
        >>> round(float(TruthPsf("r", 1.0, 0.7, optics_fwhm=0.35).optics_fwhm_at(1000.0)), 4)
        0.3516
        """
        w = np.asarray(wave_nm, float)
        diffraction = 1.028 * w * 1e-9 / LSST_APERTURE_M * _RAD_TO_ARCSEC
        out = np.where(self.optics_fwhm > 0.0, np.hypot(self.optics_fwhm, diffraction), 0.0)
        return out[()] if out.ndim == 0 else out

    # -- GalSim profiles --------------------------------------------------------------

    def sky_profile(self, u_deg: float, v_deg: float, wave_eff_nm: float) -> galsim.GSObject:
        """Return the PSF at a field position and wavelength as a GalSim profile.

        Parameters
        ----------
        u_deg, v_deg : float
            Focal-plane position (deg from the boresight).
        wave_eff_nm : float
            Wavelength (nm) at which the monochromatic PSF is evaluated: the source's
            effective wavelength in the (locally shifted) bandpass.

        Returns
        -------
        galsim.GSObject
            Unit-flux profile in **arcsec** on the sky (u, v axes), centred at the
            origin, with :data:`GSPARAMS`. Draw it through the local WCS (or a pixel
            scale) with ``method='auto'`` (FFT) or ``'phot'``.

        Raises
        ------
        InvalidInputError
            For a non-finite position, a wavelength outside 200-5000 nm, or a position
            where the field polynomials are unphysical (``1 + dT/T <= 0`` or ``|e| >= 1``).

        Examples
        --------
        >>> psf = make_truth_psf("r", 1.2, 0.7, rng=0)
        >>> stamp = psf.sky_profile(0.5, -0.3, 620.0).drawImage(nx=25, ny=25, scale=0.2)
        >>> round(float(stamp.array.sum()), 3)   # Kolmogorov wings: 1.1% beyond 2.5"
        0.989
        """
        try:
            u, v, lam = float(u_deg), float(v_deg), float(wave_eff_nm)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                "`u_deg`, `v_deg` and `wave_eff_nm` must be real scalars"
            ) from exc
        if not (math.isfinite(u) and math.isfinite(v)):
            raise InvalidInputError(f"`u_deg`, `v_deg` must be finite; got {(u_deg, v_deg)!r}")
        if not (200.0 <= lam <= 5000.0):
            raise InvalidInputError(f"`wave_eff_nm` must be in 200-5000 nm; got {wave_eff_nm!r}")
        terms = (1.0, u, v, u * u, u * v, v * v)
        size = math.fsum(c * t for c, t in zip(self.size_gradient, terms))
        e1 = math.fsum(c * t for c, t in zip(self.e1_field, terms))
        e2 = math.fsum(c * t for c, t in zip(self.e2_field, terms))
        if not 1.0 + size > 0.0:
            raise InvalidInputError(
                f"`u_deg`, `v_deg` = ({u}, {v}): the size polynomial gives 1 + dT/T = "
                f"{1.0 + size:.3g} <= 0; the position is outside the PSF's field"
            )
        if not e1 * e1 + e2 * e2 < 1.0:
            raise InvalidInputError(
                f"`u_deg`, `v_deg` = ({u}, {v}): the shape polynomials give |e| >= 1; "
                "the position is outside the PSF's field"
            )
        fwhm = float(atmospheric_fwhm_arcsec(self.fwhm_500, lam, self.airmass)) * math.sqrt(
            1.0 + size
        )
        prof: galsim.GSObject = galsim.Kolmogorov(fwhm=fwhm, gsparams=GSPARAMS)
        if e1 != 0.0 or e2 != 0.0:
            prof = prof.shear(galsim.Shear(e1=e1, e2=e2))
        if self.optics_fwhm > 0.0:
            optics = galsim.Gaussian(fwhm=float(self.optics_fwhm_at(lam)), gsparams=GSPARAMS)
            prof = galsim.Convolve(prof, optics, gsparams=GSPARAMS)
        return prof

    def sky_profile_for(
        self,
        u_deg: float,
        v_deg: float,
        temperature_k: float,
        *,
        tilt: float = 0.0,
        shift_nm: float = 0.0,
    ) -> galsim.GSObject:
        """Return the PSF seen by a source of a given SED (effective-wavelength PSF).

        Parameters
        ----------
        u_deg, v_deg : float
            Focal-plane position (deg from the boresight).
        temperature_k : float
            SED temperature (K); see :func:`~lsstdrp.sim._chromatic.sed_photons`.
        tilt : float, optional
            SED power-law tilt.
        shift_nm : float, optional
            Local filter-edge shift (nm) at this position.

        Returns
        -------
        galsim.GSObject
            ``sky_profile(u_deg, v_deg, effective_wavelength(temperature_k, band, ...))``.

        Raises
        ------
        InvalidInputError
            As :meth:`sky_profile` and
            :func:`~lsstdrp.sim._chromatic.effective_wavelength`.

        Examples
        --------
        >>> psf = make_truth_psf("g", 1.2, 0.7, rng=0)
        >>> cool = psf.sky_profile_for(0.0, 0.0, 3500.0).calculateMomentRadius()
        >>> hot = psf.sky_profile_for(0.0, 0.0, 15000.0).calculateMomentRadius()
        >>> bool(hot > cool)    # bluer light: broader seeing outweighs sharper optics
        True
        """
        lam = effective_wavelength(temperature_k, self.band, tilt=tilt, shift_nm=shift_nm)
        if np.ndim(lam) != 0:
            raise InvalidInputError("`temperature_k`, `tilt`, `shift_nm` must be scalars")
        return self.sky_profile(u_deg, v_deg, float(lam))


def _disc_points(n: int = 101) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Uniform grid of points in the unit disc (for field-RMS normalisation)."""
    x = np.linspace(-1.0, 1.0, n)
    xx, yy = np.meshgrid(x, x)
    inside = xx**2 + yy**2 <= 1.0
    return xx[inside], yy[inside]


_DEGREES = np.array([0, 1, 1, 2, 2, 2])


def make_truth_psf(
    band: str,
    airmass: float,
    fwhm_500: float,
    *,
    rng: Any,
    optics_fwhm: float = 0.35,
    variation_amplitude: float = 0.02,
    shape_amplitude: float = 0.03,
    field_radius_deg: float = 1.75,
) -> TruthPsf:
    """Draw a :class:`TruthPsf` with random second-order size and shape fields.

    Parameters
    ----------
    band : str
        The band.
    airmass : float
        Airmass, >= 1.
    fwhm_500 : float
        Seeing FWHM (arcsec) at 500 nm and zenith; the atmospheric FWHM on the
        boresight (where dT/T = 0).
    rng : numpy.random.Generator, int or None
        Random state, through ``numpy.random.default_rng(rng)``.
    optics_fwhm : float, optional
        Optics FWHM (arcsec) at 500 nm (0 = off).
    variation_amplitude : float, optional
        RMS of dT/T over the disc of radius ``field_radius_deg``, in [0, 0.3].
    shape_amplitude : float, optional
        RMS of :math:`|e| = \\sqrt{e_1^2 + e_2^2}` over that disc, in [0, 0.3].
    field_radius_deg : float, optional
        Radius (deg) of the field the amplitudes refer to (LSST: 1.75).

    Returns
    -------
    TruthPsf
        With coefficients in (1, u, v, u^2, u v, v^2), u, v in degrees.

    Raises
    ------
    InvalidInputError
        For out-of-range arguments.

    Notes
    -----
    In normalised coordinates :math:`(\\xi, \\eta) = (u, v)/R`, the five non-constant
    coefficients of dT/T (its constant term is 0) and all six coefficients of each of
    e1, e2 are drawn from a standard normal, then scaled so that the RMS over a uniform
    grid on the unit disc equals ``variation_amplitude`` (dT/T) and
    ``shape_amplitude`` (``|e|``); finally a term of degree k is divided by
    :math:`R^k` to convert to degrees. The draws are, in order: 6 size (the first
    discarded), 6 e1, 6 e2 numbers.

    Examples
    --------
    >>> psf = make_truth_psf("i", 1.1, 0.7, rng=1)
    >>> bool(abs(psf.size_change(0.0, 0.0)) < 1e-15)
    True
    """
    generator = np.random.default_rng(rng)
    var_amp = _positive(variation_amplitude, "variation_amplitude", inclusive=True)
    shp_amp = _positive(shape_amplitude, "shape_amplitude", inclusive=True)
    if var_amp > 0.3:
        raise InvalidInputError(f"`variation_amplitude` must be <= 0.3; got {var_amp!r}")
    if shp_amp > 0.3:
        raise InvalidInputError(f"`shape_amplitude` must be <= 0.3; got {shp_amp!r}")
    radius = _positive(field_radius_deg, "field_radius_deg")
    draws = generator.standard_normal(3 * N_FIELD_TERMS).reshape(3, N_FIELD_TERMS)
    draws[0, 0] = 0.0
    xi, eta = _disc_points()
    basis = _field_basis(xi, eta)

    def rms(coeffs: NDArray[np.float64]) -> float:
        return float(np.sqrt(np.mean((basis @ coeffs) ** 2)))

    size_norm = rms(draws[0])
    size = draws[0] * (var_amp / size_norm if size_norm > 0 else 0.0)
    shape_norm = math.hypot(rms(draws[1]), rms(draws[2]))
    e_scale = shp_amp / shape_norm if shape_norm > 0 else 0.0
    to_deg = radius ** -_DEGREES.astype(float)
    return TruthPsf(
        band=band,
        airmass=airmass,
        fwhm_500=fwhm_500,
        optics_fwhm=optics_fwhm,
        size_gradient=tuple(size * to_deg),
        e1_field=tuple(draws[1] * e_scale * to_deg),
        e2_field=tuple(draws[2] * e_scale * to_deg),
    )
