"""``measure_sources``: every measurement of :mod:`lsstdrp.measure` into one full-schema catalog."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable, Table

from .._errors import InvalidInputError
from ..core import (
    AB_MAG_OF_1_NJY,
    APERTURE_RADII,
    SOURCE_COLUMNS,
    MaskPlane,
    as_image,
    bad_pixel_mask,
    check_in,
    check_same_shape,
    empty_catalog,
    normalize_mask,
    register_column,
)
from . import _kernels as K
from ._aperture import _pack
from ._centroid import _LSQ
from ._hsm import _psf_stack, _regauss_core
from ._inputs import _empty_like, _Pixels
from ._moments import _run
from ._psfflux import _psf_flux_core, _psf_images

__all__ = ["measure_sources", "FLUX_RADIUS_FRACTIONS"]

log = logging.getLogger("lsstdrp.measure")

#: Fractions of the Kron flux whose radii ``measure_sources`` reports (SExtractor's
#: PHOT_FLUXFRAC of the reference catalogue), as ``flux_radius_<100 f>``.
FLUX_RADIUS_FRACTIONS = (0.1, 0.5, 0.6)
for _f in FLUX_RADIUS_FRACTIONS:
    register_column(f"flux_radius_{round(100 * _f)}", u.pix, "f8",
                    f"radius containing {round(100 * _f)}% of kron_flux")

_FAIL = K.F_NO_PIXELS | K.F_NONFINITE | K.F_NOT_CONVERGED | K.F_NONPOSITIVE | K.F_SHIFT | K.F_NOT_A_PEAK


def _aperture_name(r: float) -> str:
    return f"ap_flux_r{r:g}".replace(".", "p")


def _register_aperture(r: float) -> str:
    name = _aperture_name(r)
    desc = f"flux in a circular aperture of radius {r:g} px (exact overlap)"
    register_column(name, u.electron, "f8", desc)
    register_column(f"{name}_err", u.electron, "f8", f"1-sigma error of {name}")
    register_column(f"{name}_flag", None, "?", f"{name} failed or is unreliable")
    return name


def _column(table: Any, name: str) -> np.ndarray | None:
    if name not in getattr(table, "colnames", getattr(getattr(table, "dtype", None), "names", ()) or ()):
        return None
    col = table[name]
    if isinstance(col, u.Quantity):
        return np.asarray(col.value, dtype=np.float64)
    return np.asarray(col)


def _parse_sources(obj: Any, shape: tuple[int, int]) -> dict[str, Any]:
    """x, y and the optional columns of a Detections-like object or a catalog."""
    footprints = None
    if hasattr(obj, "footprints") and hasattr(obj, "peaks"):
        footprints = np.asarray(obj.footprints)
        if footprints.shape != shape:
            raise InvalidInputError(
                f"`detections_or_catalog.footprints` has shape {footprints.shape}; it must match `image` {shape}"
            )
        if footprints.dtype.kind not in "iu":
            raise InvalidInputError("`detections_or_catalog.footprints` must be an integer label image")
        table = obj.peaks
    else:
        table = obj
    if isinstance(table, Mapping):
        table = Table({k: np.asarray(v) for k, v in table.items()})
    names = getattr(table, "colnames", None) or getattr(getattr(table, "dtype", None), "names", None)
    if not names or "x" not in names or "y" not in names:
        raise InvalidInputError(
            "`detections_or_catalog` must be a Detections-like object (.footprints, .peaks) or a "
            "table with 'x' and 'y' columns (pixels, 0-based)"
        )
    x = _column(table, "x").astype(np.float64)
    y = _column(table, "y").astype(np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise InvalidInputError("`detections_or_catalog` columns 'x' and 'y' must be 1-D of equal length")
    out: dict[str, Any] = {"x": np.ascontiguousarray(x), "y": np.ascontiguousarray(y), "footprints": footprints}
    for name in ("id", "footprint_id", "parent_id", "peak_value", "significance"):
        col = _column(table, name)
        if col is not None and col.shape == x.shape:
            out[name] = col
    return out


def _ellipse(ixx: np.ndarray, iyy: np.ndarray, ixy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Semi-axes (RMS extents) and angle of the second-moment ellipse."""
    half_tr = 0.5 * (ixx + iyy)
    disc = np.sqrt(np.maximum(0.25 * (ixx - iyy) ** 2 + ixy * ixy, 0.0))
    with np.errstate(invalid="ignore"):
        a = np.sqrt(half_tr + disc)
        b = np.sqrt(np.maximum(half_tr - disc, 0.0))
    theta = 0.5 * np.arctan2(2.0 * ixy, ixx - iyy)
    return a, b, theta


