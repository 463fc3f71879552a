"""The survey simulator: truth chain, rendered exposures and catalog-level mode."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterator
from typing import Any

import galsim
import numpy as np
from astropy.table import QTable, vstack

from .._errors import InvalidInputError
from ..core import Exposure, MaskPlane, PhotoCalib, as_rng, empty_refcat
from ._astrometry import TruthWcs, fit_tan_sip, make_turbulence, propagate_to_epoch
from ._chromatic import (
    color_index,
    dcr_offset_arcsec,
    effective_wavelength,
    ab_magnitude_offsets,
)
from ._config import LSST_EXTINCTION, LSST_SKY_MAG, LSST_ZP_1S, SurveyConfig, get_config
from ._focalplane import FocalPlane, make_focal_plane
from ._photometry import bandpass_shift_mag
from ._sky import light_curve_mag_offset, make_sky, sso_positions
from ._truthpsf import TruthPsf, make_truth_psf

__all__ = [
    "Survey",
    "ExposureTruth",
    "TruthExposurePsf",
    "make_survey",
    "render_exposure",
    "observe",
    "catalog_sources",
]

_GSPARAMS = galsim.GSParams(folding_threshold=5e-3, maximum_fft_size=16384)
_MAS = 1.0 / 3.6e6
_POINT_KINDS = ("star", "injected", "transient", "sso")


# ----------------------------------------------------------------------------- truth PSF
@dataclasses.dataclass(frozen=True, eq=False)
class TruthExposurePsf:
    """The true PSF of one (visit, detector), rendered by GalSim, evaluable anywhere.

    It is the exact profile the simulator convolves every object with: the visit's
    :class:`TruthPsf` at the field position of pixel (x, y), at the object's effective
    wavelength (its SED through the locally shifted bandpass), mapped to pixels by the
    local Jacobian of the true WCS. It also satisfies the :class:`lsstdrp.core.Psf`
    protocol, with ``color`` the AB ``g-i`` colour of a blackbody star (converted to a
    temperature), so it can stand in as a perfect PSF model in tests.

    Attributes
    ----------
    color_name : str
        ``"g-i"``.
    """

    truth_psf: TruthPsf
    wcs: TruthWcs
    focal_plane: FocalPlane
    detector: int
    band: str
    bandpass_shift_nm_edge: float
    stamp_size: int = 33
    default_temperature: float = 5800.0
    color_name: str = "g-i"

    # -- chain helpers
    def field_position(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Field angle (u, v) in degrees of pixel position(s) (x, y)."""
        fx, fy = self.focal_plane.pixel_to_focal(self.detector, x, y)
        return self.focal_plane.focal_to_field(fx, fy)

    def bandpass_shift(self, x: Any, y: Any) -> np.ndarray:
        """Filter-edge shift (nm) at pixel (x, y): ``edge * min(r / field_radius, 1)**2``."""
        u, v = self.field_position(x, y)
        r2 = (np.asarray(u) ** 2 + np.asarray(v) ** 2) / self.focal_plane.field_radius_deg**2
        return self.bandpass_shift_nm_edge * np.minimum(r2, 1.0)

    def wavelength(self, x: float, y: float, temperature: float, tilt: float = 0.0) -> float:
        """Effective wavelength (nm) of an SED at pixel (x, y)."""
        return float(effective_wavelength(temperature, self.band, tilt=tilt, shift_nm=float(self.bandpass_shift(x, y))))

    def galsim_wcs(self, x: float, y: float, *, jacobian: Any = None) -> galsim.JacobianWCS:
        """Local affine pixel -> sky (arcsec east, north) mapping at (x, y).

        ``jacobian`` (2x2, arcsec/pixel) may be passed when already computed."""
        j = np.asarray(self.wcs.local_jacobian(x, y) if jacobian is None else jacobian, dtype=float)
        return galsim.JacobianWCS(j[0, 0], j[0, 1], j[1, 0], j[1, 1])

    def sky_profile(self, x: float, y: float, *, temperature: float | None = None, tilt: float = 0.0) -> galsim.GSObject:
        """The PSF at pixel (x, y) as a GalSim profile in sky units (arcsec)."""
        t = self.default_temperature if temperature is None else float(temperature)
        u, v = self.field_position(x, y)
        return self.truth_psf.sky_profile(float(u), float(v), self.wavelength(x, y, t, tilt))

    def draw(self, x: float, y: float, *, temperature: float | None = None, tilt: float = 0.0,
             shape: Any = None, flux: float = 1.0, profile: galsim.GSObject | None = None,
             jacobian: Any = None) -> np.ndarray:
        """Draw ``profile`` (default the PSF itself) centred at (x, y) on a stamp.

        The stamp is odd-sized and centred on pixel ``(round(x), round(y))``; the
        profile's centre lies at the sub-pixel offset; pixel-integrated.

        Parameters
        ----------
        x, y : float
            0-based pixel position of the centre.
        temperature, tilt : float
            SED of the source (for the chromatic PSF).
        shape : int or (int, int), optional
            Odd stamp side or (ny, nx) (default ``stamp_size`` square).
        flux : float
            Total flux of the drawn profile.
        profile : galsim.GSObject, optional
            An already convolved sky-unit profile to draw instead of the PSF.
        jacobian : array_like, shape (2, 2), optional
            The true WCS's local Jacobian at (x, y) if already computed.

        Returns
        -------
        numpy.ndarray, float64
        """
        if shape is None:
            ny = nx = self.stamp_size
        elif np.ndim(shape) == 0:
            ny = nx = int(shape)
        else:
            ny, nx = (int(v) for v in shape)
        if ny % 2 == 0 or nx % 2 == 0 or min(ny, nx) < 3:
            raise InvalidInputError(f"`shape` must be odd and >= 3 (an int or (ny, nx)); got {shape!r}")
        obj = self.sky_profile(x, y, temperature=temperature, tilt=tilt) if profile is None else profile
        ix, iy = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        img = obj.withFlux(flux).drawImage(nx=nx, ny=ny, wcs=self.galsim_wcs(x, y, jacobian=jacobian),
                                           offset=(x - ix, y - iy),
                                           dtype=np.float64)
        return img.array

    # -- Psf protocol
    def _temperature_of_color(self, color: Any) -> float:
        if color is None:
            return self.default_temperature
        c = float(color)
        if not math.isfinite(c):
            raise InvalidInputError(f"`color` must be finite; got {color!r}")
        return _temperature_from_gi(c)

    def kernel_image(self, x: float, y: float, *, color: Any = None) -> np.ndarray:
        """Pixel-integrated PSF centred on the central pixel of an odd stamp (sum 1)."""
        t = self._temperature_of_color(color)
        k = self.draw(math.floor(float(x) + 0.5), math.floor(float(y) + 0.5), temperature=t)
        return k / k.sum()

    def image(self, x: float, y: float, *, color: Any = None, shape: Any = None) -> np.ndarray:
        """The PSF as a star at sub-pixel (x, y) shows it, on a stamp centred on round(x, y)."""
        return self.draw(float(x), float(y), temperature=self._temperature_of_color(color), shape=shape)

    def moments(self, x: float, y: float, *, color: Any = None) -> tuple[float, float, float]:
        """Adaptive second moments (ixx, iyy, ixy) in pixels² (GalSim HSM)."""
        k = self.kernel_image(x, y, color=color)
        res = galsim.hsm.FindAdaptiveMom(galsim.ImageD(k), strict=True)
        s = res.moments_sigma
        e1, e2 = res.observed_shape.e1, res.observed_shape.e2
        # HSM: sigma = det(M)^(1/4), shape as distortion of M
        t = 2 * s * s / math.sqrt(1 - e1 * e1 - e2 * e2)
        return (0.5 * t * (1 + e1), 0.5 * t * (1 - e1), 0.5 * t * e2)


