"""Joint photometric calibration (ubercal): per-visit zeropoints with a smooth focal-plane
term, per-detector terms and an optional colour term, on repeated measurements + reference."""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable
from scipy.spatial import cKDTree
from scipy.stats import chi2 as chi2_dist

from .._errors import InvalidInputError
from ..core import AB_MAG_OF_1_NJY, PhotoCalib, as_rng, validate_refcat
from ._associate import Association
from ._astrometry import AstrometryResult, _detector_boxes
from ._geometry import ARCSEC, local_basis, project, unit_vectors
from ._inputs import check_fraction, check_nonneg, check_order, check_positive, column, fast_unique
from ._poly import cheb_vander, n_terms
from ._solver import CameraBlock, Problem, covariance, jc_dot, solve_step

__all__ = ["PhotometryResult", "PhotometricModel", "fit_photometry", "BANDS_ORDER"]

log = logging.getLogger("lsstdrp.jointcal")
_MAG = 2.5 / math.log(10.0)
#: Canonical band order used to name colours (``color_g_r`` = g - r).
BANDS_ORDER = ("u", "g", "r", "i", "z", "y")


@dataclasses.dataclass(frozen=True, eq=False)
class PhotometryResult:
    """The joint photometric solution (see :func:`fit_photometry`).

    Attributes
    ----------
    success : bool
    reason : str
    photo_calib : dict
        ``(visit, detector) -> PhotoCalib`` (e⁻ -> nJy, with the spatial variation over
        the detector as a Chebyshev term; valid for a source of the reference colour
        when a colour term is fitted). Empty when ``success`` is False.
    export_error : astropy.table.QTable
        ``visit, detector, max_error_mmag``: largest difference between each
        ``PhotoCalib`` and the fitted model on the detector.
    chi2, dof, chi2_dof : float
    n_measurements, n_stars, n_clipped, n_variable, n_reference : int
        Fitted measurements, fitted (object, band) pairs, clipped measurements, star
        bands rejected as variable, fitted star bands tied to the reference.
    repeatability : dict
        Per band, bright stars (mean S/N >= ``bright_snr``): ``rms_mmag`` (scatter of
        calibrated magnitudes about each star's mean, ``n/(n-1)`` corrected),
        ``photon_mmag`` (rms of the measurement errors) and ``excess_mmag`` (their
        difference in quadrature, 0 if negative), ``n_stars``.
    absolute_offset : dict
        Per band: ``offset_mmag`` (weighted mean of fitted minus reference magnitude of
        the tied stars), ``err_mmag``, ``n``.
    zeropoints : astropy.table.QTable
        ``visit, band, zeropoint, zeropoint_err`` (AB mag of 1 e⁻ at the focal-plane
        centre, without the detector terms).
    detector_terms : astropy.table.QTable
        ``detector, offset_mmag, offset_err_mmag`` (constant term of each detector).
    color_terms : dict
        Per band: the colour coefficient (mag per mag of colour), or empty.
    objects : astropy.table.QTable
        One row per associated object: ``object``, per band ``mag_<b>``,
        ``mag_<b>_err``, ``n_<b>`` (weighted mean calibrated AB magnitude of its
        unclipped measurements), ``chi2_<b>`` (chi² of those measurements about the
        mean, ``n_<b> - 1`` degrees of freedom), ``variable`` (a band's chi² beyond the
        ``1 - variability_p_value`` quantile, or rejected as variable in the fit: its
        colour mixes epochs and is not a colour), and colours ``color_<b1>_<b2>`` with
        ``*_err``.
    residuals : astropy.table.QTable
        One row per associated measurement with a positive flux: ``row, visit,
        detector, object, band, mag_inst, mag_cal, resid_mmag`` (calibrated minus the
        star's fitted mean), ``chi``, ``used``, ``clipped``, ``reserved``.
    validation : dict
        Reserved stars: ``n_stars, n_measurements, chi2_dof, rms_mmag``, after
        removing the ``n_variable`` reserved star bands that fail the fitted stars'
        variability test.
    covariance : numpy.ndarray
        Covariance of the calibration parameters.
    model : PhotometricModel or None
        The fitted calibration model (None when ``success`` is False).
    """

    success: bool
    reason: str
    photo_calib: dict
    export_error: QTable
    chi2: float
    dof: float
    chi2_dof: float
    n_measurements: int
    n_stars: int
    n_clipped: int
    n_variable: int
    n_reference: int
    repeatability: dict
    absolute_offset: dict
    zeropoints: QTable
    detector_terms: QTable
    color_terms: dict
    objects: QTable
    residuals: QTable
    validation: dict
    covariance: np.ndarray
    model: PhotometricModel | None = None

    def calib_error(self, visit: int, detector: int, x: Any, y: Any) -> np.ndarray:
        """Predicted 1-sigma error (mag) of the fitted calibration at pixels of one exposure.

        Parameters
        ----------
        visit, detector : int
        x, y : array_like
            0-based pixel coordinates.

        Returns
        -------
        numpy.ndarray
        """
        if self.model is None:
            raise InvalidInputError("the fit failed; there is no calibration model")
        j, cols = self.model.design(visit, detector, x, y)
        keep = cols < self.covariance.shape[0]
        jk = j[:, keep]
        sub = self.covariance[np.ix_(cols[keep], cols[keep])]
        return np.sqrt(np.clip(np.einsum("np,pq,nq->n", jk, sub, jk), 0, None))

    def __repr__(self) -> str:
        return (f"PhotometryResult(success={self.success}, chi2_dof={self.chi2_dof:.3f}, "
                f"n_measurements={self.n_measurements}, n_stars={self.n_stars}, "
                f"photo_calib={len(self.photo_calib)} exposures)")


