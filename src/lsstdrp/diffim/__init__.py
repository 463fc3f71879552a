"""Image subtraction: Alard-Lupton PSF matching, ZOGY, decorrelation, DIA sources
and dipole fitting.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
