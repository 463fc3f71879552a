"""Joint astrometric and photometric calibration of all visits over a sky region:
association, sparse least-squares astrometry and photometry, colours and a
PSF-star catalog.

The stage chains as::

    assoc = associate(catalogs, visits, wcs, refcat)          # objects + Gaia matches
    astro = fit_astrometry(assoc)                            # WCS per (visit, detector)
    phot = fit_photometry(assoc, photometric_refcat, astrometry=astro)  # PhotoCalib
    stars = psf_star_catalog(assoc, photometry=phot)         # for the final PSF

- :func:`associate` groups the sources of many visits into objects (running-mean
  matching on the sphere with :class:`scipy.spatial.cKDTree`), matches a Gaia-like
  reference catalog propagated by proper motion and parallax, and marks isolated
  objects.
- :func:`fit_astrometry` fits per-detector ∘ per-visit polynomials and a tangent
  plane (the gbdes/WCSFit model, Bernstein et al. 2017) by Gauss–Newton, the stars
  eliminated exactly (Schur complement), with Gaia ties, optional proper motions and
  parallaxes, a systematic floor, outlier rejection and reserved validation stars;
  the result exports TAN-SIP WCSs with their error stated, the detector placement and
  residuals for an E/B-mode analysis (:func:`eb_correlation`).
- :func:`fit_photometry` fits per-visit zeropoints with a Chebyshev focal-plane term,
  per-detector terms and an optional colour term (ubercal / FGCM structure) and returns
  a :class:`lsstdrp.core.PhotoCalib` per (visit, detector), mean calibrated
  magnitudes and colours.
- :func:`psf_star_catalog` selects isolated, unresolved, bright stars with colours.
"""

from ._associate import Association, associate
from ._astrometry import AstrometryResult, ReducedOrder, fit_astrometry
from ._ebmodes import eb_correlation
from ._export import TanSipExport, export_tan_sip
from ._geometry import propagate_refcat
from ._model import AstrometricModel
from ._photometry import PhotometricModel, PhotometryResult, fit_photometry
from ._psfstars import psf_star_catalog

__all__ = [
    "associate",
    "Association",
    "fit_astrometry",
    "AstrometryResult",
    "AstrometricModel",
    "ReducedOrder",
    "fit_photometry",
    "PhotometryResult",
    "PhotometricModel",
    "psf_star_catalog",
    "eb_correlation",
    "export_tan_sip",
    "TanSipExport",
    "propagate_refcat",
]
