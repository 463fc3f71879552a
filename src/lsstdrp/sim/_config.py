"""Survey configuration and presets for :func:`lsstdrp.sim.make_survey`."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .._errors import InvalidInputError

__all__ = ["SurveyConfig", "PRESETS", "get_config", "LSST_SKY_MAG", "LSST_ZP_1S", "LSST_EXTINCTION"]

#: Dark-sky surface brightness (AB mag / arcsec^2) per band, LSST SRD-like values.
LSST_SKY_MAG = {"u": 22.99, "g": 22.26, "r": 21.20, "i": 20.48, "z": 19.60, "y": 18.61}
#: AB magnitude giving 1 e-/s at zenith per band (LSST-like system throughput).
LSST_ZP_1S = {"u": 26.52, "g": 28.51, "r": 28.36, "i": 28.17, "z": 27.78, "y": 26.82}
#: Atmospheric extinction (mag / airmass) per band.
LSST_EXTINCTION = {"u": 0.47, "g": 0.21, "r": 0.13, "i": 0.10, "z": 0.08, "y": 0.18}


@dataclasses.dataclass(frozen=True)
class SurveyConfig:
    """All the knobs of the survey simulator (every one changes numbers, none is hidden).

    Units are in the names or stated here: angles in degrees unless ``_arcsec`` /
    ``_mas``; magnitudes AB; time MJD (TAI); pixel values in e⁻. An invalid value raises
    :class:`~lsstdrp.InvalidInputError` naming the field.

    Parameters
    ----------
    n_det_x, n_det_y : int
        Detectors on a grid; ``det_shape`` (ny, nx) pixels each.
    det_shape : tuple of int
        Detector shape (ny, nx), at least (32, 32).
    pixel_scale_arcsec : float
        Nominal pixel scale; ``gap_px`` is the gap between detectors.
    gap_px : int
        Gap between neighbouring detectors (pixels).
    placement_sigma_um, rotation_sigma_arcsec : float
        Rms of the true detector placement errors (shift, rotation).
    distortion_k3 : float or None
        Radial optical distortion (None: 0.3% at the focal-plane corner).
    n_visits : int
        Number of visits; ``bands`` are cycled through by visit.
    bands : tuple of str
        Survey bands of the visits.
    ra0, dec0 : float
        Field centre (deg).
    dither_arcsec : float
        Pointing offsets, uniform within this radius.
    rotation_range_deg : float
        Rotator angles drawn uniformly in ± this.
    mjd_start, mjd_span_days : float
        Visit epochs are sorted uniform draws in the span.
    exptime : float
        Exposure time (s).
    seeing_fwhm_range : (float, float)
        Zenith FWHM at 500 nm (arcsec), uniform.
    airmass_range : (float, float)
        Airmass, uniform.
    parallactic_range_deg : float
        Parallactic angle, uniform in ±.
    sky_gradient_frac : float
        Amplitude of the focal-plane-scale sky gradient.
    zeropoint_variation_mmag : float
        Amplitude of the smooth zeropoint map over the focal plane.
    grey_extinction_mmag : float
        Rms of per-visit grey (cloud) zeropoint offsets.
    bandpass_shift_nm : float
        Filter-edge shift at the field radius (∝ r²); negative is blueward, as an
        interference filter at a larger angle of incidence.
    turbulence_rms_mas, turbulence_outer_scale_deg : float
        Per-visit von Kármán astrometric turbulence (per-axis rms, outer scale).
    turbulence_polynomial_order : int or None
        Keep the turbulence inside 2-D polynomials of this order (None: full field).
    read_noise : float
        Read noise (e⁻ rms) added to the image and the variance plane.
    saturation_level : float
        Full well (e⁻); above it pixels are clipped, bled along columns and flagged SAT.
    psf_variation, psf_shape_amplitude : float
        Rms over the field of the PSF size change dT/T and of its ellipticity ``|e|``.
    optics_fwhm : float
        Achromatic optics blur FWHM (arcsec; diffraction added in quadrature); 0 = off.
    star_density_arcmin2 : float
        Stars per arcmin²; ``star_mag_range`` their r-band AB range.
    star_mag_range : (float, float)
        r-band range of the stars (power-law counts).
    n_bright_stars : int
        Saturating stars (mag 11-13).
    galaxy_density_arcmin2 : float
        Galaxies per arcmin²; ``galaxy_mag_range`` their r-band range.
    galaxy_mag_range : (float, float)
        r-band range of the galaxies.
    shear : (float, float)
        Reduced shear (g1, g2) applied to every galaxy.
    variable_fraction : float
        Fraction of stars that vary.
    n_transients, n_sso : int
        Transients and solar-system objects.
    trail_probability : float
        Probability that a visit has a satellite trail.
    injection_spacing_arcsec, injection_mag : float
        Optional grid of faint injected point sources (spacing 0 = none).
    refcat_mag_limit : float
        Depth of the Gaia-like astrometric catalog (G ~ r).
    refcat_epoch : float
        Epoch of the reference catalog positions (MJD; Gaia DR3: 57388.0).
    photometric_refcat_err : float
        Fractional flux error of the photometric reference catalog.
    render : bool
        True renders pixels; False produces catalog-level sources only.
    stamp_size : int
        Odd stamp side for faint point sources (brighter ones get larger stamps).
    """

    # focal plane
    n_det_x: int = 2
    n_det_y: int = 2
    det_shape: tuple[int, int] = (128, 128)
    pixel_scale_arcsec: float = 0.2
    gap_px: int = 50
    placement_sigma_um: float = 5.0
    rotation_sigma_arcsec: float = 20.0
    distortion_k3: float | None = None
    # visits
    n_visits: int = 2
    bands: tuple[str, ...] = ("r",)
    ra0: float = 150.0
    dec0: float = 2.2
    dither_arcsec: float = 30.0
    rotation_range_deg: float = 2.0
    mjd_start: float = 60676.0
    mjd_span_days: float = 3.0
    exptime: float = 30.0
    seeing_fwhm_range: tuple[float, float] = (0.6, 0.9)
    airmass_range: tuple[float, float] = (1.05, 1.5)
    parallactic_range_deg: float = 60.0
    sky_gradient_frac: float = 0.02
    zeropoint_variation_mmag: float = 10.0
    grey_extinction_mmag: float = 5.0
    bandpass_shift_nm: float = -2.0
    turbulence_rms_mas: float = 5.0
    turbulence_outer_scale_deg: float = 0.5
    turbulence_polynomial_order: int | None = None
    read_noise: float = 9.0
    saturation_level: float = 1.0e5
    psf_variation: float = 0.02
    psf_shape_amplitude: float = 0.03
    optics_fwhm: float = 0.35
    # sky
    star_density_arcmin2: float = 1.5
    star_mag_range: tuple[float, float] = (16.0, 24.0)
    n_bright_stars: int = 1
    galaxy_density_arcmin2: float = 2.0
    galaxy_mag_range: tuple[float, float] = (19.0, 24.5)
    shear: tuple[float, float] = (0.02, -0.01)
    variable_fraction: float = 0.05
    n_transients: int = 1
    n_sso: int = 1
    trail_probability: float = 0.25
    injection_spacing_arcsec: float = 0.0
    injection_mag: float = 23.5
    # reference catalogs
    refcat_mag_limit: float = 20.5
    refcat_epoch: float = 57388.0
    photometric_refcat_err: float = 0.01
    # mode
    render: bool = True
    stamp_size: int = 33

    def __post_init__(self) -> None:
        def _int(name: str, lo: int) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise InvalidInputError(f"SurveyConfig.{name} must be an integer >= {lo}; got {v!r}")

        def _num(name: str, lo: float | None = None, hi: float | None = None, *, strict: bool = False) -> None:
            v = getattr(self, name)
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            if ok and lo is not None:
                ok = v > lo if strict else v >= lo
            if ok and hi is not None:
                ok = v <= hi
            if not ok:
                rng = f"{'>' if strict else '>='} {lo}" if lo is not None else "finite"
                if hi is not None:
                    rng += f" and <= {hi}"
                raise InvalidInputError(f"SurveyConfig.{name} must be a number {rng}; got {v!r}")

        def _range(name: str, lo: float, hi: float | None = None) -> None:
            v = getattr(self, name)
            try:
                a, b = (float(x) for x in v)
            except (TypeError, ValueError):
                raise InvalidInputError(f"SurveyConfig.{name} must be a (min, max) pair; got {v!r}") from None
            if not (math.isfinite(a) and math.isfinite(b) and lo <= a <= b and (hi is None or b <= hi)):
                raise InvalidInputError(
                    f"SurveyConfig.{name} must satisfy {lo} <= min <= max{'' if hi is None else f' <= {hi}'}; got {v!r}"
                )

        for name, lo in [("n_det_x", 1), ("n_det_y", 1), ("n_visits", 1), ("gap_px", 0), ("n_bright_stars", 0),
                         ("n_transients", 0), ("n_sso", 0)]:
            _int(name, lo)
        _int("stamp_size", 9)
        if self.stamp_size % 2 == 0:
            raise InvalidInputError(f"SurveyConfig.stamp_size must be odd; got {self.stamp_size}")
        try:
            ny, nx = (int(v) for v in self.det_shape)
        except (TypeError, ValueError):
            raise InvalidInputError(f"SurveyConfig.det_shape must be (ny, nx); got {self.det_shape!r}") from None
        if ny < 32 or nx < 32:
            raise InvalidInputError(f"SurveyConfig.det_shape must be at least (32, 32); got {self.det_shape!r}")
        object.__setattr__(self, "det_shape", (ny, nx))
        from ._chromatic import BANDS

        bands = tuple(self.bands) if not isinstance(self.bands, str) else (self.bands,)
        if not bands or any(b not in BANDS for b in bands):
            raise InvalidInputError(f"SurveyConfig.bands must be a non-empty subset of {BANDS}; got {self.bands!r}")
        object.__setattr__(self, "bands", bands)
        for name in ("pixel_scale_arcsec", "exptime", "read_noise", "saturation_level"):
            _num(name, 0.0, strict=name != "read_noise")
        for name in ("placement_sigma_um", "rotation_sigma_arcsec", "dither_arcsec", "rotation_range_deg",
                     "mjd_span_days", "sky_gradient_frac", "zeropoint_variation_mmag", "grey_extinction_mmag",
                     "turbulence_rms_mas", "psf_variation", "psf_shape_amplitude",
                     "optics_fwhm", "star_density_arcmin2", "galaxy_density_arcmin2",
                     "injection_spacing_arcsec", "photometric_refcat_err"):
            _num(name, 0.0)
        _num("ra0", 0.0, 360.0)
        _num("dec0", -89.0, 89.0)
        _num("mjd_start", 0.0)
        _num("refcat_epoch", 0.0)
        _num("parallactic_range_deg", 0.0, 180.0)
        _num("variable_fraction", 0.0, 1.0)
        _num("trail_probability", 0.0, 1.0)
        _num("turbulence_outer_scale_deg", 0.0, strict=True)
        _num("refcat_mag_limit")
        _num("bandpass_shift_nm", -20.0, 20.0)
        _num("injection_mag")
        if self.distortion_k3 is not None:
            _num("distortion_k3")
        if self.turbulence_polynomial_order is not None:
            _int("turbulence_polynomial_order", 1)
        _range("seeing_fwhm_range", 0.1, 5.0)
        _range("airmass_range", 1.0, 3.0)
        _range("star_mag_range", 5.0, 30.0)
        _range("galaxy_mag_range", 10.0, 30.0)
        try:
            g1, g2 = (float(v) for v in self.shear)
        except (TypeError, ValueError):
            raise InvalidInputError(f"SurveyConfig.shear must be (g1, g2); got {self.shear!r}") from None
        if not (math.isfinite(g1) and math.isfinite(g2) and g1 * g1 + g2 * g2 < 0.25):
            raise InvalidInputError(f"SurveyConfig.shear must satisfy |g| < 0.5; got {self.shear!r}")
        object.__setattr__(self, "shear", (g1, g2))
        if not isinstance(self.render, bool):
            raise InvalidInputError(f"SurveyConfig.render must be True or False; got {self.render!r}")

    @property
    def n_detectors(self) -> int:
        """Number of detectors in the focal plane."""
        return self.n_det_x * self.n_det_y

    def replace(self, **changes: Any) -> "SurveyConfig":
        """A copy with ``changes`` applied (validated again).

        Parameters
        ----------
        **changes
            Field values.

        Returns
        -------
        SurveyConfig

        Raises
        ------
        InvalidInputError
            Unknown field name or an invalid value.
        """
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise InvalidInputError(f"SurveyConfig has no field(s) {unknown}")
        return dataclasses.replace(self, **changes)


#: Named presets. ``tiny``: unit tests (2 visits x 4 detectors in ~2 s); ``small``: the
#: demo (9 detectors x 6 visits x 2 bands); ``large``: benchmarks (4k x 4k detectors).
PRESETS: dict[str, SurveyConfig] = {
    "tiny": SurveyConfig(det_shape=(256, 256), star_density_arcmin2=15.0, galaxy_density_arcmin2=8.0),
    "small": SurveyConfig(
        n_det_x=3, n_det_y=3, det_shape=(512, 512), n_visits=6, bands=("g", "r"),
        dither_arcsec=40.0, star_density_arcmin2=4.0, galaxy_density_arcmin2=15.0,
        n_bright_stars=3, n_transients=2, n_sso=2, injection_spacing_arcsec=0.0,
    ),
    "large": SurveyConfig(
        n_det_x=3, n_det_y=3, det_shape=(4096, 4096), n_visits=4, bands=("g", "r", "i"),
        dither_arcsec=120.0, star_density_arcmin2=1.5, galaxy_density_arcmin2=10.0,
        n_bright_stars=10, n_transients=5, n_sso=5,
    ),
}


def get_config(config_or_preset: Any = "tiny", **overrides: Any) -> SurveyConfig:
    """Resolve a preset name or a :class:`SurveyConfig`, applying ``overrides``.

    Parameters
    ----------
    config_or_preset : str or SurveyConfig
        ``"tiny"``, ``"small"``, ``"large"`` or a config.
    **overrides
        Field values to change.

    Returns
    -------
    SurveyConfig

    Raises
    ------
    InvalidInputError
        Unknown preset or field, or an invalid value.

    Examples
    --------
    >>> from lsstdrp.sim import get_config
    >>> get_config("tiny", n_visits=3).n_visits
    3
    """
    if isinstance(config_or_preset, SurveyConfig):
        cfg = config_or_preset
    elif isinstance(config_or_preset, str):
        if config_or_preset not in PRESETS:
            raise InvalidInputError(f"`config_or_preset` is {config_or_preset!r}; expected one of {list(PRESETS)} or a SurveyConfig")
        cfg = PRESETS[config_or_preset]
    else:
        raise InvalidInputError(
            f"`config_or_preset` must be a preset name or a SurveyConfig; got {type(config_or_preset).__name__}"
        )
    return cfg.replace(**overrides) if overrides else cfg
