"""Benchmark and full-scale acceptance runs of lsstdrp.characterize.

Timing (``python benchmarks/run.py --only characterize``):

- ``characterize_fit_tan_sip``: lsstdrp :func:`~lsstdrp.characterize.fit_tan_sip`
  (order 3, weighted) vs astropy's ``astropy.wcs.utils.fit_wcs_from_points``
  (``projection="TAN"``, ``sip_degree=3``) on the same 500 matched pixel/sky pairs of a
  simulated 4k x 4k detector (TAN-SIP truth, 10 mas noise).
- ``characterize_fit_wcs``: the whole match + fit (:func:`~lsstdrp.characterize.fit_wcs`)
  from a WCS 60" / 1 deg / 2% off, catalog-level simulation (no peer).

Acceptance (``python benchmarks/bench_characterize.py``): the 200-trial matcher run
(initial WCS errors up to 60", 1 degree, 2%; and 200 more exactly at those limits), the
fitted-minus-true WCS rms against the fits' own covariance over 40 detectors, the
visit-level fit over 4 visits of 3 x 3 detectors, and ``characterize_exposure`` with the
default pixel-grid PSF on a rendered 1024² detector; the numbers are printed.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np


def _pairs() -> dict[str, Any]:
    from astropy.wcs import WCS, Sip

    w0 = WCS(naxis=2)
    w0.wcs.ctype = ["RA---TAN-SIP", "DEC--TAN-SIP"]
    w0.wcs.crval = [150.0, 2.0]
    w0.wcs.crpix = [2048.5, 2048.5]
    w0.wcs.cd = np.array([[-5.5e-5, 1e-6], [1.2e-6, 5.5e-5]])
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    a[2, 0], a[1, 1], a[0, 3] = 2e-7, -1e-7, 3e-11
    b[0, 2], b[2, 1] = 1.5e-7, -2e-11
    w0.sip = Sip(a, b, None, None, w0.wcs.crpix)
    w0.wcs.set()
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 4095, 500), rng.uniform(0, 4095, 500)
    ra, dec = w0.pixel_to_world_values(x, y)
    ra = ra + rng.normal(0, 0.01, 500) / 3600 / np.cos(np.radians(dec))
    dec = dec + rng.normal(0, 0.01, 500) / 3600
    return {"x": x, "y": y, "ra": ra, "dec": dec, "truth": w0}


def _lsstdrp_tansip(d: dict[str, Any]) -> Any:
    from lsstdrp.characterize import fit_tan_sip

    return fit_tan_sip(d["x"], d["y"], d["ra"], d["dec"], order=3, sigma_arcsec=0.01, bbox=(0, 4095, 0, 4095)).wcs


def _astropy_tansip(d: dict[str, Any]) -> Any:
    from astropy.coordinates import SkyCoord
    from astropy.wcs.utils import fit_wcs_from_points

    return fit_wcs_from_points((d["x"], d["y"]), SkyCoord(d["ra"], d["dec"], unit="deg"), projection="TAN",
                               sip_degree=3)


def _fit_wcs_setup() -> dict[str, Any]:
    from lsstdrp.sim import make_survey

    s = make_survey("tiny", rng=5, render=False, det_shape=(1024, 1024), star_density_arcmin2=20.0,
                    airmass_range=(1.0, 1.0), turbulence_polynomial_order=2, n_visits=1)
    key = s.keys()[0]
    return {"cat": s.catalogs[key], "ref": s.refcat_astrometric,
            "wcs": _perturb(s.truth[key].tan_sip.wcs, np.random.default_rng(0)), "mjd": s.truth[key].mjd}


def _fit_wcs_run(d: dict[str, Any]) -> Any:
    from lsstdrp.characterize import fit_wcs

    return fit_wcs(d["cat"], d["ref"], wcs=d["wcs"], mjd=d["mjd"], sip_order=2)


def benchmarks() -> list[dict]:
    """The characterize benchmarks (see the module docstring)."""
    return [
        {"name": "characterize_fit_tan_sip", "setup": _pairs, "lsstdrp": _lsstdrp_tansip, "peer": _astropy_tansip,
         "peer_name": "astropy", "repeats": 5},
        {"name": "characterize_fit_wcs", "setup": _fit_wcs_setup, "lsstdrp": _fit_wcs_run, "peer": None,
         "peer_name": None, "repeats": 5},
    ]


def _perturb(w: Any, rng: np.random.Generator, max_offset: float = 60.0, max_rot: float = 1.0,
             max_scale: float = 0.02, extreme: bool = False) -> Any:
    w = w.deepcopy()
    off = max_offset * (1.0 if extreme else math.sqrt(rng.uniform()))
    ang = rng.uniform(0, 2 * np.pi)
    rot = np.radians(rng.choice([-max_rot, max_rot]) if extreme else rng.uniform(-max_rot, max_rot))
    sc = 1 + (rng.choice([-max_scale, max_scale]) if extreme else rng.uniform(-max_scale, max_scale))
    r = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]]) * sc
    w.wcs.cd = r @ w.wcs.cd
    dec = w.wcs.crval[1]
    w.wcs.crval = w.wcs.crval + np.array([off * np.cos(ang) / 3600 / np.cos(np.radians(dec)),
                                          off * np.sin(ang) / 3600])
    w.wcs.set()
    return w


def _sky_err_mas(w: Any, truth: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    a = np.array(w.pixel_to_world_values(x, y), float)
    b = np.array(truth.pixel_to_world_values(x, y), float)
    d = (a - b) * 3.6e6
    d[0] *= np.cos(np.radians(b[1]))
    return d


def acceptance(n_trials: int = 200) -> dict[str, float]:
    """Full-scale acceptance numbers (printed by ``__main__``)."""
    from lsstdrp.characterize import fit_visit_wcs, fit_wcs
    from lsstdrp.sim import make_survey

    out: dict[str, float] = {}
    # 1. matcher: 200 trials over 8 visits x 4 detectors of 1024², offsets <= 60", 1 deg, 2%
    s = make_survey("tiny", rng=5, render=False, det_shape=(1024, 1024), star_density_arcmin2=20.0,
                    airmass_range=(1.0, 1.0), turbulence_polynomial_order=2, n_visits=8)
    rng = np.random.default_rng(2024)
    keys = s.keys()
    n_ok, worst = 0, 0.0
    for t in range(n_trials):
        key = keys[t % len(keys)]
        res = fit_wcs(s.catalogs[key], s.refcat_astrometric, wcs=_perturb(s.truth[key].tan_sip.wcs, rng),
                      mjd=s.truth[key].mjd, sip_order=2)
        if res.success:
            n_ok += 1
            gx, gy = np.meshgrid(np.linspace(0, 1023, 5), np.linspace(0, 1023, 5))
            worst = max(worst, float(np.hypot(*_sky_err_mas(res.wcs, s.truth[key].wcs, gx.ravel(), gy.ravel())).max()))
    out["matcher_successes"] = n_ok
    out["matcher_trials"] = n_trials
    out["matcher_worst_error_mas"] = worst
    # the same exactly at the limits (60", +-1 degree, +-2%), default airmass (DCR on)
    s2 = make_survey("tiny", rng=9, render=False, det_shape=(1024, 1024), star_density_arcmin2=20.0, n_visits=8)
    n_ok = 0
    for t in range(n_trials):
        key = s2.keys()[t % len(s2.keys())]
        res = fit_wcs(s2.catalogs[key], s2.refcat_astrometric, wcs=_perturb(s2.truth[key].tan_sip.wcs, rng,
                                                                            extreme=True),
                      mjd=s2.truth[key].mjd, sip_order=2)
        n_ok += res.success
    out["matcher_at_limits_successes"] = n_ok
    # 2. single-frame WCS vs its covariance: 10 visits x 4 detectors
    s = make_survey("tiny", rng=11, render=False, det_shape=(1024, 1024), star_density_arcmin2=60.0,
                    refcat_mag_limit=21.5, airmass_range=(1.0, 1.0), turbulence_polynomial_order=2, n_visits=10)
    num, den = [], []
    for key in s.keys():
        res = fit_wcs(s.catalogs[key], s.refcat_astrometric, wcs=s.truth[key].tan_sip.wcs, mjd=s.truth[key].mjd,
                      sip_order=3)
        x, y = np.asarray(res.matches["x"].value), np.asarray(res.matches["y"].value)
        num.append(np.mean(_sky_err_mas(res.wcs, s.truth[key].wcs, x, y) ** 2))
        den.append(np.mean(np.asarray(res.matches["predicted_mas"].value) ** 2))
    out["wcs_true_over_predicted_rms"] = math.sqrt(np.mean(num) / np.mean(den))
    out["wcs_single_frame_true_rms_mas"] = math.sqrt(np.mean(num))
    out["wcs_fits"] = len(num)
    # 3. visit-level fit: 4 visits of 3 x 3 detectors
    s = make_survey("tiny", rng=7, render=False, n_det_x=3, n_det_y=3, det_shape=(1024, 1024),
                    star_density_arcmin2=20.0, airmass_range=(1.0, 1.0), turbulence_polynomial_order=2, n_visits=4)
    vis_sq, single_sq, pred_sq = [], [], []
    for v in sorted({k[0] for k in s.keys()}):
        ks = [k for k in s.keys() if k[0] == v]
        res = fit_visit_wcs({k[1]: s.catalogs[k] for k in ks}, s.refcat_astrometric,
                            wcs={k[1]: _perturb(s.truth[k].tan_sip.wcs, rng) for k in ks}, mjd=s.truth[ks[0]].mjd,
                            order=4)
        for k in ks:
            m = res.residuals[res.residuals["detector"] == k[1]]
            vis_sq.append(_sky_err_mas(res.wcs[k[1]], s.truth[k].wcs, np.asarray(m["x"].value),
                                       np.asarray(m["y"].value)) ** 2)
            f = res.detector_fits[k[1]]
            single_sq.append(_sky_err_mas(f.wcs, s.truth[k].wcs, np.asarray(f.matches["x"].value),
                                          np.asarray(f.matches["y"].value)) ** 2)
        pred_sq.append(np.asarray(res.residuals["predicted_mas"].value) ** 2)
    out["visit_wcs_true_rms_mas"] = float(np.sqrt(np.mean(np.concatenate(vis_sq, 1))))
    out["visit_wcs_predicted_rms_mas"] = float(np.sqrt(np.mean(np.concatenate(pred_sq))))
    out["visit_single_frame_true_rms_mas"] = float(np.sqrt(np.mean(np.concatenate(single_sq, 1))))
    # 4. the recipe with the default pixel-grid PSF on a rendered 1024² detector
    out.update(recipe_run())
    return out


def recipe_run(psf_model: str = "pixel") -> dict[str, float]:
    """characterize_exposure on one rendered detector, compared with the truth."""
    import time

    from lsstdrp.characterize import characterize_exposure
    from lsstdrp.sim import make_survey

    s = make_survey("tiny", rng=1, n_visits=1, n_det_x=1, n_det_y=1, det_shape=(1024, 1024),
                    star_density_arcmin2=20.0)
    key = s.keys()[0]
    tr = s.truth[key]
    exp = s.exposures[key].replace(psf=None, photo_calib=None)
    t0 = time.perf_counter()
    res = characterize_exposure(exp, s.refcat_astrometric, photometric_refcat=s.refcat_photometric,
                                psf_model=psf_model)
    out = {"recipe_seconds": time.perf_counter() - t0, "recipe_success": float(res.success)}
    if res.exposure.psf is not None:
        out["recipe_psf_size_ratio"] = (sum(res.exposure.psf.moments(511.5, 511.5)[:2])
                                        / sum(tr.psf.moments(511.5, 511.5)[:2]))
    if res.photometry_result is not None and res.photometry_result.success:
        out["recipe_dzp_mmag"] = 1000 * (res.photometry_result.zeropoint - tr.photo_calib.zeropoint)
        out["recipe_sigma_zp_mmag"] = 1000 * res.photometry_result.zeropoint_err
    if res.wcs_result is not None and res.wcs_result.success:
        m = res.wcs_result.matches
        d = _sky_err_mas(res.exposure.wcs, tr.wcs, np.asarray(m["x"].value), np.asarray(m["y"].value))
        out["recipe_wcs_true_rms_mas"] = float(np.sqrt(np.mean(d**2)))
    return out


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    for k, v in acceptance(n).items():
        print(f"{k}: {v}")
