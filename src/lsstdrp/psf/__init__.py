"""PSF-star selection and PSF models: spatially varying pixel-basis and analytic
models, chromatic PSFs and visit-level (focal-plane) fits.

- :func:`select_psf_stars`: PSF candidates from a source catalog (size locus, S/N,
  flags, isolation, optional reference catalog), a reserved fraction held out;
- :func:`fit_psf`: a spatially varying pixel-grid model (PSFEx / PIFF ``PixelGrid``
  family, sub-pixel centring by interpolating the model, optional oversampling and
  colour dependence, outlier rejection) or a fast analytic (Gaussian / Moffat) model,
  returning a frozen :class:`PsfFitResult`;
- :func:`fit_visit_psf`: one model over all detectors of a visit (shared focal-plane
  polynomial plus per-detector terms with a ridge prior), ``psf_for(detector)``;
- :func:`residual_maps`: size/shape residual maps and the mean residual stamp;
- :func:`write_psf` / :func:`read_psf` (FITS), :func:`from_piff` and :func:`to_piff`;
- the models :class:`PixelGridPsf`, :class:`AnalyticPsf` (both satisfy the
  :class:`lsstdrp.core.Psf` protocol) on a :class:`PolynomialBasis`.
"""

from ._fit import PSF_MODELS, PsfFitResult, fit_psf
from ._models import AnalyticPsf, PixelGridPsf, PolynomialBasis, VisitPixelGridPsf
from ._diagnostics import ResidualMaps, residual_maps
from ._io import from_piff, read_psf, to_piff, write_psf
from ._select import select_psf_stars
from ._visit import affine_transform, fit_visit_psf

__all__ = [
    "select_psf_stars",
    "fit_psf",
    "fit_visit_psf",
    "affine_transform",
    "write_psf",
    "read_psf",
    "from_piff",
    "to_piff",
    "residual_maps",
    "ResidualMaps",
    "PsfFitResult",
    "PSF_MODELS",
    "PixelGridPsf",
    "AnalyticPsf",
    "VisitPixelGridPsf",
    "PolynomialBasis",
]
