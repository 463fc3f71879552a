"""Raw-frame simulation: invariants against its own truth (no ISR code is used here).

The helpers below re-implement assembly from the documented conventions of
``lsstdrp.core.Amplifier`` (read-out order, flips), so the test checks the simulator
against the *interface*, not against itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from lsstdrp import InvalidInputError
from lsstdrp.core import Calibs, Linearity, make_detector_geometry
from lsstdrp.sim import (
    RawEffects,
    apply_brighter_fatter,
    bf_kernel_from_aij,
    displace_charge,
    make_bf_aij,
    make_calibration_exposures,
    make_raw,
    make_sensor_truth,
)

GEOM = make_detector_geometry(4, 2, (48, 24), prescan=2, serial_overscan=16, parallel_overscan=8)


def _signal(frame, levels=None):
    """Assembled ADU above the given per-row overscan levels (or above 0)."""
    g = frame.geometry
    out = np.zeros(g.assembled_shape)
    for k, a in enumerate(g.amplifiers):
        seg = frame.data[a.data_bbox.slices].astype(np.float64)
        if levels is not None:
            rows = np.arange(a.data_bbox.y0, a.data_bbox.y1) - a.raw_bbox.y0
            seg = seg - levels[k][rows][:, None]
        if a.flip_y:
            seg = seg[::-1]
        if a.flip_x:
            seg = seg[:, ::-1]
        out[a.assembled_bbox.slices] = seg
    return out


def _gain_image(geom, gains):
    return np.asarray(gains)[geom.amp_index_image()]


def _star(shape, y, x, sigma, flux):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    g = np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
    return flux * g / g.sum()


# -- electronics --------------------------------------------------------------------------
def test_overscan_is_bias_level_plus_drift_within_read_noise():
    fx = RawEffects(cosmic_ray_rate=0.0, crosstalk=0.0, overscan_drift=20.0)
    sim = make_raw(np.full(GEOM.assembled_shape, 300.0), GEOM, rng=11, exptime=15.0, effects=fx)
    frame = sim.raws[0]
    assert frame.data.dtype == np.int32
    for k, a in enumerate(GEOM.amplifiers):
        level = sim.truth["overscan_level"][0][k]
        assert np.ptp(level) > 5.0  # the drift is there
        rows = np.arange(a.serial_overscan_bbox.y0, a.serial_overscan_bbox.y1) - a.raw_bbox.y0
        ov = frame.data[a.serial_overscan_bbox.slices].astype(np.float64)
        resid = ov - level[rows][:, None]
        sigma2 = (a.read_noise / a.gain) ** 2 + 1.0 / 12.0  # read noise + digitisation
        n = resid.size
        assert abs(resid.mean()) < 5 * np.sqrt(sigma2 / n)
        # empirical variance within 5 sigma of its chi^2 scatter
        assert abs(resid.var() / sigma2 - 1) < 5 * np.sqrt(2.0 / n)


def test_zero_effect_raw_equals_truth_within_poisson():
    rng = np.random.default_rng(5)
    truth = rng.uniform(200.0, 5000.0, GEOM.assembled_shape)
    truth[:] += _star(GEOM.assembled_shape, 50.3, 70.7, 2.0, 3e5)
    sim = make_raw(truth, GEOM, rng=2, exptime=30.0, effects=RawEffects.none())
    frame = sim.raws[0]
    assert frame.data.dtype == np.float32
    assert sim.calibs.bias is None and sim.calibs.flat is None and sim.calibs.crosstalk is None
    e = _signal(frame) * _gain_image(GEOM, sim.calibs.amp_gains())
    pull = (e - truth) / np.sqrt(truth)
    assert abs(pull.mean()) < 5 / np.sqrt(pull.size)
    assert abs(pull.std() - 1) < 5 / np.sqrt(2 * pull.size)
    # electrons are integers (Poisson) up to float32 rounding of ADU
    assert np.max(np.abs(e - np.round(e)) / np.maximum(e, 1)) < 1e-6


def test_snaps_split_the_exposure_and_sum_to_it():
    truth = np.full(GEOM.assembled_shape, 2000.0)
    sim = make_raw(truth, GEOM, rng=3, exptime=30.0, snaps=2, mjd=60000.0, band="r",
                   effects=RawEffects.none(cosmic_ray_rate=5.0))
    a, b = sim.raws
    assert (a.snap, b.snap) == (0, 1) and a.exptime == b.exptime == 15.0
    assert a.dark_time == b.dark_time == 15.0 + RawEffects().dark_overhead
    assert b.mjd == pytest.approx(60000.0 + (15.0 + RawEffects().snap_gap) / 86400.0)
    assert a.band == "r"
    gains = _gain_image(GEOM, sim.calibs.amp_gains())
    for s, frame in enumerate((a, b)):
        np.testing.assert_allclose(sim.truth["charge_expected"][s], truth / 2, rtol=1e-6)
        charge = sim.truth["charge"][s]
        np.testing.assert_allclose(_signal(frame) * gains, charge, rtol=1e-5, atol=1e-3)
    # independent realisations: different noise and cosmic rays
    assert not np.array_equal(sim.truth["charge_photo"][0], sim.truth["charge_photo"][1])
    assert not np.array_equal(sim.truth["cr_mask"][0], sim.truth["cr_mask"][1])
    total = (_signal(a) + _signal(b)) * gains - sim.truth["cr_charge"][0] - sim.truth["cr_charge"][1]
    pull = (total - truth) / np.sqrt(truth)
    assert abs(pull.mean()) < 5 / np.sqrt(pull.size) and abs(pull.std() - 1) < 0.05


def test_crosstalk_amplitude_as_configured():
    fx = RawEffects.none(crosstalk=1e-3, crosstalk_quadratic=1e-9, poisson=False)
    img = np.zeros(GEOM.assembled_shape)
    src = GEOM.amp_index("C01")
    box = GEOM.amplifiers[src].assembled_bbox
    img[box.y0 + 10:box.y0 + 20, box.x0 + 3:box.x0 + 9] = 5e4
    sim = make_raw(img, GEOM, rng=4, exptime=1.0, effects=fx)
    c, cq = sim.calibs.crosstalk, sim.calibs.crosstalk_quadratic
    assert np.all(np.diag(c) == 0) and np.abs(c).max() <= 1.5e-3 and np.abs(c[:, src]).max() > 5e-4
    gains = sim.calibs.amp_gains()
    frame = sim.raws[0]
    s_e = frame.amp_data(src).astype(np.float64) * gains[src]  # read-out order
    assert s_e.max() > 4e4
    for v, a in enumerate(GEOM.amplifiers):
        if v == src:
            continue
        victim_e = frame.amp_data(v).astype(np.float64) * gains[v]
        expected = c[v, src] * s_e + cq[v, src] * s_e**2
        np.testing.assert_allclose(victim_e, expected, rtol=1e-5, atol=1e-3 * abs(c[v, src]) * 5e4)
        # the signal lands at the same read-out position (the victim's flips, not the source's)
        if abs(c[v, src]) > 0:
            assert np.array_equal(victim_e != 0, s_e != 0)


def test_cosmic_ray_pixels_are_recorded():
    img = np.full(GEOM.assembled_shape, 100.0)
    on = make_raw(img, GEOM, rng=9, exptime=15.0, effects=RawEffects.none(cosmic_ray_rate=300.0))
    off = make_raw(img, GEOM, rng=9, exptime=15.0, effects=RawEffects.none())
    events = on.truth["cr_events"][0]
    assert len(events) >= 5 and set(events["kind"]) <= {"muon", "worm", "spot"}
    assert set(events.colnames) >= {"x_start", "y_start", "x_end", "y_end", "length_px", "energy_e"}
    cr = on.truth["cr_charge"][0]
    assert cr.sum() == pytest.approx(float(np.sum(events["energy_e"])), rel=1e-5)
    # same seed: every other realisation is unchanged, the difference is the CR charge
    gains = _gain_image(GEOM, on.calibs.amp_gains())
    diff = (_signal(on.raws[0]) - _signal(off.raws[0])) * gains
    np.testing.assert_allclose(diff, cr, atol=0.05, rtol=1e-4)
    mask = on.truth["cr_mask"][0]
    assert mask.sum() > 20 and np.all(cr[mask] >= 1.0) and np.all(cr[~mask] < 1.0)
    assert off.truth["cr_mask"][0].sum() == 0 and len(off.truth["cr_events"][0]) == 0
    # muons: ~80 e-/um over the 100 um thickness, more when inclined
    muons = events[events["kind"] == "muon"]
    if len(muons):
        assert np.all(muons["energy_e"][muons["length_px"] < 3] > 3000)


# -- charge transport ---------------------------------------------------------------------
def test_brighter_fatter_conserves_charge_and_broadens_stars():
    aij = make_bf_aij(-2e-6, power=2.5, radius=4, anisotropy=0.1)
    assert aij.sum() == pytest.approx(0.0, abs=1e-20) and aij[4, 4] == pytest.approx(-2e-6, rel=1e-12)
    assert aij[4, 5] > aij[5, 4] > 0  # serial neighbours stronger (anisotropy)
    kern = bf_kernel_from_aij(aij, 8)
    lap = np.pad(kern, 1)
    lap = lap[:-2, 1:-1] + lap[2:, 1:-1] + lap[1:-1, :-2] + lap[1:-1, 2:] - 4 * kern
    np.testing.assert_allclose(-0.5 * lap[4:13, 4:13], aij, atol=1e-20)
    shape = (41, 41)
    yy, xx = np.mgrid[0:41, 0:41] - 20.0
    sizes = []
    for peak in (1e3, 1e5):
        star = _star(shape, 20, 20, 1.5, 1.0)
        star *= peak / star.max()
        out = apply_brighter_fatter(star + 500.0, kern) - 500.0
        assert abs(out.sum() - star.sum()) < 1e-6 * (star.sum() + 500.0 * star.size)
        sizes.append(((xx**2 + yy**2) * out).sum() / out.sum())
    assert sizes[1] / sizes[0] - 1 > 0.01  # >= 1% growth in T over the flux range
    # a uniform field stays uniform away from the edges
    flat = apply_brighter_fatter(np.full((30, 30), 5e4), kern)
    np.testing.assert_allclose(flat[9:-9, 9:-9], 5e4, rtol=1e-12)


def test_brighter_fatter_flat_covariances_follow_aij():
    """Flat-field statistics of the simulated effect (Astier et al. 2019, first order):
    C_00 / mu = 1 + 2 mu a_00 and C_10 / mu = 2 mu a_10."""
    aij = make_bf_aij(-2e-6, power=2.5, radius=4)
    kern = bf_kernel_from_aij(aij, 8)
    mu = 3e4
    rng = np.random.default_rng(0)
    q = apply_brighter_fatter(rng.poisson(mu, (260, 260)).astype(float), kern)[10:-10, 10:-10]
    d = q - q.mean()
    c00 = (d * d).mean() / mu
    c01 = (d[:, 1:] * d[:, :-1]).mean() / mu
    assert c00 == pytest.approx(1 + 2 * mu * aij[4, 4], abs=0.02)
    assert c01 == pytest.approx(2 * mu * aij[4, 5], abs=0.012)


def test_displacement_conserves_charge_and_moves_centroids():
    fx = RawEffects(tree_ring_amplitude=0.1, tree_ring_period=15.0, prnu=0.0, vignetting=0.0, n_bad_columns=0)
    sensor = make_sensor_truth(GEOM, rng=1, effects=fx)
    dx, dy = sensor.displacement_x, sensor.displacement_y
    assert 0.05 < np.abs(dx).max() < 0.95
    rng = np.random.default_rng(2)
    q = rng.uniform(0, 1e4, GEOM.assembled_shape)
    out = displace_charge(q, dx, dy)
    assert abs(out.sum() - q.sum()) < 1e-6 * q.sum()
    tdx, tdy = sensor.tree_ring_displacement
    out = displace_charge(q, tdx, tdy)
    assert abs(out.sum() - q.sum()) < 1e-6 * q.sum()
    # a compact source moves by the local displacement
    y0, x0 = 40, 60
    star = _star(GEOM.assembled_shape, y0, x0, 1.2, 1e5)
    moved = displace_charge(star, dx, dy)
    yy, xx = np.mgrid[0:GEOM.assembled_shape[0], 0:GEOM.assembled_shape[1]]
    cx = (moved * xx).sum() / moved.sum() - (star * xx).sum() / star.sum()
    cy = (moved * yy).sum() / moved.sum() - (star * yy).sum() / star.sum()
    wx = (star * dx).sum() / star.sum()
    wy = (star * dy).sum() / star.sum()
    assert cx == pytest.approx(wx, abs=1e-9) and cy == pytest.approx(wy, abs=1e-9)
    # the flat holds the pixel-area variations: 1 - div(d) to first order
    flat = sensor.calibs.flat
    np.testing.assert_allclose(sensor.qe, sensor.qe[0, 0])  # uniform response here: the flat is D(1)
    div = np.gradient(dx, axis=1) + np.gradient(dy, axis=0)
    inner = (slice(2, -2), slice(2, -2))
    f, m = (flat / flat.mean())[inner].ravel(), (1 - div)[inner].ravel()
    assert np.corrcoef(f, m)[0, 1] > 0.9  # not 1: cloud-in-cell is a one-sided difference where d keeps its sign
    assert np.polyfit(m - m.mean(), f - f.mean(), 1)[0] == pytest.approx(1.0, abs=0.2)
    assert sensor.calibs.flat.mean() == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(InvalidInputError, match="dx"):
        displace_charge(q, np.ones_like(q), dy)


def test_saturation_bleeds_along_columns_conserving_charge():
    img = _star(GEOM.assembled_shape, 30.0, 40.0, 1.5, 5e6)
    img += 200.0
    fx = RawEffects(cosmic_ray_rate=0.0, n_bad_columns=0)
    sim = make_raw(img, GEOM, rng=8, exptime=15.0, effects=fx)
    t = sim.truth
    fwm, bleed, sat = t["full_well_mask"][0], t["bleed_mask"][0], t["saturated_mask"][0]
    assert fwm.sum() > 10 and bleed.sum() > 0
    cols = np.nonzero(fwm.any(axis=0))[0]
    assert np.all(np.abs(cols - 40) <= 4)  # trails along columns near the star
    assert np.ptp(np.nonzero(fwm[:, 40])[0]) > 4  # longer along the column than the core is wide
    before = t["charge_photo"][0].astype(float) + t["charge_dark"][0] + t["cr_charge"][0]
    assert t["charge"][0].sum() + t["bleed_lost_e"][0] == pytest.approx(before.sum(), rel=1e-6)
    assert np.all(sat[fwm])  # every full pixel reads at or above the declared saturation
    above = _signal(sim.raws[0], t["overscan_level"][0])
    assert np.all(above[fwm] >= GEOM.amplifiers[0].saturation)
    assert np.all(above[fwm] <= sim.sensor.clip_adu.max() + 1 + 5 * 7 / 1.4)


@pytest.mark.parametrize("kind", ["polynomial", "spline", "lookup"])
def test_nonlinearity_is_the_stored_forward_model(kind):
    ramp = np.linspace(10.0, 1.2e5, GEOM.assembled_shape[1])[None, :] * np.ones(GEOM.assembled_shape)
    fx = RawEffects.none(nonlinearity=0.02, linearity_kind=kind, poisson=False)
    sim = make_raw(ramp, GEOM, rng=1, exptime=1.0, effects=fx)
    lins = sim.calibs.linearity
    assert all(lin.kind == kind for lin in lins)
    gains = sim.calibs.amp_gains()
    measured = _signal(sim.raws[0])
    for k, a in enumerate(GEOM.amplifiers):
        lin_adu = ramp[a.assembled_bbox.slices] / gains[k]
        np.testing.assert_allclose(measured[a.assembled_bbox.slices], lins[k].evaluate(lin_adu), rtol=1e-6)
        deficit = 1 - lins[k].evaluate(a.saturation) / a.saturation
        assert 0.015 < deficit < 0.025
    # the three representations describe the same curve
    ref = make_raw(ramp, GEOM, rng=1, exptime=1.0, effects=RawEffects.none(nonlinearity=0.02, poisson=False))
    np.testing.assert_allclose(measured, _signal(ref.raws[0]), rtol=2e-5, atol=1e-3)


# -- sensor truth, calibration frames -----------------------------------------------------
def test_default_effects_give_complete_true_calibs():
    sensor = make_sensor_truth(GEOM, rng=3)
    c = sensor.calibs
    for f in ("bias", "dark", "flat", "linearity", "crosstalk", "bf_kernel", "gains", "read_noises"):
        assert getattr(c, f) is not None, f
    assert c.flat.mean() == pytest.approx(1.0, rel=1e-6)
    assert len(c.defects) >= 2 and c.defect_mask().sum() > 2
    assert np.all(sensor.full_well > GEOM.amplifiers[0].saturation * GEOM.gains.min())
    bad = [b for b in c.defects if b.shape[1] == 1 and b.shape[0] > 1]
    for b in bad:
        assert np.all(c.flat[b.slices] < 0.6)
    hot = sensor.hot_pixels
    assert np.all(c.dark[hot] > RawEffects().dark_current)


def test_calibration_exposures():
    sensor = make_sensor_truth(GEOM, rng=4)
    biases = make_calibration_exposures(GEOM, sensor, kind="bias", n=2, rng=1)
    assert len(biases.raws) == 2 and biases.raws[0].exptime == 0.0 and biases.calibs is sensor.calibs
    gains = _gain_image(GEOM, sensor.calibs.amp_gains())
    b = np.mean([_signal(f, lv) * gains for f, lv in zip(biases.raws, biases.truth["overscan_level"])], axis=0)
    resid = b - sensor.calibs.bias - sum(biases.truth["cr_charge"]) / 2
    # bias structure recovered to read-noise/digitisation precision (column pattern averages down)
    assert abs(resid.mean()) < 0.5 and resid.std() < 6.0
    darks = make_calibration_exposures(GEOM, sensor, kind="dark", n=1, exptime=100.0, rng=2)
    assert darks.raws[0].dark_time == 100.0 + RawEffects().dark_overhead
    flats = make_calibration_exposures(GEOM, sensor, kind="flat", n=1, levels=3e4, rng=5,
                                       effects=RawEffects(poisson=False, read_noise=False, quantize=False,
                                                          cosmic_ray_rate=0.0, bf_a00=0.0, column_pattern=0.0))
    charge = flats.truth["charge_expected"][0]
    np.testing.assert_allclose(charge, 3e4 * sensor.calibs.flat, rtol=1e-5)
    pairs = make_calibration_exposures(GEOM, sensor, kind="flat_pair", n=4, rng=6)
    assert pairs.truth["pairs"] == ((0, 1), (2, 3), (4, 5), (6, 7))
    lv = pairs.truth["levels"]
    assert lv[0] == lv[1] == 100.0 and lv[6] == pytest.approx(0.9 * sensor.full_well.min())
    with pytest.raises(InvalidInputError, match="kind"):
        make_calibration_exposures(GEOM, sensor, kind="sky", n=1)
    with pytest.raises(InvalidInputError, match="levels"):
        make_calibration_exposures(GEOM, sensor, kind="flat", n=2, levels=[1.0, 2.0, 3.0])
    with pytest.raises(InvalidInputError, match="levels"):
        make_calibration_exposures(GEOM, sensor, kind="bias", n=2, levels=5.0)


def test_calibs_as_truth_and_sensor_reuse():
    img = np.full(GEOM.assembled_shape, 1000.0)
    first = make_raw(img, GEOM, rng=1, exptime=10.0)
    second = make_raw(img, GEOM, rng=2, exptime=10.0, calibs_truth=first.sensor)
    assert second.calibs is first.calibs and second.sensor is first.sensor
    assert not np.array_equal(first.raws[0].data, second.raws[0].data)
    flat = np.full(GEOM.assembled_shape, 1.0)
    flat[:, :48] = 0.5
    calibs = Calibs(GEOM, flat=flat, linearity=[Linearity("polynomial", coefficients=[-1e-7])] * GEOM.n_amps)
    sim = make_raw(img, GEOM, rng=3, exptime=10.0, calibs_truth=calibs,
                   effects=RawEffects.none(poisson=False, saturation=True))
    assert sim.calibs is calibs and sim.sensor.displacement_x is None
    np.testing.assert_allclose(sim.truth["charge_expected"][0], img * flat)
    bad = np.zeros(GEOM.assembled_shape)
    bad[3, 4] = np.nan
    with pytest.raises(InvalidInputError, match="calibs_truth.bias"):
        make_raw(img, GEOM, rng=3, calibs_truth=Calibs(GEOM, bias=bad))
    with pytest.raises(InvalidInputError, match="negative dark"):
        make_raw(img, GEOM, rng=3, calibs_truth=Calibs(GEOM, dark=-np.ones(GEOM.assembled_shape)))
    other = make_detector_geometry(2, 1, (8, 8), 1, 2, 1)
    with pytest.raises(InvalidInputError, match="different `geometry`"):
        make_raw(np.ones((8, 16)), other, calibs_truth=first.sensor, rng=1)


def test_deterministic_and_inputs_never_mutated():
    img = np.full(GEOM.assembled_shape, 800.0, dtype=np.float32)
    img.flags.writeable = False
    copy = img.copy()
    a = make_raw(img, GEOM, rng=21, exptime=15.0, snaps=2)
    b = make_raw(img, GEOM, rng=np.random.default_rng(21), exptime=15.0, snaps=2)
    np.testing.assert_array_equal(img, copy)
    for fa, fb in zip(a.raws, b.raws):
        np.testing.assert_array_equal(fa.data, fb.data)
    np.testing.assert_array_equal(a.calibs.flat, b.calibs.flat)
    assert not a.truth["image_e"].flags.writeable and not a.raws[0].data.flags.writeable
    c = make_raw(img, GEOM, rng=22, exptime=15.0)
    assert not np.array_equal(a.raws[0].data, c.raws[0].data)


def test_from_survey_truth():
    from lsstdrp.sim import make_survey

    survey = make_survey("tiny", rng=1)
    key = next(iter(survey.truth))
    et = survey.truth[key]
    geom = make_detector_geometry(8, 2, assembled_shape=et.noiseless.shape, detector=et.detector)
    sim = make_raw(et, geom, rng=1, exptime=30.0, effects=RawEffects.none())
    frame = sim.raws[0]
    assert (frame.band, frame.visit, frame.mjd) == (et.band, et.visit, et.mjd)
    e = _signal(frame) * _gain_image(geom, sim.calibs.amp_gains())
    assert abs(e.sum() / float(et.noiseless.sum()) - 1) < 5 / np.sqrt(float(et.noiseless.sum()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(image=np.ones((5, 5))), "assembled_shape"),
    (dict(image=np.full(GEOM.assembled_shape, -1.0)), ">= 0"),
    (dict(image=np.full(GEOM.assembled_shape, np.nan)), "non-finite"),
    (dict(snaps=3), "snaps"),
    (dict(exptime=0.0), "exptime"),
    (dict(calibs_truth="calibs"), "calibs_truth"),
    (dict(effects={"bf_a00": 0}), "effects"),
])
def test_make_raw_bad_input(kwargs, match):
    image = kwargs.pop("image", np.ones(GEOM.assembled_shape))
    with pytest.raises(InvalidInputError, match=match):
        make_raw(image, GEOM, rng=0, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(bf_a00=1e-6), "bf_a00"),
    (dict(vignetting=1.5), "vignetting"),
    (dict(linearity_kind="table"), "linearity_kind"),
    (dict(bf_radius=6, bf_kernel_radius=6), "bf_kernel_radius"),
    (dict(cosmic_ray_kinds=(0, 0, 0)), "cosmic_ray_kinds"),
    (dict(tree_ring_period=0.0), "tree_ring_period"),
    (dict(full_well=-5.0), "full_well"),
])
def test_raw_effects_validation(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        RawEffects(**kwargs)


def test_too_large_displacement_is_refused():
    with pytest.raises(InvalidInputError, match="0.95 px"):
        make_sensor_truth(GEOM, rng=0, effects=RawEffects(tree_ring_amplitude=0.6, pixel_area_amplitude=0.5))
