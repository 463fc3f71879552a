"""Benchmark and full-scale acceptance of lsstdrp.jointcal (issue 7).

Data: the catalog-level simulator (``sim.catalog_sources``: Cramér–Rao measurement
errors of a PSF fit, no pixels) for 100 visits alternating g and r, 3 x 3 detectors of
2048 x 2048 px (0.2"/px), ~2100 stars per detector (1.9 million measurements), 120"
dithers, per-detector placement errors, the radial optical distortion, per-visit
turbulence kept inside a cubic polynomial, spatially varying zeropoints, airmass 1 (no
colour-dependent refraction: the astrometric model has no colour term) and the
bandpass shift off. The initial WCSs are the truth's TAN-SIP approximations.

- ``jointcal_100x9x2000``: ``associate`` + ``fit_astrometry`` + ``fit_photometry`` on
  the whole set (no peer: gbdes/FGCM are not Python libraries; the issue's budget is
  < 60 s and a peak-RSS increase < 4 GB on this 2-core machine).

Run with ``python benchmarks/run.py --only jointcal --repeats 1``. Run this file
directly (``python benchmarks/bench_jointcal.py [n_visits ...]``) for the full-scale
acceptance numbers (astrometry vs truth and vs the fit's own covariance, chi2/dof,
photometry vs truth, repeatability, absolute offset, colour bias) and the time as a
function of the number of visits.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from typing import Any

import numpy as np

N_VISITS = 100
CONFIG = dict(n_visits=N_VISITS, det_shape=(2048, 2048), star_density_arcmin2=45.0, galaxy_density_arcmin2=0.0,
              turbulence_polynomial_order=3, airmass_range=(1.0, 1.0), bandpass_shift_nm=0.0,
              dither_arcsec=120.0)


@functools.lru_cache(maxsize=1)
def make_data() -> dict[str, Any]:
    """The simulated survey and its catalogs (catalog-level mode; ~1-2 min)."""
    from lsstdrp import sim

    s = sim.make_survey("small", rng=11, render=False, progress=False, **CONFIG)
    return {"survey": s, "catalog": s.all_catalogs(), "visits": s.visits,
            "wcs": {k: s.truth[k].tan_sip.wcs for k in s.keys()},
            "refcat": s.refcat_astrometric, "phot": s.refcat_photometric,
            "nominal": s.focal_plane.nominal_pixel_to_focal}


def run_chain(d: dict[str, Any], visits: Any = None) -> tuple[Any, Any, Any]:
    """associate -> fit_astrometry -> fit_photometry (optionally on a subset of visits)."""
    from lsstdrp.jointcal import associate, fit_astrometry, fit_photometry

    cat, wcs = d["catalog"], d["wcs"]
    if visits is not None:
        cat = cat[np.isin(np.asarray(cat["visit"]), visits)]
        wcs = {k: w for k, w in wcs.items() if k[0] in set(visits)}
    a = associate(cat, d["visits"], wcs, d["refcat"])
    r = fit_astrometry(a, rng=0, nominal_focal_plane=d["nominal"])
    p = fit_photometry(a, d["phot"], astrometry=r, rng=0)
    return a, r, p


def benchmarks() -> list[dict]:
    return [{"name": "jointcal_100x9x2000", "setup": make_data, "lsstdrp": run_chain, "peer": None,
             "peer_name": "gbdes (not Python; none)", "repeats": 1}]


def acceptance(d: dict[str, Any], a: Any, r: Any, p: Any) -> dict[str, float]:
    """Full-scale figures of issue 7 against the simulator's truth."""
    from lsstdrp import sim

    s = d["survey"]
    err, pred, dz = [], [], []
    for key in r.wcs:
        c = s.catalogs[key]
        star = np.asarray(c["kind"]) == "star"
        xt, yt = np.asarray(c["x_true"].value)[star], np.asarray(c["y_true"].value)[star]
        ra, dec = s.truth[key].wcs.pixel_to_world_values(xt, yt)
        rf, df = r.model.pixel_to_sky(key[0], key[1], xt, yt)
        err.append(np.stack([(rf - ra) * np.cos(np.deg2rad(dec)) * 3.6e6, (df - dec) * 3.6e6], -1))
        sub = slice(0, len(xt), 7)
        pred.append(np.trace(r.wcs_error(key[0], key[1], xt[sub], yt[sub]), axis1=1, axis2=2) / 2)
        dz.append(p.photo_calib[key].instflux_to_mag(np.ones_like(xt), xt, yt) - s.truth[key].zeropoint_map(xt, yt))
    err, pred, dz = np.concatenate(err), np.concatenate(pred), np.concatenate(dz)
    out = {"astrometry_rms_mas": float(np.sqrt(np.mean(err**2))),
           "astrometry_predicted_mas": float(np.sqrt(np.mean(pred)))}
    out["astrometry_ratio"] = out["astrometry_rms_mas"] / out["astrometry_predicted_mas"]
    out.update(chi2_dof=r.chi2_dof, chi2_dof_bright=r.chi2_dof_bright,
               export_max_error_mas=float(np.max(np.asarray(getattr(r.export_error["max_error_mas"], "value", r.export_error["max_error_mas"])))),
               photometry_rms_mmag=float(np.sqrt(np.mean(dz**2)) * 1e3),
               photometry_mean_mmag=float(np.mean(dz) * 1e3))
    # detector placement vs truth, in the fit's gauge (common rotation and shift removed)
    fp, pl = s.focal_plane, r.placement
    abar = float(np.mean(fp.rotation_rad))
    ny, nx = fp.det_shape
    c0 = np.array([np.ravel(fp.nominal_pixel_to_focal(k, (nx - 1) / 2, (ny - 1) / 2)) for k in range(fp.n_detectors)])
    pos = c0 + np.stack([fp.shift_x_mm, fp.shift_y_mm], -1)
    ca, sa = math.cos(-abar), math.sin(-abar)
    rel = np.stack([ca * pos[:, 0] - sa * pos[:, 1], sa * pos[:, 0] + ca * pos[:, 1]], -1) - c0
    rel -= rel.mean(axis=0)
    pulls = np.concatenate([(pl["shift_x_mm"].value - rel[:, 0]) / pl["shift_x_mm_err"].value,
                            (pl["shift_y_mm"].value - rel[:, 1]) / pl["shift_y_mm_err"].value,
                            (pl["rotation_rad"].value - (np.asarray(fp.rotation_rad) - abar))
                            / pl["rotation_rad_err"].value])
    out["placement_max_abs_pull"] = float(np.max(np.abs(pulls)))
    for b in ("g", "r"):
        out[f"repeatability_excess_{b}_mmag"] = p.repeatability[b]["excess_mmag"]
        out[f"absolute_offset_{b}_mmag"] = p.absolute_offset[b]["offset_mmag"]
        out[f"absolute_offset_err_{b}_mmag"] = p.absolute_offset[b]["err_mmag"]
    # colours of bright, non-variable stars whose object holds one truth star
    m = a.measurements
    obj, tid = np.asarray(m["object"]), np.asarray(m["object_id"])
    first = np.full(len(a.objects), -1)
    first[obj] = tid
    mixed = np.zeros(len(a.objects), bool)
    mixed[obj[tid != first[obj]]] = True
    ob = p.objects
    col, cerr = ob["color_g_r"].value, ob["color_g_r_err"].value
    sel = np.isfinite(col) & (cerr < 0.005) & ~mixed & ~np.asarray(ob["variable"]) & (first >= 0)
    row = {int(i): k for k, i in enumerate(np.asarray(s.objects["id"]))}
    idx = np.nonzero(sel)[0]
    ks = np.array([row.get(int(first[o]), -1) for o in idx])
    keep = ks >= 0
    idx, ks = idx[keep], ks[keep]
    off = sim.ab_magnitude_offsets(np.asarray(s.objects["temperature"])[ks], ["g", "r"], reference_band="r")
    dcol = col[idx] - (np.asarray(off["g"]) - np.asarray(off["r"]))
    w = cerr[idx] ** -2
    out["colour_bias_mmag"] = float(np.average(dcol, weights=w) * 1e3)
    out["colour_bias_stat_mmag"] = 1e3 / math.sqrt(float(np.sum(w)))
    out["n_colour_stars"] = int(idx.size)
    return out


def main(argv: list[str]) -> None:
    import resource

    t0 = time.perf_counter()
    d = make_data()
    n_meas = len(d["catalog"])
    print(f"simulated {n_meas} measurements in {time.perf_counter() - t0:.1f} s "
          f"({n_meas / len(d['wcs']):.0f} per detector)", flush=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    vis_all = np.unique(np.asarray(d["catalog"]["visit"]))
    for nv in [int(x) for x in argv] or [10, 25, 50, N_VISITS]:
        t, c = time.perf_counter(), time.process_time()
        a, r, p = run_chain(d, vis_all[:nv] if nv < len(vis_all) else None)
        print(f"visits {nv:3d}: associate+astrometry+photometry {time.perf_counter() - t:.1f} s "
              f"({time.process_time() - c:.1f} s CPU), chi2/dof {r.chi2_dof:.4f}", flush=True)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB (after the simulation: "
          f"{rss0:.0f} MB)")
    for k, v in acceptance(d, a, r, p).items():
        print(f"  {k:32s} {v:.4g}")


if __name__ == "__main__":
    main(sys.argv[1:])
