"""Camera geometry, the raw frame and the calibration-product container (plain data + FITS).

These types are shared by the raw-frame simulator (:mod:`lsstdrp.sim`) and instrument
signature removal (:mod:`lsstdrp.isr`), which share *data* but no algorithms.

Conventions
-----------
- Every bounding box is a :class:`BBox` ``(y0, y1, x0, x1)``: 0-based, half-open,
  ``image[bbox.slices]``.
- An :class:`Amplifier`'s raw boxes (``raw_bbox``, ``data_bbox``, prescan and overscans)
  are in the coordinates of the whole raw array (:attr:`RawFrame.data`); its
  ``assembled_bbox`` is where its data go in the assembled detector image.
- Raw segments are stored in *read-out order*: the first pixel read is the lowest
  (row, column) of the segment. ``flip_x`` / ``flip_y`` say that the read-out corner is
  at high x / high y of the assembled amp, so the assembled data are
  ``raw[data_bbox]`` reversed along x (``[:, ::-1]``) if ``flip_x`` and along y
  (``[::-1, :]``) if ``flip_y``. Serial overscan columns are read after the data
  columns of the same raw row; parallel overscan rows after the data rows.
- Units: ``gain`` e⁻/ADU; ``read_noise`` e⁻; ``saturation``, ``suspect_level`` and
  ``bias_level`` ADU. ``saturation`` and ``suspect_level`` are levels *above the serial
  overscan* (bias-subtracted ADU), as in the ISR order "serial overscan, saturation".
- :class:`Calibs` holds bias (e⁻) and dark (e⁻/s) residual frames and a flat (mean 1) on
  the *assembled* frame, a forward non-linearity per amp (:class:`Linearity`, in ADU),
  crosstalk matrices, a brighter-fatter kernel, defects and per-amp gains and noises.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import InvalidInputError

__all__ = [
    "BBox",
    "Amplifier",
    "DetectorGeometry",
    "make_detector_geometry",
    "RawFrame",
    "Linearity",
    "PhotonTransferCurve",
    "Calibs",
]

_FITS_SECTION = re.compile(r"^\s*\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]\s*$")


# -- helpers ------------------------------------------------------------------------------
def _as_int(value: Any, name: str) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"`{name}` must be an integer; got {value!r}")
    try:
        iv = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be an integer; got {value!r}") from None
    if iv != value:
        raise InvalidInputError(f"`{name}` must be an integer; got {value!r}")
    return iv


def _as_float(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a number; got {value!r}") from None
    if not math.isfinite(v):
        raise InvalidInputError(f"`{name}` must be finite; got {value!r}")
    if positive and v <= 0:
        raise InvalidInputError(f"`{name}` must be > 0; got {value!r}")
    if nonneg and v < 0:
        raise InvalidInputError(f"`{name}` must be >= 0; got {value!r}")
    return v


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr = arr.view()
    arr.flags.writeable = False
    return arr


def _float_array(value: Any, name: str, *, ndim: int | None = None, finite: bool = True,
                 dtype: Any = np.float64) -> np.ndarray:
    try:
        arr = np.array(value, dtype=dtype, copy=True)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a real numeric array; got {type(value).__name__}") from None
    if ndim is not None and arr.ndim != ndim:
        raise InvalidInputError(f"`{name}` has shape {arr.shape}; expected a {ndim}-D array")
    if finite and not np.isfinite(arr).all():
        raise InvalidInputError(f"`{name}` has {int(np.count_nonzero(~np.isfinite(arr)))} non-finite value(s)")
    return _readonly(arr)


def _frame(value: Any, name: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A calibration frame: float32 copy of the assembled shape, read-only (NaN allowed)."""
    if value is None:
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise InvalidInputError(f"`{name}` has dtype {arr.dtype}; expected a real numeric array")
    if arr.shape != tuple(shape):
        raise InvalidInputError(f"`{name}` has shape {arr.shape}; it must be the assembled shape {tuple(shape)}")
    return _readonly(np.array(arr, dtype=np.float32, copy=True))


# -- BBox ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class BBox:
    """A half-open, 0-based pixel box ``[y0, y1) x [x0, x1)``.

    Parameters
    ----------
    y0, y1 : int
        First row and one past the last row (``0 <= y0 <= y1``).
    x0, x1 : int
        First column and one past the last column (``0 <= x0 <= x1``).

    Raises
    ------
    InvalidInputError
        If a bound is not an integer, negative, or ``y1 < y0`` / ``x1 < x0``.

    Notes
    -----
    An empty box (``y0 == y1`` or ``x0 == x1``) is allowed, e.g. an amplifier without a
    prescan. FITS sections (``DATASEC = '[x0+1:x1,y0+1:y1]'``, 1-based, inclusive,
    x first) convert with :meth:`from_fits_section` / :meth:`to_fits_section`.

    Examples
    --------
    >>> import numpy as np
    >>> b = BBox(1, 3, 0, 2)
    >>> b.shape, np.arange(20).reshape(4, 5)[b.slices].tolist()
    ((2, 2), [[5, 6], [10, 11]])
    >>> BBox.from_fits_section("[1:2,2:3]") == b
    True
    """

    y0: int
    y1: int
    x0: int
    x1: int

    def __post_init__(self) -> None:
        for f in ("y0", "y1", "x0", "x1"):
            v = _as_int(getattr(self, f), f"BBox.{f}")
            if v < 0:
                raise InvalidInputError(f"`BBox.{f}` must be >= 0; got {v}")
            object.__setattr__(self, f, v)
        if self.y1 < self.y0:
            raise InvalidInputError(f"`BBox` has y1={self.y1} < y0={self.y0}")
        if self.x1 < self.x0:
            raise InvalidInputError(f"`BBox` has x1={self.x1} < x0={self.x0}")

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(slice(y0, y1), slice(x0, x1))`` for ``image[bbox.slices]``."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    @property
    def shape(self) -> tuple[int, int]:
        """``(y1 - y0, x1 - x0)``."""
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def area(self) -> int:
        """Number of pixels."""
        return (self.y1 - self.y0) * (self.x1 - self.x0)

    @property
    def is_empty(self) -> bool:
        """True when the box holds no pixel."""
        return self.area == 0

    def contains(self, other: "BBox") -> bool:
        """True if ``other`` lies inside this box (an empty box is inside any box)."""
        if other.is_empty:
            return True
        return self.y0 <= other.y0 and other.y1 <= self.y1 and self.x0 <= other.x0 and other.x1 <= self.x1

    def overlaps(self, other: "BBox") -> bool:
        """True if the two boxes share at least one pixel."""
        if self.is_empty or other.is_empty:
            return False
        return self.y0 < other.y1 and other.y0 < self.y1 and self.x0 < other.x1 and other.x0 < self.x1

    def fits_in(self, shape: tuple[int, int]) -> bool:
        """True if the box lies inside an array of ``shape`` (ny, nx)."""
        return self.is_empty or (self.y1 <= shape[0] and self.x1 <= shape[1])

    def shifted(self, dy: int, dx: int) -> "BBox":
        """The box moved by ``(dy, dx)`` pixels."""
        return BBox(self.y0 + dy, self.y1 + dy, self.x0 + dx, self.x1 + dx)

    def to_tuple(self) -> tuple[int, int, int, int]:
        """``(y0, y1, x0, x1)``."""
        return (self.y0, self.y1, self.x0, self.x1)

    @classmethod
    def from_fits_section(cls, section: str) -> "BBox":
        """Parse a FITS section string ``'[x_first:x_last,y_first:y_last]'`` (1-based, inclusive).

        Parameters
        ----------
        section : str
            E.g. the value of ``DATASEC``, ``BIASSEC`` or ``TRIMSEC``. Reversed ranges
            (``[100:1,...]``) are accepted and normalised.

        Returns
        -------
        BBox

        Raises
        ------
        InvalidInputError
            If the string is not a FITS section or a bound is < 1.
        """
        m = _FITS_SECTION.match(str(section))
        if not m:
            raise InvalidInputError(f"`section` {section!r} is not a FITS section like '[1:100,1:200]'")
        xa, xb, ya, yb = (int(g) for g in m.groups())
        if min(xa, xb, ya, yb) < 1:
            raise InvalidInputError(f"`section` {section!r}: FITS sections are 1-based")
        return cls(min(ya, yb) - 1, max(ya, yb), min(xa, xb) - 1, max(xa, xb))

    def to_fits_section(self) -> str:
        """The FITS section string ``'[x0+1:x1,y0+1:y1]'`` (1-based, inclusive)."""
        return f"[{self.x0 + 1}:{self.x1},{self.y0 + 1}:{self.y1}]"


