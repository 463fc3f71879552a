"""Crosstalk coefficients from bright sources in raw frames."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import ndimage

from ...core import Calibs, InvalidInputError, RawFrame
from .._common import check_finite_scalar, check_int

__all__ = ["CrosstalkFit", "measure_crosstalk"]


@dataclasses.dataclass(frozen=True, eq=False)
class CrosstalkFit:
    """Crosstalk coefficients measured from bright sources.

    Attributes
    ----------
    coefficients : numpy.ndarray, shape (n_amp, n_amp)
        ``[victim, source]`` in electrons (the convention of ``Calibs.crosstalk``); 0
        on the diagonal and where nothing was measured.
    errors : numpy.ndarray, shape (n_amp, n_amp)
        1-sigma (jackknife over frames); NaN where not measured.
    quadratic, quadratic_errors : numpy.ndarray or None, shape (n_amp, n_amp)
        ``[victim, source]`` quadratic terms (1/e⁻) when fitted.
    n_pixels : numpy.ndarray of int, shape (n_amp, n_amp)
        Bright source pixels used per pair.
    success : bool
    reason : str
    """

    coefficients: np.ndarray
    errors: np.ndarray
    quadratic: np.ndarray | None
    quadratic_errors: np.ndarray | None
    n_pixels: np.ndarray
    success: bool
    reason: str


def _segments_e(raw: RawFrame, gains: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per amp: signal in e⁻ above the per-row serial overscan (read-out order), and its
    unclipped mask (below the amp's saturation)."""
    geom = raw.geometry
    data = raw.data
    sig, ok = [], []
    for k, a in enumerate(geom.amplifiers):
        so = a.serial_overscan_bbox
        if so.is_empty:
            raise InvalidInputError(f"amplifier {a.name} has no serial overscan")
        rows = data[a.data_bbox.y0:a.data_bbox.y1]
        level = rows[:, so.x0:so.x1].astype(np.float64).mean(axis=1)
        seg = data[a.data_bbox.slices].astype(np.float64) - level[:, None]
        ok.append(seg < 0.98 * a.saturation)
        sig.append(seg * gains[k])
    return sig, ok


def _within_fit(X: np.ndarray, y: np.ndarray, f: np.ndarray, nf: int, keep: np.ndarray) -> tuple:
    """Least squares of y on X with a free offset per frame (regression on the values
    minus their frame means); returns the coefficients, the demeaned X and y, counts."""
    fk = f[keep]
    cnt = np.bincount(fk, minlength=nf).astype(np.float64)
    safe = np.maximum(cnt, 1)
    Xk = X[keep].copy()
    for j in range(X.shape[1]):
        Xk[:, j] -= (np.bincount(fk, weights=Xk[:, j], minlength=nf) / safe)[fk]
    yk = y[keep] - (np.bincount(fk, weights=y[keep], minlength=nf) / safe)[fk]
    p, *_ = np.linalg.lstsq(Xk, yk, rcond=None)
    return p, Xk, yk, cnt


def _sky(seg: np.ndarray) -> tuple[float, float]:
    """Sky level and noise of a segment: median and MAD, iteratively clipped at 3 sigma
    (the amp's own sources are excluded as long as they cover < half of it)."""
    v = seg.ravel()
    med = float(np.median(v))
    sd = 1.4826 * float(np.median(np.abs(v - med)))
    for _ in range(10):
        k = v[np.abs(v - med) < 3 * sd + 1e-9]
        if k.size < 10:
            break
        m2 = float(np.median(k))
        sd2 = 1.4826 * float(np.median(np.abs(k - m2)))
        if m2 == med and sd2 == sd:
            break
        med, sd = m2, sd2
    return med, max(sd, 1.0)


