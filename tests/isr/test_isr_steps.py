"""Each ISR correction alone: analytic cases, round trips through the simulator's forward
models, bad input, the dtype policy and read-only inputs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsstdrp import InvalidInputError
from lsstdrp.core import BBox, GaussianPsf, Linearity, MaskPlane, make_detector_geometry
from lsstdrp.isr import (
    apply_flat,
    assemble_amplifiers,
    correct_brighter_fatter,
    correct_crosstalk,
    correct_linearity,
    fit_overscan,
    interpolate_bad_pixels,
    make_variance,
    mask_defects,
    mask_saturation,
    subtract_bias,
    subtract_dark,
    subtract_overscan,
)
from lsstdrp.sim import apply_brighter_fatter, bf_kernel_from_aij, make_bf_aij

HYP = settings(deadline=None, derandomize=True, max_examples=20)
DTYPES = [np.float32, np.float64, np.int32, ">f4"]


def _readonly(*arrays):
    out = []
    for a in arrays:
        a = np.array(a)
        a.flags.writeable = False
        out.append(a)
    return out


# -- overscan -------------------------------------------------------------------------------
def test_overscan_median_per_row_is_exact():
    rng = np.random.default_rng(0)
    osc = rng.integers(900, 1100, (40, 12)).astype(np.uint16)
    data = rng.integers(1000, 5000, (40, 30)).astype(np.uint16)
    res = subtract_overscan(data, osc)
    assert res.image.dtype == np.float32
    np.testing.assert_array_equal(res.profile, np.median(osc.astype(float), axis=1))
    np.testing.assert_array_equal(res.image, (data - np.median(osc, axis=1)[:, None]).astype(np.float32))


def test_overscan_parallel_axis():
    osc = np.arange(24.0).reshape(4, 6)
    data = np.zeros((10, 6))
    res = subtract_overscan(data, osc, axis=0)
    np.testing.assert_array_equal(res.profile, np.median(osc, axis=0))
    np.testing.assert_array_equal(res.image, -np.median(osc, axis=0)[None, :] * np.ones((10, 1)))


@pytest.mark.parametrize("fit,kw", [("poly", {"order": 2}), ("spline", {"n_knots": 4})])
def test_overscan_smooth_fit_recovers_drift_and_clips_bad_rows(fit, kw):
    rng = np.random.default_rng(1)
    ny = 400
    t = np.arange(ny)
    drift = 1000.0 + 3.0 * (t / ny) - 2.0 * (t / ny) ** 2
    osc = drift[:, None] + rng.normal(0, 5.0, (ny, 30))
    osc[100, :] += 500.0  # a hot row (e.g. a cosmic ray in the overscan)
    prof, raw, nrej = fit_overscan(osc, fit=fit, **kw)
    assert nrej >= 1
    # the per-row median noise is ~1.25 * 5/sqrt(30) = 1.1 ADU; a smooth fit averages it down
    assert np.abs(prof - drift).max() < 0.6
    assert abs(raw[100] - drift[100]) > 400  # the raw statistic saw the hot row


def test_overscan_clipped_mean_and_constant():
    rng = np.random.default_rng(2)
    osc = rng.normal(500.0, 2.0, (50, 40))
    osc[:, 3] = 5000.0  # a hot column in every row
    prof, _, _ = fit_overscan(osc, statistic="clipped_mean")
    assert np.abs(prof - 500.0).max() < 1.5
    const, _, _ = fit_overscan(osc, fit="constant")
    assert np.ptp(const) == 0 and abs(const[0] - 500.0) < 0.5


def test_overscan_bad_input():
    with pytest.raises(InvalidInputError, match="rows"):
        subtract_overscan(np.zeros((5, 5)), np.zeros((4, 3)))
    with pytest.raises(InvalidInputError, match="columns"):
        subtract_overscan(np.zeros((5, 5)), np.zeros((4, 3)), axis=0)
    with pytest.raises(InvalidInputError, match="finite"):
        fit_overscan(np.full((3, 3), np.nan))
    with pytest.raises(InvalidInputError, match="statistic"):
        fit_overscan(np.zeros((3, 3)), statistic="mode")


@pytest.mark.parametrize("dtype", DTYPES)
def test_overscan_dtype_policy(dtype):
    data = np.arange(12).reshape(3, 4).astype(dtype)
    osc = np.ones((3, 2)).astype(dtype)
    out = subtract_overscan(data, osc).image
    expected = np.float64 if np.dtype(dtype) in (np.dtype(np.float64), np.dtype(np.int32)) else np.float32
    assert out.dtype == expected and out.dtype.isnative


# -- saturation ------------------------------------------------------------------------------
def test_saturation_bleed_suspect_and_growth():
    img = np.zeros((12, 5))
    img[4:7, 2] = 1000.0  # saturated core
    img[7:9, 2] = 800.0  # trail end above half saturation
    img[9, 2] = 300.0  # below
    img[0, 0] = 900.0  # suspect
    m = mask_saturation(img, saturation=1000.0, suspect_level=850.0, grow=0)
    sat = (m & MaskPlane.SAT) != 0
    np.testing.assert_array_equal(np.nonzero(sat[:, 2])[0], np.arange(4, 9))
    assert sat.sum() == 5
    assert m[0, 0] & MaskPlane.SUSPECT and not m[0, 0] & MaskPlane.SAT
    grown = mask_saturation(img, saturation=1000.0, grow=1)
    assert ((grown & MaskPlane.SAT) != 0).sum() == 7 * 3  # rows 3..9, columns 1..3
    with pytest.raises(InvalidInputError, match="suspect_level"):
        mask_saturation(img, saturation=10.0, suspect_level=20.0)
    with pytest.raises(InvalidInputError, match="saturation"):
        mask_saturation(img, saturation=np.nan)


# -- assembly and crosstalk ------------------------------------------------------------------
def _geom():
    return make_detector_geometry(4, 2, (6, 5), prescan=1, serial_overscan=3, parallel_overscan=2)


def test_assembly_flips_and_keeps_dtype():
    g = _geom()
    raw = np.zeros(g.raw_shape, dtype=np.uint32)
    for i, a in enumerate(g.amplifiers):
        seg = np.arange(30, dtype=np.uint32).reshape(6, 5) + 100 * i
        raw[a.data_bbox.slices] = seg
    out = assemble_amplifiers(raw, g)
    assert out.dtype == np.uint32 and out.shape == g.assembled_shape
    for i, a in enumerate(g.amplifiers):
        seg = np.arange(30).reshape(6, 5) + 100 * i
        if a.flip_x:
            seg = seg[:, ::-1]
        if a.flip_y:
            seg = seg[::-1, :]
        np.testing.assert_array_equal(out[a.assembled_bbox.slices], seg)
    # the read-out corner pixel (first pixel read) of a flipped amp is its top-right
    top = g.amplifiers[-1]
    assert out[top.assembled_bbox.y1 - 1, top.assembled_bbox.x1 - 1] == raw[top.data_bbox.y0, top.data_bbox.x0]
    with pytest.raises(InvalidInputError, match="raw shape"):
        assemble_amplifiers(np.zeros((3, 3)), g)


def _crosstalk_forward(g, signal, c, q=None):
    """The simulator's model in plain numpy: victim += C x_source (+ Q x_source^2)."""
    segs = [a.data_bbox.slices for a in g.amplifiers]
    out = signal.copy()
    for v, sv in enumerate(segs):
        for s, ss in enumerate(segs):
            if v != s:
                out[sv] += c[v, s] * signal[ss]
                if q is not None:
                    out[sv] += q[v, s] * signal[ss] ** 2
    return out


