"""Master bias/dark/flat and the tiled combination (issue 4).

Truth from ``lsstdrp.sim.make_calibration_exposures``; tolerances from the noise: the
residual (master - truth) divided by the master's own variance plane must have rms 1
within a few times its sampling error sqrt(1/(2N)).
"""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from astropy.io import fits

from lsstdrp import InvalidInputError
from lsstdrp.core import make_detector_geometry
from lsstdrp.isr.calibs import MasterFrame, combine_frames, make_master_bias, make_master_dark, make_master_flat
from lsstdrp.sim import RawEffects, apply_brighter_fatter, make_calibration_exposures, make_sensor_truth

EDGE = 10  # flats: the simulated edge roll-off and BF at the array edge are not in the truth flat


def _reference(stack, inv, lo, hi, maxiters, center="median", scale="std", method="mean", min_keep=2):
    """Plain-numpy reference of the compiled clip_combine kernel (one pixel at a time)."""
    n, ny, nx = stack.shape
    out = np.empty((ny, nx))
    nused = np.empty((ny, nx), dtype=int)
    for y in range(ny):
        for x in range(nx):
            v = stack[:, y, x].astype(np.float64) * inv
            v = v[np.isfinite(v)]
            keep = np.ones(v.size, bool)
            for _ in range(maxiters):
                if keep.sum() < 3:
                    break
                k = v[keep]
                c = np.median(k) if center == "median" else k.mean()
                s = k.std() if scale == "std" else 1.482602218505602 * np.median(np.abs(k - np.median(k)))
                new = keep & (v >= c - lo * s) & (v <= c + hi * s)
                if new.sum() == keep.sum() or new.sum() < min_keep:
                    break
                keep = new
            out[y, x] = v[keep].mean() if method == "mean" else np.median(v[keep])
            nused[y, x] = keep.sum()
    return out, nused


@pytest.mark.parametrize("center, scale, method", [("median", "std", "mean"), ("mean", "std", "mean"),
                                                   ("median", "mad", "median")])
def test_kernel_matches_numpy_reference(center, scale, method):
    rng = np.random.default_rng(3)
    stack = rng.normal(100, 5, (15, 12, 13)).astype(np.float32)
    hits = rng.random(stack.shape) < 0.05
    stack[hits] += rng.uniform(30, 3000, hits.sum()).astype(np.float32)
    stack[0, 0, 0] = np.nan
    scales = rng.uniform(0.9, 1.1, 15)
    m = combine_frames(list(stack), scales=scales, nsigma=(3.0, 2.5), center=center, scale=scale, method=method,
                       maxiters=4)
    ref, nref = _reference(stack, 1 / scales, 3.0, 2.5, 4, center, scale, method)
    np.testing.assert_allclose(m.image, ref, rtol=2e-6)
    np.testing.assert_array_equal(m.n_used, nref)
    assert m.n_used[0, 0] <= 14 and m.n_rejected > 0


@pytest.fixture(scope="module")
def sensor():
    geom = make_detector_geometry(4, 2, assembled_shape=(128, 256), prescan=3, serial_overscan=16, parallel_overscan=8)
    fx = RawEffects(cosmic_ray_rate=2.0)  # every effect on, many cosmic rays to reject
    return geom, fx, make_sensor_truth(geom, effects=fx, rng=1)


@pytest.fixture(scope="module")
def masters(sensor):
    geom, fx, st = sensor
    truth = st.calibs
    n = 12
    b = make_calibration_exposures(geom, st, kind="bias", n=n, rng=2, effects=fx)
    mb = make_master_bias(b.raws, calibs=truth.replace(bias=None, dark=None))
    d = make_calibration_exposures(geom, st, kind="dark", n=n, rng=3, effects=fx)
    md = make_master_dark(d.raws, calibs=truth.replace(bias=mb.image, dark=None), bias_dark_time=b.raws[0].dark_time)
    f = make_calibration_exposures(geom, st, kind="flat", n=n, rng=4, effects=fx)
    mf = make_master_flat(f.raws, calibs=truth.replace(bias=mb.image, dark=md.image))
    return {"bias": (mb, b), "dark": (md, d), "flat": (mf, f)}


def _cr_free(sim) -> np.ndarray:
    """Pixels at least 2 px from every cosmic ray of every frame: a ray's faint tail is
    below any clipping threshold, so it biases the clipped mean there."""
    hit = np.zeros(sim.truth["cr_mask"][0].shape, bool)
    for m in sim.truth["cr_charge"]:
        hit |= m > 0
    return ~ndimage.binary_dilation(hit, iterations=2)


