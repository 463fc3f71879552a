"""Benchmarks and full-scale acceptance measurements of lsstdrp.coadd.

- ``coadd_warp_4k``: a 4096 x 4096 float32 image (Gaussian noise) with a TAN WCS warped
  onto a TAN frame rotated by 10 degrees and shifted by (100.3, -50.7) px: lsstdrp
  ``warp(image, variance, mask, kernel='lanczos3')`` (image, variance and mask, plus the
  sampled covariance) vs ``reproject.reproject_interp(..., order='bilinear')`` (image
  only, one process). The harness prints both times, the ratio and both peak-RSS
  increases.

Run with ``python benchmarks/run.py --only coadd``.

``python benchmarks/bench_coadd.py [psf|memory|all]`` runs the full-scale acceptance
measurements and prints the numbers:

- ``psf``: >= 300 stars at S/N >= 200 on a direct coadd of 8 dithered, rotated inputs with
  different PSFs; mean and scatter of dT/T (star adaptive moments vs the CoaddPsf at the
  star's sub-pixel position) for stars without INEXACT_PSF, and the flux bias;
- ``memory``: 50 warps of 4096 x 4096 written as warp files, coadded strip by strip;
  the peak-RSS increase of ``coadd`` against 8 warps' worth (8 x 12 bytes x 4096^2).
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

N = 4096


def _tan(crpix: tuple[float, float], rot_deg: float = 0.0, crval=(150.0, 2.0), scale: float = 1.0) -> Any:
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [crpix[0] + 1.0, crpix[1] + 1.0]
    th = math.radians(rot_deg)
    s = 0.2 / 3600.0 * scale
    w.wcs.cd = [[-s * math.cos(th), s * math.sin(th)], [s * math.sin(th), s * math.cos(th)]]
    return w


def _setup_warp() -> dict[str, Any]:
    rng = np.random.default_rng(20261125)
    img = rng.normal(size=(N, N)).astype(np.float32)
    var = np.ones((N, N), np.float32)
    mask = np.zeros((N, N), np.uint32)
    mask[rng.integers(0, N, 2000), rng.integers(0, N, 2000)] = 8  # CR hits
    return {"image": img, "variance": var, "mask": mask,
            "wcs_in": _tan((N / 2, N / 2)), "wcs_out": _tan((N / 2 + 100.3, N / 2 - 50.7), rot_deg=10.0)}


def _lsstdrp_warp(d: dict[str, Any]) -> Any:
    from lsstdrp.coadd import warp

    return warp(d["image"], d["variance"], d["mask"], wcs_in=d["wcs_in"], wcs_out=d["wcs_out"],
                shape_out=(N, N), kernel="lanczos3")


def _reproject_warp(d: dict[str, Any]) -> Any:
    from reproject import reproject_interp

    return reproject_interp((d["image"], d["wcs_in"]), d["wcs_out"], shape_out=(N, N), order="bilinear",
                            return_footprint=False, parallel=False)


def benchmarks() -> list[dict[str, Any]]:
    """The benchmark specs of this module (see ``benchmarks/run.py``)."""
    return [
        {"name": "coadd_warp_4k", "setup": _setup_warp, "lsstdrp": _lsstdrp_warp,
         "peer": _reproject_warp, "peer_name": "reproject", "repeats": 3},
    ]


# ---------------------------------------------------------------------------------------
# full-scale acceptance measurements
# ---------------------------------------------------------------------------------------
def acceptance_psf(n_inputs: int = 8, n_side: int = 24, flux: float = 1.0e6, sky_sigma: float = 30.0) -> dict:
    """CoaddPsf vs >= 300 coadd stars at S/N >= 200."""
    from lsstdrp.coadd import coadd, warp
    from lsstdrp.core import GaussianPsf, MaskPlane
    from lsstdrp.measure import adaptive_moments

    rng = np.random.default_rng(7)
    shape_out = (1000, 1000)
    w_out = _tan((500.0, 500.0))
    g = np.linspace(30, 970, n_side)
    gy, gx = np.meshgrid(g, g, indexing="ij")
    sx = gx.ravel() + rng.uniform(-0.5, 0.5, gx.size)
    sy = gy.ravel() + rng.uniform(-0.5, 0.5, gy.size)
    ra, dec = w_out.pixel_to_world_values(sx, sy)
    warps = []
    for i in range(n_inputs):
        psf = GaussianPsf(1.6 + 0.1 * i, e1=0.03 * (i - 3), e2=0.02 * (4 - i))
        w_in = _tan((480 + rng.uniform(-40, 40), 480 + rng.uniform(-40, 40)), rot_deg=rng.uniform(-15, 15))
        xi, yi = w_in.world_to_pixel_values(ra, dec)
        img = np.zeros((960, 960))
        for x, y in zip(xi, yi):
            X, Y = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
            if 15 <= X < 945 and 15 <= Y < 945:
                img[Y - 15 : Y + 16, X - 15 : X + 16] += flux * psf.image(x, y, shape=31)
        var = np.full(img.shape, sky_sigma**2)
        img += rng.normal(size=img.shape) * sky_sigma
        warps.append(warp(img.astype(np.float32), var.astype(np.float32), wcs_in=w_in, wcs_out=w_out,
                          shape_out=shape_out, psf=psf))
    res = coadd(warps)
    bad = np.uint32(MaskPlane.INEXACT_PSF | MaskPlane.NO_DATA)
    dts, snrs, ratios = [], [], []
    for x, y in zip(sx, sy):
        X, Y = int(math.floor(x + 0.5)), int(math.floor(y + 0.5))
        box = res.mask[Y - 12 : Y + 13, X - 12 : X + 13]
        if box.shape != (25, 25) or np.any(box & bad):
            continue
        m = adaptive_moments(np.nan_to_num(res.image), x, y, guess_sigma=2.0)
        model = res.psf.image(x, y, shape=41)
        mm = adaptive_moments(model, 20 + x - X, 20 + y - Y, guess_sigma=2.0)
        dts.append((m.ixx[0] + m.iyy[0]) / (mm.ixx[0] + mm.iyy[0]) - 1)
        p = res.psf.image(x, y, shape=25)
        wts = p / np.sum(p * p)
        f = float(np.sum(wts * res.image[Y - 12 : Y + 13, X - 12 : X + 13]))
        snrs.append(f / math.sqrt(res.measurement_variance(wts, x0=X - 12, y0=Y - 12)))
        ratios.append(f / flux)
    dts = np.array(dts)
    return {"n_stars": int(dts.size), "min_snr": float(np.min(snrs)), "mean_dT_over_T": float(dts.mean()),
            "sem_dT_over_T": float(dts.std(ddof=1) / math.sqrt(dts.size)),
            "flux_bias": float(np.mean(ratios) - 1), "flux_bias_sem": float(np.std(ratios, ddof=1) / math.sqrt(len(ratios)))}


def acceptance_memory(n_warps: int = 50, n: int = N, directory: str | None = None) -> dict:
    """Peak-RSS increase of a 50-warp 4k coadd from warp files (strip by strip)."""
    import types

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from run import peak_rss_increase

    from lsstdrp.coadd import coadd, write_warp

    tmp = Path(directory or tempfile.mkdtemp(prefix="lsstdrp_coadd_mem_"))
    paths = []
    rng = np.random.default_rng(3)
    t0 = time.perf_counter()
    for i in range(n_warps):
        p = tmp / f"warp_{i:02d}.fits"
        if not p.exists():
            img = rng.normal(size=(n, n)).astype(np.float32)
            mask = np.zeros((n, n), np.uint32)
            mask[: 50 + i, :] = 256  # a NO_DATA band of varying width
            img[: 50 + i, :] = np.nan
            w = types.SimpleNamespace(image=img, variance=np.ones((n, n), np.float32), mask=mask)
            write_warp(p, w)
            del img, mask, w
        paths.append(str(p))
    t_write = time.perf_counter() - t0
    out: dict[str, Any] = {}

    def run(ps: list[str]) -> None:
        t = time.perf_counter()
        r = coadd(ps, weights=np.ones(len(ps)), missing_psf="flag")
        out["seconds"] = time.perf_counter() - t
        out["center_n_inputs"] = int(r.n_inputs[n // 2, n // 2])

    mb, how = peak_rss_increase(run, paths)
    one_warp_mb = 12.0 * n * n / 2**20
    out.update({"n_warps": n_warps, "peak_rss_increase_mb": mb, "method": how, "one_warp_mb": one_warp_mb,
                "in_warps": mb / one_warp_mb, "write_seconds": t_write, "dir": str(tmp)})
    return out


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what in ("psf", "all"):
        print("CoaddPsf acceptance:", acceptance_psf())
    if what in ("memory", "all"):
        print("coadd memory acceptance:", acceptance_memory(directory=os.environ.get("LSSTDRP_COADD_MEM_DIR")))
