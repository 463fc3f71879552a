"""Tests of the simulator's astrometric truth chain (focal plane, turbulence, TruthWcs,
TAN-SIP export, proper motion and parallax).

Peers: astropy's TAN WCS (wcslib), ``all_pix2world`` / ``fit_wcs_from_points`` for the
TAN-SIP export, ``SkyCoord.apply_space_motion`` (ERFA ``pmsafe``) for proper motion and
``get_body_barycentric('earth')`` (built-in ephemeris, offline) for parallax.
"""

from __future__ import annotations

import math
import pickle

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import Distance, Galactic, SkyCoord, get_body_barycentric
from astropy.time import Time
from astropy.wcs import WCS
from astropy.wcs.utils import fit_wcs_from_points
from hypothesis import given, settings
from hypothesis import strategies as st

from lsstdrp import InvalidInputError
from lsstdrp.sim._astrometry import (
    TanSipApprox,
    TruthWcs,
    TurbulenceField,
    fit_tan_sip,
    make_turbulence,
    propagate_to_epoch,
)
from lsstdrp.sim._focalplane import DEFAULT_EDGE_DISTORTION, FocalPlane, make_focal_plane

MAS_PER_DEG = 3.6e6
PIX_MAS = 200.0  # 0.2"/px
HYP = settings(deadline=None, derandomize=True, max_examples=40)


def sep_mas(ra1, dec1, ra2, dec2):
    """Angular separation in mas (chord formula; exact to ~1e-8 mas)."""
    def vec(ra, dec):
        a, d = np.radians(ra), np.radians(dec)
        return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], -1)

    chord = np.linalg.norm(vec(ra1, dec1) - vec(ra2, dec2), axis=-1)
    return np.degrees(2.0 * np.arcsin(0.5 * chord)) * MAS_PER_DEG


# ----------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fp3():
    """3x3 focal plane of 2k x 2k detectors at 0.2"/px, default distortion."""
    return make_focal_plane(3, 3, (2048, 2048), rng=11)


@pytest.fixture(scope="module")
def turb_grid(fp3):
    return make_turbulence(fp3.field_radius_deg, rms_mas=5.0, rng=12)


@pytest.fixture(scope="module")
def turb_poly(fp3):
    return make_turbulence(fp3.field_radius_deg, rms_mas=5.0, polynomial_order=3, rng=12)


FP_SMALL = make_focal_plane(4, 3, (300, 400), gap_px=20, rng=3)
TURB_SMALL = make_turbulence(FP_SMALL.field_radius_deg, rms_mas=5.0, rng=4)


# --------------------------------------------------------------- focal plane
@HYP
@given(
    det=st.integers(0, FP_SMALL.n_detectors - 1),
    x=st.floats(-50.0, 450.0),
    y=st.floats(-50.0, 350.0),
)
def test_pixel_focal_roundtrip(det, x, y):
    fx, fy = FP_SMALL.pixel_to_focal(det, x, y)
    xb, yb = FP_SMALL.focal_to_pixel(det, fx, fy)
    assert abs(xb - x) < 1e-9 and abs(yb - y) < 1e-9


@pytest.mark.parametrize("k3, k5", [(None, 0.0), (-2e-6, 0.0), (1e-6, 3e-10), (0.0, 0.0)])
def test_field_to_focal_inverts_distortion(k3, k5):
    fp = make_focal_plane(3, 3, (2048, 2048), distortion_k3=k3, distortion_k5=k5, rng=0)
    rng = np.random.default_rng(1)
    r_max = 1.2 * fp._corner_radius_mm()
    fx, fy = rng.uniform(-r_max, r_max, (2, 5000))
    fx[0] = fy[0] = 0.0  # the optical axis itself
    u_, v_ = fp.focal_to_field(fx, fy)
    fxb, fyb = fp.field_to_focal(u_, v_)
    assert np.max(np.hypot(fxb - fx, fyb - fy)) < 1e-9  # mm; the brief's requirement
    assert np.max(np.hypot(fxb - fx, fyb - fy)) < 1e-12  # what Newton actually reaches


def test_focal_to_field_jacobian_matches_finite_differences(fp3):
    fx, fy = np.array([0.0, 10.0, -30.0]), np.array([0.0, 25.0, 40.0])
    jac = fp3.focal_to_field_jacobian(fx, fy)
    h = 1e-4
    for j, (ex, ey) in enumerate(((h, 0.0), (0.0, h))):
        up, vp = fp3.focal_to_field(fx + ex, fy + ey)
        um, vm = fp3.focal_to_field(fx - ex, fy - ey)
        np.testing.assert_allclose(jac[:, 0, j], (up - um) / (2 * h), rtol=1e-7, atol=1e-11)
        np.testing.assert_allclose(jac[:, 1, j], (vp - vm) / (2 * h), rtol=1e-7, atol=1e-11)


