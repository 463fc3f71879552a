"""Benchmark: detection to a catalogue, lsstdrp ``detect_sources`` vs ``sep.extract``.

Data: the 4096 x 4096 float32 field of ``bench_background.py`` (~20,000 stars, Gaussian
PSF of sigma 1.5 px, S/N from 2 to 2000, sky 1000 e-), background subtracted once with
the SExtractor background (identical for both sides).

- lsstdrp: ``detect_sources(image, rms**2, psf=GaussianPsf(1.5), threshold=5)``: the PSF
  matched-filter significance map thresholded at S/N 5, footprints, peaks (the
  catalogue), growth by 1 PSF sigma;
- sep: ``sep.extract(image, thresh, err=rms, filter_kernel=k, minarea=5)`` with ``k`` the
  same PSF as a 9 x 9 kernel, ``thresh = 5 * sqrt(sum k**2) / sum k`` (a matched-filter
  S/N of 5 for a scalar ``err``) and sep's default deblending (32 thresholds, mincont
  0.005) and cleaning.

Besides the timings, ``setup`` prints to stderr the completeness of both catalogues for
true stars of matched-filter S/N 5-10 (a detection within 2 px) and the fraction of
detections with no true star within 2 px. Run with
``python benchmarks/run.py --only detect``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
KERNEL_SIZE = 9
THRESHOLD = 5.0
MATCH_RADIUS = 2.0


def _field_module() -> Any:
    name = "lsstdrp_benchmarks.bench_background"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, _HERE / "bench_background.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _sep_kernel(psf_sigma: float) -> np.ndarray:
    from lsstdrp.core import GaussianPsf

    k = GaussianPsf(psf_sigma).kernel_image(0.0, 0.0)
    c = k.shape[0] // 2
    h = KERNEL_SIZE // 2
    return np.ascontiguousarray(k[c - h : c + h + 1, c - h : c + h + 1], dtype=np.float32)


def quality(xy_det: np.ndarray, field: dict[str, Any], snr_range: tuple[float, float] = (5.0, 10.0)) -> dict[str, float]:
    """Completeness in a true-S/N range and the fraction of unmatched detections."""
    from scipy.spatial import cKDTree

    truth = np.column_stack([field["x"], field["y"]])
    if len(xy_det) == 0:
        return {"n_det": 0, "completeness": 0.0, "false_fraction": 0.0}
    d_truth, _ = cKDTree(xy_det).query(truth, k=1)
    sel = (field["snr"] >= snr_range[0]) & (field["snr"] < snr_range[1])
    d_det, _ = cKDTree(truth).query(xy_det, k=1)
    return {
        "n_det": int(len(xy_det)),
        "completeness": float(np.mean(d_truth[sel] <= MATCH_RADIUS)),
        "false_fraction": float(np.mean(d_det > MATCH_RADIUS)),
    }


def _setup() -> dict[str, Any]:
    import sep

    from lsstdrp.characterize import estimate_background
    from lsstdrp.core import GaussianPsf

    field = _field_module().make_star_field()
    bkg = estimate_background(field["image"], bin_size=64, filter_size=3)
    image = np.ascontiguousarray(field["image"] - bkg.background, dtype=np.float32)
    rms = float(bkg.global_rms)
    k = _sep_kernel(float(field["psf_sigma"]))
    sep_thresh = THRESHOLD * math.sqrt(float((k.astype(np.float64) ** 2).sum())) / float(k.sum())
    sep.set_extract_pixstack(20_000_000)
    sep.set_sub_object_limit(4096)
    data = {"image": image, "rms": rms, "psf": GaussianPsf(float(field["psf_sigma"])), "kernel": k,
            "sep_thresh": sep_thresh}
    ours = _lsstdrp(data)
    theirs = _sep(data)
    q_ours = quality(np.column_stack([ours.peaks["x"].value, ours.peaks["y"].value]), field)
    q_sep = quality(np.column_stack([theirs["x"], theirs["y"]]), field)
    n_true = int(np.sum((field["snr"] >= 5) & (field["snr"] < 10)))
    print(f"detect quality ({n_true} true stars at S/N 5-10; match radius {MATCH_RADIUS} px):", file=sys.stderr)
    for name, q in (("lsstdrp", q_ours), ("sep", q_sep)):
        print(f"  {name:8s} detections {q['n_det']:6d}  completeness(S/N 5-10) {q['completeness']:.3f}  "
              f"unmatched fraction {q['false_fraction']:.4f}", file=sys.stderr)
    return data


def _lsstdrp(data: dict[str, Any]) -> Any:
    from lsstdrp.detect import detect_sources

    return detect_sources(data["image"], data["rms"] ** 2, psf=data["psf"], threshold=THRESHOLD)


def _sep(data: dict[str, Any]) -> Any:
    import sep

    return sep.extract(data["image"], data["sep_thresh"], err=data["rms"], filter_kernel=data["kernel"], minarea=5)


def benchmarks() -> list[dict[str, Any]]:
    """The benchmark specs of this module (see ``benchmarks/run.py``)."""
    return [
        {
            "name": "detect_4096x4096_20k_stars_snr5",
            "setup": _setup,
            "lsstdrp": _lsstdrp,
            "peer": _sep,
            "peer_name": "sep",
            "repeats": 5,
        }
    ]
