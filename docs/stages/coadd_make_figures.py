"""Make the figure of docs/stages/coadd.rst: an input, its warp, the coadd and its PSF map.

Run from the repository root: ``python docs/stages/coadd_make_figures.py`` (about a
minute; uses the simulator's ``tiny`` preset: 2 visits x 4 detectors).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lsstdrp.coadd import Tract, coadd, select_inputs, warp_exposure  # noqa: E402
from lsstdrp.core import MaskPlane  # noqa: E402
from lsstdrp.sim import make_survey  # noqa: E402

HERE = Path(__file__).resolve().parent


def build(preset: str = "tiny", grid: int = 24, seed: int = 5) -> dict:
    """Simulate, warp every exposure onto one patch, coadd, and map the CoaddPsf size."""
    s = make_survey(preset, rng=seed)
    keys = s.keys()
    ra0, dec0 = float(s.visits["ra0"][0]), float(s.visits["dec0"][0])
    fp = s.config.det_shape[0] * s.config.n_det_x + s.config.gap_px * (s.config.n_det_x - 1)
    tract = Tract(ra0, dec0, pixel_scale_arcsec=s.config.pixel_scale_arcsec, n_patches=(1, 1),
                  patch_size=int(fp * 1.15), overlap=0)
    patch = tract.patch(0, 0)
    inputs = {k: (s.truth[k].wcs, s.truth[k].noiseless.shape) for k in keys}
    chosen = select_inputs(patch, inputs)
    warps = []
    for k in chosen:
        exp = s.exposure(*k)
        # background-subtracted input (the simulator's true background, for clarity)
        exp = dataclasses.replace(exp, image=exp.image - s.truth[k].background.astype(exp.image.dtype),
                                  psf=s.truth[k].psf, wcs=s.truth[k].wcs)
        warps.append(warp_exposure(exp, wcs_out=patch.wcs, shape_out=patch.shape))
    res = coadd(warps)
    ny, nx = patch.shape
    xs = np.linspace(8, nx - 9, grid)
    ys = np.linspace(8, ny - 9, grid)
    tmap = np.full((grid, grid), np.nan)
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            if res.n_inputs[int(y), int(x)] == 0:
                continue
            try:
                ixx, iyy, _ = res.psf.moments(x, y)
            except Exception:  # a point outside every input outline
                continue
            tmap[j, i] = ixx + iyy
    return {"survey": s, "key": chosen[0], "warps": warps, "coadd": res, "tmap": tmap, "xs": xs, "ys": ys,
            "patch": patch}


def figure(d: dict, path: Path) -> None:
    s, res = d["survey"], d["coadd"]
    k = d["key"]
    exp = s.exposure(*k)
    img_in = exp.image - s.truth[k].background
    w0 = d["warps"][0]
    fig, ax = plt.subplots(1, 4, figsize=(16, 4.3))
    lim = np.nanpercentile(res.image, [1, 99.5])
    ax[0].imshow(img_in, origin="lower", cmap="gray", vmin=lim[0] * 2, vmax=lim[1] * 2)
    ax[0].set_title(f"input (visit {k[0]}, detector {k[1]})")
    ax[1].imshow(w0.image, origin="lower", cmap="gray", vmin=lim[0] * 2, vmax=lim[1] * 2)
    ax[1].set_title("its Lanczos3 warp onto the patch")
    ax[2].imshow(res.image, origin="lower", cmap="gray", vmin=lim[0], vmax=lim[1])
    inexact = (res.mask & np.uint32(MaskPlane.INEXACT_PSF)) != 0
    ax[2].contour(inexact, levels=[0.5], colors="tab:orange", linewidths=0.5)
    ax[2].set_title(f"direct coadd of {len(d['warps'])} warps (INEXACT_PSF outlined)")
    im = ax[3].imshow(d["tmap"], origin="lower", cmap="viridis",
                      extent=[d["xs"][0], d["xs"][-1], d["ys"][0], d["ys"][-1]])
    ax[3].set_title("CoaddPsf size T = Ixx + Iyy (px$^2$)")
    fig.colorbar(im, ax=ax[3], fraction=0.046)
    for a in ax:
        a.set_xticks([])
        a.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    figure(build(), HERE / "coadd_input_warp_coadd_psf.png")
