"""Benchmarks of lsstdrp.measure: aperture photometry, adaptive moments, measure_sources.

Data: the 4096 x 4096 float32 field of ``bench_background.py`` (~20,000 stars, Gaussian
PSF of sigma 1.5 px, S/N 2 to 2000, sky ~1000 e-, numpy-built), with its known sky map
subtracted and the variance plane ``max(image, 0)`` (sky + source counts, gain 1), both
float32; the true star positions are the source list.

- ``measure_aperture_20k``: circular apertures of radius 5 px with exact overlap and
  errors from the variance plane at the 20,000 positions, lsstdrp ``aperture_flux(...,
  subpix=0)`` vs ``sep.sum_circle(..., var=variance, subpix=0)``;
- ``measure_aperture_20k_5radii``: the same at the registry radii 3, 5, 8, 12, 17 (one
  lsstdrp call, five sep calls);
- ``measure_adaptive_moments_2000``: adaptive moments of 2,000 stars (S/N > 20), each in
  its 31 x 31 stamp, starting from the stamp centre with a 5 px round weight (GalSim's
  defaults): lsstdrp ``adaptive_moments(image, x, y, half_size=15)`` in one call vs
  ``galsim.hsm.FindAdaptiveMom`` on each pre-cut stamp; the ratio is the per-object
  time ratio;
- ``measure_sources_20k``: the whole ``measure_sources`` on the 20,000 sources (no peer;
  time reported).

Run with ``python benchmarks/run.py --only measure``.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
RADII = (3.0, 5.0, 8.0, 12.0, 17.0)
N_MOMENTS = 2000
HALF = 15


def _field_module() -> Any:
    name = "lsstdrp_benchmarks.bench_background"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HERE / "bench_background.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@functools.lru_cache(maxsize=1)
def _field() -> dict[str, Any]:
    f = _field_module().make_star_field()
    image = np.ascontiguousarray(f["image"] - f["sky"], dtype=np.float32)
    variance = np.ascontiguousarray(np.maximum(f["image"], 0.0), dtype=np.float32)
    return {"image": image, "variance": variance, "x": np.asarray(f["x"], dtype=np.float64),
            "y": np.asarray(f["y"], dtype=np.float64), "snr": np.asarray(f["snr"]),
            "psf_sigma": float(f["psf_sigma"])}


def _setup_apertures() -> dict[str, Any]:
    return _field()


def _lsstdrp_aperture(data: dict[str, Any]) -> Any:
    from lsstdrp.measure import aperture_flux

    return aperture_flux(data["image"], data["x"], data["y"], 5.0, variance=data["variance"], subpix=0)


def _sep_aperture(data: dict[str, Any]) -> Any:
    import sep

    return sep.sum_circle(data["image"], data["x"], data["y"], 5.0, var=data["variance"], subpix=0)


def _lsstdrp_apertures(data: dict[str, Any]) -> Any:
    from lsstdrp.measure import aperture_flux

    return aperture_flux(data["image"], data["x"], data["y"], RADII, variance=data["variance"], subpix=0)


def _sep_apertures(data: dict[str, Any]) -> Any:
    import sep

    return [sep.sum_circle(data["image"], data["x"], data["y"], r, var=data["variance"], subpix=0) for r in RADII]


def _setup_moments() -> dict[str, Any]:
    import galsim

    f = _field()
    ny, nx = f["image"].shape
    ix = np.floor(f["x"] + 0.5).astype(int)
    iy = np.floor(f["y"] + 0.5).astype(int)
    ok = (f["snr"] > 20) & (ix >= HALF) & (iy >= HALF) & (ix < nx - HALF) & (iy < ny - HALF)
    sel = np.flatnonzero(ok)[:N_MOMENTS]
    stamps = [galsim.Image(np.ascontiguousarray(f["image"][iy[i] - HALF:iy[i] + HALF + 1,
                                                          ix[i] - HALF:ix[i] + HALF + 1], dtype=np.float64))
              for i in sel]
    return {"image": f["image"], "x": ix[sel].astype(np.float64), "y": iy[sel].astype(np.float64),
            "stamps": stamps}


def _lsstdrp_moments(data: dict[str, Any]) -> Any:
    from lsstdrp.measure import adaptive_moments

    return adaptive_moments(data["image"], data["x"], data["y"], guess_sigma=5.0, half_size=HALF)


def _galsim_moments(data: dict[str, Any]) -> Any:
    import galsim

    out = []
    for stamp in data["stamps"]:
        try:
            out.append(galsim.hsm.FindAdaptiveMom(stamp).moments_sigma)
        except galsim.GalSimHSMError:
            out.append(np.nan)
    return out


def _setup_measure() -> dict[str, Any]:
    from lsstdrp.core import GaussianPsf

    f = _field()
    return f | {"psf": GaussianPsf(f["psf_sigma"]),
                "catalog": {"x": np.floor(f["x"] + 0.5), "y": np.floor(f["y"] + 0.5)}}


def _lsstdrp_measure(data: dict[str, Any]) -> Any:
    from lsstdrp.measure import measure_sources

    return measure_sources(data["image"], data["variance"], data["catalog"], psf=data["psf"])


def benchmarks() -> list[dict[str, Any]]:
    """The benchmark specs of this module (see ``benchmarks/run.py``)."""
    return [
        {"name": "measure_aperture_20k", "setup": _setup_apertures, "lsstdrp": _lsstdrp_aperture,
         "peer": _sep_aperture, "peer_name": "sep", "repeats": 7},
        {"name": "measure_aperture_20k_5radii", "setup": _setup_apertures, "lsstdrp": _lsstdrp_apertures,
         "peer": _sep_apertures, "peer_name": "sep", "repeats": 5},
        {"name": "measure_adaptive_moments_2000", "setup": _setup_moments, "lsstdrp": _lsstdrp_moments,
         "peer": _galsim_moments, "peer_name": "galsim", "repeats": 5},
        {"name": "measure_sources_20k", "setup": _setup_measure, "lsstdrp": _lsstdrp_measure,
         "peer": None, "peer_name": None, "repeats": 3},
    ]
