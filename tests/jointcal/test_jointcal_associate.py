"""Multi-visit association against the simulator's truth, and its bad-input contract."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
from astropy.table import QTable

from lsstdrp import sim
from lsstdrp.jointcal import Association, associate


def perturbed_wcs(survey, seed: int, shift_arcsec: float = 0.3, rot_arcsec: float = 5.0) -> dict:
    """The truth's TAN-SIP approximation with a random pointing, rotation and scale error
    per (visit, detector): the kind of initial WCS single-frame astrometry delivers."""
    rng = np.random.default_rng(seed)
    out = {}
    for key in survey.keys():
        w = copy.deepcopy(survey.truth[key].tan_sip.wcs)
        dra, ddec = rng.normal(0.0, shift_arcsec, 2) / 3600.0
        w.wcs.crval = [w.wcs.crval[0] + dra / np.cos(np.deg2rad(w.wcs.crval[1])), w.wcs.crval[1] + ddec]
        th = rng.normal(0.0, rot_arcsec) / 206264.8
        rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        w.wcs.cd = rot @ w.wcs.cd * (1.0 + rng.normal(0.0, 1e-5))
        w.wcs.set()
        out[key] = w
    return out


@functools.lru_cache(maxsize=None)
def _survey():
    return sim.make_survey("tiny", rng=21, render=False, n_det_x=2, n_det_y=2, n_visits=4, star_density_arcmin2=120.0,
                           galaxy_density_arcmin2=0.0)


@functools.lru_cache(maxsize=None)
def _assoc():
    s = _survey()
    return associate(s.all_catalogs(), s.visits, perturbed_wcs(s, 1), s.refcat_astrometric)


def test_objects_are_pure_and_complete():
    s, a = _survey(), _assoc()
    m = a.measurements
    true_id = np.asarray(m["object_id"])
    obj = np.asarray(m["object"])
    kinds = np.asarray(m["kind"])
    assert np.all(obj >= 0)
    stars = kinds == "star"
    iso = np.asarray(a.objects["isolated"])
    # purity: an isolated object gathers the measurements of one true star (stars closer than the
    # match radius can swap between visits: those objects are never isolated)
    impure = [o for o in np.unique(obj[stars]) if len(np.unique(true_id[stars & (obj == o)])) > 1]
    assert not iso[impure].any()
    assert len(impure) <= 0.03 * len(np.unique(obj[stars]))
    # completeness: an isolated true star is one object
    split = [t for t in np.unique(true_id[stars]) if len(np.unique(obj[stars & (true_id == t)])) > 1]
    assert not any(iso[np.unique(obj[stars & (true_id == t)])].all() for t in split)
    assert len(a.objects) == len(np.unique(obj))
    assert np.all(a.objects["n_visits"] <= len(s.visits))
    assert repr(a).startswith("Association(")


def test_reference_matches_are_the_right_stars():
    a = _assoc()
    m = a.measurements
    obj = np.asarray(m["object"])
    matched = np.nonzero(np.asarray(a.objects["ref_index"]) >= 0)[0]
    assert len(matched) > 20
    true_of_obj = {int(o): int(t) for o, t in zip(obj, np.asarray(m["object_id"]))}
    ref_ids = np.asarray(a.objects["ref_id"])[matched]
    ok = np.array([true_of_obj[int(o)] == int(r) for o, r in zip(matched, ref_ids)])
    assert ok.mean() > 0.99
    assert np.all(np.asarray(a.objects["ref_sep_mas"].value)[matched] < 1000.0)


def test_isolation_flag_follows_the_nearest_neighbour():
    a = _assoc()
    nn = np.asarray(a.objects["nearest_neighbor_arcsec"].value)
    iso = np.asarray(a.objects["isolated"])
    np.testing.assert_array_equal(iso, nn > a.isolation_radius_arcsec)
    assert 0 < iso.sum() < len(iso)


def test_inputs_are_not_modified_and_lists_are_accepted():
    s = _survey()
    cats = [s.catalogs[k] for k in s.keys()]
    before = [c.copy() for c in cats]
    wcs = perturbed_wcs(s, 1)
    a = associate(cats, s.visits, wcs, s.refcat_astrometric)
    for c, b in zip(cats, before):
        assert c.colnames == b.colnames and np.all(np.asarray(c["x"]) == np.asarray(b["x"]))
    assert len(a.measurements) == sum(len(c) for c in cats)
    b = _assoc()
    np.testing.assert_array_equal(np.asarray(a.measurements["object"]), np.asarray(b.measurements["object"]))


def test_bad_input_raises():
    s = _survey()
    cat = s.all_catalogs()
    wcs = perturbed_wcs(s, 1)
    one = cat[np.asarray(cat["visit"]) == s.visits["visit"][0]]
    with pytest.raises(ValueError, match="at least 2"):
        associate(one, s.visits, wcs, s.refcat_astrometric)
    far = QTable(s.refcat_astrometric, copy=True)
    far["dec"] = far["dec"] + 1.0 * far["dec"].unit  # one degree away: no overlap
    with pytest.raises(ValueError, match="overlap"):
        associate(cat, s.visits, wcs, far)
    with pytest.raises(ValueError, match="wcs"):
        associate(cat, s.visits, {k: w for k, w in list(wcs.items())[1:]}, s.refcat_astrometric)
    with pytest.raises(ValueError, match="x_err"):
        associate(cat[["visit", "detector", "x", "y"]], s.visits, wcs, s.refcat_astrometric)
    with pytest.raises(ValueError, match="match_radius_arcsec"):
        associate(cat, s.visits, wcs, s.refcat_astrometric, match_radius_arcsec=0.0)
    with pytest.raises(ValueError, match="visits"):
        associate(cat, s.visits[1:], wcs, s.refcat_astrometric)
    with pytest.raises(ValueError, match="one object index"):
        Association.with_object_index(_assoc(), np.zeros(3, int))
