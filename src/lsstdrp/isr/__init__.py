"""Instrument signature removal: from raw amplifier data to an exposure in electrons.

Every correction is a pure function on arrays (inputs are never modified) that can be
used alone:

- overscan: :func:`fit_overscan`, :func:`subtract_overscan` (serial or parallel;
  median per row by default, polynomial or spline along the rows, sigma clipping);
- :func:`mask_saturation` (``SAT``/``SUSPECT`` with bleed-trail growth);
- :func:`correct_crosstalk` (matrix and quadratic term; saturated sources flagged
  ``CROSSTALK``) and :func:`assemble_amplifiers` (flips);
- :func:`correct_linearity` (polynomial, spline, lookup table);
- :func:`subtract_bias`, :func:`subtract_dark` (scaled by the dark time),
  :func:`apply_flat` (``NO_DATA`` where the flat is ~0), :func:`make_variance`;
- :func:`correct_brighter_fatter` (Coulton et al. 2018, flux conserving);
- :func:`mask_defects` and :func:`interpolate_bad_pixels` (``INTRP``);
- cosmic rays: :func:`detect_cosmic_rays` (PSF-aware, one exposure) and
  :func:`combine_snaps` (from the difference of two snaps).

:func:`run_isr` chains them in the standard order for one detector (one snap or two)
and returns an :class:`IsrResult` with the :class:`~lsstdrp.core.Exposure`, the
cosmic-ray result and per-step diagnostics.

The calibration products that ISR consumes (master frames, photon transfer curve, BF
kernel, crosstalk, defects, linearity, chromatic corrections) are built by
:mod:`lsstdrp.isr.calibs`.
"""

from ._amps import CrosstalkResult, amp_segments, assemble_amplifiers, correct_crosstalk
from ._bf import BrighterFatterResult, correct_brighter_fatter
from ._calibrate import (
    CalibrationResult,
    FlatResult,
    apply_flat,
    make_variance,
    mask_defects,
    subtract_bias,
    subtract_dark,
)
from ._cosmicrays import (
    CR_BAD_PLANES,
    CosmicRayResult,
    SnapCombination,
    combine_snaps,
    detect_cosmic_rays,
    psf_sharpness_ratios,
)
from ._interp import InterpolationResult, interpolate_bad_pixels
from ._linearity import LinearityResult, correct_linearity
from ._overscan import OverscanResult, fit_overscan, subtract_overscan
from ._run import ISR_STEPS, IsrResult, run_isr
from ._saturation import mask_saturation

__all__ = [
    "run_isr",
    "IsrResult",
    "ISR_STEPS",
    "fit_overscan",
    "subtract_overscan",
    "mask_saturation",
    "correct_crosstalk",
    "assemble_amplifiers",
    "amp_segments",
    "correct_linearity",
    "subtract_bias",
    "subtract_dark",
    "apply_flat",
    "make_variance",
    "mask_defects",
    "correct_brighter_fatter",
    "interpolate_bad_pixels",
    "detect_cosmic_rays",
    "combine_snaps",
    "psf_sharpness_ratios",
    "OverscanResult",
    "CrosstalkResult",
    "LinearityResult",
    "CalibrationResult",
    "FlatResult",
    "BrighterFatterResult",
    "InterpolationResult",
    "CosmicRayResult",
    "SnapCombination",
    "CR_BAD_PLANES",
]
