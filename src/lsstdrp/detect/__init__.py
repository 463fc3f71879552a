"""Detection: PSF matched-filter significance maps, thresholding, footprints and
peaks, and a SExtractor/sep-compatible extraction.

Available now: :func:`significance_map` and :func:`detect_sources` (footprints as an
int32 label image, peaks as a QTable, ``DETECTED`` / ``DETECTED_NEGATIVE`` mask bits,
both polarities, optional multi-threshold split) and :func:`extract_sextractor`
(SExtractor 2.x / sep isophotal extraction, for reproducing existing catalogues).
Merging of footprints across coadds, bands and epochs is still to come (see
``docs/dataflow.yaml``).
"""

from ._detect import (
    PEAK_COLUMNS,
    SEXTRACTOR_COLUMNS,
    SEXTRACTOR_FILTER,
    Detections,
    detect_sources,
    extract_sextractor,
    significance_map,
)

__all__ = [
    "Detections",
    "detect_sources",
    "significance_map",
    "extract_sextractor",
    "SEXTRACTOR_FILTER",
    "PEAK_COLUMNS",
    "SEXTRACTOR_COLUMNS",
]