def _chi_rms(master: MasterFrame, truth: np.ndarray, good: np.ndarray) -> float:
    """sqrt(mean squared residual / mean of the variance plane): 1 for a right master and
    a right variance plane (both means are unbiased), sampling error ~ 1/sqrt(2N)."""
    r2 = ((master.image.astype(float) - truth)[good]) ** 2
    return float(np.sqrt(np.mean(r2) / np.mean(master.variance[good].astype(float))))


def _tol(good: np.ndarray) -> float:
    # 5 sigma of the rms over N pixels; the 3-sigma clipping of Gaussian values changes
    # the kept values' variance by < 0.3% (a 3.3-sigma outlier needs >= 12 values)
    return 5 * np.sqrt(1 / (2 * good.sum())) + 0.003


def test_master_bias_matches_truth(masters, sensor, record_property):
    mb, sim = masters["bias"]
    geom, _, st = sensor
    assert mb.kind == "bias" and mb.image.dtype == np.float32 and mb.n_frames == 12
    # hot pixels (a few, with Poisson variance hundreds of times the rest) would dominate
    # the ratio of means: tested on their own in the dark
    good = np.isfinite(mb.image) & ~st.hot_pixels & _cr_free(sim)
    # a bias is read out over its dark time: its dark charge (hot pixels) is in the master
    truth = st.calibs.bias + st.calibs.dark * sim.raws[0].dark_time
    rms = _chi_rms(mb, truth, good)
    record_property("bias_chi_rms", rms)
    # the variance of a clipped mean of 12 values is itself estimated from 12 values:
    # chi is Student-like with E[chi^2] = 11/9; tolerance 5 x the sampling error of the rms
    assert abs(rms - 1) < _tol(good)


def test_master_dark_matches_truth(masters, sensor, record_property):
    md, sim = masters["dark"]
    mb, bsim = masters["bias"]
    truth = sensor[2].calibs.dark
    good = np.isfinite(md.image) & ~sensor[2].hot_pixels & _cr_free(sim) & _cr_free(bsim)
    # the master bias' own error is common to every dark frame: add it to the budget
    t = md.scales[0]
    both = dataclasses.replace(md, variance=md.variance + mb.variance / t**2)
    rms = _chi_rms(both, truth, good)
    record_property("dark_chi_rms", rms)
    assert abs(rms - 1) < _tol(good)
    # the cosmic rays were rejected: every pixel with >= 100 e- of one
    hit = np.zeros(good.shape, int)
    for m in sim.truth["cr_charge"]:
        hit += m > 100
    assert hit.sum() > 20
    # one ray among 12 values sits up to sqrt(11) = 3.3 standard deviations (ddof 0) out:
    # always clipped at 3; two rays in one pixel can mask each other (use scale="mad")
    assert np.all(md.n_used[hit == 1] <= 11)
    hot = truth > 1.0
    np.testing.assert_allclose(md.image[hot], truth[hot], rtol=0.1)  # Poisson of >= 30 e- per frame, 12 frames


def test_master_flat_matches_truth(masters, sensor, record_property):
    mf, f = masters["flat"]
    st = sensor[2]
    # the truth flat as 20000 e- flats show it: the static brighter-fatter smoothing of
    # the response pattern (~2 a00 mu = 8% of the PRNU) is in every frame
    level = f.truth["levels"][0]
    truth = apply_brighter_fatter(level * st.calibs.flat, st.calibs.bf_kernel)
    truth /= truth.mean()
    good = np.zeros(truth.shape, bool)
    good[EDGE:-EDGE, EDGE:-EDGE] = True
    good &= ~st.calibs.defect_mask() & _cr_free(f)
    assert abs(float(np.mean(mf.image, dtype=np.float64)) - 1) < 1e-6
    rms = _chi_rms(mf, truth, good)
    record_property("flat_chi_rms", rms)
    assert abs(rms - 1) < _tol(good)
    assert np.all(mf.scales > 0.9 * 20000 * 0.9)


def test_paths_arrays_and_lazy_sequences_agree(tmp_path):
    rng = np.random.default_rng(5)
    frames = [rng.normal(10, 3, (40, 30)).astype(np.float32) for _ in range(12)]
    frames[2][5, 5] = 1e5
    paths = []
    for i, f in enumerate(frames):
        p = tmp_path / f"f{i}.fits"
        h = fits.PrimaryHDU(f.astype(">f4"))
        h.header["IMAGETYP"] = "zero"
        h.writeto(p)
        paths.append(p)
    a = make_master_bias(frames)
    b = make_master_bias(paths, tile_rows=3)
    c = make_master_bias([lambda f=f: f.astype(np.float64) for f in frames], tile_rows=7)
    d = make_master_bias(iter(np.stack(frames)))
    for m in (b, c, d):
        np.testing.assert_array_equal(m.image, a.image)
        np.testing.assert_array_equal(m.n_used, a.n_used)
    assert a.n_used[5, 5] == 11
    # integer FITS with BZERO (e.g. uint16) are scaled
    p = tmp_path / "u16.fits"
    fits.PrimaryHDU(np.full((40, 30), 40000, dtype=np.uint16)).writeto(p)
    m = combine_frames([p, p, p])
    assert float(m.image[0, 0]) == 40000.0


