"""Tests of fit_photo_calib against the simulator's true zeropoint (grey source, detector centre).

The simulated instrumental magnitudes differ from the standard ones by the local
bandpass shift (colour dependent) and the zeropoint map (smooth over the field); the
photometric reference catalog has 1% flux errors. The fitted model therefore has a
linear colour term that varies quadratically over the detector (the filter-edge shift
grows as r²) and a quadratic zeropoint map (spatial_order=2, color_spatial_order=2);
with a constant colour term the zeropoint is off by 1-3 sigma on this simulation (the
quadratic zeropoint map mean differs from its centre value). Tolerance (the acceptance):
|fitted - true| < max(1 mmag, 3 sigma_ZP) with >= 500 stars.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import QTable

from lsstdrp import InvalidInputError
from lsstdrp.characterize import fit_photo_calib
from lsstdrp.sim import make_survey


@pytest.fixture(scope="module")
def survey():
    return make_survey("tiny", rng=22, render=False, n_det_x=1, n_det_y=1, det_shape=(2048, 2048),
                       star_density_arcmin2=50.0, bands=("g", "r"), n_visits=2, refcat_mag_limit=21.0)


def test_zeropoint_matches_truth(survey, record_property):
    for key in survey.keys():
        tr = survey.truth[key]
        res = fit_photo_calib(survey.catalogs[key], survey.refcat_photometric, band=tr.band, wcs=tr.wcs,
                              color=("g", "r"), color_order=1, spatial_order=2, color_spatial_order=2,
                              bbox=(0, 2047, 0, 2047))
        assert res.success
        dzp = res.zeropoint - tr.photo_calib.zeropoint
        record_property(f"dzp_mmag_{tr.band}", dzp * 1000)
        record_property(f"sigma_zp_mmag_{tr.band}", res.zeropoint_err * 1000)
        record_property(f"n_stars_{tr.band}", res.n_used)
        assert res.n_used >= 500
        assert abs(dzp) < max(1e-3, 3 * res.zeropoint_err)
        assert res.photo_calib.zeropoint == res.zeropoint and res.photo_calib.zeropoint_err == res.zeropoint_err
        # the calibrated fluxes of the stars agree with the reference on average
        used = res.residuals["used"]
        assert abs(np.median(res.residuals["dmag"][used].value)) < 0.005


def test_without_colour_term_the_zeropoint_is_biased(survey):
    """The bandpass shift makes the instrumental magnitude colour dependent: without a
    colour term the zeropoint refers to the mean star colour, not to a grey source."""
    key = survey.keys()[0]
    tr = survey.truth[key]
    kw = dict(band=tr.band, wcs=tr.wcs, color=("g", "r"), bbox=(0, 2047, 0, 2047))
    with_ct = fit_photo_calib(survey.catalogs[key], survey.refcat_photometric, color_order=1, **kw)
    without = fit_photo_calib(survey.catalogs[key], survey.refcat_photometric, color_order=0, **kw)
    assert abs(with_ct.zeropoint - tr.photo_calib.zeropoint) < abs(without.zeropoint - tr.photo_calib.zeropoint)
    assert with_ct.color_coefficients.shape == (1,)


def test_outliers_are_rejected(survey):
    key = survey.keys()[1]
    tr = survey.truth[key]
    cat = survey.catalogs[key].copy()
    rng = np.random.default_rng(4)
    bad = rng.choice(len(cat), len(cat) // 20, replace=False)
    cat["psf_flux"][bad] = cat["psf_flux"][bad] * 1.5  # 5% of the sources 0.44 mag too bright
    cat["psf_flux"][:3] = np.nan * cat["psf_flux"].unit  # NaN rows: excluded, never fatal
    res = fit_photo_calib(cat, survey.refcat_photometric, band=tr.band, wcs=tr.wcs, color=("g", "r"),
                          color_order=1, spatial_order=2, color_spatial_order=2,
                              bbox=(0, 2047, 0, 2047))
    assert res.success
    assert abs(res.zeropoint - tr.photo_calib.zeropoint) < max(1e-3, 3 * res.zeropoint_err)
    used_rows = np.asarray(res.residuals["row"])[np.asarray(res.residuals["used"])]
    assert not np.isin(used_rows, np.arange(3)).any()
    assert np.isin(bad, used_rows).mean() < 0.2


def test_too_few_stars_fails_with_reason():
    cat = QTable({"x": [1.0, 2.0], "y": [1.0, 2.0], "psf_flux": [100.0, 200.0], "psf_flux_err": [1.0, 1.0]})
    ref = QTable({"ra": [0.0, 0.0], "dec": [0.0, 0.0], "r_flux": [1.0, 2.0], "r_flux_err": [0.1, 0.1]})
    res = fit_photo_calib(cat, ref, band="r", matches=([0, 1], [0, 1]))
    assert not res.success and res.photo_calib is None and "usable" in res.reason


def test_bad_arguments():
    cat = QTable({"x": [1.0], "y": [1.0], "psf_flux": [1.0]})
    ref = QTable({"ra": [0.0], "dec": [0.0], "r_flux": [1.0]})
    with pytest.raises(InvalidInputError, match="wcs"):
        fit_photo_calib(cat, ref, band="r")
    with pytest.raises(InvalidInputError, match="refcat"):
        fit_photo_calib(cat, ref, band="g", matches=([0], [0]))
    with pytest.raises(InvalidInputError, match="color"):
        fit_photo_calib(cat, ref, band="r", matches=([0], [0]), color_order=1)
    with pytest.raises(InvalidInputError, match="matches"):
        fit_photo_calib(cat, ref, band="r", matches=([0], [5]))
