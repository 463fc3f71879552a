"""Multi-visit association of per-detector source catalogs, with reference matches."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable
from scipy.spatial import cKDTree

from .._errors import InvalidInputError
from ..core import validate_refcat
from ._geometry import ARCSEC, angular_separation_arcsec, propagate_refcat, radec_from_vectors, unit_vectors
from ._inputs import as_catalog, as_visits, check_positive, check_wcs, column, fast_unique

__all__ = ["Association", "associate"]

log = logging.getLogger("lsstdrp.jointcal")


@dataclasses.dataclass(frozen=True, eq=False)
class Association:
    """Sources of many visits grouped into objects, with reference-catalog matches.

    Returned by :func:`associate`; the input of :func:`fit_astrometry`,
    :func:`fit_photometry` and :func:`psf_star_catalog`.

    Attributes
    ----------
    measurements : astropy.table.QTable
        Every input row, in input order, with all input columns plus ``row`` (index in
        the stacked input), ``object`` (index into :attr:`objects`, -1 when the row was
        not associated: non-finite position or flux), ``ra``, ``dec`` (degrees, from
        the *initial* WCS; replaces any input ``ra``/``dec``), ``mjd`` and ``band``
        (from ``visits``), ``snr`` (flux / flux error, NaN without a flux column) and
        ``assoc_flag`` (True when not associated).
    objects : astropy.table.QTable
        One row per object: ``id`` (= row index), ``ra, dec`` (deg, mean of the
        initial positions), ``n_meas``, ``n_visits``, ``max_snr``, ``ref_index`` (row
        in :attr:`refcat`, -1 if none), ``ref_id``, ``ref_sep_mas``,
        ``nearest_neighbor_arcsec`` (to the nearest other object), ``isolated``
        (nearest neighbour beyond ``isolation_radius_arcsec``).
    refcat : astropy.table.QTable
        The validated astrometric reference catalog (schema units).
    visits : astropy.table.QTable
        The visits table (``visit, mjd, band`` and whatever else it had).
    wcs : dict
        The initial WCS per ``(visit, detector)`` used for the positions.
    epoch : float
        Mean MJD of the measurements (the reference catalog was propagated to it for
        matching).
    match_radius_arcsec, ref_match_radius_arcsec, isolation_radius_arcsec : float
        The radii used.
    flux_column : str or None
        Name of the instrumental flux column.
    """

    measurements: QTable
    objects: QTable
    refcat: QTable
    visits: QTable
    wcs: Mapping
    epoch: float
    match_radius_arcsec: float
    ref_match_radius_arcsec: float
    isolation_radius_arcsec: float
    flux_column: str | None

    def __repr__(self) -> str:
        n_ref = int(np.sum(np.asarray(self.objects["ref_index"]) >= 0))
        return (f"Association({len(self.measurements)} measurements, {len(self.objects)} objects, "
                f"{n_ref} with a reference, {len(self.visits)} visits)")

    def with_object_index(self, obj: np.ndarray) -> "Association":
        """A copy whose measurements are assigned to the objects ``obj`` (for tests of robustness).

        Parameters
        ----------
        obj : numpy.ndarray of int
            New ``object`` column (-1 = unassociated), one entry per measurement.

        Returns
        -------
        Association
        """
        obj = np.asarray(obj, dtype=np.int64)
        if obj.shape != (len(self.measurements),) or np.any(obj >= len(self.objects)) or np.any(obj < -1):
            raise InvalidInputError("`obj` must hold one object index (or -1) per measurement")
        meas = self.measurements.copy(copy_data=False)
        meas["object"] = obj
        meas["assoc_flag"] = obj < 0
        return dataclasses.replace(self, measurements=meas)


def _sky_positions(cat: QTable, wcs: dict, keys: np.ndarray, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = column(cat, "x")
    y = column(cat, "y")
    ra = np.full(len(cat), np.nan)
    dec = np.full(len(cat), np.nan)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(keys) + 1))
    for g, key in enumerate(keys):
        idx = order[bounds[g]:bounds[g + 1]]
        w = wcs[(int(key[0]), int(key[1]))]
        r, d = w.pixel_to_world_values(x[idx], y[idx])
        ra[idx] = np.asarray(r, dtype=np.float64)
        dec[idx] = np.asarray(d, dtype=np.float64)
    return ra, dec


def _match_to(tree_points: np.ndarray, query: np.ndarray, chord: float, tree: cKDTree | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Nearest tree point of each query within ``chord``; one query per tree point (nearest wins)."""
    if len(tree_points) == 0 or len(query) == 0:
        return np.full(len(query), -1, dtype=np.int64), np.full(len(query), np.inf)
    if tree is None:
        tree = cKDTree(tree_points, balanced_tree=False, compact_nodes=False)
    dist, j = tree.query(query, distance_upper_bound=chord)
    ok = np.isfinite(dist)
    j = np.where(ok, j, -1).astype(np.int64)
    # conflicts: several queries on one point -> the nearest keeps it
    cand = np.nonzero(ok)[0]
    if cand.size:
        srt = cand[np.lexsort((dist[cand], j[cand]))]
        first = np.ones(srt.size, bool)
        first[1:] = j[srt][1:] != j[srt][:-1]
        loser = srt[~first]
        j[loser] = -1
        dist[loser] = np.inf
    return j, dist


