"""Joint astrometric and photometric calibration of all visits over a sky region:
association, sparse least-squares astrometry and photometry, colours and a
PSF-star catalog.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
