r"""The sparse least-squares engine shared by the astrometric and photometric fits.

Both fits are Gauss–Newton steps of the same shape: many *star* parameter blocks (a sky
position, or a magnitude; ``k`` each), each touching only its own measurements, and a
few thousand *camera* parameters (visit and detector maps) touched by every star. The
normal matrix

.. math::

    \begin{pmatrix} A & B \\ B^T & H \end{pmatrix}
    \begin{pmatrix} \delta s \\ \delta c \end{pmatrix} =
    -\begin{pmatrix} g_s \\ g_c \end{pmatrix}

has a block-diagonal star part ``A`` (``k x k`` per star), so the stars are eliminated
exactly (Schur complement; the *reduced camera system* of bundle adjustment, Triggs et
al. 2000; the star positions are profiled out as in gbdes, Bernstein et al. 2017):

.. math::

    S = H - B^T A^{-1} B, \qquad S\,\delta c = -(g_c - B^T A^{-1} g_s), \qquad
    \delta s = -A^{-1}(g_s + B\,\delta c).

``S`` is dense (every star couples every visit it is seen in) but only ``n_camera``
square, and :math:`S^{-1}` is the covariance of the camera parameters with the stars
marginalised. With ``L_s L_s^T = A_s`` and :math:`\hat W_s = L_s^{-1} B_s`,
:math:`B^T A^{-1} B = \sum_s \hat W_s^T \hat W_s` is accumulated by BLAS ``dsyrk`` over
chunks of stars, each chunk's :math:`\hat W` filled by a numba kernel from the per-
measurement factors (the full sparse Jacobian is never formed). ``H`` is accumulated
per group of measurements sharing their camera columns (one (visit, detector)) with a
dense ``X^T X``.

Cost per step: :math:`O(n_{\rm meas}\,p)` to fill, :math:`O(k\,n_{\rm stars}\,n_{\rm
camera}^2)` for the Schur products and :math:`O(n_{\rm camera}^3)` for the Cholesky
factorisation; memory :math:`O(n_{\rm camera}^2)` plus one chunk.

A sparse Cholesky library (CHOLMOD) would not help: after the stars are eliminated the
camera system is dense, and before that the star blocks are eliminated in closed form.

References
----------
.. [1] Triggs, B. et al. 2000, Bundle Adjustment -- A Modern Synthesis, LNCS 1883, 298.
.. [2] Bernstein, G. M. et al. 2017, PASP 129, 074503 (gbdes/WCSFit).
"""

from __future__ import annotations

import dataclasses
import numpy as np
import scipy.linalg

from typing import Any

from . import _kernels
from ._inputs import fast_unique

__all__ = ["CameraBlock", "Problem", "Step", "Factor", "factorize", "solve_step", "jc_dot", "jc_tdot",
           "star_factors", "covariance", "subset_leverage"]

_CHUNK_BYTES = 48 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class CameraBlock:
    """One family of camera parameters (e.g. all visit maps) and its Jacobian factors.

    ``Jc[i, row, cols[owner[i], c, t]] = coef[i, row, c] * basis[i, t]``; a column
    index equal to ``n_camera`` means "fixed" (the column is dropped).
    """

    owner: np.ndarray  # (n,) int64
    cols: np.ndarray   # (n_owner, nc, nt) int64
    coef: np.ndarray   # (n, r, nc) float64, whitened
    basis: np.ndarray  # (n, nt) float64


@dataclasses.dataclass(frozen=True)
class Problem:
    """A linearised least-squares problem (whitened): residual ``e + Jc dc + Js ds``."""

    n_camera: int
    blocks: tuple[CameraBlock, ...]
    star: np.ndarray        # (n,) int64 star index of each measurement
    n_stars: int
    js: np.ndarray          # (n, r, k)
    e: np.ndarray           # (n, r)
    prior_j: np.ndarray | None = None  # (n_stars, kp, k) whitened prior rows
    prior_e: np.ndarray | None = None  # (n_stars, kp)
    camera_prior: np.ndarray | None = None  # (n_camera,) extra diagonal (inverse variance)
    group: np.ndarray | None = None  # (n,) int: measurements with equal values share all camera columns


