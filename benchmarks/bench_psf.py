"""Benchmark: sub-pixel-shifted PSF stamps, lsstdrp ``ImagePsf.image`` vs photutils ``ImagePSF``.

Both sides render the same 2000 unit-flux 25x25 stamps of one pixelized PSF (a
Moffat, FWHM 3.5 px, beta 3.5, 25x25 kernel) at random sub-pixel positions on a
4k x 4k detector, each stamp centred on the star's nearest pixel:

- lsstdrp: ``ImagePsf.image(x, y, shape=25)`` per star (Lanczos-5 taps with flux- and
  centroid-conserving correction, numba kernel ``core._kernels._render_shifted``);
- photutils: ``ImagePSF.evaluate(xx, yy, 1, x, y)`` on the same 25x25 pixel grids
  (bicubic ``RectBivariateSpline``). ``evaluate`` is the fastest photutils path: it
  skips astropy.modeling's ``__call__`` machinery (bounding box, unit and parameter
  handling), which roughly doubles the cost of ``model(xx, yy)``.

The two stamp stacks differ only by the interpolants (max difference 3e-4 of unit
flux for this PSF); both sides return a (2000, 25, 25) float64 array.

Run with ``python benchmarks/run.py --only psf``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

N_STARS = 2000
STAMP = 25


def _setup() -> dict[str, Any]:
    from lsstdrp.core import ImagePsf, MoffatPsf, to_photutils

    psf = ImagePsf(MoffatPsf(3.5, beta=3.5, size=STAMP).kernel_image(0.0, 0.0))
    rng = np.random.default_rng(20240611)
    xs = rng.uniform(0.0, 4000.0, N_STARS)
    ys = rng.uniform(0.0, 4000.0, N_STARS)
    model = to_photutils(psf, 0.0, 0.0)
    h = STAMP // 2
    dy, dx = np.mgrid[-h : h + 1, -h : h + 1].astype(np.float64)
    return {"psf": psf, "model": model, "xs": xs, "ys": ys, "dx": dx, "dy": dy}


def _lsstdrp(data: dict[str, Any]) -> np.ndarray:
    psf = data["psf"]
    out = np.empty((N_STARS, STAMP, STAMP))
    for k, (x, y) in enumerate(zip(data["xs"].tolist(), data["ys"].tolist(), strict=True)):
        out[k] = psf.image(x, y, shape=STAMP)
    return out


def _photutils(data: dict[str, Any]) -> np.ndarray:
    model, dx, dy = data["model"], data["dx"], data["dy"]
    out = np.empty((N_STARS, STAMP, STAMP))
    for k, (x, y) in enumerate(zip(data["xs"].tolist(), data["ys"].tolist(), strict=True)):
        xc = math.floor(x + 0.5)
        yc = math.floor(y + 0.5)
        out[k] = model.evaluate(dx + xc, dy + yc, 1.0, x, y)
    return out


def benchmarks() -> list[dict[str, Any]]:
    """The benchmark specs of this module (see ``benchmarks/run.py``)."""
    return [
        {
            "name": "psf_image_stamps_2000x25x25",
            "setup": _setup,
            "lsstdrp": _lsstdrp,
            "peer": _photutils,
            "peer_name": "photutils",
            "repeats": 7,
        }
    ]
