"""Tests of the aperture correction against the simulator's true PSF.

A rendered detector (1024², 0.2"/px) of bright stars (r 16-21) whose chromatic PSF
varies over the field; sources are measured with a *constant* PSF model (the true
kernel at the centre), so PSF fluxes are off by a position-dependent amount that the
aperture correction must remove. The reference aperture has radius 17 px (3.4"); the
true flux inside it is the star's flux times the enclosed fraction of its own true PSF
(GalSim, its SED and position; 0.9930 on average), the sky is the true background.
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import QTable
from scipy.spatial import cKDTree

from lsstdrp import InvalidInputError
from lsstdrp.characterize import apply_aperture_correction, fit_aperture_correction

R_REF = 17.0


@pytest.fixture(scope="module")
def measured():
    from lsstdrp.core import ImagePsf
    from lsstdrp.detect import detect_sources
    from lsstdrp.measure import measure_sources
    from lsstdrp.sim import make_survey

    s = make_survey("tiny", rng=3, n_det_x=1, n_det_y=1, det_shape=(1024, 1024), star_density_arcmin2=30.0,
                    star_mag_range=(16.0, 21.0), galaxy_density_arcmin2=1.0, n_visits=1, trail_probability=0.0,
                    n_bright_stars=0, n_sso=0, n_transients=0)
    key = s.keys()[0]
    exp, tr = s.exposures[key], s.truth[key]
    img = exp.image - tr.background
    psf = ImagePsf(tr.psf.kernel_image(511.5, 511.5), oversampling=1)
    det = detect_sources(img, exp.variance, psf=psf, threshold=10.0, mask=exp.mask)
    cat = measure_sources(img, exp.variance, det, psf=psf, mask=exp.mask, shapes=False)
    return cat, tr


def test_corrected_psf_flux_matches_true_aperture_flux_in_every_bin(measured, record_property):
    from photutils.aperture import CircularAperture, aperture_photometry

    cat, tr = measured
    apc = fit_aperture_correction(cat, order=2, min_snr=100.0)
    assert apc.success and apc.reference == "ap_flux_r17"
    assert set(apc.fields) == {"psf_flux", "ap_flux_r3", "ap_flux_r5", "ap_flux_r8"}
    out = apply_aperture_correction(cat, apc)
    # isolated bright stars of the truth (no other object within 25 px; stamps >= 65 px
    # so the rendered star holds all its flux inside the 17-px aperture)
    src = tr.sources
    tree = cKDTree(np.stack([src["x"], src["y"]], -1))
    dd, _ = tree.query(np.stack([src["x"], src["y"]], -1), k=2)
    d, j = tree.query(np.stack([out["x"].value, out["y"].value], -1))
    stars = (d < 0.5) & (np.asarray(src["kind"])[j] == "star") & (dd[j, 1] > 25) & (np.asarray(src["flux"])[j] > 5e4)
    ef = np.full(len(cat), np.nan)
    for i in np.nonzero(stars)[0]:
        xs, ys = float(src["x"][j[i]]), float(src["y"][j[i]])
        st = tr.psf.draw(xs, ys, shape=65, flux=1.0, temperature=float(src["temperature"][j[i]]),
                         tilt=float(src["tilt"][j[i]]))
        ix, iy = int(np.floor(xs + 0.5)), int(np.floor(ys + 0.5))
        ef[i] = float(aperture_photometry(st, CircularAperture((xs - ix + 32, ys - iy + 32), r=R_REF),
                                          method="exact")["aperture_sum"][0])
    record_property("reference_radius_px", R_REF)
    record_property("enclosed_fraction_mean", float(np.nanmean(ef)))
    true_ap = np.asarray(src["flux"])[j] * ef
    corr = out["psf_flux"].value / true_ap
    raw = cat["psf_flux"].value / true_ap
    x, y = out["x"].value, out["y"].value
    worst, worst_raw = 0.0, 0.0
    for bx in range(2):
        for by in range(2):
            m = stars & (x >= bx * 512) & (x < (bx + 1) * 512) & (y >= by * 512) & (y < (by + 1) * 512)
            assert m.sum() >= 15
            dev = abs(np.mean(corr[m]) - 1.0)
            err = np.std(corr[m]) / np.sqrt(m.sum())
            record_property(f"apcorr_bin_{bx}{by}_percent", dev * 100)
            worst = max(worst, dev)
            worst_raw = max(worst_raw, abs(np.mean(raw[m]) - 1.0))
            assert err < 0.0015  # the bins are good enough to test 0.3%
    record_property("apcorr_worst_bin_percent", worst * 100)
    record_property("uncorrected_worst_bin_percent", worst_raw * 100)
    assert worst < 0.003
    assert worst < worst_raw
    # errors and flags
    assert np.all(out["psf_flux_apcorr_err"] > 0) and not out["psf_flux_flag_apcorr"].any()
    assert len(out) == len(cat) and np.all(cat["psf_flux"] == measured[0]["psf_flux"])


def test_field_recovers_an_injected_linear_correction():
    rng = np.random.default_rng(2)
    n = 400
    x, y = rng.uniform(0, 2000, n), rng.uniform(0, 4000, n)
    f = 10 ** rng.uniform(4, 6, n)
    truth = 1.05 + 0.01 * (x / 1000 - 1) - 0.02 * (y / 2000 - 1)
    err = 0.002 * f
    cat = QTable({"x": x, "y": y, "ap_flux_r17": f + rng.normal(0, 1, n) * err, "ap_flux_r17_err": err,
                  "psf_flux": f / truth, "psf_flux_err": 1e-6 * f})
    cat["ap_flux_r17"][:20] *= 1.3  # blended: a one-sided tail
    apc = fit_aperture_correction(cat, algorithms=["psf_flux"], stars=np.ones(n, bool), order=1,
                                  bbox=(0, 2000, 0, 4000))
    fld = apc.fields["psf_flux"]
    gx, gy = np.meshgrid(np.linspace(0, 2000, 5), np.linspace(0, 4000, 5))
    tgrid = 1.05 + 0.01 * (gx / 1000 - 1) - 0.02 * (gy / 2000 - 1)
    dev = np.abs(fld(gx, gy) - tgrid)
    assert np.all(dev < 4 * fld.error(gx, gy) + 1e-6)
    assert fld.n_stars <= n - 20


def test_nan_rows_flagged_and_bad_input():
    x = np.linspace(0, 100, 60)
    cat = QTable({"x": x, "y": x[::-1], "ap_flux_r17": np.full(60, 2.0), "psf_flux": np.ones(60)})
    cat["x"][3] = np.nan
    apc = fit_aperture_correction(cat, algorithms=["psf_flux"], stars=np.ones(60, bool))
    out = apply_aperture_correction(cat, apc)
    assert out["psf_flux_flag_apcorr"][3] and np.isnan(out["psf_flux"][3]) and out["psf_flux_flag_apcorr"].sum() == 1
    with pytest.raises(InvalidInputError, match="shape_xx"):
        fit_aperture_correction(cat, algorithms=["psf_flux"])
    with pytest.raises(InvalidInputError, match="stars"):
        fit_aperture_correction(cat, algorithms=["psf_flux"], stars=np.ones(3, bool))
    with pytest.raises(InvalidInputError, match="catalog"):
        fit_aperture_correction(cat, algorithms=["kron_flux"], stars=np.ones(60, bool))
    few = fit_aperture_correction(cat[:2], algorithms=["psf_flux"], stars=np.ones(2, bool))
    assert not few.success and "psf_flux" in few.reason