@dataclasses.dataclass(frozen=True)
class _GiTable:
    temps: np.ndarray
    colors: np.ndarray


def _gi_table() -> _GiTable:
    global _GI
    if _GI is None:
        temps = np.exp(np.linspace(np.log(2600.0), np.log(40000.0), 400))
        colors = np.asarray(color_index(temps, "g-i"), dtype=float)
        _GI = _GiTable(temps, colors)
    return _GI


_GI: _GiTable | None = None


def _temperature_from_gi(color: float) -> float:
    tab = _gi_table()
    c = np.clip(color, tab.colors.min(), tab.colors.max())
    return float(np.interp(c, tab.colors[::-1], tab.temps[::-1]))


# ----------------------------------------------------------------------------- containers
@dataclasses.dataclass(frozen=True, eq=False)
class ExposureTruth:
    """Truth of one (visit, detector).

    Attributes
    ----------
    visit, detector : int
    band : str
    mjd : float
    wcs : TruthWcs
        True pixel -> sky mapping (APE-14), distortions and turbulence included.
    tan_sip : TanSipApprox
        Its TAN-SIP approximation with the stated (measured) error.
    psf : TruthExposurePsf
        The true PSF, evaluable anywhere and per SED.
    photo_calib : PhotoCalib
        True calibration of an AB-flat (grey) source, with the zeropoint map's
        variation over the detector as a Chebyshev term.
    zeropoint_map : callable
        ``zeropoint_map(x, y)`` -> AB mag of 1 e⁻ at pixel (x, y) (exact truth).
    sources : QTable
        Every object whose light reaches the detector: ``id, kind, x, y`` (true
        centre, DCR and motion included), ``flux`` (e⁻), ``mag`` (standard-band AB),
        ``inst_mag``, ``temperature, tilt, wave_eff, dcr_mas, u, v`` (field deg),
        ``in_image``.
    background : numpy.ndarray or None
        Sky background (e⁻/pixel) when rendered.
    noiseless : numpy.ndarray or None
        Expected image (background + objects + trail) in e⁻ before noise.
    trail_mask : numpy.ndarray of bool or None
        Pixels where a satellite trail exceeds half the sky noise.
    """

    visit: int
    detector: int
    band: str
    mjd: float
    wcs: Any
    psf: TruthExposurePsf
    photo_calib: PhotoCalib
    zeropoint_map: Any
    sources: QTable
    background: np.ndarray | None = None
    noiseless: np.ndarray | None = None
    trail_mask: np.ndarray | None = None

    @functools.cached_property
    def tan_sip(self) -> Any:
        """TAN-SIP approximation of :attr:`wcs` with its measured error (computed on first use)."""
        return fit_tan_sip(self.wcs)


@dataclasses.dataclass(frozen=True, eq=False)
class Survey:
    """A simulated survey: configuration, truth, and exposures or catalogs.

    Attributes
    ----------
    config : SurveyConfig
    focal_plane : FocalPlane
    visits : QTable
        ``visit, band, mjd, ra0, dec0, rotation_deg, airmass, zenith_deg,
        parallactic_deg, seeing_fwhm_500, exptime, sky_mag, zeropoint, grey_mmag,
        has_trail``.
    objects : QTable
        Truth objects (see :func:`lsstdrp.sim.make_sky`).
    sso : QTable
        Solar-system objects (state vectors).
    refcat_astrometric, refcat_photometric : QTable
        Gaia-like and survey-band reference catalogs drawn from the truth.
    truth : dict
        ``(visit, detector) -> ExposureTruth``.
    exposures : dict
        ``(visit, detector) -> Exposure`` (rendered mode; empty in catalog mode or lazy).
    catalogs : dict
        ``(visit, detector) -> QTable`` of measured point sources (catalog-level mode).
    """

    config: SurveyConfig
    focal_plane: FocalPlane
    visits: QTable
    objects: QTable
    sso: QTable
    refcat_astrometric: QTable
    refcat_photometric: QTable
    truth: dict
    exposures: dict
    catalogs: dict
    _visit_models: dict = dataclasses.field(repr=False, default_factory=dict)
    _seed: Any = dataclasses.field(repr=False, default=None)

    def keys(self) -> list[tuple[int, int]]:
        """All (visit, detector) keys in order."""
        return list(self.truth)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.truth)

    def exposure(self, visit: int, detector: int) -> Exposure:
        """The rendered exposure of (visit, detector), rendering it if needed (cached)."""
        key = (int(visit), int(detector))
        if key not in self.truth:
            raise InvalidInputError(f"(visit, detector) = {key} is not in this survey; known: {self.keys()[:5]} ...")
        if key not in self.exposures:
            exp, truth = render_exposure(self, *key)
            self.exposures[key] = exp
            self.truth[key] = truth
        return self.exposures[key]

    def all_catalogs(self) -> QTable:
        """The catalog-level sources of every (visit, detector) stacked in one table."""
        if not self.catalogs:
            raise InvalidInputError("this survey has no catalog-level sources (made with render=True?)")
        return vstack([self.catalogs[k] for k in self.keys()], metadata_conflicts="silent")

    def __repr__(self) -> str:
        c = self.config
        return (f"Survey({c.n_visits} visits x {c.n_detectors} detectors {c.det_shape}, bands={c.bands}, "
                f"{len(self.objects)} objects, rendered={len(self.exposures)}, catalogs={len(self.catalogs)})")


@dataclasses.dataclass(frozen=True, eq=False)
class _VisitModel:
    psf: TruthPsf
    turbulence: Any
    sky_grad: np.ndarray  # (a_u, a_v, a_r2) fractional gradient coefficients
    zp_coeff: np.ndarray  # (c_u, c_v, c_uu, c_uv, c_vv) in mag
    trail: tuple[float, float, float, float] | None  # (u0, v0, angle_rad, e-/arcsec)


# ----------------------------------------------------------------------------- builders
def _visit_table(cfg: SurveyConfig, rng: np.random.Generator) -> QTable:
    n = cfg.n_visits
    t = QTable()
    t["visit"] = np.arange(1000, 1000 + n, dtype=np.int64)
    t["band"] = np.array([cfg.bands[i % len(cfg.bands)] for i in range(n)], dtype="U1")
    t["mjd"] = np.sort(cfg.mjd_start + rng.uniform(0.0, max(cfg.mjd_span_days, 1e-6), n))
    r = cfg.dither_arcsec / 3600.0 * np.sqrt(rng.uniform(0, 1, n))
    th = rng.uniform(0, 2 * np.pi, n)
    dec0 = cfg.dec0 + r * np.sin(th)
    t["ra0"] = (cfg.ra0 + r * np.cos(th) / np.cos(np.deg2rad(dec0))) % 360.0
    t["dec0"] = dec0
    t["rotation_deg"] = rng.uniform(-cfg.rotation_range_deg, cfg.rotation_range_deg, n)
    airmass = rng.uniform(*cfg.airmass_range, n)
    t["airmass"] = airmass
    t["zenith_deg"] = np.rad2deg(np.arccos(1.0 / airmass))
    t["parallactic_deg"] = rng.uniform(-cfg.parallactic_range_deg, cfg.parallactic_range_deg, n)
    t["seeing_fwhm_500"] = rng.uniform(*cfg.seeing_fwhm_range, n)
    t["exptime"] = np.full(n, cfg.exptime)
    t["sky_mag"] = np.array([LSST_SKY_MAG[b] for b in t["band"]]) + rng.normal(0, 0.1, n)
    grey = rng.normal(0.0, cfg.grey_extinction_mmag, n)
    t["grey_mmag"] = grey
    t["zeropoint"] = np.array(
        [LSST_ZP_1S[b] + 2.5 * np.log10(cfg.exptime) - LSST_EXTINCTION[b] * (x - 1.0)
         for b, x in zip(t["band"], airmass)]
    ) - grey / 1000.0
    t["has_trail"] = rng.uniform(size=n) < cfg.trail_probability
    return t