def _catalog_columns(extra: Sequence[str]) -> list[str]:
    """The core source schema plus the columns measure_sources registers."""
    from .. import core

    # the core subset of the registry (columns other stages register, e.g. detect's
    # iso_*, are not ours to fill); a registry without it: everything registered
    base = tuple(getattr(core, "CORE_SOURCE_COLUMNS", None) or SOURCE_COLUMNS)
    return list(base) + [c for c in extra if c not in base]


def _set(cat: QTable, name: str, values: Any) -> None:
    col = cat[name]
    if isinstance(col, u.Quantity):
        col[...] = u.Quantity(np.asarray(values, dtype=np.float64), col.unit)
    else:
        col[...] = values


def measure_sources(
    image: Any,
    variance: Any,
    detections_or_catalog: Any,
    *,
    psf: Any,
    mask: Any = None,
    bad_planes: Any = None,
    aperture_radii: Sequence[float] = APERTURE_RADII,
    background: Any = None,
    centroid: str = "sdss",
    kron_factor: float = 2.5,
    kron_min_radius: float = 3.5,
    kron_window: float = 6.0,
    local_background_annulus: tuple[float, float] = (7.0, 15.0),
    shapes: bool = True,
    wcs: Any = None,
    photo_calib: Any = None,
    meta: Mapping[str, Any] | None = None,
) -> QTable:
    r"""Measure every source: centroid, shapes, fluxes, sizes, background and pixel flags.

    One row per input source, always, in input order; a measurement that fails for a
    source sets that row's ``<algo>_flag`` (and leaves NaN where nothing could be
    computed) -- a single source never raises or disappears. The steps:

    1. **centroid** (``x, y, x_err, y_err, xy_cov``): :func:`sdss_centroid` (default)
       or :func:`gaussian_centroid` from the input position, smoothing/weighting with
       the PSF width; on failure the input position is kept and ``centroid_flag`` set;
    2. **adaptive moments** (``shape_xx/yy/xy`` and errors, ``shape_flag``):
       :func:`adaptive_moments` at the centroid; the PSF's own (``psf.moments``) go to
       ``psf_shape_xx/yy/xy``;
    3. **PSF-corrected shape** (``hsm_e1, hsm_e2, hsm_resolution, hsm_sigma_e,
       hsm_flag``): :func:`psf_corrected_shape` (re-Gaussianization) with
       ``psf.kernel_image`` at the source and the local sky variance (``shapes=False``
       skips this, the slowest step);
    4. **aperture fluxes** ``ap_flux_r<R>`` (exact overlap) for ``aperture_radii``;
    5. **PSF flux** (``psf_flux, psf_flux_err, psf_chi2, psf_npixels``): :func:`psf_flux`
       at the centroid;
    6. **Kron** (``kron_radius`` in pixels, ``kron_flux``): :func:`kron_flux` in the
       adaptive-moment ellipse (the PSF's where the moments failed), then
       **flux radii** ``flux_radius_10/50/60`` (:func:`flux_radius`, ``rmax`` = 6 a,
       normalised by ``kron_flux``);
    7. **local background** (``local_background``): :func:`local_background` in
       ``local_background_annulus``, leaving out detection footprints;
    8. **pixel flags** ``pixel_flag_*``: the mask bits (and image-border contact) in the
       source's footprint -- the detection footprint when given, else a disk of
       3 PSF sigma (at least 2 px) -- and within 1 px of the centroid (``*_center``).

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        The image in e⁻ (background-subtracted unless ``background`` is given).
    variance : float or array_like, shape (ny, nx)
        Its variance (e⁻²).
    detections_or_catalog : Detections-like or table
        Either an object with ``footprints`` (int32 label image, 0 = none) and ``peaks``
        (table with ``x, y`` and optionally ``id, footprint_id, peak_value,
        significance``), as :func:`lsstdrp.detect.detect_sources` returns, or any table
        (QTable, Table, structured array, dict of arrays) with ``x`` and ``y`` columns
        in 0-based pixels (optional ``id``, ``parent_id``).
    psf : lsstdrp.core.Psf
        The PSF of the image.
    mask : array_like of bool or uint32, optional
        Boolean (True = exclude) or :class:`~lsstdrp.core.MaskPlane` bits.
        Non-finite image or variance pixels are added as ``NO_DATA`` (with an
        :class:`~lsstdrp.InputDataWarning`).
    bad_planes : int, MaskPlane or sequence of str, optional
        Bits that exclude a pixel from the measurements (default
        :data:`~lsstdrp.core.DEFAULT_BAD_PLANES`); all bits still raise pixel flags.
    aperture_radii : sequence of float, optional
        Radii (pixels) of the ``ap_flux_r<R>`` columns; radii outside the registry
        (:data:`~lsstdrp.core.APERTURE_RADII`) are registered as new columns.
    background : float or array_like, optional
        Subtracted from ``image`` first (the input is not modified).
    centroid : {"sdss", "gaussian"}
        Centroid algorithm.
    kron_factor, kron_min_radius, kron_window : float, optional
        SExtractor's Kron parameters (2.5, 3.5, 6).
    local_background_annulus : (float, float), optional
        Inner and outer radius in pixels.
    shapes : bool, optional
        Measure the PSF-corrected shapes.
    wcs : APE-14 WCS, optional
        If given, ``ra``, ``dec`` (degrees) and their errors (mas) are filled.
    photo_calib : lsstdrp.core.PhotoCalib, optional
        If given, ``psf_flux_njy``, ``psf_mag`` and their errors are filled.
    meta : mapping, optional
        Extra provenance for ``table.meta``.

    Returns
    -------
    astropy.table.QTable
        The core source schema (:func:`lsstdrp.core.empty_catalog`) plus the columns
        ``measure`` registers (``flux_radius_10/60``, ``ap_flux_r<R>`` for radii outside
        the registry), one row per source (zero rows for an empty input: the same
        columns); ``meta`` records the parameters.

    Raises
    ------
    InvalidInputError
        Invalid images, shapes, masks, options, or a catalog without ``x``/``y``.
    TypeError
        If ``psf`` does not satisfy the PSF protocol.

    See Also
    --------
    sdss_centroid, adaptive_moments, psf_corrected_shape, aperture_flux, psf_flux,
    kron_flux, flux_radius, local_background

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.measure import measure_sources
    >>> psf = GaussianPsf(1.7)
    >>> rng = np.random.default_rng(2)
    >>> img = rng.normal(0.0, 5.0, (64, 64))
    >>> img[20:45, 18:43] += 5000 * psf.image(30.4, 32.2, shape=25)
    >>> cat = measure_sources(img, 25.0, {"x": [30.0], "y": [32.0]}, psf=psf)
    >>> round(float(cat["x"][0].value), 1), round(float(cat["y"][0].value), 1)
    (30.4, 32.2)
    >>> bool(abs(cat["psf_flux"][0].value - 5000) < 3 * cat["psf_flux_err"][0].value)
    True
    """
    check_in(centroid, "centroid", ("sdss", "gaussian"))
    if not callable(getattr(psf, "image", None)) or not callable(getattr(psf, "moments", None)):
        raise TypeError(f"`psf` must satisfy the lsstdrp.core.Psf protocol; got {type(psf).__name__}")
    img = as_image(image, "image")
    shape = img.shape
    if np.ndim(variance) == 0:
        v = float(variance)
        if not (np.isfinite(v) and v >= 0):
            raise InvalidInputError(f"`variance` must be finite and >= 0; got {variance!r}")
        var_mode, var_arr, var_scalar = 1, _empty_like(img), v
    else:
        var_arr = as_image(variance, "variance", dtype=img.dtype)
        check_same_shape(img, "image", variance=var_arr)
        var_mode, var_scalar = 2, 0.0
    if background is not None:
        if np.ndim(background) == 0:
            img = img - img.dtype.type(float(background))
        else:
            bkg = as_image(background, "background")
            check_same_shape(img, "image", background=bkg)
            img = (img - bkg.astype(img.dtype, copy=False)).astype(img.dtype, copy=False)
    mask_bits = normalize_mask(mask, shape, image=img, variance=var_arr if var_mode == 2 else None)
    bad = np.ascontiguousarray(bad_pixel_mask(mask_bits, bad_planes)).view(np.uint8)
    px = _Pixels(img, bad, var_mode, var_arr, var_scalar)
    radii = [float(r) for r in aperture_radii]
    if not radii or not all(np.isfinite(r) and r > 0 for r in radii):
        raise InvalidInputError(f"`aperture_radii` must be positive numbers; got {aperture_radii!r}")
    ap_names = [_register_aperture(r) for r in radii]
    r_in, r_out = (float(v) for v in local_background_annulus)
    if not (0 <= r_in < r_out):
        raise InvalidInputError(
            f"`local_background_annulus` must be (inner, outer) with 0 <= inner < outer; got {local_background_annulus!r}"
        )
    for name, val in (("kron_factor", kron_factor), ("kron_window", kron_window)):
        if not (np.isfinite(val) and val > 0):
            raise InvalidInputError(f"`{name}` must be finite and > 0; got {val!r}")
    if not (np.isfinite(kron_min_radius) and kron_min_radius >= 0):
        raise InvalidInputError(f"`kron_min_radius` must be finite and >= 0; got {kron_min_radius!r}")

    src = _parse_sources(detections_or_catalog, shape)
    n = src["x"].size
    params = {
        "measure_centroid": centroid,
        "measure_aperture_radii": radii,
        "measure_kron": (float(kron_factor), float(kron_min_radius), float(kron_window)),
        "measure_local_background_annulus": (r_in, r_out),
        "measure_bad_planes": None if bad_planes is None else str(bad_planes),
        "measure_shapes": bool(shapes),
    }
    if meta:
        params.update(meta)
    extra = [f"flux_radius_{round(100 * f)}" for f in FLUX_RADIUS_FRACTIONS]
    for name in ap_names:
        extra += [name, f"{name}_err", f"{name}_flag"]
    cat = empty_catalog(n, columns=_catalog_columns(extra), meta=params)
    if n == 0:
        return cat
    log.debug("measure_sources: %d sources on a %s image", n, shape)

    x_in, y_in = src["x"], src["y"]
    _set(cat, "id", src["id"] if "id" in src else np.arange(1, n + 1))
    _set(cat, "parent_id", src["parent_id"] if "parent_id" in src else np.zeros(n, np.int64))
    _set(cat, "n_children", np.zeros(n, np.int32))
    if "footprint_id" in src:
        _set(cat, "footprint_id", src["footprint_id"])
    if "significance" in src:
        _set(cat, "significance", src["significance"])

    # 1. centroids ------------------------------------------------------------------------
    # the PSF moments at the input positions (within a pixel of the centroids) serve both
    # the smoothing width and the psf_shape columns: one psf.moments call per source
    pm = np.full((n, 3), np.nan)
    for i, (xi, yi) in enumerate(zip(x_in.tolist(), y_in.tolist())):
        if math.isfinite(xi) and math.isfinite(yi):
            pm[i] = psf.moments(xi, yi)
    with np.errstate(invalid="ignore"):
        sig = (pm[:, 0] * pm[:, 1] - pm[:, 2] ** 2) ** 0.25
    sig_ok = np.where(np.isfinite(sig) & (sig > 0), sig, np.nanmedian(sig) if np.any(np.isfinite(sig)) else 1.5)
    if centroid == "sdss":
        cout = np.empty((n, 6))
        K._sdss_centroids(px.image, px.bad, px.var_mode, px.var, px.var_scalar, x_in, y_in, sig_ok, _LSQ, 2, cout)
        cflags = cout[:, 5].astype(np.int32)
    else:
        cout = np.empty((n, 7))
        K._gaussian_centroids(px.image, px.bad, px.var_mode, px.var, px.var_scalar, x_in, y_in, sig_ok,
                              4.0, 1e-4, 30, 3.0, cout)
        cflags = cout[:, 6].astype(np.int32)
    cfail = ~(np.isfinite(cout[:, 0]) & np.isfinite(cout[:, 1]))
    x = np.where(cfail, x_in, cout[:, 0])
    y = np.where(cfail, y_in, cout[:, 1])
    with np.errstate(invalid="ignore"):
        _set(cat, "x_err", np.sqrt(cout[:, 2]))
        _set(cat, "y_err", np.sqrt(cout[:, 3]))
    _set(cat, "x", x)
    _set(cat, "y", y)
    _set(cat, "xy_cov", cout[:, 4])
    _set(cat, "centroid_flag", cfail | (cflags != 0))
    ny, nx = shape
    ok_pos = np.isfinite(x) & np.isfinite(y)
    ixn = np.clip(np.floor(np.where(ok_pos, x, 0) + 0.5).astype(np.int64), 0, nx - 1)
    iyn = np.clip(np.floor(np.where(ok_pos, y, 0) + 0.5).astype(np.int64), 0, ny - 1)
    inside = ok_pos & (x > -0.5) & (x < nx - 0.5) & (y > -0.5) & (y < ny - 0.5)
    peak = np.where(inside, img[iyn, ixn], np.nan)
    _set(cat, "peak_value", src["peak_value"] if "peak_value" in src else peak)

    # 2. adaptive moments and the PSF's ---------------------------------------------------
    _set(cat, "psf_shape_xx", pm[:, 0])
    _set(cat, "psf_shape_yy", pm[:, 1])
    _set(cat, "psf_shape_xy", pm[:, 2])
    mom, _ = _run(px, x, y, sig_ok * sig_ok, None, 50.0, 1e-6, 100, 15.0, 8000.0)
    _set(cat, "shape_xx", mom.ixx)
    _set(cat, "shape_yy", mom.iyy)
    _set(cat, "shape_xy", mom.ixy)
    _set(cat, "shape_xx_err", mom.ixx_err)
    _set(cat, "shape_yy_err", mom.iyy_err)
    _set(cat, "shape_xy_err", mom.ixy_err)
    _set(cat, "shape_flag", mom.flags != 0)

    # 3. PSF-corrected shapes ----------------------------------------------------------------
    if shapes:
        sky = _sky_variance(px, x, y, r_in, r_out)
        psfs = _psf_stack(psf, x, y)
        hs = _regauss_core(px, mom, psfs, sig_ok * sig_ok, sky, 50.0, 1e-8, 400, 15.0, 8000.0, 3.0, 3.6)
        _set(cat, "hsm_e1", hs.e1)
        _set(cat, "hsm_e2", hs.e2)
        _set(cat, "hsm_resolution", hs.resolution)
        _set(cat, "hsm_sigma_e", hs.sigma_e)
        _set(cat, "hsm_flag", hs.flags != 0)

    # 4. aperture fluxes ---------------------------------------------------------------------
    k = len(radii)
    fl = np.empty((n, k))
    fv = np.empty((n, k))
    ar = np.empty((n, k))
    af = np.empty((n, k), dtype=np.int32)
    K._sum_circles(px.image, px.bad, px.var_mode, px.var, px.var_scalar, x, y, np.asarray(radii), 0,
                   fl, fv, ar, af)
    ap = _pack(fl, fv, ar, af, px.var_mode, False)
    for j, name in enumerate(ap_names):
        _set(cat, name, ap.flux[:, j])
        _set(cat, f"{name}_err", ap.flux_err[:, j])
        _set(cat, f"{name}_flag", ap.flags[:, j] != 0)

    # 5. PSF flux ------------------------------------------------------------------------------
    stamps, sx0, sy0 = _psf_images(psf, x, y, None)
    pf = _psf_flux_core(px, stamps, sx0, sy0, 1e-3)
    _set(cat, "psf_flux", pf.flux)
    _set(cat, "psf_flux_err", pf.flux_err)
    _set(cat, "psf_flux_flag", (pf.flags != 0) | cfail)
    _set(cat, "psf_chi2", pf.chi2)
    _set(cat, "psf_npixels", pf.npixels)

    # 6. Kron and flux radii ------------------------------------------------------------------
    use_m = np.isfinite(mom.ixx) & np.isfinite(mom.iyy) & np.isfinite(mom.ixy)
    a, b, th = _ellipse(np.where(use_m, mom.ixx, pm[:, 0]), np.where(use_m, mom.iyy, pm[:, 1]),
                        np.where(use_m, mom.ixy, pm[:, 2]))
    b = np.where(b > 0, b, np.nan)
    kr = np.empty(n)
    kfl = np.empty(n, dtype=np.int32)
    K._kron_radii(px.image, px.bad, x, y, a, b, th, float(kron_window), kr, kfl)
    scale = np.fmax(kron_factor * kr, kron_min_radius)
    scale[~(scale > 0)] = np.nan
    kf = np.empty((n, 1))
    kv = np.empty((n, 1))
    ka = np.empty((n, 1))
    kff = np.empty((n, 1), dtype=np.int32)
    K._sum_ellipses(px.image, px.bad, px.var_mode, px.var, px.var_scalar, x, y, a, b, th,
                    np.ascontiguousarray(scale[:, None]), 0, kf, kv, ka, kff)
    kres = _pack(kf, kv, ka, kff, px.var_mode, True)
    with np.errstate(invalid="ignore"):
        _set(cat, "kron_radius", kr * np.sqrt(a * b))
    _set(cat, "kron_radius_flag", (kfl != 0) | ~use_m)
    _set(cat, "kron_flux", kres.flux)
    _set(cat, "kron_flux_err", kres.flux_err)
    _set(cat, "kron_flux_flag", (kres.flags != 0) | (kfl != 0) | ~use_m)
    fr = np.empty((n, len(FLUX_RADIUS_FRACTIONS)))
    frf = np.empty(n, dtype=np.int32)
    K._flux_radii(px.image, px.bad, x, y, np.ascontiguousarray(6.0 * a), np.ascontiguousarray(kres.flux),
                  np.asarray(FLUX_RADIUS_FRACTIONS), 5, 64, fr, frf)
    for j, f in enumerate(FLUX_RADIUS_FRACTIONS):
        _set(cat, f"flux_radius_{round(100 * f)}", fr[:, j])
    _set(cat, "flux_radius_flag", (frf != 0) | ~np.isfinite(kres.flux))

    # 7. local background ---------------------------------------------------------------------
    footprints = src["footprints"]
    excl = (np.ascontiguousarray(footprints > 0).view(np.uint8) if footprints is not None
            else np.zeros((0, 0), np.uint8))
    lv = np.empty(n)
    le = np.empty(n)
    ln = np.empty(n, dtype=np.int32)
    lf = np.empty(n, dtype=np.int32)
    K._annulus_background(px.image, px.bad, excl, x, y, r_in, r_out, 3.0, 3, lv, le, ln, lf)
    _set(cat, "local_background", lv)
    _set(cat, "local_background_err", le)
    _set(cat, "local_background_flag", lf != 0)

    # 8. pixel flags ------------------------------------------------------------------------------
    _pixel_flags(cat, mask_bits, footprints, src.get("footprint_id"), x, y, sig_ok)

    # world coordinates and calibrated fluxes -------------------------------------------------
    if wcs is not None:
        _fill_world(cat, wcs, x, y, cout)
    if photo_calib is not None:
        _fill_calibrated(cat, photo_calib, x, y, pf.flux, pf.flux_err)
    return cat