@dataclasses.dataclass(frozen=True, eq=False)
class Factor:
    """A Cholesky factorisation of a reduced camera matrix ``S`` (Jacobi-scaled)."""

    s: np.ndarray
    d: np.ndarray
    cho: Any
    ok: bool

    def solve(self, b: np.ndarray) -> np.ndarray:
        """``S^-1 b`` (minimum-norm least squares when ``S`` was not positive definite)."""
        if self.s.shape[0] == 0:
            return np.zeros(0)
        if self.ok:
            return scipy.linalg.cho_solve(self.cho, b / self.d, check_finite=False) / self.d
        x, *_ = np.linalg.lstsq(self.s / self.d[:, None] / self.d[None, :], b / self.d, rcond=1e-12)
        return x / self.d


def factorize(s: np.ndarray) -> Factor:
    """Jacobi-scaled Cholesky factorisation of a symmetric positive definite matrix."""
    n = s.shape[0]
    if n == 0:
        return Factor(s, np.ones(0), None, True)
    d = np.sqrt(np.clip(np.diag(s), 1e-300, None))
    sn = s / d[:, None] / d[None, :]
    try:
        c = scipy.linalg.cho_factor(sn, lower=True, check_finite=False)
        ok = bool(np.all(np.isfinite(c[0])))
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        c, ok = None, False
    return Factor(s, d, c, ok)


@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """The Gauss–Newton step and what is needed for covariances."""

    dc: np.ndarray        # (n_camera,)
    ds: np.ndarray        # (n_stars, k)
    factor: Factor        # of the reduced camera matrix S (built now or reused)
    star_a: np.ndarray    # A_s, (n_stars, k, k)
    chi2: float           # sum of squared whitened residuals at the linearisation point
    pivot_ok: bool        # False when S was not positive definite
    built: bool           # S was built in this step (else: the passed factor preconditioned CG)
    cg_iterations: int

    @property
    def reduced(self) -> np.ndarray:
        """The reduced camera matrix ``S`` (of the step that built it)."""
        return self.factor.s


def jc_dot(blocks: tuple[CameraBlock, ...], x: np.ndarray, n: int, r: int) -> np.ndarray:
    """``Jc @ x`` for all measurements, (n, r)."""
    out = np.zeros((n, r))
    xe = np.append(np.asarray(x, dtype=np.float64), 0.0)  # the "fixed" column is 0
    for b in blocks:
        _kernels.jc_dot(xe, b.coef, b.basis, b.owner, b.cols, out)
    return out


def jc_tdot(blocks: tuple[CameraBlock, ...], y: np.ndarray, n_camera: int) -> np.ndarray:
    """``Jc^T y`` for residual-space vectors ``y`` (n, r), (n_camera,)."""
    out = np.zeros(n_camera + 1)
    y = np.ascontiguousarray(y)
    for b in blocks:
        _kernels.jc_tdot(y, b.coef, b.basis, b.owner, b.cols, out)
    return out[:-1]


