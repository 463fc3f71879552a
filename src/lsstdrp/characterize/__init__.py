"""Single-frame and full-visit characterization: background estimation, astrometric
and photometric calibration, aperture corrections and the ``characterize_exposure``
recipe.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
