"""The least-squares engine of jointcal: kernels against plain-numpy twins, the Schur
complement solve against dense least squares, CG reuse, leverages against the hat matrix."""

from __future__ import annotations

import numpy as np
import pytest

from lsstdrp.jointcal import _kernels, _solver
from lsstdrp.jointcal._geometry import ARCSEC, local_basis, project, unit_vectors
from lsstdrp.jointcal._poly import exponents, n_terms, vander, vander_grad


def _random_problem(rng, *, n=400, n_stars=60, k=2, r=2, nv=4, nd=3, ntv=3, ntd=3, fixed_visit=True, prior=True):
    """A random linear problem in the engine's factorised form, plus its dense Jacobian."""
    star = np.sort(rng.integers(0, n_stars, n))
    star[:n_stars] = np.arange(n_stars)  # every star observed
    star = np.sort(star)
    vi = rng.integers(0, nv, n)
    di = rng.integers(0, nd, n)
    pos = 0
    vis_cols = np.empty((nv, r, ntv), np.int64)
    for i in range(nv):
        for c in range(r):
            for t in range(ntv):
                if fixed_visit and i == 0:
                    vis_cols[i, c, t] = -1
                else:
                    vis_cols[i, c, t] = pos
                    pos += 1
    det_cols = np.empty((nd, r, ntd), np.int64)
    for i in range(nd):
        for c in range(r):
            for t in range(ntd):
                det_cols[i, c, t] = pos
                pos += 1
    n_cam = pos
    vis_cols[vis_cols < 0] = n_cam
    blocks = (
        _solver.CameraBlock(vi, vis_cols, rng.normal(size=(n, r, r)), rng.normal(size=(n, ntv))),
        _solver.CameraBlock(di, det_cols, rng.normal(size=(n, r, r)), rng.normal(size=(n, ntd))),
    )
    js = rng.normal(size=(n, r, k))
    e = rng.normal(size=(n, r))
    pj = pe = None
    if prior:
        pj = np.zeros((n_stars, k, k))
        pj[: n_stars // 3] = np.eye(k) * 2.0
        pe = rng.normal(size=(n_stars, k)) * (np.arange(n_stars) < n_stars // 3)[:, None]
    prob = _solver.Problem(n_camera=n_cam, blocks=blocks, star=star, n_stars=n_stars, js=js, e=e, prior_j=pj,
                           prior_e=pe, group=vi * nd + di)
    # dense Jacobian [stars | camera], rows: measurements then priors
    rows = n * r + (n_stars * k if prior else 0)
    jac = np.zeros((rows, n_stars * k + n_cam + 1))
    res = np.zeros(rows)
    for i in range(n):
        for row in range(r):
            q = i * r + row
            jac[q, star[i] * k:(star[i] + 1) * k] = js[i, row]
            for b in blocks:
                for c in range(b.coef.shape[2]):
                    for t in range(b.basis.shape[1]):
                        jac[q, n_stars * k + b.cols[b.owner[i], c, t]] += b.coef[i, row, c] * b.basis[i, t]
            res[q] = e[i, row]
    if prior:
        for s in range(n_stars):
            q0 = n * r + s * k
            jac[q0:q0 + k, s * k:(s + 1) * k] = pj[s]
            res[q0:q0 + k] = pe[s]
    return prob, jac[:, :-1], res


def test_solve_step_equals_dense_least_squares():
    rng = np.random.default_rng(1)
    prob, jac, res = _random_problem(rng)
    step = _solver.solve_step(prob)
    x, *_ = np.linalg.lstsq(jac, -res, rcond=None)
    k = prob.js.shape[2]
    np.testing.assert_allclose(step.ds.ravel(), x[: prob.n_stars * k], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(step.dc, x[prob.n_stars * k:], rtol=1e-8, atol=1e-10)
    # the reduced matrix inverse is the camera block of (J^T J)^-1
    cov = _solver.covariance(step.factor)
    full = np.linalg.inv(jac.T @ jac)
    np.testing.assert_allclose(cov, full[prob.n_stars * k:, prob.n_stars * k:], rtol=1e-7, atol=1e-12)
    assert step.built and step.pivot_ok


def test_cg_with_a_previous_factor_gives_the_exact_step():
    rng = np.random.default_rng(2)
    prob, jac, res = _random_problem(rng, n=500, n_stars=70, k=5, r=2)
    first = _solver.solve_step(prob)
    # a slightly different problem (10 measurements dropped): same solution as the direct solve
    keep = np.ones(len(prob.star), bool)
    keep[rng.choice(len(keep), 10, replace=False)] = False
    keep &= np.bincount(prob.star[keep], minlength=prob.n_stars)[prob.star] >= 1
    sub = _solver.Problem(prob.n_camera, tuple(_solver.CameraBlock(b.owner[keep], b.cols, b.coef[keep],
                                                                   b.basis[keep]) for b in prob.blocks),
                          prob.star[keep], prob.n_stars, prob.js[keep], prob.e[keep], prob.prior_j, prob.prior_e,
                          group=prob.group[keep])
    direct = _solver.solve_step(sub)
    reused = _solver.solve_step(sub, factor=first.factor)
    assert not reused.built and reused.cg_iterations > 0
    np.testing.assert_allclose(reused.dc, direct.dc, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(reused.ds, direct.ds, rtol=1e-7, atol=1e-9)


def test_subset_leverage_matches_the_hat_matrix():
    rng = np.random.default_rng(3)
    prob, jac, res = _random_problem(rng)
    step = _solver.solve_step(prob)
    cov = _solver.covariance(step.factor)
    hat = jac @ np.linalg.inv(jac.T @ jac) @ jac.T
    subset = np.zeros(prob.n_stars, bool)
    subset[::3] = True
    r = prob.e.shape[1]
    rows = np.concatenate([np.arange(i * r, (i + 1) * r) for i in np.nonzero(subset[prob.star])[0]])
    expected = float(np.trace(hat[np.ix_(rows, rows)]))
    assert _solver.subset_leverage(prob, cov, subset) == pytest.approx(expected, rel=1e-8)


def test_kernels_match_numpy_twins():
    rng = np.random.default_rng(4)
    prob, jac, res = _random_problem(rng, prior=False)
    n, r = prob.e.shape
    k = prob.js.shape[2]
    a, g = _kernels.star_normal(prob.star, prob.js, prob.e, prob.n_stars)
    a_ref = np.zeros_like(a)
    g_ref = np.zeros_like(g)
    np.add.at(a_ref, prob.star, np.einsum("nra,nrb->nab", prob.js, prob.js))
    np.add.at(g_ref, prob.star, np.einsum("nra,nr->na", prob.js, prob.e))
    np.testing.assert_allclose(a, a_ref)
    np.testing.assert_allclose(g, g_ref)
    x = rng.normal(size=prob.n_camera)
    jc = jac[:, prob.n_stars * k:]
    np.testing.assert_allclose(_solver.jc_dot(prob.blocks, x, n, r).ravel(), jc @ x, atol=1e-12)
    y = rng.normal(size=(n, r))
    np.testing.assert_allclose(_solver.jc_tdot(prob.blocks, y, prob.n_camera), jc.T @ y.ravel(), atol=1e-11)
    h, gc = _solver._camera_normal(prob)
    np.testing.assert_allclose(h, jc.T @ jc, atol=1e-10)
    np.testing.assert_allclose(gc, jc.T @ prob.e.ravel(), atol=1e-10)


def _eval_numpy(x, y, cpix, vi, di, star, dt, pe, det_c, det_s, det_coef, od, fc, fs, vis_coef, ov, tangent,
                p0, es, ns, theta, fixed, floor2):
    """Plain-numpy twin of ``_kernels.eval_astrometry`` (k = 2 or 5)."""
    k = theta.shape[1]
    xn = (x - det_c[di, 0]) / det_s[di, 0]
    yn = (y - det_c[di, 1]) / det_s[di, 1]
    phi, px, py = vander_grad(xn, yn, od)
    px, py = px / det_s[di, 0, None], py / det_s[di, 1, None]
    uv = np.einsum("nct,nt->nc", det_coef[di], phi)
    jd = np.stack([np.einsum("nct,nt->nc", det_coef[di], px), np.einsum("nct,nt->nc", det_coef[di], py)], -1)
    psi, pu, pv = vander_grad((uv[:, 0] - fc[0]) / fs, (uv[:, 1] - fc[1]) / fs, ov)
    tp = np.einsum("nct,nt->nc", vis_coef[vi], psi)
    g = np.stack([np.einsum("nct,nt->nc", vis_coef[vi], pu), np.einsum("nct,nt->nc", vis_coef[vi], pv)], -1) / fs
    jpix = g @ jd
    c = np.stack([np.stack([cpix[:, 0], cpix[:, 2]], -1), np.stack([cpix[:, 2], cpix[:, 1]], -1)], 1)
    cov = jpix @ c @ np.swapaxes(jpix, 1, 2) + floor2 * np.eye(2)
    w = np.linalg.inv(np.linalg.cholesky(cov))
    kmat = np.zeros((len(x), 2, k))
    kmat[:, 0, 0] = kmat[:, 1, 1] = 1.0
    if k == 5:
        kmat[:, 0, 2] = kmat[:, 1, 3] = dt / 1000.0
        kmat[:, 0, 4] = -pe[:, 0] / 1000.0
        kmat[:, 1, 4] = -pe[:, 1] / 1000.0
    off = np.einsum("nak,nk->na", kmat, theta[star])
    if k == 2:
        off = off + np.stack([fixed[star, 0] * dt - fixed[star, 2] * pe[:, 0],
                              fixed[star, 1] * dt - fixed[star, 2] * pe[:, 1]], -1) / 1000.0
    p = p0[star] + off[:, :1] * ARCSEC * es[star] + off[:, 1:] * ARCSEC * ns[star]
    t = tangent[vi]
    xi, eta = project(p, t[:, 0], t[:, 1], t[:, 2])
    h = 1.0  # numerical Jacobian of the projection wrt the offsets (arcsec; the map is nearly linear)
    dmat = np.zeros((len(x), 2, 2))
    for j, b in enumerate((es[star], ns[star])):
        xp, ep = project(p + h * ARCSEC * b, t[:, 0], t[:, 1], t[:, 2])
        xm, em = project(p - h * ARCSEC * b, t[:, 0], t[:, 1], t[:, 2])
        dmat[:, 0, j] = (xp - xm) / (2 * h)
        dmat[:, 1, j] = (ep - em) / (2 * h)
    r = tp - np.stack([xi, eta], -1)
    return dict(phi=phi, psi=psi, uv=uv, tp=tp, r=r, e=np.einsum("nab,nb->na", w, r), w=w,
                wg=w @ g, js=-(w @ dmat @ kmat))


@pytest.mark.parametrize("k", [2, 5])
def test_eval_astrometry_matches_numpy_twin(k):
    rng = np.random.default_rng(5 + k)
    n, nv, nd, ns_ = 300, 3, 2, 40
    od, ov = 3, 2
    ntd, ntv = n_terms(od), n_terms(ov)
    x, y = rng.uniform(0, 500, (2, n))
    cpix = np.stack([rng.uniform(0.01, 0.1, n), rng.uniform(0.01, 0.1, n), rng.uniform(-0.005, 0.005, n)], -1)
    vi, di, star = rng.integers(0, nv, n), rng.integers(0, nd, n), rng.integers(0, ns_, n)
    dt, pe = rng.normal(0, 1, n), rng.normal(0, 1, (n, 2))
    det_c, det_s = np.full((nd, 2), 250.0), np.full((nd, 2), 250.0)
    det_coef = np.zeros((nd, 2, ntd))
    det_coef[:, 0, 1] = det_coef[:, 1, 2] = 50.0  # 0.2"/px over a 250-px half width
    det_coef[:, :, 0] = rng.normal(0, 100, (nd, 2))
    det_coef[:, :, 3:] = rng.normal(0, 0.05, (nd, 2, ntd - 3))
    fs = 200.0
    vis_coef = np.zeros((nv, 2, ntv))
    vis_coef[:, 0, 1] = vis_coef[:, 1, 2] = fs
    vis_coef[:, :, 0] = rng.normal(0, 1, (nv, 2))
    vis_coef[:, :, 3:] = rng.normal(0, 0.01, (nv, 2, ntv - 3))
    tang = np.zeros((nv, 3, 3))
    for v in range(nv):
        tang[v] = np.stack(local_basis(unit_vectors(150.0 + 0.001 * v, 2.0)))
    p0 = unit_vectors(150.0 + rng.normal(0, 0.02, ns_), 2.0 + rng.normal(0, 0.02, ns_))
    _, es, ns = local_basis(p0)
    theta = rng.normal(0, 0.1, (ns_, k))
    fixed = rng.normal(0, 5, (ns_, 3))
    args = (x, y, cpix, vi, di, star, dt, pe, det_c, det_s, det_coef)
    ref = _eval_numpy(*args, od, np.zeros(2), fs, vis_coef, ov, tang, p0, es, ns, theta, fixed, 1e-6)
    out = {name: np.empty_like(ref[name]) for name in ("phi", "psi", "uv", "tp", "r", "e", "w", "wg", "js")}
    _kernels.eval_astrometry(*args, exponents(od), np.zeros(2), fs, vis_coef, exponents(ov), tang, p0, es, ns,
                             theta, fixed, 1e-6, ARCSEC, out["phi"], out["psi"], out["uv"], out["tp"], out["r"],
                             out["e"], out["w"], out["wg"], out["js"])
    for name in ("phi", "psi", "uv", "tp", "r", "e", "w", "wg"):
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-9, atol=1e-9, err_msg=name)
    np.testing.assert_allclose(out["js"], ref["js"], rtol=1e-7, atol=1e-9)  # numerical derivative in the twin


def test_polynomial_bases():
    rng = np.random.default_rng(6)
    u, v = rng.uniform(-1, 1, (2, 50))
    val, du, dv = vander_grad(u, v, 4)
    np.testing.assert_allclose(val, vander(u, v, 4))
    h = 1e-6
    np.testing.assert_allclose(du, (vander(u + h, v, 4) - vander(u - h, v, 4)) / (2 * h), atol=1e-8)
    np.testing.assert_allclose(dv, (vander(u, v + h, 4) - vander(u, v - h, 4)) / (2 * h), atol=1e-8)
    assert n_terms(3) == 10 and exponents(2).tolist() == [[0, 0], [1, 0], [0, 1], [2, 0], [1, 1], [0, 2]]