def test_default_distortion_is_lsst_like_at_the_corner(fp3):
    # fractional radial distortion theta/(s r) - 1 at the focal-plane corner = 0.3 %
    r_c = fp3._corner_radius_mm()
    u_, v_ = fp3.focal_to_field(r_c / math.sqrt(2), r_c / math.sqrt(2))
    frac = math.hypot(u_, v_) * 3600.0 / (fp3.plate_scale_arcsec_per_mm * r_c) - 1.0
    assert frac == pytest.approx(DEFAULT_EDGE_DISTORTION, rel=1e-12)
    # ... which is 2.7" at the corner of this 3x3 x 2k camera: easily measurable
    assert frac * math.hypot(u_, v_) * 3600.0 / (1 + frac) == pytest.approx(2.65, abs=0.05)


def test_placement_errors_have_requested_sigma():
    n = 30  # 900 detectors: relative error of a sample sigma is 1/sqrt(2N) = 2.4 %
    fp = make_focal_plane(n, n, (64, 64), placement_sigma_um=5.0,
                          rotation_sigma_arcsec=20.0, rng=5)
    det = np.arange(fp.n_detectors)
    # measured through the methods: true minus nominal position of the detector centre
    fx, fy = fp.pixel_to_focal(det, 31.5, 31.5)
    nx_, ny_ = fp.nominal_pixel_to_focal(det, 31.5, 31.5)
    shifts_um = np.concatenate([fx - nx_, fy - ny_]) * 1e3
    tol = 4.0 / math.sqrt(2 * shifts_um.size)  # 4 sigma
    assert np.std(shifts_um) == pytest.approx(5.0, rel=tol)
    assert abs(np.mean(shifts_um)) < 4 * 5.0 / math.sqrt(shifts_um.size)
    # rotation from the direction of the detector's x axis
    ax, ay = fp.pixel_to_focal(det, 63.0, 31.5)
    bx, by = fp.pixel_to_focal(det, 0.0, 31.5)
    rot_arcsec = np.degrees(np.arctan2(ay - by, ax - bx)) * 3600.0
    tol = 4.0 / math.sqrt(2 * rot_arcsec.size)
    assert np.std(rot_arcsec) == pytest.approx(20.0, rel=tol)
    np.testing.assert_allclose(np.radians(rot_arcsec / 3600.0), fp.rotation_rad, atol=1e-12)


def test_detector_of_finds_the_right_detector():
    rng = np.random.default_rng(7)
    fp = FP_SMALL
    ny, nx = fp.det_shape
    det = rng.integers(0, fp.n_detectors, 2000)
    x = rng.uniform(-0.5, nx - 0.5, det.size)
    y = rng.uniform(-0.5, ny - 0.5, det.size)
    u_, v_ = fp.focal_to_field(*fp.pixel_to_focal(det, x, y))
    found, xf, yf = fp.detector_of(u_, v_)
    np.testing.assert_array_equal(found, det)
    assert np.max(np.hypot(xf - x, yf - y)) < 1e-9
    # the middle of a gap and far outside: -1 with NaN pixels
    gap_x = 0.5 * (fp.pixel_to_focal(0, nx - 0.5, 150)[0] + fp.pixel_to_focal(1, -0.5, 150)[0])
    gu, gv = fp.focal_to_field(gap_x, fp.pixel_to_focal(0, 0, 150)[1])
    d, xx, yy = fp.detector_of([gu, 5.0], [gv, 5.0])
    np.testing.assert_array_equal(d, [-1, -1])
    assert np.all(np.isnan(xx)) and np.all(np.isnan(yy))


def test_corners_centre_and_field_radius(fp3):
    u_, v_ = fp3.detector_corners(np.arange(9))
    assert u_.shape == (9, 4)
    assert np.max(np.hypot(u_, v_)) == pytest.approx(fp3.field_radius_deg, rel=1e-15)
    cu, cv = fp3.detector_center_field(4)
    assert math.hypot(cu, cv) < 1e-4  # central detector sits on the axis (placement only)
    fx, fy = fp3.detector_corners(0, frame="focal")
    np.testing.assert_allclose(fp3.focal_to_pixel(0, fx, fy)[0], [-0.5, 2047.5, 2047.5, -0.5],
                               atol=1e-9)


