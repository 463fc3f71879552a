"""Simulator self-consistency against its own truth (the foundation issue's acceptance).

Tolerances come from the noise: a variance ratio estimated from N pixels has standard
error sqrt(2/N); a mean pull over N stars has standard error 1/sqrt(N); an rms pull
has standard error 1/sqrt(2N).
"""

import math
import pickle

import galsim
import numpy as np
import pytest
from astropy.table import QTable

import lsstdrp.sim as sim
from lsstdrp import InvalidInputError
from lsstdrp.core import Exposure, MaskPlane, Psf


@pytest.fixture(scope="module")
def tiny():
    return sim.make_survey("tiny", rng=7)


def _isolated(truth, *, radius=15.0, min_flux=0.0, kinds=("star",), exclusion=None):
    """Indices of sources with no neighbour brighter than 0.1% of them within
    ``exclusion`` pixels (default 2 * radius) and at least ``radius`` from the edges."""
    exclusion = 2 * radius if exclusion is None else exclusion
    src = truth.sources
    x, y, f = (np.asarray(src[c], float) for c in ("x", "y", "flux"))
    keep = []
    ny, nx = truth.noiseless.shape if truth.noiseless is not None else (10**9, 10**9)
    for i in range(len(src)):
        if str(src["kind"][i]) not in kinds or f[i] < min_flux or not src["in_image"][i]:
            continue
        if not (radius <= x[i] <= nx - 1 - radius and radius <= y[i] <= ny - 1 - radius):
            continue
        d = np.hypot(x - x[i], y - y[i])
        d[i] = np.inf
        if np.any((d < exclusion) & (f > 1e-3 * f[i])):
            continue
        if truth.trail_mask is not None and truth.trail_mask[
            int(y[i]) - 8:int(y[i]) + 9, int(x[i]) - 8:int(x[i]) + 9
        ].any():
            continue
        keep.append(i)
    return np.array(keep, dtype=int)


def test_structure_and_types(tiny):
    cfg = tiny.config
    assert cfg.n_visits >= 2 and cfg.n_detectors >= 4
    assert len(tiny.keys()) == cfg.n_visits * cfg.n_detectors
    key = tiny.keys()[0]
    exp = tiny.exposure(*key)
    assert isinstance(exp, Exposure)
    assert exp.image.dtype == np.float32 and exp.variance.dtype == np.float32 and exp.mask.dtype == np.uint32
    assert exp.shape == cfg.det_shape
    assert exp.band in cfg.bands and exp.visit == key[0] and exp.detector == key[1]
    assert isinstance(exp.psf, Psf)
    truth = tiny.truth[key]
    assert truth.noiseless.shape == cfg.det_shape and truth.background.shape == cfg.det_shape
    assert {"id", "kind", "x", "y", "flux", "mag", "temperature", "dcr_mas", "in_image"} <= set(truth.sources.colnames)
    assert isinstance(tiny.refcat_astrometric, QTable) and len(tiny.refcat_astrometric) > 0
    assert np.all(np.asarray(tiny.refcat_astrometric["epoch"].value) == 57388.0)
    assert len(tiny.refcat_photometric) > 0 and f"{cfg.bands[0]}_flux" in tiny.refcat_photometric.colnames
    kinds = set(np.asarray(tiny.objects["kind"]))
    assert {"star", "galaxy", "transient"} <= kinds
    assert len(tiny.sso) == cfg.n_sso
    assert "tiny" not in repr(tiny) and "visits" in repr(tiny)


def test_deterministic_for_a_seed():
    a = sim.make_survey("tiny", rng=11)
    b = sim.make_survey("tiny", rng=11)
    c = sim.make_survey("tiny", rng=12)
    k = a.keys()[1]
    np.testing.assert_array_equal(a.exposure(*k).image, b.exposure(*k).image)
    assert not np.array_equal(a.exposure(*k).image, c.exposure(*k).image)
    # rendering order does not matter: the noise stream is keyed by (visit, detector)
    d = sim.make_survey("tiny", rng=11, render=False)
    np.testing.assert_array_equal(d.exposure(*k).image, a.exposure(*k).image)