def star_factors(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """Per-star normal matrices ``A_s`` and gradients ``g_s`` (priors included)."""
    a, g = _kernels.star_normal(prob.star, prob.js, prob.e, prob.n_stars)
    if prob.prior_j is not None:
        a = a + np.einsum("spa,spb->sab", prob.prior_j, prob.prior_j)
        g = g + np.einsum("spa,sp->sa", prob.prior_j, prob.prior_e)
    return a, g


def _camera_normal(prob: Problem) -> tuple[np.ndarray, np.ndarray]:
    """``H = Jc^T Jc`` and ``g_c = Jc^T e``, accumulated per group of measurements sharing
    their camera columns (one (visit, detector)) in small dense blocks, then scattered."""
    m = prob.n_camera + 1
    h = np.zeros((m, m))
    g = np.zeros(m)
    n = prob.e.shape[0]
    if n == 0:
        return h[:-1, :-1], g[:-1]
    if prob.group is not None and prob.group.min() >= 0 and prob.group.max() < 4 * n + 16:
        group = prob.group.astype(np.int64)
        gid, first = fast_unique(group, return_index=True)
        dense = np.full(int(group.max()) + 1, -1, np.int64)
        dense[gid] = np.arange(gid.size)
        group = dense[group]
    else:
        owners = np.stack([b.owner for b in prob.blocks], axis=1)
        _, first, group = np.unique(owners, axis=0, return_index=True, return_inverse=True)
        group = np.ravel(group).astype(np.int64)
    n_groups = first.size
    sizes = [b.coef.shape[2] * b.basis.shape[1] for b in prob.blocks]
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    mm = int(offs[-1])
    hloc = np.zeros((n_groups, mm, mm))
    gloc = np.zeros((n_groups, mm))
    e = np.ascontiguousarray(prob.e)
    for i1, b1 in enumerate(prob.blocks):
        c1, s1 = np.ascontiguousarray(b1.coef), np.ascontiguousarray(b1.basis)
        _kernels.group_grad(gloc, group, c1, s1, offs[i1], e)
        for i2 in range(i1, len(prob.blocks)):
            b2 = prob.blocks[i2]
            _kernels.group_cross(hloc, group, c1, s1, offs[i1], np.ascontiguousarray(b2.coef),
                                 np.ascontiguousarray(b2.basis), offs[i2])
    # symmetrise the local blocks (only the upper block triangle was filled)
    for i1 in range(len(prob.blocks)):
        for i2 in range(i1 + 1, len(prob.blocks)):
            hloc[:, offs[i2]:offs[i2 + 1], offs[i1]:offs[i1 + 1]] = np.swapaxes(
                hloc[:, offs[i1]:offs[i1 + 1], offs[i2]:offs[i2 + 1]], 1, 2)
    for gi in range(n_groups):
        cols = np.concatenate([b.cols[b.owner[first[gi]]].ravel() for b in prob.blocks])
        h[np.ix_(cols, cols)] += hloc[gi]
        np.add.at(g, cols, gloc[gi])
    return h[:-1, :-1], g[:-1]


def _schur(prob: Problem, lo_inv: np.ndarray, what: np.ndarray | None, with_prior: bool = False
           ) -> tuple[np.ndarray, np.ndarray]:
    """``sum_s W_s^T W_s`` (and ``sum_s W_s^T what_s``), ``W_s = L_s^-1 B_s``; chunks of stars.

    With ``with_prior``, also adds ``sum_s V_s^T V_s``, ``V_s = J_p,s L_s^-T W_s`` (the
    prior's share, needed for leverages).
    """
    k = prob.js.shape[2]
    nc = prob.n_camera
    if prob.star.size and np.all(prob.star[1:] >= prob.star[:-1]):
        order = np.arange(prob.star.size)
    else:
        order = np.argsort(prob.star, kind="stable")
    star_sorted = prob.star[order]
    counts = np.bincount(prob.star, minlength=prob.n_stars)
    first = np.concatenate([[0], np.cumsum(counts)])
    rows_per_chunk = max(k, int(_CHUNK_BYTES // (8 * (nc + 1))) // k * k)
    stars_per_chunk = max(1, rows_per_chunk // k)
    acc = np.zeros((nc + 1, nc + 1), order="F")
    rhs_corr = np.zeros(nc + 1)
    dsyrk = scipy.linalg.blas.get_blas_funcs("syrk", (acc,))
    for s0 in range(0, prob.n_stars, stars_per_chunk):
        s1 = min(prob.n_stars, s0 + stars_per_chunk)
        idx = order[first[s0]:first[s1]]
        if idx.size == 0:
            continue
        st = star_sorted[first[s0]:first[s1]]
        t = np.einsum("iab,irb->iar", lo_inv[st], prob.js[idx])  # L_s^-1 Js_i^T
        w = np.zeros(((s1 - s0) * k, nc + 1))
        rowbase = ((st - s0) * k).astype(np.int64)
        for b in prob.blocks:
            y = np.einsum("iar,irc->iac", t, b.coef[idx])
            _kernels.fill_schur(w, rowbase, np.ascontiguousarray(y), np.ascontiguousarray(b.basis[idx]),
                                np.ascontiguousarray(b.owner[idx]), b.cols)
        # acc += W^T W ; W is C-ordered (rows, cols) so W.T is F-ordered (cols, rows)
        acc = dsyrk(1.0, w.T, beta=1.0, c=acc, trans=0, lower=0, overwrite_c=True)
        if what is not None:
            rhs_corr += w.T @ what[s0:s1].reshape(-1)
        if with_prior and prob.prior_j is not None:
            m = np.einsum("spk,sjk->spj", prob.prior_j[s0:s1], lo_inv[s0:s1])  # J_p L^-T
            v = np.einsum("spj,sjc->spc", m, w.reshape(s1 - s0, k, nc + 1)).reshape(-1, nc + 1)
            acc = dsyrk(1.0, v.T, beta=1.0, c=acc, trans=0, lower=0, overwrite_c=True)
    acc = np.triu(acc) + np.triu(acc, 1).T
    return acc[:-1, :-1], rhs_corr[:-1]


def _star_cholesky(a: np.ndarray) -> np.ndarray:
    k = a.shape[1]
    eye = np.eye(k)
    try:
        lo = np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        lo = np.linalg.cholesky(a + 1e-12 * np.trace(a, axis1=1, axis2=2)[:, None, None] * eye)
    return np.linalg.inv(lo)


def solve_step(prob: Problem, *, factor: Factor | None = None, cg_tol: float = 1e-10,
               cg_maxiter: int = 20) -> Step:
    """One Gauss–Newton step of a linearised problem (see the module notes).

    Parameters
    ----------
    prob : Problem
        Whitened residuals and Jacobian factors at the linearisation point.
    factor : Factor, optional
        Factorisation of the reduced matrix of an earlier, nearly identical problem
        (previous iteration). The reduced system is then solved exactly by conjugate
        gradients with that factor as preconditioner (a few passes over the
        measurements instead of rebuilding ``S``); without it, or when CG does not
        converge, ``S`` is built and factorised.
    cg_tol : float
        Relative residual norm at which CG stops.
    cg_maxiter : int
        CG iterations before falling back to building ``S``.

    Returns
    -------
    Step
    """
    n, r = prob.e.shape
    k = prob.js.shape[2]
    nc = prob.n_camera
    a, gs = star_factors(prob)
    bad = ~np.all(np.isfinite(a.reshape(len(a), -1)), axis=1)
    if np.any(bad):  # callers drop such stars; guard anyway
        a[bad] = np.eye(k)
        gs[bad] = 0.0
    lo_inv = _star_cholesky(a)  # (n_stars, k, k), lower triangular
    ainv = np.einsum("sba,sbc->sac", lo_inv, lo_inv)  # A^-1 = L^-T L^-1
    chi2 = float(np.sum(prob.e**2))
    if prob.prior_e is not None:
        chi2 += float(np.sum(prob.prior_e**2))
    built = factor is None or factor.s.shape[0] != nc
    dc = None
    n_it = 0
    if not built and nc:
        # rhs = Jc^T (e - Js A^-1 g_s);  S x = Jc^T (Jc x - Js A^-1 Js^T Jc x) (+ camera prior)
        z = np.einsum("sab,sb->sa", ainv, gs)
        tmp = np.empty((n, r))
        _kernels.js_dot(prob.star, prob.js, z, tmp)
        rhs = jc_tdot(prob.blocks, prob.e - tmp, nc)

        def matvec(x: np.ndarray) -> np.ndarray:
            y = jc_dot(prob.blocks, x, n, r)
            zz = np.empty((prob.n_stars, k))
            _kernels.star_apply(prob.star, prob.js, y, ainv, zz)
            yy = np.empty((n, r))
            _kernels.js_dot(prob.star, prob.js, zz, yy)
            out = jc_tdot(prob.blocks, y - yy, nc)
            if prob.camera_prior is not None:
                out += prob.camera_prior * x
            return out

        b_vec = -rhs
        x = factor.solve(b_vec)
        res = b_vec - matvec(x)
        bnorm = float(np.linalg.norm(b_vec)) or 1.0
        zv = factor.solve(res)
        pv = zv.copy()
        rz = float(res @ zv)
        for n_it in range(1, cg_maxiter + 1):
            if float(np.linalg.norm(res)) <= cg_tol * bnorm:
                break
            ap = matvec(pv)
            alpha = rz / float(pv @ ap)
            x = x + alpha * pv
            res = res - alpha * ap
            zv = factor.solve(res)
            rz_new = float(res @ zv)
            pv = zv + (rz_new / rz) * pv
            rz = rz_new
        if float(np.linalg.norm(res)) <= max(cg_tol, 1e-8) * bnorm:
            dc = x
        else:
            built = True
    if built or dc is None:
        h, gc = _camera_normal(prob)
        if prob.camera_prior is not None:
            h[np.diag_indices(nc)] += prob.camera_prior
        what = np.einsum("sab,sb->sa", lo_inv, gs)  # L^-1 g_s
        schur, rhs_corr = _schur(prob, lo_inv, what)
        factor = factorize(h - schur)
        dc = factor.solve(-(gc - rhs_corr))
        built = True
    # back-substitution for the stars: ds = -A^-1 (g_s + B dc)
    jdc = jc_dot(prob.blocks, dc, n, r) if nc else np.zeros((n, r))
    bdc = np.zeros((prob.n_stars, k))
    _kernels.star_apply(prob.star, prob.js, jdc, np.broadcast_to(np.eye(k), (prob.n_stars, k, k)).copy(), bdc)
    ds = -np.einsum("sab,sb->sa", ainv, gs + bdc)
    return Step(dc=dc, ds=ds, factor=factor, star_a=a, chi2=chi2, pivot_ok=factor.ok, built=built,
                cg_iterations=n_it)


def subset_leverage(prob: Problem, cov: np.ndarray, stars: np.ndarray, *, max_stars: int | None = None) -> float:
    r"""Sum of the hat-matrix diagonal over the measurements of a subset of stars.

    The expected chi² of those measurements at the solution is their number of
    residual rows minus this value (for a linear model with correct errors).

    Parameters
    ----------
    prob : Problem
        The problem at the solution.
    cov : numpy.ndarray
        Inverse of its reduced camera matrix.
    stars : numpy.ndarray of bool
        Subset (local star indices of ``prob``).
    max_stars : int, optional
        Estimate the sum on an evenly spaced sample of at most this many stars of the
        subset, scaled up.

    Returns
    -------
    float

    Notes
    -----
    With the hat matrix :math:`H = J (J^T J)^{-1} J^T` partitioned into star and
    camera blocks, the star part contributes :math:`k - \mathrm{tr}(A_s^{-1} P_s)` per
    star (``P_s`` its prior information) and the camera part
    :math:`\mathrm{tr}(S^{-1} M)` with
    :math:`M = \sum_{i} 	ilde J_i^T 	ilde J_i = \sum_s H_s - B_s^T A_s^{-1} B_s -
    B_s^T A_s^{-1} P_s A_s^{-1} B_s`, :math:`	ilde J_i = J_{c,i} - J_{s,i} A_s^{-1} B_s`.
    """
    scale = 1.0
    stars = np.asarray(stars, bool)
    n_sub = int(stars.sum())
    if max_stars is not None and n_sub > max_stars:
        keep = np.nonzero(stars)[0][np.linspace(0, n_sub - 1, max_stars).astype(np.int64)]
        stars = np.zeros_like(stars)
        stars[keep] = True
        scale = n_sub / float(max_stars)
    sel = np.nonzero(stars[prob.star])[0]
    if sel.size == 0:
        return 0.0
    uniq, sloc = fast_unique(prob.star[sel], return_inverse=True)
    sub = Problem(n_camera=prob.n_camera,
                  blocks=tuple(CameraBlock(b.owner[sel], b.cols, b.coef[sel], b.basis[sel]) for b in prob.blocks),
                  star=np.ravel(sloc).astype(np.int64), n_stars=len(uniq), js=prob.js[sel], e=prob.e[sel],
                  prior_j=None if prob.prior_j is None else prob.prior_j[uniq],
                  prior_e=None if prob.prior_e is None else prob.prior_e[uniq],
                  group=None if prob.group is None else prob.group[sel])
    a, _ = star_factors(sub)
    lo_inv = _star_cholesky(a)
    h, _ = _camera_normal(sub)
    schur, _ = _schur(sub, lo_inv, None, with_prior=True)
    m = h - schur
    k = prob.js.shape[2]
    star_part = float(len(uniq) * k)
    if sub.prior_j is not None:
        p = np.einsum("spa,spb->sab", sub.prior_j, sub.prior_j)
        star_part -= float(np.einsum("sab,sba->", np.linalg.inv(a), p))
    return scale * (star_part + float(np.sum(cov * m)))


def covariance(factor: Factor) -> np.ndarray:
    """Inverse of a factorised reduced camera matrix (pseudo-inverse if singular)."""
    n = factor.s.shape[0]
    if n == 0:
        return np.zeros((0, 0))
    d = factor.d
    if factor.ok:
        inv = scipy.linalg.cho_solve(factor.cho, np.eye(n), check_finite=False)
    else:
        inv = np.linalg.pinv(factor.s / d[:, None] / d[None, :], rcond=1e-12, hermitian=True)
    return inv / d[:, None] / d[None, :]