def _sky_variance(px: _Pixels, x: np.ndarray, y: np.ndarray, r_in: float, r_out: float) -> np.ndarray:
    """Sky variance per source: the mean variance in the local-background annulus."""
    n = x.size
    if px.var_mode == 1:
        return np.full(n, px.var_scalar)
    val = np.empty(n)
    err = np.empty(n)
    npx = np.empty(n, dtype=np.int32)
    flg = np.empty(n, dtype=np.int32)
    K._annulus_background(px.var, px.bad, np.zeros((0, 0), np.uint8), x, y, r_in, r_out, 3.0, 0,
                          val, err, npx, flg)  # the variance plane is smooth: a plain mean
    return val


_PIXEL_FLAGS = (
    ("pixel_flag_bad", MaskPlane.BAD, False),
    ("pixel_flag_no_data", MaskPlane.NO_DATA, False),
    ("pixel_flag_saturated", MaskPlane.SAT, False),
    ("pixel_flag_saturated_center", MaskPlane.SAT, True),
    ("pixel_flag_interpolated", MaskPlane.INTRP, False),
    ("pixel_flag_interpolated_center", MaskPlane.INTRP, True),
    ("pixel_flag_cr", MaskPlane.CR, False),
    ("pixel_flag_cr_center", MaskPlane.CR, True),
    ("pixel_flag_suspect", MaskPlane.SUSPECT, False),
)


