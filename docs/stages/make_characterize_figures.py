"""Make the figures of docs/stages/characterize.rst (run from the repository root).

    python docs/stages/make_characterize_figures.py

- characterize_whiskers.png: astrometric residuals (fitted model minus Gaia-like
  reference, mas) across a 3 x 3 focal plane, single-frame fits vs the visit-level fit,
  and the fitted-minus-true error of both;
- characterize_zeropoint.png: the zeropoint map fitted per detector by fit_photo_calib
  (spatial and colour-spatial order 1) next to the simulator's true map;
- characterize_background.png: visit-level vs per-detector background residuals.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lsstdrp.characterize import (estimate_background, fit_photo_calib, fit_visit_background,  # noqa: E402
                                  fit_visit_wcs)
from lsstdrp.sim import make_survey  # noqa: E402

HERE = Path(__file__).resolve().parent


def _focal(s, key, x, y):
    fp = s.focal_plane
    fx, fy = fp.nominal_pixel_to_focal(key[1], x, y)
    return np.asarray(fx), np.asarray(fy)


def whiskers() -> None:
    s = make_survey("tiny", rng=7, render=False, n_det_x=3, n_det_y=3, det_shape=(1024, 1024),
                    star_density_arcmin2=20.0, airmass_range=(1.0, 1.0), turbulence_polynomial_order=2, n_visits=1)
    keys = s.keys()
    res = fit_visit_wcs({d: s.catalogs[(v, d)] for v, d in keys}, s.refcat_astrometric,
                        wcs={d: s.truth[(v, d)].tan_sip.wcs for v, d in keys}, mjd=s.truth[keys[0]].mjd, order=4)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.3))
    for ax, title, which in ((axes[0], "single-frame TAN-SIP (order 2) minus truth", "single"),
                             (axes[1], "visit-level model minus truth", "visit")):
        rms = []
        for v, d in keys:
            if which == "single":
                f = res.detector_fits[d]
                x, y, w = np.asarray(f.matches["x"].value), np.asarray(f.matches["y"].value), f.wcs
            else:
                m = res.residuals[res.residuals["detector"] == d]
                x, y, w = np.asarray(m["x"].value), np.asarray(m["y"].value), res.wcs[d]
            a = np.array(w.pixel_to_world_values(x, y))
            b = np.array(s.truth[(v, d)].wcs.pixel_to_world_values(x, y))
            dra = (a[0] - b[0]) * np.cos(np.radians(b[1])) * 3.6e6
            ddec = (a[1] - b[1]) * 3.6e6
            rms.append(np.concatenate([dra, ddec]))
            fx, fy = _focal(s, (v, d), x, y)
            ax.quiver(fx, fy, dra, ddec, angles="xy", scale_units="xy", scale=4.0, width=0.003, color="C0")
            cx, cy = _focal(s, (v, d), np.array([0, 1023, 1023, 0, 0]), np.array([0, 0, 1023, 1023, 0]))
            ax.plot(cx, cy, color="0.6", lw=0.8)
        r = float(np.sqrt(np.mean(np.concatenate(rms) ** 2)))
        ax.quiver([-16], [18], [10], [0], angles="xy", scale_units="xy", scale=4.0, width=0.004, color="k")
        ax.text(-16, 18.7, "10 mas", fontsize=9)
        ax.set_xlim(-18, 18)
        ax.set_ylim(-18, 20)
        ax.set_title(f"{title}\nrms {r:.1f} mas per axis", fontsize=10)
        ax.set_xlabel("focal plane x (mm)")
        ax.set_aspect("equal")
    axes[0].set_ylabel("focal plane y (mm)")
    fig.tight_layout()
    fig.savefig(HERE / "characterize_whiskers.png", dpi=90)
    plt.close(fig)


def zeropoint() -> None:
    s = make_survey("tiny", rng=22, render=False, n_det_x=3, n_det_y=3, det_shape=(1024, 1024),
                    star_density_arcmin2=60.0, bands=("g", "r"), n_visits=2, refcat_mag_limit=21.0,
                    zeropoint_variation_mmag=30.0)
    v = int(s.visits["visit"][1])  # the r-band visit
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    gx, gy = np.meshgrid(np.linspace(0, 1023, 24), np.linspace(0, 1023, 24))
    fits, truths = [], []
    for d in range(9):
        key = (v, d)
        tr = s.truth[key]
        res = fit_photo_calib(s.catalogs[key], s.refcat_photometric, band=tr.band, wcs=tr.wcs, color=("g", "r"),
                              color_order=1, spatial_order=1, color_spatial_order=1, bbox=(0, 1023, 0, 1023))
        # AB mag of 1 e- at (x, y): zp at the centre minus 2.5 log10 of the spatial factor
        fitted = res.zeropoint - 2.5 * np.log10(1 + _spatial(res.photo_calib, gx, gy))
        fits.append(fitted)
        truths.append(tr.zeropoint_map(gx.ravel(), gy.ravel()).reshape(gx.shape))
    vmin = min(np.min(t) for t in truths) * 1000
    vmax = max(np.max(t) for t in truths) * 1000
    off = np.mean([np.mean(t) for t in truths])
    for ax, maps, title in ((axes[0], fits, "fitted (fit_photo_calib per detector)"), (axes[1], truths, "truth")):
        for d in range(9):
            fx, fy = _focal(s, (v, d), gx, gy)
            im = ax.pcolormesh(fx, fy, (maps[d] - off) * 1000, vmin=vmin - off * 1000, vmax=vmax - off * 1000,
                               shading="auto", cmap="viridis")
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("focal plane x (mm)")
    axes[0].set_ylabel("focal plane y (mm)")
    fig.colorbar(im, ax=axes, label="zeropoint - mean (mmag)", shrink=0.85)
    fig.savefig(HERE / "characterize_zeropoint.png", dpi=90)
    plt.close(fig)


def _spatial(pc, x, y):
    from numpy.polynomial import chebyshev as cheb

    if pc.spatial_coefficients is None:
        return np.zeros_like(x)
    x0, x1, y0, y1 = pc.bbox
    xs = (2 * x - (x0 + x1)) / (x1 - x0)
    ys = (2 * y - (y0 + y1)) / (y1 - y0)
    return cheb.chebval2d(xs, ys, pc.spatial_coefficients)


def background() -> None:
    s = make_survey("tiny", rng=8, n_det_x=3, n_det_y=3, n_visits=1, sky_gradient_frac=0.05, trail_probability=0.0)
    exps = {d: s.exposures[(v, d)] for v, d in s.keys()}
    bg = fit_visit_background(exps, order=3, bin_size=32)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for ax, title, which in ((axes[0], "per-detector estimate_background", "det"),
                             (axes[1], "fit_visit_background (order 3)", "visit")):
        rs = []
        for v, d in s.keys():
            tr = s.truth[(v, d)]
            sig = float(np.sqrt(np.median(tr.background) + s.config.read_noise**2))
            model = (bg.backgrounds[d] if which == "visit" else
                     estimate_background(exps[d].image, mask=exps[d].mask, bin_size=32, detect_iterations=1).background)
            r = (model - tr.background) / sig
            rs.append(r.ravel())
            yy, xx = np.mgrid[0:256:4, 0:256:4]
            fx, fy = _focal(s, (v, d), xx, yy)
            im = ax.pcolormesh(fx, fy, r[::4, ::4], vmin=-0.15, vmax=0.15, cmap="RdBu_r", shading="auto")
        ax.set_aspect("equal")
        ax.set_title(f"{title}\nresidual rms {np.sqrt(np.mean(np.concatenate(rs) ** 2)):.3f} sigma_sky", fontsize=10)
        ax.set_xlabel("focal plane x (mm)")
    axes[0].set_ylabel("focal plane y (mm)")
    fig.colorbar(im, ax=axes, label="(model - true sky) / sigma_sky", shrink=0.85)
    fig.savefig(HERE / "characterize_background.png", dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    whiskers()
    zeropoint()
    background()
