"""Benchmarks of :mod:`lsstdrp.isr.calibs` against ccdproc.

- ``calibs_combine_20x2048x2048``: a sigma-clipped mean of 20 bias-like frames of
  2048 x 2048 read from FITS files, ``lsstdrp.isr.calibs.combine_frames`` vs
  ``ccdproc.combine`` on the same files with the same clipping (3 sigma about the
  median, standard deviation, one pass) in its tiled ``mem_limit`` mode. Acceptance:
  time ratio <= 0.3, peak-RSS increase below 4 frames (one frame = 12 bytes/pixel),
  master at least as close to the truth (``python benchmarks/bench_calibs.py`` prints
  the residuals).

Run with ``python benchmarks/run.py --only calibs``.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

N_FRAMES = 20
SHAPE = (2048, 2048)
READ_NOISE = 5.0
MEM_LIMIT = 64e6  # bytes of frame data per tile, both sides
_TMP: list[str] = []


def _cleanup() -> None:
    for d in _TMP:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def make_frames(n: int = N_FRAMES, shape: tuple[int, int] = SHAPE, seed: int = 1, directory: str | None = None) -> dict[str, Any]:
    """Write ``n`` float32 FITS frames: a static structure + read noise + cosmic-ray hits."""
    from astropy.io import fits

    rng = np.random.default_rng(seed)
    d = directory or tempfile.mkdtemp(prefix="lsstdrp_bench_calibs_")
    if directory is None:
        _TMP.append(d)
    ny, nx = shape
    yy = np.linspace(-1, 1, ny)[:, None]
    xx = np.linspace(-1, 1, nx)[None, :]
    truth = (3.0 * yy * xx + 2.0 * np.cos(3 * xx) + rng.normal(0, 1.0, nx)[None, :]).astype(np.float32)
    paths = []
    for i in range(n):
        img = truth + rng.normal(0, READ_NOISE, shape).astype(np.float32)
        k = int(2e-4 * ny * nx)  # cosmic-ray hits: a few hundred to thousands of e-
        img.ravel()[rng.choice(ny * nx, k, replace=False)] += rng.uniform(50, 3000, k).astype(np.float32)
        p = Path(d) / f"bias{i:02d}.fits"
        hdu = fits.PrimaryHDU(img)
        hdu.header["IMAGETYP"] = "BIAS"
        hdu.header["BUNIT"] = "adu"
        hdu.writeto(p, overwrite=True)
        paths.append(str(p))
    return {"paths": paths, "truth": truth, "dir": d}


def _lsstdrp(d: dict[str, Any]) -> np.ndarray:
    from lsstdrp.isr.calibs import combine_frames

    return combine_frames(d["paths"], method="mean", nsigma=3.0, center="median", scale="std", maxiters=1,
                          min_keep=1, memory_limit=MEM_LIMIT).image


def _ccdproc(d: dict[str, Any]) -> np.ndarray:
    import ccdproc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = ccdproc.combine(d["paths"], method="average", sigma_clip=True, sigma_clip_low_thresh=3,
                              sigma_clip_high_thresh=3, sigma_clip_func=np.ma.median, sigma_clip_dev_func=np.ma.std,
                              mem_limit=MEM_LIMIT, unit="adu", dtype=np.float32)
    return np.asarray(out.data)


def benchmarks() -> list[dict[str, Any]]:
    """The benchmark specs of this module (see ``benchmarks/run.py``)."""
    return [
        {
            "name": "calibs_combine_20x2048x2048",
            "setup": make_frames,
            "lsstdrp": _lsstdrp,
            "peer": _ccdproc,
            "peer_name": "ccdproc",
            "repeats": 3,
        },
    ]


def combine_quality(n: int = N_FRAMES, shape: tuple[int, int] = SHAPE) -> dict[str, float]:
    """rms of (master - truth) of both sides and of their difference on the same files."""
    d = make_frames(n, shape)
    a = _lsstdrp(d).astype(np.float64)
    b = _ccdproc(d).astype(np.float64)
    t = d["truth"].astype(np.float64)
    return {
        "lsstdrp_rms_vs_truth": float(np.sqrt(np.mean((a - t) ** 2))),
        "ccdproc_rms_vs_truth": float(np.sqrt(np.mean((b - t) ** 2))),
        "ideal_rms": READ_NOISE / np.sqrt(n),
        "max_abs_lsstdrp_minus_ccdproc": float(np.max(np.abs(a - b))),
        "frame_mb_12_bytes_per_pixel": 12 * shape[0] * shape[1] / 2**20,
    }


def ptc_bf_acceptance(shape: tuple[int, int] = (2048, 2048), n_pairs: int = 20, seed: int = 1) -> dict[str, Any]:
    """Full-scale PTC + BF kernel acceptance (the CI test runs a 256 x 512 detector).

    Flat pairs of a 16-amp detector with every simulated effect on; the PTC
    (``model="instantaneous"``, the simulator's charge redistribution), the kernel solved
    from it, and the ISR issue's BF criterion on a star grid with that kernel.
    """
    import dataclasses
    import time

    from lsstdrp.core import GaussianPsf, make_detector_geometry
    from lsstdrp.isr import run_isr
    from lsstdrp.isr.calibs import measure_ptc, solve_bf_kernel
    from lsstdrp.measure import adaptive_moments
    from lsstdrp.sim import RawEffects, make_calibration_exposures, make_raw, make_sensor_truth

    t0 = time.perf_counter()
    geom = make_detector_geometry(8, 2, assembled_shape=shape, prescan=3, serial_overscan=32, parallel_overscan=12)
    fx = RawEffects()
    sensor = make_sensor_truth(geom, effects=fx, rng=seed)
    pairs = []
    for i in range(n_pairs):  # one pair at a time: the frames of all pairs need not sit in memory
        lv = float(np.geomspace(100.0, 0.9 * float(np.min(sensor.full_well)), n_pairs)[i])
        sim = make_calibration_exposures(geom, sensor, kind="flat_pair", n=1, levels=lv, rng=seed * 1000 + i, effects=fx)
        pairs.append((sim.raws[0], sim.raws[1]))
    res = measure_ptc(pairs, calibs=sensor.calibs, model="instantaneous", progress=False)
    del pairs
    a = np.asarray(sensor.bf_aij_effective)
    c = a.shape[0] // 2
    at = 2.0 * a[c:c + 9, c:c + 9]
    kern = solve_bf_kernel(res, kernel_radius=8)
    kt = np.asarray(sensor.calibs.bf_kernel)
    # the ISR issue's criterion on a star grid (tests/isr/test_isr_run.py), derived kernel
    sh = (256, 512)
    psf = GaussianPsf(1.5)
    rng = np.random.default_rng(9)
    img = np.full(sh, 900.0) + 20.0 * np.linspace(-1, 1, sh[1])[None, :]
    pts = [(y + rng.uniform(-0.5, 0.5), x + rng.uniform(-0.5, 0.5)) for y in range(24, sh[0] - 20, 40)
           for x in range(24, sh[1] - 20, 40)]
    flux = np.geomspace(1e4, 1.2e6, len(pts))
    for (y, x), f in zip(pts, flux, strict=True):
        xc, yc = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        img[yc - 12:yc + 13, xc - 12:xc + 13] += f * psf.image(x, y, shape=25)
    ys, xs = np.array(pts).T
    g2 = make_detector_geometry(8, 2, assembled_shape=sh, prescan=3, serial_overscan=24, parallel_overscan=12)
    base = RawEffects.none(poisson=True, read_noise=True)
    on = make_raw(img, g2, rng=11, exptime=30.0, effects=dataclasses.replace(base, bf_a00=fx.bf_a00))
    off = make_raw(img, g2, rng=11, exptime=30.0, effects=base)
    sky = 900.0 + 20.0 * np.linspace(-1, 1, sh[1])[None, :]

    def size(exp: Any) -> np.ndarray:
        m = adaptive_moments(exp.image.astype(float) - sky, xs, ys, guess_sigma=1.5)
        return m.ixx + m.iyy

    t_ref = size(run_isr(off.raws, off.calibs).exposure)
    u = flux / flux.max()
    s_unc = float(np.polyfit(u, size(run_isr(on.raws, on.calibs, do_bf=False).exposure) / t_ref, 1)[0])
    s_cor = float(np.polyfit(u, size(run_isr(on.raws, on.calibs.replace(bf_kernel=kern.kernel)).exposure) / t_ref, 1)[0])
    z = (res.a - at[None]) / res.a_error
    return {
        "shape": list(shape), "n_pairs": n_pairs,
        "gain_max_rel_error": float(np.max(np.abs(res.gain / geom.gains - 1))),
        "read_noise_max_rel_error": float(np.max(np.abs(res.noise / geom.read_noises - 1))),
        "a00_max_abs_z": float(np.max(np.abs(z[:, 0, 0]))),
        "aij_chi2_per_dof_median": float(np.median(np.sum(z**2, axis=(1, 2)) / z[0].size)),
        "kernel_correlation": float(np.corrcoef(kern.kernel.ravel(), kt.ravel())[0, 1]),
        "kernel_center_ratio": float(kern.kernel[8, 8] / kt[8, 8]),
        "bf_slope_uncorrected": s_unc, "bf_slope_corrected_derived_kernel": s_cor,
        "seconds": time.perf_counter() - t0,
    }


def crosstalk_acceptance(n_frames: int = 40, amp_shape: tuple[int, int] = (384, 512), seed: int = 4) -> dict[str, Any]:
    """Crosstalk at a scale where the small (~1e-6) coefficients are measurable: 8 amps,
    ``n_frames`` frames of bright spots on a dark sky, low read noise."""
    import time

    from lsstdrp.core import make_detector_geometry
    from lsstdrp.isr.calibs import measure_crosstalk
    from lsstdrp.sim import RawEffects, make_raw, make_sensor_truth

    t0 = time.perf_counter()
    shape = (2 * amp_shape[0], 4 * amp_shape[1])
    geom = make_detector_geometry(4, 2, assembled_shape=shape, prescan=3, serial_overscan=16, parallel_overscan=8,
                                  read_noises=2.0)
    fx = RawEffects(cosmic_ray_rate=0.0, dark_current=0.0, nonlinearity=0.0, bias_structure=0.0)
    st = make_sensor_truth(geom, effects=fx, rng=3)
    rng = np.random.default_rng(seed)
    raws = []
    n_spots = int(2 * amp_shape[0] * amp_shape[1] / (64 * 96))
    for i in range(n_frames):
        img = np.full(shape, 5.0)
        for a in geom.amplifiers:
            b = a.assembled_bbox
            for _ in range(n_spots):
                cy, cx = rng.uniform(b.y0, b.y1), rng.uniform(b.x0, b.x1)
                y0, y1 = max(0, int(cy) - 15), min(shape[0], int(cy) + 16)
                x0, x1 = max(0, int(cx) - 15), min(shape[1], int(cx) + 16)
                yy, xx = np.mgrid[y0:y1, x0:x1]
                img[y0:y1, x0:x1] += rng.uniform(1e5, 1.3e5) * np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / 9.0)
        raws.append(make_raw(np.minimum(img, 1.3e5), geom, calibs_truth=st, rng=100 + i, exptime=1.0,
                             effects=fx).raws[0])
    fit = measure_crosstalk(raws, calibs=st.calibs)
    ct = st.calibs.crosstalk
    off = ~np.eye(ct.shape[0], dtype=bool)
    err = np.abs(fit.coefficients - ct)[off]
    tol = np.maximum(0.05 * np.abs(ct[off]), 1e-6)
    return {
        "n_frames": n_frames, "amp_shape": list(amp_shape),
        "max_error_over_tolerance": float(np.max(err / tol)),
        "fraction_within_tolerance": float(np.mean(err <= tol)),
        "max_sigma": float(np.nanmax(fit.errors)),
        "z_rms": float(np.sqrt(np.mean(((fit.coefficients - ct)[off] / fit.errors[off]) ** 2))),
        "seconds": time.perf_counter() - t0,
    }


if __name__ == "__main__":
    import json
    import sys

    if "ptc" in sys.argv[1:]:
        print(json.dumps(ptc_bf_acceptance(), indent=2))
    elif "crosstalk" in sys.argv[1:]:
        print(json.dumps(crosstalk_acceptance(), indent=2))
    else:
        print(json.dumps(combine_quality(), indent=2))
