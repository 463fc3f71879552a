"""Master bias, dark and flat: sigma-clipped combination streamed by row tiles."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from typing import Any

import numpy as np

from ...core import Calibs, InvalidInputError, check_in
from .._common import check_finite_scalar, check_int
from . import _kernels
from ._inputs import FrameSource, open_sources

__all__ = ["MasterFrame", "combine_frames", "make_master_bias", "make_master_dark", "make_master_flat"]

logger = logging.getLogger("lsstdrp.isr.calibs")


@dataclasses.dataclass(frozen=True, eq=False)
class MasterFrame:
    """A combined calibration frame.

    Attributes
    ----------
    image : numpy.ndarray of float32
        The master: e⁻ (bias), e⁻/s (dark), mean-1 response (flat), or the inputs'
        units for :func:`combine_frames`. NaN where no frame had a finite value.
    variance : numpy.ndarray of float32
        Variance of the combined value (scatter of the kept values / their number; x
        pi/2 for the median).
    n_used : numpy.ndarray of uint16
        Frames kept per pixel after clipping.
    n_frames : int
    scales : numpy.ndarray of float64
        The per-frame divisor applied before combining (1 for biases, the dark time
        for darks, the flat level for flats).
    kind : str
        ``"bias"``, ``"dark"``, ``"flat"`` or ``"combined"``.
    params : dict
        The options used (method, clipping, tile rows ...).
    """

    image: np.ndarray
    variance: np.ndarray
    n_used: np.ndarray
    n_frames: int
    scales: np.ndarray
    kind: str
    params: dict

    @property
    def n_rejected(self) -> int:
        """Total number of (frame, pixel) values rejected by the clipping."""
        return int(self.n_frames * self.image.size - np.sum(self.n_used, dtype=np.int64))


def _tile_rows(n: int, shape: tuple[int, int], memory_limit: float, tile_rows: int | None) -> int:
    if tile_rows is not None:
        return max(1, min(int(tile_rows), shape[0]))
    # the tile stack (float32) plus one float32 read buffer per row
    per_row = 4.0 * shape[1] * (n + 1)
    return int(max(1, min(shape[0], memory_limit // per_row)))


def _combine_sources(srcs: list[FrameSource], *, scales: np.ndarray, offsets: np.ndarray, method: str, nsigma: Any,
                     center: str, scale: str, maxiters: int, min_keep: int, tile_rows: int | None,
                     memory_limit: float, progress: bool, label: str) -> tuple:
    n = len(srcs)
    shape = srcs[0].shape
    rows = _tile_rows(n, shape, memory_limit, tile_rows)
    lo, hi = nsigma
    out = np.empty(shape, dtype=np.float32)
    var = np.empty(shape, dtype=np.float32)
    nused = np.empty(shape, dtype=np.uint16)
    stack = np.empty((n, rows, shape[1]), dtype=np.float32)
    inv = (1.0 / scales).astype(np.float64)
    off = np.asarray(offsets, dtype=np.float64)
    starts = range(0, shape[0], rows)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"combining {label}", unit="tile")
    for r0 in starts:
        r1 = min(shape[0], r0 + rows)
        st = stack[:, : r1 - r0]
        for i, s in enumerate(srcs):
            st[i] = s.read(r0, r1)
        _kernels.clip_combine(st, inv, off, _kernels.METHOD_CODES[method], _kernels.CENTER_CODES[center],
                              _kernels.SCALE_CODES[scale], float(lo), float(hi), int(maxiters), int(min_keep),
                              out[r0:r1], var[r0:r1], nused[r0:r1])
    return out, var, nused, rows


def _options(method: str, nsigma: Any, center: str, scale: str, maxiters: Any, memory_limit: Any) -> tuple:
    check_in(method, "method", ("mean", "median"))
    check_in(center, "center", ("median", "mean"))
    check_in(scale, "scale", ("std", "mad"))
    if np.ndim(nsigma) == 0:
        lo = hi = check_finite_scalar(nsigma, "nsigma", minimum=0.0, strict=True)
    else:
        pair = tuple(nsigma)
        if len(pair) != 2:
            raise InvalidInputError(f"`nsigma` must be a number or (low, high); got {nsigma!r}")
        lo = check_finite_scalar(pair[0], "nsigma[0]", minimum=0.0, strict=True)
        hi = check_finite_scalar(pair[1], "nsigma[1]", minimum=0.0, strict=True)
    maxiters = check_int(maxiters, "maxiters", minimum=0)
    memory_limit = check_finite_scalar(memory_limit, "memory_limit", minimum=1e5)
    return (lo, hi), maxiters, memory_limit


def _run(frames: Any, kind: str | None, *, calibs: Calibs | None, method: str, nsigma: Any, center: str,
         scale: str, maxiters: int, min_keep: int, tile_rows: int | None, memory_limit: float, hdu: Any,
         spool_dir: str | None, progress: bool, scale_fn: Any, label: str, extra: dict) -> MasterFrame:
    nsig, maxiters, memory_limit = _options(method, nsigma, center, scale, maxiters, memory_limit)
    min_keep = check_int(min_keep, "min_keep", minimum=1)
    if tile_rows is not None:
        tile_rows = check_int(tile_rows, "tile_rows", minimum=1)
    with contextlib.ExitStack() as stack:
        srcs = open_sources(frames, stack, kind=kind, calibs=calibs, hdu=hdu, spool_dir=spool_dir,
                            progress=progress)
        scales, offsets = scale_fn(srcs)
        img, var, nused, rows = _combine_sources(
            srcs, scales=scales, offsets=offsets, method=method, nsigma=nsig, center=center, scale=scale,
            maxiters=maxiters, min_keep=min_keep, tile_rows=tile_rows, memory_limit=memory_limit,
            progress=progress, label=label)
        for s in srcs:
            s.close()
    params = {"method": method, "nsigma": list(nsig), "center": center, "scale": scale, "maxiters": maxiters,
              "min_keep": min_keep, "tile_rows": rows, **extra}
    logger.debug("combined %d %s frames in tiles of %d rows", len(srcs), label, rows)
    return MasterFrame(img, var, nused, len(srcs), np.asarray(scales, dtype=np.float64), kind or "combined", params)


_DOC_COMMON = """
    method : {"mean", "median"}
        Combination of the values kept by the clipping.
    nsigma : float or (float, float)
        Clipping thresholds (low, high) in units of the width.
    center : {"median", "mean"}
        Clipping centre.
    scale : {"std", "mad"}
        Clipping width: standard deviation (ddof 0) or 1.4826 x MAD.
    maxiters : int
        Clipping iterations (0: no clipping; stops early when nothing changes).
    min_keep : int
        Clipping stops before fewer values than this would remain.
    tile_rows : int, optional
        Rows per tile; default from ``memory_limit``.
    memory_limit : float
        Bytes for the tile stack (all frames x tile rows, float32).
    hdu : int or str, optional
        FITS extension of path inputs (default: the first 2-D image).
    spool_dir : str, optional
        Where raws/exposures/callables are spooled (a temporary directory).
    progress : bool
        tqdm progress bars."""


def _fill_doc(func: Any) -> Any:
    func.__doc__ = func.__doc__.replace("\n    {common}", _DOC_COMMON)
    return func


@_fill_doc
def combine_frames(
    frames: Any,
    *,
    method: str = "mean",
    nsigma: float | tuple[float, float] = 3.0,
    center: str = "median",
    scale: str = "std",
    maxiters: int = 5,
    min_keep: int = 2,
    scales: Any = None,
    kind: str | None = None,
    tile_rows: int | None = None,
    memory_limit: float = 256e6,
    hdu: Any = None,
    spool_dir: str | None = None,
    progress: bool = False,
) -> MasterFrame:
    """Sigma-clipped mean or median of many frames, streamed by row tiles.

    Only ``tile_rows`` rows of every frame are in memory at a time: FITS paths are
    memory-mapped and read by rows, arrays (``numpy.memmap`` included) are sliced, and
    anything that must be computed (a zero-argument callable, an
    :class:`~lsstdrp.core.Exposure`) is materialised once and spooled to a temporary
    file. Per pixel, the values :math:`v_i = x_i / s_i` are clipped iteratively,
    :math:`c - \\kappa_{lo}\\sigma \\le v_i \\le c + \\kappa_{hi}\\sigma`, then averaged.

    Parameters
    ----------
    frames : iterable
        2-D frames of one shape: paths to FITS files, arrays, Exposures or callables
        returning one. An exposure-type label found in headers (``IMAGETYP``,
        ``OBSTYPE``, ``CALKIND``) or metadata (``calib_kind``) must be the same for all.
    scales : array_like, shape (n_frames,), optional
        Per-frame divisors (default 1).
    kind : str, optional
        If given, frames labelled with another exposure type are rejected.
    {common}

    Returns
    -------
    MasterFrame
        ``kind`` ``"combined"`` unless given.

    Raises
    ------
    InvalidInputError
        No frames, frames of different shapes or exposure types, bad options or scales.
    TypeError
        An item that is not a frame.

    Examples
    --------
    >>> import numpy as np
    >>> frames = [np.full((4, 5), 10.0) for _ in range(9)] + [np.full((4, 5), 1e4)]
    >>> m = combine_frames(frames, nsigma=3.0)
    >>> float(m.image[0, 0]), int(m.n_used[0, 0])
    (10.0, 9)
    """
    def fn(srcs: list[FrameSource]) -> tuple:
        if scales is None:
            return np.ones(len(srcs)), np.zeros(len(srcs))
        s = np.asarray(scales, dtype=np.float64).ravel()
        if s.shape != (len(srcs),) or not np.isfinite(s).all() or np.any(s == 0):
            raise InvalidInputError(f"`scales` must hold {len(srcs)} finite non-zero values; got {scales!r}")
        return s, np.zeros(len(srcs))

    return _run(frames, None if kind is None else str(kind), calibs=None, method=method, nsigma=nsigma,
                center=center, scale=scale, maxiters=maxiters, min_keep=min_keep, tile_rows=tile_rows,
                memory_limit=memory_limit, hdu=hdu, spool_dir=spool_dir, progress=progress, scale_fn=fn,
                label="frames", extra={})


@_fill_doc
def make_master_bias(
    frames: Any,
    *,
    calibs: Calibs | None = None,
    method: str = "mean",
    nsigma: float | tuple[float, float] = 3.0,
    center: str = "median",
    scale: str = "std",
    maxiters: int = 5,
    min_keep: int = 2,
    tile_rows: int | None = None,
    memory_limit: float = 256e6,
    hdu: Any = None,
    spool_dir: str | None = None,
    progress: bool = False,
) -> MasterFrame:
    """Master bias: the clipped combination of overscan-corrected bias frames (e⁻).

    Parameters
    ----------
    frames : iterable
        Bias frames: :class:`~lsstdrp.core.RawFrame` objects or lsstdrp raw FITS files
        (reduced with ``calibs``: overscan, gain, crosstalk, linearity, assembly), or
        already reduced 2-D frames in e⁻ (paths or arrays). Frames labelled as another
        exposure type are rejected.
    calibs : Calibs, optional
        Needed for raw frames (gains, crosstalk, linearity).
    {common}

    Returns
    -------
    MasterFrame
        ``image`` is :attr:`Calibs.bias <lsstdrp.core.Calibs>` (the residual bias
        structure after the overscan, e⁻).

    Raises
    ------
    InvalidInputError
        Empty input, different shapes, non-bias frames, raws without ``calibs``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> m = make_master_bias([rng.normal(0, 5, (8, 8)) for _ in range(10)])
    >>> m.kind, m.image.dtype, bool(np.abs(m.image).max() < 10)
    ('bias', dtype('float32'), True)
    """
    return _run(frames, "bias", calibs=calibs, method=method, nsigma=nsigma, center=center, scale=scale,
                maxiters=maxiters, min_keep=min_keep, tile_rows=tile_rows, memory_limit=memory_limit, hdu=hdu,
                spool_dir=spool_dir, progress=progress,
                scale_fn=lambda s: (np.ones(len(s)), np.zeros(len(s))), label="biases", extra={})


@_fill_doc
def make_master_dark(
    frames: Any,
    *,
    calibs: Calibs | None = None,
    dark_times: Any = None,
    bias_dark_time: float = 0.0,
    method: str = "mean",
    nsigma: float | tuple[float, float] = 3.0,
    center: str = "median",
    scale: str = "std",
    maxiters: int = 5,
    min_keep: int = 2,
    tile_rows: int | None = None,
    memory_limit: float = 256e6,
    hdu: Any = None,
    spool_dir: str | None = None,
    progress: bool = False,
) -> MasterFrame:
    """Master dark: dark current in e⁻/s from bias-subtracted dark frames.

    Each frame is divided by its dark time minus ``bias_dark_time`` (the dark charge
    already in the master bias, which was read out too), then combined:
    :math:`D = \\mathrm{clip\\,mean}_i\\,[x_i / (t_i - t_b)]`.

    Parameters
    ----------
    frames : iterable
        Dark frames: raws (reduced with ``calibs``, whose ``bias`` is subtracted) or
        bias-subtracted 2-D frames in e⁻.
    calibs : Calibs, optional
        Needed for raw frames.
    dark_times : array_like, optional
        Seconds per frame; default from the raws / FITS ``DARKTIME`` (``EXPTIME``).
    bias_dark_time : float
        Dark time of the bias frames (s) whose dark charge the master bias holds.
    {common}

    Returns
    -------
    MasterFrame
        ``image`` in e⁻/s (:attr:`Calibs.dark <lsstdrp.core.Calibs>`), ``scales`` the
        effective dark times.

    Raises
    ------
    InvalidInputError
        Empty input, different shapes, non-dark frames, unknown or non-positive
        effective dark times.

    Examples
    --------
    >>> import numpy as np
    >>> m = make_master_dark([np.full((4, 4), 3.0)] * 3, dark_times=[30.0] * 3)
    >>> round(float(m.image[0, 0]), 6)
    0.1
    """
    tb = check_finite_scalar(bias_dark_time, "bias_dark_time", minimum=0.0)

    def fn(srcs: list[FrameSource]) -> tuple:
        if dark_times is not None:
            t = np.asarray(dark_times, dtype=np.float64).ravel()
            if t.shape != (len(srcs),):
                raise InvalidInputError(f"`dark_times` has {t.size} values; expected {len(srcs)} (one per frame)")
        else:
            missing = [s.name for s in srcs if s.dark_time is None]
            if missing:
                raise InvalidInputError(f"no dark time for {missing[:3]}; pass `dark_times`")
            t = np.array([s.dark_time for s in srcs], dtype=np.float64)
        eff = t - tb
        if not np.isfinite(eff).all() or np.any(eff <= 0):
            raise InvalidInputError(f"dark times minus `bias_dark_time` must be > 0; got {eff.tolist()}")
        return eff, np.zeros(len(srcs))

    return _run(frames, "dark", calibs=calibs, method=method, nsigma=nsigma, center=center, scale=scale,
                maxiters=maxiters, min_keep=min_keep, tile_rows=tile_rows, memory_limit=memory_limit, hdu=hdu,
                spool_dir=spool_dir, progress=progress, scale_fn=fn, label="darks",
                extra={"bias_dark_time": tb})


def _frame_level(src: FrameSource, statistic: str, max_samples: int = 1_000_000) -> float:
    ny, nx = src.shape
    step = max(1, int(np.ceil(ny * nx / max_samples)))
    rows = []
    for r0 in range(0, ny, step):
        rows.append(src.read(r0, r0 + 1)[0])
    v = np.concatenate(rows)
    v = v[np.isfinite(v)]
    if v.size == 0:
        raise InvalidInputError(f"`{src.name}` has no finite pixel")
    return float(np.median(v) if statistic == "median" else np.mean(v))


@_fill_doc
def make_master_flat(
    frames: Any,
    *,
    calibs: Calibs | None = None,
    level: str = "median",
    method: str = "mean",
    nsigma: float | tuple[float, float] = 3.0,
    center: str = "median",
    scale: str = "std",
    maxiters: int = 5,
    min_keep: int = 2,
    tile_rows: int | None = None,
    memory_limit: float = 256e6,
    hdu: Any = None,
    spool_dir: str | None = None,
    progress: bool = False,
) -> MasterFrame:
    """Master flat: per-frame scaled, clipped combination normalised to mean 1.

    Each frame is divided by its level :math:`L_i` (median or mean of up to 10⁶
    pixels on a regular row subsample), the scaled frames are clip-combined, and the
    result is divided by its mean over finite pixels, so
    :math:`F = \\mathrm{clip\\,mean}_i(x_i/L_i)\\,/\\,\\langle\\cdot\\rangle`.

    Parameters
    ----------
    frames : iterable
        Flat frames: raws (reduced with ``calibs``: bias and dark subtracted) or
        reduced 2-D frames in e⁻.
    calibs : Calibs, optional
        Needed for raw frames.
    level : {"median", "mean"}
        Per-frame level statistic.
    {common}

    Returns
    -------
    MasterFrame
        ``image`` with mean 1 (:attr:`Calibs.flat <lsstdrp.core.Calibs>`), variance
        in the same units; ``scales`` the frame levels.

    Raises
    ------
    InvalidInputError
        Empty input, different shapes, non-flat frames, a frame with level <= 0.

    Examples
    --------
    >>> import numpy as np
    >>> resp = np.linspace(0.9, 1.1, 16).reshape(4, 4)
    >>> m = make_master_flat([resp * 1e4, resp * 2e4, resp * 3e4])
    >>> bool(np.allclose(m.image, resp / resp.mean(), rtol=1e-6))
    True
    """
    check_in(level, "level", ("median", "mean"))

    def fn(srcs: list[FrameSource]) -> tuple:
        lv = np.array([_frame_level(s, level) for s in srcs])
        if np.any(lv <= 0):
            bad = [s.name for s, v in zip(srcs, lv, strict=True) if v <= 0]
            raise InvalidInputError(f"flat frames {bad[:3]} have a level <= 0; is the illumination on?")
        return lv, np.zeros(len(srcs))

    m = _run(frames, "flat", calibs=calibs, method=method, nsigma=nsigma, center=center, scale=scale,
             maxiters=maxiters, min_keep=min_keep, tile_rows=tile_rows, memory_limit=memory_limit, hdu=hdu,
             spool_dir=spool_dir, progress=progress, scale_fn=fn, label="flats", extra={"level": level})
    good = np.isfinite(m.image)
    norm = float(np.mean(m.image[good], dtype=np.float64)) if good.any() else np.nan
    if not np.isfinite(norm) or norm <= 0:
        raise InvalidInputError("the combined flat has no positive finite mean")
    img = m.image
    img /= np.float32(norm)
    var = m.variance
    var /= np.float32(norm * norm)
    return dataclasses.replace(m, params={**m.params, "normalisation": norm})