def test_blank_sky_matches_variance_plane(tiny, record_property):
    """(image - truth)/sqrt(variance) over blank sky has unit variance: 1 +- 0.02."""
    z = []
    for key in tiny.keys():
        exp, truth = tiny.exposure(*key), tiny.truth[key]
        obj = truth.noiseless.astype(np.float64) - truth.background
        blank = (obj < 1e-3 * np.sqrt(exp.variance)) & (exp.mask == 0)
        z.append(((exp.image - truth.noiseless) / np.sqrt(exp.variance))[blank])
        # the variance plane is the Poisson expectation plus read noise
        np.testing.assert_allclose(exp.variance, truth.noiseless + tiny.config.read_noise**2, rtol=1e-5)
    z = np.concatenate(z)
    ratio = np.var(z)
    record_property("variance_ratio", float(ratio))
    assert z.size > 50_000
    assert abs(ratio - 1.0) < 0.02, ratio
    assert abs(np.mean(z)) < 5 / math.sqrt(z.size)
    # ... and a user's version: blank pixels about the true background vs the plane
    key = tiny.keys()[0]
    exp, truth = tiny.exposure(*key), tiny.truth[key]
    blank = ((truth.noiseless - truth.background) < 1e-3) & (exp.mask == 0)
    r = np.var(exp.image[blank] - truth.background[blank]) / np.mean(exp.variance[blank])
    assert abs(r - 1) < 5 * math.sqrt(2 / blank.sum())


