"""Single-frame and full-visit characterization: background estimation, astrometric
and photometric calibration, aperture corrections and the ``characterize_exposure``
recipe.

Available now: background and background-rms estimation on a mesh
(:func:`estimate_background`, SExtractor-compatible by default, with clipped
mean/median/mode statistics and bicubic-spline, Akima or Chebyshev interpolation).
The calibration steps and the recipe are still to come (see ``docs/dataflow.yaml``).
"""

from ._background import BACKGROUND_BAD_PLANES, BackgroundResult, estimate_background

__all__ = ["BackgroundResult", "estimate_background", "BACKGROUND_BAD_PLANES"]
