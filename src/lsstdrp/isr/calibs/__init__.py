"""Calibration products (the Rubin ``cp_pipe`` equivalent): what ISR consumes.

- master frames: :func:`make_master_bias`, :func:`make_master_dark`,
  :func:`make_master_flat` and the general :func:`combine_frames` (sigma-clipped mean
  or median, streamed by row tiles from paths or lazy sequences).
"""

from ._combine import MasterFrame, combine_frames, make_master_bias, make_master_dark, make_master_flat

__all__ = [
    "combine_frames",
    "make_master_bias",
    "make_master_dark",
    "make_master_flat",
    "MasterFrame",
]
