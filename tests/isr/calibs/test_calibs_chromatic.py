"""Wavelength-dependent photometric correction and the Calibs FITS round trip (issue 4).

Truth: synthetic photometry of the simulator's SEDs (blackbody x power law) through its
bandpasses, whose filter edges shift with the focal-plane radius. Acceptance: from a
colour alone (g - i), the corrected magnitudes of held-out SEDs at held-out positions
agree with their synthetic photometry in the standard bandpass to < 1 mmag rms.
"""

from __future__ import annotations

import numpy as np
import pytest

from lsstdrp import InvalidInputError
from lsstdrp.core import Calibs, Linearity, PhotonTransferCurve, make_detector_geometry
from lsstdrp.isr.calibs import (
    ChromaticCorrectionMap,
    chromatic_correction,
    fit_chromatic_correction,
    synthetic_ab_magnitude,
)
from lsstdrp.sim import bandpass, bandpass_shift_mag, color_index, sed_photons

R = 300.0  # focal-plane radius, mm
SHIFT = -4.0  # nm, filter-edge shift at the edge of the field (blue-ward with the angle)


def _shift(xy):
    return SHIFT * (np.hypot(xy[..., 0], xy[..., 1]) / R) ** 2


def _seds(rng, n, w):
    t = np.exp(rng.uniform(np.log(3000.0), np.log(30000.0), n))
    tilt = rng.uniform(-1.0, 1.0, n)
    return sed_photons(w, t[:, None], tilt=tilt[:, None]), t, tilt


@pytest.fixture(scope="module")
def chromatic():
    w, std = bandpass("r")
    g, i = bandpass("g")[1], bandpass("i")[1]
    rng = np.random.default_rng(1)
    grid = np.linspace(-R, R, 7)
    pos = np.array([[x, y] for x in grid for y in grid])
    pos = pos[np.hypot(*pos.T) <= 1.01 * R]
    tps = np.array([bandpass("r", shift_nm=s)[1] for s in _shift(pos)])
    seds, t, tilt = _seds(rng, 200, w)

    def gi(s):
        return synthetic_ab_magnitude(w, g, s) - synthetic_ab_magnitude(w, i, s)

    fit = fit_chromatic_correction(w, tps, pos, std, seds, gi(seds), color_name="g-i", band="r")
    return w, std, gi, fit, rng


def test_pure_function_matches_the_simulators_synthetic_photometry():
    w, std = bandpass("r")
    t = np.array([3500.0, 6000.0, 20000.0])
    s = sed_photons(w, t[:, None])
    for shift in (-4.0, 2.0):
        dm = chromatic_correction(w, bandpass("r", shift_nm=shift)[1], std, s)
        # the simulator's table: the change of the AB magnitude when the band shifts
        np.testing.assert_allclose(dm, -bandpass_shift_mag(t, "r", shift), atol=1e-4)  # its 0.05 mmag accuracy
    g, i = bandpass("g")[1], bandpass("i")[1]
    gi = synthetic_ab_magnitude(w, g, s) - synthetic_ab_magnitude(w, i, s)
    np.testing.assert_allclose(gi, color_index(t, "g-i"), atol=1e-4)
    # AB-flat sources need no correction
    assert abs(float(chromatic_correction(w, bandpass("r", shift_nm=-4.0)[1], std, 1.0 / w))) < 1e-12


def test_colour_only_correction_on_held_out_seds(chromatic, record_property):
    w, std, gi, fit, rng = chromatic
    assert fit.success
    seds, t, tilt = _seds(rng, 150, w)
    r = R * np.sqrt(rng.uniform(0, 1, 40))
    phi = rng.uniform(0, 2 * np.pi, 40)
    hp = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=1)
    tps = np.array([bandpass("r", shift_nm=s)[1] for s in _shift(hp)])
    truth = chromatic_correction(w, tps[:, None], std, seds[None])
    pred = fit.map(hp[:, :1], hp[:, 1:], gi(seds)[None])
    rms = float(np.sqrt(np.mean((pred - truth) ** 2)))
    record_property("chromatic_heldout_rms_mmag", rms * 1e3)
    record_property("chromatic_effect_rms_mmag", float(np.sqrt(np.mean(truth**2))) * 1e3)
    assert np.sqrt(np.mean(truth**2)) > 2e-3  # the correction matters
    assert rms < 1e-3


def test_calibs_fits_round_trip_with_every_product(chromatic, tmp_path):
    geom = make_detector_geometry(2, 1, (8, 6), prescan=1, serial_overscan=2, parallel_overscan=1)
    fit = chromatic[3]
    ptc = PhotonTransferCurve(gain=[1.5, 1.6], noise=[5.0, 6.0], a00=[-4e-6, -3.9e-6], turnoff=[9e4, 9.1e4],
                              mean=[[1.0, 2.0], [1.0, 2.0]], variance=[[1.0, 2.0], [1.0, 2.1]])
    c = Calibs(geom, bias=np.zeros((8, 12)), dark=np.full((8, 12), 0.02), flat=np.ones((8, 12)),
               linearity=[Linearity("polynomial", coefficients=[-1e-7], turnoff=9e4),
                          Linearity("spline", knots=[0.0, 5e4, 1e5], values=[0.0, -10.0, -50.0], turnoff=9e4)],
               crosstalk=np.array([[0, 2e-4], [1e-4, 0]]), bf_kernel=np.ones((3, 3)) * 1e-7,
               defects=np.eye(8, 12, dtype=bool), gains=[1.5, 1.6], read_noises=[5.0, 6.0], ptc=ptc)
    c = fit.map.to_calibs(c)
    c.to_fits(tmp_path / "c.fits")
    back = Calibs.from_fits(tmp_path / "c.fits")
    m2 = ChromaticCorrectionMap.from_calibs(back)
    np.testing.assert_array_equal(m2.coefficients, fit.map.coefficients)
    assert m2.domain == fit.map.domain and m2.color_name == "g-i" and m2.band == "r"
    xs, ys, cs = np.array([0.0, 100.0]), np.array([0.0, -200.0]), np.array([0.5, 2.0])
    np.testing.assert_array_equal(m2(xs, ys, cs), fit.map(xs, ys, cs))
    for f in ("bias", "dark", "flat", "crosstalk", "bf_kernel", "defects", "gains", "read_noises"):
        np.testing.assert_array_equal(getattr(back, f), getattr(c, f))
    np.testing.assert_array_equal(back.ptc.a00, ptc.a00)
    assert back.linearity[1].kind == "spline"
    with pytest.raises(InvalidInputError, match="chromatic"):
        ChromaticCorrectionMap.from_calibs(Calibs(geom))


def test_chromatic_bad_input():
    w = np.linspace(400, 700, 31)
    with pytest.raises(InvalidInputError, match="wave_nm"):
        synthetic_ab_magnitude(w[::-1], np.ones(31), np.ones(31))
    with pytest.raises(InvalidInputError, match="last axis"):
        chromatic_correction(w, np.ones(30), np.ones(31), np.ones(31))
    with pytest.raises(InvalidInputError, match=">= 0"):
        synthetic_ab_magnitude(w, -np.ones(31), np.ones(31))
    with pytest.raises(InvalidInputError, match="colors"):
        fit_chromatic_correction(w, np.ones((3, 31)), np.zeros((3, 2)), np.ones(31), np.ones((4, 31)), [0, 1])
    with pytest.raises(InvalidInputError, match="overlap"):
        synthetic_ab_magnitude(w, np.ones(31), np.zeros(31))