def _assign(vec: np.ndarray, visit_idx: list[np.ndarray], chord: float, means: np.ndarray | None) -> np.ndarray:
    """Visit-by-visit matching to running object means; unmatched sources start objects."""
    n = len(vec)
    obj = np.full(n, -1, dtype=np.int64)
    sums = np.zeros((0, 3)) if means is None else np.zeros_like(means)
    counts = np.zeros(0 if means is None else len(means))
    tree = None
    for idx in visit_idx:
        if idx.size == 0:
            continue
        if means is not None:
            ref = means
            if tree is None or tree.n != len(means):
                tree = cKDTree(means, balanced_tree=False, compact_nodes=False)
        else:
            ref = sums / np.maximum(counts, 1)[:, None] if len(sums) else np.zeros((0, 3))
            if len(ref):
                ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
        j, _ = _match_to(ref, vec[idx], chord, tree if means is not None else None)
        new = j < 0
        if np.any(new) and means is None:
            n_new = int(new.sum())
            j[new] = len(sums) + np.arange(n_new)
            sums = np.vstack([sums, np.zeros((n_new, 3))])
            counts = np.concatenate([counts, np.zeros(n_new)])
        elif np.any(new):
            # pass 2: a source left without an object (its object moved away) starts one
            n_new = int(new.sum())
            j[new] = len(means) + np.arange(n_new)
            means = np.vstack([means, vec[idx][new]])
            sums = np.vstack([sums, np.zeros((n_new, 3))])
            counts = np.concatenate([counts, np.zeros(n_new)])
        obj[idx] = j
        for c in range(3):
            sums[:, c] += np.bincount(j, weights=vec[idx, c], minlength=len(sums))
        counts += np.bincount(j, minlength=len(counts))
    return obj


