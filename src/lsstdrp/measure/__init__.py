"""Source measurement: centroids, adaptive moments and PSF-corrected shapes,
aperture / PSF / Kron fluxes, pixel flags and ``measure_sources``.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
