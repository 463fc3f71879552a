"""Warping with variance and masks, sky tiling, direct coadds with CoaddPsf, pixel
covariance, and the convolution helper of the coadd stage.

- :func:`warp` / :func:`warp_exposure`: Lanczos3/5 or bilinear resampling of image,
  variance and mask between WCSs, with the sampled pixel covariance
  (:class:`PixelCovariance`, ``measurement_variance(weights)``) and the PSF mapped to the
  output frame (:class:`WarpedPsf`);
"""

from ._covariance import PixelCovariance
from ._warp import KERNELS, WarpedPsf, WarpResult, warp, warp_exposure

__all__ = [
    "warp",
    "warp_exposure",
    "WarpResult",
    "WarpedPsf",
    "PixelCovariance",
    "KERNELS",
]
