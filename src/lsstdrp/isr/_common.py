"""Shared boundary helpers of :mod:`lsstdrp.isr` (private)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core import InvalidInputError, MaskPlane, as_image, bad_pixel_mask, normalize_mask

#: Mask bits that ISR steps treat as "no usable value" unless told otherwise.
ISR_BAD_PLANES = (
    MaskPlane.BAD
    | MaskPlane.SAT
    | MaskPlane.NO_DATA
    | MaskPlane.UNMASKEDNAN
    | MaskPlane.SUSPECT
    | MaskPlane.EDGE
)

__all__ = [
    "ISR_BAD_PLANES",
    "check_finite_scalar",
    "check_int",
    "float_image",
    "mask_and_bad",
]


def float_image(array: Any, name: str, *, allow_nonfinite: bool = True) -> np.ndarray:
    """Validate a 2-D image (dtype policy of :func:`lsstdrp.core.as_image`)."""
    return as_image(array, name, allow_nonfinite=allow_nonfinite)


def mask_and_bad(
    mask: Any,
    shape: tuple[int, ...],
    bad_planes: Any,
    *,
    image: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    default: int | MaskPlane = ISR_BAD_PLANES,
    warn: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(uint32 MaskPlane mask (new array), boolean exclusion) from a user ``mask`` argument.

    A boolean ``mask`` becomes ``BAD``; non-finite image/variance pixels become
    ``NO_DATA``; the exclusion uses ``bad_planes`` (default ``default``).
    """
    m = normalize_mask(mask, shape, image=image, variance=variance, warn=warn)
    bad = bad_pixel_mask(m, default if bad_planes is None else bad_planes)
    return m, bad


def check_finite_scalar(value: Any, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """``float(value)`` after checking it is finite (and >= / > ``minimum``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a number; got {value!r}") from None
    if not np.isfinite(v):
        raise InvalidInputError(f"`{name}` must be finite; got {value!r}")
    if minimum is not None and (v < minimum or (strict and v == minimum)):
        rel = ">" if strict else ">="
        raise InvalidInputError(f"`{name}` must be {rel} {minimum}; got {value!r}")
    return v


def check_int(value: Any, name: str, *, minimum: int = 0) -> int:
    """``int(value)`` after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"`{name}` must be an integer >= {minimum}; got {value!r}")
    if int(value) < minimum:
        raise InvalidInputError(f"`{name}` must be an integer >= {minimum}; got {value!r}")
    return int(value)