def test_crosstalk_residual_below_1e4_of_source():
    g = _geom()
    rng = np.random.default_rng(3)
    n = g.n_amps
    c = rng.uniform(-3e-4, 3e-4, (n, n))
    q = rng.uniform(0, 1e-10, (n, n))
    np.fill_diagonal(c, 0)
    np.fill_diagonal(q, 0)
    signal = np.zeros(g.raw_shape)
    src = g.amplifiers[1].data_bbox
    signal[src.slices] = rng.uniform(1e4, 1e5, src.shape)  # bright sources in amp 1 only
    measured = _crosstalk_forward(g, signal, c, q)
    res = correct_crosstalk(measured, g, c, crosstalk_quadratic=q)
    amp = signal[src.slices].max()
    for a in g.amplifiers:
        resid = np.abs(res.image[a.data_bbox.slices] - signal[a.data_bbox.slices]).max()
        assert resid < 1e-4 * amp * 1e-3  # far below the 1e-4 acceptance
    assert res.n_flagged == 0
    first_order = correct_crosstalk(measured, g, c, crosstalk_quadratic=q, n_iter=1)
    assert np.abs(first_order.image - signal).max() < 1e-4 * amp


def test_crosstalk_flags_victims_of_saturated_sources():
    g = _geom()
    n = g.n_amps
    c = np.zeros((n, n))
    c[0, 1] = 1e-3
    img = np.zeros(g.raw_shape)
    mask = np.zeros(g.raw_shape, np.uint32)
    src = g.amplifiers[1].data_bbox
    img[src.y0 + 2, src.x0 + 3] = 1e5
    mask[src.y0 + 2, src.x0 + 3] = MaskPlane.SAT
    vic = g.amplifiers[0].data_bbox
    img[vic.y0 + 2, vic.x0 + 3] = 1e-3 * 1e5
    flag = correct_crosstalk(img, g, c, mask=mask)
    assert flag.n_flagged == 1 and flag.mask[vic.y0 + 2, vic.x0 + 3] & MaskPlane.CROSSTALK
    assert abs(flag.image[vic.y0 + 2, vic.x0 + 3]) < 1e-9  # corrected from the clipped value
    skip = correct_crosstalk(img, g, c, mask=mask, saturated="skip")
    assert skip.image[vic.y0 + 2, vic.x0 + 3] == pytest.approx(100.0)
    assert skip.mask[vic.y0 + 2, vic.x0 + 3] & MaskPlane.CROSSTALK