def test_focal_plane_pickles_and_compares(fp3):
    back = pickle.loads(pickle.dumps(fp3))
    assert back == fp3 and back is not fp3
    assert make_focal_plane(3, 3, (2048, 2048), rng=12) != fp3


# --------------------------------------------------------------- turbulence
def test_turbulence_rms_matches_request(turb_grid, fp3):
    assert turb_grid.rms_mas == pytest.approx(5.0, rel=1e-9)  # measured on the nodes
    rng = np.random.default_rng(0)
    r = fp3.field_radius_deg * np.sqrt(rng.uniform(size=20000))
    phi = rng.uniform(0, 2 * np.pi, r.size)
    du, dv = turb_grid(r * np.cos(phi), r * np.sin(phi))
    rms = math.sqrt(0.5 * np.mean(du**2 + dv**2)) * MAS_PER_DEG
    assert rms == pytest.approx(5.0, rel=0.10)


def test_turbulence_power_spectrum_slope():
    r, l0 = 1.0, 0.5
    turb = make_turbulence(r, rms_mas=5.0, outer_scale_deg=l0, rng=21)
    h = turb.grid_spacing_deg
    # a square inside the field disk, sampled half-way between nodes (so the spline
    # interpolation is part of what is tested)
    n = int(math.sqrt(2) * r / h) - 2
    g = (np.arange(n) - n / 2 + 0.5) * h + 0.5 * h
    uu, vv = np.meshgrid(g, g, indexing="ij")
    du, dv = turb(uu, vv)
    win = np.outer(np.hanning(n), np.hanning(n))
    power = np.abs(np.fft.fft2(du * win)) ** 2 + np.abs(np.fft.fft2(dv * win)) ** 2
    k1 = np.fft.fftfreq(n, d=h)
    kk = np.hypot(k1[:, None], k1[None, :])
    k0 = 1.0 / l0
    # scales below the outer scale, well inside the grid Nyquist (1/2h = 66 cycles/deg)
    edges = np.geomspace(2 * k0, 16.0, 9)
    x, y, w = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (kk >= lo) & (kk < hi)
        x.append(np.log(np.mean(kk[sel] ** 2) + k0**2))
        y.append(np.log(np.mean(power[sel])))
        # independent modes: half of the (hermitian) plane, 2 components, and the 2-D
        # Hann window correlates ~1.5^2 neighbouring modes: var(ln P) = 2.25 / n_modes
        w.append(np.count_nonzero(sel) / 2.25)
    x, y, w = map(np.asarray, (x, y, w))
    design = np.column_stack([np.ones_like(x), x])
    cov = np.linalg.inv(design.T @ (design * w[:, None]))
    coef = cov @ design.T @ (w * y)
    slope_k = 2.0 * coef[1]  # P ∝ (k^2 + k0^2)^(slope/2): slope -> -11/3 for k >> k0
    sigma = 2.0 * math.sqrt(cov[1, 1])
    assert sigma < 0.15  # enough modes for the test to mean something
    assert abs(slope_k - (-11.0 / 3.0)) < 4 * sigma, (slope_k, sigma)


def test_polynomial_turbulence_is_exact_projection(turb_grid, turb_poly, fp3):
    assert turb_poly.polynomial_order == 3
    assert turb_poly.rms_mas == pytest.approx(5.0, rel=1e-9)
    r = fp3.field_radius_deg
    rng = np.random.default_rng(3)
    uu, vv = rng.uniform(-r, r, (2, 3000))
    du, dv = turb_poly(uu, vv)
    design = np.stack([(uu / r) ** (n - j) * (vv / r) ** j
                       for n in range(4) for j in range(n + 1)], -1)
    for comp in (du, dv):
        coef, *_ = np.linalg.lstsq(design, comp, rcond=None)
        assert np.max(np.abs(design @ coef - comp)) * MAS_PER_DEG < 1e-6
    # it is the least-squares projection (on the disk nodes) of the random field drawn
    # from the same seed, up to the rms renormalisation
    gu, gv = np.meshgrid(turb_grid.grid_u_deg, turb_grid.grid_v_deg, indexing="ij")
    disk = gu**2 + gv**2 <= r**2
    gdu, gdv = turb_grid.grid_du_deg[disk], turb_grid.grid_dv_deg[disk]
    nodes = np.stack([(gu[disk] / r) ** (n - j) * (gv[disk] / r) ** j
                      for n in range(4) for j in range(n + 1)], -1)
    proj = np.concatenate([nodes @ np.linalg.lstsq(nodes, c, rcond=None)[0] for c in (gdu, gdv)])
    poly = np.concatenate(turb_poly(gu[disk], gv[disk]))
    assert np.corrcoef(proj, poly)[0, 1] == pytest.approx(1.0, abs=1e-10)


