"""Shared fixtures of the coadd tests: simple TAN WCSs and a numpy reference warp."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.wcs import WCS

PIXEL_SCALE_DEG = 0.2 / 3600.0


def tan_wcs(crpix=(32.0, 32.0), rot_deg=0.0, scale=1.0, crval=(150.0, 2.0)):
    """A TAN WCS with 0.2"/px (times ``scale``), rotated by ``rot_deg``; ``crpix`` 0-based."""
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = list(crval)
    w.wcs.crpix = [crpix[0] + 1.0, crpix[1] + 1.0]
    th = math.radians(rot_deg)
    s = PIXEL_SCALE_DEG * scale
    w.wcs.cd = [[-s * math.cos(th), s * math.sin(th)], [s * math.sin(th), s * math.cos(th)]]
    return w


def map_pixels(wcs_from, wcs_to, x, y):
    xo, yo = wcs_to.world_to_pixel_values(*wcs_from.pixel_to_world_values(x, y))
    return np.asarray(xo, float), np.asarray(yo, float)


def lanczos(t, a):
    t = np.asarray(t, float)
    return np.where(np.abs(t) < a, np.sinc(t) * np.sinc(t / a), 0.0)


def corrected_weights(pos, a):
    """Kernel weights at the 2a taps around ``pos`` with the minimum-norm correction that
    enforces sum(w) = 1 and sum(w t) = 0 (least squares with two linear constraints)."""
    first = np.floor(pos) - a + 1
    t = pos - (first + np.arange(2 * a))
    raw = lanczos(t, a) if a > 1 else np.clip(1 - np.abs(t), 0, None)
    A = np.vstack([np.ones_like(t), t])
    lam = np.linalg.solve(A @ A.T, np.array([1.0, 0.0]) - A @ raw)
    return first, raw + A.T @ lam


def reference_warp(image, variance, mask, wcs_in, wcs_out, shape_out, a=3, thr=0.05):
    """Plain-numpy Lanczos warp (exact mapping per pixel, direct kernel formula)."""
    ny, nx = shape_out
    out = np.full(shape_out, np.nan)
    outv = np.full(shape_out, np.nan)
    outm = np.zeros(shape_out, np.uint32)
    yy, xx = np.mgrid[:ny, :nx].astype(float)
    xi, yi = map_pixels(wcs_out, wcs_in, xx, yy)
    dx, dy = map_pixels(wcs_out, wcs_in, xx + 0.5, yy)
    ex, ey = map_pixels(wcs_out, wcs_in, xx - 0.5, yy)
    fx, fy = map_pixels(wcs_out, wcs_in, xx, yy + 0.5)
    gx, gy = map_pixels(wcs_out, wcs_in, xx, yy - 0.5)
    jac = np.abs((dx - ex) * (fy - gy) - (fx - gx) * (dy - ey))
    for j in range(ny):
        for i in range(nx):
            x, y = xi[j, i], yi[j, i]
            if not (a - 1 <= x < image.shape[1] - a and a - 1 <= y < image.shape[0] - a):
                outm[j, i] = 256
                continue
            ox, wx = corrected_weights(x, a)
            oy, wy = corrected_weights(y, a)
            cx = ox + np.arange(2 * a)
            cy = oy + np.arange(2 * a)
            w = np.outer(wy, wx)
            sl = (slice(int(cy[0]), int(cy[-1]) + 1), slice(int(cx[0]), int(cx[-1]) + 1))
            out[j, i] = jac[j, i] * np.sum(w * image[sl])
            outv[j, i] = jac[j, i] ** 2 * np.sum(w * w * variance[sl])
            outm[j, i] = np.bitwise_or.reduce((mask[sl] * (np.abs(w) > thr)).astype(np.uint32).ravel())
    return out, outv, outm


@pytest.fixture(scope="session")
def tiny_survey():
    from lsstdrp.sim import make_survey

    return make_survey("tiny", rng=11)