def _pixel_flags(cat: QTable, mask_bits: np.ndarray, footprints: np.ndarray | None,
                 footprint_id: np.ndarray | None, x: np.ndarray, y: np.ndarray, sig: np.ndarray) -> None:
    n = x.size
    radius = np.ascontiguousarray(np.maximum(3.0 * sig, 2.0))
    bits = np.empty(n, dtype=np.uint32)
    cbits = np.empty(n, dtype=np.uint32)
    edge = np.empty(n, dtype=np.bool_)
    K._disk_mask_bits(mask_bits, x, y, radius, 1, bits, cbits, edge)
    if footprints is not None:
        labels = np.ascontiguousarray(footprints.astype(np.int64, copy=False))
        nlab = int(labels.max()) if labels.size else 0
        fbits = np.empty(nlab + 1, dtype=np.uint32)
        fedge = np.empty(nlab + 1, dtype=np.bool_)
        farea = np.empty(nlab + 1, dtype=np.int64)
        K._footprint_mask_bits(labels, mask_bits, nlab, fbits, fedge, farea)
        if footprint_id is None:
            ny, nx = labels.shape
            ok = np.isfinite(x) & np.isfinite(y)
            ix = np.clip(np.floor(np.where(ok, x, 0) + 0.5).astype(np.int64), 0, nx - 1)
            iy = np.clip(np.floor(np.where(ok, y, 0) + 0.5).astype(np.int64), 0, ny - 1)
            fid = np.where(ok, labels[iy, ix], 0)
            _set(cat, "footprint_id", fid)
        else:
            fid = np.asarray(footprint_id, dtype=np.int64)
        has = (fid > 0) & (fid <= nlab)
        fid_c = np.where(has, fid, 0)
        bits = np.where(has, fbits[fid_c] | cbits, bits)
        edge = np.where(has, fedge[fid_c] | ~np.isfinite(x), edge)
        _set(cat, "footprint_area", np.where(has, farea[fid_c], 0))
    for name, plane, center in _PIXEL_FLAGS:
        src_bits = cbits if center else bits
        _set(cat, name, (src_bits & np.uint32(plane)) != 0)
    _set(cat, "pixel_flag_edge", edge | ((bits & np.uint32(MaskPlane.EDGE)) != 0))


