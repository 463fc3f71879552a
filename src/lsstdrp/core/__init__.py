"""Shared types and conventions used by every lsstdrp stage (DESIGN.md section 2).

- :class:`MaskPlane` and the mask rule (:func:`normalize_mask`, :func:`bad_pixel_mask`);
- :class:`Exposure`, the frozen carrier of image, variance, mask and metadata;
- camera geometry (:class:`BBox`, :class:`Amplifier`, :class:`DetectorGeometry`), the
  :class:`RawFrame` and the :class:`Calibs` container, plain data with FITS I/O;
- the :class:`Psf` / :class:`VisitPsf` protocols with :class:`GaussianPsf`,
  :class:`MoffatPsf`, :class:`ImagePsf` and adapters to GalSim and photutils;
- :class:`PhotoCalib` (e⁻ -> nJy);
- the catalog column registry and reference-catalog schemas;
- boundary validation helpers and the error taxonomy.
"""

from .._errors import (
    AccuracyWarning,
    ConvergenceError,
    InputDataWarning,
    InvalidInputError,
    LsstDrpError,
    LsstDrpWarning,
    ResourceLimitError,
)
from ._mask import DEFAULT_BAD_PLANES, MaskPlane
from ._exposure import Exposure
from ._camera import (
    Amplifier,
    BBox,
    Calibs,
    DetectorGeometry,
    Linearity,
    PhotonTransferCurve,
    RawFrame,
    make_detector_geometry,
)
from ._photocalib import AB_MAG_OF_1_NJY, PhotoCalib, abmag_to_njy, njy_to_abmag
from ._psf import (
    GaussianPsf,
    ImagePsf,
    MoffatPsf,
    Psf,
    VisitPsf,
    from_galsim,
    from_photutils,
    to_galsim,
    to_photutils,
)
from ._schema import (
    APERTURE_RADII,
    ASTROMETRIC_REFCAT_COLUMNS,
    DPDD_NAMES,
    GAIA_DR3_EPOCH_MJD,
    SEXTRACTOR_NAMES,
    CORE_SOURCE_COLUMNS,
    SOURCE_COLUMNS,
    SURVEY_BANDS,
    ColumnSpec,
    column_spec,
    empty_catalog,
    empty_refcat,
    photometric_refcat_columns,
    register_column,
    rename_catalog,
    validate_refcat,
)
from ._validate import (
    as_image,
    as_rng,
    bad_pixel_mask,
    check_in,
    check_positive,
    check_same_shape,
    image_dtype,
    normalize_mask,
)

__all__ = [
    "LsstDrpError",
    "InvalidInputError",
    "ConvergenceError",
    "ResourceLimitError",
    "LsstDrpWarning",
    "InputDataWarning",
    "AccuracyWarning",
    "MaskPlane",
    "Exposure",
    "BBox",
    "Amplifier",
    "DetectorGeometry",
    "make_detector_geometry",
    "RawFrame",
    "Linearity",
    "PhotonTransferCurve",
    "Calibs",
    "PhotoCalib",
    "AB_MAG_OF_1_NJY",
    "abmag_to_njy",
    "njy_to_abmag",
    "Psf",
    "VisitPsf",
    "GaussianPsf",
    "MoffatPsf",
    "ImagePsf",
    "to_galsim",
    "from_galsim",
    "to_photutils",
    "from_photutils",
    "ColumnSpec",
    "SOURCE_COLUMNS",
    "CORE_SOURCE_COLUMNS",
    "APERTURE_RADII",
    "SURVEY_BANDS",
    "GAIA_DR3_EPOCH_MJD",
    "ASTROMETRIC_REFCAT_COLUMNS",
    "DPDD_NAMES",
    "SEXTRACTOR_NAMES",
    "column_spec",
    "empty_catalog",
    "empty_refcat",
    "photometric_refcat_columns",
    "register_column",
    "rename_catalog",
    "validate_refcat",
    "DEFAULT_BAD_PLANES",
    "as_image",
    "as_rng",
    "bad_pixel_mask",
    "check_in",
    "check_positive",
    "check_same_shape",
    "image_dtype",
    "normalize_mask",
]
