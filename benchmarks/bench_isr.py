"""Benchmarks of lsstdrp.isr against its peers, on the same data in one process.

``isr_cosmic_rays_4096x4096``
    :func:`lsstdrp.isr.detect_cosmic_rays` (PSF-aware, background estimated inside) vs
    ``astroscrappy.detect_cosmics`` with its defaults (sigclip 4.5, sigfrac 0.3, objlim
    5, niter 4, ...) and the same gain (1, the image is in e-) and read noise, on one
    4k x 4k ISR-corrected detector: sky 900 e-, stars and PSF-convolved exponential
    galaxies, ~500 cosmic rays from ``lsstdrp.sim.make_raw`` (muons, worms, spots; rate
    raised 40x over LSST's for statistics). Detection quality is not a timing: run this
    file as a script (``python benchmarks/bench_isr.py``) for recall of the injected
    cosmic-ray pixels above 3 sigma, false pixels (more than 1 px from any deposit) and
    flagged star cores, for both.
``isr_run_isr_4096x4096``
    :func:`lsstdrp.isr.run_isr` on a 16-amplifier 4k x 4k raw with every simulated
    effect on (no peer: nothing else runs this sequence on plain arrays).
``isr_overscan_trim_gain_saao``
    overscan (median per row) + trim + gain on the real SAAO frame of
    ``../shared/data/real/ccdproc`` vs ``ccdproc.subtract_overscan`` + ``trim_image`` +
    ``gain_correct`` (present only when the data are).

Run with ``python benchmarks/run.py --only isr``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

SHAPE = (4096, 4096)
SKY = 900.0
FWHM = 3.5
SAAO = Path(__file__).resolve().parents[1].parent / "shared/data/real/ccdproc/a8280271.fits"


def _scene(shape: tuple[int, int], seed: int) -> tuple[np.ndarray, dict]:
    from scipy.signal import fftconvolve

    from lsstdrp.core import GaussianPsf

    psf = GaussianPsf(FWHM / 2.3548)
    rng = np.random.default_rng(seed)
    area = shape[0] * shape[1] / 1024**2
    img = np.full(shape, SKY)
    n = int(80 * area)
    xs = rng.uniform(15, shape[1] - 15, n)
    ys = rng.uniform(15, shape[0] - 15, n)
    flux = 10 ** rng.uniform(3.0, 6.0, n)
    for x, y, f in zip(xs, ys, flux, strict=True):
        xc, yc = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        img[yc - 12 : yc + 13, xc - 12 : xc + 13] += f * psf.image(x, y, shape=25)
    yy, xx = np.mgrid[-15:16, -15:16]
    kernel = psf.kernel_image(0, 0)
    for _ in range(int(150 * area)):
        x, y = rng.integers(20, shape[1] - 20, 2)
        prof = fftconvolve(np.exp(-np.hypot(xx, yy) / rng.uniform(0.5, 4.0)), kernel, mode="same")
        img[y - 15 : y + 16, x - 15 : x + 16] += 10 ** rng.uniform(3, 5) * prof / prof.sum()
    return img, {"x": xs, "y": ys, "flux": flux, "psf": psf}


def _cr_setup() -> dict[str, Any]:
    from lsstdrp.core import make_detector_geometry
    from lsstdrp.isr import run_isr
    from lsstdrp.sim import RawEffects, make_raw

    img, stars = _scene(SHAPE, 5)
    geom = make_detector_geometry(8, 2, assembled_shape=SHAPE, prescan=3, serial_overscan=32, parallel_overscan=16)
    sim = make_raw(img, geom, rng=1, exptime=30.0, effects=RawEffects.none(cosmic_ray_rate=1.0, read_noise=True))
    exp = run_isr(sim.raws, sim.calibs, cosmic_rays="none").exposure
    rn = float(np.sqrt(np.mean(sim.calibs.amp_read_noises() ** 2)))
    return {
        "image": np.array(exp.image), "variance": np.array(exp.variance), "mask": np.array(exp.mask),
        "psf": stars["psf"], "read_noise": rn, "stars": stars,
        "cr_charge": sim.truth["cr_charge"][0].astype(np.float64),
        "expected": sim.truth["charge_expected"][0].astype(np.float64),
        "n_events": len(sim.truth["cr_events"][0]),
    }


def _cr_lsstdrp(data: dict[str, Any]) -> np.ndarray:
    from lsstdrp.isr import detect_cosmic_rays

    return detect_cosmic_rays(data["image"], data["variance"], psf=data["psf"], mask=data["mask"]).cr


def _cr_astroscrappy(data: dict[str, Any]) -> np.ndarray:
    import astroscrappy

    mask, _ = astroscrappy.detect_cosmics(data["image"], gain=1.0, readnoise=data["read_noise"])
    return mask


def cosmic_ray_quality(data: dict[str, Any] | None = None) -> dict[str, dict[str, float]]:
    """Recall, false pixels and flagged star cores of both sides on the benchmark image.

    Parameters
    ----------
    data : dict, optional
        The output of the benchmark's setup (built when None).

    Returns
    -------
    dict
        ``{"lsstdrp": {...}, "astroscrappy": {...}}`` with ``recall_3sigma``,
        ``false_pixels``, ``star_cores_flagged``, plus the truth counts.
    """
    from scipy import ndimage

    data = _cr_setup() if data is None else data
    sigma = np.sqrt(data["expected"] + data["read_noise"] ** 2)
    truth = data["cr_charge"] > 3.0 * sigma
    deposit = data["cr_charge"] >= 1.0
    near = ndimage.binary_dilation(deposit, structure=np.ones((3, 3)))
    stars = data["stars"]
    xc = np.floor(stars["x"] + 0.5).astype(int)
    yc = np.floor(stars["y"] + 0.5).astype(int)
    psf = stars["psf"]
    snr = stars["flux"] / np.sqrt(stars["flux"] + 4 * np.pi * psf.sigma**2 * (SKY + data["read_noise"] ** 2))
    peak = stars["flux"] * psf.kernel_image(0, 0).max()
    bright = (snr > 50) & (peak < 1e5) & ~ndimage.binary_dilation(deposit, iterations=3)[yc, xc]
    out = {}
    for name, func in (("lsstdrp", _cr_lsstdrp), ("astroscrappy", _cr_astroscrappy)):
        flag = np.asarray(func(data), dtype=bool)
        out[name] = {
            "recall_3sigma": float((flag & truth).sum() / truth.sum()),
            "false_pixels": int((flag & ~near).sum()),
            "star_cores_flagged": int(flag[yc[bright], xc[bright]].sum()),
            "n_truth_pixels": int(truth.sum()),
            "n_events": int(data["n_events"]),
            "n_bright_stars": int(bright.sum()),
        }
    return out


def _run_isr_setup() -> dict[str, Any]:
    from lsstdrp.core import make_detector_geometry
    from lsstdrp.sim import RawEffects, make_raw

    img, stars = _scene(SHAPE, 6)
    geom = make_detector_geometry(8, 2, assembled_shape=SHAPE, prescan=3, serial_overscan=64, parallel_overscan=48)
    sim = make_raw(img, geom, rng=2, exptime=30.0, effects=RawEffects())
    return {"raws": sim.raws, "calibs": sim.calibs, "psf": stars["psf"]}


def _run_isr(data: dict[str, Any]) -> Any:
    from lsstdrp.isr import run_isr

    return run_isr(data["raws"], data["calibs"], psf=data["psf"])


def _saao_setup() -> dict[str, Any]:
    from astropy.io import fits

    with fits.open(SAAO) as hdul:
        return {"data": np.asarray(hdul[0].data), "header": hdul[0].header}


def _saao_lsstdrp(d: dict[str, Any]) -> np.ndarray:
    from lsstdrp.core import BBox
    from lsstdrp.isr import subtract_overscan

    h = d["header"]
    bias, trim = BBox.from_fits_section(h["BIASSEC"]), BBox.from_fits_section(h["TRIMSEC"])
    return subtract_overscan(d["data"], d["data"][bias.slices]).image[trim.slices] * np.float32(h["GAIN"])


def _saao_ccdproc(d: dict[str, Any]) -> np.ndarray:
    import astropy.units as u
    import ccdproc
    from astropy.nddata import CCDData

    h = d["header"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ccd = CCDData(d["data"], unit="adu", meta=h)
        o = ccdproc.subtract_overscan(ccd, fits_section=h["BIASSEC"], median=True, overscan_axis=1)
        t = ccdproc.trim_image(o, fits_section=h["TRIMSEC"])
        return ccdproc.gain_correct(t, h["GAIN"] * u.electron / u.adu).data


def benchmarks() -> list[dict[str, Any]]:
    """The benchmark specs of this module (see ``benchmarks/run.py``)."""
    specs = [
        {
            "name": "isr_cosmic_rays_4096x4096",
            "setup": _cr_setup,
            "lsstdrp": _cr_lsstdrp,
            "peer": _cr_astroscrappy,
            "peer_name": "astroscrappy",
            "repeats": 3,
        },
        {
            "name": "isr_run_isr_4096x4096",
            "setup": _run_isr_setup,
            "lsstdrp": _run_isr,
            "peer": None,
            "peer_name": None,
            "repeats": 3,
        },
    ]
    if SAAO.exists():
        specs.append({
            "name": "isr_overscan_trim_gain_saao",
            "setup": _saao_setup,
            "lsstdrp": _saao_lsstdrp,
            "peer": _saao_ccdproc,
            "peer_name": "ccdproc",
            "repeats": 20,
        })
    return specs


if __name__ == "__main__":
    import json

    print(json.dumps(cosmic_ray_quality(), indent=2))
