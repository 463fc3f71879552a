"""Cosmic rays: PSF-aware detection on one exposure and rejection from a snap pair."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core import Exposure, InvalidInputError, MaskPlane, as_image, check_same_shape
from ._common import check_finite_scalar, check_int, mask_and_bad
from ._kernels import (
    _clusters,
    _cr_candidates,
    _cr_stats_at,
    _dilate8,
    _interpolate_at,
    _local_median_at,
    _neighbours_at,
    _snap_grow,
    _snap_outliers,
)

__all__ = [
    "CosmicRayResult",
    "SnapCombination",
    "detect_cosmic_rays",
    "combine_snaps",
    "psf_sharpness_ratios",
    "CR_BAD_PLANES",
]

#: Pixels that :func:`detect_cosmic_rays` neither flags nor uses as neighbours.
CR_BAD_PLANES = (
    MaskPlane.BAD
    | MaskPlane.SAT
    | MaskPlane.SUSPECT
    | MaskPlane.NO_DATA
    | MaskPlane.UNMASKEDNAN
    | MaskPlane.EDGE
)


@dataclasses.dataclass(frozen=True, eq=False)
class CosmicRayResult:
    """Result of :func:`detect_cosmic_rays`.

    Attributes
    ----------
    image : numpy.ndarray
        The image with cosmic-ray pixels replaced by interpolation (input dtype); the
        input image itself when ``repair=False``.
    mask : numpy.ndarray of uint32
        The input mask plus ``CR`` on every cosmic-ray pixel (and ``INTRP`` where it was
        repaired).
    cr : numpy.ndarray of bool
        The cosmic-ray pixels.
    n_pixels : int
        Number of cosmic-ray pixels.
    n_regions : int
        Number of 8-connected cosmic-ray regions.
    n_iterations : int
        Detection passes that found new pixels.
    background : float or numpy.ndarray
        The background that was subtracted for the test (as given or estimated).
    """

    image: np.ndarray
    mask: np.ndarray
    cr: np.ndarray
    n_pixels: int
    n_regions: int
    n_iterations: int
    background: Any


@dataclasses.dataclass(frozen=True, eq=False)
class SnapCombination:
    """Result of :func:`combine_snaps`.

    Attributes
    ----------
    exposure : Exposure
        The sum of the two snaps (image and variance in e⁻, e⁻²; ``exptime`` the sum),
        with cosmic-ray pixels of one snap replaced by the other snap scaled to the
        total exposure time and flagged ``CR``.
    cr1, cr2 : numpy.ndarray of bool
        Cosmic-ray pixels found in snap 1 and snap 2.
    n_cr1, n_cr2 : int
        Their counts.
    n_both : int
        Pixels flagged in both snaps (no clean value: ``NO_DATA``).
    """

    exposure: Exposure
    cr1: np.ndarray
    cr2: np.ndarray
    n_cr1: int
    n_cr2: int
    n_both: int


def psf_sharpness_ratios(psf: Any, shape: tuple[int, int] | None = None) -> np.ndarray:
    r"""Neighbour-to-centre ratios of a pixelized PSF along the four test directions.

    Parameters
    ----------
    psf : Psf or array_like
        An object of the :class:`~lsstdrp.core.Psf` protocol (its kernel at the image
        centre is used) or an odd-sized 2-D kernel array centred on its central pixel.
    shape : tuple of int, optional
        Image shape (to evaluate ``psf`` at the centre); default (0, 0).

    Returns
    -------
    numpy.ndarray, shape (4,)
        :math:`\rho_d = (K_{c-d} + K_{c+d}) / (2 K_c)` for d = x, y, diagonal,
        anti-diagonal, each in (0, 1].

    Raises
    ------
    InvalidInputError
        If the kernel is not odd-sized, has a non-positive or non-finite centre, or is
        not peaked at its centre.

    Examples
    --------
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.isr import psf_sharpness_ratios
    >>> psf_sharpness_ratios(GaussianPsf(1.5)).round(3).tolist()
    [0.807, 0.807, 0.652, 0.652]
    """
    if hasattr(psf, "kernel_image"):
        ny, nx = shape if shape is not None else (1, 1)
        k = np.asarray(psf.kernel_image((nx - 1) / 2.0, (ny - 1) / 2.0), dtype=np.float64)
    else:
        try:
            k = np.asarray(psf, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"`psf` must be a Psf or a 2-D kernel array; got {type(psf).__name__}") from None
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or min(k.shape) < 3:
        raise InvalidInputError(f"`psf` kernel has shape {k.shape}; expected an odd-sized 2-D array >= 3x3")
    if not np.isfinite(k).all():
        raise InvalidInputError("`psf` kernel has non-finite values")
    cy, cx = k.shape[0] // 2, k.shape[1] // 2
    c = k[cy, cx]
    if not c > 0:
        raise InvalidInputError(f"`psf` kernel centre is {c}; expected > 0")
    rho = np.empty(4)
    for i, (dy, dx) in enumerate(((0, 1), (1, 0), (1, 1), (1, -1))):
        rho[i] = 0.5 * (k[cy - dy, cx - dx] + k[cy + dy, cx + dx]) / c
    if not ((rho > 0) & (rho <= 1.0 + 1e-9)).all():
        raise InvalidInputError(f"`psf` kernel is not peaked at its centre (neighbour/centre ratios {rho})")
    return np.minimum(rho, 1.0)


def _background(image: np.ndarray, bad: np.ndarray, variance: np.ndarray, background: Any) -> Any:
    if background is None:
        from ..characterize import estimate_background

        bin_size = int(min(64, max(8, min(image.shape) // 2)))
        bg = estimate_background(image, mask=bad, variance=variance, bin_size=bin_size)
        return np.asarray(bg.background, dtype=np.float64)
    if np.ndim(background) == 0:
        return check_finite_scalar(background, "background")
    bg = as_image(background, "background", allow_nonfinite=False)
    check_same_shape(image, "image", background=bg)
    return bg.astype(np.float64)


def detect_cosmic_rays(
    image: Any,
    variance: Any,
    *,
    psf: Any,
    mask: Any = None,
    bad_planes: Any = None,
    background: Any = None,
    threshold: float = 5.0,
    sharpness: float = 5.0,
    candidate_threshold: float = 3.0,
    candidate_sharpness: float = 1.0,
    cluster_sharpness: float = 6.0,
    psf_tolerance: float = 0.05,
    grow_threshold: float = 2.0,
    grow_sharpness: float = 1.0,
    grow_steps: int = 2,
    dilate: int = 1,
    dilate_threshold: float | None = None,
    max_iter: int = 1,
    repair: bool = True,
    max_gap: int = 32,
) -> CosmicRayResult:
    r"""Find cosmic rays as pixels sharper than the PSF allows, and repair them.

    A pixel is sharper than any star could be when, along at least one of the four
    directions (row, column, two diagonals), the mean of its two neighbours falls below
    what the pixelized PSF predicts from the pixel itself; ``z`` (Notes) is the
    significance of that deficit. Cosmic-ray pixels are found in four stages:

    1. *seeds and clusters* -- candidates are pixels above ``candidate_threshold``
       sigma, with ``z > candidate_sharpness``, that also stand ``candidate_threshold``
       sigma above the median of their 5x5 box (a thin track does, the smooth profile
       of a galaxy does not); an 8-connected cluster of candidates is a cosmic ray when
       it holds a strong seed (above ``threshold`` sigma with ``z > sharpness``) or
       its summed excess sharpness :math:`\sum (z - z_c)` reaches
       ``cluster_sharpness`` (a long faint track);
    2. *dilation* -- by ``dilate`` pixels (the charge-diffusion wings of a track lie
       in the noise), optionally only onto pixels above ``dilate_threshold`` sigma;
    3. *growth* -- ``grow_steps`` times, a pixel of the ring around the flagged set is
       added when it is above ``grow_threshold`` sigma and sharper than the PSF by
       ``grow_sharpness`` against the track *repaired from beyond the ring* (so that a
       ring pixel never props up its own reference);
    4. *repair* -- the flagged pixels are replaced by linear interpolation along the
       row or column (as :func:`interpolate_bad_pixels`).

    With ``max_iter > 1`` stages 1-3 are repeated on the image with the flagged pixels
    repaired.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The exposure in e⁻ (sky included or not: see ``background``); not modified.
    variance : array_like, shape (ny, nx)
        Its variance in e⁻² (with the Poisson noise of the sources, as ISR makes it).
    psf : Psf or array_like
        The PSF (any :class:`~lsstdrp.core.Psf`, evaluated at the image centre) or a
        pixelized odd-sized kernel. Stars narrower than this are not protected, so
        pass the PSF of the best seeing in the image, not a broader one.
    mask : array_like of bool or uint32, optional
        Pixels that are neither flagged nor used as neighbours (boolean True, or the
        ``bad_planes`` bits of a MaskPlane array).
    bad_planes : MaskPlane bits or sequence of str, optional
        Default :data:`CR_BAD_PLANES` (BAD, SAT, SUSPECT, NO_DATA, UNMASKEDNAN, EDGE).
    background : float or array_like, optional
        The background to subtract before the test (e.g. a sky model; for spectra the
        sky lines). Default: estimated with
        :func:`lsstdrp.characterize.estimate_background` (64-pixel meshes).
    threshold, sharpness : float
        A strong seed is above ``threshold`` sigma and sharper than the PSF by more
        than ``sharpness`` sigma (``z``).
    candidate_threshold, candidate_sharpness : float
        Significance and ``z`` of a candidate pixel.
    cluster_sharpness : float
        Summed ``z - candidate_sharpness`` that makes a cluster without a strong seed
        a cosmic ray.
    psf_tolerance : float
        Fractional allowance for PSF-model error, in [0, 1): the predicted neighbour
        level is lowered by this fraction before the test.
    grow_threshold, grow_sharpness : float
        Significance and ``z`` (against the repaired track) of a growth pixel.
    grow_steps : int
        Number of one-pixel growth steps.
    dilate : int
        Dilation (pixels, 8-connected) of each detected cluster.
    dilate_threshold : float, optional
        If given, dilation only reaches pixels above this many sigma.
    max_iter : int
        Detection passes.
    repair : bool
        Replace the cosmic-ray pixels by interpolation in the returned image.
    max_gap : int
        Search distance of the repair interpolation.

    Returns
    -------
    CosmicRayResult
        ``image`` (repaired), ``mask`` (uint32, ``CR`` and ``INTRP`` added), ``cr``
        (bool) and counts.

    Raises
    ------
    InvalidInputError
        Mismatched shapes, an invalid PSF kernel or parameter.
    TypeError
        If ``psf`` is neither a Psf nor an array.

    Notes
    -----
    Let :math:`r = I - B` be the background-subtracted image, :math:`V` the variance
    and :math:`\rho_d = (K_{-d} + K_{+d}) / (2 K_0)` the neighbour-to-centre ratio of
    the pixelized PSF :math:`K` along direction :math:`d`. A star centred anywhere in
    pixel 0 has neighbour mean :math:`m_d \ge \rho_d r_0` (equality for a centred
    star; for log-concave profiles an offset only raises it). With
    :math:`p_d = (1 - \epsilon)\rho_d` (the ``psf_tolerance`` :math:`\epsilon`), the
    sharpness significance is

    .. math::

        z = \max_d \frac{p_d\, r_0 - m_d}{\sqrt{p_d^2 V_0 + (V_{-d} + V_{+d})/4}},

    and a seed needs :math:`r_0 > t\sqrt{V_0}` and :math:`z > s` (``threshold`` t,
    ``sharpness`` s). This is the "sharper than the PSF" condition of the SDSS and
    Rubin cosmic-ray finders (Lupton et al. 2001) written as a significance, used in
    place of L.A.Cosmic's Laplacian-to-fine-structure ratio (van Dokkum 2001): both
    ask whether the second derivative at a pixel exceeds what the optics can produce,
    but this form derives the limit from the PSF itself instead of the empirical
    ``objlim``. Star cores (for which :math:`z \approx 0`) survive at any brightness,
    provided the PSF is not broader than the stars; a cosmic ray lying on a star is
    still found because it is sharp relative to the star.

    At the image edge, where one neighbour of a direction is outside, the other stands
    for both (the profile is reflected about the pixel).

    What it cannot do: a cosmic ray no sharper than the PSF (a grazing track spread by
    diffusion, or one in a defocused image) is not found, nor is one whose every
    neighbour is masked; a faint electron worm whose every pixel is below ~7 sigma is
    missed about as often as it is found (on simulated LSST-like frames these are the
    ~0.3% of cosmic-ray pixels above 3 sigma that are missed).

    References
    ----------
    .. [1] van Dokkum, P. G. 2001, PASP 113, 1420 (L.A.Cosmic).
    .. [2] Lupton, R. et al. 2001, ASP Conf. Ser. 238, 269 (SDSS photo; cosmic rays
       sharper than the PSF).
    .. [3] Bosch, J. et al. 2018, PASJ 70, S5 (HSC pipeline; ``findCosmicRays``).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.isr import detect_cosmic_rays
    >>> rng = np.random.default_rng(1)
    >>> img = rng.normal(100.0, 10.0, (64, 64)).astype(np.float32)
    >>> img[30, 20:25] += 500.0                       # a short horizontal track
    >>> res = detect_cosmic_rays(img, np.full((64, 64), 100.0), psf=GaussianPsf(1.5),
    ...                          background=100.0, dilate=0)
    >>> bool(res.cr[30, 20:25].all()), res.n_regions
    (True, 1)
    """
    img = as_image(image, "image")
    var = as_image(variance, "variance")
    check_same_shape(img, "image", variance=var)
    m, bad = mask_and_bad(mask, img.shape, bad_planes, image=img, variance=var, default=CR_BAD_PLANES)
    bad |= (m & np.uint32(MaskPlane.CR)) != 0  # pre-existing CR bits: leave them alone
    rho = psf_sharpness_ratios(psf, img.shape)
    t = check_finite_scalar(threshold, "threshold", minimum=0.0, strict=True)
    s = check_finite_scalar(sharpness, "sharpness", minimum=0.0)
    ct = check_finite_scalar(candidate_threshold, "candidate_threshold", minimum=0.0)
    cs = check_finite_scalar(candidate_sharpness, "candidate_sharpness")
    zc = check_finite_scalar(cluster_sharpness, "cluster_sharpness", minimum=0.0)
    tol = check_finite_scalar(psf_tolerance, "psf_tolerance", minimum=0.0)
    if tol >= 1.0:
        raise InvalidInputError(f"`psf_tolerance` must be in [0, 1); got {psf_tolerance!r}")
    gt = check_finite_scalar(grow_threshold, "grow_threshold", minimum=0.0)
    gs = check_finite_scalar(grow_sharpness, "grow_sharpness")
    n_grow = check_int(grow_steps, "grow_steps")
    n_dil = check_int(dilate, "dilate")
    dt = None if dilate_threshold is None else check_finite_scalar(dilate_threshold, "dilate_threshold")
    n_iter = check_int(max_iter, "max_iter", minimum=1)
    gap = check_int(max_gap, "max_gap", minimum=1)

    bkg = _background(img, bad, var, background)
    r = img.astype(np.float64) - bkg  # private working copy (values are swapped in place)
    v = var.astype(np.float64)
    bad |= ~np.isfinite(r) | ~np.isfinite(v)
    r[bad] = 0.0
    v[bad] = 0.0
    excl = bad.view(np.uint8)
    flag = np.zeros(img.shape, dtype=np.uint8)  # 1 = cosmic ray, 2 = growth ring (transient)
    cys = np.empty(0, np.int64)
    cxs = np.empty(0, np.int64)
    iterations = 0
    for _ in range(n_iter):
        with _repaired(r, excl, flag, cys, cxs, gap):
            ys, xs, sz = _cr_candidates(r, v, excl, flag, rho, tol, ct, cs)
            if ys.size == 0:
                break
            # a candidate must also stand out of its 5x5 median: thin structures do, the
            # smooth profile of a galaxy (where noise alone makes sharp pixels) does not
            med = np.empty(ys.size)
            _local_median_at(r, excl, flag, ys, xs, 2, med)
            with np.errstate(invalid="ignore"):
                keep = (r[ys, xs] - med) > ct * np.sqrt(v[ys, xs])
        ys, xs, sz = ys[keep], xs[keep], sz[keep]
        if ys.size == 0:
            break
        strong = (sz[:, 0] > t) & (sz[:, 1] > s)
        label, sums, anys = _clusters(ys, xs, img.shape[1], sz[:, 1] - cs, strong)
        accept = (anys | (sums >= zc))[label]
        ys, xs = ys[accept], xs[accept]
        if ys.size == 0:
            break
        iterations += 1
        flag[ys, xs] = 1
        new_y, new_x = [ys], [xs]
        front_y, front_x = ys, xs
        for _ in range(n_dil):
            dy, dx = _neighbours_at(front_y, front_x, excl, flag, 1)
            if dt is not None and dy.size:
                with np.errstate(invalid="ignore"):
                    ok = r[dy, dx] > dt * np.sqrt(v[dy, dx])
                flag[dy[~ok], dx[~ok]] = 0
                dy, dx = dy[ok], dx[ok]
            new_y.append(dy)
            new_x.append(dx)
            front_y, front_x = dy, dx
        cys = np.concatenate([cys, *new_y])
        cxs = np.concatenate([cxs, *new_x])
        for _ in range(n_grow):
            gy, gx = _grow_step(r, v, excl, flag, cys, cxs, rho, tol, gt, gs, gap)
            if gy.size == 0:
                break
            cys = np.concatenate([cys, gy])
            cxs = np.concatenate([cxs, gx])
    crb = flag.view(bool)
    m[crb] |= np.uint32(MaskPlane.CR)
    out_img = img.copy()
    if repair and cys.size:
        vals = np.empty(cys.size)
        ok = np.zeros(cys.size, np.bool_)
        _interpolate_at(r, excl, flag, cys, cxs, gap, vals, ok)
        b = bkg if np.ndim(bkg) == 0 else bkg[cys[ok], cxs[ok]]
        out_img[cys[ok], cxs[ok]] = (vals[ok] + b).astype(img.dtype)
        m[cys[ok], cxs[ok]] |= np.uint32(MaskPlane.INTRP)
    n_regions = 0
    if cys.size:
        order = np.lexsort((cxs, cys))
        lab, _, _ = _clusters(cys[order], cxs[order], img.shape[1], np.zeros(cys.size), np.zeros(cys.size, np.bool_))
        n_regions = int(lab.max()) + 1
    return CosmicRayResult(
        image=out_img,
        mask=m,
        cr=crb.copy(),
        n_pixels=int(cys.size),
        n_regions=n_regions,
        n_iterations=iterations,
        background=bkg,
    )


class _repaired:
    """Context manager: the listed cosmic-ray pixels of ``r`` hold their repaired values
    (interpolated from pixels that are neither excluded nor flagged) inside the block."""

    def __init__(self, r, excl, flag, ys, xs, gap):
        self.r, self.excl, self.flag, self.ys, self.xs, self.gap = r, excl, flag, ys, xs, gap

    def __enter__(self):
        if self.ys.size:
            self.saved = self.r[self.ys, self.xs].copy()
            vals = np.empty(self.ys.size)
            ok = np.zeros(self.ys.size, np.bool_)
            _interpolate_at(self.r, self.excl, self.flag, self.ys, self.xs, self.gap, vals, ok)
            self.r[self.ys, self.xs] = np.where(ok, vals, self.saved)
        return self

    def __exit__(self, *exc):
        if self.ys.size:
            self.r[self.ys, self.xs] = self.saved
        return False


def _grow_step(
    r: np.ndarray, v: np.ndarray, excl: np.ndarray, flag: np.ndarray, cys: np.ndarray, cxs: np.ndarray,
    rho: np.ndarray, tol: float, grow_threshold: float, grow_sharpness: float, gap: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The ring pixels around the cosmic rays that are sharp against the repaired track.

    The cosmic-ray pixels are replaced by an interpolation from beyond the one-pixel
    ring around them (so a ring pixel never props up its own reference), and a ring
    pixel is added (``flag = 1``) when it is above ``grow_threshold`` sigma and sharper
    than the PSF by ``grow_sharpness`` sigma against that reference.
    """
    ry, rx = _neighbours_at(cys, cxs, excl, flag, 2)
    if ry.size == 0:
        return ry, rx
    with _repaired(r, excl, flag, cys, cxs, gap):
        sz = np.empty((ry.size, 2))
        _cr_stats_at(r, v, excl, ry, rx, rho, tol, sz)
    add = (sz[:, 0] > grow_threshold) & (sz[:, 1] > grow_sharpness)
    flag[ry, rx] = np.where(add, 1, 0).astype(np.uint8)
    return ry[add], rx[add]


