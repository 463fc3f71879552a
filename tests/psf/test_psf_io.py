"""Save/load of every lsstdrp.psf model and the PIFF adapter."""

from __future__ import annotations

import numpy as np
import pytest

from lsstdrp import InvalidInputError
from lsstdrp.psf import (AnalyticPsf, PixelGridPsf, PolynomialBasis, VisitPixelGridPsf, from_piff,
                         read_psf, write_psf)


def _grid_psf(chromatic=False):
    rng = np.random.default_rng(0)
    b = PolynomialBasis(1, (0, 100, 0, 200), color_order=1 if chromatic else 0, color_ref=0.7)
    from lsstdrp.core import GaussianPsf

    k = GaussianPsf(1.7).kernel_image(0, 0)
    coef = np.zeros((b.n_terms,) + k.shape)
    coef[0] = k
    for j in range(1, b.n_terms):
        coef[j] = 1e-3 * rng.normal(size=k.shape)
        coef[j] -= coef[j].mean()
    return PixelGridPsf(coef, b, color_name="g-i" if chromatic else None)


@pytest.mark.parametrize("chromatic", [False, True])
def test_pixel_roundtrip(tmp_path, chromatic):
    psf = _grid_psf(chromatic)
    write_psf(psf, tmp_path / "p.fits")
    back = read_psf(tmp_path / "p.fits")
    assert isinstance(back, PixelGridPsf) and back.color_name == psf.color_name
    c = 1.5 if chromatic else None
    assert np.array_equal(back.kernel_image(30.2, 150.0, color=c), psf.kernel_image(30.2, 150.0, color=c))
    with pytest.raises(OSError):
        write_psf(psf, tmp_path / "p.fits")


def test_analytic_and_visit_roundtrip(tmp_path):
    a = AnalyticPsf("moffat", np.array([[4.0, 0.1, 0.0], [3.8, 0.0, 0.1], [0.1, 0.0, 0.0]]),
                    PolynomialBasis(1, (0, 50, 0, 50)), beta=3.0, size=21)
    write_psf(a, tmp_path / "a.fits")
    b = read_psf(tmp_path / "a.fits")
    assert np.array_equal(b.kernel_image(10, 20), a.kernel_image(10, 20))
    g = _grid_psf()
    terms = {0: 0.01 * g.coefficients[:1], 3: -0.01 * g.coefficients[:1]}
    bases = {d: PolynomialBasis(0, (0, 100, 0, 200)) for d in terms}
    trs = {0: np.array([[1.0, 0, 0], [0, 1, 0]]), 3: np.array([[0.0, -1, 300], [1, 0, 20]])}
    v = VisitPixelGridPsf(g.coefficients, PolynomialBasis(1, (-200, 400, -100, 300)), terms, bases, trs)
    write_psf(v, tmp_path / "v.fits")
    w = read_psf(tmp_path / "v.fits")
    for d in (0, 3):
        assert np.allclose(w.psf_for(d).kernel_image(40, 60), v.psf_for(d).kernel_image(40, 60), rtol=0, atol=1e-14)
    with pytest.raises(InvalidInputError):
        write_psf(object(), tmp_path / "x.fits")
    with pytest.raises(InvalidInputError, match="LDRPPSF"):
        from astropy.io import fits

        fits.PrimaryHDU(np.zeros((3, 3))).writeto(tmp_path / "plain.fits")
        read_psf(tmp_path / "plain.fits")


def test_from_piff_reproduces_piff():
    piff = pytest.importorskip("piff")
    galsim = pytest.importorskip("galsim")
    rng = np.random.default_rng(3)
    wcs = galsim.PixelScale(1.0)
    stars = []
    for i in range(16):
        x, y = 30 + 40 * (i % 4) + rng.uniform(-0.5, 0.5), 30 + 40 * (i // 4) + rng.uniform(-0.5, 0.5)
        im = galsim.Gaussian(sigma=1.6 * (1 + 0.001 * x), flux=1e5).drawImage(
            nx=21, ny=21, scale=1.0, center=galsim.PositionD(x + 1, y + 1))
        im.array[:] += rng.normal(0, 3.0, im.array.shape)
        wt = galsim.Image(np.full(im.array.shape, 1 / 9.0), bounds=im.bounds, wcs=wcs)
        im.wcs = wcs
        stars.append(piff.Star(piff.StarData(im, galsim.PositionD(x + 1, y + 1), weight=wt,
                                             properties={"chipnum": 0}), None))
    pp = piff.SimplePSF(piff.PixelGrid(scale=1.0, size=15), piff.BasisPolynomial(order=1))
    pp.set_context({0: wcs}, None)
    pp.fit(stars)
    ours = from_piff(pp, (0, 180, 0, 180), spatial_order=1, size=15)
    for x, y in ((40, 50), (150, 120)):
        a = np.asarray(pp.draw(x + 1.0, y + 1.0, chipnum=0, stamp_size=15).array, dtype=float)
        assert np.allclose(ours.kernel_image(x, y), a / a.sum(), atol=2e-6)
