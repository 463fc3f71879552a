"""Deblenders: symmetric-template (SDSS-like) and multiband (scarlet-like) models
of blended objects.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
