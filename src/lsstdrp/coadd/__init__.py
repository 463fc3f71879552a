"""Warping with variance and masks, sky tiling, direct coadds with CoaddPsf, pixel
covariance, PSF-matched / matched-filter / decorrelated coadds, artifact rejection
and background matching.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
