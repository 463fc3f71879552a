"""Brighter-fatter correction: the iterative kernel method of Coulton et al. (2018)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core import InvalidInputError, MaskPlane, as_image
from ._common import check_finite_scalar, check_int, mask_and_bad
from ._kernels import _bf_divergence, _max_relative_change

__all__ = ["BrighterFatterResult", "correct_brighter_fatter"]

#: Pixels whose value is not used as charge (set to 0 in the working copy).
BF_BAD_PLANES = MaskPlane.NO_DATA | MaskPlane.UNMASKEDNAN


@dataclasses.dataclass(frozen=True, eq=False)
class BrighterFatterResult:
    """Result of :func:`correct_brighter_fatter`.

    Attributes
    ----------
    image : numpy.ndarray
        The corrected image (input float dtype, e⁻); excluded pixels unchanged.
    n_iter : int
        Iterations done.
    converged : bool
        Whether the last iteration changed no pixel by more than ``tol`` times its
        Poisson noise.
    max_change : float
        The largest change of the last iteration in units of the Poisson noise.
    flux_change : float
        Sum of the correction over the image (e⁻): 0 to rounding (flux conservation).
    """

    image: np.ndarray
    n_iter: int
    converged: bool
    max_change: float
    flux_change: float


def _check_kernel(kernel: Any) -> np.ndarray:
    try:
        k = np.asarray(kernel, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`kernel` must be a 2-D real array; got {type(kernel).__name__}") from None
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise InvalidInputError(f"`kernel` has shape {k.shape}; expected a 2-D array with odd sizes")
    if not np.isfinite(k).all():
        raise InvalidInputError("`kernel` has non-finite values")
    return k


class _FixedKernelConvolver:
    """``same``-mode convolution with one kernel, its transform computed once.

    The transforms are single precision: 2-3x faster, and the potential they give moves
    the corrected image by ~1e-5 of its Poisson noise (measured on a 2k x 2k field with
    stars up to saturation), far below the iteration tolerance.
    """

    def __init__(self, shape: tuple[int, int], kernel: np.ndarray) -> None:
        import scipy.fft as sfft

        self._fft = sfft
        ny, nx = shape
        ky, kx = kernel.shape
        self.size = (sfft.next_fast_len(ny + ky - 1, real=True), sfft.next_fast_len(nx + kx - 1, real=True))
        self.kf = sfft.rfft2(kernel.astype(np.float32), s=self.size)
        self.sl = (slice(ky // 2, ky // 2 + ny), slice(kx // 2, kx // 2 + nx))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        f = self._fft
        full = f.irfft2(f.rfft2(image.astype(np.float32), s=self.size) * self.kf, s=self.size)
        return np.ascontiguousarray(full[self.sl], dtype=np.float64)


def correct_brighter_fatter(
    image: Any,
    kernel: Any,
    *,
    mask: Any = None,
    bad_planes: Any = None,
    max_iter: int = 20,
    tol: float = 1e-3,
) -> BrighterFatterResult:
    r"""Undo the brighter-fatter effect by redistributing charge (Coulton et al. 2018).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Assembled image in e⁻ *with the sky still in it* (the effect acts on all the
        collected charge), bias- and dark-subtracted, before flat fielding; not
        modified.
    kernel : array_like, shape (ky, kx), odd sizes
        The brighter-fatter kernel :math:`K` (1/e⁻), as
        :attr:`lsstdrp.core.Calibs.bf_kernel`.
    mask : array_like of bool or uint32, optional
        Pixels with ``bad_planes`` bits (default ``NO_DATA``, ``UNMASKEDNAN``) and
        non-finite pixels count as no charge and are returned unchanged.
    bad_planes : MaskPlane bits or sequence of str, optional
        See ``mask``.
    max_iter : int
        Maximum iterations.
    tol : float
        Stop when no pixel changes between iterations by more than ``tol`` times its
        Poisson noise, :math:`|\Delta Q| \le \mathrm{tol}\,\sqrt{\max(Q, 1)}`.

    Returns
    -------
    BrighterFatterResult
        ``image``, iteration count, convergence, ``flux_change`` (0: flux conserved).

    Raises
    ------
    InvalidInputError
        A kernel that is not 2-D with odd sizes or has non-finite values, a mismatched
        mask, ``max_iter`` < 1.

    Notes
    -----
    Charge already collected in a pixel repels incoming charge, shifting the pixel
    boundaries; to first order the observed image is
    :math:`Q_{obs} = Q - \tfrac12 \nabla\cdot[Q\,\nabla(K \otimes Q)]` (Coulton et al.
    2018, eq. 14, after Antilogus et al. 2014 and Guyonnet et al. 2015). The true
    image is the fixed point of

    .. math::

        Q_{k+1} = Q_{obs} + \tfrac12 \nabla\cdot[Q_k\,\nabla(K \otimes Q_k)],
        \qquad Q_0 = Q_{obs},

    which converges geometrically (the correction is a few per cent of the signal).
    The divergence is discretised in conservative (finite-volume) form: the charge
    moved across the face between pixels :math:`p` and :math:`q` is
    :math:`\tfrac14 (Q_p + Q_q)(\Phi_q - \Phi_p)` with :math:`\Phi = K \otimes Q`,
    and none crosses the image boundary, so the correction sums to zero exactly.

    What it cannot correct: (1) saturated pixels and bleed trails -- the charge that
    left them is unknown, and the correction near them uses clipped values; (2)
    charge beyond the kernel's extent and any non-linear (in flux) or
    wavelength-dependent part of the effect, which a single linear kernel does not
    model; (3) the image within a kernel half-width of the edge, where the potential
    misses the charge outside the detector; (4) masked pixels (NO_DATA) which are
    treated as empty; (5) the noise: the correction sharpens the noise slightly, and
    the variance plane is not modified.

    References
    ----------
    .. [1] Coulton, W. R. et al. 2018, AJ 155, 258.
    .. [2] Antilogus, P. et al. 2014, JINST 9, C03048.
    .. [3] Guyonnet, A. et al. 2015, A&A 575, A41.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.isr import correct_brighter_fatter
    >>> yy, xx = np.mgrid[-15:16, -15:16]
    >>> star = 1e5 * np.exp(-(xx**2 + yy**2) / 4.0)
    >>> kernel = -1e-7 * np.exp(-(np.mgrid[-3:4, -3:4] ** 2).sum(0) / 2.0)
    >>> res = correct_brighter_fatter(star, kernel)
    >>> res.converged, abs(res.flux_change) < 1e-6
    (True, True)
    """
    img = as_image(image, "image")
    k = _check_kernel(kernel)
    n_max = check_int(max_iter, "max_iter", minimum=1)
    t = check_finite_scalar(tol, "tol", minimum=0.0)
    _, bad = mask_and_bad(mask, img.shape, bad_planes, image=img, default=BF_BAD_PLANES, warn=False)
    obs = img.astype(np.float64)
    bad |= ~np.isfinite(obs)
    obs[bad] = 0.0
    q = obs.copy()
    new = np.empty_like(obs)
    conv = _FixedKernelConvolver(obs.shape, k)
    any_bad = bool(bad.any())
    change = np.inf
    n = 0
    for n in range(1, n_max + 1):
        phi = conv(q)
        _bf_divergence(q, phi, new)
        del phi
        new += obs
        if any_bad:
            new[bad] = 0.0
        change = _max_relative_change(new, q, obs)
        q, new = new, q
        if change <= t:
            break
    del new
    out = img.astype(np.float64, copy=True)
    good = ~bad
    out[good] = q[good]
    return BrighterFatterResult(
        image=out.astype(img.dtype, copy=False),
        n_iter=n,
        converged=bool(change <= t),
        max_change=change,
        flux_change=float(np.sum(q[good] - obs[good])),
    )
