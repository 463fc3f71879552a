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


if __name__ == "__main__":
    import json

    print(json.dumps(combine_quality(), indent=2))
