"""PSF-star selection and PSF models: spatially varying pixel-basis and analytic
models, chromatic PSFs and visit-level (focal-plane) fits.

- :func:`select_psf_stars`: PSF candidates from a source catalog (size locus, S/N,
  flags, isolation, optional reference catalog), a reserved fraction held out;
- :func:`fit_psf`: a spatially varying pixel-grid model (PSFEx / PIFF ``PixelGrid``
  family, sub-pixel centring by interpolating the model, optional oversampling and
  colour dependence, outlier rejection) or a fast analytic (Gaussian / Moffat) model,
  returning a frozen :class:`PsfFitResult`;
- the models :class:`PixelGridPsf`, :class:`AnalyticPsf` (both satisfy the
  :class:`lsstdrp.core.Psf` protocol) on a :class:`PolynomialBasis`.
"""

from ._fit import PSF_MODELS, PsfFitResult, fit_psf
from ._models import AnalyticPsf, PixelGridPsf, PolynomialBasis, VisitPixelGridPsf
from ._select import select_psf_stars

__all__ = [
    "select_psf_stars",
    "fit_psf",
    "PsfFitResult",
    "PSF_MODELS",
    "PixelGridPsf",
    "AnalyticPsf",
    "VisitPixelGridPsf",
    "PolynomialBasis",
]