def _unique_inverse(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(a, return_inverse=True)`` for non-negative integers, by counting when the range allows."""
    if a.size and a.min() >= 0 and a.max() < 4 * a.size + 1_000_000:
        present = np.bincount(a) > 0
        values = np.nonzero(present)[0]
        rank = np.cumsum(present) - 1
        return values, rank[a]
    return fast_unique(a, return_inverse=True)


def _mean_vectors(obj: np.ndarray, vec: np.ndarray, n: int) -> np.ndarray:
    sums = np.stack([np.bincount(obj, weights=vec[:, c], minlength=n) for c in range(3)], -1)
    return sums / np.linalg.norm(sums, axis=1, keepdims=True)


def associate(catalogs: Any, visits: Any, wcs: Mapping, refcat: Any, *, match_radius_arcsec: float = 1.0,
              ref_match_radius_arcsec: float | None = None, isolation_radius_arcsec: float = 2.0,
              flux_column: str | None = "psf_flux") -> Association:
    r"""Associate the sources of many visits into objects and match them to a reference catalog.

    Positions come from the initial WCS of each (visit, detector). Objects are built
    visit by visit: each source joins the object whose running mean position is
    nearest within ``match_radius_arcsec`` (at most one source per object and visit,
    the nearest), otherwise it starts a new object; a second pass re-assigns every
    source to the final means, so the result does not depend on the visit order beyond
    ties. The reference catalog is propagated (proper motion and parallax) to the mean
    epoch of the measurements and matched one-to-one to the objects. Objects with
    another object within ``isolation_radius_arcsec`` are marked not isolated.

    Parameters
    ----------
    catalogs : astropy.table.Table, or list or dict of them
        Source measurements with ``visit, detector, x, y, x_err, y_err`` (pixels,
        0-based) and, if ``flux_column`` is not None, ``<flux_column>`` and
        ``<flux_column>_err`` (e⁻); optional ``xy_cov`` (pixels²). Lists/dicts of
        per-(visit, detector) tables are stacked.
    visits : astropy.table.Table
        One row per visit: ``visit, mjd, band`` (MJD TAI).
    wcs : dict
        ``(visit, detector) -> `` initial APE-14 WCS (e.g. from single-frame
        astrometry), accurate to a fraction of ``match_radius_arcsec``.
    refcat : astropy.table.Table
        Gaia-like astrometric reference catalog (:func:`lsstdrp.core.validate_refcat`
        schema, epoch in MJD).
    match_radius_arcsec : float
        Association radius (> 0).
    ref_match_radius_arcsec : float, optional
        Reference matching radius (default ``match_radius_arcsec``).
    isolation_radius_arcsec : float
        An object with another object closer than this is not ``isolated`` (use about
        2 FWHM of the worst seeing).
    flux_column : str or None
        Instrumental flux column used for ``snr`` and by the photometric fit.

    Returns
    -------
    Association
        Frozen: ``measurements`` (one row per input row) and ``objects`` tables, the
        validated ``refcat``, ``visits``, ``wcs`` and the parameters.

    Raises
    ------
    InvalidInputError
        Missing columns or WCS entries, fewer than two visits, non-positive radii, an
        invalid reference catalog, or no reference star matching any object (no
        overlap).

    Notes
    -----
    Separations are chord lengths on the unit sphere
    (:math:`2\sin(\theta/2)`), found with :class:`scipy.spatial.cKDTree` on unit
    vectors, so the poles and RA wrap-around need no special care. The cost is
    :math:`O(n \log n)` per visit.

    Examples
    --------
    >>> from lsstdrp.sim import make_survey
    >>> from lsstdrp.jointcal import associate
    >>> s = make_survey("tiny", rng=3, render=False, star_density_arcmin2=150.0)
    >>> wcs = {k: s.truth[k].tan_sip.wcs for k in s.keys()}
    >>> assoc = associate(s.all_catalogs(), s.visits, wcs, s.refcat_astrometric)
    >>> bool((assoc.objects["n_visits"] == 2).sum() > 100)
    True
    """
    radius = check_positive(match_radius_arcsec, "match_radius_arcsec")
    ref_radius = radius if ref_match_radius_arcsec is None else check_positive(ref_match_radius_arcsec,
                                                                               "ref_match_radius_arcsec")
    iso = check_positive(isolation_radius_arcsec, "isolation_radius_arcsec")
    cat = as_catalog(catalogs, flux_column=flux_column)
    visit = column(cat, "visit", np.int64)
    det = column(cat, "detector", np.int64)
    vt = as_visits(visits, visit)
    n_vis = len(fast_unique(visit))
    if n_vis < 2:
        raise InvalidInputError(f"`catalogs` holds {n_vis} visit(s); joint calibration needs at least 2")
    dspan = int(det.max() - det.min()) + 1
    ukey, inverse = _unique_inverse((visit - visit.min()) * dspan + (det - det.min()))
    keys = np.stack([ukey // dspan + visit.min(), ukey % dspan + det.min()], axis=1)
    wcs_ = check_wcs(wcs, [(int(a), int(b)) for a, b in keys])
    ref = validate_refcat(refcat, "astrometric", name="refcat")

    vid = column(vt, "visit", np.int64)
    vmjd = column(vt, "mjd")
    vband = np.asarray(vt["band"]).astype(str)
    vsort = np.argsort(vid, kind="stable")
    vrow = vsort[np.searchsorted(vid[vsort], visit)].astype(np.int64)

    ra, dec = _sky_positions(cat, wcs_, keys, inverse)
    ok = np.isfinite(ra) & np.isfinite(dec)
    snr = np.full(len(cat), np.nan)
    if flux_column is not None:
        f = column(cat, flux_column)
        fe = column(cat, f"{flux_column}_err")
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = f / fe
        ok &= np.isfinite(f) & np.isfinite(fe) & (fe > 0)
    vec = unit_vectors(np.where(ok, ra, 0.0), np.where(ok, dec, 0.0))
    chord = 2.0 * np.sin(0.5 * radius * ARCSEC)

    good = np.nonzero(ok)[0]
    order_v = np.argsort(-np.bincount(vrow[good], minlength=len(vt)), kind="stable")  # fullest visits first
    by_visit = good[np.argsort(vrow[good], kind="stable")]
    vb = np.searchsorted(vrow[by_visit], np.arange(len(vt) + 1))
    visit_idx = [by_visit[vb[v]:vb[v + 1]] for v in order_v]
    obj = _assign(vec, visit_idx, chord, None)
    # pass 2: re-assign to the final means
    n_obj = int(obj.max()) + 1 if np.any(obj >= 0) else 0
    means = _mean_vectors(obj[good], vec[good], n_obj)
    obj = _assign(vec, visit_idx, chord, means)
    # renumber densely, objects ordered by first appearance
    used, obj_g = _unique_inverse(obj[good])
    obj = np.full(len(cat), -1, dtype=np.int64)
    obj[good] = obj_g
    n_obj = len(used)
    means = _mean_vectors(obj[good], vec[good], n_obj)
    n_meas = np.bincount(obj[good], minlength=n_obj)
    vis_pairs, _ = _unique_inverse(obj[good] * len(vt) + vrow[good])  # at most one source per object and visit
    n_vis = np.bincount(vis_pairs // len(vt), minlength=n_obj)
    max_snr = np.full(n_obj, np.nan)
    if flux_column is not None:
        s_ok = good[np.isfinite(snr[good])]
        max_snr = np.full(n_obj, -np.inf)
        np.maximum.at(max_snr, obj[s_ok], snr[s_ok])
        max_snr[~np.isfinite(max_snr)] = np.nan

    # isolation
    if n_obj > 1:
        dist, _ = cKDTree(means).query(means, k=2)
        nn = 2.0 * np.arcsin(np.clip(dist[:, 1] / 2.0, 0, 1)) / ARCSEC
    else:
        nn = np.full(n_obj, np.inf)

    # reference matches at the mean epoch
    epoch = float(np.mean(vmjd[vrow[good]])) if good.size else float(np.mean(vmjd))
    pm_ok = np.ones(len(ref), bool)
    cols = {c: column(ref, c) for c in ("ra", "dec", "pmra", "pmdec", "parallax", "epoch")}
    for c in ("pmra", "pmdec", "parallax"):
        pm_ok &= np.isfinite(cols[c])
    rra, rdec = propagate_refcat(cols["ra"], cols["dec"], np.where(pm_ok, cols["pmra"], 0.0),
                                 np.where(pm_ok, cols["pmdec"], 0.0), np.where(pm_ok, cols["parallax"], 0.0),
                                 epoch=cols["epoch"], mjd=epoch)
    rvec = unit_vectors(rra, rdec)
    ref_chord = 2.0 * np.sin(0.5 * ref_radius * ARCSEC)
    jr, _ = _match_to(means, rvec, ref_chord)  # object of each reference star
    ref_index = np.full(n_obj, -1, dtype=np.int64)
    hit = np.nonzero(jr >= 0)[0]
    ref_index[jr[hit]] = hit
    if hit.size == 0:
        raise InvalidInputError(
            f"no reference star of `refcat` ({len(ref)} rows) lies within {ref_radius} arcsec of any of the "
            f"{n_obj} associated objects: the reference catalog does not overlap the data (or the initial WCS "
            "is off by more than the match radius)")
    ref_sep = np.full(n_obj, np.nan)
    m = ref_index >= 0
    ref_sep[m] = angular_separation_arcsec(means[m], rvec[ref_index[m]]) * 1000.0
    ref_ids = column(ref, "id", np.int64)

    ora, odec = radec_from_vectors(means)
    objects = QTable()
    objects["id"] = np.arange(n_obj, dtype=np.int64)
    objects["ra"] = ora * u.deg
    objects["dec"] = odec * u.deg
    objects["n_meas"] = n_meas.astype(np.int64)
    objects["n_visits"] = n_vis.astype(np.int64)
    objects["max_snr"] = max_snr
    objects["ref_index"] = ref_index
    objects["ref_id"] = np.where(m, ref_ids[np.maximum(ref_index, 0)], -1)
    objects["ref_sep_mas"] = ref_sep * u.mas
    objects["nearest_neighbor_arcsec"] = nn * u.arcsec
    objects["isolated"] = nn > iso
    objects.meta.update(match_radius_arcsec=radius, isolation_radius_arcsec=iso, epoch_mjd=epoch)

    meas = QTable(cat, copy=False)
    meas["row"] = np.arange(len(cat), dtype=np.int64)
    meas["object"] = obj
    meas["ra"] = ra * u.deg
    meas["dec"] = dec * u.deg
    meas["mjd"] = vmjd[vrow]
    meas["band"] = vband[vrow]
    meas["snr"] = snr
    meas["assoc_flag"] = obj < 0
    if "xy_cov" not in meas.colnames:
        meas["xy_cov"] = np.zeros(len(meas)) * u.pix**2
    log.info("associate: %d measurements -> %d objects (%d isolated, %d with a reference)",
             len(meas), n_obj, int(objects["isolated"].sum()), int(m.sum()))
    return Association(meas, objects, ref, vt, wcs_, epoch, radius, ref_radius, iso, flux_column)
