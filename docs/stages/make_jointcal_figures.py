"""Make the figures of docs/stages/jointcal.rst (run from the repository root).

    python docs/stages/make_jointcal_figures.py

The survey is the CI-sized one of tests/jointcal/test_jointcal_photometry.py: 3 x 3
detectors, 10 visits (g, r), placement errors, optical distortion, cubic per-visit
turbulence, spatially varying zeropoints; the initial WCSs are the truth's TAN-SIP
with 0.3" pointing, 5" rotation and 1e-5 scale errors per exposure.
"""

from __future__ import annotations

import copy
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.table import vstack  # noqa: E402

from lsstdrp import sim  # noqa: E402
from lsstdrp.jointcal import associate, eb_correlation, fit_astrometry, fit_photometry  # noqa: E402

HERE = Path(__file__).resolve().parent
CONFIG = dict(n_det_x=3, n_det_y=3, det_shape=(384, 384), n_visits=10, bands=("g", "r"),
              star_density_arcmin2=150.0, galaxy_density_arcmin2=0.0, airmass_range=(1.0, 1.0),
              n_bright_stars=0, bandpass_shift_nm=0.0)


def perturbed(s, seed=2, shift=0.3, rot=5.0):
    rng = np.random.default_rng(seed)
    out = {}
    for key in s.keys():
        w = copy.deepcopy(s.truth[key].tan_sip.wcs)
        dra, ddec = rng.normal(0.0, shift, 2) / 3600.0
        w.wcs.crval = [w.wcs.crval[0] + dra / np.cos(np.deg2rad(w.wcs.crval[1])), w.wcs.crval[1] + ddec]
        th = rng.normal(0.0, rot) / 206264.8
        w.wcs.cd = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]) @ w.wcs.cd * (1 + rng.normal(0, 1e-5))
        w.wcs.set()
        out[key] = w
    return out


def residual_field(s, to_sky, visit):
    """Fitted minus true sky position (mas) at the true pixel positions of the stars of one
    visit, with their focal-plane positions (mm)."""
    fx, fy, dx, dy = [], [], [], []
    for key in s.keys():
        if key[0] != visit:
            continue
        c = s.catalogs[key]
        xt, yt = np.asarray(c["x_true"].value), np.asarray(c["y_true"].value)
        ra, dec = s.truth[key].wcs.pixel_to_world_values(xt, yt)
        rf, df = to_sky(key, xt, yt)
        dx.append((rf - ra) * np.cos(np.deg2rad(dec)) * 3.6e6)
        dy.append((df - dec) * 3.6e6)
        u, v = s.focal_plane.nominal_pixel_to_focal(key[1], xt, yt)
        fx.append(np.ravel(u))
        fy.append(np.ravel(v))
    return [np.concatenate(a) for a in (fx, fy, dx, dy)]


def whisker(ax, fx, fy, dx, dy, title, key_mas):
    edges = np.linspace(min(fx.min(), fy.min()), max(fx.max(), fy.max()), 10)
    scale = key_mas / (0.9 * (edges[1] - edges[0]))  # a key-length arrow spans 0.9 bin
    ix, iy = np.digitize(fx, edges), np.digitize(fy, edges)
    cx, cy, ux, uy = [], [], [], []
    for i in range(1, len(edges)):
        for j in range(1, len(edges)):
            m = (ix == i) & (iy == j)
            if m.sum() >= 3:
                cx.append(fx[m].mean()), cy.append(fy[m].mean()), ux.append(dx[m].mean()), uy.append(dy[m].mean())
    q = ax.quiver(cx, cy, ux, uy, angles="xy", scale_units="xy", scale=scale, width=0.004)
    ax.quiverkey(q, 0.75, 1.06, key_mas, f"{key_mas:g} mas", labelpos="E")
    ax.set_title(title, fontsize=9, loc="left", pad=18)
    ax.set_xlabel("focal plane x [mm]")
    ax.set_aspect("equal")


