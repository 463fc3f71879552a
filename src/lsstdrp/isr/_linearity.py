"""Linearity correction: invert an amplifier's forward non-linearity."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core import InvalidInputError, Linearity, MaskPlane, as_image, normalize_mask
from ._common import check_finite_scalar, check_int

__all__ = ["LinearityResult", "correct_linearity"]


@dataclasses.dataclass(frozen=True, eq=False)
class LinearityResult:
    """Result of :func:`correct_linearity`.

    Attributes
    ----------
    image : numpy.ndarray
        The linearized image (input float dtype, input units).
    mask : numpy.ndarray of uint32
        The input mask plus ``SUSPECT`` where the measured value exceeds the model's
        ``turnoff`` (the value is still corrected with the extrapolated model).
    n_suspect : int
        Pixels newly flagged ``SUSPECT``.
    n_iter : int
        Fixed-point iterations used.
    max_residual : float
        Largest :math:`|f(\\hat x) - m|` at the end, in ADU (the inversion accuracy).
    """

    image: np.ndarray
    mask: np.ndarray
    n_suspect: int
    n_iter: int
    max_residual: float


def _invert(lin: Linearity, measured: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, int, float]:
    """Solve ``lin.evaluate(x) = measured`` by the contraction ``x <- m - offset(x)``."""
    if lin.kind == "lookup":
        # piecewise linear: invert exactly through the node values when monotone
        nodes = np.arange(lin.table.size, dtype=np.float64)
        f_nodes = nodes + lin.table
        if np.all(np.diff(f_nodes) > 0):
            x = np.interp(measured, f_nodes, nodes)
            lo = measured < f_nodes[0]
            hi = measured > f_nodes[-1]
            x[lo] = measured[lo] - lin.table[0]
            x[hi] = measured[hi] - lin.table[-1]
            res = float(np.max(np.abs(lin.evaluate(x) - measured))) if x.size else 0.0
            return x, 1, res
    with np.errstate(over="ignore", invalid="ignore"):
        x = measured - lin.offset(measured)
        n = 1
        for n in range(2, max_iter + 1):
            new = measured - lin.offset(x)
            step = float(np.max(np.abs(new - x))) if x.size else 0.0
            x = new
            if not np.isfinite(step):
                return x, n, np.inf
            if step <= tol * max(1.0, float(np.max(np.abs(x))) if x.size else 1.0):
                break
        res = float(np.max(np.abs(lin.evaluate(x) - measured))) if x.size else 0.0
    return x, n, res


def correct_linearity(
    image: Any,
    linearity: Linearity,
    *,
    gain: float = 1.0,
    mask: Any = None,
    max_iter: int = 50,
    tol: float = 1e-12,
) -> LinearityResult:
    r"""Invert a forward non-linearity: the linear signal whose measured value is ``image``.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        One amplifier's overscan-subtracted signal, in ADU (``gain=1``) or in e⁻ (pass
        the amp's ``gain`` in e⁻/ADU: the model is in ADU); not modified.
    linearity : Linearity
        The forward model :math:`m = f(x)` (polynomial, spline or lookup table; see
        :class:`lsstdrp.core.Linearity`).
    gain : float
        e⁻/ADU of ``image`` (1 when ``image`` is in ADU).
    mask : array_like of bool or uint32, optional
        Kept and returned with ``SUSPECT`` added beyond the turn-off. Saturated pixels
        are corrected like any other (flag them with :func:`mask_saturation`).
    max_iter : int
        Maximum fixed-point iterations.
    tol : float
        Relative convergence tolerance of the iteration.

    Returns
    -------
    LinearityResult
        ``image`` (input float dtype and units), ``mask``, counts and the inversion
        residual.

    Raises
    ------
    InvalidInputError
        If ``linearity`` is not a :class:`~lsstdrp.core.Linearity`, ``gain`` <= 0, or
        the model is not invertible over the data (the iteration diverges:
        :math:`|f'(x) - 1| \ge 1`, i.e. the response is not monotonic there).

    Notes
    -----
    With :math:`f(x) = x + g(x)` (``linearity.offset`` is :math:`g`), the linear
    signal solves :math:`x = m - g(x)`, iterated from :math:`x_0 = m - g(m)`; the
    error contracts by :math:`|g'|` per step (:math:`\sim 10^{-2}` for real sensors),
    so a few iterations reach rounding. A lookup table (piecewise linear) is inverted
    exactly through its node values when it is monotone.

    References
    ----------
    .. [1] Plazas, A. A. et al. 2017, PASP 129, 084502 (non-linearity of LSST sensors).
    .. [2] Bosch, J. et al. 2018, PASJ 70, S5 (HSC linearizers: polynomial, spline,
       lookup table).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import Linearity
    >>> from lsstdrp.isr import correct_linearity
    >>> lin = Linearity("polynomial", coefficients=[-1e-6])
    >>> measured = lin.evaluate(np.array([[1000.0, 50000.0]]))
    >>> np.round(correct_linearity(measured, lin).image, 6).tolist()
    [[1000.0, 50000.0]]
    """
    if not isinstance(linearity, Linearity):
        raise InvalidInputError(f"`linearity` must be an lsstdrp.core.Linearity; got {type(linearity).__name__}")
    img = as_image(image, "image")
    g = check_finite_scalar(gain, "gain", minimum=0.0, strict=True)
    it = check_int(max_iter, "max_iter", minimum=1)
    t = check_finite_scalar(tol, "tol", minimum=0.0)
    m = normalize_mask(mask, img.shape, image=img, warn=False)
    adu = img.astype(np.float64) / g
    finite = np.isfinite(adu)
    vals = adu[finite]
    x, n, res = _invert(linearity, vals, it, t)
    scale = max(1.0, float(np.max(np.abs(vals)))) if vals.size else 1.0
    if not np.isfinite(res) or res > 1e-6 * scale:
        raise InvalidInputError(
            f"`linearity` ({linearity.kind}) could not be inverted over the data range "
            f"(residual {res:.3g} ADU after {n} iterations): the response is not monotonic there"
        )
    out = adu.copy()
    out[finite] = x
    sus = finite & (adu > linearity.turnoff)
    newly = sus & ((m & np.uint32(MaskPlane.SUSPECT)) == 0)
    m[sus] |= np.uint32(MaskPlane.SUSPECT)
    return LinearityResult(
        image=(out * g).astype(img.dtype, copy=False),
        mask=m,
        n_suspect=int(np.count_nonzero(newly)),
        n_iter=n,
        max_residual=res,
    )
