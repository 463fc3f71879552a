"""lsstdrp: the stages of an LSST-style Data Release Production as pure functions.

Subpackages (``lsstdrp.core``, ``lsstdrp.sim``, ``lsstdrp.coadd`` ...) are imported
lazily on first attribute access, so ``import lsstdrp`` is fast; the error taxonomy is
available at the top level.

Examples
--------
>>> import lsstdrp
>>> issubclass(lsstdrp.InvalidInputError, ValueError)
True
"""

from __future__ import annotations

import importlib
from typing import Any

from ._errors import (
    AccuracyWarning,
    ConvergenceError,
    InputDataWarning,
    InvalidInputError,
    LsstDrpError,
    LsstDrpWarning,
    ResourceLimitError,
)

__version__ = "0.1.0.dev0"

SUBPACKAGES = (
    "core", "sim", "isr", "characterize", "psf", "jointcal", "coadd", "diffim",
    "detect", "deblend", "measure", "multifit", "forcedphot", "sso", "sensor",
)

__all__ = [
    "__version__",
    "LsstDrpError",
    "InvalidInputError",
    "ConvergenceError",
    "ResourceLimitError",
    "LsstDrpWarning",
    "InputDataWarning",
    "AccuracyWarning",
    *SUBPACKAGES,
]


def __getattr__(name: str) -> Any:
    if name in SUBPACKAGES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'lsstdrp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBPACKAGES))
