"""The brighter-fatter kernel solved from the PTC covariances."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ...core import InvalidInputError
from .._common import check_int
from ._ptc import PtcResult

__all__ = ["BfKernelResult", "solve_bf_kernel"]


@dataclasses.dataclass(frozen=True, eq=False)
class BfKernelResult:
    """A brighter-fatter kernel and what it does not represent.

    Attributes
    ----------
    kernel : numpy.ndarray or None, shape (2R+1, 2R+1)
        :math:`K` in 1/e⁻ for :func:`lsstdrp.isr.correct_brighter_fatter` /
        ``Calibs.bf_kernel``; None when the solve failed.
    a : numpy.ndarray, shape (2L+1, 2L+1)
        The measured :math:`a_{ij}` (1/e⁻, Astier convention), amp-averaged, mirrored
        to the full plane.
    a_error : numpy.ndarray, shape (2L+1, 2L+1)
    a_model : numpy.ndarray, shape (2R+3, 2R+3)
        :math:`-\\nabla^2 K` (zero outside the kernel): the :math:`a_{ij}` the kernel
        implies.
    chi2, dof : float, int
        Of ``a - a_model`` over the measured lags (in units of ``a_error``): the part of
        the measured covariances the scalar-kernel model cannot represent.
    residual_fraction : float
        :math:`\\|a - a_{model}\\| / \\|a\\|` over the measured lags.
    sum_a, sum_a_error : float
        :math:`\\sum_{ij} a_{ij}` over the measured plane. A kernel of finite support
        implies 0 (charge and pixel area are conserved); a significant non-zero sum is
        area change at larger distances or an unmodelled effect.
    unrepresented : dict
        Plain-language summary: ``chi2_per_dof``, ``residual_fraction``,
        ``sum_a_significance``, ``x_y_asymmetry`` (relative difference of
        :math:`a_{01}` and :math:`a_{10}`: a scalar kernel represents it, but only as a
        potential, not separate boundary shifts per side), and ``b_terms`` (the
        :math:`b_{ij}` of Astier et al. 2019, not modelled).
    success : bool
    reason : str
    """

    kernel: np.ndarray | None
    a: np.ndarray
    a_error: np.ndarray
    a_model: np.ndarray
    chi2: float
    dof: int
    residual_fraction: float
    sum_a: float
    sum_a_error: float
    unrepresented: dict
    success: bool
    reason: str

    def plot(self, ax: Any = None) -> Any:
        """Kernel image, measured vs implied :math:`a_{ij}` and their radial profiles.

        Parameters
        ----------
        ax : sequence of three matplotlib Axes, optional

        Returns
        -------
        matplotlib.figure.Figure
        """
        import matplotlib.pyplot as plt

        if ax is None:
            fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
        else:
            axes = np.atleast_1d(ax)
            fig = axes[0].figure
        if self.kernel is not None:
            R = self.kernel.shape[0] // 2
            im = axes[0].imshow(self.kernel, origin="lower", extent=(-R - 0.5, R + 0.5, -R - 0.5, R + 0.5), cmap="viridis")
            fig.colorbar(im, ax=axes[0], label="K [1/e-]")
        axes[0].set_title("brighter-fatter kernel K")
        L = self.a.shape[0] // 2
        c = self.a_model.shape[0] // 2
        am = np.zeros_like(self.a)
        r = min(L, c)
        am[L - r:L + r + 1, L - r:L + r + 1] = self.a_model[c - r:c + r + 1, c - r:c + r + 1]
        both = np.concatenate([self.a, am], axis=1)
        lim = np.max(np.abs(self.a[np.arange(self.a.shape[0]) != L][:, np.arange(self.a.shape[1]) != L])) or 1.0
        im = axes[1].imshow(both, origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        fig.colorbar(im, ax=axes[1], label="a [1/e-]")
        axes[1].set_title("a: measured | kernel model")
        yy, xx = np.mgrid[-L:L + 1, -L:L + 1]
        rr = np.hypot(yy, xx).ravel()
        ok = rr > 0
        axes[2].errorbar(rr[ok], self.a.ravel()[ok], self.a_error.ravel()[ok], fmt="o", ms=3, label="measured")
        axes[2].plot(rr[ok], am.ravel()[ok], "x", label="kernel model")
        axes[2].set_yscale("symlog", linthresh=1e-9)
        axes[2].set_xlabel("lag [px]")
        axes[2].set_ylabel("a [1/e-]")
        axes[2].set_title(f"chi2/dof = {self.chi2 / max(self.dof, 1):.2f}")
        axes[2].legend()
        return fig


def _mirror(q: np.ndarray) -> np.ndarray:
    L = q.shape[0] - 1
    full = np.zeros((2 * L + 1, 2 * L + 1))
    for sy in (1, -1):
        for sx in (1, -1):
            full[L + sy * np.arange(L + 1)[:, None], L + sx * np.arange(L + 1)[None, :]] = q
    return full


def _laplacian_matrix(R: int) -> np.ndarray:
    """Matrix of the 5-point Laplacian of a (2R+1)^2 kernel, zero padded to (2R+3)^2."""
    n = 2 * R + 1
    m = n + 2
    A = np.zeros((m * m, n * n))
    for ky in range(n):
        for kx in range(n):
            col = ky * n + kx
            y, x = ky + 1, kx + 1
            A[y * m + x, col] += -4.0
            for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                A[(y + dy) * m + (x + dx), col] += 1.0
    return A


def solve_bf_kernel(
    ptc: PtcResult | Any,
    *,
    a_error: Any = None,
    kernel_radius: int | None = None,
    amps: Any = None,
) -> BfKernelResult:
    """Solve :math:`\\nabla^2 K = -a` for the brighter-fatter kernel (Coulton et al. 2018).

    With the charge redistribution of :func:`lsstdrp.isr.correct_brighter_fatter`,
    :math:`Q_{obs} = Q - \\tfrac12\\nabla\\cdot[Q\\nabla(K\\otimes Q)]`, a flat of mean
    :math:`\\mu` gets covariances :math:`C_{ij} \\simeq -(\\nabla^2 K)_{ij}\\,\\mu^2`, so
    the Astier :math:`a_{ij}` of :func:`measure_ptc` is :math:`-\\nabla^2 K`. The kernel
    (support radius ``R``, zero outside) is the weighted least-squares solution of
    :math:`-\\nabla^2 K = a` over the measured lags, with :math:`a = 0 \\pm \\sigma_L`
    (the error at the largest lag) on the ring just outside them; the residual is what
    a scalar kernel cannot represent.

    Parameters
    ----------
    ptc : PtcResult or array_like
        A :func:`measure_ptc` result (its successful amps are averaged, weighted by
        their errors), or an :math:`a_{ij}` quadrant ``a[dy, dx]`` (1/e⁻).
    a_error : array_like, optional
        Errors of a quadrant given directly (default: uniform).
    kernel_radius : int, optional
        ``R`` (default: the largest lag L of the PTC).
    amps : sequence of int or str, optional
        Amps of ``ptc`` to average (default: all successful).

    Returns
    -------
    BfKernelResult

    Raises
    ------
    InvalidInputError
        A non-square quadrant, no successful amp, a radius < 1.

    References
    ----------
    .. [1] Coulton, W. R. et al. 2018, AJ 155, 258.
    .. [2] Astier, P. et al. 2019, A&A 629, A36.
    .. [3] Broughton, A. et al. 2024, PASP 136, 045003 (the Rubin kernel solve).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros((5, 5)); a[0, 0] = -4e-6; a[0, 1] = a[1, 0] = 6e-7; a[1, 1] = 2e-7
    >>> a[0, 2] = a[2, 0] = 1e-7; a[1, 2] = a[2, 1] = 5e-8; a[2, 2] = 5e-8; a[0, 3] = a[3, 0] = 5e-8
    >>> r = solve_bf_kernel(a, kernel_radius=4)
    >>> r.kernel.shape, r.success, bool(r.residual_fraction < 0.2)
    ((9, 9), True, True)
    """
    if isinstance(ptc, PtcResult):
        idx = list(range(len(ptc.amp_names))) if amps is None else [
            ptc.amp_names.index(a) if isinstance(a, str) else int(a) for a in amps]
        idx = [k for k in idx if ptc.success[k]]
        if not idx:
            raise InvalidInputError("`ptc` has no successful amplifier to solve a kernel from")
        w = 1.0 / np.asarray(ptc.a_error[idx]) ** 2
        q = np.sum(w * ptc.a[idx], axis=0) / np.sum(w, axis=0)
        qe = 1.0 / np.sqrt(np.sum(w, axis=0))
    else:
        q = np.asarray(ptc, dtype=np.float64)
        if q.ndim != 2 or q.shape[0] != q.shape[1] or q.shape[0] < 2 or not np.isfinite(q).all():
            raise InvalidInputError(f"`ptc` must be a PtcResult or a finite square a_ij quadrant; got shape {q.shape}")
        qe = np.ones_like(q) * (np.max(np.abs(q)) * 1e-3 or 1.0) if a_error is None else np.asarray(a_error, float)
        if qe.shape != q.shape or np.any(qe <= 0):
            raise InvalidInputError(f"`a_error` must be positive with the shape of the quadrant {q.shape}")
    L = q.shape[0] - 1
    R = L if kernel_radius is None else check_int(kernel_radius, "kernel_radius", minimum=1)
    A = _mirror(q)
    E = _mirror(qe)
    n = 2 * R + 1
    m = n + 2
    c = m // 2
    target = np.zeros((m, m))
    err = np.full((m, m), np.nan)
    r = min(L, c)
    target[c - r:c + r + 1, c - r:c + r + 1] = A[L - r:L + r + 1, L - r:L + r + 1]
    err[c - r:c + r + 1, c - r:c + r + 1] = E[L - r:L + r + 1, L - r:L + r + 1]
    edge_err = float(np.median(qe[L, :])) if L > 0 else float(qe.max())
    err[np.isnan(err)] = edge_err
    M = _laplacian_matrix(R)
    wv = 1.0 / err.ravel()
    sol, *_ = np.linalg.lstsq(-M * wv[:, None], target.ravel() * wv, rcond=None)
    K = sol.reshape(n, n)
    K = 0.5 * (K + K[::-1, ::-1])
    a_model = (-M @ K.ravel()).reshape(m, m)
    # compare over the measured lags
    am = np.zeros_like(A)
    am[L - r:L + r + 1, L - r:L + r + 1] = a_model[c - r:c + r + 1, c - r:c + r + 1]
    res = A - am
    # the quadrant holds the independent values: count each once
    qres = res[L:, L:]
    chi2 = float(np.sum((qres / qe) ** 2))
    # independent values: the measured quadrant and the ring beyond it, minus the kernel's
    dof = max(int(q.size + (L + 2) * (R >= L) - (R + 1) ** 2), 0)
    frac = float(np.linalg.norm(res) / np.linalg.norm(A)) if np.any(A) else 0.0
    sum_a = float(A.sum())
    sum_err = float(np.sqrt(np.sum(E**2)))
    ux = {
        "chi2_per_dof": chi2 / dof if dof > 0 else math.nan,
        "chi2": chi2,
        "residual_fraction": frac,
        "sum_a_significance": sum_a / sum_err if sum_err > 0 else math.nan,
        "x_y_asymmetry": float((q[0, 1] - q[1, 0]) / (0.5 * (q[0, 1] + q[1, 0]))) if L >= 1 and q[0, 1] + q[1, 0] else math.nan,
        "b_terms": "not modelled: the b_ij of Astier et al. (2019), the dependence of the boundary shifts on where "
                   "the charge sits, have no counterpart in a scalar kernel",
    }
    ok = bool(np.all(np.isfinite(K)))
    return BfKernelResult(
        kernel=K if ok else None, a=A, a_error=E, a_model=a_model, chi2=chi2, dof=dof, residual_fraction=frac,
        sum_a=sum_a, sum_a_error=sum_err, unrepresented=ux, success=ok, reason="" if ok else "non-finite solution",
    )