def test_raw_frames_from_fits_files(sensor, tmp_path):
    geom, fx, st = sensor
    b = make_calibration_exposures(geom, st, kind="bias", n=3, rng=7, effects=fx)
    paths = []
    for i, r in enumerate(b.raws):
        paths.append(tmp_path / f"raw{i}.fits")
        r.to_fits(paths[-1])
    c = st.calibs.replace(bias=None, dark=None)
    np.testing.assert_array_equal(make_master_bias(paths, calibs=c).image, make_master_bias(b.raws, calibs=c).image)


def test_streaming_keeps_memory_to_a_tile(tmp_path):
    shape = (400, 300)
    paths = []
    rng = np.random.default_rng(0)
    for i in range(10):
        paths.append(tmp_path / f"f{i}.fits")
        fits.PrimaryHDU(rng.normal(0, 1, shape).astype(np.float32)).writeto(paths[-1])
    frame = 4 * shape[0] * shape[1]
    tracemalloc.start()
    combine_frames(paths, memory_limit=frame / 2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # outputs (image, variance float32, n_used uint16 = 2.5 frames) + a tile of half a frame
    assert peak < 3.5 * frame


def test_bad_input(sensor):
    geom, fx, st = sensor
    with pytest.raises(InvalidInputError, match="empty"):
        make_master_bias([])
    with pytest.raises(InvalidInputError, match="different shapes"):
        combine_frames([np.zeros((4, 4)), np.zeros((4, 5))])
    b = make_calibration_exposures(geom, st, kind="bias", n=2, rng=8, effects=fx)
    d = make_calibration_exposures(geom, st, kind="dark", n=2, rng=9, effects=fx)
    with pytest.raises(InvalidInputError, match="mix exposure types"):
        make_master_bias(list(b.raws) + list(d.raws), calibs=st.calibs)
    with pytest.raises(InvalidInputError, match="expected flat"):
        make_master_flat(d.raws, calibs=st.calibs)
    with pytest.raises(InvalidInputError, match="pass `calibs`"):
        make_master_bias(b.raws)
    with pytest.raises(InvalidInputError, match="dark time"):
        make_master_dark([np.zeros((4, 4))] * 2)
    with pytest.raises(InvalidInputError, match="nsigma"):
        combine_frames([np.zeros((4, 4))] * 2, nsigma=-1)
    with pytest.raises(InvalidInputError, match="level <= 0"):
        make_master_flat([np.zeros((4, 4))] * 2)
    with pytest.raises(InvalidInputError, match="sequence"):
        combine_frames(np.zeros((4, 4)))
    with pytest.raises(TypeError):
        combine_frames([object()])
    with pytest.raises(InvalidInputError, match="does not exist"):
        combine_frames(["/nonexistent/x.fits"])
    # inputs are never modified
    f = [np.ones((4, 4))] * 3
    for a in f:
        a.flags.writeable = False
    make_master_flat(f)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, ">f4", np.uint16])
def test_input_dtypes_give_float32_masters(dtype):
    rng = np.random.default_rng(2)
    frames = [rng.integers(100, 200, (6, 7)).astype(dtype) for _ in range(5)]
    m = combine_frames(frames)
    assert m.image.dtype == np.float32 and m.variance.dtype == np.float32 and m.n_used.dtype == np.uint16
    ref, _ = _reference(np.array(frames, dtype=np.float64), np.ones(5), 3.0, 3.0, 5)
    np.testing.assert_allclose(m.image, ref, rtol=1e-6)


@settings(deadline=None, derandomize=True, max_examples=25)
@given(n=st.integers(1, 9), rows=st.integers(1, 12), seed=st.integers(0, 1000), tile=st.integers(1, 12))
def test_tiling_and_frame_order_do_not_change_the_master(n, rows, seed, tile):
    rng = np.random.default_rng(seed)
    stack = rng.normal(0, 1, (n, rows, 5)).astype(np.float32)
    stack[rng.random(stack.shape) < 0.1] = 50.0
    a = combine_frames(list(stack), memory_limit=1e9)
    b = combine_frames(list(stack[rng.permutation(n)]), tile_rows=tile)
    np.testing.assert_allclose(a.image, b.image, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(a.n_used, b.n_used)
    # a constant frame set is its own master, with zero variance
    c = combine_frames([np.full((rows, 5), 3.5)] * max(n, 2))
    assert np.all(c.image == 3.5) and np.all(c.variance == 0)