def _visit_models(cfg: SurveyConfig, fp: FocalPlane, visits: QTable, rng: np.random.Generator) -> dict:
    out = {}
    for row in visits:
        r_ = np.random.default_rng(rng.integers(2**63))
        psf = make_truth_psf(str(row["band"]), float(row["airmass"]), float(row["seeing_fwhm_500"]), rng=r_,
                             optics_fwhm=cfg.optics_fwhm, variation_amplitude=cfg.psf_variation,
                             shape_amplitude=cfg.psf_shape_amplitude, field_radius_deg=fp.field_radius_deg)
        turb = make_turbulence(fp.field_radius_deg, rms_mas=cfg.turbulence_rms_mas,
                               outer_scale_deg=cfg.turbulence_outer_scale_deg,
                               polynomial_order=cfg.turbulence_polynomial_order,
                               grid_spacing_deg=max(2 * fp.field_radius_deg / 256, cfg.turbulence_outer_scale_deg / 256),
                               rng=r_)
        grad = r_.normal(0.0, cfg.sky_gradient_frac, 3)
        zp = r_.normal(0.0, cfg.zeropoint_variation_mmag / 1000.0, 5)
        trail = None
        if row["has_trail"]:
            rad = fp.field_radius_deg * 0.5
            trail = (r_.uniform(-rad, rad), r_.uniform(-rad, rad), r_.uniform(0, np.pi), r_.uniform(300.0, 3000.0))
        out[int(row["visit"])] = _VisitModel(psf, turb, grad, zp, trail)
    return out