def test_crosstalk_bad_input():
    g = _geom()
    with pytest.raises(InvalidInputError, match="crosstalk"):
        correct_crosstalk(np.zeros(g.raw_shape), g, np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match="non-finite"):
        correct_crosstalk(np.zeros(g.raw_shape), g, np.full((8, 8), np.nan))
    with pytest.raises(InvalidInputError, match="raw shape"):
        correct_crosstalk(np.zeros((4, 4)), g, np.zeros((8, 8)))
    with pytest.raises(InvalidInputError, match="geometry"):
        correct_crosstalk(np.zeros(g.raw_shape), "not a geometry", np.zeros((8, 8)))


# -- linearity ---------------------------------------------------------------------------------
def _linearities():
    s = 1e5
    poly = Linearity("polynomial", coefficients=[-0.01 * 0.9 / s, -0.01 * 0.1 / s**2], turnoff=s)
    knots = np.linspace(0, 1.2 * s, 16)
    spline = Linearity("spline", knots=knots, values=poly.offset(knots), turnoff=s)
    table = Linearity("lookup", table=poly.offset(np.arange(int(1.2 * s) + 1.0)), turnoff=s)
    return {"polynomial": poly, "spline": spline, "lookup": table}


@pytest.mark.parametrize("kind", ["polynomial", "spline", "lookup"])
def test_linearity_inverts_forward_model(kind):
    lin = _linearities()[kind]
    linear = np.geomspace(1.0, 1.05e5, 400).reshape(20, 20)
    gain = 1.6
    measured_e = lin.evaluate(linear) * gain
    res = correct_linearity(measured_e, lin, gain=gain)
    rel = np.abs(res.image / gain - linear) / linear
    assert rel.max() < 1e-9  # acceptance: < 0.1% over the unsaturated range
    assert res.max_residual < 1e-6
    above = lin.evaluate(linear) > lin.turnoff
    np.testing.assert_array_equal((res.mask & MaskPlane.SUSPECT) != 0, above)