def _fill_world(cat: QTable, wcs: Any, x: np.ndarray, y: np.ndarray, cout: np.ndarray) -> None:
    ra, dec = (np.asarray(v, dtype=np.float64) for v in wcs.pixel_to_world_values(x, y))
    _set(cat, "ra", ra)
    _set(cat, "dec", dec)
    # local Jacobian (deg/pix) by central differences; errors from the centroid covariance
    rx1, dx1 = (np.asarray(v) for v in wcs.pixel_to_world_values(x + 0.5, y))
    rx0, dx0 = (np.asarray(v) for v in wcs.pixel_to_world_values(x - 0.5, y))
    ry1, dy1 = (np.asarray(v) for v in wcs.pixel_to_world_values(x, y + 0.5))
    ry0, dy0 = (np.asarray(v) for v in wcs.pixel_to_world_values(x, y - 0.5))
    cosd = np.cos(np.deg2rad(dec))
    dra_dx = ((rx1 - rx0 + 180.0) % 360.0 - 180.0) * cosd
    dra_dy = ((ry1 - ry0 + 180.0) % 360.0 - 180.0) * cosd
    ddec_dx = dx1 - dx0
    ddec_dy = dy1 - dy0
    vxx, vyy, vxy = cout[:, 2], cout[:, 3], cout[:, 4]
    with np.errstate(invalid="ignore"):
        v_ra = dra_dx**2 * vxx + dra_dy**2 * vyy + 2 * dra_dx * dra_dy * vxy
        v_dec = ddec_dx**2 * vxx + ddec_dy**2 * vyy + 2 * ddec_dx * ddec_dy * vxy
        _set(cat, "ra_err_mas", np.sqrt(v_ra) * 3.6e6)
        _set(cat, "dec_err_mas", np.sqrt(v_dec) * 3.6e6)


def _fill_calibrated(cat: QTable, photo_calib: Any, x: np.ndarray, y: np.ndarray, flux: np.ndarray,
                     flux_err: np.ndarray) -> None:
    f, fe = photo_calib.instflux_to_njy(flux, x, y, instflux_err=flux_err)
    _set(cat, "psf_flux_njy", f)
    _set(cat, "psf_flux_njy_err", fe)
    with np.errstate(invalid="ignore", divide="ignore"):
        mag = np.where(f > 0, -2.5 * np.log10(f) + AB_MAG_OF_1_NJY, np.nan)
        magerr = np.where(f > 0, 2.5 / np.log(10.0) * fe / f, np.nan)
    _set(cat, "psf_mag", mag)
    _set(cat, "psf_mag_err", magerr)
