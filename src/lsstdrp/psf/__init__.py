"""PSF-star selection and PSF models: spatially varying pixel-basis and analytic
models, chromatic PSFs and visit-level (focal-plane) fits.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
