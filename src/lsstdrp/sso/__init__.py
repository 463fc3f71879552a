"""Solar-system objects: orbit propagation, association of DIA sources with known
orbits, tracklets.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