def _as_bbox(value: Any, name: str) -> BBox:
    if isinstance(value, BBox):
        return value
    try:
        vals = tuple(value)
    except TypeError:
        raise InvalidInputError(f"`{name}` must be a BBox or (y0, y1, x0, x1); got {value!r}") from None
    if len(vals) != 4:
        raise InvalidInputError(f"`{name}` must be a BBox or (y0, y1, x0, x1); got {value!r}")
    try:
        return BBox(*vals)
    except InvalidInputError as exc:
        raise InvalidInputError(f"`{name}`: {exc}") from None


# -- Amplifier ----------------------------------------------------------------------------
_AMP_BOXES = ("raw_bbox", "data_bbox", "serial_prescan_bbox", "serial_overscan_bbox",
              "parallel_overscan_bbox", "assembled_bbox")


@dataclasses.dataclass(frozen=True, slots=True)
class Amplifier:
    """One amplifier (segment) of a detector: raw layout, read-out corner and electronics.

    Parameters
    ----------
    name : str
        Unique within the detector (e.g. ``"C10"``).
    raw_bbox : BBox
        The amp's whole segment in the raw array (data, prescan and overscans).
    data_bbox : BBox
        Imaging pixels in the raw array (inside ``raw_bbox``).
    serial_prescan_bbox, serial_overscan_bbox : BBox
        Serial prescan (read before the data of each row) and serial overscan (read
        after) columns, in the raw array; data rows only. May be empty.
    parallel_overscan_bbox : BBox
        Rows read after the last data row (data columns only), in the raw array.
    assembled_bbox : BBox
        Where the amp's data go in the assembled detector image; same shape as
        ``data_bbox``.
    flip_x, flip_y : bool
        The read-out corner is at high x (high y) of the assembled amp: the raw data
        are reversed along that axis relative to the assembled orientation.
    gain : float
        e⁻ per ADU (> 0).
    read_noise : float
        e⁻ rms (>= 0).
    saturation : float
        ADU above the serial overscan level at which the amp saturates (> 0).
    suspect_level : float, optional
        ADU above the overscan beyond which values are unreliable (e.g. linearity
        turn-off); None = no suspect level.
    bias_level : float
        Nominal overscan (bias) level in ADU.

    Raises
    ------
    InvalidInputError
        Naming the field: bad types, non-positive gain/saturation, negative read noise,
        a region outside ``raw_bbox``, overlapping regions, or ``data_bbox`` and
        ``assembled_bbox`` of different shapes.
    """

    name: str
    raw_bbox: BBox
    data_bbox: BBox
    serial_prescan_bbox: BBox
    serial_overscan_bbox: BBox
    parallel_overscan_bbox: BBox
    assembled_bbox: BBox
    flip_x: bool
    flip_y: bool
    gain: float
    read_noise: float
    saturation: float
    suspect_level: float | None = None
    bias_level: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"`Amplifier.name` must be a non-empty string; got {self.name!r}")
        for f in _AMP_BOXES:
            object.__setattr__(self, f, _as_bbox(getattr(self, f), f"Amplifier({self.name}).{f}"))
        for f in ("flip_x", "flip_y"):
            v = getattr(self, f)
            if not isinstance(v, (bool, np.bool_)):
                raise InvalidInputError(f"`Amplifier({self.name}).{f}` must be a bool; got {v!r}")
            object.__setattr__(self, f, bool(v))
        p = f"Amplifier({self.name})"
        object.__setattr__(self, "gain", _as_float(self.gain, f"{p}.gain", positive=True))
        object.__setattr__(self, "read_noise", _as_float(self.read_noise, f"{p}.read_noise", nonneg=True))
        object.__setattr__(self, "saturation", _as_float(self.saturation, f"{p}.saturation", positive=True))
        if self.suspect_level is not None:
            object.__setattr__(self, "suspect_level",
                               _as_float(self.suspect_level, f"{p}.suspect_level", positive=True))
        object.__setattr__(self, "bias_level", _as_float(self.bias_level, f"{p}.bias_level"))
        if self.data_bbox.is_empty:
            raise InvalidInputError(f"`{p}.data_bbox` is empty")
        inner = ("data_bbox", "serial_prescan_bbox", "serial_overscan_bbox", "parallel_overscan_bbox")
        for f in inner:
            if not self.raw_bbox.contains(getattr(self, f)):
                raise InvalidInputError(
                    f"`{p}.{f}` {getattr(self, f)} is not inside its raw_bbox {self.raw_bbox}")
        for i, a in enumerate(inner):
            for b in inner[i + 1:]:
                if getattr(self, a).overlaps(getattr(self, b)):
                    raise InvalidInputError(f"`{p}.{a}` {getattr(self, a)} overlaps `{b}` {getattr(self, b)}")
        if self.data_bbox.shape != self.assembled_bbox.shape:
            raise InvalidInputError(
                f"`{p}.assembled_bbox` has shape {self.assembled_bbox.shape}; it must match "
                f"data_bbox {self.data_bbox.shape}")

    @property
    def data_shape(self) -> tuple[int, int]:
        """(ny, nx) of the imaging area."""
        return self.data_bbox.shape


