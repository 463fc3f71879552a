"""Forward-model fitting of objects to individual exposures in all bands,
including proper motion, parallax and shear.

Not built yet: this subpackage will hold the public functions of its stage
(see ``docs/dataflow.yaml``); it currently defines nothing.
"""
