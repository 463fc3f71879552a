"""Spatially sampled pixel-correlation kernels and ``measurement_variance``."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from .._errors import InvalidInputError

__all__ = ["PixelCovariance"]


@dataclasses.dataclass(frozen=True, eq=False)
class PixelCovariance:
    r"""Pixel covariance of a warp or coadd: variance plane x sampled correlation kernels.

    The covariance of pixels :math:`p` and :math:`q` is modelled as

    .. math:: C_{pq} = \sqrt{V_p V_q}\; \rho_{\mathbf x}(q - p),

    where :math:`V` is the variance plane and :math:`\rho_{\mathbf x}` the correlation
    kernel (``rho(0) = 1``, lags up to ``radius`` in x and y) sampled at the positions
    ``x_samples`` x ``y_samples`` and interpolated bilinearly in between (it varies
    smoothly: warping correlates neighbouring pixels by an amount that depends on the
    local scale and rotation of the mapping).

    Parameters
    ----------
    kernels : numpy.ndarray, shape (n_y, n_x, 2R+1, 2R+1)
        Correlation kernels at the sample positions, index ``[.., R + ly, R + lx]``.
    x_samples, y_samples : numpy.ndarray
        Increasing sample coordinates (pixels of the image the kernels belong to).
    variance : numpy.ndarray, shape (ny, nx)
        The variance plane (held by reference, never modified).

    Examples
    --------
    >>> import numpy as np
    >>> k = np.zeros((1, 1, 7, 7)); k[0, 0, 3, 3] = 1.0
    >>> cov = PixelCovariance(k, np.array([0.0]), np.array([0.0]), np.full((10, 10), 2.0))
    >>> float(cov.measurement_variance(np.ones((3, 3)), x0=2, y0=2))
    18.0
    """

    kernels: np.ndarray
    x_samples: np.ndarray
    y_samples: np.ndarray
    variance: np.ndarray

    def __post_init__(self) -> None:
        k = np.asarray(self.kernels, dtype=np.float64)
        if k.ndim != 4 or k.shape[2] != k.shape[3] or k.shape[2] % 2 == 0:
            raise InvalidInputError(f"`kernels` has shape {k.shape}; expected (n_y, n_x, 2R+1, 2R+1)")
        xs = np.asarray(self.x_samples, dtype=np.float64)
        ys = np.asarray(self.y_samples, dtype=np.float64)
        if xs.shape != (k.shape[1],) or ys.shape != (k.shape[0],):
            raise InvalidInputError("`x_samples`/`y_samples` must match the sample axes of `kernels`")
        object.__setattr__(self, "kernels", k)
        object.__setattr__(self, "x_samples", xs)
        object.__setattr__(self, "y_samples", ys)

    @property
    def radius(self) -> int:
        """Largest lag R of the kernels (they are (2R+1) x (2R+1))."""
        return (self.kernels.shape[2] - 1) // 2

    def kernel_at(self, x: float, y: float) -> np.ndarray:
        """The correlation kernel at pixel ``(x, y)`` (bilinear between samples).

        Parameters
        ----------
        x, y : float
            Position in pixels.

        Returns
        -------
        numpy.ndarray, shape (2R+1, 2R+1)
            ``rho`` with ``rho[R, R] = 1``.
        """
        def _bracket(v: float, s: np.ndarray) -> tuple[int, int, float]:
            if s.size == 1:
                return 0, 0, 0.0
            v = min(max(float(v), s[0]), s[-1])
            i = int(np.clip(np.searchsorted(s, v) - 1, 0, s.size - 2))
            return i, i + 1, (v - s[i]) / (s[i + 1] - s[i])

        i0, i1, fx = _bracket(x, self.x_samples)
        j0, j1, fy = _bracket(y, self.y_samples)
        k = self.kernels
        return ((1 - fx) * (1 - fy) * k[j0, i0] + fx * (1 - fy) * k[j0, i1]
                + (1 - fx) * fy * k[j1, i0] + fx * fy * k[j1, i1])

    def _scaled(self, weights: Any, x0: int, y0: int) -> np.ndarray:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 2:
            raise InvalidInputError(f"`weights` has shape {w.shape}; expected a 2-D stamp")
        ny, nx = self.variance.shape
        x0, y0 = int(x0), int(y0)
        a = np.zeros_like(w)
        ys0, ys1 = max(y0, 0), min(y0 + w.shape[0], ny)
        xs0, xs1 = max(x0, 0), min(x0 + w.shape[1], nx)
        if ys1 <= ys0 or xs1 <= xs0:
            raise InvalidInputError(f"`weights` stamp at (x0, y0) = ({x0}, {y0}) lies outside the image {self.variance.shape}")
        v = np.asarray(self.variance[ys0:ys1, xs0:xs1], dtype=np.float64)
        sd = np.sqrt(np.where(np.isfinite(v) & (v > 0), v, 0.0))
        a[ys0 - y0 : ys1 - y0, xs0 - x0 : xs1 - x0] = sd
        return w * a

    def measurement_variance(self, weights: Any, *, x0: int, y0: int) -> float:
        r"""Variance :math:`w^T C w` of the linear measurement :math:`\sum_p w_p I_p`.

        Parameters
        ----------
        weights : array_like, shape (h, w)
            Weights of a stamp whose pixel ``[0, 0]`` is image pixel ``(x0, y0)`` (a PSF
            flux uses ``psf / sum(psf**2)``, an aperture flux its pixel coverage).
        x0, y0 : int
            Image pixel of ``weights[0, 0]``; pixels outside the image count as zero.

        Returns
        -------
        float
            :math:`\sum_{l} \rho(l) \sum_p a_p a_{p+l}` with :math:`a = w\sqrt{V}` and
            :math:`\rho` the kernel at the stamp centre.

        Raises
        ------
        InvalidInputError
            A non-2-D stamp or a stamp entirely outside the image.
        """
        a = self._scaled(weights, x0, y0)
        h, w = a.shape
        rho = self.kernel_at(x0 + (w - 1) / 2.0, y0 + (h - 1) / 2.0)
        r = self.radius
        total = 0.0
        for ly in range(-r, r + 1):
            if abs(ly) >= h:
                continue
            for lx in range(-r, r + 1):
                if abs(lx) >= w:
                    continue
                c = rho[ly + r, lx + r]
                if c == 0.0:
                    continue
                s1 = a[max(0, -ly) : h - max(0, ly), max(0, -lx) : w - max(0, lx)]
                s2 = a[max(0, ly) : h - max(0, -ly), max(0, lx) : w - max(0, -lx)]
                total += c * float(np.sum(s1 * s2))
        return total

    def naive_variance(self, weights: Any, *, x0: int, y0: int) -> float:
        r"""The per-pixel (diagonal-only) variance :math:`\sum_p w_p^2 V_p`.

        What an error computed from the variance plane alone gives; shown next to
        :meth:`measurement_variance` to expose the effect of pixel correlations.

        Parameters
        ----------
        weights : array_like, shape (h, w)
            Stamp weights, ``weights[0, 0]`` at image pixel ``(x0, y0)``.
        x0, y0 : int
            Image pixel of ``weights[0, 0]``.

        Returns
        -------
        float
        """
        a = self._scaled(weights, x0, y0)
        return float(np.sum(a * a))
