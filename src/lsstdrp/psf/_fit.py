"""``fit_psf``: spatially varying pixel-grid and analytic PSF fits to star stamps."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.table import QTable, Table

from .._errors import InvalidInputError
from ..core import as_image, bad_pixel_mask, normalize_mask
from ._models import AnalyticPsf, PixelGridPsf, PolynomialBasis, _dense_weights, _interp_code, axis_weights, render_grid

__all__ = ["PsfFitResult", "fit_psf", "PSF_MODELS"]

_log = logging.getLogger("lsstdrp.psf")

#: The model families :func:`fit_psf` knows.
PSF_MODELS = ("pixel", "gaussian", "moffat")


@dataclass(frozen=True)
class PsfFitResult:
    """Result of :func:`fit_psf` (and :func:`fit_visit_psf`).

    Attributes
    ----------
    psf : PixelGridPsf, AnalyticPsf, VisitPixelGridPsf or None
        The model; None when ``success`` is False.
    success : bool
        Whether the fit ran to a usable model.
    reason : str
        Why it failed ("" on success).
    stars : astropy.table.QTable
        One row per input star (training, reserved and rejected): ``x, y`` (refined
        centroid), ``flux`` (e⁻), ``background`` (e⁻/pixel), ``chi2``, ``dof`` (free
        pixels minus 4 per star), ``psf_used`` (trained on, kept), ``psf_reserved``
        (held out), ``psf_rejected`` (rejected as an outlier), ``psf_reject_reason``,
        ``color`` (NaN when none), and the moment residuals of the star against the
        model rendered at the same sub-pixel position, ``dT_T``, ``de1``, ``de2``
        (NaN where the moments failed); plus ``detector`` for a visit fit.
    chi2_dof : float
        Pooled :math:`\\chi^2` per degree of freedom of the used training stars, with
        the model's parameters subtracted from the degrees of freedom.
    chi2_dof_reserved : float
        Pooled :math:`\\chi^2/\\nu` of the reserved stars (flux, centroid and background
        fitted per star, the PSF fixed); NaN with no reserved star.
    n_used, n_rejected, n_reserved : int
        Star counts.
    n_iter : int
        Outer iterations run.
    residuals : numpy.ndarray, shape (n_stars, s, s)
        Normalised residual stamps :math:`(d - m)/\\sigma` (0 at excluded pixels).
    model : str
        The model family.
    """

    psf: Any
    success: bool
    reason: str
    stars: QTable
    chi2_dof: float
    chi2_dof_reserved: float
    n_used: int
    n_rejected: int
    n_reserved: int
    n_iter: int
    residuals: np.ndarray
    model: str


# ---------------------------------------------------------------------------------------
# input parsing
# ---------------------------------------------------------------------------------------


def _column(table: Any, name: str) -> np.ndarray:
    col = table[name]
    v = getattr(col, "value", col)
    return np.asarray(v)


def _parse_stars(stars: Any, colors: Any, color_column: str | None) -> tuple[np.ndarray, ...]:
    if isinstance(stars, (Table, QTable)):
        t = stars
    else:
        try:
            t = Table(stars)
        except Exception:  # noqa: BLE001 - any failure means it is not a table
            raise InvalidInputError(
                f"`stars` must be a table with columns x, y (astropy Table/QTable or a structured array); "
                f"got {type(stars).__name__}"
            ) from None
    for c in ("x", "y"):
        if c not in t.colnames:
            raise InvalidInputError(f"`stars` must have columns 'x' and 'y'; it has {t.colnames}")
    x = np.asarray(_column(t, "x"), dtype=np.float64)
    y = np.asarray(_column(t, "y"), dtype=np.float64)
    n = x.size
    cand = np.ones(n, bool)
    if "psf_candidate" in t.colnames:
        cand = np.asarray(_column(t, "psf_candidate"), dtype=bool)
    reserved = np.zeros(n, bool)
    if "psf_reserved" in t.colnames:
        reserved = np.asarray(_column(t, "psf_reserved"), dtype=bool)
    col = None
    if colors is not None:
        col = np.asarray(colors, dtype=np.float64)
        if col.shape != (n,):
            raise InvalidInputError(f"`colors` has shape {col.shape}; it must match `stars` ({n},)")
    elif color_column is not None:
        if color_column not in t.colnames:
            raise InvalidInputError(f"`color_column` {color_column!r} is not a column of `stars` ({t.colnames})")
        col = np.asarray(_column(t, color_column), dtype=np.float64)
    idx = np.flatnonzero(cand)
    x, y, reserved = x[idx], y[idx], reserved[idx]
    if col is not None:
        col = col[idx]
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise InvalidInputError(f"`stars` has {int(bad.sum())} rows with non-finite x or y")
    if col is not None and not np.all(np.isfinite(col)):
        raise InvalidInputError("`colors` (or the colour column) must be finite for every star")
    return idx, x, y, reserved, col


def _cut(arr: np.ndarray, x0: np.ndarray, y0: np.ndarray, S: int, fill: float) -> np.ndarray:
    ny, nx = arr.shape
    out = np.full((x0.size, S, S), fill, dtype=np.float64)
    for i in range(x0.size):
        xa, ya = max(int(x0[i]), 0), max(int(y0[i]), 0)
        xb, yb = min(int(x0[i]) + S, nx), min(int(y0[i]) + S, ny)
        if xb <= xa or yb <= ya:
            continue
        out[i, ya - y0[i] : yb - y0[i], xa - x0[i] : xb - x0[i]] = arr[ya:yb, xa:xb]
    return out


def _gather_stamps(image, variance, mask, bad_planes, stamps, stamp_variance, stamp_mask, x, y, S):
    X = np.floor(x + 0.5).astype(np.int64)
    Y = np.floor(y + 0.5).astype(np.int64)
    h = (S - 1) // 2
    x0, y0 = X - h, Y - h
    if stamps is not None:
        st = np.asarray(stamps, dtype=np.float64)
        if st.ndim != 3 or st.shape[0] != x.size or st.shape[1] != st.shape[2] or st.shape[1] % 2 == 0:
            raise InvalidInputError(f"`stamps` must have shape ({x.size}, s, s) with s odd; got {st.shape}")
        if stamp_variance is None:
            raise InvalidInputError("`stamp_variance` is required with `stamps`")
        sv = np.asarray(stamp_variance, dtype=np.float64)
        if sv.shape != st.shape:
            raise InvalidInputError(f"`stamp_variance` has shape {sv.shape}; it must match `stamps` {st.shape}")
        sm = np.zeros(st.shape, bool) if stamp_mask is None else np.asarray(stamp_mask, dtype=bool)
        if sm.shape != st.shape:
            raise InvalidInputError(f"`stamp_mask` has shape {sm.shape}; it must match `stamps` {st.shape}")
        s0 = st.shape[1]
        if s0 < S:
            raise InvalidInputError(f"`stamps` are {s0} px; the fit needs at least {S} (lower `size`)")
        o = (s0 - S) // 2
        D = st[:, o : o + S, o : o + S].copy()
        V = sv[:, o : o + S, o : o + S].copy()
        B = sm[:, o : o + S, o : o + S]
    else:
        D = _cut(image, x0, y0, S, np.nan)
        V = _cut(variance, x0, y0, S, np.nan)
        B = _cut(bad_pixel_mask(mask, bad_planes).astype(np.float64), x0, y0, S, 1.0) > 0.5
    ok = np.isfinite(D) & np.isfinite(V) & (V > 0) & ~B
    W = np.where(ok, 1.0 / np.where(ok, V, 1.0), 0.0)
    D = np.where(ok, D, 0.0)
    return D, W, x0, y0


# ---------------------------------------------------------------------------------------
# pixel-grid fit
# ---------------------------------------------------------------------------------------


def _active_map(n: int) -> tuple[np.ndarray, int]:
    c = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n]
    act = ((xx - c) ** 2 + (yy - c) ** 2) <= (c + 0.5) ** 2
    amap = np.full(n * n, -1, dtype=np.int64)
    idx = np.flatnonzero(act.ravel())
    amap[idx] = np.arange(idx.size)
    return amap, int(idx.size)


def _solve_grid(D, W, x0, y0, xs, ys, f, b, P, train, n, N, order, ridge, prior=None):
    from ._kernels import _band_to_dense, _star_normal_band

    nb = P.shape[1]
    S = D.shape[1]
    c = (n - 1) / 2
    d0 = 2 * abs(order) - 1
    nd = 2 * d0 + 1
    amap, na = _active_map(n)
    gband = np.zeros((n * n * nd * nd, nb * nb))
    rhs = np.zeros((nb, n * n))
    idx = np.flatnonzero(train)
    chunk = max(1, min(64, int(2.5e7 // (n * n * nd * nd))))
    ar = np.arange(S)
    for start in range(0, idx.size, chunk):
        sel = idx[start : start + chunk]
        bands = np.zeros((sel.size, n, n, nd, nd))
        rh = np.zeros((sel.size, n, n))
        for i, s in enumerate(sel):
            ky, wy = axis_weights(c + N * (y0[s] + ar - ys[s]), n, order)
            kx, wx = axis_weights(c + N * (x0[s] + ar - xs[s]), n, order)
            _star_normal_band(wy, ky, wx, kx, np.ascontiguousarray(W[s] * f[s] ** 2),
                              np.ascontiguousarray((D[s] - b[s]) / f[s]), n, bands[i], rh[i])
        Ps = P[sel]
        PP = (Ps[:, :, None] * Ps[:, None, :]).reshape(sel.size, nb * nb)
        gband += bands.reshape(sel.size, -1).T @ PP
        rhs += Ps.T @ rh.reshape(sel.size, -1)
    G = np.zeros((nb * na, nb * na))
    _band_to_dense(gband.reshape(n * n, nd, nd, nb, nb), n, nb, amap, na, G)
    act = np.flatnonzero(amap >= 0)
    r = rhs[:, act].ravel()
    dg = np.diag(G).copy()
    G[np.diag_indices_from(G)] += ridge * max(float(dg.mean()), 1e-300)
    if prior is not None:
        # ridge prior on selected basis terms, worth prior[j] average training stars
        # (the constant term j = 0 carries sum_s M_s[k, k] for every grid sample k)
        per_star = dg[:na] / max(int(train.sum()), 1)
        for j in range(nb):
            if prior[j] > 0:
                G[np.arange(j * na, (j + 1) * na), np.arange(j * na, (j + 1) * na)] += prior[j] * per_star
    # constraints: unit flux (sum = N^2 for the constant term, 0 otherwise), zero centroid
    ky, kx = np.divmod(act, n)
    rows = []
    vals = []
    for j in range(nb):
        for vec, target in ((np.ones(na), N * N if j == 0 else 0.0), (kx - c, 0.0), (ky - c, 0.0)):
            row = np.zeros(nb * na)
            row[j * na : (j + 1) * na] = vec
            rows.append(row)
            vals.append(target)
    C = np.array(rows)
    e = np.array(vals)
    # KKT by the Schur complement of the (SPD) normal matrix: a = G^-1 (r - C^T lam)
    from scipy.linalg import LinAlgError, cho_factor, cho_solve

    try:
        cf = cho_factor(G, lower=False, overwrite_a=True, check_finite=False)
    except LinAlgError as exc:
        raise np.linalg.LinAlgError(str(exc)) from None
    gr = cho_solve(cf, r, check_finite=False)
    gc = cho_solve(cf, C.T, check_finite=False)
    lam = np.linalg.solve(C @ gc, C @ gr - e)
    sol = gr - gc @ lam
    coef = np.zeros((nb, n * n))
    coef[:, act] = sol[: nb * na].reshape(nb, na)
    return coef.reshape(nb, n, n)


def _refit_star(Dk, Wk, x0, y0, xs, ys, f, b, grid, N, order, fit_background, n_gn=3):
    """Gauss-Newton refit of flux, background and centroid of one star with the PSF fixed."""
    n = grid.shape[0]
    S = Dk.shape[0]
    c = (n - 1) / 2
    ar = np.arange(S)
    h = 1e-3
    for _ in range(n_gn):
        ky, wy = axis_weights(c + N * (y0 + ar - ys), n, order)
        kx, wx = axis_weights(c + N * (x0 + ar - xs), n, order)
        Wy, Wx = _dense_weights(ky, wy, n), _dense_weights(kx, wx, n)
        kyp, wyp = axis_weights(c + N * (y0 + ar - ys - h), n, order)
        kym, wym = axis_weights(c + N * (y0 + ar - ys + h), n, order)
        kxp, wxp = axis_weights(c + N * (x0 + ar - xs - h), n, order)
        kxm, wxm = axis_weights(c + N * (x0 + ar - xs + h), n, order)
        dWy = (_dense_weights(kyp, wyp, n) - _dense_weights(kym, wym, n)) / (2 * h)
        dWx = (_dense_weights(kxp, wxp, n) - _dense_weights(kxm, wxm, n)) / (2 * h)
        GW = grid @ Wx.T
        m0 = Wy @ GW
        mx = Wy @ grid @ dWx.T
        my = dWy @ GW
        cols = [m0.ravel(), (f * mx).ravel(), (f * my).ravel()]
        if fit_background:
            cols.append(np.ones(S * S))
        J = np.stack(cols, axis=1)
        w = Wk.ravel()
        r = Dk.ravel() - (f * m0.ravel() + b)
        A = J.T @ (J * w[:, None])
        rhs = J.T @ (w * r)
        try:
            d = np.linalg.solve(A, rhs)
        except np.linalg.LinAlgError:
            return xs, ys, f, b, False
        step = math.hypot(d[1], d[2])
        if step > 1.0:
            d[1:3] /= step
        f = f + d[0]
        xs, ys = xs + d[1], ys + d[2]
        if fit_background:
            b = b + d[3]
        if not (f > 0 and math.isfinite(f)):
            return xs, ys, f, b, False
        if abs(d[0]) < 1e-10 * abs(f) and step < 1e-6:
            break
    return xs, ys, f, b, True


def _model_stamp(grid, N, order, xs, ys, x0, y0, S, f, b):
    return f * render_grid(grid, N, xs, ys, int(x0), int(y0), S, S, order) + b


def _reject(ratio: np.ndarray, cand: np.ndarray, nsigma: float, max_frac: float, dof: np.ndarray) -> np.ndarray:
    """Indices of candidates whose chi2/dof is an outlier (robust clipping, worst first)."""
    idx = np.flatnonzero(cand & np.isfinite(ratio))
    if idx.size < 5:
        return np.array([], dtype=np.int64)
    r = ratio[idx]
    med = float(np.median(r))
    mad = 1.4826 * float(np.median(np.abs(r - med)))
    noise = math.sqrt(2.0 / max(float(np.median(dof[idx])), 1.0))
    thr = med + nsigma * max(mad, noise)
    bad = idx[r > thr]
    if bad.size == 0:
        return bad
    nmax = max(1, int(max_frac * idx.size))
    order = np.argsort(-ratio[bad])
    return bad[order[:nmax]]


def _moment_residuals(D, W, models, b):
    """dT/T, de1, de2 of data stamps against noiseless model stamps (adaptive moments)."""
    from ..measure import adaptive_moments

    nst, S, _ = D.shape
    out = np.full((nst, 3), np.nan)
    if nst == 0:
        return out
    # tile the stamps side by side into one image (moments are vectorised over sources)
    data = np.concatenate([D[i] - b[i] for i in range(nst)], axis=1)
    mod = np.concatenate([models[i] - b[i] for i in range(nst)], axis=1)
    bad = np.concatenate([W[i] <= 0 for i in range(nst)], axis=1)
    var = np.concatenate([np.where(W[i] > 0, 1.0 / np.where(W[i] > 0, W[i], 1.0), 1.0) for i in range(nst)], axis=1)
    xc = (S - 1) / 2 + S * np.arange(nst)
    yc = np.full(nst, (S - 1) / 2)
    half = (S - 1) // 2
    md = adaptive_moments(data, xc, yc, variance=var, mask=bad, guess_sigma=2.0, half_size=half)
    mm = adaptive_moments(mod, xc, yc, guess_sigma=2.0, half_size=half)
    ok = (md.flags == 0) & (mm.flags == 0)
    Td, Tm = md.ixx + md.iyy, mm.ixx + mm.iyy
    e1d, e2d = (md.ixx - md.iyy) / Td, 2 * md.ixy / Td
    e1m, e2m = (mm.ixx - mm.iyy) / Tm, 2 * mm.ixy / Tm
    out[ok, 0] = ((Td - Tm) / Tm)[ok]
    out[ok, 1] = (e1d - e1m)[ok]
    out[ok, 2] = (e2d - e2m)[ok]
    return out


def _check_int(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise InvalidInputError(f"`{name}` must be an integer >= {lo}; got {v!r}")
    return int(v)


def _initial(D, W, x, y, x0, y0):
    S = D.shape[1]
    ring = np.zeros((S, S), bool)
    ring[:2, :] = ring[-2:, :] = ring[:, :2] = ring[:, -2:] = True
    b = np.array([np.median(D[i][ring & (W[i] > 0)]) if np.any(ring & (W[i] > 0)) else 0.0 for i in range(D.shape[0])])
    f = np.array([float(((D[i] - b[i]) * (W[i] > 0)).sum()) for i in range(D.shape[0])])
    return b, f


def fit_psf(
    image: Any,
    variance: Any,
    stars: Any,
    *,
    mask: Any = None,
    bad_planes: Any = None,
    model: str = "pixel",
    spatial_order: int = 2,
    colors: Any = None,
    color_column: str | None = None,
    color_name: str | None = None,
    color_order: int = 1,
    color_spatial_order: int = 0,
    size: int | None = None,
    oversampling: int = 1,
    stamps: Any = None,
    stamp_variance: Any = None,
    stamp_mask: Any = None,
    bounds: Any = None,
    fit_radius: float | None = None,
    fit_background: bool = False,
    max_iter: int = 6,
    outlier_nsigma: float = 4.0,
    max_reject_fraction: float = 0.1,
    interpolant: str = "bspline5",
    progress: bool = False,
) -> PsfFitResult:
    r"""Fit a spatially varying PSF model to stars.

    The default ``model="pixel"`` is a pixel-grid model (the PSFEx / PIFF ``PixelGrid``
    family): the effective PSF sampled on a grid of ``size * oversampling`` samples
    whose values are polynomials of position (and optionally colour) over the
    detector. Each star :math:`s` is modelled as

    .. math:: m_{sp} = f_s \sum_k C_k(x_s, y_s, c_s)\, w(u_{p} - k) + b_s,
              \qquad C_k = \sum_t a_{tk} B_t(x_s, y_s, c_s),

    with the grid expanded in shifted quintic B-splines :math:`w` evaluated at the star's centroid
    (the model is shifted, the data never resampled, so the pixel noise stays
    independent) and per-star flux :math:`f_s`, centroid and background :math:`b_s`.
    The fit alternates (i) the linear weighted least-squares solution for all
    :math:`a_{tk}` at fixed star parameters, under the constraints :math:`\sum_k
    C_k = N^2` and zero first moment of the grid for every basis term (so flux and
    centroid are carried by the stars, not the PSF), solved as one KKT system built
    from per-star banded normal matrices; and (ii) a Gauss–Newton refit of each star's
    flux, centroid and background with the PSF fixed. From the second iteration on,
    training stars whose :math:`\chi^2/\nu` is a robust outlier (above the median by
    ``outlier_nsigma`` times the larger of the MAD scatter and :math:`\sqrt{2/\nu}`)
    are rejected, at most ``max_reject_fraction`` per iteration.

    ``model="gaussian"`` or ``"moffat"`` is a fast analytic first-pass model: each
    star's adaptive moments are fitted by the polynomial basis (with 4-sigma
    clipping) and the profile at a position is the Gaussian / Moffat with those
    moments.

    Parameters
    ----------
    image, variance : array_like, shape (ny, nx), or None
        The exposure (e⁻) and its variance (e⁻², including the stars' Poisson noise);
        None when ``stamps`` are given.
    stars : astropy.table.Table or QTable
        PSF stars with ``x, y`` (0-based pixels). If the table has the columns of
        :func:`select_psf_stars`, only ``psf_candidate`` rows are used and
        ``psf_reserved`` rows are held out of the fit (their residuals are reported).
    mask : array_like of bool or uint32, optional
        Excluded pixels (True or MaskPlane bits in ``bad_planes``).
    bad_planes : optional
        MaskPlane bits that exclude (default ``DEFAULT_BAD_PLANES``).
    model : {'pixel', 'gaussian', 'moffat'}
        Model family.
    spatial_order : int
        Degree of the polynomial variation over the detector.
    colors : array_like of float, shape (n_stars,), optional
        Star colours (AB index named by ``color_name``); enables the chromatic model.
    color_column : str, optional
        Column of ``stars`` holding the colours (instead of ``colors``).
    color_name : str, optional
        Name of the colour index, e.g. ``"g-i"`` (default ``"color"`` when chromatic).
    color_order, color_spatial_order : int
        Degree of the colour dependence and spatial degree of the colour terms.
    size : int, optional
        Odd side of the PSF kernel in pixels (default: 2 * ceil(5.5 sigma) + 1 from the
        stars' median adaptive size, at least 11).
    oversampling : int
        Grid samples per pixel (use 2 when the PSF is undersampled, FWHM < ~2.5 px).
    stamps, stamp_variance, stamp_mask : array_like, shape (n_stars, s, s), optional
        Postage stamps (odd ``s``) centred on the nearest pixel of each star's
        ``(x, y)``, with variance and bool exclusion mask, used instead of ``image``.
    bounds : (xmin, xmax, ymin, ymax), optional
        Area of the spatial polynomial (default the image, or the stars' extent).
    fit_radius : float, optional
        Pixels farther than this from a star's centroid are not fitted (default
        ``size / 2 + 2``, the kernel's inscribed circle plus the basis support: the PSF's far wings, which the
        grid cannot represent, stay out of the fit instead of biasing its shape).
    fit_background : bool
        Fit a constant background per star. Default False: ``image`` must be
        background-subtracted (e.g. by :mod:`lsstdrp.characterize`). A per-star
        constant is degenerate with the PSF's wings inside the fit circle and makes the
        model too small (dT/T ~ -3e-3 on the simulator, against +5e-4 +- 3e-4 without).
    max_iter : int
        Outer iterations.
    outlier_nsigma, max_reject_fraction : float
        Outlier rejection threshold and the largest fraction rejected per iteration.
    interpolant : {'bspline5', 'bspline3', 'lanczos3', 'lanczos5'}
        Sub-pixel basis of the grid (see :class:`PixelGridPsf`).
    progress : bool
        Show a tqdm progress bar over iterations.

    Returns
    -------
    PsfFitResult
        ``psf`` (a :class:`PixelGridPsf` or :class:`AnalyticPsf`), ``success``,
        ``reason``, per-star diagnostics and residual stamps.

    Raises
    ------
    InvalidInputError
        Bad arrays or options, or too few training stars for the requested model (the
        message says how many are needed: twice the number of basis functions).

    Notes
    -----
    The number of free parameters is ``n_terms * n_active`` (the grid samples inside
    the inscribed circle); the normal matrix is accumulated in banded form per star
    (numba) and reduced over stars with one matrix product per basis pair.

    References
    ----------
    .. [1] Bertin, E. 2011, ASP Conf. Ser. 442, 435 (PSFEx).
    .. [2] Jarvis, M. et al. 2021, MNRAS 501, 1282 (PIFF).
    .. [3] Anderson, J. & King, I. R. 2000, PASP 112, 1360 (effective PSF).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.psf import fit_psf
    >>> rng = np.random.default_rng(0)
    >>> img = np.zeros((200, 200)); xs, ys = np.meshgrid(np.arange(20, 200, 30.0), np.arange(20, 200, 30.0))
    >>> for x, y in zip(xs.ravel() + 0.3, ys.ravel() - 0.2):
    ...     img[int(y) - 10:int(y) + 11, int(x) - 10:int(x) + 11] += 1e4 * GaussianPsf(2.0).image(x, y, shape=21)
    >>> var = 10.0 + img
    >>> img = img + rng.normal(0, np.sqrt(var))
    >>> res = fit_psf(img, var, QTable({"x": xs.ravel() + 0.3, "y": ys.ravel() - 0.2}), spatial_order=0, size=13)
    >>> truth = GaussianPsf(2.0).moments(100, 100)[0]
    >>> res.success, abs(res.psf.moments(100, 100)[0] / truth - 1) < 0.01
    (True, True)
    """
    if model not in PSF_MODELS:
        raise InvalidInputError(f"`model` must be one of {PSF_MODELS}; got {model!r}")
    spatial_order = _check_int(spatial_order, "spatial_order", 0)
    oversampling = _check_int(oversampling, "oversampling", 1)
    max_iter = _check_int(max_iter, "max_iter", 1)
    order = _interp_code(interpolant)
    color_order = _check_int(color_order, "color_order", 0)
    color_spatial_order = _check_int(color_spatial_order, "color_spatial_order", 0)
    if not (isinstance(outlier_nsigma, (int, float)) and outlier_nsigma > 0):
        raise InvalidInputError(f"`outlier_nsigma` must be a positive number; got {outlier_nsigma!r}")
    if not (isinstance(max_reject_fraction, (int, float)) and 0 <= max_reject_fraction <= 1):
        raise InvalidInputError(f"`max_reject_fraction` must be in [0, 1]; got {max_reject_fraction!r}")
    idx, x, y, reserved, col = _parse_stars(stars, colors, color_column)
    chromatic = col is not None and color_order > 0 and model == "pixel"
    if stamps is None:
        if image is None or variance is None:
            raise InvalidInputError("`image` and `variance` are required unless `stamps` are given")
        img = as_image(image, "image", dtype=np.float64)
        var = as_image(variance, "variance", dtype=np.float64)
        if var.shape != img.shape:
            raise InvalidInputError(f"`variance` has shape {var.shape}; it must match `image` {img.shape}")
        m = normalize_mask(mask, img.shape, image=img, variance=var, warn=False)
        default_bounds = (-0.5, img.shape[1] - 0.5, -0.5, img.shape[0] - 0.5)
    else:
        img = var = m = None
        default_bounds = None
    # bounds of the polynomial
    if bounds is None:
        if default_bounds is None:
            if x.size == 0:
                default_bounds = (0.0, 1.0, 0.0, 1.0)
            else:
                default_bounds = (float(x.min()) - 0.5, float(x.max()) + 0.5, float(y.min()) - 0.5, float(y.max()) + 0.5)
        bounds = default_bounds
    cref = float(np.median(col)) if chromatic and col.size else 0.0
    basis = PolynomialBasis(spatial_order, bounds, color_order=color_order if chromatic else 0,
                            color_spatial_order=color_spatial_order if chromatic else 0, color_ref=cref)
    nb = basis.n_terms if model == "pixel" else basis.n_terms
    needed = 2 * nb
    n_train = int((~reserved).sum())
    if n_train < needed:
        what = f"spatial_order={spatial_order}" + (f", color_order={color_order}" if chromatic else "")
        raise InvalidInputError(
            f"fit_psf needs at least {needed} training stars for {what} ({nb} basis functions, 2 per term); "
            f"got {n_train} ({int(reserved.sum())} reserved stars are not used for training)"
        )
    # kernel size from the stars' median size
    if size is None:
        size = _default_size(img, var, m, bad_planes, stamps, stamp_variance, stamp_mask, x, y)
    size = _check_int(size, "size", 5)
    if size % 2 == 0:
        raise InvalidInputError(f"`size` must be odd; got {size}")
    margin = 3
    S = size + 2 * margin
    if stamps is not None:
        s0 = np.asarray(stamps).shape[-1] if np.ndim(stamps) == 3 else 0
        if s0 and s0 < S:
            S = s0 if s0 % 2 else s0 - 1
    D, W, x0, y0 = _gather_stamps(img, var, m, bad_planes, stamps, stamp_variance, stamp_mask, x, y, S)
    W = _circle_weights(W, x, y, x0, y0, 0.5 * size + 2.0 if fit_radius is None else float(fit_radius))
    nstar = x.size
    colv = col if col is not None else np.full(nstar, np.nan)
    if model == "pixel":
        return _fit_pixel(D, W, x0, y0, x, y, colv if chromatic else None, reserved, basis, size, oversampling,
                          order, fit_background, max_iter, outlier_nsigma, max_reject_fraction, needed,
                          color_name if chromatic else None, colv, progress, idx, interpolant)
    return _fit_analytic(model, D, W, x0, y0, x, y, reserved, basis, size, fit_background, needed, colv, idx)


def _circle_weights(W: np.ndarray, x: np.ndarray, y: np.ndarray, x0: np.ndarray, y0: np.ndarray,
                    r: float) -> np.ndarray:
    """Zero the weights of stamp pixels outside the fit circle of radius ``r`` around each star."""
    S = W.shape[1]
    ar = np.arange(S)
    dx = (x0[:, None] + ar[None, :]) - x[:, None]
    dy = (y0[:, None] + ar[None, :]) - y[:, None]
    inside = dx[:, None, :] ** 2 + dy[:, :, None] ** 2 <= r * r
    return np.where(inside, W, 0.0)


def _default_size(img, var, m, bad_planes, stamps, stamp_variance, stamp_mask, x, y) -> int:
    from ..measure import adaptive_moments

    S = 31
    if stamps is not None:
        S = int(np.asarray(stamps).shape[-1])
        if S % 2 == 0:
            S -= 1
        S = min(S, 41)
    D, W, _, _ = _gather_stamps(img, var, m, bad_planes, stamps, stamp_variance, stamp_mask, x, y, S)
    b, _ = _initial(D, W, x, y, None, None)
    sig = []
    for i in range(min(D.shape[0], 50)):
        r = adaptive_moments(D[i] - b[i], (S - 1) / 2 + (x[i] - np.floor(x[i] + 0.5)),
                             (S - 1) / 2 + (y[i] - np.floor(y[i] + 0.5)), mask=W[i] <= 0, guess_sigma=2.0)
        if r.flags[0] == 0:
            sig.append(float(r.sigma[0]))
    s = float(np.median(sig)) if sig else 2.0
    return max(11, 2 * math.ceil(5.5 * s) + 1)


def _fit_pixel(D, W, x0, y0, x, y, col, reserved, basis, size, N, order, fit_background, max_iter,
               nsigma, max_frac, needed, color_name, colv, progress, idx, interpolant, *, P=None, prior=None,
               make_psf=None, n_terms=None) -> PsfFitResult:
    nstar, S, _ = D.shape
    n = N * (size - 1) + 1
    if P is None:
        P = basis.evaluate(x, y, col)
    b, f = _initial(D, W, x, y, x0, y0)
    if not fit_background:
        b[:] = 0.0
        f = np.array([float((D[i] * (W[i] > 0)).sum()) for i in range(nstar)])
    xs, ys = x.copy(), y.copy()
    good = (f > 0) & np.array([np.any(W[i] > 0) for i in range(nstar)])
    rejected = np.zeros(nstar, bool)
    reasons = np.array([""] * nstar, dtype=object)
    reasons[~good] = "no usable pixels or non-positive flux"
    rejected[~good & ~reserved] = True
    coef = None
    it_run = 0
    chi2 = np.full(nstar, np.nan)
    dof = np.full(nstar, np.nan)
    its = range(max_iter)
    if progress:
        from tqdm.auto import tqdm

        its = tqdm(its, desc="fit_psf", unit="iter")
    reason = ""
    for it in its:
        it_run = it + 1
        train = ~reserved & ~rejected & good
        if int(train.sum()) < needed:
            reason = f"outlier rejection left {int(train.sum())} training stars; the model needs {needed}"
            break
        try:
            coef = _solve_grid(D, W, x0, y0, xs, ys, f, b, P, train, n, N, order, 1e-9, prior)
        except np.linalg.LinAlgError as exc:
            reason = f"the normal equations are singular ({exc})"
            coef = None
            break
        if not np.all(np.isfinite(coef)):
            reason = "the linear solution is not finite"
            coef = None
            break
        grids = np.tensordot(P, coef, axes=(1, 0))
        for s in range(nstar):
            if not good[s]:
                continue
            xs[s], ys[s], f[s], b[s], ok = _refit_star(D[s], W[s], x0[s], y0[s], xs[s], ys[s], f[s], b[s],
                                                        grids[s], N, order, fit_background,
                                                        n_gn=3 if it == 0 else 2)
            if not ok:
                good[s] = False
                reasons[s] = "flux/centroid refit failed"
                if not reserved[s]:
                    rejected[s] = True
        for s in range(nstar):
            if good[s]:
                mdl = _model_stamp(grids[s], N, order, xs[s], ys[s], x0[s], y0[s], S, f[s], b[s])
                chi2[s] = float((W[s] * (D[s] - mdl) ** 2).sum())
                dof[s] = float((W[s] > 0).sum()) - (4 if fit_background else 3)
        if it == 0 or it == max_iter - 1:
            continue
        bad = _reject(chi2 / dof, ~reserved & ~rejected & good, nsigma, max_frac, dof)
        if bad.size:
            rejected[bad] = True
            for s in bad:
                reasons[s] = f"chi2/dof = {chi2[s] / dof[s]:.2f} is an outlier"
        elif it >= 2:
            break
    if coef is None or reason:
        return _failed(reason or "no fit", nstar, S, idx, x, y, reserved, rejected, reasons, colv, it_run)
    if make_psf is None:
        psf = PixelGridPsf(coef, basis, oversampling=N,
                           color_name=(color_name or "color") if basis.chromatic else None, interpolant=interpolant)
        k = psf.kernel_image(0.5 * (basis.bounds[0] + basis.bounds[1]), 0.5 * (basis.bounds[2] + basis.bounds[3]))
    else:
        psf = make_psf(coef)
        k = coef.sum(axis=0)
    if not np.all(np.isfinite(k)):
        return _failed("the fitted kernel is not finite", nstar, S, idx, x, y, reserved, rejected, reasons, colv, it_run)
    grids = np.tensordot(P, coef, axes=(1, 0))
    models = np.zeros_like(D)
    resid = np.zeros_like(D)
    for s in range(nstar):
        if good[s]:
            models[s] = _model_stamp(grids[s], N, order, xs[s], ys[s], x0[s], y0[s], S, f[s], b[s])
            chi2[s] = float((W[s] * (D[s] - models[s]) ** 2).sum())
            resid[s] = (D[s] - models[s]) * np.sqrt(W[s])
    used = ~reserved & ~rejected & good
    n_active = _active_map(n)[1]
    n_par = (basis.n_terms if n_terms is None else n_terms) * (n_active - 3)
    dof_train = float(dof[used].sum()) - n_par
    chi2_dof = float(chi2[used].sum() / dof_train) if dof_train > 0 else math.nan
    rs = reserved & good
    chi2_res = float(chi2[rs].sum() / dof[rs].sum()) if rs.any() else math.nan
    mres = _moment_residuals(D, W, models, b)
    table = _star_table(idx, xs, ys, f, b, chi2, dof, used, reserved, rejected, reasons, colv, mres)
    _log.info("fit_psf: %d used, %d rejected, %d reserved, chi2/dof %.3f", int(used.sum()), int(rejected.sum()),
              int(reserved.sum()), chi2_dof)
    return PsfFitResult(psf, True, "", table, chi2_dof, chi2_res, int(used.sum()), int(rejected.sum()),
                        int(reserved.sum()), it_run, resid, "pixel")


def _star_table(idx, xs, ys, f, b, chi2, dof, used, reserved, rejected, reasons, colv, mres) -> QTable:
    import astropy.units as u

    t = QTable()
    t["index"] = np.asarray(idx, dtype=np.int64)
    t["x"] = np.asarray(xs, dtype=np.float64) * u.pix
    t["y"] = np.asarray(ys, dtype=np.float64) * u.pix
    t["flux"] = np.asarray(f, dtype=np.float64) * u.electron
    t["background"] = np.asarray(b, dtype=np.float64) * u.electron
    t["chi2"] = np.asarray(chi2, dtype=np.float64)
    t["dof"] = np.asarray(dof, dtype=np.float64)
    t["psf_used"] = np.asarray(used, dtype=bool)
    t["psf_reserved"] = np.asarray(reserved, dtype=bool)
    t["psf_rejected"] = np.asarray(rejected, dtype=bool)
    t["psf_reject_reason"] = np.array([str(r) for r in reasons], dtype="U64") if len(reasons) else np.array([], "U64")
    t["color"] = np.asarray(colv, dtype=np.float64)
    t["dT_T"] = mres[:, 0]
    t["de1"] = mres[:, 1]
    t["de2"] = mres[:, 2]
    return t


def _failed(reason, nstar, S, idx, x, y, reserved, rejected, reasons, colv, it_run) -> PsfFitResult:
    nan = np.full(nstar, np.nan)
    t = _star_table(idx, x, y, nan, nan, nan, nan, np.zeros(nstar, bool), reserved, rejected, reasons, colv,
                    np.full((nstar, 3), np.nan))
    return PsfFitResult(None, False, reason, t, math.nan, math.nan, 0, int(rejected.sum()), int(reserved.sum()),
                        it_run, np.zeros((nstar, S, S)), "pixel")


# ---------------------------------------------------------------------------------------
# analytic fit
# ---------------------------------------------------------------------------------------


def _fit_analytic(profile, D, W, x0, y0, x, y, reserved, basis, size, fit_background, needed, colv, idx):
    from ..measure import adaptive_moments

    nstar, S, _ = D.shape
    b, f = _initial(D, W, x, y, x0, y0)
    if not fit_background:
        b[:] = 0.0
    mom = np.full((nstar, 3), np.nan)
    err = np.full(nstar, np.nan)
    xs, ys = x.copy(), y.copy()
    for s in range(nstar):
        r = adaptive_moments(D[s] - b[s], x[s] - x0[s], y[s] - y0[s], variance=np.where(W[s] > 0, 1 / np.where(W[s] > 0, W[s], 1), 1.0),
                             mask=W[s] <= 0, guess_sigma=2.0)
        if r.flags[0] == 0:
            mom[s] = (r.ixx[0], r.iyy[0], r.ixy[0])
            err[s] = max(float(r.ixx_err[0] + r.iyy_err[0]), 1e-12)
            xs[s], ys[s] = r.x[0] + x0[s], r.y[0] + y0[s]
    good = np.all(np.isfinite(mom), axis=1)
    rejected = ~good & ~reserved
    reasons = np.array(["" if g else "adaptive moments failed" for g in good], dtype=object)
    P = basis.evaluate(x, y)
    coef = None
    for _ in range(5):
        use = good & ~reserved & ~rejected
        if int(use.sum()) < needed:
            return _failed(f"{int(use.sum())} stars with moments left; the model needs {needed}", nstar, S, idx, x, y,
                           reserved, rejected, reasons, colv, 1)
        w = 1.0 / err[use] ** 2
        A = P[use] * np.sqrt(w)[:, None]
        coef = np.linalg.lstsq(A, mom[use] * np.sqrt(w)[:, None], rcond=None)[0].T
        pred = P @ coef.T
        T = mom[:, 0] + mom[:, 1]
        dT = (T - (pred[:, 0] + pred[:, 1]))
        z = dT / err
        zu = z[use]
        sc = 1.4826 * float(np.median(np.abs(zu - np.median(zu))))
        bad = use & (np.abs(z - np.median(zu)) > 4 * max(sc, 1.0))
        if not bad.any():
            break
        rejected |= bad
        reasons[bad] = "size is a 4-sigma outlier of the analytic fit"
    psf = AnalyticPsf(profile, coef, basis, size=size)
    chi2 = np.full(nstar, np.nan)
    dof = np.full(nstar, np.nan)
    resid = np.zeros_like(D)
    models = np.zeros_like(D)
    for s in range(nstar):
        if not good[s]:
            continue
        try:
            img = psf.image(xs[s], ys[s], shape=S)
        except InvalidInputError:
            continue
        # stamp of psf.image is centred on round(x) = x0 + h, as our stamps
        cols = [img.ravel()] + ([np.ones(S * S)] if fit_background else [])
        J = np.stack(cols, axis=1)
        wv = W[s].ravel()
        sol = np.linalg.lstsq(J * np.sqrt(wv)[:, None], D[s].ravel() * np.sqrt(wv), rcond=None)[0]
        f[s] = sol[0]
        b[s] = sol[1] if fit_background else 0.0
        models[s] = (J @ sol).reshape(S, S)
        chi2[s] = float((W[s] * (D[s] - models[s]) ** 2).sum())
        dof[s] = float((W[s] > 0).sum()) - (2 if fit_background else 1)
        resid[s] = (D[s] - models[s]) * np.sqrt(W[s])
    used = good & ~reserved & ~rejected
    chi2_dof = float(np.nansum(chi2[used]) / np.nansum(dof[used]))
    rs = reserved & np.isfinite(chi2)
    chi2_res = float(chi2[rs].sum() / dof[rs].sum()) if rs.any() else math.nan
    mres = _moment_residuals(D, W, models, b)
    table = _star_table(idx, xs, ys, f, b, chi2, dof, used, reserved, rejected, reasons, colv, mres)
    return PsfFitResult(psf, True, "", table, chi2_dof, chi2_res, int(used.sum()), int(rejected.sum()),
                        int(reserved.sum()), 1, resid, profile)
