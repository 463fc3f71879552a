"""Source measurement: centroids, shapes, fluxes, sizes, local background and pixel flags.

Array-level functions, each vectorised over sources (numba kernels, no Python loop per
source) and returning a frozen result dataclass of arrays with a ``flags`` array of
:class:`MeasurementFlag` bits:

- centroids: :func:`sdss_centroid` (quadratic fit to the smoothed 3x3 peak, Pier et al.
  2003) and :func:`gaussian_centroid` (windowed, SExtractor ``XWIN``), with errors;
- shapes: :func:`adaptive_moments` (Bernstein & Jarvis 2002, matching
  ``galsim.hsm.FindAdaptiveMom``) and :func:`psf_corrected_shape` (HSM
  re-Gaussianization, Hirata & Seljak 2003);
- fluxes: :func:`aperture_flux` and :func:`elliptical_aperture_flux` (exact overlap or
  SExtractor sub-sampling), :func:`psf_flux` (linear PSF fit), :func:`kron_radius`,
  :func:`kron_flux` (SExtractor ``FLUX_AUTO`` rules) and :func:`flux_radius`;
- :func:`local_background` (clipped mean in an annulus).

:func:`measure_sources` runs them all on an image and a detection list (or any catalog
with ``x``, ``y``) and returns one full-schema :class:`~astropy.table.QTable`, one row per
source always, failures flagged.
"""

from ._aperture import ApertureFluxes, aperture_flux, elliptical_aperture_flux
from ._background import LocalBackground, local_background
from ._centroid import Centroids, gaussian_centroid, psf_sigma, sdss_centroid
from ._flags import MeasurementFlag
from ._hsm import PsfCorrectedShapes, psf_corrected_shape
from ._kron import FluxRadii, KronFluxes, flux_radius, kron_flux, kron_radius
from ._measure import FLUX_RADIUS_FRACTIONS, measure_sources
from ._moments import AdaptiveMoments, adaptive_moments
from ._psfflux import PsfFluxes, psf_flux

__all__ = [
    "measure_sources",
    "sdss_centroid",
    "gaussian_centroid",
    "psf_sigma",
    "adaptive_moments",
    "psf_corrected_shape",
    "aperture_flux",
    "elliptical_aperture_flux",
    "psf_flux",
    "kron_radius",
    "kron_flux",
    "flux_radius",
    "local_background",
    "MeasurementFlag",
    "FLUX_RADIUS_FRACTIONS",
    "Centroids",
    "AdaptiveMoments",
    "PsfCorrectedShapes",
    "ApertureFluxes",
    "PsfFluxes",
    "KronFluxes",
    "FluxRadii",
    "LocalBackground",
]
