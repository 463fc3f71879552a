"""Benchmark and full-scale acceptance of ``lsstdrp.psf.fit_psf`` against PIFF.

Both sides fit the same stars of one simulated detector (GalSim truth PSF, spatially
varying) on the same background-subtracted stamps with the same per-pixel weights:

- lsstdrp: ``fit_psf(..., model="pixel", spatial_order=2)`` (quintic B-spline pixel
  grid, polynomial coefficients, outlier rejection);
- PIFF 1.7: ``SimplePSF(PixelGrid(scale=1, size=S), BasisPolynomial(order=2),
  outliers=ChisqOutliers(nsigma=4))`` on ``piff.Star`` objects built from the stamps.

Run the timing with ``python benchmarks/run.py --only psffit``; run
``python benchmarks/bench_psffit.py`` for the issue's full-scale acceptance numbers
(>= 500 training stars at S/N >= 100 pooled over the detectors of a visit, model vs
truth at reserved positions; side-by-side reserved residuals and time ratio vs PIFF).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

STAMP = 25  # PSF size (pixels) on both sides


def isolated_stars(truth: Any, shape: tuple[int, int], radius: float = 20.0, ratio: float = 2e-3) -> Any:
    """Simulated point sources with no neighbour brighter than ``ratio`` within ``radius``."""
    from scipy.spatial import cKDTree

    src = truth.sources
    x, y, f = (np.asarray(src[c], dtype=float) for c in ("x", "y", "flux"))
    tree = cKDTree(np.c_[x, y])
    iso = np.ones(len(src), bool)
    for i, nb in enumerate(tree.query_ball_point(np.c_[x, y], radius)):
        iso[i] = not any(f[j] > ratio * f[i] for j in nb if j != i)
    ok = (np.asarray(src["kind"]) == "star") & np.asarray(src["in_image"]) & iso
    h = STAMP // 2 + 4
    ok &= (x > h) & (x < shape[1] - 1 - h) & (y > h) & (y < shape[0] - 1 - h)
    return src[ok]


def star_colors(st: Any) -> np.ndarray:
    """g-i colours of simulated stars (the truth PSF is evaluated at a star's own colour)."""
    from lsstdrp.sim import color_index

    return np.asarray(color_index(np.asarray(st["temperature"]), "g-i", tilt=np.asarray(st["tilt"])))


def piff_fit(image: np.ndarray, weight: np.ndarray, x: np.ndarray, y: np.ndarray, reserved: np.ndarray,
             *, size: int = STAMP, order: int = 2) -> Any:
    """Fit PIFF PixelGrid + BasisPolynomial to stamps cut from ``image`` (0-based x, y)."""
    import galsim
    import piff

    wcs = galsim.PixelScale(1.0)
    h = size // 2 + 3
    stars = []
    for xi, yi, r in zip(x, y, reserved):
        X, Y = int(math.floor(xi + 0.5)), int(math.floor(yi + 0.5))
        b = galsim.BoundsI(X - h + 1, X + h + 1, Y - h + 1, Y + h + 1)  # 1-based GalSim bounds
        im = galsim.Image(np.ascontiguousarray(image[Y - h : Y + h + 1, X - h : X + h + 1], dtype=np.float64),
                          bounds=b, wcs=wcs)
        wt = galsim.Image(np.ascontiguousarray(weight[Y - h : Y + h + 1, X - h : X + h + 1], dtype=np.float64),
                          bounds=b, wcs=wcs)
        props = {"chipnum": 0, "is_reserve": bool(r)}
        data = piff.StarData(im, galsim.PositionD(xi + 1.0, yi + 1.0), weight=wt, properties=props)
        stars.append(piff.Star(data, None))
    psf = piff.SimplePSF(piff.PixelGrid(scale=1.0, size=size), piff.BasisPolynomial(order=order),
                         outliers=[piff.ChisqOutliers(nsigma=4)])
    psf.set_context({0: wcs}, None)
    psf.fit(stars)
    return psf


def piff_kernel(psf: Any, x: float, y: float, size: int = STAMP) -> np.ndarray:
    """PIFF's PSF at 0-based pixel (x, y) drawn pixel-centred, unit sum."""
    X, Y = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
    im = psf.draw(X + 1.0, Y + 1.0, chipnum=0, stamp_size=size)
    a = im.array.astype(np.float64)
    return a / a.sum()


def piff_reserved_chi2(psf: Any) -> float:
    """Pooled chi2/dof of PIFF's reserved stars (flux and centre refitted, PSF fixed)."""
    chi, dof = 0.0, 0.0
    for s in psf.stars:
        if s.is_reserve:
            chi += float(s.fit.chisq)
            dof += float(s.fit.dof)
    return chi / dof if dof else math.nan


def moments(kernel: np.ndarray) -> tuple[float, float, float]:
    """(T, e1, e2) of a pixel-centred kernel by lsstdrp's adaptive moments."""
    from lsstdrp.measure import adaptive_moments

    c = (kernel.shape[0] - 1) / 2
    r = adaptive_moments(kernel, c, c, guess_sigma=2.0)
    t = float(r.ixx[0] + r.iyy[0])
    return t, float(r.ixx[0] - r.iyy[0]) / t, float(2 * r.ixy[0]) / t


def _setup(det_shape: int = 768, density: float = 60.0, seed: int = 7) -> dict[str, Any]:
    from lsstdrp.sim import make_survey

    s = make_survey("tiny", rng=seed, n_det_x=1, n_det_y=1, det_shape=(det_shape, det_shape),
                    star_density_arcmin2=density, star_mag_range=(17.0, 20.5), galaxy_density_arcmin2=1.0,
                    n_visits=1, n_bright_stars=0, n_transients=0, n_sso=0, trail_probability=0.0)
    key = s.keys()[0]
    ex, tr = s.exposure(*key), s.truth[key]
    st = isolated_stars(tr, ex.image.shape)
    reserved = np.random.default_rng(seed).random(len(st)) < 0.2
    image = np.asarray(ex.image, dtype=np.float64) - tr.background
    var = np.asarray(ex.variance, dtype=np.float64)
    return {"image": image, "variance": var, "weight": 1.0 / var, "x": np.asarray(st["x"], float),
            "y": np.asarray(st["y"], float), "reserved": reserved, "truth": tr, "gi": star_colors(st)}


def _lsstdrp(d: dict[str, Any]) -> Any:
    from astropy.table import QTable

    from lsstdrp.psf import fit_psf

    cat = QTable({"x": d["x"], "y": d["y"], "psf_reserved": d["reserved"]})
    return fit_psf(d["image"], d["variance"], cat, spatial_order=2, size=STAMP, fit_background=False)


def _piff(d: dict[str, Any]) -> Any:
    return piff_fit(d["image"], d["weight"], d["x"], d["y"], d["reserved"])


def benchmarks() -> list[dict[str, Any]]:
    """The fit_psf vs PIFF benchmark (one 768x768 detector, ~90 isolated stars)."""
    return [{"name": "psffit_pixelgrid_order2", "setup": _setup, "lsstdrp": _lsstdrp, "peer": _piff,
             "peer_name": "piff", "repeats": 2}]


def _compare(d: dict[str, Any]) -> dict[str, float]:
    t0 = time.perf_counter()
    res = _lsstdrp(d)
    t_l = time.perf_counter() - t0
    t0 = time.perf_counter()
    pp = _piff(d)
    t_p = time.perf_counter() - t0
    tr = d["truth"]
    out: dict[str, list] = {"lsstdrp": [], "piff": []}
    for x, y, c in zip(d["x"][d["reserved"]], d["y"][d["reserved"]], d["gi"][d["reserved"]]):
        X, Y = math.floor(x + 0.5), math.floor(y + 0.5)
        b = moments(tr.psf.kernel_image(X, Y, color=c))
        for name, k in (("lsstdrp", res.psf.kernel_image(X, Y)), ("piff", piff_kernel(pp, X, Y))):
            a = moments(k)
            out[name].append(((a[0] - b[0]) / b[0], a[1] - b[1], a[2] - b[2]))
    r = {"time_lsstdrp_s": t_l, "time_piff_s": t_p, "time_ratio": t_l / t_p,
         "chi2_reserved_lsstdrp": res.chi2_dof_reserved, "chi2_reserved_piff": piff_reserved_chi2(pp)}
    for name, v in out.items():
        a = np.array(v)
        r[f"mean_dT_T_{name}"] = float(a[:, 0].mean())
        r[f"rms_dT_T_{name}"] = float(np.sqrt((a[:, 0] ** 2).mean()))
        r[f"rms_de_{name}"] = float(np.sqrt((a[:, 1:] ** 2).mean()))
    return r


def full_scale_acceptance(n_det: int = 3, det_shape: int = 1024, density: float = 120.0, seed: int = 3) -> dict:
    """The issue's >= 500-star acceptance, pooled over the detectors of one visit."""
    from astropy.table import QTable

    from lsstdrp.psf import fit_psf
    from lsstdrp.sim import make_survey

    s = make_survey("tiny", rng=seed, n_det_x=n_det, n_det_y=n_det, det_shape=(det_shape, det_shape),
                    star_density_arcmin2=density, star_mag_range=(16.8, 18.8), galaxy_density_arcmin2=1.0,
                    n_visits=1, n_bright_stars=0, n_transients=0, n_sso=0, trail_probability=0.0)
    d, snr2, ntrain, chi, dof = [], 0.0, 0, 0.0, 0.0
    for key in s.keys():
        ex, tr = s.exposure(*key), s.truth[key]
        st = isolated_stars(tr, ex.image.shape)
        reserved = np.random.default_rng(key[1]).random(len(st)) < 0.2
        cat = QTable({"x": np.asarray(st["x"]), "y": np.asarray(st["y"]), "psf_reserved": reserved})
        image = ex.image - tr.background.astype(np.float32)  # sky subtraction is characterize's job
        res = fit_psf(image, ex.variance, cat, mask=ex.mask, spatial_order=2)
        used = np.asarray(res.stars["psf_used"])
        flux = np.asarray(res.stars["flux"].value)
        for i in np.flatnonzero(used):
            k = res.psf.image(cat["x"][i], cat["y"][i], shape=25)
            X, Y = (int(math.floor(v + 0.5)) for v in (cat["x"][i], cat["y"][i]))
            v = ex.variance[Y - 12 : Y + 13, X - 12 : X + 13]
            if v.shape == (25, 25):
                snr2 += flux[i] ** 2 * float(np.sum(k**2 / v))
        ntrain += int(used.sum())
        du = float(res.stars["dof"][used].sum())
        chi += res.chi2_dof * du
        dof += du
        gi = star_colors(st)
        for x, y, c in zip(cat["x"][reserved], cat["y"][reserved], gi[reserved]):
            a, b = moments(res.psf.kernel_image(x, y)), moments(tr.psf.kernel_image(x, y, color=c))
            d.append(((a[0] - b[0]) / b[0], a[1] - b[1], a[2] - b[2]))
    a = np.array(d)
    return {"n_train": ntrain, "n_reserved": len(a), "sigma_stat": 2 / math.sqrt(snr2),
            "mean_dT_T": float(a[:, 0].mean()), "rms_dT_T": float(np.sqrt((a[:, 0] ** 2).mean())),
            "mean_de1": float(a[:, 1].mean()), "mean_de2": float(a[:, 2].mean()), "chi2_dof": chi / dof}


def des_crossval(n_folds: int = 5, order: int = 2) -> dict:
    """Cross-validated chi2 on the real DES stars, lsstdrp vs PIFF (see tests/psf/test_psf_des.py)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tests/psf/test_psf_des.py"
    spec = importlib.util.spec_from_file_location("_psf_des", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    des = mod.load_des()
    return mod.crossval(des, des["psfex_used"], n_folds=n_folds, order=order, with_piff=True)


if __name__ == "__main__":
    print("full-scale acceptance (pooled over the 9 detectors of a visit):")
    for k, v in full_scale_acceptance().items():
        print(f"  {k:24s} {v:.4g}", flush=True)
    print("side by side with PIFF (one detector):")
    for k, v in _compare(_setup()).items():
        print(f"  {k:24s} {v:.4g}", flush=True)
    print("DES real stars, cross-validated chi2/dof (5 folds, order 2):")
    for k, v in des_crossval().items():
        print(f"  {k:24s} {v:.4g}", flush=True)
