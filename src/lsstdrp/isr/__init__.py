"""Instrument signature removal (overscan, bias, dark, flat, linearity, crosstalk,
brighter-fatter, defects, cosmic rays, snaps) and, in ``isr.calibs``, the calibration
products that feed it (master frames, photon transfer curve, BF kernel, crosstalk,
defects, linearity, chromatic corrections).

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
