"""Single-frame photometric calibration: a PhotoCalib from reference-catalog matches."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable
from numpy.polynomial import chebyshev as cheb
from scipy.spatial import cKDTree

from .._errors import InvalidInputError
from ..core import AB_MAG_OF_1_NJY, PhotoCalib
from ._common import ARCSEC, check_int, check_pos, check_table, col, unit_vectors

__all__ = ["PhotoCalibResult", "fit_photo_calib", "match_sky"]

log = logging.getLogger("lsstdrp.characterize")
_MAG = 2.5 / math.log(10.0)


@dataclasses.dataclass(frozen=True, eq=False)
class PhotoCalibResult:
    """Result of :func:`fit_photo_calib`.

    Attributes
    ----------
    success : bool
    reason : str
    photo_calib : PhotoCalib or None
        The calibration (zeropoint at the bbox centre for colour 0, its error, the
        spatial variation as Chebyshev fractional terms); None on failure.
    zeropoint, zeropoint_err : float
        AB magnitude of 1 instrumental unit at the bbox centre (colour 0), and its
        1-sigma error (mag).
    color_coefficients : numpy.ndarray
        Colour-term coefficients ``c_1 .. c_k`` (fitted or given) of
        ``m_ref - m_inst = zp + sum c_k color^k``.
    n_matches, n_used : int
        Matched stars and those kept by the outlier rejection.
    rms_mag : float
        Robust rms (0.741 x IQR) of the used residuals.
    chi2_dof : float
    residuals : astropy.table.QTable
        ``row, ref_index, x, y, color, ref_mag, inst_mag, model_mag, dmag, sigma_mag,
        used`` for every match.
    """

    success: bool
    reason: str
    photo_calib: PhotoCalib | None
    zeropoint: float
    zeropoint_err: float
    color_coefficients: np.ndarray
    n_matches: int
    n_used: int
    rms_mag: float
    chi2_dof: float
    residuals: QTable


def match_sky(ra: np.ndarray, dec: np.ndarray, ref_ra: np.ndarray, ref_dec: np.ndarray, radius_arcsec: float
              ) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest matches on the sphere within ``radius_arcsec``: (source, reference) indices.

    Parameters
    ----------
    ra, dec, ref_ra, ref_dec : numpy.ndarray
        Degrees; non-finite entries never match.
    radius_arcsec : float
        Match radius.

    Returns
    -------
    i_src, i_ref : numpy.ndarray of int
    """
    ok_s = np.nonzero(np.isfinite(ra) & np.isfinite(dec))[0]
    ok_r = np.nonzero(np.isfinite(ref_ra) & np.isfinite(ref_dec))[0]
    if ok_s.size == 0 or ok_r.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tree = cKDTree(unit_vectors(ref_ra[ok_r], ref_dec[ok_r]))
    d, j = tree.query(unit_vectors(ra[ok_s], dec[ok_s]), distance_upper_bound=2 * math.sin(radius_arcsec * ARCSEC / 2))
    ok = np.isfinite(d)
    i, j, d = ok_s[ok], ok_r[j[ok]], d[ok]
    order = np.lexsort((d, j))
    first = np.ones(order.size, bool)
    first[1:] = j[order][1:] != j[order][:-1]
    return i[order[first]], j[order[first]]


def _cheb_terms(order: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(order + 1) for j in range(order + 1 - i) if i + j > 0]