def _as_snap(snap: Any, name: str) -> Exposure:
    if not isinstance(snap, Exposure):
        raise TypeError(f"`{name}` must be an lsstdrp.core.Exposure (image, variance, mask, exptime); got {type(snap).__name__}")
    return snap


def combine_snaps(
    snap1: Exposure,
    snap2: Exposure,
    *,
    threshold: float = 4.0,
    grow_threshold: float = 1.0,
    dilate: int = 1,
    psf_tolerance: float = 0.05,
    bad_planes: Any = None,
    exptime_rtol: float = 1e-3,
) -> SnapCombination:
    r"""Sum two snaps of one visit, rejecting cosmic rays from their difference.

    The snaps are scaled to a common rate, and a pixel that is brighter in one snap
    than in the other by more than ``threshold`` sigma of the difference is a cosmic
    ray in the brighter snap. The flags grow into connected pixels of the same sign
    above ``grow_threshold`` sigma and are dilated by ``dilate`` pixels. Where one snap
    is flagged the sum takes the other snap scaled to the total exposure time; the
    pixel keeps ``CR`` in the mask so a consumer knows its variance is higher.

    Parameters
    ----------
    snap1, snap2 : Exposure
        The two ISR-corrected snaps (image and variance in e⁻, e⁻²) of one pointing,
        with ``exptime`` set (seconds) and the same shape.
    threshold : float
        Seed significance of the snap difference (sigma).
    grow_threshold : float
        Significance for growing a flagged region into its neighbours.
    dilate : int
        Unconditional dilation of each snap's flags (pixels).
    psf_tolerance : float
        Fraction of the brighter snap's signal added in quadrature to the difference
        noise, so that a seeing or pointing change between the snaps does not flag
        bright stars.
    bad_planes : MaskPlane bits or sequence of str, optional
        Pixels excluded from the test (default :data:`CR_BAD_PLANES`); their masks are
        OR-ed into the result.
    exptime_rtol : float
        Largest relative difference of the two exposure times accepted.

    Returns
    -------
    SnapCombination
        The summed :class:`~lsstdrp.core.Exposure` and the flags of each snap.

    Raises
    ------
    TypeError
        If a snap is not an :class:`~lsstdrp.core.Exposure`.
    InvalidInputError
        Different shapes, a missing or zero exposure time, or exposure times differing
        by more than ``exptime_rtol`` (snaps of different exposure are not a pair).

    Notes
    -----
    With rates :math:`s_i = I_i / t_i` scaled to the mean exposure :math:`\bar t`,
    :math:`D = \bar t (s_1 - s_2)` has variance
    :math:`\sigma_D^2 = \bar t^2 (V_1/t_1^2 + V_2/t_2^2) + (\epsilon \max(|I_1|, |I_2|))^2`;
    a pixel with :math:`D > k\sigma_D` is a cosmic ray in snap 1, :math:`D < -k\sigma_D`
    in snap 2. The sum is :math:`I = I_1 + I_2`, :math:`V = V_1 + V_2`, and where
    snap 1 is flagged, :math:`I = (t_1 + t_2) I_2 / t_2`,
    :math:`V = ((t_1 + t_2)/t_2)^2 V_2`. Unlike single-image detection this needs no
    PSF, and finds cosmic rays of any shape, including ones on star cores; it cannot
    find a cosmic ray that hits the same pixel in both snaps (flagged ``NO_DATA``
    when both are flagged, otherwise undetected).

    References
    ----------
    .. [1] Ivezić, Ž. et al. 2019, ApJ 873, 111 (LSST snaps).
    .. [2] Jurić, M. et al. 2017, LSST DM Science Pipelines design (LDM-151), snap
       combination.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import Exposure
    >>> from lsstdrp.isr import combine_snaps
    >>> rng = np.random.default_rng(0)
    >>> a = rng.normal(100, 10, (32, 32)); b = rng.normal(100, 10, (32, 32))
    >>> a[10, 10] += 1000.0
    >>> v = np.full((32, 32), 100.0)
    >>> res = combine_snaps(Exposure(a, v, exptime=15.0), Exposure(b, v, exptime=15.0))
    >>> bool(res.cr1[10, 10]), res.exposure.exptime
    (True, 30.0)
    """
    s1 = _as_snap(snap1, "snap1")
    s2 = _as_snap(snap2, "snap2")
    if s1.shape != s2.shape:
        raise InvalidInputError(f"`snap2` has shape {s2.shape}; it must match `snap1` {s1.shape}")
    t1, t2 = s1.exptime, s2.exptime
    for name, t in (("snap1", t1), ("snap2", t2)):
        if t is None or not t > 0:
            raise InvalidInputError(f"`{name}.exptime` is {t!r}; snaps need a positive exposure time")
    rtol = check_finite_scalar(exptime_rtol, "exptime_rtol", minimum=0.0)
    if abs(t1 - t2) > rtol * max(t1, t2):
        raise InvalidInputError(
            f"snap exposure times differ: {t1} s and {t2} s (relative tolerance {rtol}); "
            "the two snaps of a pair have the same exposure"
        )
    k = check_finite_scalar(threshold, "threshold", minimum=0.0, strict=True)
    kg = check_finite_scalar(grow_threshold, "grow_threshold", minimum=0.0)
    eps = check_finite_scalar(psf_tolerance, "psf_tolerance", minimum=0.0)
    n_dil = check_int(dilate, "dilate")
    planes = CR_BAD_PLANES if bad_planes is None else bad_planes
    _, bad1 = mask_and_bad(s1.mask, s1.shape, planes, default=CR_BAD_PLANES)
    _, bad2 = mask_and_bad(s2.mask, s2.shape, planes, default=CR_BAD_PLANES)
    i1 = s1.image.astype(np.float64)
    i2 = s2.image.astype(np.float64)
    v1 = s1.variance.astype(np.float64)
    v2 = s2.variance.astype(np.float64)
    excl = bad1 | bad2 | ~np.isfinite(i1) | ~np.isfinite(i2) | ~np.isfinite(v1) | ~np.isfinite(v2)
    tm = 0.5 * (t1 + t2)
    d = tm * (i1 / t1 - i2 / t2)
    vd = tm * tm * (v1 / t1**2 + v2 / t2**2) + (eps * np.maximum(np.abs(i1), np.abs(i2))) ** 2
    d[excl] = 0.0
    vd[excl] = 0.0
    flag = np.zeros(s1.shape, dtype=np.int8)
    ex8 = excl.view(np.uint8)
    _snap_outliers(d, vd, ex8, k, flag)
    for sign in (1, -1):
        _snap_grow(d, vd, ex8, flag, kg, sign)
    c1 = (flag == 1).view(np.uint8)
    c2 = (flag == -1).view(np.uint8)
    for _ in range(n_dil):
        o1 = np.empty_like(c1)
        o2 = np.empty_like(c2)
        _dilate8(c1, ex8, o1)
        _dilate8(c2, ex8, o2)
        c1, c2 = o1, o2
    cr1 = c1.view(bool)
    cr2 = c2.view(bool)
    both = cr1 & cr2
    ttot = t1 + t2
    image = i1 + i2
    variance = v1 + v2
    only1 = cr1 & ~cr2
    only2 = cr2 & ~cr1
    image[only1] = (ttot / t2) * i2[only1]
    variance[only1] = (ttot / t2) ** 2 * v2[only1]
    image[only2] = (ttot / t1) * i1[only2]
    variance[only2] = (ttot / t1) ** 2 * v1[only2]
    mask = s1.mask | s2.mask
    mask[cr1 | cr2] |= np.uint32(MaskPlane.CR)
    mask[both] |= np.uint32(MaskPlane.NO_DATA)
    # a pixel bad in one snap only: the other snap carries it
    bad_only1 = bad1 & ~bad2
    bad_only2 = bad2 & ~bad1
    image[bad_only1] = (ttot / t2) * i2[bad_only1]
    variance[bad_only1] = (ttot / t2) ** 2 * v2[bad_only1]
    image[bad_only2] = (ttot / t1) * i1[bad_only2]
    variance[bad_only2] = (ttot / t1) ** 2 * v1[bad_only2]
    dtype = np.result_type(s1.image.dtype, s2.image.dtype)
    meta = {**s1.metadata, "snaps": 2, "snap_exptimes": (float(t1), float(t2))}
    exposure = s1.replace(
        image=image.astype(dtype),
        variance=variance.astype(dtype),
        mask=mask,
        exptime=float(ttot),
        metadata=meta,
    )
    return SnapCombination(
        exposure=exposure,
        cr1=cr1.copy(),
        cr2=cr2.copy(),
        n_cr1=int(np.count_nonzero(cr1)),
        n_cr2=int(np.count_nonzero(cr2)),
        n_both=int(np.count_nonzero(both)),
    )