def test_turbulence_jacobian_matches_finite_differences(turb_grid, turb_poly):
    uu, vv = np.array([0.01, -0.1, 0.15]), np.array([0.02, 0.05, -0.12])
    h = 1e-6
    for turb in (turb_grid, turb_poly):
        jac = turb.jacobian(uu, vv)
        for j, (eu, ev) in enumerate(((h, 0.0), (0.0, h))):
            p = np.array(turb(uu + eu, vv + ev))
            m = np.array(turb(uu - eu, vv - ev))
            np.testing.assert_allclose(jac[:, :, j], ((p - m) / (2 * h)).T, rtol=1e-5,
                                       atol=1e-12)


def test_zero_turbulence(fp3):
    zero = make_turbulence(fp3.field_radius_deg, rms_mas=0.0)
    assert zero.is_zero and zero.rms_mas == 0.0
    du, dv = zero([0.0, 0.1], [0.0, -0.1])
    assert np.all(du == 0) and np.all(dv == 0)
    a = TruthWcs(fp3, 2, ra0=10.0, dec0=5.0, rotation_deg=10.0, turbulence=zero)
    b = TruthWcs(fp3, 2, ra0=10.0, dec0=5.0, rotation_deg=10.0)
    np.testing.assert_array_equal(a.pixel_to_world_values(5.0, 7.0), b.pixel_to_world_values(5.0, 7.0))


def test_turbulence_pickles(turb_grid, turb_poly):
    for turb in (turb_grid, turb_poly):
        back = pickle.loads(pickle.dumps(turb))
        assert isinstance(back, TurbulenceField)
        np.testing.assert_array_equal(back(0.05, -0.02), turb(0.05, -0.02))
    assert len(pickle.dumps(turb_grid)) < 2_000_000  # splines are rebuilt, not pickled


# ----------------------------------------------------------------- TruthWcs
@HYP
@given(
    det=st.integers(0, FP_SMALL.n_detectors - 1),
    ra0=st.floats(0.0, 360.0, exclude_max=True),
    dec0=st.floats(-89.9, 89.9),
    rot=st.floats(-180.0, 180.0),
)
def test_truth_wcs_roundtrip(det, ra0, dec0, rot):
    w = TruthWcs(FP_SMALL, det, ra0=ra0, dec0=dec0, rotation_deg=rot, turbulence=TURB_SMALL)
    rng = np.random.default_rng(det)
    x = rng.uniform(-0.5, 399.5, 200)
    y = rng.uniform(-0.5, 299.5, 200)
    ra, dec = w.pixel_to_world_values(x, y)
    assert np.all((ra >= 0) & (ra < 360))
    xb, yb = w.world_to_pixel_values(ra, dec)
    assert np.max(np.hypot(xb - x, yb - y)) * PIX_MAS < 1e-6


def test_truth_wcs_roundtrip_full_chain(fp3, turb_grid):
    # the brief's case: 2k x 2k corner detector, distortion, placement and turbulence
    w = TruthWcs(fp3, 8, ra0=359.95, dec0=-30.0, rotation_deg=33.0, turbulence=turb_grid)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.5, 2047.5, (2, 20000))
    xb, yb = w.world_to_pixel_values(*w.pixel_to_world_values(x, y))
    assert np.max(np.hypot(xb - x, yb - y)) * PIX_MAS < 1e-6


@pytest.mark.parametrize("ra0, dec0, rot", [(150.0, 2.0, 0.0), (359.99, -45.0, 37.0),
                                            (0.01, 89.5, -120.0)])
