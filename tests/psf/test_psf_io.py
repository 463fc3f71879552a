"""Save/load of every lsstdrp.psf model and the PIFF adapter."""

from __future__ import annotations

import numpy as np
import pytest

from lsstdrp import InvalidInputError
from lsstdrp.psf import (AnalyticPsf, PixelGridPsf, PolynomialBasis, VisitPixelGridPsf, from_piff,
                         read_psf, to_piff, write_psf)


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


def _varying_psf(chromatic=False, oversampling=1):
    """A sigma = 1.7 px Gaussian whose size and shape vary quadratically (and with colour)."""
    from lsstdrp.core import GaussianPsf

    N = oversampling
    b = PolynomialBasis(2, (0, 400, 0, 300), color_order=int(chromatic), color_spatial_order=1, color_ref=0.8)
    side = 25 * N + (N - 1)  # odd

    def g(sigma, e1=0.0):
        return GaussianPsf(sigma * N, e1=e1, size=side).kernel_image(0, 0) * N * N

    coef = np.zeros((b.n_terms, side, side))
    coef[0] = g(1.7)
    for j in range(1, b.n_terms):
        coef[j] = 0.3 * (g(1.7 + 0.1 * j, 0.05) - coef[0])
    return PixelGridPsf(coef, b, oversampling=N, color_name="g-i" if chromatic else None)


@pytest.mark.parametrize("chromatic,oversampling", [(False, 1), (True, 1), (False, 2)])
def test_to_piff_matches_kernel_and_roundtrips(record_property, tmp_path, chromatic, oversampling):
    piff = pytest.importorskip("piff")
    m = _varying_psf(chromatic, oversampling)
    pp = to_piff(m, pixel_scale=0.2)
    assert isinstance(pp, piff.SimplePSF)
    n = m.kernel_size
    centred, subpix = 0.0, 0.0
    for x, y, c in ((10.0, 20.0, 0.3), (200.0, 150.0, 1.2), (390.0, 5.0, 2.0)):
        kw = {"color": c} if chromatic else {}
        col = c if chromatic else None
        a = np.asarray(pp.draw(x + 1.0, y + 1.0, chipnum=0, stamp_size=n, **kw).array, dtype=float)
        k = m.kernel_image(x, y, color=col)
        centred = max(centred, np.abs(a / a.sum() - k).max() / k.max())
        # sub-pixel: PIFF's Lanczos-7 through samples vs. our B-spline expansion (documented ~1e-3)
        a = np.asarray(pp.draw(x + 1.3, y + 1.7, chipnum=0, stamp_size=n, **kw).array, dtype=float)
        im = m.image(x + 0.3, y + 0.7, color=col)
        subpix = max(subpix, np.abs(a / a.sum() - im).max() / im.max())
    record_property("to_piff_centred_max_rel_diff", float(centred))
    record_property("to_piff_subpixel_max_rel_diff", float(subpix))
    # pixel-centred the conversion is exact up to rounding of the polynomial re-expansion
    assert centred < 1e-9
    assert subpix < 1e-3
    if not chromatic:  # from_piff is achromatic
        back = from_piff(pp, m.basis.bounds, spatial_order=2, size=n)
        rt = max(np.abs(back.kernel_image(x, y) - m.kernel_image(x, y)).max() / m.kernel_image(x, y).max()
                 for x, y in ((10.0, 20.0), (200.0, 150.0), (390.0, 5.0)))
        record_property("to_piff_roundtrip_max_rel_diff", float(rt))
        assert rt < 1e-8
    # PIFF's own file format keeps the model
    pp.write(str(tmp_path / "m.piff"))
    again = piff.read(str(tmp_path / "m.piff"))
    kw = {"color": 1.0} if chromatic else {}
    assert np.allclose(again.draw(51.0, 61.0, chipnum=0, stamp_size=n, **kw).array,
                       pp.draw(51.0, 61.0, chipnum=0, stamp_size=n, **kw).array, rtol=0, atol=1e-12)


def test_to_piff_bad_input(monkeypatch):
    with pytest.raises(InvalidInputError, match="model"):
        to_piff(AnalyticPsf("gaussian", np.array([[4.0], [4.0], [0.0]]), PolynomialBasis(0, (0, 9, 0, 9))))
    with pytest.raises(InvalidInputError, match="pixel_scale"):
        to_piff(_grid_psf(), pixel_scale=-1.0)
    import sys

    monkeypatch.setitem(sys.modules, "piff", None)  # import piff -> ImportError
    with pytest.raises(InvalidInputError, match="piff"):
        to_piff(_grid_psf())
