"""Boundary validation helpers: every public function normalises its inputs here.

The dtype policy (STYLE.md habit 5): floating input keeps its precision (float32 stays
float32, float64 stays float64); integer and boolean images are promoted to float32
(float64 when the integer type cannot be represented exactly in float32) and never
rescaled; big-endian data are converted to native byte order, never rejected; arrays are
made C-contiguous. Non-finite pixels are never propagated: :func:`as_image` reports them
so the caller can flag them ``NO_DATA`` (see :func:`normalize_mask`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import InputDataWarning, InvalidInputError
from ._mask import DEFAULT_BAD_PLANES, MaskPlane

__all__ = [
    "as_image",
    "check_same_shape",
    "normalize_mask",
    "bad_pixel_mask",
    "as_rng",
    "check_positive",
    "check_in",
    "image_dtype",
]


def image_dtype(dtype: np.dtype) -> np.dtype:
    """Return the native floating dtype that an input ``dtype`` is computed in.

    Parameters
    ----------
    dtype : numpy.dtype
        The dtype that arrived.

    Returns
    -------
    numpy.dtype
        float32 for float16/float32, bool, and integers of <= 16 bits; float64 for
        float64 and wider integers (exact in float64 up to 2**53).

    Raises
    ------
    InvalidInputError
        For complex, object, string or other non-numeric dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> image_dtype(np.dtype(">f4")), image_dtype(np.dtype("int32"))
    (dtype('float32'), dtype('float64'))
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float64) if dtype.itemsize >= 8 else np.dtype(np.float32)
    if dtype.kind == "b":
        return np.dtype(np.float32)
    if dtype.kind in "iu":
        return np.dtype(np.float32) if dtype.itemsize <= 2 else np.dtype(np.float64)
    raise InvalidInputError(f"dtype {dtype} is not a real numeric type")


def as_image(
    array: Any,
    name: str = "image",
    *,
    ndim: int = 2,
    dtype: Any = None,
    allow_nonfinite: bool = True,
    min_size: int = 1,
) -> np.ndarray:
    """Validate and normalise an image-like argument at a public boundary.

    Parameters
    ----------
    array : array_like
        The input (any real numeric dtype, any byte order, any contiguity).
    name : str
        The argument name used in error messages.
    ndim : int
        Required number of dimensions.
    dtype : dtype, optional
        Force this floating dtype; by default the dtype policy of :func:`image_dtype`.
    allow_nonfinite : bool
        If False, NaN/inf raise :class:`InvalidInputError`; if True they are kept (the
        caller masks them ``NO_DATA``).
    min_size : int
        Minimum length of every axis.

    Returns
    -------
    numpy.ndarray
        A native-byte-order, C-contiguous floating array. It shares memory with the
        input when nothing had to change, so callers must not write into it.

    Raises
    ------
    TypeError
        If ``array`` is not array-like.
    InvalidInputError
        Wrong number of dimensions, an empty axis, a non-numeric dtype, or non-finite
        values when ``allow_nonfinite`` is False.

    Examples
    --------
    >>> import numpy as np
    >>> as_image(np.ones((3, 4), dtype=">f4")).dtype
    dtype('float32')
    """
    if array is None:
        raise TypeError(f"`{name}` is None; expected a {ndim}-D array")
    try:
        arr = np.asanyarray(array)
    except Exception as exc:  # pragma: no cover - numpy raises many types
        raise TypeError(f"`{name}` could not be converted to an array: {exc}") from exc
    if arr.dtype.kind == "O":
        raise TypeError(f"`{name}` has dtype object; expected a real numeric array")
    if arr.ndim != ndim:
        raise InvalidInputError(
            f"`{name}` has {arr.ndim} dimension(s) (shape {arr.shape}); expected {ndim}-D"
        )
    if any(n < min_size for n in arr.shape):
        raise InvalidInputError(
            f"`{name}` has shape {arr.shape}; every axis must have length >= {min_size}"
        )
    try:
        target = np.dtype(dtype) if dtype is not None else image_dtype(arr.dtype)
    except InvalidInputError as exc:
        raise InvalidInputError(f"`{name}`: {exc}") from None
    if np.ma.isMaskedArray(arr):
        arr = np.ma.getdata(arr)
    out = np.ascontiguousarray(arr, dtype=target.newbyteorder("="))
    if not allow_nonfinite and not np.isfinite(out).all():
        nbad = int(np.count_nonzero(~np.isfinite(out)))
        raise InvalidInputError(f"`{name}` has {nbad} non-finite value(s); all must be finite")
    return out


def check_same_shape(reference: np.ndarray, ref_name: str, **others: Any) -> None:
    """Raise unless every array in ``others`` has the shape of ``reference``.

    Parameters
    ----------
    reference : numpy.ndarray
        The array whose shape the others must match.
    ref_name : str
        Its argument name.
    **others
        ``name=array`` pairs; ``None`` values are skipped.

    Raises
    ------
    InvalidInputError
        Naming the first mismatching argument, e.g. "`variance` has shape (10, 12); it
        must match `image` (10, 10)".
    """
    for name, arr in others.items():
        if arr is None:
            continue
        shape = np.shape(arr)
        if shape != reference.shape:
            raise InvalidInputError(
                f"`{name}` has shape {shape}; it must match `{ref_name}` {reference.shape}"
            )