def test_truth_wcs_equals_astropy_tan_without_distortions(ra0, dec0, rot):
    n = 2
    fp = FocalPlane(n_x=n, n_y=n, det_shape=(1000, 1200), pixel_size_mm=0.01,
                    plate_scale_arcsec_per_mm=20.0, gap_px=30, shift_x_mm=np.zeros(4),
                    shift_y_mm=np.zeros(4), rotation_rad=np.zeros(4), distortion_k3=0.0)
    det = 3
    w = TruthWcs(fp, det, ra0=ra0, dec0=dec0, rotation_deg=rot)
    # boresight pixel of this detector (the focal-plane origin) -> CRPIX (+1: FITS)
    bx, by = fp.focal_to_pixel(det, 0.0, 0.0)
    s = 0.2 / 3600.0
    c, sn = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    peer = WCS(naxis=2)
    peer.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    peer.wcs.crval = [ra0, dec0]
    peer.wcs.crpix = [float(bx) + 1.0, float(by) + 1.0]
    peer.wcs.cd = s * np.array([[-c, sn], [sn, c]])
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-0.5, 1199.5, 3000), rng.uniform(-0.5, 999.5, 3000)
    ra, dec = w.pixel_to_world_values(x, y)
    pra, pdec = peer.wcs_pix2world(x, y, 0)
    assert np.max(sep_mas(ra, dec, pra, pdec)) < 1e-6
    px, py = peer.wcs_world2pix(ra, dec, 0)
    xb, yb = w.world_to_pixel_values(ra, dec)
    assert np.max(np.hypot(px - xb, py - yb)) * PIX_MAS < 1e-6


def test_truth_wcs_ape14_interface(fp3, turb_grid):
    w = TruthWcs(fp3, 5, ra0=45.0, dec0=-20.0, rotation_deg=15.0, turbulence=turb_grid)
    assert w.pixel_n_dim == 2 and w.world_n_dim == 2
    assert w.world_axis_physical_types == ["pos.eq.ra", "pos.eq.dec"]
    assert w.world_axis_units == ["deg", "deg"]
    assert w.pixel_shape == (2048, 2048) and w.array_shape == (2048, 2048)
    assert w.pixel_bounds == [(-0.5, 2047.5), (-0.5, 2047.5)]
    c = w.pixel_to_world([10.0, 2000.0], [20.0, 30.0])
    assert isinstance(c, SkyCoord) and c.frame.name == "icrs"
    ra, dec = w.pixel_to_world_values([10.0, 2000.0], [20.0, 30.0])
    np.testing.assert_array_equal(c.ra.deg, ra)
    # high-level inverse accepts any frame
    x, y = w.world_to_pixel(c.transform_to(Galactic()))
    np.testing.assert_allclose(x, [10.0, 2000.0], atol=1e-7)
    np.testing.assert_allclose(y, [20.0, 30.0], atol=1e-7)
    # scalar input gives 0-d output
    assert np.ndim(w.pixel_to_world_values(1.0, 2.0)[0]) == 0


def test_truth_wcs_pickles(fp3, turb_grid):
    w = TruthWcs(fp3, 0, ra0=200.0, dec0=10.0, rotation_deg=-40.0, turbulence=turb_grid)
    back = pickle.loads(pickle.dumps(w))
    x, y = np.array([0.0, 1000.3, 2047.0]), np.array([5.0, 1500.0, 2047.0])
    np.testing.assert_array_equal(back.pixel_to_world_values(x, y), w.pixel_to_world_values(x, y))
    np.testing.assert_array_equal(back.world_to_pixel_values(200.0, 10.0),
                                  w.world_to_pixel_values(200.0, 10.0))


def test_local_jacobian_matches_finite_differences(fp3, turb_grid):
    w = TruthWcs(fp3, 6, ra0=120.0, dec0=60.0, rotation_deg=70.0, turbulence=turb_grid)
    x, y = np.array([0.0, 1000.0, 2047.0]), np.array([2047.0, 700.0, 3.0])
    jac = w.local_jacobian(x, y)
    assert jac.shape == (3, 2, 2)
    h = 0.05
    for j, (ex, ey) in enumerate(((h, 0.0), (0.0, h))):
        rp, dp = w.pixel_to_world_values(x + ex, y + ey)
        rm, dm = w.pixel_to_world_values(x - ex, y - ey)
        east = (rp - rm) * np.cos(np.radians(0.5 * (dp + dm))) * 3600.0 / (2 * h)
        north = (dp - dm) * 3600.0 / (2 * h)
        np.testing.assert_allclose(jac[:, 0, j], east, rtol=0, atol=1e-9)
        np.testing.assert_allclose(jac[:, 1, j], north, rtol=0, atol=1e-9)
    det = np.linalg.det(jac)
    assert np.all(det < 0)  # sky parity
    assert np.all(np.abs(np.sqrt(-det) - 0.2) < 0.2 * 4 * DEFAULT_EDGE_DISTORTION)


# ------------------------------------------------------------------ TAN-SIP
@pytest.fixture(scope="module")
def sip_case(fp3, turb_poly):
    # corner detector: the largest distortion gradient of the focal plane
    return TruthWcs(fp3, 8, ra0=359.98, dec0=-30.0, rotation_deg=33.0, turbulence=turb_poly)


