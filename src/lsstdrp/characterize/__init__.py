"""Single-frame and full-visit characterization: background, astrometric and
photometric calibration, aperture corrections and the ``characterize_exposure`` recipe.

- :func:`estimate_background`: background and rms on a mesh (SExtractor-compatible by
  default, clipped mean/median/mode statistics, bicubic-spline, Akima or Chebyshev
  interpolation);
- :func:`fit_wcs`: match a source catalog to a reference catalog (triangle pattern
  matching, robust to 60" offsets, 1 degree rotation and 2% scale errors, or blind from
  a pointing and pixel scale; references propagated by proper motion to the epoch) and
  fit a TAN-SIP WCS with outlier rejection; :func:`fit_tan_sip` is the least-squares
  fit behind it, for any matched pixel/sky pairs;
- :func:`fit_visit_wcs`: one optical-distortion polynomial shared by every detector of
  a visit plus a per-detector affine placement, exported per detector as TAN-SIP;
- :func:`fit_photo_calib`: a :class:`~lsstdrp.core.PhotoCalib` from reference
  matches, with colour terms, a smooth spatial term, outlier rejection and its error;
- :func:`fit_aperture_correction` / :func:`apply_aperture_correction`: the ratio of a
  large-aperture flux to each flux algorithm as a smooth field over the detector;
- :func:`fit_visit_background`: one smooth background model over the whole focal
  plane of a visit, continuous across detector gaps;
- :func:`characterize_exposure`: the recipe chaining background, detection,
  measurement, PSF (:mod:`lsstdrp.psf`), astrometry, aperture correction and
  photometry for one exposure, each step's success and reason recorded.
"""

from ._apcorr import ApertureCorrection, ApertureCorrectionField, apply_aperture_correction, fit_aperture_correction
from ._astrometry import WcsFitResult, fit_wcs
from ._background import BACKGROUND_BAD_PLANES, BackgroundResult, estimate_background
from ._photometry import PhotoCalibResult, fit_photo_calib
from ._recipe import CharacterizeResult, StepStatus, characterize_exposure
from ._tansip import TanSipFit, fit_tan_sip
from ._visit_astrometry import VisitWcsResult, fit_visit_wcs
from ._visit_background import VisitBackground, fit_visit_background

__all__ = [
    "BackgroundResult",
    "estimate_background",
    "BACKGROUND_BAD_PLANES",
    "fit_wcs",
    "WcsFitResult",
    "fit_tan_sip",
    "TanSipFit",
    "fit_visit_wcs",
    "VisitWcsResult",
    "fit_photo_calib",
    "PhotoCalibResult",
    "fit_aperture_correction",
    "apply_aperture_correction",
    "ApertureCorrection",
    "ApertureCorrectionField",
    "fit_visit_background",
    "VisitBackground",
    "characterize_exposure",
    "CharacterizeResult",
    "StepStatus",
]