def normalize_mask(
    mask: Any,
    shape: tuple[int, ...],
    *,
    name: str = "mask",
    image: np.ndarray | None = None,
    variance: np.ndarray | None = None,
    warn: bool = True,
) -> np.ndarray:
    """Return a new uint32 :class:`MaskPlane` array from a user ``mask`` argument.

    Implements the one mask rule of DESIGN.md: a boolean mask (True = exclude) becomes
    ``BAD``; an integer mask is taken as MaskPlane bits. Non-finite pixels of ``image``
    or ``variance`` and negative/non-finite variance are added as ``NO_DATA`` (with an
    :class:`~lsstdrp.InputDataWarning` counting those not already flagged).

    Parameters
    ----------
    mask : array_like of bool or unsigned/signed int, or None
        The user mask.
    shape : tuple of int
        The image shape it must have.
    name : str
        Argument name for messages.
    image, variance : numpy.ndarray, optional
        Arrays whose non-finite pixels are flagged ``NO_DATA``.
    warn : bool
        Warn when previously unflagged non-finite pixels are found.

    Returns
    -------
    numpy.ndarray of uint32
        Always a new array; the input is never modified.

    Raises
    ------
    InvalidInputError
        Wrong shape, negative integer bits, or a non-integer, non-boolean dtype.

    Examples
    --------
    >>> import numpy as np
    >>> m = normalize_mask(np.array([[True, False]]), (1, 2))
    >>> m.dtype, m.tolist()
    (dtype('uint32'), [[1, 0]])
    """
    if mask is None:
        out = np.zeros(shape, dtype=np.uint32)
    else:
        arr = np.asarray(mask)
        if arr.shape != tuple(shape):
            raise InvalidInputError(f"`{name}` has shape {arr.shape}; it must match the image {tuple(shape)}")
        if arr.dtype.kind == "b":
            out = np.where(arr, np.uint32(MaskPlane.BAD), np.uint32(0)).astype(np.uint32)
        elif arr.dtype.kind in "iu":
            if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
                raise InvalidInputError(f"`{name}` has negative values; expected MaskPlane bits (uint32)")
            if arr.size and int(arr.max()) > 0xFFFFFFFF:
                raise InvalidInputError(f"`{name}` has values above 2**32-1; expected uint32 MaskPlane bits")
            out = arr.astype(np.uint32, copy=True)
        else:
            raise InvalidInputError(
                f"`{name}` has dtype {arr.dtype}; expected bool (True = exclude) or uint32 MaskPlane bits"
            )
    bad = np.zeros(shape, dtype=bool)
    if image is not None:
        bad |= ~np.isfinite(image)
    if variance is not None:
        bad |= ~np.isfinite(variance)
        with np.errstate(invalid="ignore"):
            bad |= variance < 0
    if bad.any():
        newly = bad & ((out & np.uint32(MaskPlane.NO_DATA)) == 0)
        n = int(np.count_nonzero(newly))
        if n and warn:
            warnings.warn(
                f"lsstdrp: {n} pixel(s) with non-finite image/variance or negative variance were masked NO_DATA",
                InputDataWarning,
                stacklevel=3,
            )
        out[bad] |= np.uint32(MaskPlane.NO_DATA)
    return out


def bad_pixel_mask(mask: np.ndarray, bad_planes: int | MaskPlane | Sequence[str] | None = None) -> np.ndarray:
    """Boolean exclusion mask from a uint32 MaskPlane array.

    Parameters
    ----------
    mask : numpy.ndarray of uint32
        MaskPlane bits (e.g. from :func:`normalize_mask`).
    bad_planes : int, MaskPlane, sequence of str, or None
        The bits that exclude; names such as ``["SAT", "CR"]`` are accepted. None means
        :data:`DEFAULT_BAD_PLANES`.

    Returns
    -------
    numpy.ndarray of bool
        True where any selected bit is set.

    Raises
    ------
    InvalidInputError
        If a plane name is unknown.
    """
    if bad_planes is None:
        bits = int(DEFAULT_BAD_PLANES)
    elif isinstance(bad_planes, (int, MaskPlane)):
        bits = int(bad_planes)
    else:
        bits = 0
        for plane in bad_planes:
            try:
                bits |= int(MaskPlane[str(plane)])
            except KeyError:
                raise InvalidInputError(
                    f"`bad_planes` names unknown plane {plane!r}; known: {[m.name for m in MaskPlane]}"
                ) from None
    return (np.asarray(mask, dtype=np.uint32) & np.uint32(bits)) != 0


def as_rng(rng: Any) -> np.random.Generator:
    """Return a :class:`numpy.random.Generator` from ``rng`` (None, int seed or Generator).

    Parameters
    ----------
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Passed to :func:`numpy.random.default_rng`.

    Returns
    -------
    numpy.random.Generator

    Raises
    ------
    TypeError
        If ``rng`` cannot seed a generator.
    """
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (bool, float, str)):
        raise TypeError(f"`rng` must be None, an int seed or a numpy Generator; got {type(rng).__name__}")
    try:
        return np.random.default_rng(rng)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`rng` must be None, an int seed or a numpy Generator; got {rng!r}") from exc


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` after checking it is finite and > 0 (>= 0 if allowed).

    Parameters
    ----------
    value : number
        The value to check.
    name : str
        Argument name for the message.
    allow_zero : bool
        Accept 0.

    Returns
    -------
    float

    Raises
    ------
    InvalidInputError
        Naming ``name`` when the check fails.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a number; got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        rel = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"`{name}` must be finite and {rel}; got {value!r}")
    return v


def check_in(value: Any, name: str, allowed: Sequence[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise naming ``name``.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        Argument name for the message.
    allowed : sequence
        The allowed values.

    Returns
    -------
    object
        ``value`` unchanged.

    Raises
    ------
    InvalidInputError
        Listing the allowed values.
    """
    if value not in allowed:
        raise InvalidInputError(f"`{name}` is {value!r}; expected one of {list(allowed)}")
    return value