@pytest.mark.parametrize("order", [3, 4])
def test_fit_tan_sip_accuracy(sip_case, order):
    res = fit_tan_sip(sip_case, sip_order=order)
    assert isinstance(res, TanSipApprox) and res.success and res.reason == ""
    # measured: order 3: max 1.2e-3 mas, rms 1.6e-4 mas, inverse 1.7e-4 mas (AP order 5);
    #           order 4: max 7.5e-5 mas, rms 1e-5 mas, inverse 5e-6 mas (AP order 6)
    assert res.max_error_mas < 1.0
    assert res.rms_error_mas <= res.max_error_mas
    assert res.inverse_max_error_mas < 1.0
    w = res.wcs
    assert list(w.wcs.ctype) == ["RA---TAN-SIP", "DEC--TAN-SIP"]
    # FITS CRPIX is 1-based: the reference pixel is the detector centre (1023.5) + 1
    np.testing.assert_allclose(w.wcs.crpix, [1024.5, 1024.5], atol=1e-6)
    assert w.sip.a_order == order and w.sip.ap_order == order + 2


def test_fit_tan_sip_error_agrees_with_astropy_on_random_points(sip_case):
    res = fit_tan_sip(sip_case, sip_order=3)
    rng = np.random.default_rng(5)
    x, y = rng.uniform(-0.5, 2047.5, (2, 5000))
    tra, tdec = sip_case.pixel_to_world_values(x, y)
    ra, dec = res.wcs.all_pix2world(x, y, 0)
    err = sep_mas(tra, tdec, ra, dec)
    # the dense check grid includes the corners, where the error peaks
    assert err.max() <= 1.05 * res.max_error_mas
    assert err.max() >= 0.3 * res.max_error_mas
    assert math.sqrt(np.mean(err**2)) == pytest.approx(res.rms_error_mas, rel=0.3)
    # iterative astropy inverse of the exported WCS agrees with the truth inverse
    px, py = res.wcs.all_world2pix(tra, tdec, 0, tolerance=1e-10)
    assert np.max(np.hypot(px - x, py - y)) * PIX_MAS < 1.05 * res.max_error_mas
    # and the FITS header round trip (relax=True for SIP) loses nothing measurable
    back = WCS(res.wcs.to_header(relax=True))
    rb, db = back.all_pix2world(x, y, 0)
    assert np.max(sep_mas(ra, dec, rb, db)) < 1e-3


def test_fit_tan_sip_with_full_turbulence_reports_the_unmodelled_part(fp3, turb_grid):
    w = TruthWcs(fp3, 8, ra0=10.0, dec0=-30.0, rotation_deg=33.0, turbulence=turb_grid)
    res = fit_tan_sip(w, sip_order=4)
    # a von Kármán field has power on scales a quartic cannot follow: a few mas left,
    # bounded by the field's own amplitude
    assert 0.05 < res.rms_error_mas < 2 * turb_grid.rms_mas


def test_fit_tan_sip_versus_astropy_fit_wcs_from_points(sip_case):
    res = fit_tan_sip(sip_case, sip_order=3, n_grid=20)
    gx, gy = np.meshgrid(np.linspace(-0.5, 2047.5, 20), np.linspace(-0.5, 2047.5, 20))
    ra, dec = sip_case.pixel_to_world_values(gx.ravel(), gy.ravel())
    peer = fit_wcs_from_points((gx.ravel(), gy.ravel()), SkyCoord(ra, dec, unit="deg"),
                               proj_point="center", projection="TAN", sip_degree=3)
    rng = np.random.default_rng(8)
    x, y = rng.uniform(-0.5, 2047.5, (2, 3000))
    tra, tdec = sip_case.pixel_to_world_values(x, y)
    ours = sep_mas(tra, tdec, *res.wcs.all_pix2world(x, y, 0)).max()
    theirs = sep_mas(tra, tdec, *peer.all_pix2world(x, y, 0)).max()
    # both sub-mas; astropy's nonlinear fit of CRPIX + SIP stops at ~1 mas (measured
    # 1.3 mas), the linear least-squares fit about a fixed tangent point is exact to µas
    assert theirs < 5.0
    assert ours < 1.0 and ours <= theirs