# -- DetectorGeometry ---------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class DetectorGeometry:
    """The amplifier layout of one detector: raw and assembled frames.

    Parameters
    ----------
    detector : int
        Detector id.
    amplifiers : tuple of Amplifier
        In a fixed order; crosstalk matrices and per-amp arrays follow it.
    assembled_shape : (int, int)
        (ny, nx) of the assembled image; the amps' ``assembled_bbox`` must tile it.
    raw_shape : (int, int)
        (ny, nx) of the raw array.

    Raises
    ------
    InvalidInputError
        Duplicate amp names; an amp region outside the raw frame; overlapping raw
        segments; assembled boxes outside the frame, overlapping, or not covering it.

    Examples
    --------
    >>> g = make_detector_geometry(n_amp_x=2, n_amp_y=1, amp_data_shape=(4, 3), prescan=1,
    ...                            serial_overscan=2, parallel_overscan=1)
    >>> g.assembled_shape, g.raw_shape, g.names
    ((4, 6), (5, 12), ('C00', 'C01'))
    """

    detector: int
    amplifiers: tuple[Amplifier, ...]
    assembled_shape: tuple[int, int]
    raw_shape: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "detector", _as_int(self.detector, "detector"))
        amps = tuple(self.amplifiers) if not isinstance(self.amplifiers, Amplifier) else (self.amplifiers,)
        if not amps:
            raise InvalidInputError("`amplifiers` is empty; a detector needs at least one amplifier")
        for a in amps:
            if not isinstance(a, Amplifier):
                raise InvalidInputError(f"`amplifiers` must hold Amplifier objects; got {type(a).__name__}")
        object.__setattr__(self, "amplifiers", amps)
        for f in ("assembled_shape", "raw_shape"):
            shp = getattr(self, f)
            try:
                shp = tuple(_as_int(v, f) for v in shp)
            except TypeError:
                raise InvalidInputError(f"`{f}` must be (ny, nx); got {shp!r}") from None
            if len(shp) != 2 or min(shp) < 1:
                raise InvalidInputError(f"`{f}` must be (ny, nx) with positive sizes; got {shp!r}")
            object.__setattr__(self, f, shp)
        names = [a.name for a in amps]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"`amplifiers` have duplicate names: {names}")
        for a in amps:
            for f in _AMP_BOXES[:-1]:
                b = getattr(a, f)
                if not b.fits_in(self.raw_shape):
                    raise InvalidInputError(
                        f"amplifier {a.name}: `{f}` {b} is outside the raw frame {self.raw_shape}")
            if not a.assembled_bbox.fits_in(self.assembled_shape):
                raise InvalidInputError(
                    f"amplifier {a.name}: `assembled_bbox` {a.assembled_bbox} is outside the assembled "
                    f"frame {self.assembled_shape}")
        for i, a in enumerate(amps):
            for b in amps[i + 1:]:
                if a.raw_bbox.overlaps(b.raw_bbox):
                    raise InvalidInputError(f"amplifiers {a.name} and {b.name}: raw_bbox regions overlap")
                if a.assembled_bbox.overlaps(b.assembled_bbox):
                    raise InvalidInputError(f"amplifiers {a.name} and {b.name}: assembled_bbox regions overlap")
        covered = sum(a.assembled_bbox.area for a in amps)
        total = self.assembled_shape[0] * self.assembled_shape[1]
        if covered != total:
            raise InvalidInputError(
                f"the amplifiers' assembled_bbox regions cover {covered} of the {total} pixels of "
                f"`assembled_shape` {self.assembled_shape}; they must tile it")

    @property
    def n_amps(self) -> int:
        """Number of amplifiers."""
        return len(self.amplifiers)

    @property
    def names(self) -> tuple[str, ...]:
        """Amplifier names in order."""
        return tuple(a.name for a in self.amplifiers)

    @property
    def gains(self) -> np.ndarray:
        """Nominal gains (e⁻/ADU), one per amp, float64."""
        return np.array([a.gain for a in self.amplifiers], dtype=np.float64)

    @property
    def read_noises(self) -> np.ndarray:
        """Nominal read noises (e⁻), one per amp, float64."""
        return np.array([a.read_noise for a in self.amplifiers], dtype=np.float64)

    def amp_index(self, name: str) -> int:
        """Index of the amp called ``name``.

        Raises
        ------
        InvalidInputError
            If there is no such amp.
        """
        try:
            return self.names.index(name)
        except ValueError:
            raise InvalidInputError(f"`name` {name!r} is not an amplifier of this detector; known: {self.names}") from None

    def amp(self, key: int | str) -> Amplifier:
        """The amplifier with index or name ``key``."""
        if isinstance(key, str):
            return self.amplifiers[self.amp_index(key)]
        idx = _as_int(key, "key")
        if not -self.n_amps <= idx < self.n_amps:
            raise InvalidInputError(f"`key` {key} is out of range for {self.n_amps} amplifiers")
        return self.amplifiers[idx]

    def amp_index_image(self) -> np.ndarray:
        """int16 image of the assembled shape: the index of the amp owning each pixel."""
        out = np.full(self.assembled_shape, -1, dtype=np.int16)
        for i, a in enumerate(self.amplifiers):
            out[a.assembled_bbox.slices] = i
        return out

    # FITS ---------------------------------------------------------------------------------
    def to_table_hdu(self) -> Any:
        """The geometry as an ``astropy.io.fits.BinTableHDU`` named ``GEOMETRY``.

        One row per amp (name, the six boxes as ``y0 y1 x0 x1``, flips, gain,
        read noise, saturation, suspect level (NaN for None), bias level); the header
        holds ``DETECTOR`` and the assembled/raw shapes.
        """
        from astropy.io import fits

        amps = self.amplifiers
        cols = [fits.Column(name="name", format=f"{max(len(a.name) for a in amps)}A",
                            array=np.array([a.name for a in amps]))]
        for f in _AMP_BOXES:
            cols.append(fits.Column(name=f, format="4K",
                                    array=np.array([getattr(a, f).to_tuple() for a in amps], dtype=np.int64)))
        for f in ("flip_x", "flip_y"):
            cols.append(fits.Column(name=f, format="L", array=np.array([getattr(a, f) for a in amps])))
        for f in ("gain", "read_noise", "saturation", "suspect_level", "bias_level"):
            vals = [np.nan if getattr(a, f) is None else getattr(a, f) for a in amps]
            cols.append(fits.Column(name=f, format="D", array=np.array(vals, dtype=np.float64)))
        hdu = fits.BinTableHDU.from_columns(cols, name="GEOMETRY")
        hdu.header["DETECTOR"] = self.detector
        hdu.header["ASM_NY"], hdu.header["ASM_NX"] = self.assembled_shape
        hdu.header["RAW_NY"], hdu.header["RAW_NX"] = self.raw_shape
        return hdu

    @classmethod
    def from_table_hdu(cls, hdu: Any) -> "DetectorGeometry":
        """Inverse of :meth:`to_table_hdu`."""
        d = hdu.data
        h = hdu.header
        amps = []
        for row in range(len(d)):
            sus = float(d["suspect_level"][row])
            amps.append(Amplifier(
                name=str(d["name"][row]).strip(),
                **{f: BBox(*(int(v) for v in d[f][row])) for f in _AMP_BOXES},
                flip_x=bool(d["flip_x"][row]), flip_y=bool(d["flip_y"][row]),
                gain=float(d["gain"][row]), read_noise=float(d["read_noise"][row]),
                saturation=float(d["saturation"][row]),
                suspect_level=None if not math.isfinite(sus) else sus,
                bias_level=float(d["bias_level"][row]),
            ))
        return cls(int(h["DETECTOR"]), tuple(amps), (int(h["ASM_NY"]), int(h["ASM_NX"])),
                   (int(h["RAW_NY"]), int(h["RAW_NX"])))


def _per_amp(value: Any, n: int, name: str, default: np.ndarray) -> np.ndarray:
    if value is None:
        return default
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.size == 1:
        arr = np.full(n, float(arr[0]))
    if arr.shape != (n,):
        raise InvalidInputError(f"`{name}` has {arr.size} values; expected 1 or {n} (one per amplifier)")
    return arr


