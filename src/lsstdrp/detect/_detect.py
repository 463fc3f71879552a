"""Source detection: PSF matched-filter thresholding with footprints and peaks, and a
SExtractor/sep-compatible extraction."""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._errors import InputDataWarning, InvalidInputError
from ..core import (
    DEFAULT_BAD_PLANES,
    MaskPlane,
    as_image,
    bad_pixel_mask,
    check_in,
    empty_catalog,
    normalize_mask,
    register_column,
)
from . import _kernels as K

__all__ = [
    "Detections",
    "detect_sources",
    "extract_sextractor",
    "significance_map",
    "SEXTRACTOR_FILTER",
    "PEAK_COLUMNS",
    "SEXTRACTOR_COLUMNS",
]

#: SExtractor's default detection filter (``default.conv``), normalised by sep/SExtractor.
SEXTRACTOR_FILTER = np.array([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=np.float32)
SEXTRACTOR_FILTER.flags.writeable = False

_PIX2 = u.pix**2
_E = u.electron

# -- registered columns ----------------------------------------------------------------
register_column("polarity", None, "i1", "detection polarity: +1 positive (S > threshold), -1 negative", source_schema=False)
register_column("iso_x2", _PIX2, "f8", "isophotal second moment <x x> about the barycentre (SExtractor X2_IMAGE)", source_schema=False)
register_column("iso_y2", _PIX2, "f8", "isophotal second moment <y y> (SExtractor Y2_IMAGE)", source_schema=False)
register_column("iso_xy", _PIX2, "f8", "isophotal second moment <x y> (SExtractor XY_IMAGE)", source_schema=False)
register_column("iso_errx2", _PIX2, "f8", "variance of the barycentre x (SExtractor ERRX2_IMAGE)", source_schema=False)
register_column("iso_erry2", _PIX2, "f8", "variance of the barycentre y (SExtractor ERRY2_IMAGE)", source_schema=False)
register_column("iso_errxy", _PIX2, "f8", "covariance of the barycentre x, y (SExtractor ERRXY_IMAGE)", source_schema=False)
register_column("iso_a", u.pix, "f8", "isophotal semi-major axis rms (SExtractor A_IMAGE)", source_schema=False)
register_column("iso_b", u.pix, "f8", "isophotal semi-minor axis rms (SExtractor B_IMAGE)", source_schema=False)
register_column("iso_theta", u.rad, "f8", "position angle of the major axis from +x towards +y (sep theta)", source_schema=False)
register_column("iso_cxx", u.pix**-2, "f8", "isophotal ellipse coefficient CXX (SExtractor CXX_IMAGE)", source_schema=False)
register_column("iso_cyy", u.pix**-2, "f8", "isophotal ellipse coefficient CYY (SExtractor CYY_IMAGE)", source_schema=False)
register_column("iso_cxy", u.pix**-2, "f8", "isophotal ellipse coefficient CXY (SExtractor CXY_IMAGE)", source_schema=False)
register_column("iso_flux", _E, "f8", "sum of the unfiltered pixels of the isophotal footprint (sep flux)", source_schema=False)
register_column("iso_cflux", _E, "f8", "sum of the filtered pixels of the isophotal footprint (sep cflux)", source_schema=False)
register_column("iso_cpeak", _E, "f8", "peak of the filtered image in the footprint (sep cpeak)", source_schema=False)
register_column("iso_npix_above", None, "i8", "pixels of the footprint above the threshold unfiltered (sep tnpix)", source_schema=False)
register_column("iso_thresh", _E, "f8", "detection threshold at the object, image units (sep thresh)", source_schema=False)
register_column("iso_xmin", None, "i8", "smallest x of the footprint (0-based)", source_schema=False)
register_column("iso_xmax", None, "i8", "largest x of the footprint (0-based)", source_schema=False)
register_column("iso_ymin", None, "i8", "smallest y of the footprint (0-based)", source_schema=False)
register_column("iso_ymax", None, "i8", "largest y of the footprint (0-based)", source_schema=False)
register_column("iso_xpeak", None, "i8", "x of the unfiltered peak pixel", source_schema=False)
register_column("iso_ypeak", None, "i8", "y of the unfiltered peak pixel", source_schema=False)
register_column("iso_xcpeak", None, "i8", "x of the filtered peak pixel", source_schema=False)
register_column("iso_ycpeak", None, "i8", "y of the filtered peak pixel", source_schema=False)
register_column("iso_flags", None, "i4", "sep extraction flags: 1 deblended, 2 truncated, 4 deblend overflow, 8 singular", source_schema=False)
register_column("iso_flag_merged", None, "?", "object is a deblended child of a larger detection", source_schema=False)
register_column("iso_flag_truncated", None, "?", "footprint touches the image edge", source_schema=False)
register_column("iso_flag_singular", None, "?", "moments were singular (1/12 px² added)", source_schema=False)
register_column("iso_flag_deblend_overflow", None, "?", "too many deblending branches; kept whole", source_schema=False)

#: Columns of :attr:`Detections.peaks`.
PEAK_COLUMNS = ("id", "footprint_id", "x", "y", "peak_value", "significance", "polarity")
#: Columns of the catalogue of :func:`extract_sextractor`.
SEXTRACTOR_COLUMNS = (
    "id", "x", "y", "x_err", "y_err", "xy_cov", "peak_value", "footprint_area",
    "iso_x2", "iso_y2", "iso_xy", "iso_errx2", "iso_erry2", "iso_errxy", "iso_a", "iso_b", "iso_theta",
    "iso_cxx", "iso_cyy", "iso_cxy", "iso_flux", "iso_cflux", "iso_cpeak", "iso_npix_above", "iso_thresh",
    "iso_xmin", "iso_xmax", "iso_ymin", "iso_ymax", "iso_xpeak", "iso_ypeak", "iso_xcpeak", "iso_ycpeak",
    "iso_flags", "iso_flag_merged", "iso_flag_truncated", "iso_flag_singular", "iso_flag_deblend_overflow",
)

_POLARITIES = ("positive", "negative", "both")
_F32 = np.float32


# ---------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """The result of :func:`detect_sources`.

    Attributes
    ----------
    footprints : numpy.ndarray of int32, shape (ny, nx)
        Footprint label of every pixel (after growth); 0 = no footprint. Positive
        footprints are numbered ``1..n_positive`` in raster order of their first pixel,
        negative ones ``n_positive + 1 ..``.
    peaks : astropy.table.QTable
        One row per peak, columns :data:`PEAK_COLUMNS`: ``id`` (1..n),
        ``footprint_id`` (the label in ``footprints``), ``x``, ``y`` (sub-pixel
        position of the peak of the significance map, 0-based), ``peak_value`` (image
        value at the peak pixel), ``significance`` (S at the peak pixel; negative for
        negative peaks) and ``polarity`` (+1 / -1). Sorted by footprint, then by
        decreasing ``|significance|``. Zero rows (full schema) when nothing is found.
    mask : numpy.ndarray of uint32, shape (ny, nx)
        The input mask (normalised; non-finite pixels ``NO_DATA``) with
        ``DETECTED`` / ``DETECTED_NEGATIVE`` set on the grown footprints (bits from an
        earlier detection are cleared first).
    significance : numpy.ndarray of float32 or None
        The matched-filter significance map S when requested
        (``return_significance=True``), else None.
    n_positive, n_negative : int
        Number of positive and negative footprints.
    params : dict
        Parameters used, for provenance.
    """

    footprints: np.ndarray
    peaks: QTable
    mask: np.ndarray
    significance: np.ndarray | None
    n_positive: int
    n_negative: int
    params: Mapping[str, Any]


# ---------------------------------------------------------------------------------------
# matched filter
# ---------------------------------------------------------------------------------------


def _psf_kernel(psf: Any, shape: tuple[int, int]) -> tuple[np.ndarray, float]:
    """The PSF kernel at the image centre (validated) and the PSF sigma in pixels."""
    if psf is None or not callable(getattr(psf, "kernel_image", None)):
        raise InvalidInputError(f"`psf` must satisfy the lsstdrp Psf protocol (kernel_image, moments); got {psf!r}")
    cy, cx = (shape[0] - 1) / 2.0, (shape[1] - 1) / 2.0
    k = np.asarray(psf.kernel_image(cx, cy), dtype=np.float64)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0 or not np.isfinite(k).all() or k.sum() <= 0:
        raise InvalidInputError(f"`psf`.kernel_image returned an invalid kernel of shape {k.shape}")
    try:
        ixx, iyy, ixy = (float(v) for v in psf.moments(cx, cy))
        sigma = (ixx * iyy - ixy * ixy) ** 0.25
    except Exception:  # noqa: BLE001 - fall back to the kernel's own moments
        sigma = float("nan")
    if not (math.isfinite(sigma) and sigma > 0):
        kk = k / k.sum()
        yy, xx = np.indices(k.shape, dtype=np.float64)
        my, mx = (kk * yy).sum(), (kk * xx).sum()
        vxx = (kk * (xx - mx) ** 2).sum()
        vyy = (kk * (yy - my) ** 2).sum()
        vxy = (kk * (xx - mx) * (yy - my)).sum()
        sigma = max(vxx * vyy - vxy * vxy, 1e-12) ** 0.25
    return k / k.sum(), float(sigma)


def _trim_kernel(k: np.ndarray, tol: float) -> np.ndarray:
    """Smallest centred sub-kernel keeping at least ``1 - tol`` of ``sum(k**2)``."""
    k2 = k * k
    total = k2.sum()
    ry, rx = k.shape[0] // 2, k.shape[1] // 2
    cy, cx = ry, rx
    r = max(ry, rx)
    for rr in range(0, r + 1):
        sub = k2[max(cy - rr, 0) : cy + rr + 1, max(cx - rr, 0) : cx + rr + 1]
        if sub.sum() >= (1.0 - tol) * total:
            return k[max(cy - rr, 0) : cy + rr + 1, max(cx - rr, 0) : cx + rr + 1].copy()
    return k.copy()


def _separable_terms(k: np.ndarray, tol: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rank-truncated SVD of ``k`` as (column taps, row taps) pairs, float32."""
    uu, ss, vt = np.linalg.svd(k)
    energy = ss**2
    cum = np.cumsum(energy)
    rank = int(np.searchsorted(cum, (1.0 - tol) * cum[-1]) + 1)
    rank = max(1, min(rank, ss.size))
    return [((uu[:, i] * ss[i]).astype(np.float32), vt[i].astype(np.float32)) for i in range(rank)]


def _correlate(src: np.ndarray, terms: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Correlation of ``src`` with the kernel sum of ``terms`` (zero outside), float32."""
    out = np.empty_like(src)
    for n, (col, row) in enumerate(terms):
        K._correlate_separable(src, np.ascontiguousarray(col), np.ascontiguousarray(row), out, n == 0)
    return out


def _edge_table(p: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum of ``p`` over the in-image taps, by row class and column class.

    Returns (table, row_class, col_class) with ``table[row_class[y], col_class[x]]`` the
    sum of ``p[i, j]`` over taps that fall inside an ``h x w`` image at pixel (y, x).
    """
    ky, kx = p.shape
    ry, rx = ky // 2, kx // 2

    def classes(n: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.arange(n)
        lo = np.maximum(0, r - pos)  # first valid tap
        hi = np.minimum(2 * r + 1, n - pos + r)  # one past the last valid tap
        pairs = lo * (2 * r + 2) + hi
        uniq, cls = np.unique(pairs, return_inverse=True)
        return cls, uniq // (2 * r + 2), uniq % (2 * r + 2)

    cy, ylo, yhi = classes(h, ry)
    cx, xlo, xhi = classes(w, rx)
    pre = np.zeros((ky + 1, kx + 1))
    pre[1:, 1:] = p.cumsum(0).cumsum(1)
    table = (pre[yhi[:, None], xhi[None, :]] - pre[ylo[:, None], xhi[None, :]]
             - pre[yhi[:, None], xlo[None, :]] + pre[ylo[:, None], xlo[None, :]])
    return table.astype(np.float32), cy.astype(np.int64), cx.astype(np.int64)


def _significance(
    img: np.ndarray, var: np.ndarray | float, bad: np.ndarray, kernel: np.ndarray, tol: float
) -> np.ndarray:
    """S = (I * psi) / sqrt(V * psi^2) with masked pixels at zero weight (float32)."""
    h, w = img.shape
    kt = _trim_kernel(kernel, tol)
    if kt.shape[0] > h or kt.shape[1] > w:
        raise InvalidInputError(
            f"`psf` kernel (effective size {kt.shape} after trimming to 1 - {tol:g} of its power) is larger "
            f"than `image` {img.shape}"
        )
    terms = _separable_terms(kt, tol)
    kt_eff = sum(np.outer(c.astype(np.float64), r.astype(np.float64)) for c, r in terms)
    any_bad = bool(bad.any())
    src = np.where(bad, _F32(0.0), img).astype(np.float32) if any_bad else np.ascontiguousarray(img, dtype=np.float32)
    num = _correlate(src, terms)
    p = kt_eff * kt_eff
    uniform = np.isscalar(var)
    if not uniform:
        vv = var[~bad]
        uniform = vv.size > 0 and bool((vv == vv.flat[0]).all())
        vconst = float(vv.flat[0]) if vv.size else 0.0
    else:
        vconst = float(var)
    if uniform and not any_bad:
        table, cy, cx = _edge_table(p, h, w)
        den_table = np.ascontiguousarray(table * _F32(vconst), dtype=np.float32)
        K._significance_table(num, den_table, cy, cx, num)  # in place
        return num
    if np.isscalar(var):
        vsrc = np.where(bad, _F32(0.0), _F32(vconst)).astype(np.float32)
    else:
        vsrc = np.where(bad, _F32(0.0), var).astype(np.float32)
    den = _correlate(vsrc, _separable_terms(p, tol * 1e-4))
    del vsrc
    K._significance(num, den, num)
    return num


def significance_map(
    image: Any,
    variance: Any,
    *,
    psf: Any,
    mask: Any = None,
    bad_planes: Any = None,
    kernel_tolerance: float = 1e-6,
) -> np.ndarray:
    r"""The PSF matched-filter significance map :math:`S` of an image.

    .. math::

        S = \frac{I \star \psi}{\sqrt{V \star \psi^2}},

    with :math:`\star` the correlation, :math:`\psi` the PSF kernel at the image centre,
    :math:`V` the variance, and masked pixels given zero weight in both terms. In each
    pixel :math:`S` is the signal-to-noise ratio of the PSF-weighted flux estimate
    centred there (Lupton et al.; the Rubin detection statistic), so a point source of
    flux :math:`F` at a pixel centre on uniform noise has :math:`E[S] = F
    \sqrt{\sum\psi^2 / V}`.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image (not modified).
    variance : float or array_like, shape (ny, nx)
        Per-pixel variance of ``image`` (image units squared).
    psf : Psf
        Any :class:`~lsstdrp.core.Psf`; its ``kernel_image`` at the image centre is
        used everywhere.
    mask : array_like of bool or uint32, optional
        Excluded pixels (True) or MaskPlane bits selected by ``bad_planes``.
    bad_planes : optional
        Excluding bits (default :data:`~lsstdrp.core.DEFAULT_BAD_PLANES`).
    kernel_tolerance : float
        The kernel is trimmed to the smallest centred square keeping ``1 -
        kernel_tolerance`` of :math:`\sum\psi^2` and applied as a sum of separable terms
        from its singular value decomposition, truncated at the same fraction of its
        power. :math:`S` is the exact S/N of the filter actually applied; it differs
        from the full kernel's by at most about ``sqrt(kernel_tolerance)`` times the S/N
        of the brightest source within the kernel's reach (1e-3 of it by default), and
        the loss of sensitivity is about ``kernel_tolerance / 2``.

    Returns
    -------
    numpy.ndarray of float32, shape (ny, nx)
        :math:`S`; 0 where every tap is masked.

    Raises
    ------
    InvalidInputError
        Mismatched shapes, a PSF kernel larger than the image, all pixels excluded,
        zero variance everywhere.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.detect import significance_map
    >>> psf = GaussianPsf(2.0)
    >>> k = psf.kernel_image(0.0, 0.0)                  # 25 x 25, unit sum
    >>> img = np.zeros((64, 64), np.float32)
    >>> img[16:41, 16:41] = 100.0 * k                   # a star of flux 100 at (28, 28)
    >>> s = significance_map(img, 1.0, psf=psf)         # unit variance
    >>> int(np.argmax(s)) == 28 * 64 + 28
    True
    >>> expected = 100.0 * np.sqrt((k**2).sum())        # F sqrt(sum psi^2 / V)
    >>> bool(abs(s.max() - expected) < 1e-3 * expected)
    True
    """
    img, var, mplane, bad = _prepare(image, variance, mask, bad_planes)
    kernel, _ = _psf_kernel(psf, img.shape)
    return _significance(img, var, bad, kernel, _check_tol(kernel_tolerance))


def _check_tol(tol: Any) -> float:
    if not (isinstance(tol, (int, float, np.floating)) and 0 < float(tol) < 0.1):
        raise InvalidInputError(f"`kernel_tolerance` must be in (0, 0.1); got {tol!r}")
    return float(tol)


def _prepare(image: Any, variance: Any, mask: Any, bad_planes: Any) -> tuple[np.ndarray, Any, np.ndarray, np.ndarray]:
    img = as_image(image, "image")
    if variance is None:
        raise TypeError("`variance` is None; expected a scalar or an array of the image shape")
    if np.ndim(variance) == 0:
        try:
            vs = float(variance)
        except (TypeError, ValueError):
            raise InvalidInputError(f"`variance` must be a number or an array; got {variance!r}") from None
        if not (math.isfinite(vs) and vs > 0):
            raise InvalidInputError(f"`variance` must be finite and > 0 when a scalar; got {variance!r}")
        var: Any = vs
        var_arr = None
    else:
        var_arr = as_image(variance, "variance")
        if var_arr.shape != img.shape:
            raise InvalidInputError(f"`variance` has shape {var_arr.shape}; it must match `image` {img.shape}")
        var = var_arr
    mplane = normalize_mask(mask, img.shape, image=img, variance=var_arr)
    bad = bad_pixel_mask(mplane, DEFAULT_BAD_PLANES if bad_planes is None else bad_planes)
    bad |= (mplane & np.uint32(MaskPlane.NO_DATA)) != 0
    if bad.all():
        raise InvalidInputError("`mask` (with non-finite pixels) excludes every pixel of `image`")
    if var_arr is not None:
        good_var = var_arr[~bad]
        if not (good_var > 0).any():
            raise InvalidInputError("`variance` is zero at every unmasked pixel; the significance is undefined")
        var = np.where(bad, 0.0, var_arr).astype(np.float32)
    return img, var, mplane, bad


# ---------------------------------------------------------------------------------------
# detect_sources
# ---------------------------------------------------------------------------------------


def _label(binary: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    ry, rx0, rx1 = K._runs(binary)
    run_label, n = K._label_runs(ry, rx0, rx1)
    return ry, rx0, rx1, run_label, int(n)


def _polarity_footprints(
    sig: np.ndarray, sign: float, threshold: float, min_pixels: int, deblend_nthresh: int, deblend_mincont: float,
    first_label: int, labels: np.ndarray,
) -> int:
    """Label the footprints of one polarity into ``labels``; return how many."""
    binary = (sig > threshold) if sign > 0 else (sig < -threshold)
    if not binary.any():
        return 0
    ry, rx0, rx1, run_label, n = _label(binary)
    count, ymax, xend = K._component_stats(ry, rx0, rx1, run_label, n)
    keep = count[1:] >= min_pixels
    lab_map = np.zeros(n + 1, dtype=np.int64)
    nkeep = int(keep.sum())
    if nkeep == 0:
        return 0
    if deblend_nthresh < 2:
        lab_map[1:][keep] = np.arange(first_label, first_label + nkeep)
        K._paint_runs(ry, rx0, rx1, run_label, lab_map, labels)
        return nkeep
    # multi-threshold split of each footprint on the significance values
    keep_index = np.full(n + 1, -1, dtype=np.int64)
    keep_index[1:][keep] = np.arange(nkeep)
    sizes = count[1:][keep]
    offsets = np.zeros(nkeep + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    py = np.empty(offsets[-1], dtype=np.int64)
    px = np.empty(offsets[-1], dtype=np.int64)
    K._gather_pixels(ry, rx0, rx1, run_label, keep_index, offsets, py, px)
    vals = (sign * sig[py, px]).astype(np.float32)
    var = np.zeros_like(vals)
    thr = np.full(vals.shape, _F32(threshold), dtype=np.float32)
    tobj = np.full(nkeep, _F32(threshold), dtype=np.float32)
    edge = np.zeros(nkeep, dtype=np.int64)
    h, w = sig.shape
    _, _, _, _, _, pix_out = K._extract_objects(
        py, px, vals, vals, var, thr, offsets, tobj, int(deblend_nthresh), float(deblend_mincont), int(min_pixels),
        0.0, w, h, edge,
    )
    # renumber children in raster order of their first pixel
    nchild = int(pix_out.max()) + 1
    first = np.full(nchild, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, pix_out, py * w + px)
    new = np.empty(nchild, dtype=np.int64)
    new[np.argsort(first, kind="stable")] = np.arange(first_label, first_label + nchild)
    labels[py, px] = new[pix_out].astype(np.int32)
    return nchild


def _refine(sig: np.ndarray, ys: np.ndarray, xs: np.ndarray, sign: float) -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel peak position from parabolas through the 3 values along x and along y."""
    h, w = sig.shape
    s = sign * sig

    def offset(c: np.ndarray, lo: np.ndarray, hi: np.ndarray, ok: np.ndarray) -> np.ndarray:
        den = lo - 2.0 * c + hi
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(ok & (den < 0), 0.5 * (lo - hi) / den, 0.0)
        return np.clip(d, -0.5, 0.5)

    c = s[ys, xs].astype(np.float64)
    okx = (xs > 0) & (xs < w - 1)
    oky = (ys > 0) & (ys < h - 1)
    xl = s[ys, np.maximum(xs - 1, 0)].astype(np.float64)
    xr = s[ys, np.minimum(xs + 1, w - 1)].astype(np.float64)
    yl = s[np.maximum(ys - 1, 0), xs].astype(np.float64)
    yr = s[np.minimum(ys + 1, h - 1), xs].astype(np.float64)
    return xs + offset(c, xl, xr, okx), ys + offset(c, yl, yr, oky)


def detect_sources(
    image: Any,
    variance: Any,
    *,
    psf: Any,
    threshold: float = 5.0,
    mask: Any = None,
    bad_planes: Any = None,
    polarity: str = "positive",
    grow: float = 1.0,
    min_pixels: int = 1,
    deblend_nthresh: int = 0,
    deblend_mincont: float = 0.005,
    kernel_tolerance: float = 1e-6,
    return_significance: bool = False,
) -> Detections:
    r"""Detect sources on the PSF matched-filter significance map.

    Computes :math:`S = (I \star \psi)/\sqrt{V \star \psi^2}` (see
    :func:`significance_map`), thresholds it at ``threshold`` (in units of its own
    noise, i.e. the S/N of a PSF-fitted flux), finds the 8-connected footprints of
    each polarity, the peaks of :math:`S` inside them, and grows the footprints by
    ``grow`` times the PSF sigma.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Background-subtracted image (any real dtype; not modified). Non-finite pixels
        are masked ``NO_DATA`` (with an :class:`~lsstdrp.InputDataWarning`) and never
        spread.
    variance : float or array_like, shape (ny, nx)
        Variance of ``image`` in image units squared (a scalar for uniform noise).
    psf : Psf
        Any :class:`~lsstdrp.core.Psf`; the kernel at the image centre is the filter
        and its adaptive-moment size sets the growth radius.
    threshold : float
        Detection threshold on :math:`|S|` (> 0).
    mask : array_like of bool or uint32, optional
        Excluded pixels (True) or :class:`~lsstdrp.core.MaskPlane` bits selected by
        ``bad_planes``; excluded pixels get zero weight in :math:`S`.
    bad_planes : optional
        Excluding bits for a MaskPlane ``mask`` (default
        :data:`~lsstdrp.core.DEFAULT_BAD_PLANES`).
    polarity : {"positive", "negative", "both"}
        Detect :math:`S > t`, :math:`S < -t` or both. Negative footprints get their own
        labels (after the positive ones) and ``DETECTED_NEGATIVE``.
    grow : float
        Footprints are grown by ``grow * sigma_psf`` pixels (Euclidean), with
        :math:`\sigma_\mathrm{psf} = (I_{xx}I_{yy} - I_{xy}^2)^{1/4}` from
        ``psf.moments``; where grown footprints meet, a pixel goes to the nearest. 0
        disables growth.
    min_pixels : int
        Footprints with fewer pixels above threshold (before growth) are dropped.
    deblend_nthresh : int
        If >= 2, split footprints with SExtractor's multi-threshold tree on :math:`S`
        (``deblend_nthresh - 1`` exponentially spaced levels between the threshold
        and the footprint's peak); a split needs two branches each holding more than
        ``deblend_mincont`` of the footprint's summed :math:`S` above their level.
        Unassigned pixels go to the most probable branch. 0 (default): no split.
    deblend_mincont : float
        Minimum contrast of the split, in [0, 1].
    kernel_tolerance : float
        Kernel trimming / separable-approximation tolerance (see
        :func:`significance_map`).
    return_significance : bool
        Keep :math:`S` in :attr:`Detections.significance`.

    Returns
    -------
    Detections
        ``footprints`` (int32 labels), ``peaks`` (QTable: id, footprint_id, x, y,
        peak_value, significance, polarity), ``mask`` (uint32 with ``DETECTED`` /
        ``DETECTED_NEGATIVE``), ``significance`` (optional).

    Raises
    ------
    InvalidInputError
        Mismatched shapes (naming the argument), a PSF larger than the image, every
        pixel masked, zero variance everywhere, or an out-of-range parameter.
    TypeError
        If ``image`` or ``variance`` is None or not array-like.

    Notes
    -----
    Peaks are the local maxima of :math:`S` (minima for negative footprints) among the
    8 neighbours, so close neighbours inside one footprint are separate peaks; on a
    plateau the first pixel in raster order is kept. ``x, y`` refine the peak pixel
    by a parabola through the three values along each axis (offset clipped to +/-0.5
    px). Everything is translation equivariant away from the image edges.

    On pure noise, :math:`S` is a unit-variance Gaussian random field whose correlation
    is :math:`(\psi \star \psi)/\sum\psi^2`; the expected number of noise peaks above
    ``threshold`` follows from it (the tests check it).

    References
    ----------
    .. [1] Lupton, R. et al. 2001, ASP Conf. Ser. 238, 269 (SDSS photometric pipeline:
       matched-filter detection).
    .. [2] Bosch, J. et al. 2018, PASJ 70, S5 (HSC pipeline: detection on the PSF-
       convolved image, peaks and footprints).
    .. [3] Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (multi-threshold deblending).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.detect import detect_sources
    >>> psf = GaussianPsf(1.5)
    >>> rng = np.random.default_rng(3)
    >>> img = rng.normal(0.0, 1.0, (96, 96)).astype(np.float32)
    >>> stamp = psf.image(40.0, 50.0, shape=15)
    >>> img[43:58, 33:48] += 200.0 * stamp.astype(np.float32)
    >>> det = detect_sources(img, 1.0, psf=psf, threshold=5.0)
    >>> len(det.peaks), det.n_positive
    (1, 1)
    >>> peak = det.peaks[0]
    >>> bool(abs(peak["x"].value - 40.0) < 0.2 and abs(peak["y"].value - 50.0) < 0.2)
    True
    >>> det.footprints.dtype, int(det.footprints.max())
    (dtype('int32'), 1)
    """
    check_in(polarity, "polarity", _POLARITIES)
    if not (isinstance(threshold, (int, float, np.floating, np.integer)) and math.isfinite(threshold) and threshold > 0):
        raise InvalidInputError(f"`threshold` must be finite and > 0; got {threshold!r}")
    if not (isinstance(grow, (int, float, np.floating, np.integer)) and math.isfinite(grow) and grow >= 0):
        raise InvalidInputError(f"`grow` must be finite and >= 0; got {grow!r}")
    for val, name, lo in ((min_pixels, "min_pixels", 1), (deblend_nthresh, "deblend_nthresh", 0)):
        if isinstance(val, (bool, np.bool_)) or int(val) != val or val < lo:
            raise InvalidInputError(f"`{name}` must be an integer >= {lo}; got {val!r}")
    if not (0.0 <= float(deblend_mincont) <= 1.0):
        raise InvalidInputError(f"`deblend_mincont` must be in [0, 1]; got {deblend_mincont!r}")
    tol = _check_tol(kernel_tolerance)
    img, var, mplane, bad = _prepare(image, variance, mask, bad_planes)
    kernel, psf_sigma = _psf_kernel(psf, img.shape)
    sig = _significance(img, var, bad, kernel, tol)
    h, w = img.shape
    labels = np.zeros((h, w), dtype=np.int32)
    t = float(threshold)
    n_pos = n_neg = 0
    if polarity in ("positive", "both"):
        n_pos = _polarity_footprints(sig, 1.0, t, int(min_pixels), int(deblend_nthresh), float(deblend_mincont), 1, labels)
    if polarity in ("negative", "both"):
        n_neg = _polarity_footprints(sig, -1.0, t, int(min_pixels), int(deblend_nthresh), float(deblend_mincont),
                                     n_pos + 1, labels)
    # peaks (before growth, on the thresholded footprints)
    rows_y, rows_x, rows_s = [], [], []
    for sign, active in ((1.0, n_pos > 0), (-1.0, n_neg > 0)):
        if not active:
            continue
        lo, hi = (n_pos + 1, n_pos + n_neg) if sign < 0 else (1, n_pos)
        ys, xs = K._find_peaks(sig, labels, lo, hi, sign)
        rows_y.append(ys)
        rows_x.append(xs)
        rows_s.append(np.full(ys.size, sign))
    ys = np.concatenate(rows_y) if rows_y else np.empty(0, np.int64)
    xs = np.concatenate(rows_x) if rows_x else np.empty(0, np.int64)
    sg = np.concatenate(rows_s) if rows_s else np.empty(0)
    fid = labels[ys, xs].astype(np.int64)
    svals = sig[ys, xs].astype(np.float64)
    order = np.lexsort((-np.abs(svals), fid))
    ys, xs, sg, fid, svals = ys[order], xs[order], sg[order], fid[order], svals[order]
    xr = np.empty(ys.size)
    yr = np.empty(ys.size)
    for sign in (1.0, -1.0):
        sel = sg == sign
        if sel.any():
            xr[sel], yr[sel] = _refine(sig, ys[sel], xs[sel], sign)
    # growth
    radius = min(float(grow) * psf_sigma, 250.0)
    if radius >= 1.0 and (n_pos + n_neg) > 0:
        grown = labels.copy()
        K._grow_footprints(labels, radius, grown)
        labels = grown
    out_mask = mplane  # a new array made by normalize_mask: safe to update in place
    K._set_detection_bits(out_mask, labels, n_pos, np.uint32(MaskPlane.DETECTED | MaskPlane.DETECTED_NEGATIVE),
                          np.uint32(MaskPlane.DETECTED), np.uint32(MaskPlane.DETECTED_NEGATIVE))
    params = {
        "threshold": t, "polarity": polarity, "grow": float(grow), "grow_radius_pix": radius,
        "psf_sigma_pix": psf_sigma, "min_pixels": int(min_pixels), "deblend_nthresh": int(deblend_nthresh),
        "deblend_mincont": float(deblend_mincont), "kernel_tolerance": tol,
    }
    peaks = empty_catalog(ys.size, columns=PEAK_COLUMNS, meta={"stage": "detect.detect_sources", **params})
    _fill(peaks, "id", np.arange(1, ys.size + 1, dtype=np.int64))
    _fill(peaks, "footprint_id", fid)
    _fill(peaks, "x", xr)
    _fill(peaks, "y", yr)
    _fill(peaks, "peak_value", img[ys, xs].astype(np.float64))
    _fill(peaks, "significance", svals)
    _fill(peaks, "polarity", sg.astype(np.int8))
    return Detections(
        footprints=labels,
        peaks=peaks,
        mask=out_mask,
        significance=sig if return_significance else None,
        n_positive=int(n_pos),
        n_negative=int(n_neg),
        params=params,
    )


# ---------------------------------------------------------------------------------------
# SExtractor-compatible extraction
# ---------------------------------------------------------------------------------------


def _normalized_filter(kernel: Any) -> np.ndarray:
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim != 2 or k.size == 0 or not np.isfinite(k).all():
        raise InvalidInputError(f"`filter_kernel` must be a finite 2-D array; got shape {k.shape}")
    s = np.float32(0.0)
    for v in k.ravel():
        s = np.float32(np.float64(s) + abs(np.float64(v)))
    if s == 0:
        raise InvalidInputError("`filter_kernel` sums to zero")
    return np.ascontiguousarray((k / s).astype(np.float32))


def extract_sextractor(
    image: Any,
    *,
    background: Any = None,
    thresh: float = 1.5,
    err: Any = None,
    mask: Any = None,
    bad_planes: Any = None,
    minarea: int = 5,
    filter_kernel: Any = SEXTRACTOR_FILTER,
    filter_type: str = "matched",
    deblend_nthresh: int = 32,
    deblend_mincont: float = 0.005,
    clean: bool = True,
    clean_param: float = 1.0,
    gain: float | None = None,
) -> QTable:
    r"""Extract sources exactly as SExtractor / sep do (isophotal detection and moments).

    The SExtractor-compatible mode of lsstdrp: background subtraction (optional),
    filtering of the image with ``filter_kernel``, detection of the 8-connected groups
    of at least ``minarea`` pixels whose *filtered* value exceeds ``thresh`` times the
    *unfiltered* pixel noise, multi-threshold deblending, isophotal measurements and
    cleaning, reproducing ``sep.extract`` (Barbary 2016) and SExtractor 2.x (Bertin &
    Arnouts 1996). Use it to reproduce an existing SExtractor catalogue; for new work
    :func:`detect_sources` (matched filter with the actual PSF, S/N threshold) detects
    faint point sources better.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The image (not modified). It is processed in float32, as SExtractor does.
        Non-finite pixels are masked ``NO_DATA``.
    background : BackgroundResult, array_like or float, optional
        Subtracted from ``image`` first (float32, like ``sep.Background.subfrom``). A
        :class:`~lsstdrp.characterize.BackgroundResult` also supplies the noise when
        ``err`` is None: its ``global_rms`` (SExtractor's default). None: ``image`` is
        already background subtracted.
    thresh : float
        Detection threshold in units of ``err`` (SExtractor DETECT_THRESH in sigma).
    err : float or array_like, optional
        1-sigma noise of the unfiltered pixels: a scalar (the threshold is then
        ``thresh * err`` on the filtered image) or a per-pixel array (the threshold
        varies; with ``filter_type="matched"`` the detection image is sep's matched
        filter :math:`\sum k I/\sigma^2 / \sqrt{\sum k^2/\sigma^2}` compared with
        ``thresh``). Required unless ``background`` is a BackgroundResult.
    mask : array_like of bool or uint32, optional
        Masked pixels are set to 0 before filtering (and, with an ``err`` array, to
        infinite noise), as in sep.
    bad_planes : optional
        Excluding bits for a MaskPlane ``mask`` (default
        :data:`~lsstdrp.core.DEFAULT_BAD_PLANES`).
    minarea : int
        Minimum number of pixels of an object (DETECT_MINAREA).
    filter_kernel : array_like or None
        Detection filter, normalised by the sum of its absolute values; default
        SExtractor's 3x3 ``[[1, 2, 1], [2, 4, 2], [1, 2, 1]]``. None: no filtering.
    filter_type : {"matched", "conv"}
        How an ``err`` array enters the filtering (as sep); equivalent for a scalar.
    deblend_nthresh : int
        Number of deblending thresholds (DEBLEND_NTHRESH).
    deblend_mincont : float
        Minimum contrast for a split (DEBLEND_MINCONT); 1.0 disables deblending.
    clean : bool
        Remove detections explained by a brighter neighbour's wings (CLEAN).
    clean_param : float
        CLEAN_PARAM (the Moffat-like exponent of the wing model).
    gain : float, optional
        Electrons per image unit; adds Poisson noise to the moment errors only.

    Returns
    -------
    astropy.table.QTable
        One row per object, in SExtractor's order (objects as the raster scan completes
        them; deblended children in tree order), columns :data:`SEXTRACTOR_COLUMNS`:
        ``x, y`` (isophotal barycentre of the filtered image, 0-based; subtract 1 from
        SExtractor's X_IMAGE), ``x_err, y_err, xy_cov`` (from ERRX2 etc.),
        ``peak_value`` (unfiltered peak), ``footprint_area`` (pixels, sep ``npix``),
        ``iso_x2, iso_y2, iso_xy, iso_errx2, iso_erry2, iso_errxy, iso_a, iso_b,
        iso_theta, iso_cxx, iso_cyy, iso_cxy`` (sep names without the prefix),
        ``iso_flux``/``iso_cflux`` (sep ``flux``/``cflux``), ``iso_cpeak``,
        ``iso_npix_above`` (``tnpix``), ``iso_thresh``, bounding box and peak pixels,
        ``iso_flags`` (sep bits: 1 deblended, 2 truncated, 4 deblend overflow, 8
        singular) and the boolean ``iso_flag_*`` columns. Zero rows (full schema) if
        nothing is detected.

    Raises
    ------
    InvalidInputError
        No noise given (``err`` None without a BackgroundResult), zero/negative or
        non-finite ``err`` or ``thresh``, mismatched shapes, bad parameters.

    Notes
    -----
    The pixel arithmetic (filtering, thresholds, moments) is SExtractor's, in float32
    where SExtractor uses ``float``:

    .. math::

        \bar{x} = \frac{\sum_i f_i x_i}{\sum_i f_i},\quad
        \overline{x^2} = \frac{\sum_i f_i x_i^2}{\sum_i f_i} - \bar{x}^2,\quad
        \sigma^2_{\bar x} = \frac{\sum_i \sigma_i^2 (x_i - \bar x)^2}{(\sum_i f_i)^2},

    with :math:`f_i` the *filtered* values of the footprint pixels. Differences from
    sep, by design: pixels left over by a deblending split go to the most probable
    branch instead of a random draw (results are reproducible; sep's own test disables
    deblending for the same reason); CLEAN's ``mthresh`` is exactly the
    ``minarea``-th brightest pixel above threshold (sep's heap skips one pixel); an
    object whose deblending tree overflows is kept whole and flagged instead of
    aborting the extraction; there is no global pixel-stack limit.

    References
    ----------
    .. [1] Bertin, E. & Arnouts, S. 1996, A&AS 117, 393 (SExtractor).
    .. [2] Barbary, K. 2016, JOSS 1(6), 58 (sep).
    .. [3] Lutz, R. K. 1980, Comput. J. 23, 262 (one-pass connected components).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.detect import extract_sextractor
    >>> rng = np.random.default_rng(0)
    >>> img = rng.normal(0.0, 1.0, (64, 64)).astype(np.float32)
    >>> yy, xx = np.mgrid[:64, :64]
    >>> img += (50.0 * np.exp(-((xx - 20.3) ** 2 + (yy - 40.6) ** 2) / 4.0)).astype(np.float32)
    >>> cat = extract_sextractor(img, thresh=3.0, err=1.0)
    >>> len(cat)
    1
    >>> bool(abs(cat["x"][0].value - 20.3) < 0.1 and abs(cat["y"][0].value - 40.6) < 0.1)
    True
    >>> cat["iso_x2"].unit, int(cat["footprint_area"][0]) > 5
    (Unit("pix2"), True)
    """
    img = as_image(image, "image")
    h, w = img.shape
    check_in(filter_type, "filter_type", ("matched", "conv"))
    for val, name, lo in ((minarea, "minarea", 1), (deblend_nthresh, "deblend_nthresh", 1)):
        if isinstance(val, (bool, np.bool_)) or int(val) != val or val < lo:
            raise InvalidInputError(f"`{name}` must be an integer >= {lo}; got {val!r}")
    if not (0.0 <= float(deblend_mincont) <= 1.0):
        raise InvalidInputError(f"`deblend_mincont` must be in [0, 1]; got {deblend_mincont!r}")
    if not (isinstance(thresh, (int, float, np.floating, np.integer)) and math.isfinite(thresh)):
        raise InvalidInputError(f"`thresh` must be a finite number; got {thresh!r}")
    if not (isinstance(clean_param, (int, float, np.floating, np.integer)) and clean_param > 0):
        raise InvalidInputError(f"`clean_param` must be > 0; got {clean_param!r}")
    gain_v = 0.0 if gain is None else float(gain)
    if not (math.isfinite(gain_v) and gain_v >= 0):
        raise InvalidInputError(f"`gain` must be finite and >= 0; got {gain!r}")

    work = np.array(img, dtype=np.float32)  # a new float32 copy, as sep converts to float
    global_rms = None
    if background is not None:
        if hasattr(background, "background") and hasattr(background, "global_rms"):
            bmap = np.asarray(background.background)
            global_rms = float(background.global_rms)
        else:
            bmap = np.asarray(background)
        if bmap.ndim == 0:
            work -= np.float32(bmap)
        else:
            if bmap.shape != img.shape:
                raise InvalidInputError(f"`background` has shape {bmap.shape}; it must match `image` {img.shape}")
            work -= bmap.astype(np.float32)
    if err is None:
        if global_rms is None:
            raise InvalidInputError(
                "`err` is None and `background` is not a BackgroundResult: give the pixel noise `err` "
                "(thresh is in units of it)"
            )
        err = global_rms
    mplane = normalize_mask(mask, img.shape, image=img)
    bad = bad_pixel_mask(mplane, DEFAULT_BAD_PLANES if bad_planes is None else bad_planes)
    bad |= (mplane & np.uint32(MaskPlane.NO_DATA)) != 0
    if np.ndim(err) == 0:
        e = float(err)
        if not (math.isfinite(e) and e > 0):
            raise InvalidInputError(f"`err` must be finite and > 0; got {err!r}")
        err_arr = None
    else:
        err_arr = as_image(err, "err", dtype=np.float32)
        if err_arr.shape != img.shape:
            raise InvalidInputError(f"`err` has shape {err_arr.shape}; it must match `image` {img.shape}")
        nonpos = ~np.isfinite(err_arr) | (err_arr <= 0)
        newly = nonpos & ~bad
        if newly.any():
            warnings.warn(
                f"lsstdrp: {int(newly.sum())} pixel(s) with non-finite or non-positive `err` were masked NO_DATA",
                InputDataWarning, stacklevel=2,
            )
            bad |= nonpos
    work[bad] = 0.0
    conv = None if filter_kernel is None else _normalized_filter(filter_kernel)
    relthresh = np.float32(thresh)
    if err_arr is None:
        pixsig = np.float32(e)
        pixvar = np.float32(pixsig * pixsig)
        thr_abs = np.float32(relthresh * pixsig)
        cd = work if conv is None else _filtered(work, conv)
        det = cd > thr_abs
        thr_pix = None
    else:
        pixsig_arr = np.where(bad, np.float32(1e30), err_arr).astype(np.float32)
        with np.errstate(over="ignore"):
            var_arr = (pixsig_arr * pixsig_arr).astype(np.float32)
            thr_pix = (relthresh * pixsig_arr).astype(np.float32)
        if conv is None:
            cd = work
            det = cd > thr_pix
        else:
            cd = _filtered(work, conv)
            if filter_type == "matched":
                sigmap = np.empty_like(work)
                K._sep_matched_filter(work, var_arr, conv, sigmap)
                det = sigmap > relthresh
            else:
                det = cd > thr_pix
    params = {
        "thresh": float(thresh), "minarea": int(minarea), "filter_type": filter_type,
        "deblend_nthresh": int(deblend_nthresh), "deblend_mincont": float(deblend_mincont),
        "clean": bool(clean), "clean_param": float(clean_param), "gain": gain_v,
        "err": float(e) if err_arr is None else "array",
        "filter_kernel": None if conv is None else conv.tolist(),
    }
    meta = {"stage": "detect.extract_sextractor", **params}
    if not det.any():
        return empty_catalog(0, columns=SEXTRACTOR_COLUMNS, meta=meta)
    offsets, py, px, edge_flag = K._lutz_image(det, int(minarea))
    nobj = offsets.size - 1
    if nobj == 0:
        return empty_catalog(0, columns=SEXTRACTOR_COLUMNS, meta=meta)
    sizes = np.diff(offsets)
    val = work[py, px]
    cdv = cd[py, px]
    if err_arr is None:
        varv = np.full(py.shape, pixvar, dtype=np.float32)
        thrv = np.full(py.shape, thr_abs, dtype=np.float32)
        tobj = np.full(nobj, thr_abs, dtype=np.float32)
    else:
        varv = var_arr[py, px]
        thrv = thr_pix[py, px]
        sums = np.add.reduceat(thrv.astype(np.float64), offsets[:-1])
        tobj = (sums / sizes).astype(np.float32)
    results, flags, othr, omth, _, _ = K._extract_objects(
        py, px, val, cdv, varv, thrv, offsets, tobj, int(deblend_nthresh), float(deblend_mincont), int(minarea),
        gain_v, w, h, edge_flag,
    )
    if clean and results.shape[0] > 1:
        r = results
        keep_rows = K._clean(
            r[:, 14].copy(), r[:, 15].copy(), r[:, 22].astype(np.float32), r[:, 23].astype(np.float32),
            r[:, 25].astype(np.float32), r[:, 26].astype(np.float32), r[:, 27].astype(np.float32),
            r[:, 28].astype(np.float32), r[:, 1].astype(np.float32), r[:, 0].astype(np.int64), othr, omth,
            float(clean_param), np.argsort(r[:, 14], kind="stable"),
        )
        results, flags, othr = results[keep_rows], flags[keep_rows], othr[keep_rows]
    return _sextractor_table(results, flags, othr, meta)


def _filtered(work: np.ndarray, conv: np.ndarray) -> np.ndarray:
    out = np.empty_like(work)
    K._sep_convolve(work, conv, out)
    return out


def _fill(cat: QTable, name: str, values: Any) -> None:
    """Write ``values`` into an existing column, keeping its unit, dtype and description."""
    col = cat[name]
    if isinstance(col, u.Quantity):
        col[...] = u.Quantity(values, col.unit)
    else:
        col[...] = values


def _sextractor_table(r: np.ndarray, flags: np.ndarray, thr: np.ndarray, meta: dict) -> QTable:
    n = r.shape[0]
    cat = empty_catalog(n, columns=SEXTRACTOR_COLUMNS, meta=meta)
    if n == 0:
        return cat
    _fill(cat, "id", np.arange(1, n + 1, dtype=np.int64))
    _fill(cat, "x", r[:, 14])
    _fill(cat, "y", r[:, 15])
    _fill(cat, "iso_x2", r[:, 16])
    _fill(cat, "iso_y2", r[:, 17])
    _fill(cat, "iso_xy", r[:, 18])
    _fill(cat, "iso_errx2", r[:, 19])
    _fill(cat, "iso_erry2", r[:, 20])
    _fill(cat, "iso_errxy", r[:, 21])
    with np.errstate(invalid="ignore"):
        _fill(cat, "x_err", np.sqrt(r[:, 19]))
        _fill(cat, "y_err", np.sqrt(r[:, 20]))
    _fill(cat, "xy_cov", r[:, 21])
    _fill(cat, "iso_a", r[:, 22])
    _fill(cat, "iso_b", r[:, 23])
    _fill(cat, "iso_theta", r[:, 24])
    _fill(cat, "iso_cxx", r[:, 25])
    _fill(cat, "iso_cyy", r[:, 26])
    _fill(cat, "iso_cxy", r[:, 27])
    _fill(cat, "iso_cflux", r[:, 1])
    _fill(cat, "iso_flux", r[:, 13])
    _fill(cat, "iso_cpeak", r[:, 2])
    _fill(cat, "peak_value", r[:, 3])
    _fill(cat, "footprint_area", r[:, 0].astype(np.int64))
    _fill(cat, "iso_npix_above", r[:, 12].astype(np.int64))
    _fill(cat, "iso_thresh", thr.astype(np.float64))
    for col, k in (("iso_xpeak", 4), ("iso_ypeak", 5), ("iso_xcpeak", 6), ("iso_ycpeak", 7),
                   ("iso_xmin", 8), ("iso_xmax", 9), ("iso_ymin", 10), ("iso_ymax", 11)):
        _fill(cat, col, r[:, k].astype(np.int64))
    _fill(cat, "iso_flags", flags.astype(np.int32))
    _fill(cat, "iso_flag_merged", (flags & K.OBJ_MERGED) != 0)
    _fill(cat, "iso_flag_truncated", (flags & K.OBJ_TRUNC) != 0)
    _fill(cat, "iso_flag_singular", (flags & K.OBJ_SINGU) != 0)
    _fill(cat, "iso_flag_deblend_overflow", (flags & K.OBJ_DOVERFLOW) != 0)
    return cat