# -------------------------------------------------------- propagate_to_epoch
def _stars(n, seed):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-0.999, 0.999, n)))
    pmra = rng.normal(0, 200.0, n)
    pmdec = rng.normal(0, 200.0, n)
    pmra[:3] = [5000.0, -10300.0, 0.0]  # include Barnard's-star-like motions
    pmdec[:3] = [-3000.0, 0.0, 8000.0]
    # tangential speed 4.74 mu/plx km/s <= 474 km/s: physical, and below the speed at
    # which ERFA's pmsafe overrides the distance (with an ErfaWarning)
    plx = np.maximum(rng.uniform(0.1, 50.0, n), np.hypot(pmra, pmdec) / 100.0)
    return ra, dec, pmra, pmdec, plx


def test_proper_motion_agrees_with_astropy():
    ra, dec, pmra, pmdec, plx = _stars(500, 1)
    epoch, mjd = 57388.0, 57388.0 + 3652.5  # 10 yr
    c = SkyCoord(ra=ra * u.deg, dec=dec * u.deg, pm_ra_cosdec=pmra * u.mas / u.yr,
                 pm_dec=pmdec * u.mas / u.yr, distance=Distance(parallax=plx * u.mas),
                 obstime=Time(epoch, format="mjd", scale="tai"), frame="icrs")
    moved = c.apply_space_motion(new_obstime=Time(mjd, format="mjd", scale="tai"))
    r2, d2 = propagate_to_epoch(ra, dec, pmra, pmdec, 0.0, epoch_mjd=epoch, mjd=mjd)
    assert np.max(sep_mas(r2, d2, moved.ra.deg, moved.dec.deg)) < 0.05
    # and the motion really happened (not a no-op)
    assert np.max(sep_mas(r2, d2, ra, dec)) > 1e5


def test_parallax_agrees_with_astropy_earth_ephemeris():
    ra, dec, pmra, pmdec, plx = _stars(200, 2)
    epoch = 57388.0
    mjd = epoch + np.linspace(-2000.0, 3000.0, ra.size)
    r_pm, d_pm = propagate_to_epoch(ra, dec, pmra, pmdec, 0.0, epoch_mjd=epoch, mjd=mjd)
    r_all, d_all = propagate_to_epoch(ra, dec, pmra, pmdec, plx, epoch_mjd=epoch, mjd=mjd)
    # geometric reference: direction of (star - Earth) with astropy's built-in ephemeris
    earth = get_body_barycentric("earth", Time(mjd, format="mjd", scale="tai"))
    e_au = earth.xyz.to_value(u.au).T
    a, d = np.radians(r_pm), np.radians(d_pm)
    p = np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], -1)
    q = p / np.radians(plx / 3.6e6)[:, None] - e_au  # in au
    r_ref = np.degrees(np.arctan2(q[:, 1], q[:, 0])) % 360.0
    d_ref = np.degrees(np.arctan2(q[:, 2], np.hypot(q[:, 0], q[:, 1])))
    assert np.max(sep_mas(r_all, d_all, r_ref, d_ref)) < 0.1
    shift = sep_mas(r_all, d_all, r_pm, d_pm)
    assert np.all(shift <= 1.02 * plx) and np.max(shift / plx) > 0.9  # |E| ≈ 1 au


def test_propagate_broadcasts_and_is_identity_at_epoch():
    r, d = propagate_to_epoch(np.array([10.0, 20.0]), 30.0, 100.0, -50.0, 0.0,
                              epoch_mjd=60000.0, mjd=[[60000.0], [60365.25]])
    assert r.shape == (2, 2)
    np.testing.assert_allclose(r[0], [10.0, 20.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(d[0], 30.0, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, name", [
    (dict(n_x=0), "n_x"),
    (dict(n_y=1.5), "n_y"),
    (dict(det_shape=(10,)), "det_shape"),
    (dict(pixel_scale_arcsec=-0.2), "pixel_scale_arcsec"),
    (dict(placement_sigma_um=-1.0), "placement_sigma_um"),
    (dict(rotation_sigma_arcsec=np.nan), "rotation_sigma_arcsec"),
    (dict(gap_px=-5), "gap_px"),
    (dict(distortion_k3=-1.0), "distortion_k3"),
])
def test_make_focal_plane_bad_input(kwargs, name):
    args = dict(n_x=2, n_y=2, det_shape=(100, 100))
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=name):
        make_focal_plane(args.pop("n_x"), args.pop("n_y"), args.pop("det_shape"), **args)


