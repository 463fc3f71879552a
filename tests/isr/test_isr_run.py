"""run_isr end to end on raws from ``lsstdrp.sim.make_raw`` with the true calibs.

Acceptance (issue 3), recorded with ``record_property``:

- every effect on: in source-free regions |mean residual| < 0.1 sigma_sky, residual rms
  within 2% of the expected noise, variance plane within 2% of the empirical variance;
- crosstalk residual < 1e-4 of the source amplitude, linearity residual < 0.1% over the
  unsaturated range (paired simulations, the effect on vs off, same noise);
- brighter-fatter: uncorrected star size grows >= 1% over the unsaturated flux range; the
  correction leaves |dT/T| slope < 1e-3 and >= 10x smaller (adaptive moments, true
  kernel, paired noise);
- bad input gives a clear exception or NO_DATA.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from lsstdrp import InvalidInputError
from lsstdrp.core import Calibs, GaussianPsf, MaskPlane, RawFrame, make_detector_geometry
from lsstdrp.isr import ISR_STEPS, IsrResult, run_isr
from lsstdrp.measure import adaptive_moments
from lsstdrp.sim import RawEffects, make_raw

SHAPE = (256, 512)
SKY = 900.0
PSF = GaussianPsf(1.5)


def _geometry(**kw):
    return make_detector_geometry(8, 2, assembled_shape=SHAPE, prescan=3, serial_overscan=24, parallel_overscan=12, **kw)


def _stars(seed, n=40, fmin=1e3, fmax=4e6, grid=False):
    rng = np.random.default_rng(seed)
    img = np.full(SHAPE, SKY) + 20.0 * np.linspace(-1, 1, SHAPE[1])[None, :]  # a sky gradient
    if grid:
        pts = [(y, x) for y in range(24, SHAPE[0] - 20, 40) for x in range(24, SHAPE[1] - 20, 40)]
        pts = [(y + rng.uniform(-0.5, 0.5), x + rng.uniform(-0.5, 0.5)) for y, x in pts]
        flux = np.geomspace(fmin, fmax, len(pts))
    else:
        pts = list(zip(rng.uniform(15, SHAPE[0] - 15, n), rng.uniform(15, SHAPE[1] - 15, n), strict=True))
        flux = 10 ** rng.uniform(np.log10(fmin), np.log10(fmax), n)
    for (y, x), f in zip(pts, flux, strict=True):
        xc, yc = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        img[yc - 12 : yc + 13, xc - 12 : xc + 13] += f * PSF.image(x, y, shape=25)
    ys, xs = np.array(pts).T
    return img, xs, ys, np.asarray(flux)


@pytest.fixture(scope="module")
def everything():
    img, *_ = _stars(1)
    # every effect on; the cosmic-ray rate raised (LSST: 0.025 / cm2 / s) to have some here
    sim = make_raw(img, _geometry(), rng=2, exptime=30.0, effects=RawEffects(cosmic_ray_rate=2.0))
    return sim, run_isr(sim.raws, sim.calibs, psf=PSF)


def test_recovers_truth_in_source_free_regions(everything, record_property):
    sim, res = everything
    assert isinstance(res, IsrResult) and len(res.snaps) == 1
    assert res.diagnostics[0]["steps"] == [s for s in ISR_STEPS if s != "cosmic_rays"]
    exp = res.exposure
    assert exp.image.dtype == np.float32 and exp.mask.dtype == np.uint32
    assert exp.exptime == 30.0 and exp.detector == 0
    truth = sim.truth["image_e"]
    sources = ndimage.binary_dilation(truth - (SKY + 20.0 * np.linspace(-1, 1, SHAPE[1])[None, :]) > 1.0, iterations=4)
    crs = ndimage.binary_dilation(sim.truth["cr_mask"][0], iterations=2)
    good = ~sources & ~crs & (exp.mask == 0)
    assert good.mean() > 0.5
    resid = (exp.image.astype(float) - truth)[good]
    var = exp.variance.astype(float)[good]
    sigma_sky = np.sqrt(var.mean())
    mean_sig = resid.mean() / sigma_sky
    rms_ratio = resid.std() / sigma_sky
    var_ratio = var.mean() / resid.var()
    chi = resid / np.sqrt(var)
    record_property("mean_residual_over_sigma", float(mean_sig))
    record_property("residual_rms_over_expected", float(rms_ratio))
    record_property("variance_plane_over_empirical", float(var_ratio))
    assert abs(mean_sig) < 0.1
    assert abs(rms_ratio - 1) < 0.02
    assert abs(var_ratio - 1) < 0.02
    assert abs(chi.std() - 1) < 0.02
    # defects were masked and interpolated, saturated stars flagged with their trails
    defects = sim.truth["defect_mask"]
    assert ((exp.mask[defects] & MaskPlane.BAD) != 0).all()
    assert ((exp.mask[defects] & MaskPlane.INTRP) != 0).all()
    sat = sim.truth["saturated_mask"][0]
    assert sat.any() and ((exp.mask[sat] & MaskPlane.SAT) != 0).all()


def test_single_snap_cosmic_rays_flagged(everything):
    sim, res = everything
    cr = res.cosmic_rays
    assert cr is not None and cr.n_pixels > 0
    big = sim.truth["cr_charge"][0] > 10 * np.sqrt(SKY)
    big &= res.exposure.mask & np.uint32(MaskPlane.SAT | MaskPlane.BAD) == 0
    assert ((res.exposure.mask[big] & MaskPlane.CR) != 0).mean() > 0.99


def _paired(effect: dict, img, seed=5):
    base = RawEffects.none(poisson=False)
    on = make_raw(img, _geometry(), rng=seed, exptime=30.0, effects=dataclasses.replace(base, **effect))
    off = make_raw(img, _geometry(), rng=seed, exptime=30.0, effects=base)
    return on, off


def test_crosstalk_residual_below_1e4(record_property):
    img, *_ = _stars(7, n=30, fmin=1e5, fmax=3e6)
    on, off = _paired({"crosstalk": 5e-4, "crosstalk_quadratic": 1e-10, "saturation": True}, img)
    assert on.calibs.crosstalk is not None
    a = run_isr(on.raws, on.calibs).exposure
    b = run_isr(off.raws, off.calibs).exposure
    source_amplitude = float((img - SKY).max())
    flagged = (a.mask & np.uint32(MaskPlane.CROSSTALK | MaskPlane.SAT)) != 0
    resid = np.abs(a.image.astype(float) - b.image)[~flagged].max() / source_amplitude
    uncorrected = run_isr(on.raws, on.calibs, do_crosstalk=False).exposure
    raw_xt = np.abs(uncorrected.image.astype(float) - b.image)[~flagged].max() / source_amplitude
    record_property("crosstalk_residual_fraction", float(resid))
    assert raw_xt > 1e-4  # the effect is visible
    assert resid < 1e-4
    assert flagged.any()  # victims of saturated sources are flagged CROSSTALK


@pytest.mark.parametrize("kind", ["polynomial", "spline", "lookup"])
def test_linearity_residual_below_01_percent(kind, record_property):
    img, *_ = _stars(8, n=25, fmin=1e4, fmax=2e6)
    on, off = _paired({"nonlinearity": 0.02, "linearity_kind": kind}, img)
    a = run_isr(on.raws, on.calibs).exposure
    b = run_isr(off.raws, off.calibs).exposure
    ok = ((a.mask | b.mask) & np.uint32(MaskPlane.SAT | MaskPlane.SUSPECT)) == 0
    ok &= b.image > 2 * SKY
    rel = np.abs(a.image.astype(float) / b.image - 1)[ok]
    nolin = run_isr(on.raws, on.calibs, do_linearity=False).exposure
    rel_uncorrected = np.abs(nolin.image.astype(float) / b.image - 1)[ok]
    record_property(f"linearity_residual_{kind}", float(rel.max()))
    assert rel_uncorrected.max() > 3e-3
    assert rel.max() < 1e-3


def test_brighter_fatter_slope(record_property):
    img, xs, ys, flux = _stars(9, fmin=1e4, fmax=1.2e6, grid=True)
    base = RawEffects.none(poisson=True, read_noise=True)
    on = make_raw(img, _geometry(), rng=11, exptime=30.0, effects=dataclasses.replace(base, bf_a00=-2e-6))
    off = make_raw(img, _geometry(), rng=11, exptime=30.0, effects=base)
    sky = SKY + 20.0 * np.linspace(-1, 1, SHAPE[1])[None, :]

    def size(exp):
        m = adaptive_moments(exp.image.astype(float) - sky, xs, ys, guess_sigma=1.5)
        return m.ixx + m.iyy

    t_ref = size(run_isr(off.raws, off.calibs).exposure)
    u = flux / flux.max()
    slopes = {}
    for do_bf in (False, True):
        t = size(run_isr(on.raws, on.calibs, do_bf=do_bf).exposure)
        slopes[do_bf] = np.polyfit(u, t / t_ref, 1)[0]
    record_property("bf_slope_uncorrected", float(slopes[False]))
    record_property("bf_slope_corrected", float(slopes[True]))
    assert slopes[False] > 0.01
    assert abs(slopes[True]) < 1e-3
    assert abs(slopes[True]) * 10 <= abs(slopes[False])


def test_two_snaps_are_combined():
    img, *_ = _stars(3, n=20)
    fx = RawEffects.none(poisson=True, read_noise=True, cosmic_ray_rate=20.0)
    sim = make_raw(img, _geometry(), rng=4, exptime=30.0, snaps=2, effects=fx)
    res = run_isr(sim.raws, sim.calibs)
    assert len(res.snaps) == 2 and res.exposure.exptime == pytest.approx(30.0)
    assert res.cosmic_rays.n_cr1 > 0 and res.cosmic_rays.n_cr2 > 0
    resid = (res.exposure.image.astype(float) - img) / np.sqrt(res.exposure.variance)
    both = (res.exposure.mask & MaskPlane.NO_DATA) != 0  # hit in both snaps: no clean value
    assert both.sum() == res.cosmic_rays.n_both
    assert np.abs(resid[~both]).max() < 8.0  # no cosmic-ray charge left anywhere else
    single = run_isr(sim.raws[0], sim.calibs)
    assert single.exposure.exptime == pytest.approx(15.0) and single.cosmic_rays is None


def test_bad_input():
    img, *_ = _stars(4, n=5)
    fx = RawEffects.none(poisson=True)
    sim = make_raw(img, _geometry(), rng=1, exptime=30.0, snaps=2, effects=fx)
    raw0, raw1 = sim.raws
    with pytest.raises(InvalidInputError, match="different exposure"):
        run_isr([raw0, raw1.replace(exptime=20.0)], sim.calibs)
    with pytest.raises(InvalidInputError, match="one snap or two"):
        run_isr([raw0, raw1, raw0], sim.calibs)
    with pytest.raises(TypeError, match="RawFrame"):
        run_isr(np.zeros(3), sim.calibs)
    with pytest.raises(TypeError, match="Calibs"):
        run_isr(raw0, "calibs")
    other = Calibs(make_detector_geometry(2, 1, assembled_shape=(16, 16), prescan=0, serial_overscan=4, parallel_overscan=0))
    with pytest.raises(InvalidInputError, match="geometry"):
        run_isr(raw0, other)
    with pytest.raises(InvalidInputError, match="not inside"):
        g = _geometry()
        a = dataclasses.replace(g.amplifiers[0], serial_overscan_bbox=g.amplifiers[0].serial_overscan_bbox.shifted(0, 10_000))
        type(g)(g.detector, (a, *g.amplifiers[1:]), g.assembled_shape, g.raw_shape)
    bad = np.array(raw0.data, dtype=np.float32)
    bad[5, 5] = np.nan
    with pytest.raises(InvalidInputError, match="non-finite"):
        run_isr(RawFrame(bad, raw0.geometry, exptime=15.0, dark_time=16.0), sim.calibs)
    # NaN in a calibration frame and a zero flat: NO_DATA, not an exception
    bias = np.zeros(SHAPE, np.float32)
    bias[10, 10] = np.nan
    flat = np.ones(SHAPE, np.float32)
    flat[20, 30:33] = 0.0
    calibs = sim.calibs.replace(bias=bias, flat=flat)
    exp = run_isr(raw0, calibs).exposure  # flagged by ISR itself: no InputDataWarning
    assert exp.mask[10, 10] & MaskPlane.NO_DATA
    assert (exp.mask[20, 30:33] & MaskPlane.NO_DATA).all()
    assert not (exp.mask[100:110, 100:110] & MaskPlane.NO_DATA).any()
    # inputs untouched (RawFrame and Calibs hold read-only arrays)
    assert not raw0.data.flags.writeable and not calibs.flat.flags.writeable
    with pytest.raises(InvalidInputError, match="crosstalk_saturated"):
        run_isr(raw0, sim.calibs, crosstalk_saturated="ignore")
