"""Sensor distortion characterization: tree rings and pixel-area variations from
dithered observations and flats.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