def test_focal_plane_field_validation():
    with pytest.raises(InvalidInputError, match="shift_x_mm"):
        FocalPlane(n_x=2, n_y=1, det_shape=(10, 10), pixel_size_mm=0.01,
                   plate_scale_arcsec_per_mm=20.0, gap_px=0, shift_x_mm=np.zeros(3),
                   shift_y_mm=np.zeros(2), rotation_rad=np.zeros(2), distortion_k3=0.0)
    with pytest.raises(InvalidInputError, match="det"):
        FP_SMALL.pixel_to_focal(FP_SMALL.n_detectors, 0.0, 0.0)
    with pytest.raises(InvalidInputError, match="det"):
        FP_SMALL.pixel_to_focal(0.5, 0.0, 0.0)
    with pytest.raises(InvalidInputError, match="frame"):
        FP_SMALL.detector_corners(0, frame="sky")


@pytest.mark.parametrize("kwargs, name", [
    (dict(field_radius_deg=0.0), "field_radius_deg"),
    (dict(rms_mas=-1.0), "rms_mas"),
    (dict(outer_scale_deg=0.0), "outer_scale_deg"),
    (dict(polynomial_order=0), "polynomial_order"),
    (dict(polynomial_order=2.0), "polynomial_order"),
    (dict(grid_spacing_deg=-1.0), "grid_spacing_deg"),
])
def test_make_turbulence_bad_input(kwargs, name):
    args = dict(field_radius_deg=0.3)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=name):
        make_turbulence(args.pop("field_radius_deg"), **args)


@pytest.mark.parametrize("kwargs, name", [
    (dict(focal_plane="fp"), "focal_plane"),
    (dict(detector=99), "det"),
    (dict(dec0=91.0), "dec0"),
    (dict(ra0=np.inf), "ra0"),
    (dict(rotation_deg="north"), "rotation_deg"),
    (dict(turbulence=5.0), "turbulence"),
])
def test_truth_wcs_bad_input(kwargs, name):
    args = dict(focal_plane=FP_SMALL, detector=0, ra0=1.0, dec0=2.0, rotation_deg=0.0)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=name):
        TruthWcs(args.pop("focal_plane"), args.pop("detector"), **args)


@pytest.mark.parametrize("kwargs, name", [
    (dict(sip_order=1), "sip_order"),
    (dict(sip_order=10), "sip_order"),
    (dict(n_grid=3), "n_grid"),
    (dict(inverse_order=0), "inverse_order"),
    (dict(inverse_order=12), "inverse_order"),
])
def test_fit_tan_sip_bad_input(kwargs, name):
    w = TruthWcs(FP_SMALL, 0, ra0=1.0, dec0=2.0, rotation_deg=0.0)
    with pytest.raises(InvalidInputError, match=name):
        fit_tan_sip(w, **kwargs)
    with pytest.raises(InvalidInputError, match="truth_wcs"):
        fit_tan_sip("not a wcs")


@pytest.mark.parametrize("kwargs, name", [
    (dict(dec=95.0), "dec"),
    (dict(parallax=-1.0), "parallax"),
    (dict(pmra=np.nan), "pmra"),
    (dict(mjd=np.inf), "mjd"),
    (dict(ra=np.zeros(3), dec=np.zeros(2)), "broadcast"),
])
def test_propagate_bad_input(kwargs, name):
    args = dict(ra=1.0, dec=2.0, pmra=0.0, pmdec=0.0, parallax=1.0)
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=name):
        propagate_to_epoch(args["ra"], args["dec"], args["pmra"], args["pmdec"],
                           args["parallax"], epoch_mjd=57388.0, mjd=args.get("mjd", 58000.0))


def test_non_finite_coordinates_give_nan_silently(fp3, turb_grid):
    # filterwarnings = error: no RuntimeWarning may escape from NaN/inf arithmetic
    w = TruthWcs(fp3, 1, ra0=10.0, dec0=20.0, rotation_deg=5.0, turbulence=turb_grid)
    ra, dec = w.pixel_to_world_values([np.nan, 1.0], [1.0, np.inf])
    assert np.all(np.isnan(ra)) and np.all(np.isnan(dec))
    # NaN input and a point on the far hemisphere of the boresight
    x, y = w.world_to_pixel_values([np.nan, 190.0, 10.0], [20.0, -20.0, 20.0])
    assert np.all(np.isnan(x[:2])) and np.all(np.isfinite(x[2:]))
    assert np.all(np.isnan(w.local_jacobian(np.nan, 1.0)))
    det, px, py = fp3.detector_of([np.nan, 3.0], [0.0, 0.0])
    np.testing.assert_array_equal(det, [-1, -1])
