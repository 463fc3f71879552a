"""Make the figures of docs/stages/psf.rst: ``python docs/stages/psf_make_figures.py``.

One simulated visit (2 x 2 detectors of 512 x 512, GalSim truth PSF): isolated
simulated stars, a visit-level fit, and the residual diagnostics -- the mean normalised
residual stamp, the per-star size residual over the focal plane, and model minus truth
at the reserved positions.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from astropy.table import QTable  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402

from lsstdrp.measure import adaptive_moments  # noqa: E402
from lsstdrp.psf import fit_visit_psf, residual_maps  # noqa: E402
from lsstdrp.sim import color_index, make_survey  # noqa: E402

OUT = Path(__file__).parent


def _isolated(tr, n):
    src = tr.sources
    x, y, f = (np.asarray(src[c], float) for c in ("x", "y", "flux"))
    tree = cKDTree(np.c_[x, y])
    iso = np.array([not any(f[j] > 2e-3 * f[i] for j in nb if j != i)
                    for i, nb in enumerate(tree.query_ball_point(np.c_[x, y], 20.0))])
    ok = (np.asarray(src["kind"]) == "star") & np.asarray(src["in_image"]) & iso
    ok &= (x > 16) & (x < n - 17) & (y > 16) & (y < n - 17)
    return src[ok]


def _t(k):
    c = (k.shape[0] - 1) / 2
    r = adaptive_moments(k, c, c, guess_sigma=2.0)
    return float(r.ixx[0] + r.iyy[0])


def main() -> None:
    s = make_survey("tiny", rng=5, det_shape=(512, 512), star_density_arcmin2=40.0, star_mag_range=(17.0, 20.5),
                    galaxy_density_arcmin2=1.0, n_visits=1, n_bright_stars=0, n_transients=0, n_sso=0,
                    trail_probability=0.0)
    exps, cats, trs, truth = {}, {}, {}, {}
    for v, d in s.keys():
        st = _isolated(s.truth[(v, d)], 512)
        e = s.exposure(v, d)
        exps[d] = (e.image - s.truth[(v, d)].background.astype(np.float32), e.variance, e.mask)
        cats[d] = QTable({"x": np.asarray(st["x"]), "y": np.asarray(st["y"]),
                          "gi": np.asarray(color_index(np.asarray(st["temperature"]), "g-i")),
                          "psf_reserved": np.random.default_rng(d).random(len(st)) < 0.2})
        trs[d] = (lambda x, y, d=d: s.focal_plane.pixel_to_focal(d, x, y))
        truth[d] = s.truth[(v, d)].psf
    res = fit_visit_psf(exps, cats, trs, spatial_order=2, detector_order=0)
    maps = residual_maps(res, transforms=res.psf.transforms, bins=6)
    fig, ax = plt.subplots(1, 3, figsize=(13, 4.0))
    im = ax[0].imshow(maps.mean_residual, origin="lower", cmap="RdBu_r", vmin=-0.3, vmax=0.3)
    ax[0].set_title(f"mean residual stamp of {res.n_used} stars\n(d - m)/sigma; chi2/dof = {res.chi2_dof:.3f}")
    fig.colorbar(im, ax=ax[0], shrink=0.8)
    t = res.stars
    used = np.asarray(t["psf_used"])
    X, Y = np.zeros(len(t)), np.zeros(len(t))
    for d, A in res.psf.transforms.items():
        m = np.asarray(t["detector"]) == d
        x, y = np.asarray(t["x"].value)[m], np.asarray(t["y"].value)[m]
        X[m], Y[m] = A[0, 0] * x + A[0, 1] * y + A[0, 2], A[1, 0] * x + A[1, 1] * y + A[1, 2]
    sc = ax[1].scatter(X[used], Y[used], c=np.asarray(t["dT_T"])[used], cmap="RdBu_r", vmin=-0.01, vmax=0.01, s=18)
    ax[1].set_title("star - model size dT/T (training stars)")
    ax[1].set_xlabel("focal plane X (mm)")
    ax[1].set_ylabel("focal plane Y (mm)")
    fig.colorbar(sc, ax=ax[1], shrink=0.8)
    xs, ys, dt = [], [], []
    for d, cat in cats.items():
        p = res.psf.psf_for(d)
        A = res.psf.transforms[d]
        r = cat["psf_reserved"]
        for x, y, c in zip(cat["x"][r], cat["y"][r], cat["gi"][r]):
            dt.append(_t(p.kernel_image(x, y)) / _t(truth[d].kernel_image(x, y, color=c)) - 1)
            xs.append(A[0, 0] * x + A[0, 1] * y + A[0, 2])
            ys.append(A[1, 0] * x + A[1, 1] * y + A[1, 2])
    sc = ax[2].scatter(xs, ys, c=dt, cmap="RdBu_r", vmin=-0.01, vmax=0.01, s=30, marker="s")
    ax[2].set_title(f"model - truth dT/T at reserved stars\nmean {np.mean(dt):+.1e}, rms {np.sqrt(np.mean(np.square(dt))):.1e}")
    ax[2].set_xlabel("focal plane X (mm)")
    fig.colorbar(sc, ax=ax[2], shrink=0.8)
    fig.tight_layout()
    fig.savefig(OUT / "psf_residual_maps.png", dpi=90)


if __name__ == "__main__":
    main()
