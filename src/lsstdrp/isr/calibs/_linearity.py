"""Linearity fit (polynomial or spline) with the turnoff, from flats of known exposure."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ...core import Calibs, InvalidInputError, Linearity, RawFrame, check_in
from .._common import check_finite_scalar, check_int

__all__ = ["LinearityFit", "fit_linearity", "amp_levels"]


@dataclasses.dataclass(frozen=True, eq=False)
class LinearityFit:
    """Per-amp linearity fits.

    Attributes
    ----------
    linearity : tuple of Linearity or None
        Forward models (``Calibs.linearity``), None for a failed amp.
    slope : numpy.ndarray, shape (n_amp,)
        ADU per unit of ``exposure`` (the linear response).
    turnoff : numpy.ndarray, shape (n_amp,)
        Measured ADU above which the response stops rising (the largest fitted level
        when it never does).
    residual : numpy.ndarray, shape (n_amp, n_points)
        Fractional residual of the fitted points (NaN where not fitted).
    used : numpy.ndarray of bool, shape (n_amp, n_points)
    success : numpy.ndarray of bool, shape (n_amp,)
    reason : tuple of str
    """

    linearity: tuple[Linearity | None, ...]
    slope: np.ndarray
    turnoff: np.ndarray
    residual: np.ndarray
    used: np.ndarray
    success: np.ndarray
    reason: tuple[str, ...]


def amp_levels(raws: Any, *, calibs: Calibs | None = None, edge: int = 8) -> np.ndarray:
    """Mean signal of each amp in ADU above the overscan (bias and dark removed, no
    linearity correction): the input of :func:`fit_linearity`.

    Parameters
    ----------
    raws : sequence of RawFrame
        Flats at different exposures.
    calibs : Calibs, optional
        Bias and dark (e⁻, converted with its gains) and crosstalk; its linearity is
        ignored.
    edge : int
        Pixels dropped at each amp edge.

    Returns
    -------
    numpy.ndarray, shape (n_amp, n_frames)
        Medians, ADU: for a monotonic non-linearity the median of the measured
        values is the non-linear function of the median linear signal, whatever the
        spread of the pixel responses, and it ignores the first pixels to saturate.

    Raises
    ------
    InvalidInputError
        No frames, different geometries.
    TypeError
        Items that are not RawFrames.
    """
    from ._ptc import _reduce_raw_adu

    frames = list(raws) if raws is not None else []
    if not frames:
        raise InvalidInputError("`raws` is empty")
    for i, r in enumerate(frames):
        if not isinstance(r, RawFrame):
            raise TypeError(f"`raws[{i}]` must be a RawFrame; got {type(r).__name__}")
    geom = frames[0].geometry
    if any(r.geometry != geom for r in frames):
        raise InvalidInputError("`raws` have different detector geometries")
    c = (calibs if calibs is not None else Calibs(geom)).replace(linearity=None)
    out = np.empty((geom.n_amps, len(frames)))
    for j, r in enumerate(frames):
        img = _reduce_raw_adu(r, c)
        for k, a in enumerate(geom.amplifiers):
            b = a.assembled_bbox
            v = img[b.y0 + edge:b.y1 - edge, b.x0 + edge:b.x1 - edge].ravel()
            v = v[np.isfinite(v)]
            out[k, j] = float(np.median(v))
    return out


def _turnoff(x: np.ndarray, m: np.ndarray, frac: float) -> tuple[float, np.ndarray]:
    o = np.argsort(x)
    xs, ms = x[o], m[o]
    dm = np.diff(ms) / np.maximum(np.diff(xs), 1e-300)
    low = max(3, xs.size // 3)
    k0 = np.median(ms[:low] / np.maximum(xs[:low], 1e-300))
    stop = np.flatnonzero(dm < frac * k0)
    if stop.size == 0:
        return float(ms[-1]), np.ones(x.size, bool)
    last = int(stop[0])
    t = float(ms[last])
    used = np.zeros(x.size, bool)
    used[o[: last + 1]] = True
    return t, used


def fit_linearity(
    levels: Any,
    exposure: Any,
    *,
    kind: str = "polynomial",
    order: int = 3,
    n_knots: int = 12,
    turnoff_slope: float = 0.5,
    offset: bool = True,
) -> LinearityFit:
    """Fit each amp's forward non-linearity :math:`m = f(k\\,t)` with the turnoff.

    With :math:`t` a quantity proportional to the charge (exposure time x lamp
    intensity, or a photodiode) and :math:`x = k t` the linear signal (ADU):

    - ``"polynomial"``: :math:`m = b + \\sum_{n=1}^{N} p_n t^n` by least squares; then
      :math:`k = p_1` and :math:`f(x) = x + \\sum_{j} c_j x^{j+2}` with
      :math:`c_j = p_{j+2} / k^{j+2}` (the :class:`~lsstdrp.core.Linearity`
      polynomial);
    - ``"spline"``: the polynomial's :math:`k`, then a least-squares cubic spline of
      the offsets :math:`m - k t` (pinned to 0 at 0) on ``n_knots`` knots, sampled at
      the knots for the Akima-spline :class:`~lsstdrp.core.Linearity`.

    The turnoff is the measured level after which the local slope
    :math:`\\Delta m/\\Delta t` first falls below ``turnoff_slope`` times the
    low-signal slope (saturation); points beyond it are not fitted.

    Parameters
    ----------
    levels : array_like, shape (n_points,) or (n_amp, n_points)
        Measured mean signal, ADU above the overscan (:func:`amp_levels`).
    exposure : array_like, shape (n_points,)
        Proportional to the charge (> 0).
    kind : {"polynomial", "spline"}
    order : int
        Polynomial order N (>= 2).
    n_knots : int
        Spline knots (>= 3), evenly spaced in the linear signal up to the turnoff.
    turnoff_slope : float
        See above.
    offset : bool
        Fit a constant :math:`b` (residual bias or dark) and drop it.

    Returns
    -------
    LinearityFit

    Raises
    ------
    InvalidInputError
        Mismatched shapes, non-positive exposures, fewer points than parameters.

    References
    ----------
    .. [1] Plazas Malagón, A. A. et al. 2023, Rubin ``cp_pipe`` linearity (DMTN-223).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(1, 100, 30)
    >>> m = 1000 * t - 1e-6 * (1000 * t) ** 2
    >>> fit = fit_linearity(m, t, order=2)
    >>> round(float(fit.slope[0]), 3), round(float(fit.linearity[0].coefficients[0]) * 1e6, 6)
    (1000.0, -1.0)
    """
    check_in(kind, "kind", ("polynomial", "spline"))
    order = check_int(order, "order", minimum=2)
    n_knots = check_int(n_knots, "n_knots", minimum=3)
    turnoff_slope = check_finite_scalar(turnoff_slope, "turnoff_slope", minimum=0.0, strict=True)
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim == 1:
        lv = lv[None]
    t = np.asarray(exposure, dtype=np.float64).ravel()
    if lv.ndim != 2 or lv.shape[1] != t.size:
        raise InvalidInputError(f"`levels` has shape {np.shape(levels)}; expected (n_amp, {t.size}) for {t.size} exposures")
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise InvalidInputError("`exposure` must be finite and > 0")
    n_par = order + (1 if offset else 0)
    if t.size < n_par + 1:
        raise InvalidInputError(f"{t.size} points cannot constrain {n_par} parameters; give more exposures")
    lins: list[Linearity | None] = []
    slopes, turnoffs, reasons, oks = [], [], [], []
    resid = np.full(lv.shape, np.nan)
    used_all = np.zeros(lv.shape, bool)
    for a in range(lv.shape[0]):
        m = lv[a]
        fin = np.isfinite(m)
        turn, used = _turnoff(t[fin], m[fin], turnoff_slope)
        u = np.zeros(t.size, bool)
        u[np.flatnonzero(fin)[used]] = True
        if u.sum() < n_par + 1:
            lins.append(None)
            slopes.append(math.nan)
            turnoffs.append(turn)
            oks.append(False)
            reasons.append(f"only {int(u.sum())} points below the turnoff for {n_par} parameters")
            continue
        tt, mm = t[u], m[u]
        cols = [tt**n for n in range(1, order + 1)]
        if offset:
            cols.insert(0, np.ones_like(tt))
        X = np.stack(cols, axis=1)
        # weights ~ Poisson-like relative errors: fit in relative terms
        w = 1.0 / np.maximum(np.abs(mm), 1e-12)
        p, *_ = np.linalg.lstsq(X * w[:, None], mm * w, rcond=None)
        b = p[0] if offset else 0.0
        pp = p[1:] if offset else p
        k = float(pp[0])
        if not k > 0:
            lins.append(None)
            slopes.append(math.nan)
            turnoffs.append(turn)
            oks.append(False)
            reasons.append("non-positive linear response")
            continue
        if kind == "polynomial":
            coef = [float(pp[j + 1] / k ** (j + 2)) for j in range(order - 1)]
            lin = Linearity("polynomial", coefficients=coef, turnoff=turn)
        else:
            x = k * tt
            off = mm - b - x
            from scipy.interpolate import make_lsq_spline

            knots = np.linspace(0.0, float(x.max()), n_knots)
            o = np.argsort(x)
            # a least-squares cubic spline on the knots, sampled at them for the Akima spline
            tk = np.concatenate([[knots[0]] * 4, knots[1:-1], [knots[-1]] * 4])
            try:
                spl = make_lsq_spline(np.r_[0.0, x[o]], np.r_[0.0, off[o]], tk, k=3, w=np.r_[1e3 * w.max(), w[o]])
                vals = spl(knots)
            except (ValueError, np.linalg.LinAlgError):
                lins.append(None)
                slopes.append(math.nan)
                turnoffs.append(turn)
                oks.append(False)
                reasons.append(f"too few points between the {n_knots} knots")
                continue
            lin = Linearity("spline", knots=knots, values=vals, turnoff=turn)
        pred = b + lin.evaluate(k * tt)
        r = np.full(t.size, np.nan)
        r[u] = (mm - pred) / mm
        resid[a] = r
        used_all[a] = u
        lins.append(lin)
        slopes.append(k)
        turnoffs.append(turn)
        oks.append(True)
        reasons.append("")
    return LinearityFit(tuple(lins), np.array(slopes), np.array(turnoffs), resid, used_all, np.array(oks),
                        tuple(reasons))