def test_linearity_rejects_non_invertible_and_wrong_type():
    bad = Linearity("polynomial", coefficients=[-1e-3])  # turns over at 500 ADU
    with pytest.raises(InvalidInputError, match="monotonic"):
        correct_linearity(np.array([[100.0, 2000.0]]), bad)
    with pytest.raises(InvalidInputError, match="Linearity"):
        correct_linearity(np.zeros((2, 2)), [1, 2])


# -- bias, dark, flat, variance, defects -------------------------------------------------------
def test_bias_dark_flat_and_variance():
    img = np.full((4, 5), 110.0)
    b = subtract_bias(img, np.full((4, 5), 10.0))
    np.testing.assert_array_equal(b.image, 100.0)
    d = subtract_dark(b.image, np.full((4, 5), 0.5), dark_time=20.0)
    np.testing.assert_array_equal(d.image, 90.0)
    var = make_variance(d.image + 10.0, read_noise=np.full((4, 5), 5.0))
    np.testing.assert_array_equal(var, 125.0)
    np.testing.assert_allclose(make_variance(np.full((1, 1), 100.0), read_noise=4.0, gain=2.0), [[54.0]])
    f = apply_flat(d.image, np.full((4, 5), 0.9), variance=var)
    np.testing.assert_allclose(f.image, 100.0)
    np.testing.assert_allclose(f.variance, 125.0 / 0.81)


def test_nan_calib_and_zero_flat_give_no_data():
    img = np.ones((3, 3))
    bias = np.zeros((3, 3))
    bias[1, 1] = np.nan
    r = subtract_bias(img, bias)
    assert r.n_no_data == 1 and r.mask[1, 1] & MaskPlane.NO_DATA and np.isnan(r.image[1, 1])
    dark = np.zeros((3, 3))
    dark[0, 0] = np.inf
    assert subtract_dark(img, dark, dark_time=1.0).mask[0, 0] & MaskPlane.NO_DATA
    flat = np.ones((3, 3))
    flat[2, 2] = 0.0
    flat[0, 1] = 1e-6
    f = apply_flat(img, flat, variance=img)
    assert f.n_no_data == 2
    assert f.mask[2, 2] & MaskPlane.NO_DATA and f.mask[0, 1] & MaskPlane.NO_DATA
    assert np.isnan(f.image[2, 2]) and np.isfinite(f.image[1, 1])
    with pytest.raises(InvalidInputError, match="shape"):
        subtract_bias(img, np.zeros((2, 3)))
    with pytest.raises(InvalidInputError, match="dark_time"):
        subtract_dark(img, dark, dark_time=-1.0)
    with pytest.raises(InvalidInputError, match="read_noise"):
        make_variance(img, read_noise=-1.0)


def test_defects_mask_and_interpolation():
    yy, xx = np.mgrid[0:20, 0:30].astype(float)
    img = 100.0 + 2.0 * xx + 0.5 * yy  # a linear gradient is interpolated exactly
    m = mask_defects([BBox(0, 20, 7, 8), (5, 6, 20, 21)], img.shape)
    assert ((m & MaskPlane.BAD) != 0).sum() == 21
    res = interpolate_bad_pixels(img, m)
    np.testing.assert_allclose(res.image, img)
    assert res.n_interpolated == 21 and res.n_failed == 0
    assert ((res.mask & MaskPlane.INTRP) != 0).sum() == 21
    boolean = mask_defects(np.eye(4, dtype=bool), (4, 4))
    np.testing.assert_array_equal(boolean, np.eye(4, dtype=np.uint32))
    with pytest.raises(InvalidInputError, match="outside"):
        mask_defects([BBox(0, 50, 0, 1)], img.shape)
    everything = interpolate_bad_pixels(np.ones((3, 3)), np.ones((3, 3), bool))
    assert everything.n_failed == 9 and (everything.mask & MaskPlane.NO_DATA).all()