def make_detector_geometry(
    n_amp_x: int = 8,
    n_amp_y: int = 2,
    amp_data_shape: tuple[int, int] = (2000, 509),
    prescan: int = 3,
    serial_overscan: int = 64,
    parallel_overscan: int = 48,
    *,
    gains: float | Sequence[float] | None = None,
    read_noises: float | Sequence[float] | None = None,
    saturation: float | Sequence[float] = 100_000.0,
    suspect_level: float | Sequence[float] | None = None,
    bias_levels: float | Sequence[float] | None = None,
    assembled_shape: tuple[int, int] | None = None,
    detector: int = 0,
) -> DetectorGeometry:
    """An LSST-like detector geometry: ``n_amp_y`` rows of ``n_amp_x`` amplifiers.

    Parameters
    ----------
    n_amp_x, n_amp_y : int
        Amps per row and rows of amps (LSST CCDs: 8 x 2 = 16 amps of 2000 x 509 pixels).
    amp_data_shape : (int, int)
        (ny, nx) imaging pixels per amp. Ignored when ``assembled_shape`` is given.
    prescan, serial_overscan, parallel_overscan : int
        Serial prescan columns, serial overscan columns and parallel overscan rows per
        segment (>= 0).
    gains, read_noises : float or sequence, optional
        e⁻/ADU and e⁻ per amp. Defaults: a fixed LSST-like spread, gains 1.45 - 1.75,
        read noises 5.0 - 7.0 e⁻ (deterministic, so tests are reproducible).
    saturation : float or sequence
        ADU above the overscan level (default 100000).
    suspect_level : float or sequence, optional
        ADU above the overscan level; None = no suspect level.
    bias_levels : float or sequence, optional
        Nominal overscan levels in ADU (default 20000 + 150 * amp index).
    assembled_shape : (int, int), optional
        If given, the amps' data shape is ``(ny // n_amp_y, nx // n_amp_x)``, which must
        divide evenly: the way to match a simulated exposure's shape.
    detector : int
        Detector id.

    Returns
    -------
    DetectorGeometry

    Raises
    ------
    InvalidInputError
        For non-positive counts/shapes, negative overscans, per-amp sequences of the
        wrong length, or an ``assembled_shape`` not divisible by the amp grid.

    Notes
    -----
    Raw layout: the segment of amp (iy, ix) (``iy`` row of amps from the bottom,
    ``ix`` from the left) starts at raw row ``iy * (ny + parallel_overscan)`` and raw
    column ``ix * (prescan + nx + serial_overscan)``. Inside a segment, in read-out
    order: prescan columns, data columns, serial overscan columns for the first ``ny``
    rows, then ``parallel_overscan`` rows (parallel overscan under the data columns).
    The data go to the assembled box ``[iy*ny:(iy+1)*ny, ix*nx:(ix+1)*nx]``. Amps of the
    bottom row read out from the bottom-left corner (no flips); for ``n_amp_y == 2``
    the top row reads out from its top-right corner (``flip_x = flip_y = True``, as an
    LSST CCD whose upper amps are rotated by 180 degrees). Names are
    ``f"C{iy}{ix}"``.

    Examples
    --------
    >>> g = make_detector_geometry(amp_data_shape=(20, 10), prescan=1, serial_overscan=4,
    ...                            parallel_overscan=3)
    >>> g.n_amps, g.assembled_shape, g.raw_shape
    (16, (40, 80), (46, 120))
    """
    n_amp_x = _as_int(n_amp_x, "n_amp_x")
    n_amp_y = _as_int(n_amp_y, "n_amp_y")
    if n_amp_x < 1 or n_amp_y < 1:
        raise InvalidInputError(f"`n_amp_x`, `n_amp_y` must be >= 1; got {n_amp_x}, {n_amp_y}")
    if assembled_shape is not None:
        ay, ax = (_as_int(v, "assembled_shape") for v in assembled_shape)
        if ay % n_amp_y or ax % n_amp_x or ay < n_amp_y or ax < n_amp_x:
            raise InvalidInputError(
                f"`assembled_shape` {(ay, ax)} is not divisible into {n_amp_y} x {n_amp_x} amplifiers")
        amp_data_shape = (ay // n_amp_y, ax // n_amp_x)
    try:
        ny, nx = (_as_int(v, "amp_data_shape") for v in amp_data_shape)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`amp_data_shape` must be (ny, nx); got {amp_data_shape!r}") from None
    if ny < 1 or nx < 1:
        raise InvalidInputError(f"`amp_data_shape` must be positive; got {(ny, nx)}")
    pre = _as_int(prescan, "prescan")
    sov = _as_int(serial_overscan, "serial_overscan")
    pov = _as_int(parallel_overscan, "parallel_overscan")
    for v, name in ((pre, "prescan"), (sov, "serial_overscan"), (pov, "parallel_overscan")):
        if v < 0:
            raise InvalidInputError(f"`{name}` must be >= 0; got {v}")
    n = n_amp_x * n_amp_y
    idx = np.arange(n)
    g = _per_amp(gains, n, "gains", 1.45 + 0.30 * ((idx * 7) % 16) / 15.0)
    rn = _per_amp(read_noises, n, "read_noises", 5.0 + 2.0 * ((idx * 5 + 3) % 16) / 15.0)
    sat = _per_amp(saturation, n, "saturation", np.full(n, 100_000.0))
    sus = None if suspect_level is None else _per_amp(suspect_level, n, "suspect_level", np.zeros(n))
    bl = _per_amp(bias_levels, n, "bias_levels", 20_000.0 + 150.0 * idx)
    seg_w = pre + nx + sov
    seg_h = ny + pov
    amps = []
    for iy in range(n_amp_y):
        for ix in range(n_amp_x):
            k = iy * n_amp_x + ix
            r0, c0 = iy * seg_h, ix * seg_w
            flip = n_amp_y == 2 and iy == 1
            name = f"C{iy}{ix}" if max(n_amp_x, n_amp_y) <= 10 else f"C{iy}_{ix}"
            amps.append(Amplifier(
                name=name,
                raw_bbox=BBox(r0, r0 + seg_h, c0, c0 + seg_w),
                data_bbox=BBox(r0, r0 + ny, c0 + pre, c0 + pre + nx),
                serial_prescan_bbox=BBox(r0, r0 + ny, c0, c0 + pre),
                serial_overscan_bbox=BBox(r0, r0 + ny, c0 + pre + nx, c0 + seg_w),
                parallel_overscan_bbox=BBox(r0 + ny, r0 + seg_h, c0 + pre, c0 + pre + nx),
                assembled_bbox=BBox(iy * ny, (iy + 1) * ny, ix * nx, (ix + 1) * nx),
                flip_x=flip, flip_y=flip,
                gain=float(g[k]), read_noise=float(rn[k]), saturation=float(sat[k]),
                suspect_level=None if sus is None else float(sus[k]),
                bias_level=float(bl[k]),
            ))
    return DetectorGeometry(detector, tuple(amps), (n_amp_y * ny, n_amp_x * nx), (n_amp_y * seg_h, n_amp_x * seg_w))


# -- metadata <-> header ------------------------------------------------------------------
def _meta_to_json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(dict(metadata), default=str, sort_keys=True)


def _geometry_check(geometry: Any, name: str = "geometry") -> DetectorGeometry:
    if not isinstance(geometry, DetectorGeometry):
        raise InvalidInputError(f"`{name}` must be a DetectorGeometry; got {type(geometry).__name__}")
    return geometry


def _opt_float(value: Any, name: str, *, nonneg: bool = False) -> float | None:
    return None if value is None else _as_float(value, name, nonneg=nonneg)


# -- RawFrame -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class RawFrame:
    """One raw read-out of a detector (all amps, overscans included), in ADU.

    Parameters
    ----------
    data : numpy.ndarray, shape ``geometry.raw_shape``
        Raw ADU; integer (e.g. int32 as digitised) or floating. Kept in its dtype
        (native byte order, C-contiguous copy, read-only).
    geometry : DetectorGeometry
        The amplifier layout.
    exptime : float
        Open-shutter time in s (>= 0; 0 for a bias).
    dark_time : float
        Time over which dark current accumulated, s (>= 0; usually >= ``exptime``).
    mjd : float, optional
        Start of exposure, MJD (TAI).
    snap : int
        Snap index within the visit (0 or 1).
    band : str, optional
    visit : int, optional
    metadata : dict
        Anything else (copied).

    Raises
    ------
    InvalidInputError
        Wrong shape or dtype of ``data``, negative or non-finite times, a bad snap.
    """

    data: np.ndarray
    geometry: DetectorGeometry
    exptime: float = dataclasses.field(kw_only=True)
    dark_time: float = dataclasses.field(kw_only=True)
    mjd: float | None = dataclasses.field(default=None, kw_only=True)
    snap: int = dataclasses.field(default=0, kw_only=True)
    band: str | None = dataclasses.field(default=None, kw_only=True)
    visit: int | None = dataclasses.field(default=None, kw_only=True)
    metadata: dict = dataclasses.field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        geom = _geometry_check(self.geometry)
        if self.data is None:
            raise TypeError("`data` is None; expected a raw array")
        arr = np.asarray(self.data)
        if arr.dtype.kind not in "fiu":
            raise InvalidInputError(f"`data` has dtype {arr.dtype}; expected integer or floating ADU")
        if arr.shape != geom.raw_shape:
            raise InvalidInputError(f"`data` has shape {arr.shape}; it must be the geometry's raw_shape {geom.raw_shape}")
        arr = _readonly(np.array(arr, dtype=arr.dtype.newbyteorder("="), order="C", copy=True))
        object.__setattr__(self, "data", arr)
        object.__setattr__(self, "exptime", _as_float(self.exptime, "exptime", nonneg=True))
        object.__setattr__(self, "dark_time", _as_float(self.dark_time, "dark_time", nonneg=True))
        object.__setattr__(self, "mjd", _opt_float(self.mjd, "mjd"))
        snap = _as_int(self.snap, "snap")
        if snap < 0:
            raise InvalidInputError(f"`snap` must be >= 0; got {snap}")
        object.__setattr__(self, "snap", snap)
        if self.band is not None and not isinstance(self.band, str):
            raise InvalidInputError(f"`band` must be a string; got {self.band!r}")
        if self.visit is not None:
            object.__setattr__(self, "visit", _as_int(self.visit, "visit"))
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def detector(self) -> int:
        """The detector id (from the geometry)."""
        return self.geometry.detector

    def amp_data(self, key: int | str) -> np.ndarray:
        """Read-only view of one amp's raw data segment (read-out order, not flipped)."""
        return self.data[self.geometry.amp(key).data_bbox.slices]

    def replace(self, **changes: Any) -> "RawFrame":
        """A new frame with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def to_fits(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write the frame: primary HDU = raw data with EXPTIME, DARKTIME, MJD-OBS, SNAP,
        BAND, VISIT, DETECTOR, METAJSON cards; a ``GEOMETRY`` table extension.

        Parameters
        ----------
        path : str or Path
        overwrite : bool
            Replace an existing file.
        """
        from astropy.io import fits

        prim = fits.PrimaryHDU(np.asarray(self.data))
        h = prim.header
        h["LDRPTYPE"] = ("RAWFRAME", "lsstdrp.core.RawFrame")
        h["EXPTIME"] = self.exptime
        h["DARKTIME"] = self.dark_time
        if self.mjd is not None:
            h["MJD-OBS"] = self.mjd
        h["SNAP"] = self.snap
        if self.band is not None:
            h["BAND"] = self.band
        if self.visit is not None:
            h["VISIT"] = self.visit
        h["DETECTOR"] = self.detector
        h["METAJSON"] = _meta_to_json(self.metadata)
        fits.HDUList([prim, self.geometry.to_table_hdu()]).writeto(path, overwrite=overwrite)

    @classmethod
    def from_fits(cls, path: str | Path) -> "RawFrame":
        """Read a file written by :meth:`to_fits` (big-endian data become native).

        Raises
        ------
        InvalidInputError
            If the file is not an lsstdrp raw frame.
        """
        from astropy.io import fits

        with fits.open(path, memmap=False) as hdul:
            h = hdul[0].header
            if h.get("LDRPTYPE") != "RAWFRAME" or "GEOMETRY" not in hdul:
                raise InvalidInputError(f"`path` {path} is not an lsstdrp RawFrame file")
            geom = DetectorGeometry.from_table_hdu(hdul["GEOMETRY"])
            data = np.asarray(hdul[0].data)
            return cls(
                data, geom, exptime=h["EXPTIME"], dark_time=h["DARKTIME"], mjd=h.get("MJD-OBS"),
                snap=h.get("SNAP", 0), band=h.get("BAND"), visit=h.get("VISIT"),
                metadata=json.loads(h.get("METAJSON", "{}")),
            )


# -- Linearity ----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class Linearity:
    """The *forward* non-linearity of one amplifier, in ADU above the overscan level.

    ``measured = evaluate(linear)``: the simulator applies it, ISR inverts it.

    Parameters
    ----------
    kind : {"polynomial", "spline", "lookup"}
        Model type.
    coefficients : array_like, optional
        ``"polynomial"``: ``c`` with
        :math:`f(x) = x + \\sum_k c_k x^{k+2}` (``c[0]`` is the quadratic term, ADU⁻¹).
    knots, values : array_like, optional
        ``"spline"``: strictly increasing knot positions (ADU) and the offsets
        :math:`f(x) - x` at the knots; an Akima spline through them (as the Rubin
        spline linearizer), constant beyond the end knots.
    table : array_like, optional
        ``"lookup"``: offsets :math:`f(x) - x` at integer ``x = 0, 1, ...``, linearly
        interpolated, constant beyond the end.
    turnoff : float
        ADU (measured) above which the model is not valid (``inf`` = everywhere).

    Raises
    ------
    InvalidInputError
        Unknown kind, missing or non-finite parameters for the kind, non-increasing
        knots.

    Examples
    --------
    >>> lin = Linearity("polynomial", coefficients=[-1e-6])
    >>> float(lin.evaluate(1000.0))
    999.0
    """

    kind: str
    coefficients: Any = None
    knots: Any = None
    values: Any = None
    table: Any = None
    turnoff: float = math.inf

    def __post_init__(self) -> None:
        if self.kind not in ("polynomial", "spline", "lookup"):
            raise InvalidInputError(f"`kind` is {self.kind!r}; expected 'polynomial', 'spline' or 'lookup'")
        need = {"polynomial": ("coefficients",), "spline": ("knots", "values"), "lookup": ("table",)}[self.kind]
        for f in ("coefficients", "knots", "values", "table"):
            v = getattr(self, f)
            if f in need:
                if v is None:
                    raise InvalidInputError(f"`{f}` is required for a {self.kind!r} Linearity")
                arr = _float_array(v, f, ndim=1)
                if arr.size == 0 and f != "coefficients":
                    raise InvalidInputError(f"`{f}` is empty")
                object.__setattr__(self, f, arr)
            elif v is not None:
                raise InvalidInputError(f"`{f}` is not used by a {self.kind!r} Linearity; leave it None")
        if self.kind == "spline":
            if self.knots.shape != self.values.shape:
                raise InvalidInputError(
                    f"`values` has {self.values.size} entries; expected one per knot ({self.knots.size})")
            if self.knots.size < 2 or np.any(np.diff(self.knots) <= 0):
                raise InvalidInputError("`knots` must hold at least 2 strictly increasing positions")
        t = float(self.turnoff)
        if math.isnan(t) or t <= 0:
            raise InvalidInputError(f"`turnoff` must be > 0 (inf allowed); got {self.turnoff!r}")
        object.__setattr__(self, "turnoff", t)

    def offset(self, adu: Any) -> np.ndarray:
        """``evaluate(adu) - adu`` (float64)."""
        x = np.asarray(adu, dtype=np.float64)
        if self.kind == "polynomial":
            out = np.zeros_like(x)
            for c in self.coefficients[::-1]:  # Horner in x: sum_k c_k x^k, times x^2
                out = out * x + c
            return out * x * x
        if self.kind == "spline":
            if self.knots.size == 2:
                return np.interp(x, self.knots, self.values)
            from scipy.interpolate import Akima1DInterpolator

            spl = Akima1DInterpolator(self.knots, self.values)
            xc = np.clip(x, self.knots[0], self.knots[-1])
            return np.asarray(spl(xc), dtype=np.float64)
        return np.interp(x, np.arange(self.table.size, dtype=np.float64), self.table)

    def evaluate(self, adu: Any) -> np.ndarray:
        """The measured ADU for a linear signal ``adu`` (float64): ``adu + offset(adu)``.

        Parameters
        ----------
        adu : array_like
            Linear signal in ADU above the overscan level.

        Returns
        -------
        numpy.ndarray of float64
        """
        x = np.asarray(adu, dtype=np.float64)
        return x + self.offset(x)

    def _payload(self) -> np.ndarray:
        if self.kind == "polynomial":
            return np.asarray(self.coefficients, dtype=np.float64)
        if self.kind == "spline":
            return np.stack([self.knots, self.values])
        return np.asarray(self.table, dtype=np.float64)

    @classmethod
    def _from_payload(cls, kind: str, data: np.ndarray, turnoff: float) -> "Linearity":
        data = np.asarray(data, dtype=np.float64)
        if kind == "polynomial":
            return cls(kind, coefficients=np.atleast_1d(data), turnoff=turnoff)
        if kind == "spline":
            return cls(kind, knots=data[0], values=data[1], turnoff=turnoff)
        return cls(kind, table=data, turnoff=turnoff)


# -- PTC ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class PhotonTransferCurve:
    """A per-amp photon transfer curve summary (Janesick 2001; Astier et al. 2019).

    Parameters
    ----------
    gain : array_like, shape (n_amp,)
        e⁻/ADU.
    noise : array_like, shape (n_amp,)
        Read noise, e⁻.
    a00 : array_like, shape (n_amp,), optional
        Brighter-fatter coefficient a₀₀ of Astier et al. (2019), 1/e⁻ (NaN = unknown).
    turnoff : array_like, shape (n_amp,), optional
        Mean signal (ADU) where the PTC turns over (NaN = unknown).
    mean, variance : array_like, shape (n_amp, n_points), optional
        Measured flat-pair means (ADU) and variances (ADU²), NaN-padded.

    Notes
    -----
    For Poisson signal and Gaussian read noise,
    :math:`\\sigma^2_{ADU} = \\mu_{ADU}/g + n^2/g^2`; the brighter-fatter effect adds
    :math:`\\sim a_{00}\\mu^2` (Astier et al. 2019, eq. 16).

    References
    ----------
    .. [1] Janesick, J. R. 2001, *Scientific Charge-Coupled Devices*, SPIE.
    .. [2] Astier, P. et al. 2019, A&A 629, A36.
    """

    gain: Any
    noise: Any
    a00: Any = None
    turnoff: Any = None
    mean: Any = None
    variance: Any = None

    def __post_init__(self) -> None:
        gain = _float_array(self.gain, "gain", ndim=1)
        n = gain.size
        if n == 0 or np.any(gain <= 0):
            raise InvalidInputError("`gain` must hold one positive value per amplifier")
        object.__setattr__(self, "gain", gain)
        noise = _float_array(self.noise, "noise", ndim=1)
        if noise.shape != (n,):
            raise InvalidInputError(f"`noise` has shape {noise.shape}; expected ({n},)")
        object.__setattr__(self, "noise", noise)
        for f in ("a00", "turnoff"):
            v = getattr(self, f)
            arr = np.full(n, np.nan) if v is None else np.array(v, dtype=np.float64)
            if arr.shape != (n,):
                raise InvalidInputError(f"`{f}` has shape {arr.shape}; expected ({n},)")
            object.__setattr__(self, f, _readonly(arr))
        if (self.mean is None) != (self.variance is None):
            raise InvalidInputError("`mean` and `variance` must be given together")
        if self.mean is not None:
            m = _float_array(self.mean, "mean", ndim=2, finite=False)
            v = _float_array(self.variance, "variance", ndim=2, finite=False)
            if m.shape[0] != n or m.shape != v.shape:
                raise InvalidInputError(f"`mean`/`variance` have shapes {m.shape}/{v.shape}; expected ({n}, n_points)")
            object.__setattr__(self, "mean", m)
            object.__setattr__(self, "variance", v)

    @property
    def n_amps(self) -> int:
        """Number of amplifiers."""
        return int(self.gain.size)


# -- Calibs -------------------------------------------------------------------------------
_FRAMES = ("bias", "dark", "flat")


@dataclasses.dataclass(frozen=True, eq=False)
class Calibs:
    """The calibration products of one detector (plain data; ISR consumes them).

    Parameters
    ----------
    geometry : DetectorGeometry
    bias : array_like, shape ``assembled_shape``, optional
        Residual bias structure after overscan subtraction, e⁻.
    dark : array_like, shape ``assembled_shape``, optional
        Dark current, e⁻/s (scaled by the raw frame's ``dark_time``).
    flat : array_like, shape ``assembled_shape``, optional
        Response to uniform illumination normalised to mean 1 (pixel response
        non-uniformity, vignetting and pixel-area variations). Non-finite or ~0 pixels
        have no calibration (ISR flags them NO_DATA); bias/dark/flat are stored float32.
    linearity : sequence or mapping of Linearity, optional
        One forward :class:`Linearity` per amp (in amp order, or ``{name: Linearity}``);
        an entry may be None (linear amp).
    crosstalk : array_like, shape (n_amp, n_amp), optional
        ``crosstalk[victim, source]``: dimensionless coefficients in *electrons*: the
        victim's signal (e⁻ above the overscan, after non-linearity) gains
        ``crosstalk[v, s] * signal_s`` from the pixel of the source read at the same
        time (the same position in both raw segments, i.e. in read-out order).
    crosstalk_quadratic : array_like, shape (n_amp, n_amp), optional
        An extra ``crosstalk_quadratic[v, s] * signal_s**2`` (1/e⁻).
    bf_kernel : array_like, 2-D, odd shape, optional
        Brighter-fatter kernel :math:`K` (Coulton et al. 2018, 1/e⁻): the observed charge
        is :math:`Q_{obs} = Q - \\tfrac12 \\nabla\\cdot[Q\\,\\nabla(K\\otimes Q)]`.
    defects : sequence of BBox or bool array of ``assembled_shape``, optional
        Bad pixels/columns in assembled coordinates (True = bad).
    gains, read_noises : array_like, shape (n_amp,), optional
        Measured per-amp gain (e⁻/ADU) and read noise (e⁻), overriding the geometry's
        nominal values (:meth:`amp_gains`, :meth:`amp_read_noises`).
    ptc : PhotonTransferCurve, optional
    chromatic : array_like, 2-D, optional
        Coefficients of a wavelength-dependent photometric correction map (see
        ``lsstdrp.isr.calibs.ChromaticCorrectionMap``, whose description lives in
        ``metadata["chromatic"]``).
    metadata : dict
        Provenance etc. (JSON-serialisable values round-trip through FITS).

    Raises
    ------
    InvalidInputError
        Naming the field: wrong shapes, non-finite matrices or kernel, an even-sized
        kernel, a wrong number of per-amp entries.

    References
    ----------
    .. [1] Coulton, W. R. et al. 2018, AJ 155, 258 (brighter-fatter kernel correction).
    .. [2] Antilogus, P. et al. 2014, JINST 9, C03048.
    .. [3] Astier, P. et al. 2019, A&A 629, A36.
    """

    geometry: DetectorGeometry
    bias: Any = dataclasses.field(default=None, kw_only=True)
    dark: Any = dataclasses.field(default=None, kw_only=True)
    flat: Any = dataclasses.field(default=None, kw_only=True)
    linearity: Any = dataclasses.field(default=None, kw_only=True)
    crosstalk: Any = dataclasses.field(default=None, kw_only=True)
    crosstalk_quadratic: Any = dataclasses.field(default=None, kw_only=True)
    bf_kernel: Any = dataclasses.field(default=None, kw_only=True)
    defects: Any = dataclasses.field(default=None, kw_only=True)
    gains: Any = dataclasses.field(default=None, kw_only=True)
    read_noises: Any = dataclasses.field(default=None, kw_only=True)
    ptc: PhotonTransferCurve | None = dataclasses.field(default=None, kw_only=True)
    chromatic: Any = dataclasses.field(default=None, kw_only=True)
    metadata: dict = dataclasses.field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        geom = _geometry_check(self.geometry)
        n = geom.n_amps
        for f in _FRAMES:
            object.__setattr__(self, f, _frame(getattr(self, f), f, geom.assembled_shape))
        lin = self.linearity
        if lin is not None:
            if isinstance(lin, Linearity):
                raise InvalidInputError("`linearity` must hold one Linearity per amplifier (a sequence or mapping)")
            if isinstance(lin, Mapping):
                unknown = set(lin) - set(geom.names)
                if unknown:
                    raise InvalidInputError(f"`linearity` names unknown amplifiers {sorted(unknown)}")
                lin = [lin.get(name) for name in geom.names]
            lin = tuple(lin)
            if len(lin) != n:
                raise InvalidInputError(f"`linearity` has {len(lin)} entries; expected {n} (one per amplifier)")
            for i, item in enumerate(lin):
                if item is not None and not isinstance(item, Linearity):
                    raise InvalidInputError(f"`linearity[{i}]` must be a Linearity or None; got {type(item).__name__}")
            object.__setattr__(self, "linearity", lin)
        for f in ("crosstalk", "crosstalk_quadratic"):
            v = getattr(self, f)
            if v is not None:
                arr = _float_array(v, f, ndim=2)
                if arr.shape != (n, n):
                    raise InvalidInputError(f"`{f}` has shape {arr.shape}; expected ({n}, {n}) (victim, source)")
                object.__setattr__(self, f, arr)
        if self.bf_kernel is not None:
            k = _float_array(self.bf_kernel, "bf_kernel", ndim=2)
            if k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
                raise InvalidInputError(f"`bf_kernel` has shape {k.shape}; both sizes must be odd")
            object.__setattr__(self, "bf_kernel", k)
        d = self.defects
        if d is not None:
            if isinstance(d, np.ndarray) and d.ndim == 2:
                if d.dtype.kind != "b":
                    raise InvalidInputError(f"`defects` mask has dtype {d.dtype}; expected bool (True = bad)")
                if d.shape != geom.assembled_shape:
                    raise InvalidInputError(
                        f"`defects` mask has shape {d.shape}; it must be the assembled shape {geom.assembled_shape}")
                d = _readonly(np.array(d, dtype=bool, copy=True))
            else:
                try:
                    items = tuple(d)
                except TypeError:
                    raise InvalidInputError("`defects` must be a sequence of BBox or a boolean mask") from None
                d = tuple(_as_bbox(b, f"defects[{i}]") for i, b in enumerate(items))
                for i, b in enumerate(d):
                    if not b.fits_in(geom.assembled_shape):
                        raise InvalidInputError(
                            f"`defects[{i}]` {b} is outside the assembled frame {geom.assembled_shape}")
            object.__setattr__(self, "defects", d)
        for f, pos in (("gains", True), ("read_noises", False)):
            v = getattr(self, f)
            if v is not None:
                arr = _float_array(v, f, ndim=1)
                if arr.shape != (n,):
                    raise InvalidInputError(f"`{f}` has {arr.size} values; expected {n} (one per amplifier)")
                if (pos and np.any(arr <= 0)) or np.any(arr < 0):
                    raise InvalidInputError(f"`{f}` must be {'> 0' if pos else '>= 0'}")
                object.__setattr__(self, f, arr)
        if self.ptc is not None:
            if not isinstance(self.ptc, PhotonTransferCurve):
                raise InvalidInputError(f"`ptc` must be a PhotonTransferCurve; got {type(self.ptc).__name__}")
            if self.ptc.n_amps != n:
                raise InvalidInputError(f"`ptc` has {self.ptc.n_amps} amplifiers; expected {n}")
        if self.chromatic is not None:
            object.__setattr__(self, "chromatic", _float_array(self.chromatic, "chromatic", ndim=2))
        object.__setattr__(self, "metadata", dict(self.metadata))

    def amp_gains(self) -> np.ndarray:
        """Per-amp gains: :attr:`gains` if set, else the geometry's nominal gains."""
        return np.array(self.gains if self.gains is not None else self.geometry.gains, dtype=np.float64)

    def amp_read_noises(self) -> np.ndarray:
        """Per-amp read noises (e⁻): :attr:`read_noises` if set, else the geometry's."""
        return np.array(self.read_noises if self.read_noises is not None else self.geometry.read_noises,
                        dtype=np.float64)

    def defect_mask(self) -> np.ndarray:
        """Boolean assembled mask of the defects (all False when there are none)."""
        shape = self.geometry.assembled_shape
        if isinstance(self.defects, np.ndarray):
            return np.array(self.defects, dtype=bool)
        out = np.zeros(shape, dtype=bool)
        for b in self.defects or ():
            out[b.slices] = True
        return out

    def replace(self, **changes: Any) -> "Calibs":
        """A new container with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    # FITS ---------------------------------------------------------------------------------
    def to_fits(self, path: str | Path, *, overwrite: bool = False) -> None:
        """Write a multi-extension FITS file.

        Extensions: ``GEOMETRY`` (table), ``BIAS``/``DARK``/``FLAT`` (float32 images),
        ``LIN<i>`` (one image per amp with a linearity; header ``KIND``, ``TURNOFF``,
        ``AMPNAME``), ``CROSSTALK``/``CROSSTALK_QUAD``, ``BF_KERNEL``, ``DEFECTS`` (table
        y0 y1 x0 x1) or ``DEFECT_MASK`` (uint8 image), ``AMP_PARAMS`` (gains, read
        noises), ``PTC`` (table + ``PTC_MEAN``/``PTC_VAR`` images), ``CHROMATIC``; ``metadata`` as JSON
        in the primary header (``METAJSON``).

        Parameters
        ----------
        path : str or Path
        overwrite : bool
            Replace an existing file.
        """
        from astropy.io import fits

        prim = fits.PrimaryHDU()
        prim.header["LDRPTYPE"] = ("CALIBS", "lsstdrp.core.Calibs")
        prim.header["DETECTOR"] = self.geometry.detector
        prim.header["METAJSON"] = _meta_to_json(self.metadata)
        hdus = [prim, self.geometry.to_table_hdu()]
        for f in _FRAMES:
            arr = getattr(self, f)
            if arr is not None:
                hdus.append(fits.ImageHDU(np.asarray(arr, dtype=np.float32), name=f.upper()))
        if self.linearity is not None:
            prim.header["HASLIN"] = True
            for i, lin in enumerate(self.linearity):
                if lin is None:
                    continue
                hdu = fits.ImageHDU(lin._payload(), name=f"LIN{i}")
                hdu.header["KIND"] = lin.kind
                hdu.header["TURNOFF"] = lin.turnoff if math.isfinite(lin.turnoff) else -1.0
                hdu.header["AMPNAME"] = self.geometry.names[i]
                hdus.append(hdu)
        for f, ext in (("crosstalk", "CROSSTALK"), ("crosstalk_quadratic", "CROSSTALK_QUAD"),
                       ("bf_kernel", "BF_KERNEL"), ("chromatic", "CHROMATIC")):
            arr = getattr(self, f)
            if arr is not None:
                hdus.append(fits.ImageHDU(np.asarray(arr, dtype=np.float64), name=ext))
        if isinstance(self.defects, np.ndarray):
            hdus.append(fits.ImageHDU(self.defects.astype(np.uint8), name="DEFECT_MASK"))
        elif self.defects is not None:
            boxes = np.array([b.to_tuple() for b in self.defects], dtype=np.int64).reshape(-1, 4)
            hdus.append(fits.BinTableHDU.from_columns(
                [fits.Column(name=c, format="K", array=boxes[:, j]) for j, c in enumerate(("y0", "y1", "x0", "x1"))],
                name="DEFECTS"))
        if self.gains is not None or self.read_noises is not None:
            cols = []
            for f in ("gains", "read_noises"):
                if getattr(self, f) is not None:
                    cols.append(fits.Column(name=f, format="D", array=np.asarray(getattr(self, f))))
            hdus.append(fits.BinTableHDU.from_columns(cols, name="AMP_PARAMS"))
        if self.ptc is not None:
            p = self.ptc
            hdus.append(fits.BinTableHDU.from_columns(
                [fits.Column(name=f, format="D", array=np.asarray(getattr(p, f)))
                 for f in ("gain", "noise", "a00", "turnoff")], name="PTC"))
            if p.mean is not None:
                hdus.append(fits.ImageHDU(np.asarray(p.mean), name="PTC_MEAN"))
                hdus.append(fits.ImageHDU(np.asarray(p.variance), name="PTC_VAR"))
        fits.HDUList(hdus).writeto(path, overwrite=overwrite)

    @classmethod
    def from_fits(cls, path: str | Path) -> "Calibs":
        """Read a file written by :meth:`to_fits`.

        Raises
        ------
        InvalidInputError
            If the file is not an lsstdrp Calibs file.
        """
        from astropy.io import fits

        with fits.open(path, memmap=False) as hdul:
            h = hdul[0].header
            if h.get("LDRPTYPE") != "CALIBS" or "GEOMETRY" not in hdul:
                raise InvalidInputError(f"`path` {path} is not an lsstdrp Calibs file")
            geom = DetectorGeometry.from_table_hdu(hdul["GEOMETRY"])
            kw: dict[str, Any] = {}
            for f in _FRAMES:
                if f.upper() in hdul:
                    kw[f] = np.asarray(hdul[f.upper()].data)
            if h.get("HASLIN", False):
                lins: list[Linearity | None] = [None] * geom.n_amps
                for i in range(geom.n_amps):
                    if f"LIN{i}" in hdul:
                        hh = hdul[f"LIN{i}"]
                        t = float(hh.header["TURNOFF"])
                        lins[i] = Linearity._from_payload(hh.header["KIND"], hh.data, math.inf if t < 0 else t)
                kw["linearity"] = tuple(lins)
            for f, ext in (("crosstalk", "CROSSTALK"), ("crosstalk_quadratic", "CROSSTALK_QUAD"),
                           ("bf_kernel", "BF_KERNEL"), ("chromatic", "CHROMATIC")):
                if ext in hdul:
                    kw[f] = np.asarray(hdul[ext].data, dtype=np.float64)
            if "DEFECT_MASK" in hdul:
                kw["defects"] = np.asarray(hdul["DEFECT_MASK"].data) != 0
            elif "DEFECTS" in hdul:
                t = hdul["DEFECTS"].data
                kw["defects"] = tuple(BBox(int(a), int(b), int(c), int(d))
                                      for a, b, c, d in zip(t["y0"], t["y1"], t["x0"], t["x1"]))
            if "AMP_PARAMS" in hdul:
                t = hdul["AMP_PARAMS"].data
                for f in ("gains", "read_noises"):
                    if f in t.names:
                        kw[f] = np.asarray(t[f], dtype=np.float64)
            if "PTC" in hdul:
                t = hdul["PTC"].data
                pkw = {f: np.asarray(t[f], dtype=np.float64) for f in ("gain", "noise", "a00", "turnoff")}
                if "PTC_MEAN" in hdul:
                    pkw["mean"] = np.asarray(hdul["PTC_MEAN"].data, dtype=np.float64)
                    pkw["variance"] = np.asarray(hdul["PTC_VAR"].data, dtype=np.float64)
                kw["ptc"] = PhotonTransferCurve(**pkw)
            return cls(geom, metadata=json.loads(h.get("METAJSON", "{}")), **kw)
