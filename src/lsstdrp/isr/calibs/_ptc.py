"""Photon transfer curve and pixel covariances from flat pairs (Astier et al. 2019)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...core import Calibs, DetectorGeometry, InvalidInputError, PhotonTransferCurve, RawFrame, check_in
from .._common import check_finite_scalar, check_int
from . import _kernels

__all__ = ["PtcResult", "measure_ptc", "covariance_model", "pair_covariances"]

logger = logging.getLogger("lsstdrp.isr.calibs")

PTC_MODELS = ("full", "instantaneous")


# -- the covariance model ------------------------------------------------------------------
def _grid_size(max_lag: int) -> int:
    # lags <= L of a (x) a (support 2L) are alias-free on a periodic grid of >= 3L + 1;
    # the third-order term (support 3L) aliases at ~ (g mu a)^3, far below the noise
    n = 8
    while n < 3 * max_lag + 2:
        n *= 2
    return n


def _quadrant_to_grid(q: np.ndarray, n: int) -> np.ndarray:
    """Place a quadrant ``q[dy, dx]`` (dy, dx >= 0) on an n x n periodic grid, mirrored."""
    L = q.shape[0] - 1
    g = np.zeros((n, n))
    g[: L + 1, : L + 1] = q
    g[n - L :, : L + 1] = q[1:][::-1]
    g[: L + 1, n - L :] = q[:, 1:][:, ::-1]
    g[n - L :, n - L :] = q[1:, 1:][::-1, ::-1]
    return g


def covariance_model(mu: Any, gain: float, a: Any, noise: Any = None, *, model: str = "full") -> np.ndarray:
    """Pixel covariances :math:`C_{ij}(\\mu)` of a flat field, in ADU², lags ``[dy, dx] >= 0``.

    With the Fourier transform :math:`\\hat a(\\mathbf k)` of the (mirror-symmetric)
    :math:`a_{ij}` and :math:`m = g\\mu` the mean in e⁻:

    - ``"full"`` (Astier et al. 2019, eq. 20 with :math:`b = 0`; charge collected
      gradually, the pixel boundaries moving as it accumulates):
      :math:`\\hat C = (e^{2m\\hat a} - 1)/(2\\hat a)`, so
      :math:`C_{ij} = \\mu/g\\,\\delta_{ij} + a_{ij}\\mu^2 + \\tfrac23 g (a\\otimes a)_{ij}\\mu^3 + \\dots`;
    - ``"instantaneous"`` (all charge redistributed once, the forward model that
      :func:`lsstdrp.isr.correct_brighter_fatter` inverts, Coulton et al. 2018):
      :math:`\\hat C = m\\,(1 + m\\hat a/2)^2`, with the same first two terms and
      :math:`\\tfrac14 g (a\\otimes a)\\mu^3`;

    divided by :math:`g^2` plus the noise term :math:`n_{ij}` (ADU²).

    Parameters
    ----------
    mu : float or array_like, shape (n,)
        Mean signal(s), ADU.
    gain : float
        e⁻/ADU.
    a : array_like, shape (L+1, L+1)
        :math:`a_{ij}` in 1/e⁻, ``a[dy, dx]`` for lags >= 0.
    noise : array_like, shape (L+1, L+1), optional
        :math:`n_{ij}` in ADU² (default: 0).
    model : {"full", "instantaneous"}

    Returns
    -------
    numpy.ndarray, shape (n, L+1, L+1) (or (L+1, L+1) for a scalar ``mu``)

    Raises
    ------
    InvalidInputError
        Bad model name, non-square ``a``, non-positive gain.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((3, 3)); a[0, 0] = -2e-6
    >>> c = covariance_model(1e4, 1.0, a)
    >>> round(float(c[0, 0]), 1)  # mu + a00 mu^2 + ...
    9802.6
    """
    check_in(model, "model", PTC_MODELS)
    g = check_finite_scalar(gain, "gain", minimum=0.0, strict=True)
    aq = np.asarray(a, dtype=np.float64)
    if aq.ndim != 2 or aq.shape[0] != aq.shape[1]:
        raise InvalidInputError(f"`a` must be a square (L+1, L+1) quadrant; got shape {aq.shape}")
    scalar = np.ndim(mu) == 0
    mus = np.atleast_1d(np.asarray(mu, dtype=np.float64))
    out = _model(mus, g, aq, model)
    if noise is not None:
        out = out + np.asarray(noise, dtype=np.float64)[None]
    return out[0] if scalar else out


def _model(mus: np.ndarray, g: float, aq: np.ndarray, model: str, *, derivative: bool = False) -> Any:
    L = aq.shape[0] - 1
    n = _grid_size(L)
    ahat = np.fft.rfft2(_quadrant_to_grid(aq, n)).real
    m = (mus * g)[:, None, None]
    if model == "full":
        x = 2.0 * m * ahat[None]
        small = np.abs(x) < 1e-4
        xs = np.where(small, 1.0, x)
        ex = np.exp(x)
        f = np.where(small, 1.0 + 0.5 * x + x * x / 6.0, (ex - 1.0) / xs)
        chat = m * f
        if derivative:
            df = np.where(small, 0.5 + x / 3.0, (xs * ex - (ex - 1.0)) / (xs * xs))
            dchat = 2.0 * m * m * df
    else:
        chat = m * (1.0 + 0.5 * m * ahat[None]) ** 2
        if derivative:
            dchat = m * m * (1.0 + 0.5 * m * ahat[None])
    c = np.fft.irfft2(chat, s=(n, n))[:, : L + 1, : L + 1] / (g * g)
    if not derivative:
        return c
    return c, dchat / (g * g), n


def _basis_hat(L: int, n: int) -> np.ndarray:
    """rfft2 of the mirrored unit quadrant of each lag: shape ((L+1)^2, n, n//2+1), real."""
    out = np.empty(((L + 1) ** 2, n, n // 2 + 1))
    q = np.zeros((L + 1, L + 1))
    for k in range(q.size):
        q.flat[k] = 1.0
        out[k] = np.fft.rfft2(_quadrant_to_grid(q, n)).real
        q.flat[k] = 0.0
    return out


# -- measurements ------------------------------------------------------------------------
def pair_covariances(diff: np.ndarray, valid: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Covariances of a flat-pair difference for lags ``[dy, dx]`` in 0..max_lag.

    :math:`C_{ij} = \\sum w_p w_{p+l} d_p d_{p+l} / \\sum w_p w_{p+l}` with ``d`` the
    difference minus its mean over valid pixels, by FFT with zero padding; lags
    ``(dy, dx)`` and ``(dy, -dx)`` are averaged (a mirror-symmetric sensor).

    Parameters
    ----------
    diff : numpy.ndarray, 2-D
    valid : numpy.ndarray of bool, same shape
    max_lag : int

    Returns
    -------
    cov, n_pairs : numpy.ndarray, shape (max_lag+1, max_lag+1)
        Covariances (units of ``diff`` squared) and the number of pixel pairs.
    """
    from scipy import fft

    w = valid.astype(np.float64)
    nv = w.sum()
    d = np.where(valid, diff - (diff[valid].sum() / nv if nv else 0.0), 0.0)
    ny, nx = d.shape
    sy = fft.next_fast_len(ny + max_lag, real=True)
    sx = fft.next_fast_len(nx + max_lag, real=True)
    fd = fft.rfft2(d, s=(sy, sx))
    fw = fft.rfft2(w, s=(sy, sx))
    cd = fft.irfft2(fd * fd.conj(), s=(sy, sx))
    cw = fft.irfft2(fw * fw.conj(), s=(sy, sx))
    L = max_lag
    # lags (dy, dx) >= 0 at [dy, dx]; (dy, -dx) at [dy, -dx]
    pos_c, pos_w = cd[: L + 1, : L + 1], cw[: L + 1, : L + 1]
    neg_c = np.concatenate([cd[: L + 1, :1], cd[: L + 1, -L:][:, ::-1]], axis=1) if L else cd[:1, :1]
    neg_w = np.concatenate([cw[: L + 1, :1], cw[: L + 1, -L:][:, ::-1]], axis=1) if L else cw[:1, :1]
    npairs = np.rint(pos_w) + np.rint(neg_w)
    npairs[0, :] = np.rint(pos_w[0, :])
    npairs[:, 0] = np.rint(pos_w[:, 0])
    tot = pos_c + neg_c
    tot[0, :] = pos_c[0, :]
    tot[:, 0] = pos_c[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = np.where(npairs > 0, tot / np.maximum(npairs, 1), np.nan)
    return cov, npairs


@dataclasses.dataclass(frozen=True, eq=False)
class PtcResult:
    """Photon transfer curve and covariance fit of one detector, per amplifier.

    Attributes
    ----------
    amp_names : tuple of str
    mean : numpy.ndarray, shape (n_amp, n_pairs)
        Mean signal of each pair, ADU.
    covariance, covariance_error : numpy.ndarray, shape (n_amp, n_pairs, L+1, L+1)
        Single-frame covariances ``[dy, dx]`` (half those of the pair difference), ADU²,
        and their statistical errors.
    n_pixels : numpy.ndarray, shape (n_amp, n_pairs)
        Pixels used per pair (after masking and outlier clipping).
    used : numpy.ndarray of bool, shape (n_amp, n_pairs)
        Points in the fit (below the turnoff).
    gain, gain_error : numpy.ndarray, shape (n_amp,)
        e⁻/ADU.
    noise, noise_error : numpy.ndarray, shape (n_amp,)
        Read noise, e⁻: from the serial overscans of the raw pairs when available
        (``noise_source``), else :math:`g\\sqrt{n_{00}}`.
    noise_fit : numpy.ndarray, shape (n_amp,)
        :math:`g\\sqrt{n_{00}}` of the fit, e⁻ (includes the noise that the overscan
        subtraction adds to the data).
    noise_source : str
        ``"overscan"`` or ``"fit"``.
    a, a_error : numpy.ndarray, shape (n_amp, L+1, L+1)
        :math:`a_{ij}` (1/e⁻), Astier et al. (2019) convention: the coefficient of
        :math:`\\mu^2` in :math:`C_{ij}` (ADU², :math:`\\mu` in ADU).
    noise_matrix : numpy.ndarray, shape (n_amp, L+1, L+1)
        :math:`n_{ij}`, ADU².
    turnoff : numpy.ndarray, shape (n_amp,)
        Mean signal (ADU) above which the variance stops rising (the highest mean
        when it never does).
    chi2, dof : numpy.ndarray, shape (n_amp,)
    model : str
        The covariance model (:func:`covariance_model`).
    max_lag : int
    success : numpy.ndarray of bool, shape (n_amp,)
    reason : tuple of str
        Per amp; empty when the fit succeeded.
    """

    amp_names: tuple[str, ...]
    mean: np.ndarray
    covariance: np.ndarray
    covariance_error: np.ndarray
    n_pixels: np.ndarray
    used: np.ndarray
    gain: np.ndarray
    gain_error: np.ndarray
    noise: np.ndarray
    noise_error: np.ndarray
    noise_fit: np.ndarray
    noise_source: str
    a: np.ndarray
    a_error: np.ndarray
    noise_matrix: np.ndarray
    turnoff: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    model: str
    max_lag: int
    success: np.ndarray
    reason: tuple[str, ...]

    @property
    def a00(self) -> np.ndarray:
        """:math:`a_{00}` per amp (1/e⁻)."""
        return self.a[:, 0, 0]

    @property
    def variance(self) -> np.ndarray:
        """Single-frame variance :math:`C_{00}` per amp and pair, ADU²."""
        return self.covariance[:, :, 0, 0]

    def model_covariance(self, amp: int | str, mu: Any = None) -> np.ndarray:
        """The fitted model :math:`C_{ij}(\\mu)` of one amp (ADU²), default at its means.

        Parameters
        ----------
        amp : int or str
            Index or name.
        mu : array_like, optional
            Means (ADU).

        Returns
        -------
        numpy.ndarray, shape (n, L+1, L+1)
        """
        k = self.amp_names.index(amp) if isinstance(amp, str) else int(amp)
        m = self.mean[k] if mu is None else np.atleast_1d(np.asarray(mu, dtype=np.float64))
        return covariance_model(m, self.gain[k], self.a[k], self.noise_matrix[k], model=self.model)

    def to_photon_transfer_curve(self) -> PhotonTransferCurve:
        """The :class:`~lsstdrp.core.PhotonTransferCurve` summary stored in ``Calibs.ptc``.

        Returns
        -------
        PhotonTransferCurve
            gain, noise, a00, turnoff, and the means and variances of the pairs.
        """
        gain = np.where(self.success, self.gain, np.nan)
        if not np.all(np.isfinite(gain)):
            raise InvalidInputError("the PTC fit failed for some amplifiers; no PhotonTransferCurve to store")
        return PhotonTransferCurve(gain=gain, noise=self.noise, a00=self.a00, turnoff=self.turnoff,
                                   mean=self.mean, variance=self.variance)

    def plot(self, ax: Any = None, *, amp: int | str | None = None, lags: Sequence[tuple[int, int]] = ((0, 1), (1, 0), (1, 1))) -> Any:
        """Plot the PTC: :math:`C_{00}/\\mu` and :math:`C_{ij}/\\mu` against :math:`\\mu` with the model.

        Parameters
        ----------
        ax : matplotlib Axes or sequence of two, optional
            Default: a new figure with two panels.
        amp : int or str, optional
            One amplifier (default: all on the variance panel, the first on the other).
        lags : sequence of (dy, dx)
            Covariances to show on the second panel.

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
        else:
            axes = np.atleast_1d(ax)
            fig = axes[0].figure
        amps = range(len(self.amp_names)) if amp is None else [
            self.amp_names.index(amp) if isinstance(amp, str) else int(amp)]
        for k in amps:
            mu = self.mean[k]
            o = np.argsort(mu)
            mu = mu[o]
            c = self.covariance[k][o]
            e = self.covariance_error[k][o]
            grid = np.geomspace(max(mu.min(), 1.0), mu.max(), 200)
            mod = self.model_covariance(k, grid)
            line = axes[0].errorbar(mu, c[:, 0, 0] / mu, e[:, 0, 0] / mu, fmt="o", ms=3,
                                    label=f"{self.amp_names[k]}: g={self.gain[k]:.3f}")
            axes[0].plot(grid, mod[:, 0, 0] / grid, color=line[0].get_color(), lw=1)
        axes[0].set_xscale("log")
        axes[0].set_xlabel("mean signal [ADU]")
        axes[0].set_ylabel(r"$C_{00}/\mu$ [ADU]")
        axes[0].set_title(f"photon transfer curve ({self.model} model)")
        axes[0].legend(fontsize=7, ncol=2)
        if len(axes) > 1:
            k = amps[0] if amp is not None else 0
            mu = self.mean[k]
            o = np.argsort(mu)
            mu = mu[o]
            grid = np.linspace(0, mu.max(), 200)
            mod = self.model_covariance(k, grid)
            for dy, dx in lags:
                c = self.covariance[k][o][:, dy, dx]
                e = self.covariance_error[k][o][:, dy, dx]
                line = axes[1].errorbar(mu, c / mu, e / mu, fmt="o", ms=3, label=f"$C_{{{dy}{dx}}}$")
                axes[1].plot(grid[1:], mod[1:, dy, dx] / grid[1:], color=line[0].get_color(), lw=1)
            axes[1].axhline(0, color="k", lw=0.5)
            axes[1].set_xlabel("mean signal [ADU]")
            axes[1].set_ylabel(r"$C_{ij}/\mu$ [ADU]")
            axes[1].set_title(f"covariances, amp {self.amp_names[k]}")
            axes[1].legend(fontsize=8)
        return fig


# -- inputs ------------------------------------------------------------------------------
def _reduce_raw_adu(raw: RawFrame, calibs: Calibs) -> np.ndarray:
    """Overscan, crosstalk, linearity, assembly, bias and dark of a raw flat, in ADU."""
    from .. import run_isr

    geom = calibs.geometry
    g = calibs.amp_gains()
    gmap = g[geom.amp_index_image()]
    c = calibs.replace(
        gains=np.ones(geom.n_amps), flat=None, bf_kernel=None, defects=None,
        bias=None if calibs.bias is None else np.asarray(calibs.bias) / gmap,
        dark=None if calibs.dark is None else np.asarray(calibs.dark) / gmap,
    )
    res = run_isr(raw, c, overscan_statistic="mean", do_bf=False, do_defects=False, do_flat=False,
                  cosmic_rays="none", dtype=np.float64)
    return np.asarray(res.exposure.image)


def _overscan_noise(a: RawFrame, b: RawFrame, geom: DetectorGeometry) -> np.ndarray:
    """Per-amp single-frame read noise (ADU²) from the serial overscans of a pair."""
    out = np.full(geom.n_amps, np.nan)
    for k, amp in enumerate(geom.amplifiers):
        so = amp.serial_overscan_bbox
        if so.is_empty or so.shape[1] < 2:
            continue
        d = a.data[so.slices].astype(np.float64) - b.data[so.slices].astype(np.float64)
        d -= d.mean(axis=1, keepdims=True)  # the per-row levels of both frames
        ncol = d.shape[1]
        v = d.var() * ncol / (ncol - 1)
        good = np.abs(d) < 5.0 * math.sqrt(v)
        v = np.mean(d[good] ** 2) * ncol / (ncol - 1) / 0.99999943  # 5-sigma truncation of a Gaussian
        out[k] = 0.5 * v
    return out


def _as_pairs(pairs: Any) -> list[tuple[Any, Any]]:
    if pairs is None:
        raise TypeError("`pairs` is None; expected a sequence of (frame, frame) flat pairs")
    try:
        items = list(pairs)
    except TypeError:
        raise TypeError(f"`pairs` must be a sequence of (frame, frame); got {type(pairs).__name__}") from None
    if not items:
        raise InvalidInputError("`pairs` is empty; the PTC needs flat pairs at several levels")
    out = []
    for i, p in enumerate(items):
        try:
            a, b = p
        except (TypeError, ValueError):
            raise InvalidInputError(f"`pairs[{i}]` must be a pair (frame, frame)") from None
        out.append((a, b))
    return out


def measure_ptc(
    pairs: Any,
    *,
    geometry: DetectorGeometry | None = None,
    calibs: Calibs | None = None,
    max_lag: int = 8,
    model: str = "full",
    edge: int = 8,
    nsigma: float = 5.5,
    max_level_difference: float = 0.05,
    min_pixels: int = 1000,
    fit_max_mean: float | None = None,
    progress: bool = False,
) -> PtcResult:
    """Photon transfer curve and pixel covariances from flat pairs, fitted per amplifier.

    For each pair and amp the difference :math:`d = x_1 - (\\mu_1/\\mu_2)\\,x_2` (frame
    structure cancels) is clipped at ``nsigma`` (cosmic rays, hot pixels), and its
    covariances to lag ``max_lag`` are measured by FFT; half of them are the single-
    frame covariances :math:`C_{ij}(\\mu)`. The model of :func:`covariance_model`
    (gain :math:`g`, :math:`a_{ij}` and noise :math:`n_{ij}` for every lag) is fitted
    to all points below the turnoff by weighted least squares with the Gaussian
    errors :math:`\\sigma(C_{00}) = \\sqrt{2/N}\\,C_{00}`,
    :math:`\\sigma(C_{ij}) = C_{00}/\\sqrt{N_{ij}}` (Astier et al. 2019, sect. 4).

    Parameters
    ----------
    pairs : sequence of (frame, frame)
        Flat pairs at several levels: :class:`~lsstdrp.core.RawFrame` (reduced in ADU
        with ``calibs``: overscan, crosstalk, linearity, assembly, bias and dark
        scaled to ADU), or assembled 2-D arrays in ADU (overscan and bias removed).
    geometry : DetectorGeometry, optional
        Amplifier boxes for array inputs (default: the calibs' or the raws'; for bare
        arrays without it the whole image is one amplifier).
    calibs : Calibs, optional
        Used to reduce raws (its linearity in particular); its ``defects`` are masked.
    max_lag : int
        Largest lag (>= 1); Astier et al. use 8 or more.
    model : {"full", "instantaneous"}
        Covariance model (:func:`covariance_model`): ``"full"`` for real sensors,
        ``"instantaneous"`` for charge redistributed once (lsstdrp's simulator).
    edge : int
        Pixels dropped at each amp edge.
    nsigma : float
        Clipping of the pair difference (grown by one pixel).
    max_level_difference : float
        Largest allowed :math:`|\\mu_1/\\mu_2 - 1|` within a pair.
    min_pixels : int
        Pairs with fewer usable pixels in an amp are not used there.
    fit_max_mean : float, optional
        Only fit points below this mean (ADU), in addition to the turnoff cut.
    progress : bool
        tqdm progress bar over the pairs.

    Returns
    -------
    PtcResult

    Raises
    ------
    InvalidInputError
        No pairs, a pair with unequal levels, frames of different shapes, raws
        without usable geometry, bad options.
    TypeError
        Items that are not frames.

    Notes
    -----
    The turnoff is the mean of the point with the largest variance when later points
    fall more than 5% below it. The read noise comes from the serial overscans of
    raw pairs (the overscan difference, row levels removed), else from :math:`n_{00}`.

    References
    ----------
    .. [1] Astier, P. et al. 2019, A&A 629, A36 ("The shape of the photon transfer
       curve of CCD sensors").
    .. [2] Janesick, J. R. 2001, *Scientific Charge-Coupled Devices*, SPIE.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pairs = [(rng.poisson(m, (200, 200)) / 2.0, rng.poisson(m, (200, 200)) / 2.0) for m in (1e3, 4e3, 1.6e4)]
    >>> r = measure_ptc(pairs, max_lag=2, edge=0)
    >>> round(float(r.gain[0]), 2)
    2.0
    """
    check_in(model, "model", PTC_MODELS)
    L = check_int(max_lag, "max_lag", minimum=1)
    edge = check_int(edge, "edge", minimum=0)
    nsigma = check_finite_scalar(nsigma, "nsigma", minimum=0.0, strict=True)
    tol = check_finite_scalar(max_level_difference, "max_level_difference", minimum=0.0, strict=True)
    min_pixels = check_int(min_pixels, "min_pixels", minimum=1)
    if calibs is not None and not isinstance(calibs, Calibs):
        raise TypeError(f"`calibs` must be a Calibs; got {type(calibs).__name__}")
    items = _as_pairs(pairs)
    geom = geometry if geometry is not None else (calibs.geometry if calibs is not None else None)
    defects = calibs.defect_mask() if calibs is not None and calibs.defects is not None else None

    it: Any = enumerate(items)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, total=len(items), desc="flat pairs", unit="pair")
    rows = []
    os_var = []
    shape = None
    for i, (a, b) in it:
        ia, ib = a, b
        for nm, fr in ((f"pairs[{i}][0]", a), (f"pairs[{i}][1]", b)):
            if isinstance(fr, RawFrame):
                if geom is None:
                    geom = fr.geometry
                if fr.geometry != geom:
                    raise InvalidInputError(f"`{nm}` has a different detector geometry")
        if isinstance(a, RawFrame) != isinstance(b, RawFrame):
            raise InvalidInputError(f"`pairs[{i}]` mixes a RawFrame and an array")
        if isinstance(a, RawFrame):
            c = calibs if calibs is not None else Calibs(geom)
            ia, ib = _reduce_raw_adu(a, c), _reduce_raw_adu(b, c)
            os_var.append(_overscan_noise(a, b, geom))
        else:
            ia = np.asarray(ia, dtype=np.float64)
            ib = np.asarray(ib, dtype=np.float64)
            if ia.dtype.kind == "O" or ib.dtype.kind == "O":
                raise TypeError(f"`pairs[{i}]` must hold RawFrames or 2-D arrays")
        if ia.ndim != 2 or ia.shape != ib.shape:
            raise InvalidInputError(f"`pairs[{i}]` frames have shapes {ia.shape} and {ib.shape}; expected two equal 2-D images")
        if shape is None:
            shape = ia.shape
        elif ia.shape != shape:
            raise InvalidInputError(f"`pairs[{i}]` has shape {ia.shape}; the first pair has {shape}")
        fa, fb = np.isfinite(ia), np.isfinite(ib)
        both = fa & fb
        if not both.any():
            raise InvalidInputError(f"`pairs[{i}]` has no finite pixel")
        ma, mb = float(np.median(ia[both])), float(np.median(ib[both]))
        if ma <= 0 or mb <= 0:
            raise InvalidInputError(f"`pairs[{i}]` has a non-positive level ({ma:.4g}, {mb:.4g} ADU); is the illumination on?")
        if abs(ma / mb - 1) > tol:
            raise InvalidInputError(
                f"`pairs[{i}]` frames have unequal levels ({ma:.6g} and {mb:.6g} ADU, ratio {ma / mb:.4f}); "
                f"a flat pair needs equal exposures (|ratio - 1| <= max_level_difference = {tol})")
        rows.append(_pair_amps(ia, ib, both, geom, defects, edge, L, nsigma))
    assert shape is not None
    if geom is not None and shape != geom.assembled_shape:
        raise InvalidInputError(f"the frames have shape {shape}; the geometry's assembled shape is {geom.assembled_shape}")
    names = geom.names if geom is not None else ("A",)
    n_amp = len(names)
    n_pairs = len(items)
    mean = np.array([[r[k][0] for r in rows] for k in range(n_amp)])
    cov = np.array([[r[k][1] for r in rows] for k in range(n_amp)])
    npairs = np.array([[r[k][2] for r in rows] for k in range(n_amp)])
    npix = npairs[:, :, 0, 0]
    err = _cov_errors(cov, npairs)
    fits = [_fit_amp(mean[k], cov[k], err[k], npix[k] >= min_pixels, L, model, fit_max_mean) for k in range(n_amp)]
    gain = np.array([f["gain"] for f in fits])
    noise_fit = gain * np.sqrt(np.maximum([f["n"][0, 0] for f in fits], 0.0))
    if os_var:
        ov = np.nanmean(np.array(os_var), axis=0)
        noise = gain * np.sqrt(ov)
        # relative error of a variance from N values: sqrt(2/N); of the noise: half that
        n_os = sum(int(np.prod(a.serial_overscan_bbox.shape)) for a in geom.amplifiers[:1]) * len(os_var)
        noise_err = noise * np.sqrt(0.25 * 2.0 / max(n_os, 1) + (np.array([f["gain_err"] for f in fits]) / gain) ** 2)
        source = "overscan"
    else:
        noise = noise_fit
        noise_err = np.array([f["noise_err"] for f in fits])
        source = "fit"
    return PtcResult(
        amp_names=tuple(names), mean=mean, covariance=cov, covariance_error=err, n_pixels=npix,
        used=np.array([f["used"] for f in fits]), gain=gain, gain_error=np.array([f["gain_err"] for f in fits]),
        noise=noise, noise_error=noise_err, noise_fit=noise_fit, noise_source=source,
        a=np.array([f["a"] for f in fits]), a_error=np.array([f["a_err"] for f in fits]),
        noise_matrix=np.array([f["n"] for f in fits]), turnoff=np.array([f["turnoff"] for f in fits]),
        chi2=np.array([f["chi2"] for f in fits]), dof=np.array([f["dof"] for f in fits]), model=model, max_lag=L,
        success=np.array([f["success"] for f in fits]), reason=tuple(f["reason"] for f in fits),
    )


def _pair_amps(ia: np.ndarray, ib: np.ndarray, both: np.ndarray, geom: DetectorGeometry | None,
               defects: np.ndarray | None, edge: int, L: int, nsigma: float) -> list[tuple]:
    boxes = [a.assembled_bbox.slices for a in geom.amplifiers] if geom is not None else [
        (slice(0, ia.shape[0]), slice(0, ia.shape[1]))]
    out = []
    for sl in boxes:
        ys, xs = sl
        y0, y1, x0, x1 = ys.start + edge, ys.stop - edge, xs.start + edge, xs.stop - edge
        if y1 - y0 < L + 2 or x1 - x0 < L + 2:
            raise InvalidInputError(f"an amplifier of {ys.stop - ys.start} x {xs.stop - xs.start} px minus `edge` "
                                    f"{edge} is too small for lags up to {L}")
        a = ia[y0:y1, x0:x1]
        b = ib[y0:y1, x0:x1]
        valid = both[y0:y1, x0:x1].copy()
        if defects is not None:
            valid &= ~defects[y0:y1, x0:x1]
        mu_a = float(a[valid].mean())
        mu_b = float(b[valid].mean())
        diff = np.where(valid, a - (mu_a / mu_b) * b, 0.0)
        _kernels.clip_pair_difference(diff, valid, float(nsigma), 1)
        mu_a = float(a[valid].mean())
        mu_b = float(b[valid].mean())
        diff = np.where(valid, a - (mu_a / mu_b) * b, 0.0)
        c, n = pair_covariances(diff, valid, L)
        out.append((0.5 * (mu_a + mu_b), 0.5 * c, n))
    return out


def _cov_errors(cov: np.ndarray, npairs: np.ndarray) -> np.ndarray:
    c00 = cov[..., :1, :1]
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.sqrt((c00**2 + cov**2) / np.maximum(npairs, 1))
        err[..., 0, 0] = np.sqrt(2.0 / np.maximum(npairs[..., 0, 0], 1)) * np.abs(cov[..., 0, 0])
    return err


def _turnoff(mu: np.ndarray, var: np.ndarray, ok: np.ndarray) -> tuple[float, np.ndarray]:
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return math.nan, ok
    o = idx[np.argsort(mu[idx])]
    k = int(np.argmax(var[o]))
    if k < o.size - 1 and np.min(var[o[k + 1:]]) < 0.95 * var[o[k]]:
        t = float(mu[o[k]])
        return t, ok & (mu <= t)
    return float(mu[o[-1]]), ok


def _fit_amp(mu: np.ndarray, cov: np.ndarray, err: np.ndarray, ok: np.ndarray, L: int, model: str,
             fit_max_mean: float | None) -> dict:
    from scipy import fft as sfft
    from scipy.optimize import least_squares

    nq = (L + 1) ** 2
    ok = ok & np.isfinite(mu) & np.isfinite(cov[:, 0, 0]) & (mu > 0)
    turnoff, used = _turnoff(mu, cov[:, 0, 0], ok)
    if fit_max_mean is not None:
        used = used & (mu <= float(fit_max_mean))
    fail = {"gain": math.nan, "gain_err": math.nan, "noise_err": math.nan, "a": np.full((L + 1, L + 1), np.nan),
            "a_err": np.full((L + 1, L + 1), np.nan), "n": np.full((L + 1, L + 1), np.nan), "turnoff": turnoff,
            "chi2": math.nan, "dof": 0, "used": used, "success": False}
    if used.sum() < 3:
        return {**fail, "reason": f"only {int(used.sum())} usable pairs below the turnoff; need >= 3"}
    m = mu[used]
    c = cov[used]
    e = err[used]
    # starting point: the quadratic PTC (Astier eq. 16 to second order) and C_ij ~ a_ij mu^2 + n_ij
    p2 = np.polyfit(m, c[:, 0, 0], 2, w=1 / e[:, 0, 0])
    g0 = 1.0 / p2[1] if p2[1] > 0 else 1.0
    a0 = np.zeros((L + 1, L + 1))
    n0 = np.zeros((L + 1, L + 1))
    X = np.stack([m**2, np.ones_like(m)], axis=1)
    for dy in range(L + 1):
        for dx in range(L + 1):
            if dy == dx == 0:
                continue
            w = 1 / e[:, dy, dx]
            sol = np.linalg.lstsq(X * w[:, None], c[:, dy, dx] * w, rcond=None)[0]
            a0[dy, dx], n0[dy, dx] = sol
    a0[0, 0] = p2[0]
    n0[0, 0] = p2[2]
    sa = max(abs(p2[0]), 1e-9)
    sn = max(float(np.median(e[:, 0, 0])), 1e-6)

    def unpack(p: np.ndarray) -> tuple:
        return p[0] * g0, p[1 : 1 + nq].reshape(L + 1, L + 1) * sa, p[1 + nq :].reshape(L + 1, L + 1) * sn

    def resid(p: np.ndarray) -> np.ndarray:
        g, a, n = unpack(p)
        if g <= 0:
            return np.full(c.size, 1e6)
        mod = _model(m, g, a, model) + n[None]
        return ((mod - c) / e).ravel()

    bhat = _basis_hat(L, _grid_size(L))
    npts = m.size

    def jac(p: np.ndarray) -> np.ndarray:
        g, a, n = unpack(p)
        J = np.zeros((npts, nq, p.size))
        _, dchat, ng = _model(m, g, a, model, derivative=True)
        # d/da_q: inverse transform of dC/da_hat times the basis transform of lag q
        da = sfft.irfft2(dchat[:, None] * bhat[None], s=(ng, ng), workers=1)[:, :, : L + 1, : L + 1]
        J[:, :, 1 : 1 + nq] = da.reshape(npts, nq, nq).transpose(0, 2, 1) * sa
        for q in range(nq):
            J[:, q, 1 + nq + q] = sn
        h = 1e-6 * g
        cp = _model(m, g + h, a, model)
        cm = _model(m, g - h, a, model)
        J[:, :, 0] = ((cp - cm) / (2 * h)).reshape(npts, nq) * g0
        return J.reshape(npts * nq, p.size) / e.reshape(npts * nq)[:, None]

    p0 = np.concatenate([[1.0], (a0 / sa).ravel(), (n0 / sn).ravel()])
    try:
        sol = least_squares(resid, p0, jac=jac, method="lm", x_scale="jac")
    except (ValueError, np.linalg.LinAlgError) as exc:
        return {**fail, "reason": f"least squares failed: {exc}"}
    if not sol.success or not np.all(np.isfinite(sol.x)):
        return {**fail, "reason": f"least squares did not converge: {sol.message}"}
    g, a, n = unpack(sol.x)
    J = sol.jac
    try:
        pcov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        return {**fail, "reason": "singular normal matrix (too few levels for the lags)"}
    perr = np.sqrt(np.clip(np.diag(pcov), 0, None))
    chi2 = float(np.sum(sol.fun**2))
    dof = int(c.size - sol.x.size)
    n00 = max(n[0, 0], 1e-30)
    noise_err = g * 0.5 * perr[1 + nq] * sn / math.sqrt(n00)
    return {"gain": g, "gain_err": perr[0] * g0, "noise_err": noise_err, "a": a,
            "a_err": perr[1 : 1 + nq].reshape(L + 1, L + 1) * sa, "n": n, "turnoff": turnoff, "chi2": chi2,
            "dof": dof, "used": used, "success": True, "reason": ""}
