"""Background and background-rms estimation on a mesh (SExtractor-style and variants)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ..core import (
    DEFAULT_BAD_PLANES,
    MaskPlane,
    as_image,
    bad_pixel_mask,
    check_in,
    image_dtype,
    normalize_mask,
)
from . import _kernels as K

__all__ = ["BackgroundResult", "estimate_background", "BACKGROUND_BAD_PLANES"]

#: Mask bits that exclude a pixel from background statistics by default: the default
#: bad planes plus ``DETECTED`` and ``DETECTED_NEGATIVE`` (pixels in sources).
BACKGROUND_BAD_PLANES = DEFAULT_BAD_PLANES | MaskPlane.DETECTED | MaskPlane.DETECTED_NEGATIVE

_STATISTICS = ("sextractor", "median", "mean", "mode")
_INTERPOLATIONS = ("bicubic", "akima", "chebyshev")
_CLIPPED_KIND = {"mean": 0, "median": 1, "mode": 2}


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class BackgroundResult:
    """The result of :func:`estimate_background`.

    Attributes
    ----------
    background : numpy.ndarray, shape (ny, nx)
        Full-resolution background in image units; float32 for float32 (and <= 16-bit
        integer) input, float64 for float64 input (the lsstdrp dtype policy).
    rms : numpy.ndarray, shape (ny, nx)
        Full-resolution background rms (1-sigma pixel noise), same dtype.
    mesh_background : numpy.ndarray of float32, shape (ny_mesh, nx_mesh)
        Background of every mesh after bad-mesh replacement and median filtering; the
        nodes of the interpolation, at mesh centres ``((j + 0.5) * bin_y - 0.5,
        (i + 0.5) * bin_x - 0.5)`` (0-based pixels).
    mesh_rms : numpy.ndarray of float32, shape (ny_mesh, nx_mesh)
        Rms of every mesh, likewise.
    mesh_valid : numpy.ndarray of bool, shape (ny_mesh, nx_mesh)
        Meshes that had enough unmasked pixels; the others were replaced by the mean of
        the nearest valid meshes.
    global_background : float
        Median of ``mesh_background`` (SExtractor's global background).
    global_rms : float
        Median of ``mesh_rms`` (SExtractor's global rms); if that median is <= 0 the
        median of the positive mesh rms values, or 0.0 for a constant image.
    n_excluded : int
        Number of pixels excluded from the statistics (mask, non-finite values and, when
        iterating, detections).
    params : dict
        The parameters used, for provenance.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.characterize import estimate_background
    >>> rng = np.random.default_rng(1)
    >>> img = (100.0 + rng.normal(0.0, 5.0, (128, 128))).astype(np.float32)
    >>> bkg = estimate_background(img, bin_size=32)
    >>> bkg.background.dtype, bkg.mesh_background.shape
    (dtype('float32'), (4, 4))
    >>> abs(bkg.global_background - 100.0) < 1.0, abs(bkg.global_rms - 5.0) < 0.5
    (True, True)
    """

    background: np.ndarray
    rms: np.ndarray
    mesh_background: np.ndarray
    mesh_rms: np.ndarray
    mesh_valid: np.ndarray
    global_background: float
    global_rms: float
    n_excluded: int
    params: Mapping[str, Any]

    def subtract_from(self, image: Any) -> np.ndarray:
        """Return ``image - background`` as a new array (input dtype policy).

        Parameters
        ----------
        image : array_like, shape (ny, nx)
            The image the background was estimated on (or one with the same shape).

        Returns
        -------
        numpy.ndarray
            A new array; ``image`` is not modified.

        Raises
        ------
        InvalidInputError
            If ``image`` does not have the shape of :attr:`background`.
        """
        img = as_image(image, "image")
        if img.shape != self.background.shape:
            raise InvalidInputError(
                f"`image` has shape {img.shape}; it must match the background {self.background.shape}"
            )
        return img - self.background.astype(img.dtype, copy=False)


def _pair(value: Any, name: str, *, minimum: int = 1) -> tuple[int, int]:
    """``value`` as (rows, cols) positive ints; a scalar applies to both axes."""
    if isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"`{name}` must be an int or a pair of ints; got {value!r}")
    if isinstance(value, Sequence) or isinstance(value, np.ndarray):
        vals = list(np.asarray(value).ravel())
        if len(vals) != 2:
            raise InvalidInputError(f"`{name}` must be an int or a pair (rows, cols); got {value!r}")
    else:
        vals = [value, value]
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not float(v).is_integer() or int(v) < minimum:
            raise InvalidInputError(f"`{name}` must be integer(s) >= {minimum}; got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def _median_f32(values: np.ndarray) -> float:
    """SExtractor's median of a float32 array (mean of the two middle values if even)."""
    v = np.sort(values.astype(np.float32).ravel())
    n = v.size
    if n < 2:
        return float(v[0])
    if n % 2:
        return float(v[n // 2])
    return float(np.float32((v[n // 2 - 1] + v[n // 2]) / np.float32(2.0)))


def _exclusion(image: np.ndarray, mask: Any, variance: Any, bad_planes: Any) -> tuple[np.ndarray | None, np.ndarray]:
    """(uint32 mask or None, boolean exclusion) following the lsstdrp mask rule."""
    if mask is None and variance is None and K._count_nonfinite(image) == 0:
        return None, np.zeros((1, 1), dtype=np.bool_)  # nothing excluded (a 1x1 placeholder)
    var = None
    if variance is not None:
        var = as_image(variance, "variance")
        if var.shape != image.shape:
            raise InvalidInputError(f"`variance` has shape {var.shape}; it must match `image` {image.shape}")
    mplane = normalize_mask(mask, image.shape, image=image, variance=var)
    planes = BACKGROUND_BAD_PLANES if bad_planes is None else bad_planes
    bad = bad_pixel_mask(mplane, planes)
    bad |= (mplane & np.uint32(MaskPlane.NO_DATA)) != 0  # non-finite data never enter
    return mplane, bad


def _mesh_statistics(
    img32: np.ndarray, bad: np.ndarray, bh: int, bw: int, statistic: str, sigma_clip: float, n_iter: int, min_good: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = img32.shape
    ny, nx = (h - 1) // bh + 1, (w - 1) // bw + 1
    has_bad = bad.shape == img32.shape and bool(bad.any())
    if not has_bad:
        bad = np.zeros((1, 1), dtype=np.bool_)
    back = np.empty((ny, nx), dtype=np.float32)
    sigma = np.empty((ny, nx), dtype=np.float32)
    valid = np.empty((ny, nx), dtype=np.bool_)
    if statistic == "sextractor":
        K._mesh_stats_sextractor(img32, bad, has_bad, bh, bw, min_good, back, sigma, valid)
    else:
        b64 = np.empty((ny, nx))
        s64 = np.empty((ny, nx))
        K._mesh_stats_clipped(img32, bad, has_bad, bh, bw, min_good, _CLIPPED_KIND[statistic], sigma_clip, n_iter, b64, s64,
                              valid)
        back[:] = b64
        sigma[:] = s64
    return back, sigma, valid


def _chebyshev_map(values: np.ndarray, bh: int, bw: int, shape: tuple[int, int], order: tuple[int, int]) -> np.ndarray:
    """Least-squares 2-D Chebyshev fit to the node map, evaluated on the pixel grid."""
    from numpy.polynomial import chebyshev as C

    h, w = shape
    ny, nx = values.shape
    oy = min(order[0], ny - 1)
    ox = min(order[1], nx - 1)

    def scaled(pix: np.ndarray, n: int) -> np.ndarray:
        return (2.0 * pix + 1.0) / n - 1.0  # pixel -0.5 -> -1, n - 0.5 -> +1

    yc = scaled((np.arange(ny) + 0.5) * bh - 0.5, h)
    xc = scaled((np.arange(nx) + 0.5) * bw - 0.5, w)
    vy = C.chebvander(yc, oy)  # (ny, oy+1)
    vx = C.chebvander(xc, ox)  # (nx, ox+1)
    design = np.einsum("ia,jb->ijab", vy, vx).reshape(ny * nx, (oy + 1) * (ox + 1))
    coef, *_ = np.linalg.lstsq(design, values.astype(np.float64).ravel(), rcond=None)
    coef = coef.reshape(oy + 1, ox + 1)
    ty = C.chebvander(scaled(np.arange(h, dtype=np.float64), h), oy)
    tx = C.chebvander(scaled(np.arange(w, dtype=np.float64), w), ox)
    left = (ty @ coef).astype(np.float32)
    return left @ tx.T.astype(np.float32)


def _interpolate(
    back: np.ndarray, sigma: np.ndarray, bh: int, bw: int, shape: tuple[int, int], interpolation: str, order: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    if interpolation == "bicubic":
        dback = np.empty_like(back)
        dsigma = np.empty_like(sigma)
        K._sextractor_spline_d2(back, dback)
        K._sextractor_spline_d2(sigma, dsigma)
        out_b = np.empty(shape, dtype=np.float32)
        out_s = np.empty(shape, dtype=np.float32)
        K._sextractor_interpolate(back, dback, sigma, dsigma, bh, bw, out_b, out_s)
        return out_b, out_s
    if interpolation == "akima":
        out_b = np.empty(shape, dtype=np.float64)
        out_s = np.empty(shape, dtype=np.float64)
        K._akima_interpolate(back.astype(np.float64), bh, bw, out_b)
        K._akima_interpolate(sigma.astype(np.float64), bh, bw, out_s)
        return out_b.astype(np.float32), out_s.astype(np.float32)
    return _chebyshev_map(back, bh, bw, shape, order), _chebyshev_map(sigma, bh, bw, shape, order)


def _detection_mask(resid: np.ndarray, rms: np.ndarray, bad: np.ndarray, threshold: float, smooth: float, grow: int) -> np.ndarray:
    """Pixels of sources found in the residual: smoothed S/N above ``threshold`` (both
    signs), dilated by ``grow`` pixels. Masked pixels get zero weight."""
    from scipy import ndimage

    r = np.where(bad, 0.0, resid).astype(np.float32)
    good = (~bad).astype(np.float32)
    num = ndimage.gaussian_filter(r, smooth, mode="constant", truncate=4.0)
    wsum = ndimage.gaussian_filter(good, smooth, mode="constant", truncate=4.0)
    delta = np.zeros((int(8 * smooth) | 1,) * 2, dtype=np.float64)
    delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1.0
    g = ndimage.gaussian_filter(delta, smooth, mode="constant", truncate=4.0)
    # noise of the smoothed residual for white noise of the local rms (no masked pixels)
    noise = rms.astype(np.float32) * np.float32(math.sqrt(float((g**2).sum())))
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where((wsum > 0.5) & (noise > 0), num / noise, 0.0)
    det = np.abs(snr) > threshold
    if grow > 0 and det.any():
        yy, xx = np.mgrid[-grow : grow + 1, -grow : grow + 1]
        det = ndimage.binary_dilation(det, structure=(xx**2 + yy**2) <= grow * grow)
    return det


def estimate_background(
    image: Any,
    *,
    mask: Any = None,
    variance: Any = None,
    bad_planes: Any = None,
    bin_size: int | tuple[int, int] = 64,
    filter_size: int | tuple[int, int] = 3,
    filter_threshold: float = 0.0,
    statistic: str = "sextractor",
    interpolation: str = "bicubic",
    order: int | tuple[int, int] | None = None,
    sigma_clip: float = 3.0,
    n_iter: int = 5,
    min_good_fraction: float = 0.5,
    detect_iterations: int = 0,
    detect_threshold: float = 3.0,
    detect_smooth: float = 1.5,
    detect_grow: int = 2,
) -> BackgroundResult:
    r"""Estimate the sky background and its rms on a mesh and interpolate them.

    The image is divided into meshes of ``bin_size`` pixels (the last row/column of
    meshes may be smaller); a robust statistic of the unmasked pixels of each mesh
    gives one background and one rms node; meshes with fewer than
    ``min_good_fraction`` unmasked pixels are replaced by the mean of the nearest valid
    meshes; the node maps are median filtered over ``filter_size`` meshes; and the
    nodes, placed at the mesh centres, are interpolated to every pixel. With the
    defaults this is SExtractor's background (Bertin & Arnouts 1996) exactly as
    SExtractor 2.x and sep compute it.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The image (any real dtype; not modified). Non-finite pixels are excluded (and
        flagged ``NO_DATA`` with an :class:`~lsstdrp.InputDataWarning`).
    mask : array_like of bool or uint32, shape (ny, nx), optional
        Pixels to ignore: a boolean array (True = exclude) or
        :class:`~lsstdrp.core.MaskPlane` bits selected by ``bad_planes``.
    variance : array_like, shape (ny, nx), optional
        Per-pixel variance; pixels where it is non-finite or negative are excluded. It
        is not otherwise used: the rms map is measured from the pixel scatter.
    bad_planes : int, MaskPlane or sequence of str, optional
        Mask bits that exclude a pixel; default :data:`BACKGROUND_BAD_PLANES` (the
        default bad planes plus ``DETECTED`` and ``DETECTED_NEGATIVE``).
    bin_size : int or (int, int)
        Mesh size in pixels, ``(rows, cols)`` if a pair (SExtractor BACK_SIZE).
    filter_size : int or (int, int)
        Median-filter window in meshes, ``(rows, cols)`` if a pair; the half-width is
        ``filter_size // 2`` and the window shrinks symmetrically at the map edges
        (SExtractor BACK_FILTERSIZE). 1 disables filtering.
    filter_threshold : float
        A mesh is replaced by the filtered value only if they differ by at least this
        (SExtractor BACK_FILTERTHRESH; default 0: always).
    statistic : {"sextractor", "median", "mean", "mode"}
        Mesh statistic. ``"sextractor"``: SExtractor's mode estimator (see Notes).
        ``"mean"``, ``"median"``: of the pixels left after iterative clipping at
        ``sigma_clip`` standard deviations about the median (at most ``n_iter``
        iterations); ``"mode"``: :math:`2.5\,\mathrm{median} - 1.5\,\mathrm{mean}` of
        those pixels. The rms is the (clipped) standard deviation.
    interpolation : {"bicubic", "akima", "chebyshev"}
        ``"bicubic"``: SExtractor's natural bicubic spline through the mesh centres,
        with SExtractor's float32 arithmetic (bit-compatible with sep). ``"akima"``:
        tensor-product Akima (1970) splines, which do not overshoot near sharp mesh
        changes. ``"chebyshev"``: a least-squares 2-D Chebyshev polynomial of degree
        ``order`` fitted to the nodes (a smooth approximation rather than an
        interpolation).
    order : int or (int, int), optional
        Chebyshev degree ``(y, x)`` (default 6, capped at the number of meshes minus 1
        along each axis). Only used with ``interpolation="chebyshev"``.
    sigma_clip : float
        Clipping threshold in standard deviations for the clipped statistics.
    n_iter : int
        Maximum clipping iterations for the clipped statistics (>= 0).
    min_good_fraction : float
        A mesh needs more than this fraction of unmasked pixels to be valid
        (SExtractor: 0.5).
    detect_iterations : int
        If > 0, iterate this many times: subtract the current background, find sources
        where the residual smoothed by a Gaussian of ``detect_smooth`` pixels exceeds
        ``detect_threshold`` times its noise (either sign), exclude them grown by
        ``detect_grow`` pixels, and re-estimate.
    detect_threshold, detect_smooth, detect_grow : float, float, int
        Detection parameters of the iteration (S/N, Gaussian sigma in pixels, growth
        radius in pixels).

    Returns
    -------
    BackgroundResult
        ``background`` and ``rms`` maps, the mesh maps, the global values and the
        parameters.

    Raises
    ------
    InvalidInputError
        If ``image`` is not 2-D, ``mask``/``variance`` do not match its shape, every
        pixel is excluded, no mesh has enough unmasked pixels, or a parameter is out of
        range (the message names it).
    TypeError
        If ``image`` is not array-like.

    Notes
    -----
    **SExtractor statistic.** In each mesh the mean :math:`\mu` and standard deviation
    :math:`\sigma` of the unmasked pixels are computed, then recomputed from the pixels
    within :math:`\mu \pm 2\sigma`. A histogram spanning :math:`\mu \pm 5\sigma` with
    :math:`n = \min(4096, \lfloor\sqrt{2/\pi}\,\tfrac{5}{4} N + 1\rfloor)` bins is
    then clipped iteratively at :math:`\pm 3\sigma` about its median until
    :math:`\sigma` converges (relative change < 1e-4, at most 100 iterations). With the
    clipped histogram's mean :math:`\bar{x}`, median :math:`\tilde{x}` and
    standard deviation :math:`\sigma_h`,

    .. math::

        \mathrm{background} = \begin{cases}
            2.5\,\tilde{x} - 1.5\,\bar{x} & |\bar{x} - \tilde{x}| < 0.3\,\sigma_h \\
            \tilde{x} & \text{otherwise,}
        \end{cases}
        \qquad \mathrm{rms} = \sigma_h .

    The median of the histogram is interpolated within its bin as SExtractor does.

    **Bicubic interpolation.** Node :math:`k` lies at pixel
    :math:`(k + \tfrac12) b - \tfrac12`. Along y a natural cubic spline through each
    node column gives the nodes at the pixel row; along x a natural spline through those
    values gives the pixels; outside the outer nodes the end polynomial is extrapolated.
    The second-derivative recurrence is SExtractor's (which, for more than three nodes,
    is not exactly the textbook natural spline) and all of it runs in float32 like
    SExtractor, so ``background`` and ``rms`` agree with ``sep.Background(...).back()``
    and ``.rms()`` to float32 rounding.

    Differences from sep: a constant image gives ``global_rms = 0.0`` (sep reports the
    placeholder 1.0); a mesh whose clipped second pass would be empty keeps its
    first-pass statistics (sep returns NaN); if no mesh is valid an error is raised
    (sep returns 0 with rms 1).

    References
    ----------
    .. [1] Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor).
    .. [2] Barbary, K. 2016, JOSS 1(6), 58 (sep).
    .. [3] Akima, H. 1970, J. ACM 17, 589 (Akima interpolation).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.characterize import estimate_background
    >>> rng = np.random.default_rng(0)
    >>> yy, xx = np.mgrid[:256, :256]
    >>> sky = 1000.0 + 0.2 * xx                     # a gradient
    >>> img = (sky + rng.normal(0.0, 10.0, sky.shape)).astype(np.float32)
    >>> bkg = estimate_background(img, bin_size=32, interpolation="akima")
    >>> bool(np.abs(bkg.background - sky)[32:-32, 32:-32].max() < 5.0)
    True
    >>> float(np.median(bkg.rms)) > 9.0
    True
    """
    img = as_image(image, "image")
    out_dtype = image_dtype(img.dtype)
    check_in(statistic, "statistic", _STATISTICS)
    check_in(interpolation, "interpolation", _INTERPOLATIONS)
    bh, bw = _pair(bin_size, "bin_size")
    fh, fw = _pair(filter_size, "filter_size")
    oy, ox = _pair(6 if order is None else order, "order", minimum=0)
    for val, name in ((filter_threshold, "filter_threshold"), (sigma_clip, "sigma_clip")):
        if not (isinstance(val, (int, float, np.floating, np.integer)) and math.isfinite(val) and val >= 0):
            raise InvalidInputError(f"`{name}` must be a finite number >= 0; got {val!r}")
    if sigma_clip <= 0:
        raise InvalidInputError(f"`sigma_clip` must be > 0; got {sigma_clip!r}")
    if not (0.0 <= float(min_good_fraction) < 1.0):
        raise InvalidInputError(f"`min_good_fraction` must be in [0, 1); got {min_good_fraction!r}")
    for val, name in ((n_iter, "n_iter"), (detect_iterations, "detect_iterations"), (detect_grow, "detect_grow")):
        if isinstance(val, (bool, np.bool_)) or int(val) != val or val < 0:
            raise InvalidInputError(f"`{name}` must be an integer >= 0; got {val!r}")
    if not (detect_threshold > 0 and math.isfinite(detect_threshold)):
        raise InvalidInputError(f"`detect_threshold` must be finite and > 0; got {detect_threshold!r}")
    if not (detect_smooth > 0 and math.isfinite(detect_smooth)):
        raise InvalidInputError(f"`detect_smooth` must be finite and > 0; got {detect_smooth!r}")

    _, bad0 = _exclusion(img, mask, variance, bad_planes)
    if bad0.shape != img.shape:
        bad0 = np.zeros(img.shape, dtype=np.bool_) if detect_iterations else bad0
    if bad0.shape == img.shape and bad0.all():
        raise InvalidInputError("`mask` (with non-finite pixels) excludes every pixel of `image`; nothing to estimate")
    img32 = np.ascontiguousarray(img, dtype=np.float32)
    bad = bad0
    shape = img.shape
    for it in range(int(detect_iterations) + 1):
        back, sigma, valid = _mesh_statistics(img32, bad, bh, bw, statistic, float(sigma_clip), int(n_iter), float(min_good_fraction))
        if not K._fill_bad_meshes(back, sigma, valid):
            raise InvalidInputError(
                f"no mesh of `bin_size` {(bh, bw)} has more than {min_good_fraction:g} of its pixels unmasked; "
                "use a larger `bin_size`, a smaller `min_good_fraction` or a lighter `mask`"
            )
        fback = np.empty_like(back)
        fsigma = np.empty_like(sigma)
        K._median_filter_meshes(back, sigma, fh, fw, float(filter_threshold), fback, fsigma)
        out_b, out_s = _interpolate(fback, fsigma, bh, bw, shape, interpolation, (oy, ox))
        if it < detect_iterations:
            det = _detection_mask(img32 - out_b, out_s, bad0, float(detect_threshold), float(detect_smooth), int(detect_grow))
            new_bad = bad0 | det
            if (~new_bad).sum() == 0:
                break  # every pixel detected: keep the last estimate
            bad = new_bad
    global_b = _median_f32(fback)
    global_s = _median_f32(fsigma)
    if global_s <= 0.0:
        pos = fsigma[fsigma > 0]
        global_s = _median_f32(pos) if pos.size else 0.0
    params = {
        "bin_size": (bh, bw),
        "filter_size": (fh, fw),
        "filter_threshold": float(filter_threshold),
        "statistic": statistic,
        "interpolation": interpolation,
        "order": (oy, ox),
        "sigma_clip": float(sigma_clip),
        "n_iter": int(n_iter),
        "min_good_fraction": float(min_good_fraction),
        "detect_iterations": int(detect_iterations),
        "detect_threshold": float(detect_threshold),
        "detect_smooth": float(detect_smooth),
        "detect_grow": int(detect_grow),
    }
    return BackgroundResult(
        background=out_b.astype(out_dtype, copy=False),
        rms=out_s.astype(out_dtype, copy=False),
        mesh_background=fback,
        mesh_rms=fsigma,
        mesh_valid=valid,
        global_background=float(global_b),
        global_rms=float(global_s),
        n_excluded=int(bad.sum()) if bad.shape == shape else 0,
        params=params,
    )
