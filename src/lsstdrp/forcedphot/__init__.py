"""Forced photometry at fixed object positions on every exposure, including
neighbour-aware fits.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
