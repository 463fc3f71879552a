"""Similarity-invariant triangle matching of a source list to a reference catalog.

Both lists are given as tangent-plane positions (arcsec) about the same point: the
sources through the approximate WCS, the references by gnomonic projection. The true
relation is close to a similarity ``r = a z + b`` (complex numbers; ``z`` the source
position, or its conjugate for a parity flip) whose scale ``|a|`` is known to a few
percent. Triangles formed by each star and pairs of its neighbours within a fixed
radius (so that the same three stars form the same triangle in both lists, whatever
else is missing) are compared by their side lengths, each compatible pair of triangles
proposes a similarity, proposals are binned, and the best bins are verified by counting
how many bright sources land within the match radius of a reference star.
"""

from __future__ import annotations

import dataclasses
import math

import logging

import numpy as np
from scipy.spatial import cKDTree

__all__ = ["SimilarityMatch", "match_similarity", "nearest_matches"]

log = logging.getLogger("lsstdrp.characterize")


@dataclasses.dataclass(frozen=True)
class SimilarityMatch:
    """The transform found by :func:`match_similarity` and its support."""

    a: complex
    b: complex
    flip: bool
    n_matched: int
    n_expected_random: float
    n_candidates: int

    def apply(self, z: np.ndarray) -> np.ndarray:
        """Transform complex positions."""
        return self.a * (np.conj(z) if self.flip else z) + self.b