def test_aperture_flux_of_isolated_stars_matches_truth(tiny, record_property):
    """Aperture flux (photutils, a peer) / truth encircled energy = truth flux within noise."""
    photutils = pytest.importorskip("photutils.aperture")
    pulls = []
    r_ap = 12.0
    for key in tiny.keys():
        exp, truth = tiny.exposure(*key), tiny.truth[key]
        idx = _isolated(truth, radius=13.0, min_flux=500.0)
        for i in idx:
            s = truth.sources[i]
            x, y, flux = float(s["x"]), float(s["y"]), float(s["flux"])
            if (exp.mask[int(y) - 13:int(y) + 14, int(x) - 13:int(x) + 14] != 0).any():
                continue
            ap = photutils.CircularAperture((x, y), r_ap)
            data = exp.image - truth.background
            phot = photutils.aperture_photometry(data, ap, error=np.sqrt(exp.variance))
            # encircled energy of the true (chromatic, local) PSF inside the same aperture
            n = 129
            big = truth.psf.draw(x, y, temperature=float(s["temperature"]), tilt=float(s["tilt"]), shape=n)
            ix, iy = int(round(x)), int(round(y))
            ee = float(photutils.aperture_photometry(big, photutils.CircularAperture(
                (n // 2 + x - ix, n // 2 + y - iy), r_ap))["aperture_sum"][0])
            # the renderer's stamp holds the profile out to stamp_size // 2 only
            pulls.append((float(phot["aperture_sum"][0]) - flux * ee) / float(phot["aperture_sum_err"][0]))
    pulls = np.asarray(pulls)
    record_property("pull_mean_std_n", (float(pulls.mean()), float(pulls.std()), pulls.size))
    assert pulls.size >= 30
    assert abs(pulls.mean()) < 3 / math.sqrt(pulls.size), (pulls.mean(), pulls.size)
    assert abs(pulls.std() - 1) < 4 / math.sqrt(2 * pulls.size), (pulls.std(), pulls.size)


def test_stamp_truncation_loses_little_flux(tiny):
    """The stamp a point source is rendered on keeps >= 99% of its flux (stated limit)."""
    key = tiny.keys()[0]
    truth = tiny.truth[key]
    s = truth.sources[np.argmax(np.asarray(truth.sources["flux"]))]
    n = tiny.config.stamp_size
    small = truth.psf.draw(64.0, 64.0, temperature=float(s["temperature"]), shape=n).sum()
    assert small > 0.99


def test_truth_wcs_maps_reference_stars_onto_rendered_positions(tiny, record_property):
    """Refcat stars propagated to the epoch, with DCR, land where the truth WCS says (<1 mas)."""
    errs = []
    ref_ids = set(np.asarray(tiny.refcat_astrometric["id"]).tolist())
    obj = tiny.objects
    by_id = {int(i): k for k, i in enumerate(np.asarray(obj["id"]))}
    for key in tiny.keys():
        truth = tiny.truth[key]
        img = truth.noiseless.astype(np.float64) - truth.background
        q = np.deg2rad(float(tiny.visits["parallactic_deg"][tiny.visits["visit"] == key[0]][0]))
        for i in _isolated(truth, radius=12.0, min_flux=500.0):
            s = truth.sources[i]
            if int(s["id"]) not in ref_ids:
                continue
            o = obj[by_id[int(s["id"])]]
            ra, dec = sim.propagate_to_epoch(o["ra"], o["dec"], o["pmra"], o["pmdec"], o["parallax"],
                                             epoch_mjd=57388.0, mjd=truth.mjd)
            dcr_deg = float(s["dcr_mas"]) / 3.6e6
            ra = float(ra) + dcr_deg * math.sin(q) / math.cos(math.radians(float(dec)))
            dec = float(dec) + dcr_deg * math.cos(q)
            xp, yp = truth.wcs.world_to_pixel_values(ra, dec)
            ix, iy = int(round(float(xp))), int(round(float(yp)))
            stamp = galsim.ImageD(np.ascontiguousarray(img[iy - 12:iy + 13, ix - 12:ix + 13]))
            mom = galsim.hsm.FindAdaptiveMom(stamp)
            # HSM centroid is 1-based in the stamp's own bounds
            xm = mom.moments_centroid.x - 1 + ix - 12
            ym = mom.moments_centroid.y - 1 + iy - 12
            scale = tiny.config.pixel_scale_arcsec * 1000.0
            errs.append(math.hypot(xm - float(xp), ym - float(yp)) * scale)
    errs = np.asarray(errs)
    record_property("max_mas_n", (float(errs.max()), errs.size))
    assert errs.size >= 5
    assert errs.max() < 1.0, errs.max()


def test_tan_sip_error_is_reported_and_true(tiny):
    rng = np.random.default_rng(3)
    for key in tiny.keys()[:3]:
        truth = tiny.truth[key]
        ny, nx = tiny.config.det_shape
        x, y = rng.uniform(0, nx - 1, 200), rng.uniform(0, ny - 1, 200)
        ra_t, dec_t = truth.wcs.pixel_to_world_values(x, y)
        ra_a, dec_a = truth.tan_sip.wcs.all_pix2world(x, y, 0)
        sep = np.hypot((ra_a - ra_t) * np.cos(np.deg2rad(dec_t)), dec_a - dec_t) * 3.6e6
        assert sep.max() <= truth.tan_sip.max_error_mas * 1.05 + 1e-3
        # the fit absorbs distortion and the low-order part of the turbulence, so its
        # residual cannot exceed the turbulence field itself (per-axis rms -> 2-D rms)
        turb = tiny._visit_models[key[0]].turbulence
        assert truth.tan_sip.rms_error_mas <= math.sqrt(2) * turb.rms_mas * 1.1
    # with the turbulence kept inside a low-order polynomial family, TAN-SIP is exact
    poly = sim.make_survey("tiny", rng=2, render=False, turbulence_polynomial_order=3)
    assert max(poly.truth[k].tan_sip.max_error_mas for k in poly.keys()) < 0.05


def test_catalog_mode_agrees_with_rendered_truth(record_property):
    rend = sim.make_survey("tiny", rng=5)
    cat = sim.make_survey("tiny", rng=5, render=False)
    assert not cat.exposures and cat.catalogs
    worst = 0.0
    for key in rend.keys():
        a = rend.truth[key].sources
        c = cat.catalogs[key]
        pos = {int(i): (float(x), float(y)) for i, x, y in zip(a["id"], a["x"], a["y"])}
        for oid, x, y in zip(c["object_id"], c["x_true"].value, c["y_true"].value):
            xr, yr = pos[int(oid)]
            worst = max(worst, math.hypot(x - xr, y - yr))
    record_property("worst_mas", worst * rend.config.pixel_scale_arcsec * 1000)
    assert worst * rend.config.pixel_scale_arcsec * 1000 < 1.0
    allc = cat.all_catalogs()
    assert {"visit", "detector", "x", "y", "x_err", "y_err", "psf_flux", "psf_flux_err"} <= set(allc.colnames)
    assert len(allc) == sum(len(c) for c in cat.catalogs.values())
    pull = (allc["x"] - allc["x_true"]) / allc["x_err"]
    assert abs(np.std(pull.value) - 1) < 5 / math.sqrt(2 * len(allc))


def _psf_fit(data, var, model_fn, x0, y0, f0):
    from scipy.optimize import least_squares

    def resid(p):
        return ((data - model_fn(p[1], p[2]) * p[0]) / np.sqrt(var)).ravel()

    r = least_squares(resid, [f0, x0, y0], x_scale=[max(f0, 1.0) * 0.1, 0.1, 0.1], method="lm")
    return r.x


def test_rendered_positions_scatter_with_catalog_errors(record_property):
    """PSF-fit positions on rendered noisy pixels scatter about the noise-free truth with
    the catalog-level errors: pull rms 1 +- 0.05 (several noise realisations)."""
    cat = sim.make_survey("tiny", rng=5, render=False)
    pulls = []
    for key in cat.keys():
        truth_ = sim.render_exposure(cat, *key, rng=0)[1]
        c = cat.catalogs[key]
        errs = {int(o): (float(ex), float(ey)) for o, ex, ey in zip(c["object_id"], c["x_err"].value, c["y_err"].value)}
        idx = [i for i in _isolated(truth_, radius=10.0, min_flux=1500.0, kinds=("star",))
               if int(truth_.sources["id"][i]) in errs]
        for i in idx[:12]:
            s = truth_.sources[i]
            x, y, flux = float(s["x"]), float(s["y"]), float(s["flux"])
            ix, iy = int(round(x)), int(round(y))
            sl = (slice(iy - 8, iy + 9), slice(ix - 8, ix + 9))
            bkg = truth_.background[sl].astype(np.float64)
            var = truth_.noiseless[sl].astype(np.float64) + cat.config.read_noise**2
            temp, tilt = float(s["temperature"]), float(s["tilt"])
            prof = truth_.psf.sky_profile(x, y, temperature=temp, tilt=tilt)
            jw = truth_.psf.galsim_wcs(x, y)

            def model(xx, yy):
                return prof.drawImage(nx=17, ny=17, wcs=jw, offset=(xx - ix, yy - iy), dtype=np.float64).array

            noise_rng = np.random.default_rng(hash(key) % 2**32 + i)
            for _ in range(8):
                expect = bkg + flux * model(x, y)
                data = noise_rng.poisson(expect) + noise_rng.normal(0, cat.config.read_noise, expect.shape) - bkg
                f, xf, yf = _psf_fit(data, var, model, x, y, flux)
                ex, ey = errs[int(s["id"])]
                pulls += [(xf - x) / ex, (yf - y) / ey]
    pulls = np.asarray(pulls)
    assert pulls.size >= 400
    rms = math.sqrt(np.mean(pulls**2))
    record_property("pull_rms_n", (rms, pulls.size))
    assert abs(rms - 1) < 0.05, (rms, pulls.size)


@pytest.fixture(scope="module")
def chroma():
    """A survey built to isolate the chromatic laws: fine pixels, no optics, no spatial
    PSF variation, high airmass for a large DCR."""
    return sim.make_survey(
        "tiny", rng=21, pixel_scale_arcsec=0.1, det_shape=(512, 512), n_det_x=1, n_det_y=1, n_visits=1,
        bands=("g",), optics_fwhm=0.0, psf_variation=0.0, psf_shape_amplitude=0.0,
        airmass_range=(1.8, 1.8), star_density_arcmin2=60.0, star_mag_range=(17.0, 19.0),
        galaxy_density_arcmin2=0.0, n_bright_stars=0, n_transients=0, n_sso=0, trail_probability=0.0,
        variable_fraction=0.0, turbulence_rms_mas=0.0, stamp_size=61,
    )


def test_psf_size_follows_kolmogorov_law_across_seds(chroma, record_property):
    key = chroma.keys()[0]
    truth = chroma.truth[key]
    img = truth.noiseless.astype(np.float64) - truth.background
    sig, lam = [], []
    for i in _isolated(truth, radius=15.0, min_flux=100.0, exclusion=50.0):
        s = truth.sources[i]
        ix, iy = int(round(float(s["x"]))), int(round(float(s["y"])))
        m = galsim.hsm.FindAdaptiveMom(galsim.ImageD(np.ascontiguousarray(img[iy - 15:iy + 16, ix - 15:ix + 16])))
        # sizes in arcsec: the optical distortion changes the local pixel scale
        area = abs(np.linalg.det(np.asarray(truth.wcs.local_jacobian(float(s["x"]), float(s["y"])), float)))
        sig.append(m.moments_sigma * math.sqrt(area))
        lam.append(float(s["wave_eff"]))
    sig, lam = np.log(sig), np.log(lam)
    assert sig.size >= 5 and np.ptp(lam) > 0.02
    (slope, _), cov = np.polyfit(lam, sig, 1, cov=True)
    stderr = math.sqrt(cov[0, 0])
    record_property("slope_stderr_n", (float(slope), stderr, sig.size))
    # regression error from the residual scatter (neighbours' wings, sampling), plus the
    # pixel-integration bias of adaptive sizes (~1/(12 sigma^2) relative, < 0.001 here)
    assert stderr < 0.015, stderr  # the lever arm in wavelength makes the test meaningful
    assert abs(slope - (-0.2)) < 3 * stderr + 0.001, (slope, stderr)


def test_dcr_matches_refraction_integral(chroma, record_property):
    """Rendered centroid shifts between SEDs equal the galsim refraction integral over
    bandpass x SED (an independent implementation)."""
    from galsim.dcr import get_refraction

    key = chroma.keys()[0]
    truth = chroma.truth[key]
    row = chroma.visits[0]
    z = math.radians(float(row["zenith_deg"]))

    def mean_refr_mas(temp, shift):
        wave, thr = sim.bandpass("g", shift_nm=shift)  # the locally shifted bandpass
        w = sim.sed_photons(wave, temp) * thr
        r = get_refraction(wave, z * galsim.radians, pressure=74.4, temperature=283.15, H2O_pressure=water) * 206264806.2
        return float(np.sum(w * r) / np.sum(w))

    # the simulator's atmosphere: 744 hPa, 10 C, 40 % humidity -> water pressure (kPa)
    water = 0.4 * 6.1078 * 10 ** (7.5 * 10.0 / (237.3 + 10.0)) / 10.0
    img = truth.noiseless.astype(np.float64) - truth.background
    q = math.radians(float(row["parallactic_deg"]))
    meas, pred = [], []
    for i in _isolated(truth, radius=15.0, min_flux=100.0, exclusion=50.0):
        s = truth.sources[i]
        # position without DCR, from the truth WCS
        ra, dec = truth.wcs.pixel_to_world_values(float(s["x"]), float(s["y"]))
        d = float(s["dcr_mas"]) / 3.6e6
        x0, y0 = truth.wcs.world_to_pixel_values(ra - d * math.sin(q) / math.cos(math.radians(dec)), dec - d * math.cos(q))
        ix, iy = int(round(float(s["x"]))), int(round(float(s["y"])))
        m = galsim.hsm.FindAdaptiveMom(galsim.ImageD(np.ascontiguousarray(img[iy - 15:iy + 16, ix - 15:ix + 16])))
        xm, ym = m.moments_centroid.x - 1 + ix - 15, m.moments_centroid.y - 1 + iy - 15
        jac = np.asarray(truth.wcs.local_jacobian(float(s["x"]), float(s["y"])), float)  # arcsec / px
        shift_mas = float(np.hypot(*(jac @ [xm - float(x0), ym - float(y0)]))) * 1000
        meas.append(shift_mas * np.sign(float(s["dcr_mas"])))
        pred.append(mean_refr_mas(float(s["temperature"]), float(truth.psf.bandpass_shift(float(s["x"]), float(s["y"])))))
    meas, pred = np.asarray(meas), np.asarray(pred)
    assert meas.size >= 5
    # DCR is relative to the band's reference wavelength: compare differences between SEDs
    dm, dp = meas - meas.mean(), pred - pred.mean()
    record_property("max_diff_mas_lever_n", (float(np.max(np.abs(dm - dp))), float(np.ptp(dp)), meas.size))
    assert np.ptp(dp) > 5.0  # a real lever arm (mas)
    assert np.max(np.abs(dm - dp)) < max(1.0, 0.02 * np.ptp(dp)), np.max(np.abs(dm - dp))


def test_truth_psf_protocol_and_chromaticity(tiny):
    key = tiny.keys()[0]
    psf = tiny.truth[key].psf
    k_blue = psf.kernel_image(64, 64, color=0.0)
    k_red = psf.kernel_image(64, 64, color=2.0)
    assert k_blue.shape[0] % 2 == 1 and abs(k_blue.sum() - 1) < 1e-12
    ixx_b, iyy_b, _ = psf.moments(64, 64, color=0.0)
    ixx_r, iyy_r, _ = psf.moments(64, 64, color=2.0)
    assert ixx_b + iyy_b > ixx_r + iyy_r  # bluer is broader (seeing ∝ λ^-0.2)
    st = psf.image(64.3, 63.8)
    assert st.shape == k_blue.shape
    with pytest.raises(InvalidInputError, match="`color`"):
        psf.kernel_image(1, 1, color=np.nan)
    pickle.loads(pickle.dumps(tiny.truth[key].wcs))


def test_saturation_and_trails():
    s = sim.make_survey("tiny", rng=3, n_bright_stars=3, trail_probability=1.0, n_visits=1)
    sat = trails = 0
    for key in s.keys():
        exp, truth = s.exposure(*key), s.truth[key]
        m = (exp.mask & MaskPlane.SAT) != 0
        sat += m.sum()
        if m.any():
            assert exp.image[m].max() <= s.config.saturation_level + 1e-3
        trails += truth.trail_mask.sum()
    assert sat > 0 and trails > 0


def test_variability_and_sso_move():
    s = sim.make_survey("tiny", rng=4, render=False, n_sso=3, n_visits=3, mjd_span_days=0.2)
    ra1, dec1, _ = sim.sso_positions(s.sso, float(s.visits["mjd"][0]))
    ra2, dec2, _ = sim.sso_positions(s.sso, float(s.visits["mjd"][0]) + 0.1)
    rate = np.hypot((ra2 - ra1) * np.cos(np.deg2rad(dec1)), dec2 - dec1) / 0.1  # deg/day
    assert np.all((rate > 0.02) & (rate < 2.0))  # main-belt-like rates
    dm = sim.light_curve_mag_offset(s.objects, 60000.0)
    var = np.asarray(s.objects["var_amp"]) > 0
    assert np.all(np.abs(dm[var]) <= np.asarray(s.objects["var_amp"])[var] + 1e-12)


def test_kepler_propagation_conserves_energy_and_returns():
    rng = np.random.default_rng(0)
    pos = rng.normal(0, 1, (5, 3)) + np.array([2.5, 0, 0])
    r = np.linalg.norm(pos, axis=1)
    t = np.cross([0, 0, 1.0], pos)
    vel = t / np.linalg.norm(t, axis=1)[:, None] * np.sqrt(sim._sky.GM_SUN_AU3_DAY2 / r)[:, None] * 0.95
    p2, v2 = sim.kepler_propagate(pos, vel, np.full(5, 123.4))
    e1 = 0.5 * np.sum(vel**2, 1) - sim._sky.GM_SUN_AU3_DAY2 / r
    e2 = 0.5 * np.sum(v2**2, 1) - sim._sky.GM_SUN_AU3_DAY2 / np.linalg.norm(p2, axis=1)
    np.testing.assert_allclose(e1, e2, rtol=1e-10)
    p3, _ = sim.kepler_propagate(p2, v2, np.full(5, -123.4))
    np.testing.assert_allclose(p3, pos, atol=1e-10)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(n_visits=0), "n_visits"),
        (dict(det_shape=(10, 10)), "det_shape"),
        (dict(bands=("q",)), "bands"),
        (dict(seeing_fwhm_range=(1.0, 0.5)), "seeing_fwhm_range"),
        (dict(stamp_size=32), "stamp_size"),
        (dict(shear=(0.6, 0.0)), "shear"),
        (dict(pixel_scale_arcsec=-1.0), "pixel_scale_arcsec"),
        (dict(trail_probability=2.0), "trail_probability"),
        (dict(nonsense=1), "nonsense"),
    ],
)
def test_invalid_config_names_the_field(overrides, field):
    with pytest.raises(InvalidInputError, match=field):
        sim.make_survey("tiny", rng=0, **overrides)


def test_bad_calls():
    with pytest.raises(InvalidInputError, match="config_or_preset"):
        sim.make_survey("huge")
    with pytest.raises(InvalidInputError, match="config_or_preset"):
        sim.make_survey(3)
    with pytest.raises(TypeError, match="rng"):
        sim.make_survey("tiny", rng="seed")
    s = sim.make_survey("tiny", rng=0, render=False)
    with pytest.raises(InvalidInputError, match="not in this survey"):
        s.exposure(1, 99)
    with pytest.raises(InvalidInputError, match="not in this survey"):
        sim.observe(s, 5, 0)
    with pytest.raises(InvalidInputError, match="render"):
        sim.make_survey("tiny", render="yes")
