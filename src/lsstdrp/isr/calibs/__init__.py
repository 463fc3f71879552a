"""Calibration products (the Rubin ``cp_pipe`` equivalent): what ISR consumes.

- master frames: :func:`make_master_bias`, :func:`make_master_dark`,
  :func:`make_master_flat` and the general :func:`combine_frames` (sigma-clipped mean
  or median, streamed by row tiles from paths or lazy sequences);
- photon transfer curve: :func:`measure_ptc` (gain, read noise, :math:`a_{ij}` and
  covariances from flat pairs, Astier et al. 2019) -> :class:`PtcResult` with its plot;
- brighter-fatter kernel: :func:`solve_bf_kernel` (from the PTC covariances, with what
  the scalar kernel cannot represent);
- :func:`measure_crosstalk` (coefficients from bright sources), :func:`find_defects`
  (hot, dead, bad columns from master darks and flats), :func:`fit_linearity` with
  :func:`amp_levels` (polynomial or spline, with the turnoff);
- wavelength-dependent photometric correction: :func:`chromatic_correction` (pure
  synthetic photometry, local vs standard bandpass) and :func:`fit_chromatic_correction`
  (a smooth :class:`ChromaticCorrectionMap` of focal-plane position and colour).

Every product goes into :class:`lsstdrp.core.Calibs` (``bias``, ``dark``, ``flat``,
``ptc``, ``gains``, ``read_noises``, ``bf_kernel``, ``crosstalk``, ``defects``,
``linearity``, ``chromatic``), which round-trips through FITS.
"""

from ._bfkernel import BfKernelResult, solve_bf_kernel
from ._crosstalk import CrosstalkFit, measure_crosstalk
from ._defects import DefectResult, find_defects
from ._linearity import LinearityFit, amp_levels, fit_linearity
from ._chromatic import (
    ChromaticCorrectionMap,
    ChromaticFit,
    chromatic_correction,
    fit_chromatic_correction,
    synthetic_ab_magnitude,
)
from ._combine import MasterFrame, combine_frames, make_master_bias, make_master_dark, make_master_flat
from ._ptc import PtcResult, covariance_model, measure_ptc, pair_covariances

__all__ = [
    "combine_frames",
    "make_master_bias",
    "make_master_dark",
    "make_master_flat",
    "measure_ptc",
    "covariance_model",
    "pair_covariances",
    "solve_bf_kernel",
    "measure_crosstalk",
    "find_defects",
    "amp_levels",
    "fit_linearity",
    "synthetic_ab_magnitude",
    "chromatic_correction",
    "fit_chromatic_correction",
    "ChromaticCorrectionMap",
    "ChromaticFit",
    "MasterFrame",
    "PtcResult",
    "BfKernelResult",
    "CrosstalkFit",
    "DefectResult",
    "LinearityFit",
]
