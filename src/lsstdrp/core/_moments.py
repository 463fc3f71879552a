"""Private adaptive (elliptical-Gaussian-weighted) second moments of a small stamp.

Used by the PSF classes of :mod:`lsstdrp.core` to report ``moments()``; validated
against ``galsim.hsm.FindAdaptiveMom`` in ``tests/core/test_psf.py``. Pure numpy: the
stamps are small (tens of pixels on a side).
"""

from __future__ import annotations

import numpy as np

__all__ = ["_adaptive_moments"]


def _adaptive_moments(
    image: np.ndarray,
    *,
    guess_sigma: float = 2.0,
    guess_center: tuple[float, float] | None = None,
    max_iter: int = 200,
    tol: float = 1e-10,
) -> tuple[float, float, float, float, float, bool]:
    r"""Adaptive second moments of ``image`` (Bernstein & Jarvis 2002; Hirata & Seljak 2003).

    Finds the elliptical Gaussian weight :math:`W(\mathbf{x}) = \exp(-\tfrac12
    (\mathbf{x}-\mathbf{x}_0)^T M^{-1} (\mathbf{x}-\mathbf{x}_0))` that best fits the
    image in the least-squares sense, i.e. the fixed point of

    .. math::

        \sum_p I_p W_p (\mathbf{x}_p - \mathbf{x}_0) = 0, \qquad
        \frac{\sum_p I_p W_p (\mathbf{x}_p-\mathbf{x}_0)(\mathbf{x}_p-\mathbf{x}_0)^T}
             {\sum_p I_p W_p} = \frac{M}{2},

    the definition used by ``galsim.hsm.FindAdaptiveMom``. For a Gaussian image of
    covariance :math:`\Sigma`, :math:`M = \Sigma`.

    Parameters
    ----------
    image : numpy.ndarray, shape (ny, nx)
        The stamp, ``image[y, x]``; any float dtype (computed in float64).
    guess_sigma : float
        Initial round weight sigma in pixels.
    guess_center : (float, float), optional
        Initial ``(x0, y0)``; default the stamp centre ``((nx-1)/2, (ny-1)/2)``.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Convergence: the largest change of an element of :math:`M` relative to
        :math:`\mathrm{tr} M`, and of the centre in pixels, below ``tol``.

    Returns
    -------
    ixx, iyy, ixy : float
        The adaptive moments :math:`M` in pixels².
    x0, y0 : float
        The adaptive centroid in pixel coordinates of ``image``.
    success : bool
        False if the weighted flux became non-positive, :math:`M` stopped being
        positive definite, the centre left the stamp, or ``max_iter`` was reached;
        the last estimates (possibly NaN) are returned.

    Notes
    -----
    Each iteration measures the weighted centroid offset :math:`\boldsymbol\mu` and the
    weighted central moments :math:`m` with the current weight, then updates with the
    Gaussian "deconvolution" step of Bernstein & Jarvis (2002, their sec. 3.1):
    :math:`\Sigma_\mathrm{est} = (m^{-1} - M^{-1})^{-1}`, :math:`\mathbf{x}_0
    \leftarrow \mathbf{x}_0 + \Sigma_\mathrm{est} m^{-1} \boldsymbol\mu`,
    :math:`M \leftarrow \Sigma_\mathrm{est}`. This is exact in one step for a Gaussian
    and converges quadratically-fast near the fixed point for near-Gaussian profiles;
    when :math:`m^{-1} - M^{-1}` is not positive definite the plain fixed-point step
    :math:`M \leftarrow 2m` is taken instead.

    References
    ----------
    .. [1] Bernstein, G. M. & Jarvis, M. 2002, AJ 123, 583.
    .. [2] Hirata, C. & Seljak, U. 2003, MNRAS 343, 459.
    """
    img = np.asarray(image, dtype=np.float64)
    ny, nx = img.shape
    ys, xs = np.mgrid[0:ny, 0:nx].astype(np.float64)
    if guess_center is None:
        cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    else:
        cx, cy = float(guess_center[0]), float(guess_center[1])
    mxx = myy = float(guess_sigma) ** 2
    mxy = 0.0
    success = False
    for _ in range(max_iter):
        det = mxx * myy - mxy * mxy
        if not (det > 0 and mxx > 0):
            break
        dx = xs - cx
        dy = ys - cy
        r2 = (myy * dx * dx - 2.0 * mxy * dx * dy + mxx * dy * dy) / det
        iw = img * np.exp(-0.5 * np.minimum(r2, 700.0))
        s0 = iw.sum()
        if not s0 > 0:
            break
        mux = (iw * dx).sum() / s0
        muy = (iw * dy).sum() / s0
        ddx = dx - mux
        ddy = dy - muy
        wxx = (iw * ddx * ddx).sum() / s0
        wyy = (iw * ddy * ddy).sum() / s0
        wxy = (iw * ddx * ddy).sum() / s0
        wdet = wxx * wyy - wxy * wxy
        if not wdet > 0:
            break
        # m^{-1} - M^{-1}
        ixx_ = wyy / wdet - myy / det
        iyy_ = wxx / wdet - mxx / det
        ixy_ = -wxy / wdet + mxy / det
        pdet = ixx_ * iyy_ - ixy_ * ixy_
        if pdet > 0 and ixx_ > 0:
            nxx, nyy, nxy = iyy_ / pdet, ixx_ / pdet, -ixy_ / pdet
            # centre step Sigma_est m^{-1} mu
            ux = (wyy * mux - wxy * muy) / wdet
            uy = (-wxy * mux + wxx * muy) / wdet
            stx = nxx * ux + nxy * uy
            sty = nxy * ux + nyy * uy
        else:
            nxx, nyy, nxy = 2.0 * wxx, 2.0 * wyy, 2.0 * wxy
            stx, sty = 2.0 * mux, 2.0 * muy
        change = max(abs(nxx - mxx), abs(nyy - myy), abs(nxy - mxy)) / (mxx + myy)
        cx += stx
        cy += sty
        mxx, myy, mxy = nxx, nyy, nxy
        if not (-0.5 <= cx <= nx - 0.5 and -0.5 <= cy <= ny - 0.5):
            break
        if change < tol and max(abs(stx), abs(sty)) < tol:
            success = bool(mxx * myy - mxy * mxy > 0)
            break
    return float(mxx), float(myy), float(mxy), float(cx), float(cy), success
