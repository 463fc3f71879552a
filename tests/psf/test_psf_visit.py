"""Visit-level (focal-plane) PSF fit against per-detector fits on the simulator.

One visit of 2 x 2 detectors with ~15 isolated stars each (< 30, the issue's
few-star regime); 30% of the stars are reserved. The visit fit (shared order-1
focal-plane polynomial + per-detector constants with a ridge prior) must beat
per-detector order-1 fits in the reserved-star residuals: the pooled reserved
chi2/dof (flux, centroid, background refitted per star) and the rms of dT/T against
the true PSF at the reserved positions.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import QTable

from lsstdrp import InvalidInputError
from lsstdrp.psf import fit_psf, fit_visit_psf

sim = pytest.importorskip("lsstdrp.sim")


def _moments_t(k):
    from lsstdrp.measure import adaptive_moments

    c = (k.shape[0] - 1) / 2
    r = adaptive_moments(k, c, c, guess_sigma=2.0)
    return float(r.ixx[0] + r.iyy[0])


@pytest.fixture(scope="module")
def visit():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_psf_sim import _isolated_stars

    s = sim.make_survey("tiny", rng=21, star_density_arcmin2=45.0, star_mag_range=(17.0, 20.5),
                        galaxy_density_arcmin2=1.0, n_visits=1, n_bright_stars=0, n_transients=0, n_sso=0,
                        trail_probability=0.0)
    exps, cats, trs, truth = {}, {}, {}, {}
    for v, d in s.keys():
        ex, tr = s.exposure(v, d), s.truth[(v, d)]
        st = _isolated_stars(tr, s.config.det_shape[0])
        res = np.random.default_rng(d).random(len(st)) < 0.3
        exps[d] = (ex.image - tr.background.astype(np.float32), ex.variance, ex.mask)
        cats[d] = QTable({"x": np.asarray(st["x"]), "y": np.asarray(st["y"]), "psf_reserved": res})
        trs[d] = (lambda x, y, d=d: s.focal_plane.pixel_to_focal(d, x, y))
        truth[d] = tr.psf
    return exps, cats, trs, truth


def test_visit_fit_beats_per_detector(visit, record_property):
    exps, cats, trs, truth = visit
    assert all(len(c) < 30 for c in cats.values())
    vres = fit_visit_psf(exps, cats, trs, spatial_order=1, detector_order=0, size=17)
    assert vres.success, vres.reason
    stats = {"visit": [0.0, 0.0, []], "detector": [0.0, 0.0, []]}
    for d, cat in cats.items():
        pres = fit_psf(exps[d][0], exps[d][1], cat, mask=exps[d][2], spatial_order=1, size=17)
        assert pres.success, pres.reason
        vs = vres.stars[np.asarray(vres.stars["detector"]) == d]
        for name, tab, psf in (("visit", vs, vres.psf.psf_for(d)), ("detector", pres.stars, pres.psf)):
            r = np.asarray(tab["psf_reserved"]) & np.isfinite(np.asarray(tab["chi2"]))
            stats[name][0] += float(np.asarray(tab["chi2"])[r].sum())
            stats[name][1] += float(np.asarray(tab["dof"])[r].sum())
        for x, y in zip(cat["x"][cat["psf_reserved"]], cat["y"][cat["psf_reserved"]]):
            t0 = _moments_t(truth[d].kernel_image(x, y))
            stats["visit"][2].append(_moments_t(vres.psf.psf_for(d).kernel_image(x, y)) / t0 - 1)
            stats["detector"][2].append(_moments_t(pres.psf.kernel_image(x, y)) / t0 - 1)
    out = {}
    for name, (chi, dof, dt) in stats.items():
        out[name] = (chi / dof, math.sqrt(float(np.mean(np.square(dt)))))
        record_property(f"reserved_chi2_dof_{name}", out[name][0])
        record_property(f"reserved_rms_dT_T_{name}", out[name][1])
    assert out["visit"][0] < out["detector"][0]
    assert out["visit"][1] < out["detector"][1]


def test_visit_bad_input(visit):
    exps, cats, trs, _ = visit
    with pytest.raises(InvalidInputError, match="same detectors"):
        fit_visit_psf(exps, {0: cats[0]}, trs)
    few = {d: c[:2] for d, c in cats.items()}
    with pytest.raises(InvalidInputError, match="needs at least"):
        fit_visit_psf(exps, few, trs, spatial_order=2)