# -- brighter-fatter ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bf_kernel():
    return bf_kernel_from_aij(make_bf_aij(-2e-6, radius=3, anisotropy=0.1), 6)


def test_bf_inverts_the_simulator_forward_model(bf_kernel):
    img = np.full((61, 61), 900.0)
    img[18:43, 18:43] += GaussianPsf(1.5).image(30.3, 29.8, shape=25) * 1.5e6
    obs = apply_brighter_fatter(img, bf_kernel)
    assert np.abs(obs - img).max() > 1e3  # the effect is large at the peak
    res = correct_brighter_fatter(obs, bf_kernel)
    assert res.converged and res.n_iter < 20
    assert np.abs(res.image - img).max() < 1e-3 * np.sqrt(img.max())
    assert abs(res.flux_change) < 1e-6 * img.sum()


@HYP
@given(st.integers(0, 2**31), st.floats(1e2, 1e5))
def test_bf_conserves_flux(bf_kernel, seed, level):
    rng = np.random.default_rng(seed)
    img = rng.uniform(0, level, (24, 19))
    res = correct_brighter_fatter(img, bf_kernel, max_iter=3)
    assert abs(res.image.sum() - img.sum()) < 1e-9 * img.sum()


def test_bf_masked_pixels_unchanged_and_bad_kernel(bf_kernel):
    img = np.full((20, 20), 1e4)
    img[5, 5] = np.nan
    mask = np.zeros((20, 20), np.uint32)
    mask[10, 10] = MaskPlane.NO_DATA
    res = correct_brighter_fatter(img, bf_kernel, mask=mask)  # NaN: no charge, left as is
    assert np.isnan(res.image[5, 5]) and res.image[10, 10] == 1e4
    with pytest.raises(InvalidInputError, match="odd"):
        correct_brighter_fatter(img, np.zeros((4, 4)))
    with pytest.raises(InvalidInputError, match="non-finite"):
        correct_brighter_fatter(img, np.full((3, 3), np.nan))


# -- contracts -------------------------------------------------------------------------------------
def test_read_only_inputs_are_never_modified(bf_kernel):
    g = _geom()
    rng = np.random.default_rng(9)
    raw, = _readonly(rng.uniform(0, 100, g.raw_shape))
    img, flat, var = _readonly(rng.uniform(100, 200, (16, 16)), rng.uniform(0.9, 1.1, (16, 16)), np.full((16, 16), 50.0))
    mask, = _readonly(np.zeros((16, 16), np.uint32))
    before = [a.copy() for a in (raw, img, flat, var)]
    subtract_overscan(img, img[:, :4])
    mask_saturation(img, saturation=150.0, mask=mask)
    correct_crosstalk(raw, g, np.full((8, 8), 1e-4))
    assemble_amplifiers(raw, g)
    correct_linearity(img, _linearities()["spline"], mask=mask)
    subtract_bias(img, flat)
    subtract_dark(img, flat, dark_time=3.0)
    apply_flat(img, flat, variance=var, mask=mask)
    make_variance(img, read_noise=5.0)
    correct_brighter_fatter(img, bf_kernel, mask=mask)
    interpolate_bad_pixels(img, img > 190)
    for a, b in zip((raw, img, flat, var), before):
        np.testing.assert_array_equal(a, b)
    assert not mask.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_policy_of_assembled_steps(dtype, bf_kernel):
    img = (np.arange(64).reshape(8, 8) + 100).astype(dtype)
    expected = np.dtype(np.float64) if np.dtype(dtype) in (np.dtype(np.float64), np.dtype(np.int32)) else np.dtype(np.float32)
    for out in (
        subtract_bias(img, np.ones((8, 8), dtype)).image,
        subtract_dark(img, np.ones((8, 8), dtype), dark_time=2.0).image,
        apply_flat(img, np.ones((8, 8), dtype)).image,
        make_variance(img, read_noise=3.0),
        correct_brighter_fatter(img, bf_kernel).image,
        interpolate_bad_pixels(img, np.eye(8, dtype=bool)).image,
    ):
        assert out.dtype == expected and out.dtype.isnative
