"""``fit_visit_psf``: one pixel-grid PSF over all detectors of a focal plane."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ..core import as_image, normalize_mask
from ._fit import PsfFitResult, _check_int, _circle_weights, _default_size, _fit_pixel, _gather_stamps, _parse_stars
from ._models import PolynomialBasis, VisitPixelGridPsf, _interp_code

__all__ = ["fit_visit_psf", "affine_transform"]


def affine_transform(func: Any, bounds: Any) -> np.ndarray:
    """The (2, 3) affine matrix of a pixel -> focal-plane mapping, by least squares.

    Parameters
    ----------
    func : callable
        ``func(x, y) -> (X, Y)`` on arrays of detector pixel coordinates.
    bounds : (xmin, xmax, ymin, ymax)
        The detector area, pixels.

    Returns
    -------
    numpy.ndarray, shape (2, 3)
        ``[X, Y] = A[:, :2] @ [x, y] + A[:, 2]``; exact for an affine ``func``.

    Raises
    ------
    InvalidInputError
        Non-finite output of ``func``.

    Examples
    --------
    >>> from lsstdrp.psf import affine_transform
    >>> (affine_transform(lambda x, y: (x + 10.0, 2 * y), (0, 100, 0, 100)).round(6) + 0.0).tolist()
    [[1.0, 0.0, 10.0], [0.0, 2.0, 0.0]]
    """
    xmin, xmax, ymin, ymax = (float(v) for v in bounds)
    gx, gy = np.meshgrid(np.linspace(xmin, xmax, 5), np.linspace(ymin, ymax, 5))
    gx, gy = gx.ravel(), gy.ravel()
    X, Y = (np.asarray(v, dtype=np.float64).ravel() for v in func(gx, gy))
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise InvalidInputError("the detector transform returned non-finite focal-plane coordinates")
    A = np.c_[gx, gy, np.ones_like(gx)]
    cx = np.linalg.lstsq(A, X, rcond=None)[0]
    cy = np.linalg.lstsq(A, Y, rcond=None)[0]
    return np.array([cx, cy])


def fit_visit_psf(
    exposures: Mapping,
    stars: Mapping,
    transforms: Mapping,
    *,
    spatial_order: int = 2,
    detector_order: int = 0,
    detector_prior: float = 10.0,
    colors: Mapping | None = None,
    color_column: str | None = None,
    color_name: str | None = None,
    color_order: int = 1,
    size: int | None = None,
    oversampling: int = 1,
    interpolant: str = "bspline5",
    fit_background: bool = False,
    max_iter: int = 6,
    outlier_nsigma: float = 4.0,
    max_reject_fraction: float = 0.1,
    bad_planes: Any = None,
) -> PsfFitResult:
    r"""Fit one pixel-grid PSF to the stars of all detectors of a visit.

    The grid at pixel :math:`(x, y)` of detector :math:`d` is a smooth polynomial of
    degree ``spatial_order`` in focal-plane coordinates :math:`(X, Y) = T_d(x, y)`,
    shared by all detectors, plus a per-detector polynomial of degree
    ``detector_order`` in detector pixels (chip-to-chip focus and tilt offsets):

    .. math:: C_k = \sum_t a_{tk} B_t(X, Y, c) + \sum_s b_{dsk} D_s(x, y).

    The per-detector coefficients have a ridge prior worth ``detector_prior`` average
    training stars, so a detector with few stars inherits the shared model while a
    well-populated one gets its own offsets; the fit is otherwise the one of
    :func:`fit_psf` (same stamps, constraints, star refits and outlier rejection).

    Parameters
    ----------
    exposures : mapping
        ``detector -> (image, variance)`` or ``(image, variance, mask)``, or an object
        with ``image``, ``variance`` and ``mask`` attributes (e.g. ``core.Exposure``).
    stars : mapping
        ``detector -> table`` of PSF stars (``x, y``; ``psf_candidate`` /
        ``psf_reserved`` honoured as in :func:`fit_psf`).
    transforms : mapping
        ``detector -> (2, 3)`` affine matrix or callable ``(x, y) -> (X, Y)`` from
        detector pixels to focal-plane coordinates (callables are linearised by
        :func:`affine_transform`).
    spatial_order : int
        Degree of the shared focal-plane polynomial.
    detector_order : int
        Degree of the per-detector terms.
    detector_prior : float
        Strength of the ridge prior on the per-detector terms, in stars.
    colors : mapping, optional
        ``detector -> array`` of star colours (or use ``color_column``).
    color_column, color_name, color_order : optional
        As in :func:`fit_psf`.
    size, oversampling, interpolant, fit_background, max_iter, outlier_nsigma, max_reject_fraction, bad_planes
        As in :func:`fit_psf`.

    Returns
    -------
    PsfFitResult
        ``psf`` is a :class:`VisitPixelGridPsf` (``psf_for(detector)``); ``stars`` has a
        ``detector`` column.

    Raises
    ------
    InvalidInputError
        Mismatched mappings, bad arrays, or too few training stars (twice the number of
        shared basis terms plus the per-detector terms).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.psf import fit_visit_psf
    >>> rng = np.random.default_rng(0)
    >>> exps, cats, tr = {}, {}, {}
    >>> for d in range(2):
    ...     img = np.zeros((120, 120)); xs, ys = np.meshgrid(np.arange(15, 110, 22.0), np.arange(15, 110, 22.0))
    ...     for x, y in zip(xs.ravel(), ys.ravel()):
    ...         img[int(y) - 8:int(y) + 9, int(x) - 8:int(x) + 9] += 1e4 * GaussianPsf(1.6).image(x, y, shape=17)
    ...     exps[d] = (img + rng.normal(0, 1, img.shape), 1.0 + 0 * img)
    ...     cats[d] = QTable({"x": xs.ravel(), "y": ys.ravel()})
    ...     tr[d] = np.array([[1.0, 0, 130.0 * d], [0, 1.0, 0]])
    >>> res = fit_visit_psf(exps, cats, tr, spatial_order=1, size=13)
    >>> res.success, res.psf.psf_for(1).kernel_image(50, 50).shape
    (True, (13, 13))
    """
    dets = list(exposures)
    if set(dets) != set(stars) or set(dets) != set(transforms):
        raise InvalidInputError("`exposures`, `stars` and `transforms` must have the same detectors")
    if not dets:
        raise InvalidInputError("`exposures` is empty; give at least one detector")
    spatial_order = _check_int(spatial_order, "spatial_order", 0)
    detector_order = _check_int(detector_order, "detector_order", 0)
    oversampling = _check_int(oversampling, "oversampling", 1)
    order = _interp_code(interpolant)
    if not (isinstance(detector_prior, (int, float)) and math.isfinite(detector_prior) and detector_prior >= 0):
        raise InvalidInputError(f"`detector_prior` must be a finite number >= 0; got {detector_prior!r}")
    # per-detector inputs
    per = []
    for d in dets:
        e = exposures[d]
        if hasattr(e, "image"):
            img, var, msk = e.image, e.variance, getattr(e, "mask", None)
        else:
            if len(e) not in (2, 3):
                raise InvalidInputError(f"`exposures[{d!r}]` must be (image, variance[, mask]) or an Exposure")
            img, var = e[0], e[1]
            msk = e[2] if len(e) == 3 else None
        img = as_image(img, f"exposures[{d!r}].image", dtype=np.float64)
        var = as_image(var, f"exposures[{d!r}].variance", dtype=np.float64)
        if var.shape != img.shape:
            raise InvalidInputError(f"`exposures[{d!r}]` variance {var.shape} does not match the image {img.shape}")
        m = normalize_mask(msk, img.shape, image=img, variance=var, warn=False)
        idx, x, y, reserved, col = _parse_stars(stars[d], None if colors is None else colors[d], color_column)
        bounds = (-0.5, img.shape[1] - 0.5, -0.5, img.shape[0] - 0.5)
        t = transforms[d]
        A = affine_transform(t, bounds) if callable(t) else np.asarray(t, dtype=np.float64)
        if A.shape != (2, 3) or not np.all(np.isfinite(A)):
            raise InvalidInputError(f"`transforms[{d!r}]` must be a (2, 3) affine matrix or a callable")
        per.append((d, img, var, m, idx, x, y, reserved, col, bounds, A))
    chromatic = all(p[8] is not None for p in per) and color_order > 0
    # focal-plane bounds of the shared polynomial
    corners = []
    for (_, img, *_rest, bounds, A) in per:
        cx = np.array([bounds[0], bounds[1], bounds[0], bounds[1]])
        cy = np.array([bounds[2], bounds[2], bounds[3], bounds[3]])
        corners.append(A[:, :2] @ np.vstack([cx, cy]) + A[:, 2:3])
    cc = np.hstack(corners)
    fbounds = (float(cc[0].min()), float(cc[0].max()), float(cc[1].min()), float(cc[1].max()))
    allcol = np.concatenate([p[8] for p in per]) if chromatic else None
    cref = float(np.median(allcol)) if chromatic and allcol.size else 0.0
    shared = PolynomialBasis(spatial_order, fbounds, color_order=color_order if chromatic else 0, color_ref=cref)
    dbases = {p[0]: PolynomialBasis(detector_order, p[9]) for p in per}
    ndt = dbases[dets[0]].n_terms
    nb = shared.n_terms + ndt * len(dets)
    n_train = sum(int((~p[7]).sum()) for p in per)
    needed = 2 * shared.n_terms + ndt
    if n_train < needed:
        raise InvalidInputError(
            f"fit_visit_psf needs at least {needed} training stars for spatial_order={spatial_order} "
            f"({shared.n_terms} shared terms, 2 per term, plus {ndt} per detector); got {n_train}"
        )
    if size is None:
        d0 = max(per, key=lambda p: p[5].size)
        size = _default_size(d0[1], d0[2], d0[3], bad_planes, None, None, None, d0[5], d0[6])
    size = _check_int(size, "size", 5)
    if size % 2 == 0:
        raise InvalidInputError(f"`size` must be odd; got {size}")
    S = size + 6
    Ds, Ws, X0, Y0, xs, ys, res_, cols, Ps, dcol, idxs = [], [], [], [], [], [], [], [], [], [], []
    for i, (d, img, var, m, idx, x, y, reserved, col, bounds, A) in enumerate(per):
        D, W, x0, y0 = _gather_stamps(img, var, m, bad_planes, None, None, None, x, y, S)
        W = _circle_weights(W, x, y, x0, y0, 0.5 * size + 2.0)
        Ds.append(D)
        Ws.append(W)
        X0.append(x0)
        Y0.append(y0)
        xs.append(x)
        ys.append(y)
        res_.append(reserved)
        cols.append(col if chromatic else np.full(x.size, np.nan))
        FX = A[0, 0] * x + A[0, 1] * y + A[0, 2]
        FY = A[1, 0] * x + A[1, 1] * y + A[1, 2]
        P = np.zeros((x.size, nb))
        P[:, : shared.n_terms] = shared.evaluate(FX, FY, col if chromatic else None)
        o = shared.n_terms + i * ndt
        P[:, o : o + ndt] = dbases[d].evaluate(x, y)
        Ps.append(P)
        dcol.append(np.full(x.size, i))
        idxs.append(idx)
    prior = np.zeros(nb)
    prior[shared.n_terms :] = detector_prior

    def make_psf(coef: np.ndarray) -> VisitPixelGridPsf:
        terms = {d: coef[shared.n_terms + i * ndt : shared.n_terms + (i + 1) * ndt] for i, d in enumerate(dets)}
        return VisitPixelGridPsf(coef[: shared.n_terms], shared, terms, dbases, {p[0]: p[10] for p in per},
                                 oversampling=oversampling,
                                 color_name=(color_name or "color") if chromatic else None, interpolant=interpolant)

    cat = lambda v: np.concatenate(v)  # noqa: E731
    colv = cat(cols)
    res = _fit_pixel(cat(Ds), cat(Ws), cat(X0), cat(Y0), cat(xs), cat(ys), colv if chromatic else None, cat(res_),
                     shared, size, oversampling, order, fit_background, max_iter, outlier_nsigma,
                     max_reject_fraction, needed, color_name, colv, False, cat(idxs), interpolant,
                     P=cat(Ps), prior=prior, make_psf=make_psf, n_terms=nb)
    det_of = np.array([dets[i] for i in cat(dcol)]) if len(res.stars) else np.array([])
    res.stars["detector"] = det_of
    return res
