"""A GalSim-based survey simulator with truth: the test bed of every lsstdrp stage.

``make_survey(preset_or_config, rng=...)`` builds noisy *calibrated* exposures (image
and variance in e⁻, uint32 mask) of a focal plane of detectors over several visits,
with the truth of everything: true WCS (placement errors, optical distortion,
astrometric turbulence) and its TAN-SIP approximation, the chromatic spatially varying
PSF (GalSim), background, zeropoint map, noiseless image, and truth catalogs; or, in
catalog-level mode, per-(visit, detector) source catalogs from the same truth chain.

``make_raw(truth_image, geometry, rng=...)`` turns a calibrated truth image into raw
multi-amplifier frames (one or two snaps) with every instrumental effect and its truth,
and ``make_calibration_exposures`` makes biases, darks, flats and flat pairs of the same
detector.

The simulator imports only ``lsstdrp.core`` types (never an algorithm), and no
algorithm imports it, so a bug cannot cancel out between the two.
"""

from ._astrometry import TanSipApprox, TruthWcs, TurbulenceField, fit_tan_sip, make_turbulence, propagate_to_epoch
from ._chromatic import (
    BANDS,
    ab_magnitude_offsets,
    atmospheric_fwhm_arcsec,
    bandpass,
    color_index,
    dcr_offset_arcsec,
    dcr_variance_arcsec2,
    effective_wavelength,
    reference_wavelength,
    refraction_arcsec,
    sed_photons,
)
from ._config import PRESETS, SurveyConfig, get_config
from ._focalplane import FocalPlane, make_focal_plane
from ._photometry import bandpass_shift_mag
from ._raw import (
    RawEffects,
    RawSimulation,
    SensorTruth,
    apply_brighter_fatter,
    bf_kernel_from_aij,
    displace_charge,
    make_bf_aij,
    make_calibration_exposures,
    make_raw,
    make_sensor_truth,
)
from ._sky import kepler_propagate, light_curve_mag_offset, make_sky, sso_positions
from ._survey import (
    ExposureTruth,
    Survey,
    TruthExposurePsf,
    catalog_sources,
    make_survey,
    observe,
    render_exposure,
)
from ._truthpsf import TruthPsf, make_truth_psf

__all__ = [
    "make_survey",
    "render_exposure",
    "observe",
    "catalog_sources",
    "Survey",
    "ExposureTruth",
    "TruthExposurePsf",
    "SurveyConfig",
    "PRESETS",
    "get_config",
    "FocalPlane",
    "make_focal_plane",
    "TruthWcs",
    "TanSipApprox",
    "TurbulenceField",
    "fit_tan_sip",
    "make_turbulence",
    "propagate_to_epoch",
    "TruthPsf",
    "make_truth_psf",
    "BANDS",
    "bandpass",
    "sed_photons",
    "ab_magnitude_offsets",
    "color_index",
    "effective_wavelength",
    "reference_wavelength",
    "refraction_arcsec",
    "dcr_offset_arcsec",
    "dcr_variance_arcsec2",
    "atmospheric_fwhm_arcsec",
    "bandpass_shift_mag",
    "make_sky",
    "light_curve_mag_offset",
    "sso_positions",
    "kepler_propagate",
    "make_raw",
    "make_calibration_exposures",
    "make_sensor_truth",
    "RawEffects",
    "RawSimulation",
    "SensorTruth",
    "displace_charge",
    "make_bf_aij",
    "bf_kernel_from_aij",
    "apply_brighter_fatter",
]