def fit_photo_calib(catalog: Any, refcat: Any, *, band: str, wcs: Any = None, matches: Any = None,
                    flux_column: str = "psf_flux", color: tuple[str, str] | None = None, color_order: int = 0,
                    color_terms: Sequence[float] | None = None, spatial_order: int = 0,
                    color_spatial_order: int = 0,
                    bbox: tuple[float, float, float, float] | None = None, match_radius_arcsec: float = 0.5,
                    clip_sigma: float = 3.0, systematic_error_mag: float | None = None, min_snr: float = 10.0,
                    ref_mag_limit: float | None = None, min_stars: int = 10, max_iter: int = 10) -> PhotoCalibResult:
    r"""Fit the photometric zeropoint (with colour terms and a smooth spatial term) from reference stars.

    Parameters
    ----------
    catalog : astropy.table.Table
        Sources with ``x, y`` and ``flux_column`` (instrumental, e⁻) with
        ``<flux_column>_err`` (unit weights when absent).
    refcat : astropy.table.Table
        Photometric reference catalog: ``ra, dec`` (deg), ``<band>_flux`` and
        ``<band>_flux_err`` (nJy), and the colour bands' fluxes when ``color`` is set.
    band : str
        Band of the exposure (selects ``<band>_flux``).
    wcs : APE-14 WCS, optional
        To match sources to the catalog by position (``match_radius_arcsec``).
    matches : (array, array), optional
        Precomputed (catalog row, refcat row) pairs instead of ``wcs``.
    flux_column : str
        Instrumental flux column.
    color : (str, str), optional
        Bands of the colour index ``m_a - m_b`` of the colour terms.
    color_order : int
        Fit colour terms up to this power (0: none); ignored with ``color_terms``.
    color_terms : sequence of float, optional
        Known colour-term coefficients ``(c_0, c_1, c_2, ...)``: the reference
        magnitude is transformed to ``m_ref + sum_k c_k color^k`` before the fit (as
        the LSST ``ColorTerm``; a pure ``c_0`` shifts the zeropoint by ``c_0``).
    spatial_order : int
        Total order of a Chebyshev term over ``bbox`` (0: constant zeropoint).
    color_spatial_order : int
        Total order of a spatially varying linear colour term ``C * sum b_ij T_i T_j``
        (0: none; needs ``color``): filter passbands that change across the field (the
        angle of incidence on an interference filter) make the colour term vary.
    bbox : tuple, optional
        ``(x_min, x_max, y_min, y_max)`` of the detector (default: the sources' range).
    match_radius_arcsec : float
        Positional match radius.
    clip_sigma : float
        Outlier rejection threshold on the whitened residual.
    systematic_error_mag : float, optional
        Per-star error floor in quadrature; default: fitted so that chi²/dof = 1 (0 if
        the statistical errors already explain the scatter).
    min_snr : float
        Minimum S/N of the instrumental flux.
    ref_mag_limit : float, optional
        Faintest reference magnitude used (before colour terms).
    min_stars : int
        Fewer stars than this after rejection: ``success=False``.
    max_iter : int
        Clipping iterations.

    Returns
    -------
    PhotoCalibResult

    Raises
    ------
    InvalidInputError
        Missing columns, neither ``wcs`` nor ``matches``, invalid options.

    Notes
    -----
    For each matched star, :math:`\Delta m = m_{\rm ref} + \sum_k c_k C^k - m_{\rm inst}`
    with :math:`m_{\rm inst} = -2.5\log_{10} F` and :math:`m_{\rm ref} = 31.4 -
    2.5\log_{10} f_{\rm nJy}` is modelled as

    .. math:: \Delta m = zp + \sum_{k=1}^{K} c_k C^k + \sum_{i+j \ge 1} (a_{ij} + b_{ij} C)
              T_i(\hat x) T_j(\hat y),

    fitted by weighted least squares (weights :math:`1/(\sigma_{\rm inst}^2 +
    \sigma_{\rm ref}^2 + \sigma_{\rm sys}^2)`, magnitude errors
    :math:`1.0857\,\sigma_F/F`), with iterative rejection of stars beyond
    ``clip_sigma``. :math:`\sigma_{\rm sys}` is solved for so that chi²/dof = 1, so the
    zeropoint error reflects the actual scatter. The zeropoint is defined at colour 0
    and the bbox centre; the spatial term becomes the :class:`PhotoCalib` fractional
    Chebyshev variation :math:`10^{-0.4\,\delta m} - 1`.

    References
    ----------
    .. [1] Ivezić, Ž. et al. 2007, AJ 134, 973 (calibration against a reference catalog
       with colour terms).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> rng = np.random.default_rng(1)
    >>> f = 10 ** rng.uniform(3, 5, 200)
    >>> cat = QTable({"x": rng.uniform(0, 100, 200), "y": rng.uniform(0, 100, 200), "psf_flux": f,
    ...               "psf_flux_err": np.sqrt(f)})
    >>> ref = QTable({"ra": np.zeros(200), "dec": np.zeros(200), "r_flux": f * 10 ** (-0.4 * (28.0 - 31.4)),
    ...               "r_flux_err": 0.01 * f})
    >>> res = fit_photo_calib(cat, ref, band="r", matches=(np.arange(200), np.arange(200)))
    >>> round(res.zeropoint, 6)
    28.0
    """
    cat = check_table(catalog, "catalog", ("x", "y", flux_column))
    ref = check_table(refcat, "refcat", ("ra", "dec", f"{band}_flux"))
    color_order = check_int(color_order, "color_order", 0, 3)
    color_spatial_order = check_int(color_spatial_order, "color_spatial_order", 0, 4)
    spatial_order = check_int(spatial_order, "spatial_order", 0, 4)
    min_stars = check_int(min_stars, "min_stars", 2, 10**7)
    max_iter = check_int(max_iter, "max_iter", 1, 100)
    clip_sigma = check_pos(clip_sigma, "clip_sigma")
    if color is not None:
        if len(color) != 2 or any(f"{b}_flux" not in ref.colnames for b in color):
            raise InvalidInputError(f"`color` must be two bands with '<band>_flux' in `refcat`; got {color!r}")
    elif color_order > 0 or color_spatial_order > 0 or (color_terms is not None and len(color_terms) > 1):
        raise InvalidInputError("colour terms need `color=(band_a, band_b)`")
    x = col(cat, "x")
    y = col(cat, "y")
    flux = col(cat, flux_column)
    ferr = col(cat, f"{flux_column}_err") if f"{flux_column}_err" in cat.colnames else np.full(len(cat), np.nan)
    if matches is not None:
        try:
            i_s, i_r = (np.asarray(m, dtype=np.int64) for m in matches)
        except (TypeError, ValueError):
            raise InvalidInputError("`matches` must be (catalog rows, refcat rows)") from None
        if i_s.shape != i_r.shape or (i_s.size and (i_s.max() >= len(cat) or i_r.max() >= len(ref))):
            raise InvalidInputError("`matches` must be two equal-length index arrays into catalog and refcat")
    elif wcs is not None:
        ra, dec = wcs.pixel_to_world_values(np.where(np.isfinite(x), x, 0.0), np.where(np.isfinite(y), y, 0.0))
        ra = np.where(np.isfinite(x) & np.isfinite(y), np.asarray(ra, float), np.nan)
        i_s, i_r = match_sky(ra, np.asarray(dec, float), col(ref, "ra", unit=u.deg), col(ref, "dec", unit=u.deg),
                             check_pos(match_radius_arcsec, "match_radius_arcsec"))
    else:
        raise InvalidInputError("give `wcs` (to match by position) or `matches`")
    fref = col(ref, f"{band}_flux")[i_r]
    fref_err = col(ref, f"{band}_flux_err")[i_r] if f"{band}_flux_err" in ref.colnames else np.zeros(i_r.size)
    fi, fie = flux[i_s], ferr[i_s]
    with np.errstate(divide="ignore", invalid="ignore"):
        m_ref = AB_MAG_OF_1_NJY - 2.5 * np.log10(fref)
        m_inst = -2.5 * np.log10(fi)
        s_inst = np.where(np.isfinite(fie), _MAG * fie / fi, 0.0)
        s_ref = _MAG * np.nan_to_num(fref_err) / fref
        snr = np.where(np.isfinite(fie) & (fie > 0), fi / fie, np.inf)
    c = np.zeros(i_s.size)
    if color is not None:
        with np.errstate(divide="ignore", invalid="ignore"):
            c = -2.5 * np.log10(col(ref, f"{color[0]}_flux")[i_r] / col(ref, f"{color[1]}_flux")[i_r])
    m_ref_raw = m_ref
    if color_terms is not None:
        ct = np.asarray(color_terms, float)
        m_ref = m_ref + sum(ct[k] * c**k for k in range(ct.size))
        coef_fixed = ct[1:]
        color_order_fit = 0
    else:
        coef_fixed = None
        color_order_fit = color_order
    ok = (np.isfinite(m_ref) & np.isfinite(m_inst) & np.isfinite(c) & (fi > 0) & (fref > 0) & (snr >= min_snr)
          & np.isfinite(x[i_s]) & np.isfinite(y[i_s]))
    if ref_mag_limit is not None:
        ok &= m_ref_raw <= float(ref_mag_limit)
    if bbox is None:
        g = np.isfinite(x) & np.isfinite(y)
        bbox = (float(x[g].min()), float(x[g].max()), float(y[g].min()), float(y[g].max())) if g.any() else (0, 1, 0, 1)
    x0, x1, y0, y1 = (float(b) for b in bbox)
    xs = (2 * x[i_s] - (x0 + x1)) / max(x1 - x0, 1e-9)
    ys = (2 * y[i_s] - (y0 + y1)) / max(y1 - y0, 1e-9)
    dm = m_ref - m_inst
    cols = [np.ones(i_s.size)] + [c**k for k in range(1, color_order_fit + 1)]
    sterms = _cheb_terms(spatial_order)
    for i, j in sterms:
        cols.append(cheb.chebval(xs, np.eye(i + 1)[i]) * cheb.chebval(ys, np.eye(j + 1)[j]))
    for i, j in _cheb_terms(color_spatial_order):
        cols.append(c * cheb.chebval(xs, np.eye(i + 1)[i]) * cheb.chebval(ys, np.eye(j + 1)[j]))
    a = np.stack(cols, -1) if i_s.size else np.zeros((0, len(cols)))
    npar = a.shape[1]
    stat2 = s_inst**2 + s_ref**2

    def empty(reason: str, n_used: int = 0) -> PhotoCalibResult:
        log.info("fit_photo_calib failed: %s", reason)
        return PhotoCalibResult(False, reason, None, float("nan"), float("nan"), np.zeros(0), int(i_s.size), n_used,
                                float("nan"), float("nan"), _residual_table(i_s, i_r, x, y, c, m_ref, m_inst,
                                                                            np.full(i_s.size, np.nan),
                                                                            np.sqrt(stat2), ok))

    used = ok.copy()
    if used.sum() < max(min_stars, npar + 1):
        return empty(f"only {int(used.sum())} usable reference matches (need {max(min_stars, npar + 1)})")
    sys2 = 0.0 if systematic_error_mag is None else check_pos(systematic_error_mag, "systematic_error_mag",
                                                                 allow_zero=True) ** 2
    for _ in range(max_iter):
        for _ in range(30):
            w = 1.0 / np.maximum(stat2[used] + sys2, 1e-12)
            aw = a[used] * np.sqrt(w)[:, None]
            p, *_ = np.linalg.lstsq(aw, dm[used] * np.sqrt(w), rcond=None)
            r = dm[used] - a[used] @ p
            dof = max(int(used.sum()) - npar, 1)
            chi2 = float(np.sum(w * r**2))
            if systematic_error_mag is not None:
                break
            # solve sum r²/(s²+sys²) = dof for sys² (monotone in sys²)
            if chi2 <= dof * 1.0001:
                if sys2 == 0.0:
                    break
                lo, hi = 0.0, sys2
            else:
                lo, hi = sys2, max(sys2 * 4, float(np.var(r)) + 1e-12)
            for _ in range(60):
                mid = 0.5 * (lo + hi)
                if np.sum(r**2 / np.maximum(stat2[used] + mid, 1e-12)) > dof:
                    lo = mid
                else:
                    hi = mid
            new = 0.5 * (lo + hi)
            if abs(new - sys2) <= 1e-4 * max(new, 1e-8):
                sys2 = new
                break
            sys2 = new
        model = a @ p
        with np.errstate(invalid="ignore"):
            chi = np.where(ok, np.abs(dm - model) / np.sqrt(np.maximum(stat2 + sys2, 1e-12)), np.inf)
        new_used = ok & (chi <= clip_sigma)
        if np.array_equal(new_used, used):
            break
        used = new_used
        if used.sum() < max(min_stars, npar + 1):
            return empty(f"only {int(used.sum())} stars left after outlier rejection", int(used.sum()))
    w = 1.0 / np.maximum(stat2[used] + sys2, 1e-12)
    aw = a[used] * np.sqrt(w)[:, None]
    cov = np.linalg.inv(aw.T @ aw)
    r = dm[used] - a[used] @ p
    chi2_dof = float(np.sum(w * r**2) / max(int(used.sum()) - npar, 1))
    cov = cov * max(1.0, chi2_dof)
    zp = float(p[0])
    zp_err = float(math.sqrt(cov[0, 0]))
    ccoef = np.asarray(p[1:1 + color_order_fit], float) if coef_fixed is None else coef_fixed
    spatial = None
    if sterms:
        sp = p[1 + color_order_fit:1 + color_order_fit + len(sterms)]
        ng = 9
        gx, gy = np.meshgrid(np.linspace(-1, 1, ng), np.linspace(-1, 1, ng))
        dmg = sum(sp[t] * cheb.chebval(gx, np.eye(i + 1)[i]) * cheb.chebval(gy, np.eye(j + 1)[j])
                  for t, (i, j) in enumerate(sterms))
        k = spatial_order + 2
        vander = cheb.chebvander2d(gx.ravel(), gy.ravel(), [k - 1, k - 1])
        # even Chebyshev terms are not zero at the centre: refer zp to the centre value
        d0 = sum(sp[t] * cheb.chebval(0.0, np.eye(i + 1)[i]) * cheb.chebval(0.0, np.eye(j + 1)[j])
                 for t, (i, j) in enumerate(sterms))
        zp_c = zp + float(d0)
        frac_c = 10 ** (-0.4 * (dmg - d0)) - 1.0
        coef, *_ = np.linalg.lstsq(vander, frac_c.ravel(), rcond=None)
        spatial = coef.reshape(k, k)
        g0 = np.zeros(npar)
        g0[0] = 1.0
        for t, (i, j) in enumerate(sterms):
            g0[1 + color_order_fit + t] = cheb.chebval(0.0, np.eye(i + 1)[i]) * cheb.chebval(0.0, np.eye(j + 1)[j])
        zp_err = float(math.sqrt(g0 @ cov @ g0))
        zp = zp_c
    # PhotoCalib: f_nJy = 10^{-0.4 (zp - 31.4)} * F  (AB mag of 1 unit = zp)
    pc = PhotoCalib(zeropoint=zp, zeropoint_err=zp_err, spatial_coefficients=spatial,
                    bbox=(x0, x1, y0, y1) if spatial is not None else None)
    res = dm - a @ p
    q75, q25 = np.percentile(res[used], [75, 25])
    tab = _residual_table(i_s, i_r, x, y, c, m_ref, m_inst, m_inst + a @ p, np.sqrt(stat2 + sys2), used)
    return PhotoCalibResult(True, "", pc, zp, zp_err, ccoef, int(i_s.size), int(used.sum()),
                            float(0.741 * (q75 - q25)), chi2_dof, tab)


def _residual_table(i_s, i_r, x, y, c, m_ref, m_inst, model, sig, used) -> QTable:
    t = QTable()
    t["row"] = np.asarray(i_s, np.int64)
    t["ref_index"] = np.asarray(i_r, np.int64)
    t["x"] = x[i_s] * u.pix
    t["y"] = y[i_s] * u.pix
    t["color"] = np.asarray(c, float) * u.mag
    t["ref_mag"] = np.asarray(m_ref, float) * u.mag
    t["inst_mag"] = np.asarray(m_inst, float) * u.mag
    t["model_mag"] = np.asarray(model, float) * u.mag
    t["dmag"] = (np.asarray(m_ref, float) - np.asarray(model, float)) * u.mag
    t["sigma_mag"] = np.asarray(sig, float) * u.mag
    t["used"] = np.asarray(used, bool)
    return t
