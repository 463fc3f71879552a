"""Detection: PSF matched-filter significance maps, thresholding, footprints and
peaks, merging across coadds, bands and epochs.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
