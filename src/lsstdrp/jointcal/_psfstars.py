"""The PSF-star catalog: isolated, unresolved, well-measured stars with colours."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable
from scipy.spatial import cKDTree

from .._errors import InvalidInputError
from ._associate import Association
from ._astrometry import _median_by
from ._geometry import ARCSEC, unit_vectors
from ._inputs import check_nonneg, check_positive, column
from ._photometry import PhotometryResult

__all__ = ["psf_star_catalog"]


def _stellar_locus(t: np.ndarray, st: np.ndarray, *, iterations: int = 5) -> tuple[float, float]:
    """Robust centre and width of the stellar locus of sizes ``t`` (errors ``st``)."""
    if t.size == 0:
        return math.nan, math.nan
    lo = t[t <= np.quantile(t, 0.3)]
    centre = float(np.median(lo))
    width = max(float(1.4826 * np.median(np.abs(lo - centre))), 1e-3 * abs(centre))
    for _ in range(iterations):
        sel = np.abs(t - centre) < 3.0 * np.hypot(width, st)
        if sel.sum() < 3:
            break
        centre = float(np.median(t[sel]))
        width = max(float(1.4826 * np.median(np.abs(t[sel] - centre))), 1e-3 * abs(centre))
    return centre, width


def psf_star_catalog(association: Association, *, photometry: PhotometryResult | None = None,
                     isolation_radius_arcsec: float | None = None, min_snr: float = 50.0, min_visits: int = 2,
                     max_size_excess: float = 0.04, size_sigma: float = 3.0) -> QTable:
    r"""Select PSF stars: isolated, unresolved in every band, bright, seen in several visits.

    Parameters
    ----------
    association : Association
        From :func:`associate`; its measurements need adaptive second moments
        ``shape_xx, shape_yy`` (pixels², with ``shape_xx_err, shape_yy_err`` if known)
        and a flux column.
    photometry : PhotometryResult, optional
        Its calibrated mean magnitudes and colours are copied into the catalog.
    isolation_radius_arcsec : float, optional
        Minimum distance to any other associated object (detected in any visit);
        default the association's ``isolation_radius_arcsec``. Use about 2 FWHM of the
        worst seeing: neighbours closer than that bias the PSF model.
    min_snr : float
        Minimum median S/N of the object's measurements.
    min_visits : int
        Minimum number of visits with a usable size measurement.
    max_size_excess : float
        An object is unresolved when its mean fractional size excess over the stellar
        locus, plus ``size_sigma`` times its error, stays below this value, and the
        excess is consistent with zero within ``size_sigma`` (purity first: a
        galaxy only slightly larger than the PSF must be measured well enough to be
        *shown* small).
    size_sigma : float
        Significance used by the unresolved test.

    Returns
    -------
    astropy.table.QTable
        One row per PSF star: ``object, ra, dec, n_visits, snr`` (median),
        ``size_excess, size_excess_err`` (fractional excess of ``T = Ixx + Iyy`` over
        each visit's stellar locus, weighted mean), ``nearest_neighbor_arcsec``, and
        with ``photometry`` the ``mag_<b>``, ``mag_<b>_err``, ``color_*`` and
        ``variable`` columns (a variable's colour mixes epochs: do not use it as a
        colour for a chromatic PSF).
        Zero rows when nothing qualifies.

    Raises
    ------
    InvalidInputError
        Measurements without ``shape_xx``/``shape_yy`` or without a flux column;
        invalid options.

    Notes
    -----
    For each visit the stellar locus :math:`T_\star` is the robust centre of the sizes
    of its measurements with S/N >= ``min_snr`` (the smallest 30% seed it, then
    3-sigma clipping: nothing in focus is smaller than the PSF), and each measurement
    gets :math:`q = T/T_\star - 1` with error :math:`\sigma_T/T_\star`. An object is a
    PSF star when its inverse-variance mean :math:`\bar q` satisfies
    :math:`\bar q + k\sigma_{\bar q} <` ``max_size_excess`` and
    :math:`|\bar q| < k\sigma_{\bar q} + 3 w/T_\star` (``w`` the locus width, which
    absorbs the PSF's own variation over the focal plane), it is isolated, and bright.

    Examples
    --------
    >>> from lsstdrp.sim import make_survey, catalog_sources
    >>> from lsstdrp.jointcal import associate, psf_star_catalog
    >>> from astropy.table import vstack
    >>> s = make_survey("tiny", rng=3, render=False)
    >>> cat = vstack([catalog_sources(s, *k, include_galaxies=True) for k in s.keys()],
    ...              metadata_conflicts="silent")
    >>> wcs = {k: s.truth[k].tan_sip.wcs for k in s.keys()}
    >>> assoc = associate(cat, s.visits, wcs, s.refcat_astrometric)
    >>> psf = psf_star_catalog(assoc)
    >>> kinds = dict(zip(cat["object_id"], cat["kind"]))
    >>> obj_ids = [cat["object_id"][assoc.measurements["object"] == o][0] for o in psf["object"]]
    >>> all(kinds[i] == "star" for i in obj_ids)
    True
    """
    if not isinstance(association, Association):
        raise InvalidInputError(f"`association` must be an Association; got {type(association).__name__}")
    me = association.measurements
    missing = [c for c in ("shape_xx", "shape_yy") if c not in me.colnames]
    if missing:
        raise InvalidInputError(f"the measurements lack {missing}: a PSF-star catalog needs adaptive second "
                                "moments to tell stars from galaxies")
    if association.flux_column is None:
        raise InvalidInputError("the association has no flux column (S/N is needed)")
    if photometry is not None and not isinstance(photometry, PhotometryResult):
        raise InvalidInputError(f"`photometry` must be a PhotometryResult; got {type(photometry).__name__}")
    iso = association.isolation_radius_arcsec if isolation_radius_arcsec is None else check_positive(
        isolation_radius_arcsec, "isolation_radius_arcsec")
    min_snr = check_nonneg(min_snr, "min_snr")
    if isinstance(min_visits, bool) or not isinstance(min_visits, (int, np.integer)) or min_visits < 1:
        raise InvalidInputError(f"`min_visits` must be an integer >= 1; got {min_visits!r}")
    max_exc = check_positive(max_size_excess, "max_size_excess")
    k = check_positive(size_sigma, "size_sigma")

    obj = column(me, "object", np.int64)
    visit = column(me, "visit", np.int64)
    snr = column(me, "snr")
    t = column(me, "shape_xx") + column(me, "shape_yy")
    if "shape_xx_err" in me.colnames and "shape_yy_err" in me.colnames:
        st = np.hypot(column(me, "shape_xx_err"), column(me, "shape_yy_err"))
    else:
        st = 2.0 * np.abs(t) / np.maximum(snr, 1e-3)
    n_obj = len(association.objects)
    good = (obj >= 0) & np.isfinite(t) & np.isfinite(st) & (st > 0) & np.isfinite(snr) & (t > 0)
    q = np.full(len(me), np.nan)
    sq = np.full(len(me), np.nan)
    wloc = np.full(len(me), np.nan)
    for v in np.unique(visit[good]):
        sel = good & (visit == v)
        bright = sel & (snr >= min_snr)
        centre, width = _stellar_locus(t[bright], st[bright])
        if not np.isfinite(centre) or centre <= 0:
            continue
        q[sel] = t[sel] / centre - 1.0
        sq[sel] = st[sel] / centre
        wloc[sel] = width / centre
    use = good & np.isfinite(q)
    w = np.where(use, 1.0 / np.where(use, sq, 1.0) ** 2, 0.0)
    o = np.where(use, obj, 0)
    sw = np.bincount(o, weights=w, minlength=n_obj)
    with np.errstate(invalid="ignore", divide="ignore"):
        qbar = np.bincount(o, weights=w * np.where(use, q, 0.0), minlength=n_obj) / sw
        qerr = 1.0 / np.sqrt(sw)
        wl = np.bincount(o, weights=np.where(use, wloc, 0.0), minlength=n_obj) / np.bincount(
            o, weights=use.astype(float), minlength=n_obj)
    pairs = np.unique(np.stack([obj[use], visit[use]], 1), axis=0)
    nvis = np.bincount(pairs[:, 0], minlength=n_obj) if pairs.size else np.zeros(n_obj, np.int64)
    med_snr = _median_by(obj[good], snr[good], n_obj)

    # isolation against every associated object
    ov = unit_vectors(column(association.objects, "ra"), column(association.objects, "dec"))
    if n_obj > 1:
        dist, _ = cKDTree(ov).query(ov, k=2)
        nn = 2.0 * np.arcsin(np.clip(dist[:, 1] / 2.0, 0, 1)) / ARCSEC
    else:
        nn = np.full(n_obj, np.inf)
    unresolved = (qbar + k * qerr < max_exc) & (np.abs(qbar) < k * qerr + 3.0 * wl)
    sel = unresolved & (nn > iso) & (med_snr >= min_snr) & (nvis >= min_visits) & np.isfinite(qbar)
    idx = np.nonzero(sel)[0]
    out = QTable()
    out["object"] = idx.astype(np.int64)
    out["ra"] = column(association.objects, "ra")[idx] * u.deg
    out["dec"] = column(association.objects, "dec")[idx] * u.deg
    out["n_visits"] = nvis[idx].astype(np.int64)
    out["snr"] = med_snr[idx]
    out["size_excess"] = qbar[idx]
    out["size_excess_err"] = qerr[idx]
    out["nearest_neighbor_arcsec"] = nn[idx] * u.arcsec
    if photometry is not None:
        pobj = photometry.objects
        for name in pobj.colnames:
            if name.startswith(("mag_", "color_")) or name == "variable":
                out[name] = pobj[name][idx]
    out.meta.update(isolation_radius_arcsec=iso, min_snr=min_snr, max_size_excess=max_exc, size_sigma=k)
    return out
