"""Wavelength-dependent photometric corrections: synthetic photometry through the local
bandpass vs the standard one, as a pure function and as a smooth focal-plane map."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ...core import Calibs, InvalidInputError
from .._common import check_int

__all__ = [
    "synthetic_ab_magnitude",
    "chromatic_correction",
    "ChromaticCorrectionMap",
    "fit_chromatic_correction",
]


def _wave(wave_nm: Any) -> np.ndarray:
    w = np.asarray(wave_nm, dtype=np.float64)
    if w.ndim != 1 or w.size < 3 or not np.all(np.isfinite(w)) or np.any(np.diff(w) <= 0) or w[0] <= 0:
        raise InvalidInputError("`wave_nm` must be a 1-D strictly increasing positive grid of >= 3 wavelengths")
    return w


def _spectra(a: Any, name: str, n: int) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape[-1:] != (n,):
        raise InvalidInputError(f"`{name}` has shape {arr.shape}; its last axis must match `wave_nm` ({n})")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InvalidInputError(f"`{name}` must be finite and >= 0")
    return arr


def synthetic_ab_magnitude(wave_nm: Any, throughput: Any, sed: Any) -> np.ndarray:
    """Photon-counting AB magnitude of photon SEDs through throughputs (up to a constant).

    .. math::

        m = -2.5\\log_{10}\\frac{\\int N_\\lambda\\,T\\,d\\lambda}{\\int \\lambda^{-1}\\,T\\,d\\lambda}

    with :math:`N_\\lambda` the photon SED (the normalisation of ``sed`` adds a
    constant) and :math:`\\lambda^{-1}` the photon SED of a flat-:math:`f_\\nu` source, so
    an AB-flat source has the same magnitude in every bandpass (Fukugita et al. 1996).

    Parameters
    ----------
    wave_nm : array_like, shape (n_wave,)
    throughput : array_like, shape (..., n_wave)
        Total throughputs (>= 0).
    sed : array_like, shape (..., n_wave)
        Photon SEDs :math:`N_\\lambda` (>= 0); broadcast against ``throughput``'s
        leading axes.

    Returns
    -------
    numpy.ndarray
        Magnitudes of the broadcast leading shape.

    Raises
    ------
    InvalidInputError
        Bad grid, shapes or values; a zero integral.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.linspace(400, 700, 301)
    >>> t = np.exp(-0.5 * ((w - 550) / 40) ** 2)
    >>> bool(abs(synthetic_ab_magnitude(w, t, 1.0 / w)) < 1e-12)   # AB-flat: 0
    True
    """
    w = _wave(wave_nm)
    t = _spectra(throughput, "throughput", w.size)
    s = _spectra(sed, "sed", w.size)
    num = np.trapezoid(s * t, w, axis=-1)
    den = np.trapezoid(t / w, w, axis=-1)
    if np.any(num <= 0) or np.any(den <= 0):
        raise InvalidInputError("a throughput x SED integral is zero; the SED and bandpass do not overlap")
    return -2.5 * np.log10(num / den)


def chromatic_correction(wave_nm: Any, throughput: Any, standard_throughput: Any, sed: Any) -> np.ndarray:
    """Magnitude correction from a local bandpass to the standard bandpass.

    :math:`\\Delta m = m_{std} - m_{obs}` (:func:`synthetic_ab_magnitude`), so that
    ``m_obs + Δm`` is the magnitude in the standard bandpass for an observation whose
    zeropoint was set grey (AB-flat sources have :math:`\\Delta m = 0`; Burke et al.
    2018).

    Parameters
    ----------
    wave_nm : array_like, shape (n_wave,)
    throughput : array_like, shape (..., n_wave)
        The bandpass where the source was observed (e.g. at its focal-plane position).
    standard_throughput : array_like, shape (n_wave,)
    sed : array_like, shape (..., n_wave)
        Photon SEDs; broadcast against ``throughput``.

    Returns
    -------
    numpy.ndarray
        :math:`\\Delta m` (mag).

    Raises
    ------
    InvalidInputError
        As :func:`synthetic_ab_magnitude`.

    References
    ----------
    .. [1] Burke, D. L. et al. 2018, AJ 155, 41 (forward global photometric
       calibration, the chromatic corrections of DES).
    .. [2] Li, T. S. et al. 2016, AJ 151, 157.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.linspace(400, 800, 401)
    >>> std = ((w > 550) & (w < 700)).astype(float)
    >>> shifted = ((w > 545) & (w < 695)).astype(float)
    >>> red = w ** 2.0 / 1e6                       # a red power-law SED
    >>> float(np.round(chromatic_correction(w, shifted, std, red) * 1e3, 2))  # mmag
    -26.16
    """
    w = _wave(wave_nm)
    std = _spectra(standard_throughput, "standard_throughput", w.size)
    if std.ndim != 1:
        raise InvalidInputError("`standard_throughput` must be 1-D")
    return synthetic_ab_magnitude(w, std, sed) - synthetic_ab_magnitude(w, throughput, sed)


def _cheb(u: np.ndarray, order: int) -> np.ndarray:
    return np.polynomial.chebyshev.chebvander(u, order)


@dataclasses.dataclass(frozen=True, eq=False)
class ChromaticCorrectionMap:
    """A smooth map :math:`\\Delta m(x, y, c)` of the chromatic correction.

    :math:`\\Delta m = \\sum_{i+j \\le S}\\sum_{k=1}^{K} a_{ijk}\\,T_i(u)\\,T_j(v)\\,
    (c - c_0)^k` with Chebyshev polynomials :math:`T` of the focal-plane position scaled
    to [-1, 1] over ``domain`` and a polynomial in the colour (no :math:`k = 0` term:
    the grey part belongs to the zeropoint; with ``grey=True`` it is kept).

    Attributes
    ----------
    coefficients : numpy.ndarray, shape (n_spatial, n_color)
    domain : tuple of float
        ``(x_min, x_max, y_min, y_max)`` of the positions.
    spatial_order, color_order : int
    color_ref : float
        :math:`c_0`, the colour of an AB-flat source (0 for AB colours).
    color_name, band : str or None
    grey : bool
        Whether the colour-independent term is included.
    """

    coefficients: np.ndarray
    domain: tuple[float, float, float, float]
    spatial_order: int
    color_order: int
    color_ref: float = 0.0
    color_name: str | None = None
    band: str | None = None
    grey: bool = False

    def _design(self, x: np.ndarray, y: np.ndarray, c: np.ndarray) -> np.ndarray:
        x0, x1, y0, y1 = self.domain
        u = (2 * x - (x0 + x1)) / max(x1 - x0, 1e-300)
        v = (2 * y - (y0 + y1)) / max(y1 - y0, 1e-300)
        tu = _cheb(u, self.spatial_order)
        tv = _cheb(v, self.spatial_order)
        sp = np.stack([tu[:, i] * tv[:, j] for i in range(self.spatial_order + 1)
                       for j in range(self.spatial_order + 1 - i)], axis=1)
        k0 = 0 if self.grey else 1
        cc = np.stack([(c - self.color_ref) ** k for k in range(k0, self.color_order + 1)], axis=1)
        return (sp[:, :, None] * cc[:, None, :]).reshape(x.size, -1)

    def __call__(self, x: Any, y: Any, color: Any) -> np.ndarray:
        """:math:`\\Delta m` at focal-plane positions ``(x, y)`` for colours ``color``.

        Parameters
        ----------
        x, y, color : array_like
            Broadcast together.

        Returns
        -------
        numpy.ndarray
            mag, of the broadcast shape.
        """
        xb, yb, cb = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in (x, y, color)))
        out = self._design(xb.ravel(), yb.ravel(), cb.ravel()) @ self.coefficients.ravel()
        return out.reshape(xb.shape)

    def to_calibs(self, calibs: Calibs) -> Calibs:
        """A copy of ``calibs`` holding this map (``chromatic`` + ``metadata["chromatic"]``).

        Parameters
        ----------
        calibs : Calibs

        Returns
        -------
        Calibs
        """
        meta = dict(calibs.metadata)
        meta["chromatic"] = {"domain": list(self.domain), "spatial_order": self.spatial_order,
                             "color_order": self.color_order, "color_ref": self.color_ref,
                             "color_name": self.color_name, "band": self.band, "grey": self.grey}
        return calibs.replace(chromatic=np.asarray(self.coefficients, dtype=np.float64), metadata=meta)

    @classmethod
    def from_calibs(cls, calibs: Calibs) -> "ChromaticCorrectionMap":
        """The map stored by :meth:`to_calibs`.

        Parameters
        ----------
        calibs : Calibs

        Returns
        -------
        ChromaticCorrectionMap

        Raises
        ------
        InvalidInputError
            If ``calibs`` holds no chromatic map.
        """
        d = calibs.metadata.get("chromatic")
        if calibs.chromatic is None or not isinstance(d, dict):
            raise InvalidInputError("`calibs` holds no chromatic correction map")
        return cls(np.asarray(calibs.chromatic, dtype=np.float64), tuple(float(v) for v in d["domain"]),
                   int(d["spatial_order"]), int(d["color_order"]), float(d["color_ref"]), d.get("color_name"),
                   d.get("band"), bool(d.get("grey", False)))


@dataclasses.dataclass(frozen=True, eq=False)
class ChromaticFit:
    """Result of :func:`fit_chromatic_correction`.

    Attributes
    ----------
    map : ChromaticCorrectionMap or None
    residual_rms, residual_max : float
        Of the training set, mag.
    success : bool
    reason : str
    """

    map: ChromaticCorrectionMap | None
    residual_rms: float
    residual_max: float
    success: bool
    reason: str


def fit_chromatic_correction(
    wave_nm: Any,
    throughputs: Any,
    positions: Any,
    standard_throughput: Any,
    seds: Any,
    colors: Any,
    *,
    spatial_order: int = 4,
    color_order: int = 3,
    color_ref: float = 0.0,
    color_name: str | None = None,
    band: str | None = None,
    grey: bool = False,
) -> ChromaticFit:
    """Fit the smooth map :math:`\\Delta m(x, y, c)` from bandpasses sampled over the focal
    plane and a training set of SEDs with their colours.

    For every sampled position :math:`p` and training SED :math:`s`,
    :math:`\\Delta m_{ps}` = :func:`chromatic_correction`; the coefficients of
    :class:`ChromaticCorrectionMap` are their least-squares fit. The map then corrects a
    source whose SED is unknown from its colour alone.

    Parameters
    ----------
    wave_nm : array_like, shape (n_wave,)
    throughputs : array_like, shape (n_pos, n_wave)
        The bandpass at each sampled focal-plane position.
    positions : array_like, shape (n_pos, 2)
        ``(x, y)`` of the samples (any unit, e.g. mm on the focal plane).
    standard_throughput : array_like, shape (n_wave,)
    seds : array_like, shape (n_sed, n_wave)
        Training photon SEDs spanning the colours of the sources to correct.
    colors : array_like, shape (n_sed,)
        Their colours (e.g. g - i in the standard bandpasses).
    spatial_order, color_order : int
        Total Chebyshev order in position; polynomial order in colour.
    color_ref : float
        Colour of an AB-flat source (0 for AB colours).
    color_name, band : str, optional
        Stored in the map.
    grey : bool
        Also fit the colour-independent term (default: left to the zeropoint).

    Returns
    -------
    ChromaticFit

    Raises
    ------
    InvalidInputError
        Mismatched shapes, non-finite colours, fewer samples than coefficients.

    Examples
    --------
    >>> import numpy as np
    >>> w = np.linspace(500, 750, 251)
    >>> std = ((w > 550) & (w < 700)).astype(float)
    >>> pos = np.array([[x, y] for x in range(-2, 3) for y in range(-2, 3)], float)
    >>> tp = np.array([((w > 550 - r2) & (w < 700 - r2)).astype(float) for r2 in (pos ** 2).sum(1)])
    >>> seds = np.array([w ** p for p in np.linspace(-2, 3, 12)])
    >>> colors = -2.5 * np.log10(seds[:, 50] * w[50] / (seds[:, 200] * w[200]))
    >>> fit = fit_chromatic_correction(w, tp, pos, std, seds, colors, spatial_order=2, color_order=2)
    >>> fit.success, bool(fit.residual_rms < 1e-4)
    (True, True)
    """
    w = _wave(wave_nm)
    tp = _spectra(throughputs, "throughputs", w.size)
    if tp.ndim != 2:
        raise InvalidInputError(f"`throughputs` must be (n_pos, n_wave); got shape {tp.shape}")
    pos = np.asarray(positions, dtype=np.float64)
    if pos.shape != (tp.shape[0], 2) or not np.all(np.isfinite(pos)):
        raise InvalidInputError(f"`positions` has shape {pos.shape}; expected ({tp.shape[0]}, 2) finite (x, y)")
    s = _spectra(seds, "seds", w.size)
    if s.ndim != 2:
        raise InvalidInputError(f"`seds` must be (n_sed, n_wave); got shape {s.shape}")
    c = np.asarray(colors, dtype=np.float64).ravel()
    if c.shape != (s.shape[0],) or not np.all(np.isfinite(c)):
        raise InvalidInputError(f"`colors` must hold {s.shape[0]} finite values (one per SED)")
    so = check_int(spatial_order, "spatial_order", minimum=0)
    co = check_int(color_order, "color_order", minimum=1)
    dm = chromatic_correction(w, tp[:, None, :], standard_throughput, s[None, :, :])  # (n_pos, n_sed)
    dom = (float(pos[:, 0].min()), float(pos[:, 0].max()), float(pos[:, 1].min()), float(pos[:, 1].max()))
    proto = ChromaticCorrectionMap(np.zeros(1), dom, so, co, float(color_ref), color_name, band, bool(grey))
    X = np.repeat(pos[:, 0], c.size)
    Y = np.repeat(pos[:, 1], c.size)
    C = np.tile(c, pos.shape[0])
    A = proto._design(X, Y, C)
    if A.shape[0] <= A.shape[1]:
        raise InvalidInputError(f"{A.shape[0]} (position, SED) samples cannot constrain {A.shape[1]} coefficients")
    coef, *_ = np.linalg.lstsq(A, dm.ravel(), rcond=None)
    nsp = (so + 1) * (so + 2) // 2
    cmap = dataclasses.replace(proto, coefficients=coef.reshape(nsp, -1))
    r = dm.ravel() - A @ coef
    ok = bool(np.all(np.isfinite(coef)))
    return ChromaticFit(cmap if ok else None, float(np.sqrt(np.mean(r**2))), float(np.max(np.abs(r))), ok,
                        "" if ok else "non-finite coefficients")
