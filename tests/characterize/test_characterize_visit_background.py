"""Full-visit background against the simulator's true sky (3 x 3 detectors of 256², a
5% focal-plane gradient on top of the zeropoint map, pixel-area and r² terms)."""

from __future__ import annotations

import numpy as np
import pytest

from lsstdrp import InvalidInputError
from lsstdrp.characterize import estimate_background, fit_visit_background


@pytest.fixture(scope="module")
def visit():
    from lsstdrp.sim import make_survey

    s = make_survey("tiny", rng=8, n_det_x=3, n_det_y=3, n_visits=1, sky_gradient_frac=0.05, trail_probability=0.0)
    return s, {d: s.exposures[(v, d)] for v, d in s.keys()}


def test_visit_model_beats_per_detector_and_is_continuous(visit, record_property):
    s, exps = visit
    bg = fit_visit_background(exps, order=3, bin_size=32)
    assert bg.success and sorted(bg.backgrounds) == list(range(9))
    res_v, res_d, edge = [], [], []
    for (v, d) in s.keys():
        tr = s.truth[(v, d)]
        sig = float(np.sqrt(np.median(tr.background) + s.config.read_noise**2))  # sky noise per pixel
        rv = (bg.backgrounds[d] - tr.background) / sig
        per = estimate_background(exps[d].image, mask=exps[d].mask, bin_size=32, detect_iterations=1)
        rd = (per.background - tr.background) / sig
        res_v.append(rv.ravel())
        res_d.append(rd.ravel())
        frame = np.ones(rv.shape, bool)
        frame[8:-8, 8:-8] = False
        edge.append(rv[frame])
    rms_v = float(np.sqrt(np.mean(np.concatenate(res_v) ** 2)))
    rms_d = float(np.sqrt(np.mean(np.concatenate(res_d) ** 2)))
    rms_edge = float(np.sqrt(np.mean(np.concatenate(edge) ** 2)))
    record_property("visit_background_rms_over_sigma_sky", rms_v)
    record_property("per_detector_background_rms_over_sigma_sky", rms_d)
    record_property("visit_background_edge_rms_over_sigma_sky", rms_edge)
    assert rms_v < 0.05
    assert rms_v < rms_d
    # continuous across gaps: the residual in the outer 8 pixels of every detector (where
    # neighbours meet) is as small as everywhere else
    assert rms_edge < 0.05
    # the model across a gap: left edge of detector 1 vs right edge of detector 0 (same row
    # of detectors) differ by the true sky difference
    y = np.arange(0, 256, 16.0)
    jump_model = bg.evaluate(1, np.zeros_like(y), y) - bg.evaluate(0, np.full_like(y, 255.0), y)
    jump_true = s.truth[(s.keys()[1])].background[y.astype(int), 0] - s.truth[s.keys()[0]].background[y.astype(int), 255]
    assert np.max(np.abs(jump_model - jump_true)) < 0.05 * sig


def test_arrays_with_wcs_and_bad_input(visit):
    s, exps = visit
    imgs = {d: np.asarray(e.image) for d, e in exps.items()}
    wcs = {d: e.wcs for d, e in exps.items()}
    bg = fit_visit_background(imgs, wcs=wcs, order=2, bin_size=32)
    assert bg.success and bg.backgrounds[4].dtype == np.float32
    with pytest.raises(InvalidInputError, match="no WCS"):
        fit_visit_background(imgs)
    with pytest.raises(InvalidInputError, match="non-empty"):
        fit_visit_background({})
    with pytest.raises(InvalidInputError, match="detector"):
        bg.evaluate(42, 0.0, 0.0)
    few = fit_visit_background({0: exps[0]}, order=10, bin_size=128)
    assert not few.success and "nodes" in few.reason