def main() -> None:
    s = sim.make_survey("tiny", rng=7, render=False, turbulence_polynomial_order=3, **CONFIG)
    cat = vstack([s.catalogs[k] for k in s.keys()], metadata_conflicts="silent")
    init = perturbed(s)
    a = associate(cat, s.visits, init, s.refcat_astrometric)
    r = fit_astrometry(a, rng=0, nominal_focal_plane=s.focal_plane.nominal_pixel_to_focal)
    p = fit_photometry(a, s.refcat_photometric, astrometry=r, rng=0)
    visit = int(s.visits["visit"][0])

    before = residual_field(s, lambda k, x, y: init[k].all_pix2world(x, y, 0), visit)
    after = residual_field(s, lambda k, x, y: r.model.pixel_to_sky(k[0], k[1], x, y), visit)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
    rms_b = np.sqrt(np.mean(np.square(before[2:])))
    rms_a = np.sqrt(np.mean(np.square(after[2:])))
    whisker(axes[0], *before, f"initial WCS minus truth (rms {rms_b:.0f} mas)", key_mas=200.0)
    whisker(axes[1], *after, f"joint fit minus truth (rms {rms_a:.2f} mas)", key_mas=1.0)
    axes[0].set_ylabel("focal plane y [mm]")
    fig.tight_layout()
    fig.savefig(HERE / "jointcal_whiskers.png", dpi=110)
    plt.close(fig)

    # zeropoint map of one visit: fitted calibration minus truth, and the fitted map itself
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.0))
    xs, ys, zf, zd = [], [], [], []
    g = np.linspace(0, CONFIG["det_shape"][0] - 1, 24)
    gx, gy = [a_.ravel() for a_ in np.meshgrid(g, g)]
    for key, pc in p.photo_calib.items():
        if key[0] != visit:
            continue
        u, v = s.focal_plane.nominal_pixel_to_focal(key[1], gx, gy)
        zfit = pc.instflux_to_mag(np.ones_like(gx), gx, gy)
        xs.append(np.ravel(u)), ys.append(np.ravel(v)), zf.append(zfit)
        zd.append((zfit - s.truth[key].zeropoint_map(gx, gy)) * 1e3)
    xs, ys, zf, zd = (np.concatenate(t) for t in (xs, ys, zf, zd))
    im = axes[0].scatter(xs, ys, c=(zf - np.median(zf)) * 1e3, s=4, cmap="viridis")
    fig.colorbar(im, ax=axes[0], label="fitted zeropoint - median [mmag]")
    im = axes[1].scatter(xs, ys, c=zd, s=4, cmap="RdBu_r", vmin=-5, vmax=5)
    fig.colorbar(im, ax=axes[1], label="fitted - true [mmag]")
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_xlabel("focal plane x [mm]")
    axes[0].set_title(f"visit {visit} ({s.visits['band'][0]}): zeropoint map", fontsize=9, loc="left")
    axes[1].set_title(f"its error (rms {np.sqrt(np.mean(zd**2)):.2f} mmag)", fontsize=9, loc="left")
    fig.tight_layout()
    fig.savefig(HERE / "jointcal_zeropoint.png", dpi=110)
    plt.close(fig)

    # E/B-mode correlation of the residuals with full (sub-polynomial) turbulence
    st = sim.make_survey("tiny", rng=8, render=False, turbulence_polynomial_order=None, turbulence_rms_mas=8.0,
                         **{**CONFIG, "n_visits": 6, "bands": ("r",), "star_density_arcmin2": 80.0})
    ct = vstack([st.catalogs[k] for k in st.keys()], metadata_conflicts="silent")
    at = associate(ct, st.visits, perturbed(st, 4), st.refcat_astrometric)
    rt = fit_astrometry(at, rng=0, systematic_error_mas=2.0)
    res = rt.residuals[rt.residuals["used"]]
    rms_t = np.sqrt(np.mean(np.square(residual_field(st, lambda k, x, y: rt.model.pixel_to_sky(k[0], k[1], x, y),
                                                      int(st.visits["visit"][0]))[2:])))
    t = eb_correlation(res["xi"].value, res["eta"].value, res["dxi_mas"].value, res["deta_mas"].value,
                       group=res["visit"], bins=np.geomspace(4, 200, 9), rng=0)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    rr = np.asarray(getattr(t["r"], "value", t["r"]))
    ax.plot(rr, np.asarray(t["xi_e"]), "o-", label=r"$\xi_E$")
    ax.plot(rr, np.asarray(t["xi_b"]), "s-", label=r"$\xi_B$")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("separation [arcsec]")
    ax.set_ylabel(r"correlation [mas$^2$]")
    ax.set_title(f"residuals with 8 mas von Kármán turbulence (error rms {rms_t:.1f} mas)", fontsize=9, loc="left")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "jointcal_eb.png", dpi=110)
    plt.close(fig)
    print(f"whiskers: before {rms_b:.1f} mas, after {rms_a:.3f} mas")


if __name__ == "__main__":
    main()