def _zp_offset(model: _VisitModel, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    a, b = np.asarray(u) / radius, np.asarray(v) / radius
    c = model.zp_coeff
    return c[0] * a + c[1] * b + c[2] * a * a + c[3] * a * b + c[4] * b * b


def _sky_factor(model: _VisitModel, u: np.ndarray, v: np.ndarray, radius: float) -> np.ndarray:
    a, b = np.asarray(u) / radius, np.asarray(v) / radius
    g = model.sky_grad
    return 1.0 + g[0] * a + g[1] * b + g[2] * (a * a + b * b - 0.5)


def _truth_wcs(fp: FocalPlane, row, det: int, model: _VisitModel) -> TruthWcs:
    return TruthWcs(fp, det, ra0=float(row["ra0"]), dec0=float(row["dec0"]),
                    rotation_deg=float(row["rotation_deg"]), turbulence=model.turbulence)


def _photometric_refcat(cfg: SurveyConfig, objects: QTable, rng: np.random.Generator) -> QTable:
    stars = objects[(objects["kind"] == "star") & (objects["mag_r"] < cfg.refcat_mag_limit + 1.0)]
    t = empty_refcat("photometric", len(stars), bands=cfg.bands)
    t["id"] = stars["id"]
    t["ra"] = stars["ra"] * t["ra"].unit
    t["dec"] = stars["dec"] * t["dec"].unit
    offs = ab_magnitude_offsets(np.asarray(stars["temperature"]), cfg.bands, reference_band="r")
    for b in cfg.bands:
        mag = np.asarray(stars["mag_r"]) + np.asarray(offs[b])
        flux = 10 ** (-0.4 * (mag - 31.4))
        err = cfg.photometric_refcat_err * flux
        t[f"{b}_flux"] = (flux + rng.normal(0, 1, len(flux)) * err) * t[f"{b}_flux"].unit
        t[f"{b}_flux_err"] = err * t[f"{b}_flux_err"].unit
    t.meta["standard_bandpass"] = "unshifted lsstdrp.sim bandpasses"
    return t


def _astrometric_refcat(cfg: SurveyConfig, objects: QTable, rng: np.random.Generator) -> QTable:
    stars = objects[(objects["kind"] == "star") & (objects["mag_r"] < cfg.refcat_mag_limit)]
    n = len(stars)
    t = empty_refcat("astrometric", n)
    g = np.asarray(stars["mag_r"], float)
    sig = 0.02 * 10 ** (0.28 * np.clip(g - 15.0, 0.0, None))  # mas, Gaia-DR3-like
    dec = np.asarray(stars["dec"], float)
    t["id"] = stars["id"]
    t["ra"] = (np.asarray(stars["ra"]) + rng.normal(0, 1, n) * sig * _MAS / np.cos(np.deg2rad(dec))) * t["ra"].unit
    t["dec"] = (dec + rng.normal(0, 1, n) * sig * _MAS) * t["dec"].unit
    t["ra_err_mas"] = sig * t["ra_err_mas"].unit
    t["dec_err_mas"] = sig * t["dec_err_mas"].unit
    for name, scale in (("pmra", 1.1), ("pmdec", 1.1)):
        t[name] = (np.asarray(stars[name]) + rng.normal(0, 1, n) * sig * scale) * t[name].unit
        t[name + "_err"] = sig * scale * t[name + "_err"].unit
    t["parallax"] = (np.asarray(stars["parallax"]) + rng.normal(0, 1, n) * sig * 1.3) * t["parallax"].unit
    t["parallax_err"] = sig * 1.3 * t["parallax_err"].unit
    t["epoch"] = np.full(n, cfg.refcat_epoch) * t["epoch"].unit
    t["g_mag"] = g * t["g_mag"].unit
    return t


def make_survey(config_or_preset: Any = "tiny", *, rng: Any = None, render: bool | None = None,
                progress: bool = False, **overrides: Any) -> Survey:
    """Simulate a survey of calibrated exposures (or catalogs) with full truth.

    The truth chain, shared by the rendered and catalog-level modes, is: objects at
    the reference epoch -> proper motion and parallax to the visit epoch ->
    differential chromatic refraction for the object's SED -> true WCS (tangent plane
    about the dithered boresight, rotator, per-visit astrometric turbulence, radial
    optical distortion, detector placement errors) -> pixel position; flux through
    the locally shifted bandpass and the zeropoint map; the PSF at the object's
    effective wavelength and field position (chromatic, spatially varying,
    atmosphere ⊗ optics, rendered by GalSim). Exposures are background-included,
    flat-fielded expectations in e⁻ plus Poisson noise and read noise; the variance
    plane is the true expectation plus read noise squared; saturated pixels are
    clipped, bled along columns and flagged SAT.

    Parameters
    ----------
    config_or_preset : str or SurveyConfig
        ``"tiny"`` (unit tests: 2 visits x 4 detectors of 256², ~2 s), ``"small"``
        (the demo: 6 visits x 9 detectors of 512² in g and r), ``"large"``
        (benchmarks: 4k x 4k detectors, rendered lazily) or a configuration.
    rng : None, int or numpy.random.Generator
        Seed of everything; the same seed gives the same survey, and the truth is the
        same in rendered and catalog-level modes.
    render : bool, optional
        Override ``config.render``: False gives the catalog-level mode
        (``survey.catalogs``), True renders every exposure now (``large`` renders
        lazily through :meth:`Survey.exposure`).
    progress : bool
        Show a tqdm progress bar over exposures.
    **overrides
        Configuration fields to change.

    Returns
    -------
    Survey

    Raises
    ------
    InvalidInputError
        An invalid configuration (the message names the field).

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> s = make_survey("tiny", rng=1)
    >>> len(s.keys()), s.exposure(*s.keys()[0]).image.dtype
    (8, dtype('float32'))
    """
    cfg = get_config(config_or_preset, **overrides)
    if render is not None:
        if not isinstance(render, bool):
            raise InvalidInputError(f"`render` must be True, False or None; got {render!r}")
        cfg = cfg.replace(render=render)
    base = as_rng(rng)
    seed = base.integers(2**63)
    ss = np.random.SeedSequence(int(seed))
    s_fp, s_vis, s_sky, s_ref, s_models = (np.random.default_rng(s) for s in ss.spawn(5))
    fp = make_focal_plane(cfg.n_det_x, cfg.n_det_y, cfg.det_shape, pixel_scale_arcsec=cfg.pixel_scale_arcsec,
                          gap_px=cfg.gap_px, placement_sigma_um=cfg.placement_sigma_um,
                          rotation_sigma_arcsec=cfg.rotation_sigma_arcsec, distortion_k3=cfg.distortion_k3,
                          rng=s_fp)
    visits = _visit_table(cfg, s_vis)
    half_width = fp.field_radius_deg + cfg.dither_arcsec / 3600.0 + 0.01
    objects, sso = make_sky(cfg, half_width, s_sky, encounter_mjds=np.asarray(visits["mjd"]),
                            sso_radius_deg=0.5 * fp.field_radius_deg)
    ref_ast = _astrometric_refcat(cfg, objects, s_ref)
    ref_phot = _photometric_refcat(cfg, objects, s_ref)
    models = _visit_models(cfg, fp, visits, s_models)
    survey = Survey(cfg, fp, visits, objects, sso, ref_ast, ref_phot, {}, {}, {}, models, int(seed))
    keys = [(int(v), d) for v in visits["visit"] for d in range(fp.n_detectors)]
    for key in keys:
        survey.truth[key] = observe(survey, *key)
    eager = cfg.render and cfg.det_shape[0] * cfg.det_shape[1] <= 2048 * 2048
    if cfg.render and eager:
        it = keys
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(keys, desc="rendering", unit="exp")
        for key in it:
            survey.exposure(*key)
    elif not cfg.render:
        for key in keys:
            survey.catalogs[key] = catalog_sources(survey, *key)
    return survey


def _key_rng(survey: Survey, visit: int, detector: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(survey._seed, spawn_key=(visit, detector, stream)))


def observe(survey: Survey, visit: int, detector: int) -> ExposureTruth:
    """The truth chain for one (visit, detector), without pixels.

    Computes where every object lands (motion, parallax, DCR, true WCS), its flux in
    e⁻ through the shifted bandpass and zeropoint map, and the truth models (WCS,
    TAN-SIP approximation, PSF, PhotoCalib). Both modes use this function, so the
    rendered and catalog-level positions of an object are the same numbers.

    Parameters
    ----------
    survey : Survey
        From :func:`make_survey`.
    visit, detector : int
        The exposure.

    Returns
    -------
    ExposureTruth
        With ``background``, ``noiseless`` and ``trail_mask`` None.

    Raises
    ------
    InvalidInputError
        Unknown visit or detector.
    """
    cfg, fp = survey.config, survey.focal_plane
    sel = np.nonzero(np.asarray(survey.visits["visit"]) == visit)[0]
    if sel.size != 1 or not (0 <= detector < fp.n_detectors):
        raise InvalidInputError(f"(visit, detector) = ({visit}, {detector}) is not in this survey")
    row = survey.visits[int(sel[0])]
    band, mjd = str(row["band"]), float(row["mjd"])
    model = survey._visit_models[visit]
    wcs = _truth_wcs(fp, row, detector, model)
    tpsf = TruthExposurePsf(model.psf, wcs, fp, detector, band, cfg.bandpass_shift_nm, cfg.stamp_size)
    radius = fp.field_radius_deg
    ny, nx = cfg.det_shape

    # zeropoint map (AB mag of 1 e-) and a Chebyshev PhotoCalib fitted to it
    zp_visit = float(row["zeropoint"])

    def zeropoint_map(x: Any, y: Any) -> np.ndarray:
        u, v = tpsf.field_position(x, y)
        return zp_visit + _zp_offset(model, u, v, radius)

    gx, gy = np.meshgrid(np.linspace(0, nx - 1, 9), np.linspace(0, ny - 1, 9))
    zpg = zeropoint_map(gx.ravel(), gy.ravel())
    zp_c = float(zeropoint_map((nx - 1) / 2, (ny - 1) / 2))
    frac = 10 ** (-0.4 * (zpg - zp_c)) - 1.0
    xs = (2 * gx.ravel() - (nx - 1)) / (nx - 1)
    ys = (2 * gy.ravel() - (ny - 1)) / (ny - 1)
    vander = np.polynomial.chebyshev.chebvander2d(xs, ys, [3, 3])
    coef, *_ = np.linalg.lstsq(vander, frac, rcond=None)
    photo_calib = PhotoCalib(zeropoint=zp_c, spatial_coefficients=coef.reshape(4, 4), bbox=(0, nx - 1, 0, ny - 1))

    # positions of every object: motion + parallax, DCR, true WCS
    obj = survey.objects
    dm = light_curve_mag_offset(obj, mjd)
    ra, dec = propagate_to_epoch(np.asarray(obj["ra"]), np.asarray(obj["dec"]), np.asarray(obj["pmra"]),
                                 np.asarray(obj["pmdec"]), np.asarray(obj["parallax"]),
                                 epoch_mjd=cfg.refcat_epoch, mjd=mjd)
    kinds = np.asarray(obj["kind"]).astype("U9")
    ids = np.asarray(obj["id"])
    temp = np.asarray(obj["temperature"], float)
    tilt = np.asarray(obj["tilt"], float)
    mag_r = np.asarray(obj["mag_r"], float)
    hlr = np.maximum(np.asarray(obj["disk_hlr"], float), np.asarray(obj["bulge_hlr"], float))
    if len(survey.sso):
        sra, sdec, smag = sso_positions(survey.sso, mjd)
        ra = np.concatenate([ra, sra])
        dec = np.concatenate([dec, sdec])
        kinds = np.concatenate([kinds, np.full(len(sra), "sso", dtype="U9")])
        ids = np.concatenate([ids, np.asarray(survey.sso["id"])])
        temp = np.concatenate([temp, np.full(len(sra), 5800.0)])
        tilt = np.concatenate([tilt, np.zeros(len(sra))])
        mag_r = np.concatenate([mag_r, smag])
        dm = np.concatenate([dm, np.zeros(len(sra))])
        hlr = np.concatenate([hlr, np.zeros(len(sra))])
    # cheap preselection in the tangent plane around the detector centre
    cu, cv = fp.detector_center_field(detector)
    cra, cdec = wcs.pixel_to_world_values((nx - 1) / 2.0, (ny - 1) / 2.0)
    cosd = np.cos(np.deg2rad(cdec))
    d_deg = np.hypot((ra - cra + 180.0) % 360.0 - 180.0, 0) * cosd
    d_deg = np.hypot(d_deg, dec - cdec)
    half_diag = 0.5 * math.hypot(nx, ny) * cfg.pixel_scale_arcsec / 3600.0
    near = d_deg < half_diag + (_MAX_STAMP // 2 + 10) * cfg.pixel_scale_arcsec * 1.01 / 3600.0
    idx = np.nonzero(near)[0]
    zen = float(row["zenith_deg"])
    q = np.deg2rad(float(row["parallactic_deg"]))
    x0, y0 = wcs.world_to_pixel_values(ra[idx], dec[idx])
    shift = tpsf.bandpass_shift(x0, y0)
    dcr = np.asarray(dcr_offset_arcsec(temp[idx], band, zen, tilt=tilt[idx], shift_nm=shift, method="interpolate"), float)
    dra = dcr * np.sin(q) / 3600.0 / np.cos(np.deg2rad(dec[idx]))
    ddec = dcr * np.cos(q) / 3600.0
    x, y = wcs.world_to_pixel_values(ra[idx] + dra, dec[idx] + ddec)
    # loose cut at the largest stamp, then the exact one: an object is kept when its own
    # rendering stamp (which grows with flux and size) reaches the detector
    loose = _MAX_STAMP // 2
    keep = (x > -loose) & (x < nx - 1 + loose) & (y > -loose) & (y < ny - 1 + loose) & np.isfinite(dm[idx])
    idx, x, y, dcr = idx[keep], x[keep], y[keep], dcr[keep]
    shift = tpsf.bandpass_shift(x, y)
    u, v = tpsf.field_position(x, y)
    offs = ab_magnitude_offsets(temp[idx], [band], tilt=tilt[idx], reference_band="r",
                                method="interpolate")[band] if band != "r" else 0.0
    mag_std = mag_r[idx] + np.asarray(offs, float) + dm[idx]
    inst_mag = mag_std + bandpass_shift_mag(temp[idx], band, shift, tilt=tilt[idx])
    zp_local = zp_visit + _zp_offset(model, u, v, radius)
    flux = 10 ** (-0.4 * (inst_mag - zp_local))
    half = np.array([_stamp_size(cfg, str(k), f, h) // 2 for k, f, h in zip(kinds[idx], flux, hlr[idx])])
    keep = (x > -half) & (x < nx - 1 + half) & (y > -half) & (y < ny - 1 + half)
    idx, x, y, dcr, shift, u, v = idx[keep], x[keep], y[keep], dcr[keep], shift[keep], u[keep], v[keep]
    mag_std, inst_mag, flux = mag_std[keep], inst_mag[keep], flux[keep]
    src = QTable()
    src["id"] = ids[idx]
    src["kind"] = kinds[idx]
    src["x"] = x
    src["y"] = y
    src["flux"] = flux
    src["mag"] = mag_std
    src["inst_mag"] = inst_mag
    src["temperature"] = temp[idx]
    src["tilt"] = tilt[idx]
    src["wave_eff"] = np.asarray(effective_wavelength(temp[idx], band, tilt=tilt[idx], shift_nm=shift,
                                                      method="interpolate"), float)
    src["dcr_mas"] = dcr * 1000.0
    src["u"] = u
    src["v"] = v
    src["in_image"] = (x >= -0.5) & (x < nx - 0.5) & (y >= -0.5) & (y < ny - 0.5)
    src.meta.update(visit=visit, detector=detector, band=band, mjd=mjd)
    return ExposureTruth(visit, detector, band, mjd, wcs, tpsf, photo_calib, zeropoint_map, src)


def _background(survey: Survey, truth: ExposureTruth) -> np.ndarray:
    cfg = survey.config
    ny, nx = cfg.det_shape
    model = survey._visit_models[truth.visit]
    row = survey.visits[np.nonzero(np.asarray(survey.visits["visit"]) == truth.visit)[0][0]]
    ng = 9
    gx = np.linspace(0, nx - 1, ng)
    gy = np.linspace(0, ny - 1, ng)
    xx, yy = np.meshgrid(gx, gy)
    u, v = truth.psf.field_position(xx.ravel(), yy.ravel())
    zp = truth.zeropoint_map(xx.ravel(), yy.ravel())
    area = np.abs(np.linalg.det(np.asarray(truth.wcs.local_jacobian(xx.ravel(), yy.ravel()), float)))
    sky = 10 ** (-0.4 * (float(row["sky_mag"]) - zp)) * area * _sky_factor(model, u, v, survey.focal_plane.field_radius_deg)
    from scipy.interpolate import RectBivariateSpline

    spl = RectBivariateSpline(gy, gx, sky.reshape(ng, ng), kx=3, ky=3)
    return spl(np.arange(ny), np.arange(nx)).astype(np.float64)


_MAX_STAMP = 257


def _stamp_size(cfg: SurveyConfig, kind: str, flux: float, hlr_arcsec: float) -> int:
    """Odd side of the stamp an object is rendered on (the renderer and the truth
    chain's detector membership both use it)."""
    if kind == "galaxy":
        size = int(2 * math.ceil(6 * hlr_arcsec / cfg.pixel_scale_arcsec) + 1)
        return min(max(cfg.stamp_size, size), _MAX_STAMP)
    return min(_point_stamp_size(cfg.stamp_size, flux), _MAX_STAMP)


def _point_stamp_size(base: int, flux: float) -> int:
    """Odd stamp side for a point source: larger for brighter sources so the flux lost
    beyond the stamp (Kolmogorov wings, ~0.5% at 16 px of 0.2", ~0.16% at 32 px, ~0.05%
    at 64 px) stays below ~0.3 sigma of a large-aperture measurement on LSST-like sky."""
    if flux < 5e4:
        return base
    if flux < 2e5:
        return max(base, 65)
    if flux < 2e6:
        return max(base, 129)
    return max(base, 257)


def _add_stamp(image: np.ndarray, stamp: np.ndarray, ix: int, iy: int) -> None:
    h = stamp.shape[0] // 2
    ny, nx = image.shape
    y0, y1 = iy - h, iy + h + 1
    x0, x1 = ix - h, ix + h + 1
    sy0, sx0 = max(0, -y0), max(0, -x0)
    sy1 = stamp.shape[0] - max(0, y1 - ny)
    sx1 = stamp.shape[1] - max(0, x1 - nx)
    if sy1 <= sy0 or sx1 <= sx0:
        return
    image[max(y0, 0):min(y1, ny), max(x0, 0):min(x1, nx)] += stamp[sy0:sy1, sx0:sx1]


def _galaxy_profile(row, psf_profile: galsim.GSObject, shear: tuple[float, float], flux: float) -> galsim.GSObject:
    bf = float(row["bulge_frac"])
    parts = []
    if bf > 0:
        parts.append(galsim.DeVaucouleurs(half_light_radius=float(row["bulge_hlr"]), flux=bf, gsparams=_GSPARAMS)
                     .shear(e1=float(row["bulge_e1"]), e2=float(row["bulge_e2"])))
    if bf < 1:
        parts.append(galsim.Exponential(half_light_radius=float(row["disk_hlr"]), flux=1 - bf, gsparams=_GSPARAMS)
                     .shear(e1=float(row["disk_e1"]), e2=float(row["disk_e2"])))
    gal = galsim.Add(parts) if len(parts) > 1 else parts[0]
    gal = gal.shear(g1=shear[0], g2=shear[1])
    return galsim.Convolve(gal, psf_profile, gsparams=_GSPARAMS).withFlux(flux)


def _bleed(image: np.ndarray, mask: np.ndarray, level: float) -> None:
    """Clip pixels above ``level`` and spill the excess charge along the column."""
    sat_cols = np.unique(np.nonzero(image > level)[1])
    ny = image.shape[0]
    for c in sat_cols:
        col = image[:, c]
        over = np.nonzero(col > level)[0]
        excess = float(np.sum(col[over] - level))
        col[over] = level
        mask[over, c] |= np.uint32(MaskPlane.SAT)
        lo, hi = int(over.min()), int(over.max())
        while excess > 0 and (lo > 0 or hi < ny - 1):
            for j in (lo - 1, hi + 1):
                if 0 <= j < ny and excess > 0:
                    room = max(level - col[j], 0.0)
                    take = min(room, excess / 2 if (lo > 0 and hi < ny - 1) else excess)
                    col[j] += take
                    excess -= take
                    if col[j] >= level * (1 - 1e-9):
                        mask[j, c] |= np.uint32(MaskPlane.SAT)
            lo, hi = max(lo - 1, 0), min(hi + 1, ny - 1)


def render_exposure(survey: Survey, visit: int, detector: int, *, rng: Any = None) -> tuple[Exposure, ExposureTruth]:
    """Render one (visit, detector) of a survey: noisy calibrated exposure plus truth.

    Parameters
    ----------
    survey : Survey
        From :func:`make_survey` (any mode).
    visit, detector : int
        The exposure.
    rng : None, int or Generator, optional
        Noise seed; by default a stream derived from the survey seed and the key, so
        rendering order never changes the result.

    Returns
    -------
    exposure : Exposure
        image (float32, e⁻, background included), variance (float32, e⁻²), mask
        (SAT where saturated or bled), psf = the truth PSF, wcs = the TAN-SIP
        approximation of the true WCS, photo_calib = the true grey calibration.
    truth : ExposureTruth
        With ``background``, ``noiseless`` and ``trail_mask`` filled.

    Raises
    ------
    InvalidInputError
        Unknown visit or detector.
    """
    key = (int(visit), int(detector))
    truth = survey.truth.get(key) or observe(survey, *key)
    cfg = survey.config
    ny, nx = cfg.det_shape
    noise_rng = _key_rng(survey, *key, 0) if rng is None else as_rng(rng)
    bkg = _background(survey, truth)
    model = np.zeros((ny, nx), dtype=np.float64)
    tpsf = truth.psf
    objrow = {int(i): k for k, i in enumerate(np.asarray(survey.objects["id"]))}
    srcs = truth.sources
    jacs = (np.asarray(truth.wcs.local_jacobian(np.asarray(srcs["x"], float), np.asarray(srcs["y"], float)), float)
            if len(srcs) else np.zeros((0, 2, 2)))
    for s, jac in zip(srcs, jacs):
        x, y, flux = float(s["x"]), float(s["y"]), float(s["flux"])
        if flux <= 0:
            continue
        kind = str(s["kind"])
        psf_prof = tpsf.truth_psf.sky_profile(float(s["u"]), float(s["v"]), float(s["wave_eff"]))
        if kind == "galaxy":
            row = survey.objects[objrow[int(s["id"])]]
            prof = _galaxy_profile(row, psf_prof, cfg.shear, flux)
            n = _stamp_size(cfg, kind, flux, max(float(row["disk_hlr"]), float(row["bulge_hlr"])))
        else:
            prof = psf_prof.withFlux(flux)
            n = _stamp_size(cfg, kind, flux, 0.0)
        stamp = tpsf.draw(x, y, profile=prof, shape=n, flux=flux, jacobian=jac)
        _add_stamp(model, stamp, int(round(x)), int(round(y)))
    trail_mask = np.zeros((ny, nx), bool)
    vm = survey._visit_models[key[0]]
    if vm.trail is not None:
        trail = _trail_image(survey, truth, vm.trail)
        model += trail
        trail_mask = trail > 0.5 * np.sqrt(bkg + cfg.read_noise**2)
    noiseless = bkg + model
    variance = noiseless + cfg.read_noise**2
    image = noise_rng.poisson(noiseless).astype(np.float64) + noise_rng.normal(0.0, cfg.read_noise, (ny, nx))
    mask = np.zeros((ny, nx), dtype=np.uint32)
    if (image > cfg.saturation_level).any():
        _bleed(image, mask, cfg.saturation_level)
    row = survey.visits[np.nonzero(np.asarray(survey.visits["visit"]) == key[0])[0][0]]
    exp = Exposure(image.astype(np.float32), variance.astype(np.float32), mask, psf=tpsf,
                   wcs=truth.tan_sip.wcs, photo_calib=truth.photo_calib, band=truth.band, visit=key[0],
                   detector=key[1], mjd=truth.mjd, exptime=float(row["exptime"]), airmass=float(row["airmass"]),
                   metadata={"simulated": True, "survey_seed": survey._seed})
    full = dataclasses.replace(truth, background=bkg.astype(np.float32), noiseless=noiseless.astype(np.float32),
                               trail_mask=trail_mask)
    full.__dict__["tan_sip"] = truth.tan_sip  # keep the cached approximation
    return exp, full


def _trail_image(survey: Survey, truth: ExposureTruth, trail: tuple[float, float, float, float]) -> np.ndarray:
    """A straight satellite trail (Gaussian cross-section of the PSF's width) in pixels."""
    cfg, fp = survey.config, survey.focal_plane
    ny, nx = cfg.det_shape
    u0, v0, ang, brightness = trail
    # two points of the trail in field angle -> pixels of this detector (locally straight)
    pts = []
    for s in (-1.0, 1.0):
        fu, fv = u0 + s * 0.05 * math.cos(ang), v0 + s * 0.05 * math.sin(ang)
        fx, fy = fp.field_to_focal(fu, fv)
        px, py = fp.focal_to_pixel(truth.detector, fx, fy)
        pts.append((float(px), float(py)))
    (xa, ya), (xb, yb) = pts
    dx, dy = xb - xa, yb - ya
    norm = math.hypot(dx, dy)
    yy, xx = np.mgrid[0:ny, 0:nx]
    dist = np.abs((xx - xa) * dy - (yy - ya) * dx) / norm
    sigma_px = 0.7 / 2.3548 / cfg.pixel_scale_arcsec
    per_px = brightness * cfg.pixel_scale_arcsec  # e- per pixel of length
    return per_px * np.exp(-0.5 * (dist / sigma_px) ** 2) / (math.sqrt(2 * math.pi) * sigma_px)


# ----------------------------------------------------------------------------- catalogs
def catalog_sources(survey: Survey, visit: int, detector: int, *, rng: Any = None,
                    include_galaxies: bool = False) -> QTable:
    """Catalog-level mode: the measured point sources of one (visit, detector).

    Noise-free positions and fluxes come from :func:`observe` (the same numbers the
    renderer uses); measurement errors are the Cramér–Rao bounds of a PSF fit with
    known PSF and background, from the Fisher matrix of the (flux, x, y) model
    :math:`\\mu_i = F p_i(x, y) + B_i` with pixel variance :math:`V_i = \\mu_i +
    \\sigma_{\\rm read}^2` (Poisson + read noise; the variance's own dependence on
    the parameters is neglected, as a weighted least-squares fit does), the PSF
    drawn by GalSim at the detector centre for each source's effective wavelength
    (nearest of 3, spanning the sources' range: the PSF size changes by < 0.5% between them). Measured values are the noise-free ones plus a draw from that
    covariance. Only point sources (stars, injected, transients, SSOs) centred on
    the detector with flux > 0 are listed.

    Parameters
    ----------
    survey : Survey
        From :func:`make_survey`.
    visit, detector : int
        The exposure.
    rng : None, int or Generator, optional
        Measurement-noise seed (default: derived from the survey seed and the key).
    include_galaxies : bool
        Also list the galaxies centred on the detector, after the point sources, and add
        adaptive-second-moment columns ``shape_xx, shape_yy, shape_xy`` with their
        ``*_err`` (pixels²) to every row, for star/galaxy separation tests (see
        :func:`_galaxy_rows`). The point-source rows and their noise draws are the same
        as without it (the extra noise comes from a separate stream).

    Returns
    -------
    astropy.table.QTable
        ``visit, detector, id, object_id, kind, band, mjd, x, y, x_err, y_err, xy_cov``
        (pixels), ``psf_flux, psf_flux_err`` (e⁻), and the noise-free truth
        ``x_true, y_true, flux_true``; with ``include_galaxies`` also the moment columns.
    """
    from astropy import units as un

    if not isinstance(include_galaxies, bool):
        raise InvalidInputError(f"`include_galaxies` must be True or False; got {include_galaxies!r}")

    key = (int(visit), int(detector))
    truth = survey.truth.get(key) or observe(survey, *key)
    cfg = survey.config
    rng_ = _key_rng(survey, *key, 1) if rng is None else as_rng(rng)
    src = truth.sources
    sel = np.isin(np.asarray(src["kind"]), _POINT_KINDS) & np.asarray(src["in_image"]) & (np.asarray(src["flux"]) > 0)
    src = src[sel]
    n = len(src)
    ny, nx = cfg.det_shape
    xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
    row = survey.visits[np.nonzero(np.asarray(survey.visits["visit"]) == key[0])[0][0]]
    # the renderer's sky (zeropoint map x local pixel area x focal-plane gradient) at each source
    sx, sy = np.asarray(src["x"], float), np.asarray(src["y"], float)
    zp = truth.zeropoint_map(sx, sy) if n else np.zeros(0)
    area = np.abs(np.linalg.det(np.asarray(truth.wcs.local_jacobian(sx, sy), float))) if n else np.zeros(0)
    su, sv = truth.psf.field_position(sx, sy) if n else (np.zeros(0), np.zeros(0))
    bkg = (10 ** (-0.4 * (float(row["sky_mag"]) - zp)) * area
           * _sky_factor(survey._visit_models[key[0]], su, sv, survey.focal_plane.field_radius_deg))
    fluxes = np.asarray(src["flux"], float)
    waves = np.asarray(src["wave_eff"], float)
    cov = np.zeros((n, 3, 3))
    if n:
        grid = np.linspace(waves.min(), waves.max(), 3) if np.ptp(waves) > 0 else waves[:1]
        which = np.abs(waves[:, None] - grid[None, :]).argmin(axis=1)
        u, v = truth.psf.field_position(xc, yc)
        jw = truth.psf.galsim_wcs(xc, yc)
        h = 1e-3
        for k, lam in enumerate(grid):
            members = np.nonzero(which == k)[0]
            if members.size == 0:
                continue
            prof = truth.psf.truth_psf.sky_profile(float(u), float(v), float(lam))
            draw = lambda ox, oy: prof.drawImage(nx=cfg.stamp_size, ny=cfg.stamp_size, wcs=jw, offset=(ox, oy),
                                                  dtype=np.float64).array.ravel()
            p = draw(0.0, 0.0)
            px = (draw(h, 0.0) - p) / h  # forward differences: O(h) = 1e-3 relative
            py = (draw(0.0, h) - p) / h
            F = fluxes[members][:, None]
            V = bkg[members][:, None] + F * p[None, :] + cfg.read_noise**2
            d = [p[None, :] * np.ones_like(F), F * px[None, :], F * py[None, :]]
            fisher = np.empty((members.size, 3, 3))
            for a in range(3):
                for b in range(a, 3):
                    fisher[:, a, b] = fisher[:, b, a] = np.sum(d[a] * d[b] / V, axis=1)
            cov[members] = np.linalg.inv(fisher)
    noise = np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng_.normal(size=(n, 3))) if n else np.zeros((0, 3))
    out = QTable()
    out["visit"] = np.full(n, key[0], dtype=np.int64)
    out["detector"] = np.full(n, key[1], dtype=np.int32)
    out["id"] = key[0] * 10_000_000 + key[1] * 100_000 + np.arange(n, dtype=np.int64)
    out["object_id"] = np.asarray(src["id"], dtype=np.int64)
    out["kind"] = np.asarray(src["kind"])
    out["band"] = np.full(n, truth.band, dtype="U1")
    out["mjd"] = np.full(n, truth.mjd)
    out["x"] = (np.asarray(src["x"]) + noise[:, 1]) * un.pix
    out["y"] = (np.asarray(src["y"]) + noise[:, 2]) * un.pix
    out["x_err"] = np.sqrt(cov[:, 1, 1]) * un.pix
    out["y_err"] = np.sqrt(cov[:, 2, 2]) * un.pix
    out["xy_cov"] = cov[:, 1, 2] * un.pix**2
    out["psf_flux"] = (fluxes + noise[:, 0]) * un.electron
    out["psf_flux_err"] = np.sqrt(cov[:, 0, 0]) * un.electron
    out["x_true"] = np.asarray(src["x"]) * un.pix
    out["y_true"] = np.asarray(src["y"]) * un.pix
    out["flux_true"] = fluxes * un.electron
    out.meta.update(visit=key[0], detector=key[1], band=truth.band, mjd=truth.mjd, mode="catalog-level")
    if include_galaxies:
        out = _galaxy_rows(survey, truth, out, _key_rng(survey, *key, 2) if rng is None else rng_)
    return out


def _gaussian_moments(hlr: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """Second-moment matrices (n, 2, 2) of Gaussians with half-light radius ``hlr`` and
    distortion ``(e1, e2)`` (determinant kept: sigma = hlr / sqrt(2 ln 2))."""
    s2 = (np.asarray(hlr, float) / math.sqrt(2.0 * math.log(2.0))) ** 2
    e1, e2 = np.asarray(e1, float), np.asarray(e2, float)
    norm = s2 / np.sqrt(np.clip(1.0 - e1 * e1 - e2 * e2, 1e-6, None))
    m = np.empty(np.shape(s2) + (2, 2))
    m[..., 0, 0] = norm * (1 + e1)
    m[..., 1, 1] = norm * (1 - e1)
    m[..., 0, 1] = m[..., 1, 0] = norm * e2
    return m


def _galaxy_rows(survey: Survey, truth: ExposureTruth, points: QTable, rng_: np.random.Generator) -> QTable:
    """Catalog-level galaxies and second moments for :func:`catalog_sources`.

    The moments are those of Gaussian approximations: the PSF's adaptive moments (GalSim
    HSM on the PSF drawn at the detector centre, at 3 effective wavelengths spanning the
    sources') plus, for a galaxy, the flux-weighted moments of its bulge and disk, each
    a Gaussian of the same half-light radius and ellipticity, sheared by the survey
    shear and mapped to pixels by the local WCS Jacobian (moments of Gaussians add under
    convolution). Galaxy centroid and flux errors are those of a PSF-like Gaussian fit of
    that size on the same background (Cramér–Rao, e.g. var(x) = s²/F + 8 pi s⁴ B / F²,
    var(F) = F + 4 pi s² B); moment errors are sigma(T)/T = 2/nu for T = Ixx + Iyy and a
    flux S/N nu (the marginal error of a Gaussian's size fitted with its flux), split as
    sigma(Ixx) = sigma(Iyy) = sigma(T)/sqrt(2), sigma(Ixy) = sigma(T)/2. These are
    approximations: they reproduce how star/galaxy separation degrades with S/N, not a
    rendered galaxy's exact moments.
    """
    from astropy import units as un

    cfg = survey.config
    key = (truth.visit, truth.detector)
    ny, nx = cfg.det_shape
    xc, yc = (nx - 1) / 2.0, (ny - 1) / 2.0
    src = truth.sources
    gsel = (np.asarray(src["kind"]) == "galaxy") & np.asarray(src["in_image"]) & (np.asarray(src["flux"]) > 0)
    gal = src[gsel]
    ng = len(gal)
    objrow = {int(i): k for k, i in enumerate(np.asarray(survey.objects["id"]))}
    orow = np.array([objrow[int(i)] for i in np.asarray(gal["id"])], dtype=np.int64)
    objs = survey.objects
    # PSF adaptive moments at 3 wavelength nodes
    psel = np.isin(np.asarray(points["object_id"]), np.asarray(src["id"]))
    id2wave = dict(zip(np.asarray(src["id"]).tolist(), np.asarray(src["wave_eff"], float).tolist()))
    pw = np.array([id2wave.get(int(i), np.nan) for i in np.asarray(points["object_id"])], float)
    gw = np.asarray(gal["wave_eff"], float)
    allw = np.concatenate([pw[np.isfinite(pw)], gw])
    grid = np.linspace(allw.min(), allw.max(), 3) if allw.size and np.ptp(allw) > 0 else (
        allw[:1] if allw.size else np.array([600.0]))
    u, v = truth.psf.field_position(xc, yc)
    jw = truth.psf.galsim_wcs(xc, yc)
    pm = np.zeros((len(grid), 2, 2))
    for k, lam in enumerate(grid):
        prof = truth.psf.truth_psf.sky_profile(float(u), float(v), float(lam))
        img = prof.drawImage(nx=cfg.stamp_size, ny=cfg.stamp_size, wcs=jw, dtype=np.float64)
        res = galsim.hsm.FindAdaptiveMom(img, strict=True)
        s = res.moments_sigma
        e1, e2 = res.observed_shape.e1, res.observed_shape.e2
        t = 2 * s * s / math.sqrt(1 - e1 * e1 - e2 * e2)
        pm[k] = [[0.5 * t * (1 + e1), 0.5 * t * e2], [0.5 * t * e2, 0.5 * t * (1 - e1)]]

    def psf_mom(w: np.ndarray) -> np.ndarray:
        w = np.where(np.isfinite(w), w, grid[len(grid) // 2])
        return pm[np.abs(w[:, None] - grid[None, :]).argmin(axis=1)]

    # galaxy intrinsic moments (arcsec², east/north) -> pixels
    g1, g2 = cfg.shear
    a = np.array([[1 + g1, g2], [g2, 1 - g1]]) / math.sqrt(1 - g1 * g1 - g2 * g2)
    bf = np.asarray(objs["bulge_frac"], float)[orow]
    mb = _gaussian_moments(np.asarray(objs["bulge_hlr"])[orow], np.asarray(objs["bulge_e1"])[orow],
                           np.asarray(objs["bulge_e2"])[orow])
    md = _gaussian_moments(np.asarray(objs["disk_hlr"])[orow], np.asarray(objs["disk_e1"])[orow],
                           np.asarray(objs["disk_e2"])[orow])
    msky = a @ (bf[:, None, None] * mb + (1 - bf)[:, None, None] * md) @ a.T
    jinv = np.linalg.inv(np.asarray(truth.wcs.local_jacobian(xc, yc), float))
    mgal = jinv @ msky @ jinv.T + psf_mom(gw)
    # background per pixel at each galaxy (as the point sources': sky through the zeropoint map)
    row = survey.visits[np.nonzero(np.asarray(survey.visits["visit"]) == key[0])[0][0]]
    gx, gy = np.asarray(gal["x"], float), np.asarray(gal["y"], float)
    zp = truth.zeropoint_map(gx, gy) if ng else np.zeros(0)
    area = np.abs(np.linalg.det(np.asarray(truth.wcs.local_jacobian(gx, gy), float))) if ng else np.zeros(0)
    bkg = 10 ** (-0.4 * (float(row["sky_mag"]) - zp)) * area + cfg.read_noise**2
    flux = np.asarray(gal["flux"], float)
    s2 = 0.5 * (mgal[:, 0, 0] + mgal[:, 1, 1])  # per-axis size²
    var_x = s2 / flux + 8 * math.pi * s2**2 * bkg / flux**2
    var_f = flux + 4 * math.pi * s2 * bkg
    nz = rng_.normal(size=(ng, 3))
    grows = QTable()
    grows["visit"] = np.full(ng, key[0], dtype=np.int64)
    grows["detector"] = np.full(ng, key[1], dtype=np.int32)
    grows["id"] = key[0] * 10_000_000 + key[1] * 100_000 + len(points) + np.arange(ng, dtype=np.int64)
    grows["object_id"] = np.asarray(gal["id"], dtype=np.int64)
    grows["kind"] = np.asarray(gal["kind"])
    grows["band"] = np.full(ng, truth.band, dtype="U1")
    grows["mjd"] = np.full(ng, truth.mjd)
    grows["x"] = (gx + nz[:, 0] * np.sqrt(var_x)) * un.pix
    grows["y"] = (gy + nz[:, 1] * np.sqrt(var_x)) * un.pix
    grows["x_err"] = np.sqrt(var_x) * un.pix
    grows["y_err"] = np.sqrt(var_x) * un.pix
    grows["xy_cov"] = np.zeros(ng) * un.pix**2
    grows["psf_flux"] = (flux + nz[:, 2] * np.sqrt(var_f)) * un.electron
    grows["psf_flux_err"] = np.sqrt(var_f) * un.electron
    grows["x_true"] = gx * un.pix
    grows["y_true"] = gy * un.pix
    grows["flux_true"] = flux * un.electron
    out = vstack([points, grows], metadata_conflicts="silent")
    mom = np.concatenate([psf_mom(pw), mgal]) if len(out) else np.zeros((0, 2, 2))
    nu = np.asarray(out["psf_flux_err"].value) ** -1 * np.asarray(out["flux_true"].value)
    tt = mom[:, 0, 0] + mom[:, 1, 1]
    sig_t = 2.0 * tt / np.maximum(nu, 1e-3)
    mz = rng_.normal(size=(len(out), 3))
    out["shape_xx"] = (mom[:, 0, 0] + mz[:, 0] * sig_t / math.sqrt(2)) * un.pix**2
    out["shape_yy"] = (mom[:, 1, 1] + mz[:, 1] * sig_t / math.sqrt(2)) * un.pix**2
    out["shape_xy"] = (mom[:, 0, 1] + mz[:, 2] * sig_t / 2) * un.pix**2
    out["shape_xx_err"] = sig_t / math.sqrt(2) * un.pix**2
    out["shape_yy_err"] = sig_t / math.sqrt(2) * un.pix**2
    out["shape_xy_err"] = sig_t / 2 * un.pix**2
    out.meta.update(points.meta)
    return out
