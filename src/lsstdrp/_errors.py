"""The lsstdrp error and warning taxonomy (DESIGN.md section 2, "Errors").

Every exception raised on purpose by lsstdrp derives from :class:`LsstDrpError` and
*also* from the built-in exception a user would naturally catch, so
``except ValueError`` keeps working for code that does not know about lsstdrp.
This module imports nothing heavy so that ``import lsstdrp`` stays fast.
"""

from __future__ import annotations

__all__ = [
    "LsstDrpError",
    "InvalidInputError",
    "ConvergenceError",
    "ResourceLimitError",
    "LsstDrpWarning",
    "InputDataWarning",
    "AccuracyWarning",
]


class LsstDrpError(Exception):
    """Base class of every exception raised deliberately by lsstdrp."""


class InvalidInputError(LsstDrpError, ValueError):
    """An argument has the wrong shape, dtype, range or content.

    The message names the argument, shows what arrived and what was expected.
    """


class ConvergenceError(LsstDrpError, RuntimeError):
    """An iterative computation failed to converge where no result object can say so.

    Fitting functions prefer to return a result with ``success=False``; this is raised
    only by low-level solvers that have no result to carry the failure.
    """


class ResourceLimitError(LsstDrpError, MemoryError):
    """A request would need more memory (or another resource) than allowed.

    Parameters
    ----------
    message : str
        What was requested.
    needed_bytes : int, optional
        The memory the request would have needed.
    """

    def __init__(self, message: str, needed_bytes: int | None = None) -> None:
        super().__init__(message)
        self.needed_bytes = needed_bytes


class LsstDrpWarning(UserWarning):
    """Base class of every warning issued by lsstdrp (the message names the package)."""


class InputDataWarning(LsstDrpWarning):
    """Input data were repaired at the boundary (e.g. non-finite pixels masked NO_DATA)."""


class AccuracyWarning(LsstDrpWarning):
    """A result is valid but less accurate than requested (e.g. an approximation error)."""
