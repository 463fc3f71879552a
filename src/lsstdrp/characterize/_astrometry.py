"""Single-frame astrometry: pattern matching to a reference catalog and a TAN-SIP fit."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable
from astropy.wcs import WCS
from scipy.spatial import cKDTree

from .._errors import InvalidInputError
from ._common import check_int, check_pos, check_table, col, project, refcat_positions, tangent_basis
from ._matcher import match_similarity, nearest_matches
from ._tansip import TanSipFit, fit_tan_sip, monomials

__all__ = ["WcsFitResult", "fit_wcs"]

log = logging.getLogger("lsstdrp.characterize")


@dataclasses.dataclass(frozen=True, eq=False)
class WcsFitResult:
    """Result of :func:`fit_wcs`.

    Attributes
    ----------
    success : bool
    reason : str
        Empty on success; why the match or fit failed otherwise.
    wcs : astropy.wcs.WCS or None
        The fitted TAN-SIP WCS (None when ``success`` is False).
    fit : TanSipFit or None
        The least-squares fit behind ``wcs`` (covariance, chi², residuals).
    matches : astropy.table.QTable
        One row per matched source: ``row`` (catalog index), ``ref_index`` (refcat
        row), ``ref_id``, ``x, y`` (pixels), ``ra, dec`` (reference position at
        ``mjd``, deg), ``dra_mas, ddec_mas`` (fitted minus reference, east/north),
        ``sigma_mas`` (per-axis error used in the fit), ``predicted_mas`` (1-sigma
        error of the fitted mapping there, from its covariance), ``used`` (False:
        clipped).
    n_matches, n_used : int
        Matched pairs and those kept by the outlier rejection.
    rms_mas : float
        Per-axis rms of the used residuals.
    chi2_dof : float
        chi² per degree of freedom of the final fit.
    sip_order : int
        Order of the fitted SIP polynomials (may be lower than requested when there are
        few matches).
    offset_arcsec, rotation_deg, scale : float
        How the approximate WCS was off, from the pattern match at the detector centre:
        translation, rotation and scale factor (true / assumed).
    flipped : bool
        The match needed a parity flip relative to the approximate WCS (blind mode).
    flags : numpy.ndarray of bool
        Per catalog row: True where the row could not be used (non-finite position or
        flux).
    """

    success: bool
    reason: str
    wcs: WCS | None
    fit: TanSipFit | None
    matches: QTable
    n_matches: int
    n_used: int
    rms_mas: float
    chi2_dof: float
    sip_order: int
    offset_arcsec: float
    rotation_deg: float
    scale: float
    flipped: bool
    flags: np.ndarray


def _empty_matches() -> QTable:
    t = QTable()
    for name, dt, unit in (("row", np.int64, None), ("ref_index", np.int64, None), ("ref_id", np.int64, None),
                           ("x", float, u.pix), ("y", float, u.pix), ("ra", float, u.deg), ("dec", float, u.deg),
                           ("dra_mas", float, u.mas), ("ddec_mas", float, u.mas), ("sigma_mas", float, u.mas),
                           ("predicted_mas", float, u.mas), ("used", bool, None)):
        arr = np.zeros(0, dtype=dt)
        t[name] = arr * unit if unit is not None else arr
    return t


def _pixel_scale_arcsec(wcs: Any, x: float, y: float) -> tuple[float, np.ndarray]:
    """Local pixel scale (arcsec) and Jacobian (arcsec/px, east/north) of an APE-14 WCS."""
    ra0, dec0 = (float(v) for v in wcs.pixel_to_world_values(x, y))
    basis = tangent_basis(ra0, dec0)
    h = 1.0
    r, d = wcs.pixel_to_world_values(np.array([x + h, x, x]), np.array([y, y + h, y]))
    xi, eta = project(np.asarray(r, float), np.asarray(d, float), basis)
    jac = np.array([[xi[0] - xi[2], xi[1] - xi[2]], [eta[0] - eta[2], eta[1] - eta[2]]]) / h
    return math.sqrt(abs(np.linalg.det(jac))), jac


def _blind_wcs(pointing: Any, pixel_scale: float, xc: float, yc: float) -> WCS:
    try:
        ra0, dec0 = (float(v) for v in pointing)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`pointing` must be (ra, dec) in degrees; got {pointing!r}") from None
    if not (math.isfinite(ra0) and -90 <= dec0 <= 90):
        raise InvalidInputError(f"`pointing` must be finite (ra, dec) with |dec| <= 90; got {pointing!r}")
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra0, dec0]
    w.wcs.crpix = [xc + 1.0, yc + 1.0]
    w.wcs.cd = np.array([[-pixel_scale, 0.0], [0.0, pixel_scale]]) / 3600.0
    w.wcs.set()
    return w


def _ranking(table: Any, column: str | None, n: int, *, candidates: tuple[str, ...]) -> np.ndarray:
    """Indices sorted brightest first by a flux (``*flux*``, descending) or magnitude column."""
    name = column
    if name is None:
        name = next((c for c in candidates if c in table.colnames), None)
    if name is None:
        return np.arange(n)
    if name not in table.colnames:
        raise InvalidInputError(f"column {name!r} is not in the table; columns: {table.colnames}")
    v = col(table, name)
    if "mag" in name:
        key = np.where(np.isfinite(v), v, np.inf)
    else:
        key = np.where(np.isfinite(v), -v, np.inf)
    return np.argsort(key, kind="stable")


def fit_wcs(catalog: Any, refcat: Any, *, wcs: Any = None, mjd: float | None = None, pointing: Any = None,
            pixel_scale_arcsec: float | None = None, bbox: tuple[float, float, float, float] | None = None,
            max_offset_arcsec: float = 60.0, max_rotation_deg: float = 1.0, max_scale_error: float = 0.02,
            blind_search_radius_arcsec: float = 1800.0, sip_order: int = 3, min_stars_per_term: float = 3.0,
            match_radius_arcsec: float | None = None, clip_sigma: float = 4.0, systematic_error_mas: float = 0.0,
            flux_column: str | None = "psf_flux", ref_flux_column: str | None = None, n_bright: int = 50,
            min_matches: int = 6, max_iter: int = 6) -> WcsFitResult:
    r"""Match a source catalog to a reference catalog and fit a TAN-SIP WCS.

    Parameters
    ----------
    catalog : astropy.table.Table
        Sources with ``x, y`` (0-based pixels) and, for ranking and weights,
        ``flux_column`` and ``x_err, y_err`` (pixels; 0.05 px assumed when absent).
    refcat : astropy.table.Table
        Reference catalog with ``ra, dec`` (deg) and optionally ``id``,
        ``ra_err_mas, dec_err_mas``, ``pmra, pmdec, parallax, epoch`` (the Gaia-like
        schema of :func:`lsstdrp.core.empty_refcat`), and a magnitude or flux column for
        ranking (``g_mag`` or ``*_flux``).
    wcs : APE-14 WCS, optional
        Approximate WCS of the exposure (0-based pixels). Without it, blind mode:
        ``pointing`` and ``pixel_scale_arcsec`` are required.
    mjd : float, optional
        Epoch (MJD TAI) of the exposure; required when the reference catalog has proper
        motions (``pmra, pmdec, epoch``): positions are propagated to it
        (:func:`lsstdrp.jointcal.propagate_refcat`).
    pointing : (float, float), optional
        Blind mode: approximate (ra, dec) of the detector centre, degrees; any rotation
        and either parity are searched, with offsets up to
        ``blind_search_radius_arcsec``.
    pixel_scale_arcsec : float, optional
        Blind mode: pixel scale (known to ``max_scale_error``).
    bbox : tuple, optional
        ``(x_min, x_max, y_min, y_max)`` of the detector (default: ``wcs.pixel_shape``
        or the range of the sources).
    max_offset_arcsec, max_rotation_deg, max_scale_error : float
        Largest error of the approximate WCS searched: translation at the detector
        centre, rotation, fractional scale.
    blind_search_radius_arcsec : float
        Blind mode: largest distance of the true centre from ``pointing``.
    sip_order : int
        Requested SIP order (1-9); reduced while there are fewer than
        ``min_stars_per_term`` matches per polynomial coefficient.
    min_stars_per_term : float
        See ``sip_order``.
    match_radius_arcsec : float, optional
        Radius of the pattern verification (default 1.5" or 3 pixels, whichever is
        larger).
    clip_sigma : float
        Outlier threshold on the whitened 2-D residual.
    systematic_error_mas : float
        Per-axis error added in quadrature to every pair.
    flux_column : str or None
        Source flux used to pick the brightest for the pattern.
    ref_flux_column : str, optional
        Reference column for ranking (magnitude if the name holds "mag", else flux);
        default ``g_mag`` or the first ``*_flux`` column.
    n_bright : int
        Largest number of (brightest) sources used in the pattern search; fewer (twice
        the reference stars expected on the detector, at least 10) when the reference
        catalog is sparser.
    min_matches : int
        Minimum verified matches for success (also the pattern threshold).
    max_iter : int
        Match/fit/clip iterations.

    Returns
    -------
    WcsFitResult
        ``success=False`` with a ``reason`` and ``wcs=None`` when no pattern is found or
        the fit fails; never a wrong WCS presented as good.

    Raises
    ------
    InvalidInputError
        Malformed input, neither ``wcs`` nor (``pointing``, ``pixel_scale_arcsec``),
        a refcat with motions but no ``mjd``, or no reference star within the
        detector footprint plus the search margin.

    Notes
    -----
    **Matching.** Sources are placed in the tangent plane at the detector centre
    through the approximate WCS; references are propagated to ``mjd`` and projected
    there. The two point sets differ by a similarity :math:`r = a z + b` (complex
    notation) with :math:`|a| \approx 1`, found by triangle matching (each star with
    pairs of its neighbours within a radius holding ~6 neighbours at the density of
    the ``n_bright`` brightest sources, side lengths compared to ``max_scale_error``,
    proposals voted in (rotation, offset) bins, best bins verified by counting matches;
    the winner must exceed ``min_matches`` and the chance expectation by 5 sigma),
    in the spirit of Groth (1986) and Tabur (2007). **Fit.** Matches within a radius
    shrinking with the residual rms are fitted by :func:`fit_tan_sip` with per-pair
    errors :math:`\sigma^2 = s^2 (\sigma_x^2+\sigma_y^2)/2 + \sigma_{\rm ref}^2 +
    \sigma_{\rm sys}^2` (``s`` the pixel scale, :math:`\sigma_{\rm ref}` the
    reference error grown by the proper-motion error over the epoch difference);
    pairs beyond ``clip_sigma`` are dropped, all sources re-matched with the new WCS,
    and the fit repeated.

    References
    ----------
    .. [1] Groth, E. J. 1986, AJ 91, 1244 (triangle pattern matching).
    .. [2] Tabur, V. 2007, PASA 24, 189 (optimistic pattern matching).
    .. [3] Lang, D. et al. 2010, AJ 139, 1782 (astrometry.net, blind calibration).

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> s = make_survey("tiny", rng=2, render=False, star_density_arcmin2=300.0, airmass_range=(1.0, 1.0))
    >>> key = s.keys()[0]
    >>> res = fit_wcs(s.catalogs[key], s.refcat_astrometric, wcs=s.truth[key].tan_sip.wcs, mjd=s.truth[key].mjd,
    ...               sip_order=2)
    >>> res.success, res.n_used >= 10
    (True, True)
    """
    cat = check_table(catalog, "catalog", ("x", "y"))
    ref = check_table(refcat, "refcat", ("ra", "dec"))
    if len(ref) == 0:
        raise InvalidInputError("`refcat` has no rows")
    sip_order = check_int(sip_order, "sip_order", 1, 9)
    n_bright = check_int(n_bright, "n_bright", 3, 100000)
    min_matches = check_int(min_matches, "min_matches", 3, 100000)
    max_iter = check_int(max_iter, "max_iter", 1, 100)
    max_offset_arcsec = check_pos(max_offset_arcsec, "max_offset_arcsec", allow_zero=True)
    max_rotation_deg = check_pos(max_rotation_deg, "max_rotation_deg", allow_zero=True)
    max_scale_error = check_pos(max_scale_error, "max_scale_error", allow_zero=True)
    clip_sigma = check_pos(clip_sigma, "clip_sigma")
    min_stars_per_term = check_pos(min_stars_per_term, "min_stars_per_term")
    sys_mas = check_pos(systematic_error_mas, "systematic_error_mas", allow_zero=True)
    has_pm = all(c in ref.colnames for c in ("pmra", "pmdec", "epoch"))
    if has_pm and mjd is None:
        raise InvalidInputError("`mjd` is required: `refcat` has proper motions (pmra, pmdec, epoch)")
    if mjd is not None and not math.isfinite(float(mjd)):
        raise InvalidInputError(f"`mjd` must be finite; got {mjd!r}")

    n = len(cat)
    x = col(cat, "x")
    y = col(cat, "y")
    flux = col(cat, flux_column) if flux_column is not None and flux_column in cat.colnames else np.ones(n)
    xe = col(cat, "x_err") if "x_err" in cat.colnames else np.full(n, 0.05)
    ye = col(cat, "y_err") if "y_err" in cat.colnames else np.full(n, 0.05)
    flags = ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(flux))
    xe = np.where(np.isfinite(xe) & (xe > 0), xe, 0.05)
    ye = np.where(np.isfinite(ye) & (ye > 0), ye, 0.05)
    good = np.nonzero(~flags)[0]

    blind = wcs is None
    if bbox is None:
        shape = getattr(wcs, "pixel_shape", None) if not blind else None
        if shape is not None and all(s for s in shape):
            bbox = (-0.5, shape[0] - 0.5, -0.5, shape[1] - 0.5)
        elif good.size:
            bbox = (float(x[good].min()), float(x[good].max()), float(y[good].min()), float(y[good].max()))
        else:
            raise InvalidInputError("`catalog` has no row with finite x, y (and flux)")
    x0, x1, y0, y1 = (float(b) for b in bbox)
    xc, yc = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    if blind:
        if pointing is None or pixel_scale_arcsec is None:
            raise InvalidInputError("give `wcs` (approximate WCS) or, for blind mode, `pointing` and "
                                    "`pixel_scale_arcsec`")
        wcs = _blind_wcs(pointing, check_pos(pixel_scale_arcsec, "pixel_scale_arcsec"), xc, yc)
        max_offset = check_pos(blind_search_radius_arcsec, "blind_search_radius_arcsec")
        max_rot = None
    else:
        if not hasattr(wcs, "pixel_to_world_values"):
            raise InvalidInputError(f"`wcs` must be an APE-14 WCS; got {type(wcs).__name__}")
        max_offset, max_rot = max_offset_arcsec, max_rotation_deg
    scale, _ = _pixel_scale_arcsec(wcs, xc, yc)
    if not (math.isfinite(scale) and scale > 0):
        raise InvalidInputError("`wcs` gives no finite pixel scale at the detector centre")
    mr = float(match_radius_arcsec) if match_radius_arcsec is not None else max(1.5, 3.0 * scale)
    ra_c, dec_c = (float(v) for v in wcs.pixel_to_world_values(xc, yc))
    basis = tangent_basis(ra_c, dec_c)

    # reference catalog at the epoch, in the footprint + margin
    rra, rdec, rerr = refcat_positions(ref, mjd)
    rxi, reta = project(rra, rdec, basis)
    half_diag = 0.5 * math.hypot(x1 - x0, y1 - y0) * scale
    rot_slop = (math.radians(max_rot) if max_rot is not None else 2.0) * half_diag
    margin = max_offset + rot_slop + max_scale_error * half_diag + mr
    cx = np.array([x0, x1, x1, x0])
    cy = np.array([y0, y0, y1, y1])
    cra, cdec = wcs.pixel_to_world_values(cx, cy)
    cxi, ceta = project(np.asarray(cra, float), np.asarray(cdec, float), basis)
    if blind:
        inside = np.hypot(rxi, reta) <= max_offset + half_diag * (1 + max_scale_error) + mr
    else:
        inside = ((rxi >= cxi.min() - margin) & (rxi <= cxi.max() + margin) & (reta >= ceta.min() - margin)
                  & (reta <= ceta.max() + margin))
    inside &= np.isfinite(rxi) & np.isfinite(reta)
    ref_idx = np.nonzero(inside)[0]
    if ref_idx.size == 0:
        raise InvalidInputError(
            f"`refcat` has no star within the detector footprint plus the search margin ({margin:.0f} arcsec) "
            f"around (ra, dec) = ({ra_c:.5f}, {dec_c:.5f})")
    ref_rank = _ranking(ref, ref_flux_column, len(ref), candidates=("g_mag", "phot_g_mean_mag") + tuple(
        c for c in ref.colnames if c.endswith("_flux")))
    ref_order = ref_rank[np.isin(ref_rank, ref_idx)]
    zr_all = rxi[ref_order] + 1j * reta[ref_order]

    def fail(reason: str, off: float = float("nan"), rot: float = float("nan"), sc: float = float("nan"),
             flip: bool = False) -> WcsFitResult:
        log.info("fit_wcs failed: %s", reason)
        return WcsFitResult(False, reason, None, None, _empty_matches(), 0, 0, float("nan"), float("nan"), 0,
                            off, rot, sc, flip, flags)

    if good.size < 3:
        return fail(f"only {good.size} usable sources (finite x, y, flux)")
    sra, sdec = wcs.pixel_to_world_values(x[good], y[good])
    sxi, seta = project(np.asarray(sra, float), np.asarray(sdec, float), basis)
    okp = np.isfinite(sxi) & np.isfinite(seta)
    good = good[okp]
    zs_good = (sxi + 1j * seta)[okp]
    src_order = np.argsort(-flux[good], kind="stable")
    zs = zs_good[src_order]
    area = (x1 - x0) * (y1 - y0) * scale**2
    if blind:
        ref_area = math.pi * (max_offset + half_diag) ** 2
    else:
        ref_area = (np.ptp(cxi) + 2 * margin) * (np.ptp(ceta) + 2 * margin)
    tol = max(0.5, 2.0 * scale) + (0.0 if not blind else 0.002 * half_diag)
    # no more bright sources than ~2x the reference stars expected on the detector, so the
    # triangles of the two lists are built at comparable densities
    n_ref_fp = zr_all.size * area / max(ref_area, 1e-9)
    ns = int(min(n_bright, max(2.0 * n_ref_fp, 10)))
    sim = match_similarity(zs, zr_all, area_arcsec2=area, ref_area_arcsec2=ref_area, scale_tol=max_scale_error,
                           max_rotation_deg=max_rot, max_offset_arcsec=max_offset + mr, allow_flip=blind,
                           match_radius=mr, tolerance_arcsec=tol, n_bright=ns, min_matches=min_matches)
    if sim is None:
        return fail("no pattern of the brightest sources matches the reference catalog within the search limits "
                    f"(offset <= {max_offset:.0f} arcsec, rotation <= "
                    f"{'any' if max_rot is None else f'{max_rot:g} deg'}, scale error <= {max_scale_error:g})")
    off = abs(sim.b)
    rot = math.degrees(np.angle(sim.a))
    sc = abs(sim.a)

    # refine: affine on all matches, then TAN-SIP fits with re-matching and clipping
    tree = cKDTree(np.stack([zr_all.real, zr_all.imag], -1))
    zt = sim.apply(zs_good)
    radius = mr
    for _ in range(3):
        i_s, i_r = nearest_matches(zt, zr_all, radius, tree)
        if i_s.size < 3:
            break
        zz = np.conj(zs_good[i_s]) if sim.flip else zs_good[i_s]
        amat = np.stack([zz.real, zz.imag, np.ones(i_s.size)], -1)
        cr, *_ = np.linalg.lstsq(amat, np.stack([zr_all[i_r].real, zr_all[i_r].imag], -1), rcond=None)
        zzall = np.conj(zs_good) if sim.flip else zs_good
        pred = np.stack([zzall.real, zzall.imag, np.ones(zzall.size)], -1) @ cr
        zt = pred[:, 0] + 1j * pred[:, 1]
        rms = float(np.sqrt(np.mean(np.abs(zt[i_s] - zr_all[i_r]) ** 2) / 2))
        radius = max(min(radius, 5.0 * rms), 2.0 * scale, 0.3)
    # pixel -> tangent plane of the affine-corrected approximation, for the first matching
    ref_sig_mas = rerr[ref_order]
    ref_ra = rra[ref_order]
    ref_dec = rdec[ref_order]
    src_sig2 = scale**2 * 0.5 * (xe**2 + ye**2)  # arcsec^2
    fit: TanSipFit | None = None
    used = np.zeros(0, bool)
    order = sip_order
    reason = ""
    for it in range(max_iter):
        if fit is not None:
            fra, fdec = fit.wcs.pixel_to_world_values(x[good], y[good])
            fxi, feta = project(np.asarray(fra, float), np.asarray(fdec, float), basis)
            zt = fxi + 1j * feta
        i_s, i_r = nearest_matches(zt, zr_all, radius, tree)
        nmin = max(min_matches, 4)
        order = sip_order
        while order > 1 and i_s.size < min_stars_per_term * len(monomials(order)):
            order -= 1
        if i_s.size < max(nmin, len(monomials(order)) + 1):
            reason = f"only {i_s.size} matches within {radius:.2f} arcsec after the pattern match"
            fit = None
            break
        rows = good[i_s]
        sig = np.sqrt(src_sig2[rows] + (ref_sig_mas[i_r] / 1000.0) ** 2 + (sys_mas / 1000.0) ** 2)
        used = np.ones(i_s.size, bool)
        for _ in range(10):
            if used.sum() < max(nmin, len(monomials(order)) + 1):
                break
            f = fit_tan_sip(x[rows][used], y[rows][used], ref_ra[i_r][used], ref_dec[i_r][used], order=order,
                            sigma_arcsec=sig[used], bbox=(x0, x1, y0, y1), scale_covariance=True)
            pra, pdec = f.wcs.pixel_to_world_values(x[rows], y[rows])
            pxi, peta = project(np.asarray(pra, float), np.asarray(pdec, float), basis)
            qxi, qeta = project(ref_ra[i_r], ref_dec[i_r], basis)
            chi = np.hypot(pxi - qxi, peta - qeta) / sig
            scale_chi = math.sqrt(max(1.0, f.chi2 / max(f.dof, 1.0)))
            new_used = chi <= clip_sigma * scale_chi
            fit = f
            if np.array_equal(new_used, used):
                break
            used = new_used
        if fit is None:
            reason = "too few matches left after outlier rejection"
            break
        rms = fit.rms_arcsec
        new_radius = max(min(radius, 5.0 * max(rms, float(np.median(sig)))), 0.2, 2.0 * float(np.median(sig)))
        if it > 0 and new_radius == radius:
            break
        radius = new_radius
    if fit is None:
        return fail(reason or "the TAN-SIP fit failed", off, rot, sc, sim.flip)
    n_used = int(used.sum())
    if n_used < min_matches:
        return fail(f"only {n_used} matches survive the outlier rejection (min_matches={min_matches})", off, rot,
                    sc, sim.flip)
    chi2_dof = fit.chi2 / max(fit.dof, 1.0)
    rows = good[i_s]
    fra, fdec = fit.wcs.pixel_to_world_values(x[rows], y[rows])
    fxi, feta = project(np.asarray(fra, float), np.asarray(fdec, float), tangent_basis(ra_c, dec_c))
    qxi, qeta = project(ref_ra[i_r], ref_dec[i_r], tangent_basis(ra_c, dec_c))
    m = QTable()
    m["row"] = rows.astype(np.int64)
    m["ref_index"] = ref_order[i_r].astype(np.int64)
    m["ref_id"] = (col(ref, "id", np.int64)[ref_order[i_r]] if "id" in ref.colnames
                   else ref_order[i_r].astype(np.int64))
    m["x"] = x[rows] * u.pix
    m["y"] = y[rows] * u.pix
    m["ra"] = ref_ra[i_r] * u.deg
    m["dec"] = ref_dec[i_r] * u.deg
    m["dra_mas"] = (fxi - qxi) * 1000.0 * u.mas
    m["ddec_mas"] = (feta - qeta) * 1000.0 * u.mas
    m["sigma_mas"] = sig * 1000.0 * u.mas
    m["predicted_mas"] = fit.mapping_error_arcsec(x[rows], y[rows]) * 1000.0 * u.mas
    m["used"] = used
    rms_mas = float(np.sqrt(np.mean(np.concatenate([(fxi - qxi)[used], (feta - qeta)[used]]) ** 2)) * 1000.0)
    return WcsFitResult(True, "", fit.wcs, fit, m, int(i_s.size), n_used, rms_mas, float(chi2_dof), fit.order, off,
                        rot, sc, sim.flip, flags)