@dataclasses.dataclass(frozen=True, eq=False)
class PhotometricModel:
    r"""The fitted photometric calibration as a function of (visit, detector, x, y).

    ``m_cal = m_inst + offset(visit, detector, x, y)`` for a source of the reference
    colour (see :func:`fit_photometry`); focal-plane coordinates come from the
    astrometric frame (``frame_model``) or, without one, from each visit's tangent
    plane through the initial WCS.

    Attributes
    ----------
    visits, detectors : numpy.ndarray of int
    bands : tuple of str
    visit_order, detector_order : int
    params : numpy.ndarray
        Calibration parameters, with a trailing 0 for fixed terms.
    visit_cols, detector_cols : numpy.ndarray
        Parameter index of each term (``len(params) - 1`` = fixed at 0).
    center, radius : numpy.ndarray, float
        Normalisation of the focal-plane coordinates (arcsec).
    boxes : numpy.ndarray, (n_detectors, 4)
        Pixel boxes of the detectors.
    frame_model : AstrometricModel or None
    tangents : dict
        ``visit -> (c, e, n)`` tangent points (when ``frame_model`` is None).
    wcs : dict
        Initial WCS (when ``frame_model`` is None).
    """

    visits: np.ndarray
    detectors: np.ndarray
    bands: tuple
    visit_order: int
    detector_order: int
    params: np.ndarray
    visit_cols: np.ndarray
    detector_cols: np.ndarray
    center: np.ndarray
    radius: float
    boxes: np.ndarray
    frame_model: Any
    tangents: dict
    wcs: dict

    def focal(self, visit: np.ndarray, det: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Focal-plane coordinates (n, 2) in arcsec of pixels (NaN where unknown)."""
        visit, det = np.asarray(visit, np.int64), np.asarray(det, np.int64)
        x, y = np.asarray(x, float), np.asarray(y, float)
        out = np.full((len(x), 2), np.nan)
        if self.frame_model is not None:
            ok = np.isin(det, self.frame_model.detectors)
            out[ok] = self.frame_model.frame(det[ok], x[ok], y[ok])
            return out
        keys = np.unique(np.stack([visit, det], 1), axis=0)
        for v, d in keys:
            s = (visit == v) & (det == d)
            w = self.wcs.get((int(v), int(d)))
            if w is None or int(v) not in self.tangents:
                continue
            ra, dec = w.pixel_to_world_values(x[s], y[s])
            xi, eta = project(unit_vectors(np.asarray(ra), np.asarray(dec)), *self.tangents[int(v)])
            out[s] = np.stack([xi, eta], -1)
        return out

    def visit_basis(self, uv: np.ndarray) -> np.ndarray:
        """Chebyshev terms of the normalised focal-plane coordinates."""
        return cheb_vander((uv[:, 0] - self.center[0]) / self.radius, (uv[:, 1] - self.center[1]) / self.radius,
                           self.visit_order)

    def detector_basis(self, di: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Chebyshev terms of the normalised pixel coordinates of detectors (internal indices)."""
        b = self.boxes[di]
        return cheb_vander((2 * x - (b[:, 0] + b[:, 1])) / (b[:, 1] - b[:, 0]),
                           (2 * y - (b[:, 2] + b[:, 3])) / (b[:, 3] - b[:, 2]), self.detector_order)

    def design(self, visit: int, detector: int, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Design rows (n, n_terms) and their parameter columns for pixels of one exposure."""
        x = np.atleast_1d(np.asarray(x, float))
        y = np.atleast_1d(np.asarray(y, float))
        vi = int(np.searchsorted(self.visits, visit))
        di = int(np.searchsorted(self.detectors, detector))
        if vi >= len(self.visits) or self.visits[vi] != visit or di >= len(self.detectors) \
                or self.detectors[di] != detector:
            raise InvalidInputError(f"(visit, detector) = ({visit}, {detector}) is not in the calibration")
        n = len(x)
        bv = self.visit_basis(self.focal(np.full(n, visit), np.full(n, detector), x, y))
        bd = self.detector_basis(np.full(n, di), x, y)
        return np.concatenate([bv, bd], 1), np.concatenate([self.visit_cols[vi, 0], self.detector_cols[di, 0]])

    def offset(self, visit: int, detector: int, x: Any, y: Any) -> np.ndarray:
        """Calibration (mag): ``m_cal = m_inst + offset`` at pixels of one exposure.

        Parameters
        ----------
        visit, detector : int
        x, y : array_like

        Returns
        -------
        numpy.ndarray
        """
        j, cols = self.design(visit, detector, x, y)
        return j @ self.params[cols]


def _match_photometric(assoc: Association, ref: QTable) -> np.ndarray:
    """Row of the photometric reference catalog matched to each object (-1: none)."""
    n_obj = len(assoc.objects)
    out = np.full(n_obj, -1, np.int64)
    ov = unit_vectors(column(assoc.objects, "ra"), column(assoc.objects, "dec"))
    rv = unit_vectors(column(ref, "ra"), column(ref, "dec"))
    chord = 2.0 * np.sin(0.5 * assoc.ref_match_radius_arcsec * ARCSEC)
    dist, j = cKDTree(ov).query(rv, distance_upper_bound=chord)
    hit = np.nonzero(np.isfinite(dist))[0]
    order = hit[np.argsort(dist[hit])]
    taken = np.zeros(n_obj, bool)
    for r in order:  # nearest first, one-to-one
        if not taken[j[r]]:
            taken[j[r]] = True
            out[j[r]] = r
    return out


def fit_photometry(association: Association, refcat: Any, *, astrometry: AstrometryResult | None = None,
                   visit_order: int = 2, detector_order: int = 0, color_term: tuple[str, str] | None = None,
                   systematic_error_mmag: float = 0.0, clip_sigma: float = 5.0, variability_p_value: float = 1e-4,
                   reserve_fraction: float = 0.1, min_snr: float = 10.0, isolated_only: bool = True,
                   bright_snr: float = 100.0, calib_order: int = 4, max_iter: int = 15,
                   rng: Any = None) -> PhotometryResult:
    r"""Fit the photometric calibration of all visits jointly with the reference catalog.

    Parameters
    ----------
    association : Association
        From :func:`associate` (with a flux column).
    refcat : astropy.table.Table
        Photometric reference catalog (``id, ra, dec, <band>_flux[_err]`` in nJy,
        standard bandpasses), matched to the objects by position.
    astrometry : AstrometryResult, optional
        Its focal-plane frame gives the coordinates of the smooth term; without it,
        each visit's tangent plane from the initial WCS is used.
    visit_order : int
        Total order of the per-visit Chebyshev polynomial over the focal plane
        (0: a zeropoint only).
    detector_order : int
        Total order of the per-detector Chebyshev polynomial in pixels (0: a constant
        per detector).
    color_term : tuple of str, optional
        ``(b1, b2)``: fit one colour coefficient per band, times the star's fitted
        ``b1 - b2`` colour minus its median.
    systematic_error_mmag : float
        Error added in quadrature to every measurement.
    clip_sigma : float
        Outlier threshold on normalised residuals (worst per star per iteration).
    variability_p_value : float
        A star band whose chi² exceeds the ``1 - p`` quantile for its degrees of
        freedom is rejected as variable.
    reserve_fraction : float
        Fraction of eligible star bands held out for validation.
    min_snr : float
        Minimum S/N of a fitted measurement.
    isolated_only : bool
        Fit only isolated objects.
    bright_snr : float
        Mean S/N of the stars of the repeatability statistics.
    calib_order : int
        Order of the Chebyshev spatial term of the exported ``PhotoCalib``.
    max_iter : int
        Maximum solve / reject iterations.
    rng : None, int or numpy.random.Generator
        Seed of the reserved star choice.

    Returns
    -------
    PhotometryResult
        ``photo_calib`` per (visit, detector), repeatability and absolute-offset
        statistics, mean calibrated magnitudes and colours per object, residuals.

    Raises
    ------
    InvalidInputError
        Invalid options, no flux column, fewer than two visits, or no reference star
        among the fitted stars (no overlap).

    Notes
    -----
    Each measurement ``i`` of star ``s`` (band ``b``) in visit ``v`` on detector ``d``
    at focal-plane position ``u`` and pixel ``x`` gives

    .. math::

        m_i + Z_v + \sum_{1 \le p+q \le N_v} a_{v,pq} T_p(\hat u) T_q(\hat v) +
        \sum_{p+q \le N_d} b_{d,pq} T_p(\hat x) T_q(\hat y) + k_b (c_s - c_0)
        = M_{s,b} \pm \sigma_i,

    with :math:`m_i = -2.5\log_{10} F_i` (e⁻), the calibrated magnitude on the left
    and the star's magnitude :math:`M_{s,b}` a free parameter; reference stars add
    :math:`M_{s,b} = m^{\rm ref}_{s,b} \pm \sigma^{\rm ref}`, which fix the absolute
    scale and the large scales. The problem is linear and solved exactly with the star
    magnitudes eliminated (the same Schur-complement engine as the astrometry);
    outliers and variable stars are rejected iteratively. Gauge: the first detector's
    constant is zero (a common offset of all detectors is a zeropoint), and with
    ``detector_order >= 1`` the spatial term of the visit with the most measurements
    is zero (a common focal-plane pattern is otherwise shared between visits and
    detectors). This is the ubercal approach of Padmanabhan et al. (2008) and the
    FGCM/jointcal model structure without FGCM's atmosphere model (Burke et al. 2018);
    the weighting follows the least-squares formulation of Bramich & Freudling (2012).

    References
    ----------
    .. [1] Padmanabhan, N. et al. 2008, ApJ 674, 1217 (ubercal).
    .. [2] Burke, D. L. et al. 2018, AJ 155, 41 (FGCM).
    .. [3] Bramich, D. M. & Freudling, W. 2012, MNRAS 424, 1584.

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> from lsstdrp.jointcal import associate, fit_photometry
    >>> s = make_survey("tiny", rng=3, render=False, bandpass_shift_nm=0.0)
    >>> wcs = {k: s.truth[k].tan_sip.wcs for k in s.keys()}
    >>> assoc = associate(s.all_catalogs(), s.visits, wcs, s.refcat_astrometric)
    >>> res = fit_photometry(assoc, s.refcat_photometric, rng=0)
    >>> res.success, sorted(res.photo_calib)[0]
    (True, (1000, 0))
    """
    if not isinstance(association, Association):
        raise InvalidInputError(f"`association` must be an Association; got {type(association).__name__}")
    if association.flux_column is None:
        raise InvalidInputError("`association` was built without a flux column; photometry needs one")
    vorder = check_order(visit_order, "visit_order", 0, 6)
    dorder = check_order(detector_order, "detector_order", 0, 4)
    corder = check_order(calib_order, "calib_order", 0, 8)
    floor = check_nonneg(systematic_error_mmag, "systematic_error_mmag") / 1000.0
    clip = check_positive(clip_sigma, "clip_sigma")
    pval = check_fraction(variability_p_value, "variability_p_value")
    reserve = check_fraction(reserve_fraction, "reserve_fraction")
    min_snr = check_nonneg(min_snr, "min_snr")
    bright_snr = check_nonneg(bright_snr, "bright_snr")
    if astrometry is not None and not isinstance(astrometry, AstrometryResult):
        raise InvalidInputError(f"`astrometry` must be an AstrometryResult or None; got {type(astrometry).__name__}")
    ref = validate_refcat(refcat, "photometric", name="refcat")
    assoc = association
    me = assoc.measurements
    flux = column(me, assoc.flux_column)
    ferr = column(me, f"{assoc.flux_column}_err")
    visit = column(me, "visit", np.int64)
    det = column(me, "detector", np.int64)
    obj = column(me, "object", np.int64)
    x, y = column(me, "x"), column(me, "y")
    band = np.asarray(me["band"])
    snr = column(me, "snr")
    n_all, n_obj = len(me), len(assoc.objects)
    present = set(np.asarray(assoc.visits["band"]).astype(str)[np.isin(column(assoc.visits, "visit", np.int64),
                                                                        fast_unique(visit))].tolist())
    bands = [b for b in BANDS_ORDER if b in present] + sorted(present - set(BANDS_ORDER))
    if color_term is not None:
        if len(color_term) != 2 or any(b not in bands for b in color_term):
            raise InvalidInputError(f"`color_term` must be two bands of the data {bands}; got {color_term!r}")
    gen = as_rng(rng)
    # band index of each measurement through its visit (strings compared once per visit)
    vt_ids = column(assoc.visits, "visit", np.int64)
    vt_band = np.asarray(assoc.visits["band"]).astype(str)
    vt_sort = np.argsort(vt_ids)
    vrow = vt_sort[np.searchsorted(vt_ids[vt_sort], visit).clip(0, len(vt_ids) - 1)]
    bidx = np.array([bands.index(b) if b in bands else 0 for b in vt_band], np.int64)[vrow]

    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -_MAG * np.log(np.where(flux > 0, flux, 1.0)), np.nan)
        sig = _MAG * ferr / flux
    valid = (obj >= 0) & np.isfinite(mag) & np.isfinite(sig) & (sig > 0) & np.isfinite(x) & np.isfinite(y)
    ok = valid & ~(np.isfinite(snr) & (snr < min_snr))
    if isolated_only:
        ok &= np.asarray(assoc.objects["isolated"], bool)[np.maximum(obj, 0)]
    sig_t = np.sqrt(np.where(valid, sig, 1.0) ** 2 + floor**2)

    # star bands
    nb = len(bands)
    sb_all = np.where(valid, np.maximum(obj, 0) * nb + bidx, -1)
    pref = _match_photometric(assoc, ref)
    ref_mag = np.full((n_obj, nb), np.nan)
    ref_sig = np.full((n_obj, nb), np.nan)
    for j, b in enumerate(bands):
        if f"{b}_flux" in ref.colnames:
            rf, rfe = column(ref, f"{b}_flux"), column(ref, f"{b}_flux_err")
            hit = pref >= 0
            f_, fe_ = rf[pref[hit]], rfe[pref[hit]]
            good = (f_ > 0) & (fe_ > 0) & np.isfinite(f_) & np.isfinite(fe_)
            idx = np.nonzero(hit)[0][good]
            ref_mag[idx, j] = AB_MAG_OF_1_NJY - _MAG * np.log(f_[good])
            ref_sig[idx, j] = _MAG * fe_[good] / f_[good]
    ref_mag, ref_sig = ref_mag.ravel(), ref_sig.ravel()
    has_ref_sb = np.isfinite(ref_mag)
    cnt = np.bincount(sb_all[ok], minlength=n_obj * nb)
    eligible = (cnt >= 2) | ((cnt >= 1) & has_ref_sb)
    elig_idx = np.nonzero(eligible)[0]
    reserved = np.zeros(n_obj * nb, bool)
    if reserve > 0 and elig_idx.size:
        reserved[gen.choice(elig_idx, size=int(round(reserve * elig_idx.size)), replace=False)] = True
    fit_sb = eligible & ~reserved
    if not np.any(fit_sb & has_ref_sb):
        raise InvalidInputError("no photometric reference star among the fitted stars: the reference catalog does "
                                "not overlap the data")
    in_fit = ok & fit_sb[np.maximum(sb_all, 0)]
    vis_ids = fast_unique(visit[in_fit])
    det_ids = fast_unique(det[in_fit])
    if len(vis_ids) < 2:
        raise InvalidInputError(f"only {len(vis_ids)} visit(s) have fitted stars; joint calibration needs at least 2")
    cover = valid & np.isin(visit, vis_ids) & np.isin(det, det_ids)
    vi = np.searchsorted(vis_ids, visit).clip(0, len(vis_ids) - 1)
    di = np.searchsorted(det_ids, det).clip(0, len(det_ids) - 1)
    boxes = _detector_boxes(assoc, det_ids, x[in_fit], y[in_fit], det[in_fit])
    frame_model = astrometry.model if astrometry is not None and astrometry.model is not None else None
    tangents: dict = {}
    wcs_sub: dict = {}
    if frame_model is None:
        for v in vis_ids:
            vecs = []
            for j_d, d in enumerate(det_ids):
                w = assoc.wcs.get((int(v), int(d)))
                if w is None:
                    continue
                wcs_sub[(int(v), int(d))] = w
                b = boxes[j_d]
                ra, dec = w.pixel_to_world_values(0.5 * (b[0] + b[1]), 0.5 * (b[2] + b[3]))
                vecs.append(unit_vectors(float(ra), float(dec)))
            tangents[int(v)] = local_basis(np.mean(vecs, axis=0))
    pmodel = PhotometricModel(visits=vis_ids, detectors=det_ids, bands=tuple(bands), visit_order=vorder,
                              detector_order=dorder, params=np.zeros(1), visit_cols=np.zeros((0, 1, 0), np.int64),
                              detector_cols=np.zeros((0, 1, 0), np.int64), center=np.zeros(2), radius=1.0,
                              boxes=boxes, frame_model=frame_model, tangents=tangents, wcs=wcs_sub)
    uv = np.full((n_all, 2), np.nan)
    cidx = np.nonzero(cover)[0]
    uv[cidx] = pmodel.focal(visit[cidx], det[cidx], x[cidx], y[cidx])
    cover &= np.all(np.isfinite(uv), axis=1)
    in_fit &= cover
    cidx = np.nonzero(cover)[0]
    ctr = np.nanmean(uv[in_fit], axis=0)
    rad = float(np.nanmax(np.hypot(*(uv[in_fit] - ctr).T))) * 1.05
    pmodel = dataclasses.replace(pmodel, center=ctr, radius=rad)

    ntv, ntd = n_terms(vorder), n_terms(dorder)
    nv, nd = len(vis_ids), len(det_ids)
    counts_v = np.bincount(vi[in_fit], minlength=nv)
    ref_vi = int(np.argmax(counts_v))
    # columns: visits (all terms), detectors (constant of detector 0 fixed), colour terms
    pos = 0
    vis_cols = np.empty((nv, 1, ntv), np.int64)
    for i in range(nv):
        for t in range(ntv):
            if dorder >= 1 and i == ref_vi and t >= 1:
                vis_cols[i, 0, t] = -1
            else:
                vis_cols[i, 0, t] = pos
                pos += 1
    det_cols = np.empty((nd, 1, ntd), np.int64)
    for i in range(nd):
        for t in range(ntd):
            if i == 0 and t == 0:
                det_cols[i, 0, t] = -1
            else:
                det_cols[i, 0, t] = pos
                pos += 1
    col_cols = np.empty((nb, 1, 1), np.int64)
    for j in range(nb):
        if color_term is not None:
            col_cols[j, 0, 0] = pos
            pos += 1
        else:
            col_cols[j, 0, 0] = -1
    n_cam = pos
    for arr in (vis_cols, det_cols, col_cols):
        arr[arr < 0] = n_cam

    params = np.zeros(n_cam + 1)
    star_mag = np.full(n_obj * nb, np.nan)
    # initial star magnitudes: reference or mean instrumental + median offset
    colors = np.zeros(n_obj)
    c_ref = 0.0
    phi_v = np.zeros((n_all, ntv))
    phi_d = np.zeros((n_all, ntd))
    phi_v[cidx] = pmodel.visit_basis(uv[cidx])
    phi_d[cidx] = pmodel.detector_basis(di[cidx], x[cidx], y[cidx])

    one_all = np.ones((n_all, 1, 1))
    calib_blocks = (CameraBlock(vi.astype(np.int64), vis_cols, one_all, phi_v),
                    CameraBlock(di.astype(np.int64), det_cols, one_all, phi_d))
    calib_cache: dict = {}

    def calib(idx: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Calibration offset (mag) of measurements idx: m_cal = m + calib (all rows computed once per p)."""
        key = (p.tobytes(), colors.tobytes() if color_term is not None else b"", c_ref)
        if calib_cache.get("key") != key:
            z = jc_dot(calib_blocks, p[:-1], n_all, 1)[:, 0]
            if color_term is not None:
                z += p[col_cols[bidx, 0, 0]] * (colors[np.maximum(obj, 0)] - c_ref)
            calib_cache.update(key=key, z=z)
        return calib_cache["z"][idx]

    # zeropoint start: median of (ref - inst) over tied measurements per band, else 0
    act = np.nonzero(in_fit)[0]
    act = act[np.argsort(sb_all[act], kind="stable")]  # kept sorted by star band
    vis_band = np.bincount(vi[act] * nb + bidx[act], minlength=nv * nb).reshape(nv, nb)
    for j in range(nb):
        s = act[(bidx[act] == j) & has_ref_sb[sb_all[act]]]
        if s.size:
            zp0 = float(np.median(ref_mag[sb_all[s]] - mag[s]))
            params[vis_cols[vis_band[:, j] > 0, 0, 0]] = zp0
    params[n_cam] = 0.0

    def update_star_means(idx: np.ndarray, p: np.ndarray) -> None:
        w = 1.0 / sig_t[idx] ** 2
        mc = mag[idx] + calib(idx, p)
        sw = np.bincount(sb_all[idx], weights=w, minlength=n_obj * nb)
        sm = np.bincount(sb_all[idx], weights=w * mc, minlength=n_obj * nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            star_mag[:] = np.where(sw > 0, sm / sw, np.nan)

    update_star_means(act, params)
    if color_term is not None:
        c_ref = _update_colors(colors, star_mag, n_obj, nb, bands, color_term, None)

    sb_loc_all = sb_all
    clipped = np.zeros(n_all, bool)
    variable = np.zeros(n_obj * nb, bool)
    tie = has_ref_sb.copy()
    step = None
    factor = None
    n_changed = 0
    converged = False
    iterations = 0
    for it in range(max_iter):
        iterations = it + 1
        sba = sb_loc_all[act]
        first_ = np.ones(sba.size, bool)
        first_[1:] = sba[1:] != sba[:-1]
        uniq, sloc = sba[first_], np.cumsum(first_) - 1
        w = 1.0 / sig_t[act]
        e = ((mag[act] + calib(act, params) - star_mag[sb_all[act]]) * w)[:, None]
        coef = w[:, None, None]
        blocks = [CameraBlock(vi[act].astype(np.int64), vis_cols, coef, phi_v[act]),
                  CameraBlock(di[act].astype(np.int64), det_cols, coef, phi_d[act])]
        if color_term is not None:
            blocks.append(CameraBlock(bidx[act], col_cols, (w * (colors[obj[act]] - c_ref))[:, None, None],
                                      np.ones((len(act), 1))))
        tied = tie[uniq]
        pj = np.zeros((len(uniq), 1, 1))
        pe = np.zeros((len(uniq), 1))
        pj[tied, 0, 0] = 1.0 / ref_sig[uniq[tied]]
        pe[tied, 0] = (star_mag[uniq[tied]] - ref_mag[uniq[tied]]) / ref_sig[uniq[tied]]
        prob = Problem(n_camera=n_cam, blocks=tuple(blocks), star=sloc.astype(np.int64), n_stars=len(uniq),
                       js=-w[:, None, None].copy(), e=e, prior_j=pj, prior_e=pe,
                       group=vi[act].astype(np.int64) * nd + di[act])
        # the reduced matrix is small (visits x a few terms): rebuilding it is cheaper than CG
        # preconditioned by the previous one after variable stars are removed
        step = solve_step(prob)
        if step.built:
            n_changed = 0
        factor = step.factor
        params[:n_cam] += step.dc
        star_mag[uniq] += step.ds[:, 0]
        if color_term is not None:
            _update_colors(colors, star_mag, n_obj, nb, bands, color_term, c_ref)
        # residuals after the step
        r = (mag[act] + calib(act, params) - star_mag[sb_all[act]]) / sig_t[act]
        n_new = 0
        sa = sloc
        cand = np.nonzero(np.abs(r) > clip)[0]
        if cand.size:
            srt = cand[np.lexsort((-np.abs(r[cand]), sa[cand]))]
            first = np.ones(srt.size, bool)
            first[1:] = sa[srt][1:] != sa[srt][:-1]
            clipped[act[srt[first]]] = True
            n_new += int(first.sum())
        # variability: whole star bands with an improbable chi2
        c2 = np.bincount(sa, weights=r**2, minlength=len(uniq))
        nn = np.bincount(sa, minlength=len(uniq))
        dof_s = nn - 1 + tied
        thr = chi2_dist.isf(pval, np.maximum(dof_s, 1)) if pval > 0 else np.inf
        var_new = (dof_s >= 2) & (c2 > thr) & ~variable[uniq]
        variable[uniq[var_new]] = True
        n_new += int(var_new.sum())
        # reference ties that disagree
        if np.any(tied):
            rr = (star_mag[uniq] - ref_mag[uniq]) / np.where(tied, ref_sig[uniq], 1.0)
            bad = tied & (np.abs(rr) > clip)
            tie[uniq[bad]] = False
            n_new += int(bad.sum())
        change = float(np.max(np.abs(step.dc))) if n_cam else 0.0
        log.info("fit_photometry: iteration %d chi2=%.6g, %d rejected", it + 1, step.chi2, n_new)
        if n_new:
            n_changed += n_new
            keep = ~clipped[act] & ~variable[sb_all[act]]
            act = act[keep]
            cnt_a = np.bincount(sb_all[act], minlength=n_obj * nb)
            okst = (cnt_a >= 2) | ((cnt_a >= 1) & tie)
            act = act[okst[sb_all[act]]]
        elif change < 1e-7 and it > 0:
            converged = True
            break
    success, reason = True, ""
    if not converged:
        success, reason = False, f"not converged after {max_iter} iterations"
    if step is not None and not step.pivot_ok:
        success, reason = False, "the calibration system is singular (disconnected visits or detectors)"

    # final quantities (covariance rebuilt at the solution unless < 0.1% of the data changed)
    uniq = fast_unique(sb_all[act])
    if step is not None and n_changed > 1e-3 * max(len(act), 1):
        step = solve_step(prob)
    cov = covariance(step.factor) if step is not None else np.zeros((0, 0))
    w_act = 1.0 / sig_t[act]
    r_act = (mag[act] + calib(act, params) - star_mag[sb_all[act]]) * w_act
    tied_f = tie[uniq]
    chi2 = float(np.sum(r_act**2) + np.sum(((star_mag[uniq] - ref_mag[uniq]) / ref_sig[uniq])[tied_f] ** 2))
    dof = float(len(act) + tied_f.sum() - n_cam - len(uniq))

    # repeatability of bright stars (photon noise removed in quadrature)
    with np.errstate(invalid="ignore", divide="ignore"):
        med = np.bincount(sb_all[act], weights=snr[act], minlength=n_obj * nb) / np.bincount(
            sb_all[act], minlength=n_obj * nb)  # mean S/N per star band
    repeat = {}
    offsets = {}
    mcal_act = mag[act] + calib(act, params)
    for j, b in enumerate(bands):
        sel = (bidx[act] == j) & (med[sb_all[act]] >= bright_snr)
        s_ = sb_all[act][sel]
        if s_.size == 0:
            repeat[b] = {"rms_mmag": math.nan, "photon_mmag": math.nan, "excess_mmag": math.nan, "n_stars": 0}
        else:
            n_s = np.bincount(s_, minlength=n_obj * nb)
            mean_s = np.bincount(s_, weights=mcal_act[sel], minlength=n_obj * nb) / np.maximum(n_s, 1)
            dev = mcal_act[sel] - mean_s[s_]
            multi = n_s[s_] >= 2
            corr = n_s[s_][multi] / (n_s[s_][multi] - 1.0)
            rms = math.sqrt(float(np.mean(dev[multi] ** 2 * corr))) if multi.any() else math.nan
            ph = math.sqrt(float(np.mean(sig_t[act][sel][multi] ** 2))) if multi.any() else math.nan
            ex = math.sqrt(max(rms**2 - ph**2, 0.0)) if multi.any() else math.nan
            repeat[b] = {"rms_mmag": rms * 1e3, "photon_mmag": ph * 1e3, "excess_mmag": ex * 1e3,
                         "n_stars": int(np.sum(n_s >= 2))}
        tb = uniq[tied_f & (uniq % nb == j)]
        if tb.size:
            # the fitted magnitude's own error ~ its measurements' combined error
            wsum = np.bincount(sb_all[act], weights=w_act**2, minlength=n_obj * nb)[tb]
            var = ref_sig[tb] ** 2 + 1.0 / np.maximum(wsum, 1e-300)
            ww = 1.0 / var
            off = float(np.sum(ww * (star_mag[tb] - ref_mag[tb])) / np.sum(ww))
            offsets[b] = {"offset_mmag": off * 1e3, "err_mmag": 1e3 / math.sqrt(float(np.sum(ww))), "n": int(tb.size)}
        else:
            offsets[b] = {"offset_mmag": math.nan, "err_mmag": math.nan, "n": 0}

    # reserved star bands: their means from the calibrated measurements, residual scatter
    res_idx = np.nonzero(cover & ok & reserved[np.maximum(sb_all, 0)])[0]
    validation = {"n_stars": 0, "n_variable": 0, "n_measurements": 0, "chi2_dof": math.nan, "rms_mmag": math.nan}
    if res_idx.size:
        cnt_r = np.bincount(sb_all[res_idx], minlength=n_obj * nb)
        res_idx = res_idx[cnt_r[sb_all[res_idx]] >= 2]
    if res_idx.size:
        mc = mag[res_idx] + calib(res_idx, params)
        wr = 1.0 / sig_t[res_idx] ** 2
        sw = np.bincount(sb_all[res_idx], weights=wr, minlength=n_obj * nb)
        mm = np.bincount(sb_all[res_idx], weights=wr * mc, minlength=n_obj * nb) / np.maximum(sw, 1e-300)
        rr = (mc - mm[sb_all[res_idx]]) / sig_t[res_idx]
        # the fitted stars' variability test, applied to the reserved ones too
        c2r = np.bincount(sb_all[res_idx], weights=rr**2, minlength=n_obj * nb)
        nr = np.bincount(sb_all[res_idx], minlength=n_obj * nb)
        thr_r = chi2_dist.isf(pval, np.maximum(nr - 1, 1)) if pval > 0 else np.full(nr.shape, np.inf)
        var_r = c2r > thr_r
        n_var_r = int(np.sum(var_r & (nr > 0)))
        keep_r = ~var_r[sb_all[res_idx]]
        res_idx, mc, rr = res_idx[keep_r], mc[keep_r], rr[keep_r]
        ns = len(fast_unique(sb_all[res_idx]))
        validation = {"n_stars": ns, "n_variable": n_var_r, "n_measurements": int(res_idx.size),
                      "chi2_dof": float(np.sum(rr**2) / (res_idx.size - ns)),
                      "rms_mmag": float(np.sqrt(np.mean((mc - mm[sb_all[res_idx]]) ** 2)) * 1e3)}

    # per-object calibrated magnitudes and colours (all unclipped, valid measurements)
    use_o = np.nonzero(cover & ~clipped)[0]
    mc_all = mag[use_o] + calib(use_o, params)
    wo = 1.0 / sig_t[use_o] ** 2
    sw = np.bincount(sb_all[use_o], weights=wo, minlength=n_obj * nb).reshape(n_obj, nb)
    sm = np.bincount(sb_all[use_o], weights=wo * mc_all, minlength=n_obj * nb).reshape(n_obj, nb)
    no = np.bincount(sb_all[use_o], minlength=n_obj * nb).reshape(n_obj, nb)
    objects = QTable()
    objects["object"] = np.arange(n_obj, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mo = np.where(sw > 0, sm / sw, np.nan)
        me_err = np.where(sw > 0, 1.0 / np.sqrt(sw), np.nan)
    # chi2 of each object band about its mean: flags variables (and blends whose
    # measurements disagree) among all objects, fitted or not
    r_o = (mc_all - mo.ravel()[sb_all[use_o]]) * np.sqrt(wo)
    c2o = np.bincount(sb_all[use_o], weights=r_o**2, minlength=n_obj * nb).reshape(n_obj, nb)
    thr_o = chi2_dist.isf(pval, np.maximum(no - 1, 1)) if pval > 0 else np.full(no.shape, np.inf)
    var_o = ((no >= 2) & (c2o > thr_o)) | variable.reshape(n_obj, nb)
    for j, b in enumerate(bands):
        objects[f"mag_{b}"] = mo[:, j] * u.ABmag
        objects[f"mag_{b}_err"] = me_err[:, j] * u.mag
        objects[f"n_{b}"] = no[:, j]
        objects[f"chi2_{b}"] = c2o[:, j]
    objects["variable"] = np.any(var_o, axis=1)
    for j in range(nb - 1):
        b1, b2 = bands[j], bands[j + 1]
        objects[f"color_{b1}_{b2}"] = (mo[:, j] - mo[:, j + 1]) * u.mag
        objects[f"color_{b1}_{b2}_err"] = np.hypot(me_err[:, j], me_err[:, j + 1]) * u.mag

    # residual table
    residuals = QTable()
    residuals["row"] = cidx
    residuals["visit"] = visit[cidx]
    residuals["detector"] = det[cidx]
    residuals["object"] = obj[cidx]
    residuals["band"] = band[cidx]
    residuals["mag_inst"] = mag[cidx] * u.mag
    mcal_c = mag[cidx] + calib(cidx, params)
    residuals["mag_cal"] = mcal_c * u.ABmag
    ref_m = np.where(np.isfinite(star_mag[sb_all[cidx]]), star_mag[sb_all[cidx]], mo.ravel()[sb_all[cidx]])
    residuals["resid_mmag"] = (mcal_c - ref_m) * 1e3 * u.mmag
    residuals["chi"] = (mcal_c - ref_m) / sig_t[cidx]
    used = np.zeros(n_all, bool)
    used[act] = True
    residuals["used"] = used[cidx]
    residuals["clipped"] = clipped[cidx]
    residuals["reserved"] = reserved[np.maximum(sb_all[cidx], 0)]

    # zeropoints, detector terms, exports
    zp_t = QTable()
    zp_t["visit"] = vis_ids
    vb_counts = np.bincount(vi[cidx] * nb + bidx[cidx], minlength=nv * nb).reshape(nv, nb)
    vband = {int(v): (bands[int(vb_counts[i].argmax())] if vb_counts[i].sum() else "") for i, v in enumerate(vis_ids)}
    zp_t["band"] = np.array([vband[int(v)] for v in vis_ids])
    p0 = np.append(params[:n_cam], 0.0)
    zc = p0[vis_cols[:, 0, 0]]
    zp_t["zeropoint"] = zc * u.mag  # m_cal = m_inst + Z: the AB magnitude of 1 e- is Z
    zvar = np.array([cov[c, c] if c < n_cam else 0.0 for c in vis_cols[:, 0, 0]])
    zp_t["zeropoint_err"] = np.sqrt(zvar) * u.mag
    det_t = QTable()
    det_t["detector"] = det_ids
    det_t["offset_mmag"] = p0[det_cols[:, 0, 0]] * 1e3 * u.mmag
    det_t["offset_err_mmag"] = np.sqrt([cov[c, c] if c < n_cam else 0.0 for c in det_cols[:, 0, 0]]) * 1e3 * u.mmag
    color_terms = {b: float(p0[col_cols[j, 0, 0]]) for j, b in enumerate(bands)} if color_term else {}

    pmodel = dataclasses.replace(pmodel, params=p0, visit_cols=vis_cols, detector_cols=det_cols)
    calibs: dict = {}
    exp_rows = []
    if success:
        keys = [k_ for k_ in sorted(assoc.wcs) if k_[0] in vis_ids and k_[1] in det_ids]
        for key, (pc, err_mmag) in _export_calibs(pmodel, keys, cov, n_cam, corder).items():
            calibs[key] = pc
            exp_rows.append((key[0], key[1], err_mmag))
    export = QTable(rows=exp_rows, names=("visit", "detector", "max_error_mmag"),
                    dtype=(np.int64, np.int64, float)) if exp_rows else QTable(
        names=("visit", "detector", "max_error_mmag"), dtype=(np.int64, np.int64, float))
    return PhotometryResult(
        success=success, reason=reason, photo_calib=calibs, export_error=export, chi2=chi2, dof=dof,
        chi2_dof=chi2 / dof if dof > 0 else math.nan, n_measurements=len(act), n_stars=len(uniq),
        n_clipped=int(clipped.sum()), n_variable=int(variable.sum()), n_reference=int(tied_f.sum()),
        repeatability=repeat, absolute_offset=offsets, zeropoints=zp_t, detector_terms=det_t,
        color_terms=color_terms, objects=objects, residuals=residuals, validation=validation, covariance=cov,
        model=pmodel if success else None)


def _update_colors(colors: np.ndarray, star_mag: np.ndarray, n_obj: int, nb: int, bands: list, pair, c_ref):
    j1, j2 = bands.index(pair[0]), bands.index(pair[1])
    sm = star_mag.reshape(n_obj, nb)
    c = sm[:, j1] - sm[:, j2]
    fin = np.isfinite(c)
    med = float(np.median(c[fin])) if fin.any() else 0.0
    colors[:] = np.where(fin, c, med if c_ref is None else c_ref)
    return med if c_ref is None else c_ref


def _export_calibs(pmodel: PhotometricModel, keys: list, cov: np.ndarray, n_cam: int, corder: int) -> dict:
    """PhotoCalib of each (visit, detector): zeropoint at the centre + Chebyshev fractional term.

    The model's calibration is evaluated on a grid over the detector (all exposures at
    once), ``10^(-0.4 (z(x, y) - z_c)) - 1`` is fitted by a tensor Chebyshev series of
    order ``corder`` per axis (PhotoCalib's form), and the largest difference to the
    model on an independent grid (nodes and midpoints) is the export error (mmag).
    """
    from numpy.polynomial import chebyshev

    out: dict = {}
    if not keys:
        return out
    ng = max(corder + 4, 9)
    per_det: dict[int, tuple] = {}
    for _, d in keys:
        if d in per_det:
            continue
        di = int(np.searchsorted(pmodel.detectors, d))
        x0, x1, y0, y1 = pmodel.boxes[di]
        gx, gy = np.meshgrid(np.linspace(x0, x1, ng), np.linspace(y0, y1, ng))
        cx, cy = np.meshgrid(np.linspace(x0, x1, 2 * ng - 1), np.linspace(y0, y1, 2 * ng - 1))
        gx, gy, cx, cy = gx.ravel(), gy.ravel(), cx.ravel(), cy.ravel()
        xs = (2.0 * gx - (x0 + x1)) / (x1 - x0)
        ys = (2.0 * gy - (y0 + y1)) / (y1 - y0)
        pinv = np.linalg.pinv(chebyshev.chebvander2d(xs, ys, [corder, corder]))
        per_det[d] = (di, (x0, x1, y0, y1), gx, gy, cx, cy, pinv)
    # evaluate the calibration at grid, check-grid and centre points of all exposures at once
    vv, dd, xx, yy, parts = [], [], [], [], []
    for v, d in keys:
        di, box, gx, gy, cx, cy, _ = per_det[d]
        xc, yc = 0.5 * (box[0] + box[1]), 0.5 * (box[2] + box[3])
        px = np.concatenate([gx, cx, [xc]])
        py = np.concatenate([gy, cy, [yc]])
        vv.append(np.full(px.size, v))
        dd.append(np.full(px.size, d))
        xx.append(px)
        yy.append(py)
        parts.append(px.size)
    vv, dd, xx, yy = (np.concatenate(a) for a in (vv, dd, xx, yy))
    vi = np.searchsorted(pmodel.visits, vv)
    di_all = np.searchsorted(pmodel.detectors, dd)
    bv = pmodel.visit_basis(pmodel.focal(vv, dd, xx, yy))
    bd = pmodel.detector_basis(di_all, xx, yy)
    z = np.einsum("nt,nt->n", bv, pmodel.params[pmodel.visit_cols[vi, 0]]) + np.einsum(
        "nt,nt->n", bd, pmodel.params[pmodel.detector_cols[di_all, 0]])
    offs = np.concatenate([[0], np.cumsum(parts)])
    for i, (v, d) in enumerate(keys):
        di, box, gx, gy, cx, cy, pinv = per_det[d]
        zi = z[offs[i]:offs[i + 1]]
        zg, zchk, zc = zi[:gx.size], zi[gx.size:-1], float(zi[-1])
        last = offs[i + 1] - 1
        cols = np.concatenate([pmodel.visit_cols[vi[last], 0], pmodel.detector_cols[di, 0]])
        jj = np.concatenate([bv[last], bd[last]])
        keep = cols < n_cam
        zerr = float(np.sqrt(max(jj[keep] @ cov[np.ix_(cols[keep], cols[keep])] @ jj[keep], 0.0)))
        coef = pinv @ (10.0 ** (-0.4 * (zg - zc)) - 1.0)
        # m_cal = m_inst + z: the AB magnitude of 1 e- at the centre is zc
        pc = PhotoCalib(zeropoint=zc, zeropoint_err=zerr, spatial_coefficients=coef.reshape(corder + 1, corder + 1),
                        bbox=box)
        zpc = AB_MAG_OF_1_NJY - 2.5 * np.log10(pc.calibration(cx, cy))
        out[(v, d)] = (pc, float(np.max(np.abs(zpc - zchk)) * 1e3))
    return out
