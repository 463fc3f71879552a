"""Boundary validation shared by the array-level functions of :mod:`lsstdrp.measure`.

The compiled kernels see: a C-contiguous float image (float32 or float64, never
copied when it already is one), a uint8 exclusion mask or a (0, 0) placeholder, and the
variance as ``(var_mode, var, var_scalar)`` (0: none, 1: scalar, 2: array). Non-finite
image pixels and non-finite or negative variance pixels are excluded *inside* the
kernels (and flagged ``MASKED``), so no whole-image pass is needed when no mask is
given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy import units as u

from ..core import as_image, bad_pixel_mask, check_same_shape
from ..core._mask import DEFAULT_BAD_PLANES
from .._errors import InvalidInputError

__all__: list[str] = []

_EMPTY_U8 = np.zeros((0, 0), dtype=np.uint8)


def _empty_like(img: np.ndarray) -> np.ndarray:
    """The (0, 0) variance placeholder, of the image dtype (one specialisation per dtype)."""
    return np.zeros((0, 0), dtype=img.dtype)


@dataclass(frozen=True, slots=True)
class _Pixels:
    """Validated pixel inputs in the form the kernels take."""

    image: np.ndarray
    bad: np.ndarray
    var_mode: int
    var: np.ndarray
    var_scalar: float


def _as_pixels(image: Any, *, variance: Any = None, error: Any = None, mask: Any = None,
               bad_planes: Any = None) -> _Pixels:
    """Validate ``image`` with optional ``variance`` / ``error`` and ``mask``."""
    img = as_image(image, "image")
    if variance is not None and error is not None:
        raise InvalidInputError("give either `variance` or `error` (1-sigma), not both")
    var_mode, var, var_scalar = 0, _empty_like(img), 0.0
    if variance is not None or error is not None:
        name = "variance" if variance is not None else "error"
        value = variance if variance is not None else error
        if np.ndim(value) == 0:
            v = float(value)
            if not (np.isfinite(v) and v >= 0):
                raise InvalidInputError(f"`{name}` must be finite and >= 0; got {value!r}")
            var_mode, var_scalar = 1, (v if name == "variance" else v * v)
        else:
            arr = as_image(value, name, dtype=img.dtype)  # one kernel specialisation per dtype
            check_same_shape(img, "image", **{name: arr})
            if name == "error":
                arr = np.square(arr)
            var_mode, var = 2, arr
    bad = _bad_pixels(mask, img.shape, bad_planes)
    return _Pixels(img, bad, var_mode, var, var_scalar)


def _bad_pixels(mask: Any, shape: tuple[int, ...], bad_planes: Any) -> np.ndarray:
    """uint8 exclusion mask (view of a boolean mask when possible) or the (0, 0) placeholder."""
    if mask is None:
        return _EMPTY_U8
    arr = np.asarray(mask)
    if arr.shape != tuple(shape):
        raise InvalidInputError(f"`mask` has shape {arr.shape}; it must match `image` {tuple(shape)}")
    if arr.dtype.kind == "b":
        return np.ascontiguousarray(arr).view(np.uint8)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
            raise InvalidInputError("`mask` has negative values; expected MaskPlane bits (uint32)")
        planes = DEFAULT_BAD_PLANES if bad_planes is None else bad_planes
        return bad_pixel_mask(arr, planes).view(np.uint8)
    raise InvalidInputError(
        f"`mask` has dtype {arr.dtype}; expected bool (True = exclude) or uint32 MaskPlane bits"
    )


def _positions(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """1-D float64 position arrays of equal length (Quantity in pix accepted)."""
    xs = _coord(x, "x")
    ys = _coord(y, "y")
    if xs.shape != ys.shape:
        raise InvalidInputError(f"`x` has {xs.size} element(s) and `y` {ys.size}; they must match")
    return xs, ys


def _coord(value: Any, name: str) -> np.ndarray:
    if isinstance(value, u.Quantity):
        if value.unit not in (u.pix, u.dimensionless_unscaled):
            raise InvalidInputError(f"`{name}` has unit {value.unit}; expected pixels")
        value = value.value
    try:
        arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a number or a 1-D array of numbers") from None
    if arr.ndim != 1:
        raise InvalidInputError(f"`{name}` must be 1-D; got shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _per_source(value: Any, n: int, name: str, *, positive: bool = False) -> np.ndarray:
    """Broadcast a scalar or length-n array to a float64 length-n array."""
    if isinstance(value, u.Quantity):
        value = value.value
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a number or an array of {n} numbers") from None
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise InvalidInputError(f"`{name}` has shape {arr.shape}; expected a scalar or ({n},)")
    if positive and np.any(arr[np.isfinite(arr)] <= 0):
        raise InvalidInputError(f"`{name}` must be > 0")
    return np.ascontiguousarray(arr)


def _subpix(value: Any) -> int:
    if isinstance(value, (bool, np.bool_)) or int(value) != value or value < 0 or value > 64:
        raise InvalidInputError(f"`subpix` must be an integer in [0, 64] (0 = exact); got {value!r}")
    return int(value)