def measure_crosstalk(
    raws: Any,
    *,
    calibs: Calibs | None = None,
    threshold: float = 2e4,
    max_coefficient: float = 2e-3,
    nsigma: float = 4.0,
    quadratic: bool = False,
    min_pixels: int = 50,
    grow: int = 8,
) -> CrosstalkFit:
    """Crosstalk coefficients ``c[victim, source]`` from bright sources (as ``cp_pipe``).

    In each raw frame, every amp's signal (e⁻ above its per-row serial overscan level,
    in read-out order) is compared pixel by pixel with every other amp's at the same
    read-out position. For each victim, at the pixels where some other amp is bright
    (above ``threshold`` e⁻; no amp saturated there) and the victim has no source of its
    own (none brighter than ``max_coefficient`` x the brightest source + 5 sigma within
    ``grow`` pixels), the victim's signal minus its sky (clipped median of the segment)
    is fitted jointly on all the other amps, :math:`v = \\sum_s c_{vs}\\,s + b_f`
    (and :math:`+\\sum_s q_{vs}\\,s^2` with ``quadratic``), with :math:`b_f` a free
    offset per frame (the sky under the sources may differ from the segment's), by
    least squares with ``nsigma`` clipping; errors by a jackknife over the frames (the
    noise is correlated within a frame: column and row patterns), or from the residual
    scatter with fewer than 3 frames. Fitting
    all sources at once keeps a third amp's ghost, bright where the source happens to
    be, out of a coefficient. The sources must vary in brightness (stars, spots), or the
    offsets absorb the crosstalk.

    Parameters
    ----------
    raws : sequence of RawFrame
        Frames with bright, unsaturated sources on every source amp.
    calibs : Calibs, optional
        Its gains (e⁻/ADU); default the geometry's.
    threshold : float
        e⁻ a source pixel must exceed.
    max_coefficient : float
        Largest plausible \\|c\\|: victims brighter than that are their own sources.
    nsigma : float
        Clipping of the fit residuals.
    quadratic : bool
        Also fit the quadratic term (``Calibs.crosstalk_quadratic``).
    min_pixels : int
        Pairs with fewer bright pixels are left at 0 (error NaN).
    grow : int
        Pixels by which the victim's own sources (brighter than ``max_coefficient``
        times the brightest source + 5 sigma) are grown before they are excluded.

    Returns
    -------
    CrosstalkFit

    Raises
    ------
    InvalidInputError
        No frames, frames of different geometries, amps of unequal shapes, bad options.
    TypeError
        Items that are not RawFrames.

    References
    ----------
    .. [1] Snyder, A. et al. 2020, JATIS 6, 036002 (LSST crosstalk measurement).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import RawFrame, make_detector_geometry
    >>> g = make_detector_geometry(2, 1, (40, 40), prescan=0, serial_overscan=4, parallel_overscan=0,
    ...                            gains=1.0, bias_levels=0.0)
    >>> yy, xx = np.mgrid[0:40, 0:40]
    >>> star = 9e4 * np.exp(-0.5 * ((yy - 20.0) ** 2 + (xx - 20.0) ** 2) / 25.0)
    >>> d = np.zeros(g.raw_shape)
    >>> d[g.amp(0).data_bbox.slices] = star            # a bright star on amp 0
    >>> d[g.amp(1).data_bbox.slices] = 3e-4 * star     # its crosstalk on amp 1
    >>> fit = measure_crosstalk([RawFrame(d, g, exptime=1.0, dark_time=1.0)], min_pixels=10)
    >>> round(float(fit.coefficients[1, 0]), 6)
    0.0003
    """
    if raws is None:
        raise TypeError("`raws` is None; expected a sequence of RawFrames")
    frames = [raws] if isinstance(raws, RawFrame) else list(raws)
    if not frames:
        raise InvalidInputError("`raws` is empty; crosstalk needs frames with bright sources")
    for i, r in enumerate(frames):
        if not isinstance(r, RawFrame):
            raise TypeError(f"`raws[{i}]` must be a RawFrame; got {type(r).__name__}")
    geom = frames[0].geometry
    if any(r.geometry != geom for r in frames):
        raise InvalidInputError("`raws` have different detector geometries")
    if calibs is not None and calibs.geometry != geom:
        raise InvalidInputError("`calibs` were made for a different detector geometry")
    threshold = check_finite_scalar(threshold, "threshold", minimum=0.0, strict=True)
    maxc = check_finite_scalar(max_coefficient, "max_coefficient", minimum=0.0, strict=True)
    nsigma = check_finite_scalar(nsigma, "nsigma", minimum=0.0, strict=True)
    min_pixels = check_int(min_pixels, "min_pixels", minimum=3)
    grow = check_int(grow, "grow", minimum=0)
    shapes = {a.data_bbox.shape for a in geom.amplifiers}
    if len(shapes) != 1:
        raise InvalidInputError(f"crosstalk needs amplifiers of one data shape; got {sorted(shapes)}")
    n = geom.n_amps
    gains = calibs.amp_gains() if calibs is not None else geom.gains
    # per victim: rows = pixels where some other amp is bright; columns = all other amps
    X: list[list[np.ndarray]] = [[] for _ in range(n)]
    Y: list[list[np.ndarray]] = [[] for _ in range(n)]
    F: list[list[np.ndarray]] = [[] for _ in range(n)]
    for fi, raw in enumerate(frames):
        sig, ok = _segments_e(raw, gains)
        smax = max(float(np.max(x)) for x in sig)
        allok = np.logical_and.reduce(ok)
        for v in range(n):
            sky, sd = _sky(sig[v])
            vs = sig[v] - sky
            # the victim's own sources (brighter than any ghost can be), with their wings
            own = vs > maxc * smax + 5 * sd
            if grow:
                own = ndimage.binary_dilation(own, iterations=grow)
            others = [s for s in range(n) if s != v]
            bright = np.logical_or.reduce([sig[s] > threshold for s in others])
            sel = bright & allok & ~own
            if not sel.any():
                continue
            X[v].append(np.stack([sig[s][sel] for s in others], axis=1))
            Y[v].append(vs[sel])
            F[v].append(np.full(int(sel.sum()), fi))
    coef = np.zeros((n, n))
    err = np.full((n, n), np.nan)
    qc = np.zeros((n, n)) if quadratic else None
    qe = np.full((n, n), np.nan) if quadratic else None
    npix = np.zeros((n, n), dtype=np.int64)
    nf = len(frames)
    for v in range(n):
        if not X[v]:
            continue
        others = [s for s in range(n) if s != v]
        x = np.concatenate(X[v])
        y = np.concatenate(Y[v])
        f = np.concatenate(F[v])
        Xall = np.concatenate([x, x * x], axis=1) if quadratic else x
        keep = np.ones(y.size, bool)
        for _ in range(21):
            if keep.sum() < min_pixels:
                break
            p, _, _, cnt = _within_fit(Xall, y, f, nf, keep)
            r0 = y - Xall @ p
            off = np.bincount(f[keep], weights=r0[keep], minlength=nf) / np.maximum(cnt, 1)
            r = r0 - off[f]
            sd = float(np.std(r[keep]))
            new = np.abs(r) <= nsigma * sd if sd > 0 else keep
            if np.array_equal(new, keep):
                break
            keep = new
        m = int(keep.sum())
        # bright pixels of each source among the kept rows
        nb = (x[keep] > threshold).sum(axis=0)
        for j, s in enumerate(others):
            npix[v, s] = int(nb[j])
        if m < min_pixels:
            continue
        p, Xk, yk, cnt = _within_fit(Xall, y, f, nf, keep)
        used_frames = np.flatnonzero(cnt > 0)
        if used_frames.size >= 3:
            # jackknife over frames: the noise is correlated within a frame (column and
            # row patterns, the victim's sky), so pixels are not independent
            reps = np.array([_within_fit(Xall, y, f, nf, keep & (f != i))[0] for i in used_frames])
            nj = used_frames.size
            cov = (nj - 1) / nj * np.einsum("ij,ik->jk", reps - reps.mean(0), reps - reps.mean(0))
        else:
            r = yk - Xk @ p
            dof = max(m - Xk.shape[1] - int(np.count_nonzero(cnt)), 1)
            try:
                cov = float(np.sum(r**2) / dof) * np.linalg.inv(Xk.T @ Xk)
            except np.linalg.LinAlgError:
                continue
        k = len(others)
        for j, s in enumerate(others):
            if nb[j] < min_pixels:
                continue
            coef[v, s] = p[j]
            err[v, s] = math.sqrt(cov[j, j])
            if quadratic:
                qc[v, s] = p[k + j]
                qe[v, s] = math.sqrt(cov[k + j, k + j])
    measured = np.isfinite(err)
    np.fill_diagonal(measured, True)
    ok_all = bool(measured.all())
    return CrosstalkFit(coef, err, qc, qe, npix, ok_all,
                        "" if ok_all else f"{int((~measured).sum())} (victim, source) pairs had < {min_pixels} bright pixels")
