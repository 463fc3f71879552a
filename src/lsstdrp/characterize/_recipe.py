"""The characterization recipe: background, detection, measurement, PSF, astrometry,
aperture correction and photometric calibration of one exposure."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._errors import InvalidInputError
from ..core import AB_MAG_OF_1_NJY, Exposure, GaussianPsf
from ._apcorr import ApertureCorrection, apply_aperture_correction, fit_aperture_correction
from ._astrometry import WcsFitResult, fit_wcs
from ._background import BackgroundResult, estimate_background
from ._common import check_pos
from ._photometry import PhotoCalibResult, fit_photo_calib

__all__ = ["StepStatus", "CharacterizeResult", "characterize_exposure"]

log = logging.getLogger("lsstdrp.characterize")

STEPS = ("background", "detection", "measurement", "psf", "astrometry", "aperture_correction", "photometry")


@dataclasses.dataclass(frozen=True)
class StepStatus:
    """Outcome of one step of :func:`characterize_exposure`.

    Attributes
    ----------
    success : bool
    reason : str
        Empty on success; what went wrong (and what was used instead) otherwise.
    """

    success: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True, eq=False)
class CharacterizeResult:
    """Result of :func:`characterize_exposure`.

    Attributes
    ----------
    exposure : Exposure
        A new exposure: background-subtracted image, the input variance and mask (with
        ``DETECTED`` bits), ``psf`` (the fitted model, or the initial one if the PSF fit
        failed), ``wcs`` (the fitted TAN-SIP WCS; None if astrometry failed) and
        ``photo_calib`` (None if photometry failed).
    catalog : astropy.table.QTable
        One row per detection: the measurement schema with aperture-corrected fluxes,
        ``ra, dec`` (from the fitted WCS), ``psf_flux_njy, psf_mag`` (from the fitted
        calibration), the PSF-star columns of :func:`lsstdrp.psf.select_psf_stars` and
        ``calib_astrometry_used`` / ``calib_photometry_used``.
    background : BackgroundResult
    psf_result : object or None
        The :class:`lsstdrp.psf.PsfFitResult` (None when the PSF was given and not fitted).
    wcs_result : WcsFitResult or None
    aperture_correction : ApertureCorrection or None
    photometry_result : PhotoCalibResult or None
    steps : dict
        ``step name ->`` :class:`StepStatus` for ``background, detection, measurement,
        psf, astrometry, aperture_correction, photometry``.
    success : bool
        Every step succeeded.
    reason : str
        The failed steps and their reasons.
    """

    exposure: Exposure
    catalog: QTable
    background: BackgroundResult | None
    psf_result: Any
    wcs_result: WcsFitResult | None
    aperture_correction: ApertureCorrection | None
    photometry_result: PhotoCalibResult | None
    steps: dict
    success: bool
    reason: str


def _moments_psf(cat: QTable, psf0: Any) -> tuple[Any, str]:
    """Fallback PSF: a round Gaussian with the median adaptive size of the likely stars.

    The stars are the PSF candidates when the table has them, otherwise the sources with
    S/N >= 20 whose size ``T = shape_xx + shape_yy`` lies in the lowest third (stars are
    the smallest sources); sigma = sqrt(T / 2).
    """
    try:
        t = np.asarray(getattr(cat["shape_xx"], "value", cat["shape_xx"]), float) + np.asarray(
            getattr(cat["shape_yy"], "value", cat["shape_yy"]), float)
        f = np.asarray(getattr(cat["psf_flux"], "value", cat["psf_flux"]), float)
        fe = np.asarray(getattr(cat["psf_flux_err"], "value", cat["psf_flux_err"]), float)
    except KeyError:
        return psf0, "kept the starting PSF"
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = np.isfinite(t) & (t > 0) & (f / fe >= 20)
    if "psf_candidate" in cat.colnames and np.sum(ok & np.asarray(cat["psf_candidate"], bool)) >= 1:
        ok &= np.asarray(cat["psf_candidate"], bool)
    elif ok.sum() >= 3:
        ok &= t <= np.percentile(t[ok], 33.3)
    if not ok.any():
        return psf0, "kept the starting PSF"
    sigma = float(np.sqrt(np.median(t[ok]) / 2.0))
    return GaussianPsf(sigma), f"used a round Gaussian (sigma {sigma:.2f} px) from the adaptive moments of {int(ok.sum())} stars"


def characterize_exposure(exposure: Exposure, refcat: Any, *, photometric_refcat: Any = None, wcs: Any = None,
                          psf: Any = None, initial_fwhm_px: float = 4.0, fit_psf: bool = True,
                          psf_model: str = "pixel", psf_spatial_order: int = 2, detection_threshold: float = 5.0,
                          background_bin_size: int = 128, sip_order: int = 3, max_offset_arcsec: float = 60.0,
                          max_rotation_deg: float = 1.0, max_scale_error: float = 0.02,
                          apcorr_reference: str = "ap_flux_r17", apcorr_order: int = 1,
                          color: tuple[str, str] | None = None, color_order: int = 0,
                          photometry_spatial_order: int = 0, shapes: bool = False) -> CharacterizeResult:
    r"""Characterize one exposure: background, sources, PSF, WCS, aperture corrections, zeropoint.

    Parameters
    ----------
    exposure : Exposure
        An instrument-corrected exposure (e⁻, background included) with ``mjd`` and
        ``band``; its ``wcs`` is the approximate WCS unless ``wcs`` is given; its
        ``psf`` (if any) is the starting PSF.
    refcat : astropy.table.Table
        Astrometric reference catalog (Gaia-like, see :func:`fit_wcs`).
    photometric_refcat : astropy.table.Table, optional
        Photometric reference catalog with ``<band>_flux`` (default: ``refcat`` if it
        has that column; otherwise the photometry step is skipped with a reason).
    wcs : APE-14 WCS, optional
        Approximate WCS (default ``exposure.wcs``; required one way or the other).
    psf : Psf, optional
        Starting PSF for detection and the first measurement (default
        ``exposure.psf`` or a round Gaussian of FWHM ``initial_fwhm_px``).
    initial_fwhm_px : float
        FWHM (pixels) of the starting Gaussian when no PSF is known.
    fit_psf : bool
        Fit a PSF model with :func:`lsstdrp.psf.fit_psf` to stars selected by
        :func:`lsstdrp.psf.select_psf_stars` (False: keep the starting PSF).
    psf_model : str
        ``model`` of :func:`lsstdrp.psf.fit_psf` ("pixel", "gaussian", "moffat").
    psf_spatial_order : int
        Spatial order of the PSF model.
    detection_threshold : float
        Detection threshold (PSF-flux S/N).
    background_bin_size : int
        Mesh size of :func:`estimate_background`.
    sip_order, max_offset_arcsec, max_rotation_deg, max_scale_error : optional
        Passed to :func:`fit_wcs`.
    apcorr_reference : str
        Large-aperture flux column of :func:`fit_aperture_correction`.
    apcorr_order : int
        Order of the aperture-correction fields.
    color, color_order, photometry_spatial_order : optional
        Passed to :func:`fit_photo_calib` (``color``/``color_order`` its colour terms,
        ``photometry_spatial_order`` its ``spatial_order``).
    shapes : bool
        Measure PSF-corrected shapes too (slow; not needed for characterization).

    Returns
    -------
    CharacterizeResult
        Frozen; each step's success and reason in ``steps``. A failed step never
        aborts the recipe: its product is absent (None) or the previous one is kept,
        and the reason says which.

    Raises
    ------
    InvalidInputError
        Not an Exposure, no WCS at all, or (from :func:`fit_wcs`) no reference star in
        the footprint.

    Notes
    -----
    The chain (one detector; the visit-level versions are :func:`fit_visit_wcs` and
    :func:`fit_visit_background`):

    1. background: :func:`estimate_background` with one source-masking iteration,
       subtracted;
    2. detection: :func:`lsstdrp.detect.detect_sources` with the starting PSF;
    3. measurement: :func:`lsstdrp.measure.measure_sources` (centroids, moments,
       apertures, PSF flux);
    4. PSF: :func:`lsstdrp.psf.select_psf_stars` and :func:`lsstdrp.psf.fit_psf`; if
       that fails, a round Gaussian with the median adaptive size of the stars (the step
       is then reported failed, with what was used); the sources are measured again
       with the new PSF;
    5. astrometry: :func:`fit_wcs` from the approximate WCS at ``exposure.mjd``;
    6. aperture correction: :func:`fit_aperture_correction` to ``apcorr_reference``
       (if too few isolated stars, again with a 10-px isolation radius), applied to the
       catalog;
    7. photometry: :func:`fit_photo_calib` on the aperture-corrected PSF fluxes.

    This is the recipe the LSST pipelines call CalibrateImage (Bosch et al. 2018).

    References
    ----------
    .. [1] Bosch, J. et al. 2018, PASJ 70, S5 (the HSC/LSST single-frame processing).

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> s = make_survey("tiny", rng=1, n_visits=1, star_density_arcmin2=60.0)
    >>> key = s.keys()[0]
    >>> res = characterize_exposure(s.exposures[key], s.refcat_astrometric,
    ...                             photometric_refcat=s.refcat_photometric, sip_order=1, psf_spatial_order=1)
    >>> sorted(res.steps) == sorted(["background", "detection", "measurement", "psf", "astrometry",
    ...                              "aperture_correction", "photometry"])
    True
    """
    from ..detect import detect_sources
    from ..measure import measure_sources

    if not isinstance(exposure, Exposure):
        raise InvalidInputError(f"`exposure` must be an lsstdrp.core.Exposure; got {type(exposure).__name__}")
    approx_wcs = wcs if wcs is not None else exposure.wcs
    if approx_wcs is None:
        raise InvalidInputError("an approximate WCS is needed: set `exposure.wcs` or pass `wcs=`")
    initial_fwhm_px = check_pos(initial_fwhm_px, "initial_fwhm_px")
    band = exposure.band
    steps: dict[str, StepStatus] = {}
    image = exposure.image
    variance = exposure.variance
    mask = exposure.mask
    ny, nx = image.shape
    bbox = (-0.5, nx - 0.5, -0.5, ny - 0.5)

    # 1. background
    bkg = estimate_background(image, mask=mask, variance=variance, bin_size=background_bin_size,
                              detect_iterations=1)
    sub = (image - bkg.background).astype(image.dtype, copy=False)
    steps["background"] = StepStatus(True)

    # 2. detection with the starting PSF
    psf0 = psf if psf is not None else exposure.psf
    if psf0 is None:
        psf0 = GaussianPsf(initial_fwhm_px / (2.0 * math.sqrt(2.0 * math.log(2.0))))
    det = detect_sources(sub, variance, psf=psf0, threshold=detection_threshold, mask=mask)
    n_det = len(det.peaks)
    steps["detection"] = StepStatus(n_det > 0, "" if n_det else "no source above the detection threshold")

    # 3. measurement
    cat = measure_sources(sub, variance, det, psf=psf0, mask=mask, shapes=False)
    steps["measurement"] = StepStatus(True)

    # 4. PSF
    psf_final = psf0
    psf_result = None
    if fit_psf and n_det:
        from ..psf import fit_psf as _fit_psf
        from ..psf import select_psf_stars

        try:
            stars = select_psf_stars(cat)
            psf_result = _fit_psf(sub, variance, stars, mask=mask, model=psf_model, spatial_order=psf_spatial_order)
            if psf_result.success:
                psf_final = psf_result.psf
                steps["psf"] = StepStatus(True)
            else:
                psf_final, how = _moments_psf(stars, psf0)
                steps["psf"] = StepStatus(False, f"PSF fit failed ({psf_result.reason}); {how}")
            cat_psf = stars
        except InvalidInputError as exc:
            psf_final, how = _moments_psf(cat, psf0)
            steps["psf"] = StepStatus(False, f"PSF fit not possible ({exc}); {how}")
            cat_psf = None
    else:
        steps["psf"] = StepStatus(bool(not fit_psf), "" if not fit_psf else "no sources to fit a PSF to")
        cat_psf = None
    if psf_final is not psf0 or shapes:
        cat = measure_sources(sub, variance, det, psf=psf_final, mask=mask, shapes=shapes)
    if cat_psf is not None:
        for c in ("psf_candidate", "psf_reserved", "psf_reject_reason"):
            if c in cat_psf.colnames:
                cat[c] = cat_psf[c]

    # 5. astrometry
    wcs_result = None
    new_wcs = None
    if n_det:
        wcs_result = fit_wcs(cat, refcat, wcs=approx_wcs, mjd=exposure.mjd, bbox=bbox, sip_order=sip_order,
                             max_offset_arcsec=max_offset_arcsec, max_rotation_deg=max_rotation_deg,
                             max_scale_error=max_scale_error)
        steps["astrometry"] = StepStatus(wcs_result.success, wcs_result.reason)
        new_wcs = wcs_result.wcs if wcs_result.success else None
    else:
        steps["astrometry"] = StepStatus(False, "no sources")
    used_astrom = np.zeros(len(cat), bool)
    if wcs_result is not None and wcs_result.success:
        used_astrom[np.asarray(wcs_result.matches["row"])[np.asarray(wcs_result.matches["used"])]] = True
    cat["calib_astrometry_used"] = used_astrom

    # 6. aperture correction
    apc = None
    if n_det and apcorr_reference in cat.colnames:
        algos = [c for c in ("psf_flux", "ap_flux_r3", "ap_flux_r5", "ap_flux_r8", "kron_flux")
                 if c in cat.colnames and c != apcorr_reference]
        apc = fit_aperture_correction(cat, reference=apcorr_reference, algorithms=algos, order=apcorr_order,
                                      bbox=bbox)
        note = ""
        if not apc.success:
            # crowded or small detector: accept stars with neighbours beyond 10 px
            retry = fit_aperture_correction(cat, reference=apcorr_reference, algorithms=algos, order=apcorr_order,
                                            bbox=bbox, isolation_radius=10.0)
            if len(retry.fields) > len(apc.fields):
                note = f"isolation radius relaxed to 10 px ({apc.reason})"
                apc = retry
        if apc.fields:
            cat = apply_aperture_correction(cat, apc)
        steps["aperture_correction"] = StepStatus(apc.success, "; ".join(r for r in (apc.reason, note) if r)
                                                  if not apc.success else "")
    else:
        steps["aperture_correction"] = StepStatus(False, f"no sources or no {apcorr_reference!r} column")

    # 7. photometry
    phot = None
    photo_calib = None
    pref = photometric_refcat if photometric_refcat is not None else refcat
    used_phot = np.zeros(len(cat), bool)
    if new_wcs is None:
        steps["photometry"] = StepStatus(False, "no WCS to match the photometric reference catalog")
    elif band is None or f"{band}_flux" not in pref.colnames:
        steps["photometry"] = StepStatus(False, f"no '{band}_flux' column in the photometric reference catalog")
    else:
        phot = fit_photo_calib(cat, pref, band=band, wcs=new_wcs, color=color, color_order=color_order,
                               spatial_order=photometry_spatial_order, bbox=bbox)
        steps["photometry"] = StepStatus(phot.success, phot.reason)
        if phot.success:
            photo_calib = phot.photo_calib
            used_phot[np.asarray(phot.residuals["row"])[np.asarray(phot.residuals["used"])]] = True
    cat["calib_photometry_used"] = used_phot

    # world coordinates and calibrated fluxes
    x = np.asarray(getattr(cat["x"], "value", cat["x"]), float)
    y = np.asarray(getattr(cat["y"], "value", cat["y"]), float)
    if new_wcs is not None and len(cat):
        fin = np.isfinite(x) & np.isfinite(y)
        ra = np.full(len(cat), np.nan)
        dec = np.full(len(cat), np.nan)
        if fin.any():
            r_, d_ = new_wcs.pixel_to_world_values(x[fin], y[fin])
            ra[fin], dec[fin] = r_, d_
        cat["ra"] = ra * u.deg
        cat["dec"] = dec * u.deg
    if photo_calib is not None and len(cat):
        fl = np.asarray(getattr(cat["psf_flux"], "value", cat["psf_flux"]), float)
        fe = np.asarray(getattr(cat["psf_flux_err"], "value", cat["psf_flux_err"]), float)
        f, e = photo_calib.instflux_to_njy(fl, np.nan_to_num(x), np.nan_to_num(y), instflux_err=fe)
        cat["psf_flux_njy"] = np.asarray(f, float) * u.nJy
        cat["psf_flux_njy_err"] = np.asarray(e, float) * u.nJy
        with np.errstate(invalid="ignore", divide="ignore"):
            mag = np.where(f > 0, AB_MAG_OF_1_NJY - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)
        cat["psf_mag"] = mag * u.mag
    det_mask = np.asarray(mask).copy()
    from ..core import MaskPlane

    det_mask[np.asarray(det.footprints) > 0] |= np.uint32(MaskPlane.DETECTED)
    new_exp = dataclasses.replace(exposure, image=sub, variance=variance, mask=det_mask, psf=psf_final, wcs=new_wcs,
                                  photo_calib=photo_calib,
                                  metadata={**exposure.metadata, "characterized": True,
                                            "background_global": float(bkg.global_background)})
    failed = [f"{k}: {s.reason}" for k, s in steps.items() if not s.success]
    cat.meta["characterize_steps"] = {k: (s.success, s.reason) for k, s in steps.items()}
    return CharacterizeResult(new_exp, cat, bkg, psf_result, wcs_result, apc, phot, steps, not failed,
                              "; ".join(failed))
