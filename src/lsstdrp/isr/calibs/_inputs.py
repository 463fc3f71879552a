"""Frame sources for the master combination: paths, arrays, raw frames, lazy sequences."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ...core import Calibs, Exposure, InvalidInputError, RawFrame

__all__ = ["FrameSource", "open_sources", "normalise_kind", "calibration_isr"]

_KIND_ALIASES = {
    "zero": "bias", "bias": "bias", "biases": "bias",
    "dark": "dark", "darks": "dark",
    "flat": "flat", "flats": "flat", "flat_pair": "flat", "flatfield": "flat", "flat field": "flat",
    "dome flat": "flat", "domeflat": "flat", "sky flat": "flat", "skyflat": "flat", "twilight flat": "flat",
    "light": "science", "object": "science", "science": "science",
}
_META_KEYS = ("calib_kind", "imagetyp", "obstype", "image_type", "imgtype")
_HEADER_KEYS = ("CALKIND", "IMAGETYP", "OBSTYPE", "IMGTYPE")


def normalise_kind(kind: Any) -> str | None:
    """Canonical exposure type (``bias``, ``dark``, ``flat``, ``science``) of a label."""
    if kind is None:
        return None
    k = str(kind).strip().lower()
    return _KIND_ALIASES.get(k, k) if k else None


def _kind_from_meta(meta: dict) -> str | None:
    low = {str(k).lower(): v for k, v in meta.items()}
    for key in _META_KEYS:
        if low.get(key) is not None:
            return normalise_kind(low[key])
    return None


class FrameSource:
    """One input frame, readable by row blocks (``read(r0, r1)`` -> float32 rows)."""

    def __init__(self, array: Any, name: str, *, kind: str | None = None, exptime: float | None = None,
                 dark_time: float | None = None, closer: Callable[[], None] | None = None) -> None:
        self.array = array
        self.name = name
        self.kind = kind
        self.exptime = exptime
        self.dark_time = dark_time
        self._closer = closer
        shape = tuple(int(s) for s in np.shape(array))
        if len(shape) != 2 or min(shape) < 1:
            raise InvalidInputError(f"`{name}` has shape {shape}; expected a non-empty 2-D image")
        dt = np.dtype(getattr(array, "dtype", np.float64))
        if dt.kind not in "fiub":
            raise InvalidInputError(f"`{name}` has dtype {dt}; expected a real numeric image")
        self.shape = shape

    def read(self, r0: int, r1: int) -> np.ndarray:
        return np.asarray(self.array[r0:r1], dtype=np.float32)

    def close(self) -> None:
        if self._closer is not None:
            self._closer()
            self._closer = None


class _FileRows:
    """Rows of an uncompressed image stored at ``offset`` of a file, read with ``os.pread``
    (no memory map: mapped pages would count in the resident set)."""

    def __init__(self, path: str | Path, offset: int, dtype: np.dtype, shape: tuple[int, int],
                 bscale: float = 1.0, bzero: float = 0.0) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.offset = int(offset)
        self.dtype = np.dtype(dtype)
        self.shape = shape
        self.bscale = bscale
        self.bzero = bzero

    def __getitem__(self, rows: slice) -> np.ndarray:
        r0, r1, _ = rows.indices(self.shape[0])
        nx = self.shape[1]
        nbytes = (r1 - r0) * nx * self.dtype.itemsize
        buf = os.pread(self.fd, nbytes, self.offset + r0 * nx * self.dtype.itemsize)
        if len(buf) != nbytes:
            raise InvalidInputError(f"file truncated: expected {nbytes} bytes at row {r0}")
        a = np.frombuffer(buf, dtype=self.dtype).reshape(r1 - r0, nx).astype(np.float32)
        if self.bscale != 1.0 or self.bzero != 0.0:
            a *= np.float32(self.bscale)
            a += np.float32(self.bzero)
        return a

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_BITPIX = {8: "u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


def calibration_isr(raw: RawFrame, calibs: Calibs, kind: str) -> np.ndarray:
    """ISR of one calibration raw up to the step its master calibrates (float32 e⁻).

    bias: overscan, gain, crosstalk, linearity, assembly; dark: also the bias; flat: also
    the bias and the dark. Never brighter-fatter, defects, flat or cosmic rays.
    """
    from .. import run_isr

    c = calibs.replace(flat=None, bf_kernel=None, defects=None)
    res = run_isr(raw, c, overscan_statistic="mean", do_bias=kind != "bias", do_dark=kind == "flat", do_bf=False,
                  do_defects=False,
                  do_flat=False, cosmic_rays="none")
    return np.asarray(res.exposure.image, dtype=np.float32)


def _fits_source(path: Path, name: str, hdu: Any, stack: contextlib.ExitStack) -> Any:
    from astropy.io import fits

    if not path.exists():
        raise InvalidInputError(f"`{name}`: file {str(path)!r} does not exist")
    try:
        hdul = fits.open(path, memmap=True)
    except OSError as exc:
        raise InvalidInputError(f"`{name}`: {str(path)!r} is not a readable FITS file ({exc})") from None
    stack.callback(hdul.close)
    h0 = hdul[0].header
    if h0.get("LDRPTYPE") == "RAWFRAME":
        return RawFrame.from_fits(path)
    if hdu is None:
        idx = next((i for i, h in enumerate(hdul) if h.is_image and h.header.get("NAXIS", 0) == 2), None)
        if idx is None:
            raise InvalidInputError(f"`{name}`: {str(path)!r} has no 2-D image HDU")
    else:
        idx = hdu
    h = hdul[idx].header
    kind = None
    for hh in (h, h0):
        for key in _HEADER_KEYS:
            if key in hh:
                kind = normalise_kind(hh[key])
                break
        if kind is None and "METAJSON" in hh:
            with contextlib.suppress(ValueError):
                kind = _kind_from_meta(json.loads(hh["METAJSON"]))
        if kind is not None:
            break
    exptime = h.get("EXPTIME", h0.get("EXPTIME"))
    dark_time = h.get("DARKTIME", h0.get("DARKTIME", exptime))
    hd = hdul[idx]
    data: Any
    if type(hd).__name__ in ("PrimaryHDU", "ImageHDU") and h.get("BITPIX") in _BITPIX:
        rows = _FileRows(path, hd.fileinfo()["datLoc"], np.dtype(_BITPIX[h["BITPIX"]]),
                         (int(h["NAXIS2"]), int(h["NAXIS1"])), float(h.get("BSCALE", 1.0)), float(h.get("BZERO", 0.0)))
        stack.callback(rows.close)
        data = rows
    else:  # compressed or unusual HDUs: astropy's section reader
        data = hd.section
    src = FrameSource(data, name, kind=kind,
                       exptime=None if exptime is None else float(exptime),
                       dark_time=None if dark_time is None else float(dark_time))
    return src


def _spool(image: np.ndarray, tmpdir: str, i: int, stack: contextlib.ExitStack) -> Any:
    path = os.path.join(tmpdir, f"frame{i:05d}.npy")
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=image.shape)
    mm[...] = image
    mm.flush()
    offset = mm.offset
    del mm
    rows = _FileRows(path, offset, np.dtype(np.float32), image.shape)
    stack.callback(rows.close)
    return rows


def open_sources(frames: Any, stack: contextlib.ExitStack, *, kind: str | None, calibs: Calibs | None,
                 hdu: Any = None, spool_dir: str | None = None, progress: bool = False,
                 name: str = "frames") -> list[FrameSource]:
    """Turn the user's ``frames`` into row-readable sources (files stay on disk).

    Paths are memory-mapped; arrays (including ``numpy.memmap``) are sliced in place;
    raw frames (objects or lsstdrp raw FITS files), exposures and zero-argument callables
    are materialised one at a time, reduced (raws: :func:`calibration_isr`) and spooled to
    a temporary float32 ``.npy`` file, so at most one whole frame is in memory.
    """
    if frames is None:
        raise TypeError(f"`{name}` is None; expected a sequence of paths, arrays or raw frames")
    if isinstance(frames, (str, bytes, os.PathLike, np.ndarray)) and not (
            isinstance(frames, np.ndarray) and frames.ndim == 3):
        raise InvalidInputError(f"`{name}` must be a sequence of frames (paths, 2-D arrays, RawFrames); "
                                f"got a single {type(frames).__name__}")
    if not isinstance(frames, Iterable):
        raise TypeError(f"`{name}` must be an iterable of frames; got {type(frames).__name__}")
    it = iter(frames)
    if progress:
        from tqdm.auto import tqdm

        it = iter(tqdm(it, desc=f"reading {name}", unit="frame", total=len(frames) if hasattr(frames, "__len__") else None))
    tmpdir: str | None = None
    out: list[FrameSource] = []
    for i, item in enumerate(it):
        nm = f"{name}[{i}]"
        if callable(item) and not isinstance(item, (np.ndarray, RawFrame, Exposure)):
            item = item()
        if isinstance(item, (str, os.PathLike)):
            item = _fits_source(Path(item), nm, hdu, stack)
        if isinstance(item, FrameSource):
            out.append(item)
            continue
        if isinstance(item, RawFrame):
            if calibs is None:
                raise InvalidInputError(f"`{nm}` is a RawFrame: pass `calibs` (gains, crosstalk, linearity, and the "
                                        "bias/dark the master needs) to reduce it")
            if item.geometry != calibs.geometry:
                raise InvalidInputError(f"`{nm}` has a different detector geometry than `calibs`")
            fk = _kind_from_meta(item.metadata)
            if fk is None and item.exptime == 0:
                fk = "bias"
            img = calibration_isr(item, calibs, kind or fk or "bias")
            if tmpdir is None:
                tmpdir = stack.enter_context(tempfile.TemporaryDirectory(dir=spool_dir, prefix="lsstdrp_calibs_"))
            out.append(FrameSource(_spool(img, tmpdir, i, stack), nm, kind=fk, exptime=item.exptime,
                                   dark_time=item.dark_time))
            del img
            continue
        if isinstance(item, Exposure):
            meta = dict(item.metadata)
            fk = _kind_from_meta(meta)
            if tmpdir is None:
                tmpdir = stack.enter_context(tempfile.TemporaryDirectory(dir=spool_dir, prefix="lsstdrp_calibs_"))
            out.append(FrameSource(_spool(np.asarray(item.image), tmpdir, i, stack), nm, kind=fk, exptime=item.exptime,
                                   dark_time=meta.get("dark_time", item.exptime)))
            continue
        if isinstance(item, np.ndarray) or (hasattr(item, "shape") and hasattr(item, "__getitem__")):
            out.append(FrameSource(item, nm))
            continue
        try:
            arr = np.asarray(item)
        except Exception:  # pragma: no cover - numpy raises many types
            arr = None
        if arr is None or arr.dtype.kind == "O":
            raise TypeError(f"`{nm}` must be a path, a 2-D array, an Exposure, a RawFrame or a callable returning "
                            f"one; got {type(item).__name__}")
        out.append(FrameSource(arr, nm))
    if not out:
        raise InvalidInputError(f"`{name}` is empty; a master needs at least one frame")
    shapes = {s.shape for s in out}
    if len(shapes) > 1:
        detail = ", ".join(f"{s.name} {s.shape}" for s in out[:6])
        raise InvalidInputError(f"`{name}` have different shapes ({detail}); all frames must have one shape")
    kinds = {s.kind for s in out if s.kind is not None}
    if len(kinds) > 1:
        detail = ", ".join(f"{s.name}: {s.kind}" for s in out if s.kind is not None)
        raise InvalidInputError(f"`{name}` mix exposure types ({detail}); combine one type at a time")
    if kind is not None and kinds and kinds != {kind}:
        raise InvalidInputError(f"`{name}` are {kinds.pop()} frames; expected {kind} frames")
    return out
