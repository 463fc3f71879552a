"""lsstdrp.psf against the simulator's truth PSFs (rendered by GalSim).

Scaled-down version of the issue's acceptance (the full-scale run, >= 500 training
stars with sigma_stat <= 1e-4, is ``python benchmarks/bench_psffit.py``):

- model vs true PSF at reserved star positions, noiseless adaptive moments of both
  kernels (pixel-centred): |mean dT/T| < max(2e-4, 3 sigma_stat) with
  sigma_stat = 2 / sqrt(sum S/N^2 of the training stars) (the issue's bound, which is
  already noise-scaled); |mean de1|, |mean de2| < max(1e-3, 3 x their standard error);
  rms dT/T < 2e-3 x sqrt(500 / N_train) (the issue's rms at 500 stars, scaled as the
  model's statistical error, 1/sqrt(N));
- training-star chi2/dof within 1 +- 0.1;
- chromatic simulation (GalSim stars whose size and shape depend on colour):
  the slope of dT/T against g-i is reduced >= 5x relative to an achromatic fit of the
  same stars.

Stars are the simulator's isolated point sources (no neighbour brighter than 0.2% of
the star within 20 px), so the test measures the PSF model, not the selection.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.table import QTable
from scipy.spatial import cKDTree

from lsstdrp.measure import adaptive_moments
from lsstdrp.psf import fit_psf

sim = pytest.importorskip("lsstdrp.sim")


def _moments(k):
    c = (k.shape[0] - 1) / 2
    r = adaptive_moments(k, c, c, guess_sigma=2.0)
    assert r.flags[0] == 0
    t = r.ixx[0] + r.iyy[0]
    return t, (r.ixx[0] - r.iyy[0]) / t, 2 * r.ixy[0] / t


def _isolated_stars(tr, shape, radius=20.0, ratio=2e-3):
    src = tr.sources
    x, y, f = (np.asarray(src[c], dtype=float) for c in ("x", "y", "flux"))
    tree = cKDTree(np.c_[x, y])
    iso = np.ones(len(src), bool)
    for i, nb in enumerate(tree.query_ball_point(np.c_[x, y], radius)):
        iso[i] = not any(f[j] > ratio * f[i] for j in nb if j != i)
    m = shape - 1
    ok = (np.asarray(src["kind"]) == "star") & np.asarray(src["in_image"]) & iso
    ok &= (x > 3) & (x < m - 3) & (y > 3) & (y < m - 3)
    return src[ok]


@pytest.fixture(scope="module")
def survey():
    return sim.make_survey("tiny", rng=3, star_density_arcmin2=60.0, star_mag_range=(17.0, 20.5),
                           galaxy_density_arcmin2=1.0, n_visits=1, n_bright_stars=0, n_transients=0,
                           n_sso=0, trail_probability=0.0)


@pytest.fixture(scope="module")
def pooled(survey):
    """Per-detector fits of one visit, statistics pooled over the detectors."""
    shape = survey.config.det_shape[0]
    d, snr2, ntrain, chi, dof_used = [], 0.0, 0, [], []
    for key in survey.keys():
        ex, tr = survey.exposure(*key), survey.truth[key]
        st = _isolated_stars(tr, shape)
        reserved = np.random.default_rng(key[1]).random(len(st)) < 0.2
        cat = QTable({"x": np.asarray(st["x"]), "y": np.asarray(st["y"]), "psf_reserved": reserved})
        # the sky is subtracted with the truth background (characterize's job)
        image = ex.image - tr.background.astype(np.float32)
        res = fit_psf(image, ex.variance, cat, mask=ex.mask, spatial_order=1)
        assert res.success, res.reason
        used = np.asarray(res.stars["psf_used"])
        flux = np.asarray(res.stars["flux"].value)
        for i in np.flatnonzero(used):
            k = res.psf.image(cat["x"][i], cat["y"][i], shape=25)
            X, Y = (int(math.floor(v + 0.5)) for v in (cat["x"][i], cat["y"][i]))
            v = ex.variance[Y - 12 : Y + 13, X - 12 : X + 13]
            if v.shape == (25, 25):
                snr2 += flux[i] ** 2 * float(np.sum(k**2 / v))
        ntrain += int(used.sum())
        chi.append(res.chi2_dof * float(res.stars["dof"][used].sum()))
        dof_used.append(float(res.stars["dof"][used].sum()))
        # the truth at each reserved star's own colour (the stars' SEDs differ; the
        # achromatic model is their average)
        gi = np.asarray(sim.color_index(np.asarray(st["temperature"]), "g-i", tilt=np.asarray(st["tilt"])))
        for x, y, c in zip(cat["x"][reserved], cat["y"][reserved], gi[reserved]):
            a, b = _moments(res.psf.kernel_image(x, y)), _moments(tr.psf.kernel_image(x, y, color=c))
            d.append(((a[0] - b[0]) / b[0], a[1] - b[1], a[2] - b[2]))
    return np.array(d), 2.0 / math.sqrt(snr2), ntrain, sum(chi) / sum(dof_used)


def test_reserved_star_sizes_and_shapes(pooled, record_property):
    d, sigma_stat, ntrain, _ = pooled
    n = len(d)
    assert n >= 10 and ntrain >= 40
    mean, se = d.mean(0), d.std(0, ddof=1) / math.sqrt(n)
    rms_t = float(np.sqrt(np.mean(d[:, 0] ** 2)))
    for name, v in (("mean_dT_T", mean[0]), ("mean_de1", mean[1]), ("mean_de2", mean[2]),
                    ("rms_dT_T", rms_t), ("sigma_stat", sigma_stat), ("n_train", ntrain)):
        record_property(name, float(v))
    assert abs(mean[0]) < max(2e-4, 3 * sigma_stat)
    assert abs(mean[1]) < max(1e-3, 3 * se[1]) and abs(mean[2]) < max(1e-3, 3 * se[2])
    assert rms_t < 2e-3 * math.sqrt(500 / ntrain)


def test_training_chi2(pooled, record_property):
    chi2 = pooled[3]
    record_property("chi2_dof", chi2)
    assert abs(chi2 - 1) < 0.1


def _chromatic_field(seed: int, n_side: int = 8, flux: float = 3e5):
    """GalSim stars whose (Gaussian) PSF size and ellipticity depend on the colour c (g-i).

    FWHM = 4.0 px (1 - 0.02 (c - 1)) -- seeing ~ lambda^-0.2 over a broad band gives a
    few % per magnitude of colour -- and e1 = 0.03 + 0.01 (c - 1).
    """
    galsim = pytest.importorskip("galsim")
    rng = np.random.default_rng(seed)
    sp = 34
    shape = (n_side * sp + sp, n_side * sp + sp)
    gy, gx = np.divmod(np.arange(n_side * n_side), n_side)
    x = (gx + 1) * sp + rng.uniform(-0.5, 0.5, gx.size)
    y = (gy + 1) * sp + rng.uniform(-0.5, 0.5, gy.size)
    col = rng.uniform(-0.2, 2.5, gx.size)
    img = np.zeros(shape)
    for xi, yi, c in zip(x, y, col):
        X, Y = int(math.floor(xi + 0.5)), int(math.floor(yi + 0.5))
        img[Y - 16 : Y + 17, X - 16 : X + 17] += _chromatic_profile(c, flux).drawImage(
            nx=33, ny=33, scale=1.0, offset=(xi - X, yi - Y)).array
    var = 50.0 + img
    img = img + rng.normal(0.0, np.sqrt(var))
    return img, var, x, y, col


def _chromatic_profile(c: float, flux: float = 1.0):
    import galsim

    return galsim.Gaussian(fwhm=4.0 * (1 - 0.02 * (c - 1)), flux=flux).shear(e1=0.03 + 0.01 * (c - 1), e2=0.0)


def test_chromatic_slope_reduced(record_property):
    """A chromatic fit removes the colour dependence of the size residual (>= 5x)."""
    img, var, x, y, col = _chromatic_field(5)
    cat = QTable({"x": x, "y": y, "gi": col})
    chrom = fit_psf(img, var, cat, spatial_order=0, color_column="gi", color_name="g-i", color_order=1, size=23)
    achrom = fit_psf(img, var, cat, spatial_order=0, size=23)
    assert chrom.success and achrom.success and chrom.psf.color_name == "g-i" and achrom.psf.color_name is None
    cs = np.linspace(0.0, 2.3, 5)
    truth = np.array([_moments(_chromatic_profile(c).drawImage(nx=23, ny=23, scale=1.0).array)[0] for c in cs])
    slopes = {}
    for name, res in (("chromatic", chrom), ("achromatic", achrom)):
        t = np.array([_moments(res.psf.kernel_image(150.0, 150.0, color=c))[0] for c in cs])
        slopes[name] = float(np.polyfit(cs, (t - truth) / truth, 1)[0])
        record_property(f"slope_dT_T_per_mag_{name}", slopes[name])
    record_property("slope_reduction", abs(slopes["achromatic"] / slopes["chromatic"]))
    assert abs(slopes["achromatic"]) > 5 * abs(slopes["chromatic"])
