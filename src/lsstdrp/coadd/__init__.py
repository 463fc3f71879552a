"""Warping with variance and masks, sky tiling, direct coadds with CoaddPsf, pixel
covariance, and the convolution helper of the coadd stage.

- :func:`warp` / :func:`warp_exposure`: Lanczos3/5 or bilinear resampling of image,
  variance and mask between WCSs, with the sampled pixel covariance
  (:class:`PixelCovariance`, ``measurement_variance(weights)``) and the PSF mapped to the
  output frame (:class:`WarpedPsf`);
- :class:`Tract` / :class:`Patch` sky tiling and :func:`select_inputs`;
- :func:`coadd`: weighted-mean or median direct coadd with sigma clipping, assembled
  strip by strip from in-memory warps or warp files (:func:`write_warp`), with its
  :class:`CoaddPsf`, input counts and covariance;
- :func:`convolve`: convolution of image and variance with stated boundary handling.
"""

from ._covariance import PixelCovariance
from ._coadd import CoaddPsf, CoaddResult, ConvolutionResult, coadd, convolve, read_warp, write_warp
from ._tiling import Patch, Tract, select_inputs
from ._warp import KERNELS, WarpedPsf, WarpResult, warp, warp_exposure

__all__ = [
    "warp",
    "warp_exposure",
    "WarpResult",
    "WarpedPsf",
    "PixelCovariance",
    "KERNELS",
    "Tract",
    "Patch",
    "select_inputs",
    "coadd",
    "CoaddResult",
    "CoaddPsf",
    "write_warp",
    "read_warp",
    "convolve",
    "ConvolutionResult",
]