def _triangles(p: np.ndarray, radius: float, kmax: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triangles (i; j, l) with j, l among the ``kmax`` nearest neighbours of i within ``radius``.

    Returns vertex indices (m, 3) ordered so that |ij| <= |il|, descriptors (m, 3) =
    (|ij|, |il|, |jl|) and the orientation sign of (j - i) x (l - i).
    """
    n = len(p)
    if n < 3:
        return np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros(0)
    tree = cKDTree(p)
    k = min(kmax + 1, n)
    dist, idx = tree.query(p, k=k, distance_upper_bound=radius)
    tris = []
    for a in range(1, k):
        for c in range(a + 1, k):
            ok = np.isfinite(dist[:, c]) & np.isfinite(dist[:, a])
            i = np.nonzero(ok)[0]
            if i.size:
                tris.append(np.stack([i, idx[i, a], idx[i, c]], -1))
    if not tris:
        return np.zeros((0, 3), np.int64), np.zeros((0, 3)), np.zeros(0)
    t = np.concatenate(tris).astype(np.int64)
    pi, pj, pl = p[t[:, 0]], p[t[:, 1]], p[t[:, 2]]
    dij = np.hypot(*(pj - pi).T)
    dil = np.hypot(*(pl - pi).T)
    swap = dij > dil
    t[swap, 1], t[swap, 2] = t[swap, 2].copy(), t[swap, 1].copy()
    dij, dil = np.where(swap, dil, dij), np.where(swap, dij, dil)
    pj, pl = p[t[:, 1]], p[t[:, 2]]
    djl = np.hypot(*(pl - pj).T)
    cross = (pj[:, 0] - pi[:, 0]) * (pl[:, 1] - pi[:, 1]) - (pj[:, 1] - pi[:, 1]) * (pl[:, 0] - pi[:, 0])
    return t, np.stack([dij, dil, djl], -1), np.sign(cross)


def nearest_matches(zs: np.ndarray, zr: np.ndarray, radius: float, tree: cKDTree | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest matches of complex positions ``zs`` to ``zr`` within ``radius``.

    Returns (source index, reference index) arrays; a reference claimed by several
    sources goes to the nearest.
    """
    if len(zs) == 0 or len(zr) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if tree is None:
        tree = cKDTree(np.stack([zr.real, zr.imag], -1))
    d, j = tree.query(np.stack([zs.real, zs.imag], -1), distance_upper_bound=radius)
    ok = np.isfinite(d)
    i = np.nonzero(ok)[0]
    j = j[ok]
    d = d[ok]
    order = np.lexsort((d, j))
    first = np.ones(order.size, bool)
    first[1:] = j[order][1:] != j[order][:-1]
    keep = order[first]
    return i[keep], j[keep]


def _fit_similarity(z: np.ndarray, w: np.ndarray) -> tuple[complex, complex]:
    zm, wm = z.mean(axis=-1, keepdims=True), w.mean(axis=-1, keepdims=True)
    dz, dw = z - zm, w - wm
    a = np.sum(dw * np.conj(dz), axis=-1) / np.maximum(np.sum(np.abs(dz) ** 2, axis=-1), 1e-300)
    b = wm[..., 0] - a * zm[..., 0]
    return a, b


def match_similarity(zs: np.ndarray, zr: np.ndarray, *, area_arcsec2: float, ref_area_arcsec2: float,
                     scale_tol: float, max_rotation_deg: float | None, max_offset_arcsec: float | None,
                     allow_flip: bool, match_radius: float, tolerance_arcsec: float, n_bright: int = 50,
                     min_matches: int = 6, neighbours: int = 6) -> SimilarityMatch | None:
    """Find the similarity mapping sources onto references (see the module docstring).

    ``zs`` and ``zr`` are complex tangent-plane positions (arcsec), each sorted
    brightest first. Returns None when no proposal is supported by ``min_matches`` and
    significantly more matches than chance.
    """
    # search slightly beyond the stated limits: a transform exactly at a limit, estimated
    # from three noisy stars, must not fall outside it
    scale_tol = 1.25 * scale_tol + 0.005
    if max_rotation_deg is not None:
        max_rotation_deg = 1.25 * max_rotation_deg + 0.1
    ns = min(len(zs), n_bright)
    if ns < 3 or len(zr) < 3:
        return None
    s = zs[:ns]
    dens = ns / max(area_arcsec2, 1e-9)
    nr = int(min(len(zr), max(2.0 * dens * ref_area_arcsec2, 3 * ns)))
    r = zr[:nr]
    rho = math.sqrt(neighbours / (math.pi * dens))
    ps = np.stack([s.real, s.imag], -1)
    pr = np.stack([r.real, r.imag], -1)
    ts, ds, ss = _triangles(ps, rho, 2 * neighbours)
    tr, dr, sr = _triangles(pr, rho * (1 + scale_tol) + tolerance_arcsec, 2 * neighbours + 2)
    if len(ts) == 0 or len(tr) == 0:
        return None
    rtree = cKDTree(dr)
    radii = scale_tol * ds[:, 1] + 2.0 * tolerance_arcsec
    hits = rtree.query_ball_point(ds, radii, p=np.inf)
    qi = np.repeat(np.arange(len(ts)), [len(h) for h in hits])
    log.debug("match_similarity: %d source and %d reference triangles, %d candidate pairs", len(ts), len(tr), qi.size)
    if qi.size == 0:
        return None
    qj = np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])
    flip = ss[qi] != sr[qj]
    if not allow_flip:
        keep = ~flip
        qi, qj, flip = qi[keep], qj[keep], flip[keep]
    if qi.size == 0:
        return None
    z3 = s[ts[qi]]
    z3 = np.where(flip[:, None], np.conj(z3), z3)
    w3 = r[tr[qj]]
    a, b = _fit_similarity(z3, w3)
    res = np.max(np.abs(a[:, None] * z3 + b[:, None] - w3), axis=1)
    ok = (np.abs(np.abs(a) - 1.0) <= scale_tol) & (res <= 2.0 * tolerance_arcsec + scale_tol * 0.0)
    if max_rotation_deg is not None:
        ok &= np.abs(np.degrees(np.angle(a))) <= max_rotation_deg
    if max_offset_arcsec is not None:
        ok &= np.abs(b) <= max_offset_arcsec
    a, b, flip = a[ok], b[ok], flip[ok]
    if a.size == 0:
        return None
    # vote in (flip, rotation, offset) bins; verify the most voted bins
    size = max(float(np.max(np.abs(s - s.mean()))), 1.0)
    dth = max(match_radius / size, 1e-4)
    kt = np.round(np.angle(a) / dth).astype(np.int64)
    kx = np.round(b.real / match_radius).astype(np.int64)
    ky = np.round(b.imag / match_radius).astype(np.int64)
    key = (((flip.astype(np.int64) * 4_000_003 + kt - kt.min()) * 4_000_003 + kx - kx.min()) * 4_000_003
           + ky - ky.min())
    _, inv, counts = np.unique(key, return_inverse=True, return_counts=True)
    inv = inv.ravel()
    top = np.argsort(-counts, kind="stable")[:40]
    tree_all = cKDTree(np.stack([zr.real, zr.imag], -1))
    best = None
    for g in top:
        m = np.nonzero(inv == g)[0][0]
        cand = SimilarityMatch(complex(a[m]), complex(b[m]), bool(flip[m]), 0, 0.0, int(a.size))
        i_s, i_r = nearest_matches(cand.apply(s), zr, match_radius * 2.0, tree_all)
        if i_s.size >= 3:  # one refinement of the similarity on the matched stars
            aa, bb = _fit_similarity((np.conj(s[i_s]) if cand.flip else s[i_s])[None], zr[i_r][None])
            cand = dataclasses.replace(cand, a=complex(aa[0]), b=complex(bb[0]))
            i_s, i_r = nearest_matches(cand.apply(s), zr, match_radius, tree_all)
        if best is None or i_s.size > best.n_matched:
            best = dataclasses.replace(cand, n_matched=int(i_s.size))
    if best is None:
        return None
    mu = ns * len(zr) / max(ref_area_arcsec2, 1e-9) * math.pi * match_radius**2
    best = dataclasses.replace(best, n_expected_random=float(mu))
    if best.n_matched < max(min_matches, math.ceil(mu + 5.0 * math.sqrt(mu) + 2.0)):
        return None
    if max_rotation_deg is not None and abs(math.degrees(np.angle(best.a))) > max_rotation_deg:
        return None
    if abs(abs(best.a) - 1.0) > scale_tol:
        return None
    return best
