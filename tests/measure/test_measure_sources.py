"""measure_sources and the array-level functions: schema, inputs, flags, failures."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable, Table

from lsstdrp import InputDataWarning, InvalidInputError
from lsstdrp.core import SOURCE_COLUMNS, GaussianPsf, MaskPlane, empty_catalog
from lsstdrp.measure import (
    FLUX_RADIUS_FRACTIONS,
    MeasurementFlag,
    adaptive_moments,
    aperture_flux,
    elliptical_aperture_flux,
    flux_radius,
    gaussian_centroid,
    kron_flux,
    kron_radius,
    local_background,
    measure_sources,
    psf_corrected_shape,
    psf_flux,
    sdss_centroid,
)

PSF = GaussianPsf(1.7)
SHAPE = (80, 90)


@dataclasses.dataclass(frozen=True)
class FakeDetections:
    """Stands in for lsstdrp.detect.Detections (duck typing)."""

    footprints: np.ndarray
    peaks: QTable


def _scene(seed=3, positions=((30.3, 40.6), (60.2, 20.8), (70.7, 55.1)), flux=4000.0, noise=4.0):
    rng = np.random.default_rng(seed)
    img = rng.normal(0.0, noise, SHAPE)
    for x, y in positions:
        _add_star(img, x, y, flux)
    return img, np.full(SHAPE, noise**2), np.array(positions, dtype=float)


def _add_star(img, x, y, flux, h=12):
    ix, iy = round(x), round(y)
    stamp = flux * PSF.image(x, y, shape=2 * h + 1)
    y0, x0 = iy - h, ix - h
    ys, xs = slice(max(y0, 0), min(y0 + 2 * h + 1, img.shape[0])), slice(max(x0, 0), min(x0 + 2 * h + 1, img.shape[1]))
    img[ys, xs] += stamp[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def test_empty_catalog_gives_zero_row_full_schema():
    img, var, pos = _scene()
    full = measure_sources(img, var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF)
    for empty in ({"x": [], "y": []}, QTable({"x": np.zeros(0) * u.pix, "y": np.zeros(0) * u.pix})):
        cat = measure_sources(img, var, empty, psf=PSF)
        assert isinstance(cat, QTable) and len(cat) == 0
        assert cat.colnames == full.colnames  # the same schema with and without rows
        assert set(empty_catalog().colnames) <= set(cat.colnames)
        assert cat["psf_flux"].unit == u.electron and cat["x"].unit == u.pix
    for f in FLUX_RADIUS_FRACTIONS:
        assert f"flux_radius_{round(100 * f)}" in SOURCE_COLUMNS
        assert f"flux_radius_{round(100 * f)}" in full.colnames


def test_one_row_per_source_in_order_with_units_and_provenance():
    img, var, pos = _scene()
    cat = measure_sources(img, var, Table({"x": pos[:, 0], "y": pos[:, 1], "id": [7, 8, 9]}), psf=PSF)
    assert len(cat) == 3 and list(cat["id"]) == [7, 8, 9]
    np.testing.assert_allclose(cat["x"].value, pos[:, 0], atol=0.05)
    np.testing.assert_allclose(cat["y"].value, pos[:, 1], atol=0.05)
    assert np.all(cat["x_err"].value < 0.05)
    np.testing.assert_allclose(cat["psf_flux"].value, 4000.0, rtol=0.03)
    for name in ("ap_flux_r3", "ap_flux_r17", "kron_flux", "shape_xx", "hsm_e1", "flux_radius_50",
                 "local_background", "psf_shape_xx"):
        assert np.all(np.isfinite(np.asarray(cat[name]))), name
    assert cat.meta["measure_centroid"] == "sdss"
    assert "lsstdrp_version" in cat.meta
    assert not np.any(cat["centroid_flag"]) and not np.any(cat["psf_flux_flag"])
    # a star: the PSF-corrected resolution is ~0 and the moments are the PSF's
    np.testing.assert_allclose(cat["shape_xx"].value, cat["psf_shape_xx"].value, rtol=0.1)
    assert np.all(np.abs(cat["local_background"].value) < 3.0)


def test_detections_footprints_give_pixel_flags_and_areas():
    img, var, pos = _scene()
    labels = np.zeros(SHAPE, dtype=np.int32)
    for k, (x, y) in enumerate(pos, start=1):
        ix, iy = round(x), round(y)
        labels[iy - 4:iy + 5, ix - 4:ix + 5] = k
    mask = np.zeros(SHAPE, dtype=np.uint32)
    ix, iy = round(pos[0, 0]), round(pos[0, 1])
    mask[iy, ix] |= MaskPlane.SAT  # at the centre of source 1
    mask[iy + 3, ix + 3] |= MaskPlane.CR  # in its footprint, away from the centre
    ix2, iy2 = round(pos[1, 0]), round(pos[1, 1])
    mask[iy2 - 4, ix2] |= MaskPlane.INTRP  # footprint edge of source 2
    peaks = QTable({"id": [1, 2, 3], "footprint_id": [1, 2, 3], "x": pos[:, 0] * u.pix, "y": pos[:, 1] * u.pix,
                    "peak_value": [1.0, 2.0, 3.0], "significance": [50.0, 60.0, 70.0]})
    cat = measure_sources(img, var, FakeDetections(labels, peaks), psf=PSF, mask=mask)
    assert list(cat["footprint_area"]) == [81, 81, 81]
    assert list(cat["pixel_flag_saturated_center"]) == [True, False, False]
    assert list(cat["pixel_flag_saturated"]) == [True, False, False]
    assert list(cat["pixel_flag_cr"]) == [True, False, False]
    assert list(cat["pixel_flag_cr_center"]) == [False, False, False]
    assert list(cat["pixel_flag_interpolated"]) == [False, True, False]
    assert list(cat["significance"]) == [50.0, 60.0, 70.0]
    assert list(cat["peak_value"].value) == [1.0, 2.0, 3.0]
    # the saturated centre pixel is excluded from the fits: flagged, not NaN
    assert cat["psf_flux_flag"][0] and np.isfinite(cat["psf_flux"][0])
    assert not cat["psf_flux_flag"][2]


def test_sources_at_the_edge_are_flagged():
    img, var, _ = _scene(positions=((1.2, 40.0), (45.0, 78.6), (45.0, 40.0)))
    cat = measure_sources(img, var, {"x": [1.2, 45.0, 45.0], "y": [40.0, 78.6, 40.0]}, psf=PSF)
    assert list(cat["pixel_flag_edge"]) == [True, True, False]
    assert list(cat["ap_flux_r5_flag"]) == [True, True, False]
    assert list(cat["psf_flux_flag"]) == [True, True, False]
    assert np.all(np.isfinite(cat["psf_flux"].value))
    # a position off the image: a row of flags, no exception
    off = measure_sources(img, var, {"x": [-20.0, 45.0], "y": [40.0, 40.0]}, psf=PSF)
    assert len(off) == 2 and off["pixel_flag_edge"][0] and off["psf_flux_flag"][0]
    assert not off["psf_flux_flag"][1]


def test_nan_pixels_are_flagged_not_spread():
    img, var, pos = _scene()
    img = img.copy()
    ix, iy = round(pos[0, 0]), round(pos[0, 1])
    img[iy + 2, ix - 1] = np.nan  # inside source 1's apertures
    img[5, 5] = np.inf  # far from everything
    with pytest.warns(InputDataWarning, match="2 pixel"):
        cat = measure_sources(img, var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF)
    for name in ("psf_flux", "ap_flux_r5", "ap_flux_r12", "kron_flux", "shape_xx", "x", "local_background"):
        assert np.all(np.isfinite(cat[name].value)), name
    assert cat["pixel_flag_no_data"][0] and not cat["pixel_flag_no_data"][1]
    assert cat["ap_flux_r5_flag"][0] and not cat["ap_flux_r5_flag"][1]
    # array level, without a mask: excluded inside the kernel and flagged MASKED
    res = aperture_flux(img, pos[:, 0], pos[:, 1], 5.0)
    assert np.all(np.isfinite(res.flux))
    assert res.flags[0] & MeasurementFlag.MASKED and not res.flags[1]


def test_nan_variance_is_excluded():
    img, var, pos = _scene()
    var = var.copy()
    ix, iy = round(pos[1, 0]), round(pos[1, 1])
    var[iy, ix + 1] = np.nan
    res = aperture_flux(img, pos[:, 0], pos[:, 1], 4.0, variance=var)
    assert np.all(np.isfinite(res.flux_err))
    assert res.flags[1] & MeasurementFlag.MASKED


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", ">f4", "<f8"])
def test_dtypes(dtype):
    img, var, pos = _scene()
    img = np.round(img) if dtype == "int32" else img
    ref = measure_sources(img.astype(np.float64), var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF)
    cat = measure_sources(img.astype(dtype), var.astype(dtype), {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF)
    assert cat["psf_flux"].dtype == np.float64
    np.testing.assert_allclose(cat["psf_flux"].value, ref["psf_flux"].value, rtol=1e-5)
    np.testing.assert_allclose(cat["x"].value, ref["x"].value, atol=1e-5)
    a = aperture_flux(img.astype(dtype), pos[:, 0], pos[:, 1], 3.0)
    np.testing.assert_allclose(a.flux, aperture_flux(img, pos[:, 0], pos[:, 1], 3.0).flux, rtol=1e-5)


def test_inputs_are_not_modified():
    img, var, pos = _scene()
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10, 10] = True
    copies = [a.copy() for a in (img, var, mask, pos)]
    for arr in (img, var, mask):
        arr.flags.writeable = False  # an in-place write would raise
    cat = {"x": pos[:, 0], "y": pos[:, 1]}
    measure_sources(img, var, cat, psf=PSF, mask=mask, background=1.0)
    aperture_flux(img, pos[:, 0], pos[:, 1], 3.0, variance=var, mask=mask)
    adaptive_moments(img, pos[:, 0], pos[:, 1], variance=var, mask=mask)
    psf_corrected_shape(img, pos[:, 0], pos[:, 1], psf=PSF, variance=var, mask=mask)
    for before, after in zip(copies, (img, var, mask, pos)):
        np.testing.assert_array_equal(after, before)


def test_background_argument_is_subtracted():
    img, var, pos = _scene()
    cat0 = measure_sources(img, var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF)
    cat1 = measure_sources(img + 100.0, var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF, background=100.0)
    cat2 = measure_sources(img + 100.0, var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF,
                           background=np.full(SHAPE, 100.0))
    np.testing.assert_allclose(cat1["psf_flux"].value, cat0["psf_flux"].value, rtol=1e-9)
    np.testing.assert_allclose(cat2["ap_flux_r5"].value, cat0["ap_flux_r5"].value, rtol=1e-9)


def test_gaussian_centroid_option_and_extra_radii():
    img, var, pos = _scene()
    cat = measure_sources(img, var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF, centroid="gaussian",
                          aperture_radii=(2.5, 5))
    np.testing.assert_allclose(cat["x"].value, pos[:, 0], atol=0.05)
    assert "ap_flux_r2p5" in cat.colnames and np.all(np.isfinite(cat["ap_flux_r2p5"].value))
    assert cat.meta["measure_aperture_radii"] == [2.5, 5.0]


def test_wcs_and_photo_calib_fill_world_and_calibrated_columns():
    from astropy.wcs import WCS

    from lsstdrp.core import PhotoCalib

    img, var, pos = _scene()
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [150.0, 2.0]
    w.wcs.crpix = [45.0, 40.0]
    w.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    calib = PhotoCalib(zeropoint=31.4 - 2.5 * math.log10(2.5))  # 2.5 nJy per e-
    cat = measure_sources(img, var, {"x": pos[:, 0], "y": pos[:, 1]}, psf=PSF, wcs=w, photo_calib=calib)
    ra, dec = w.pixel_to_world_values(cat["x"].value, cat["y"].value)
    np.testing.assert_allclose(cat["ra"].value, ra)
    np.testing.assert_allclose(cat["dec"].value, dec)
    np.testing.assert_allclose(cat["ra_err_mas"].value, 200.0 * cat["x_err"].value, rtol=1e-3)
    np.testing.assert_allclose(cat["psf_flux_njy"].value, 2.5 * cat["psf_flux"].value)
    assert np.all(np.isfinite(cat["psf_mag"].value))


def test_invalid_inputs_raise():
    img, var, pos = _scene()
    cat = {"x": pos[:, 0], "y": pos[:, 1]}
    with pytest.raises(InvalidInputError, match="variance"):
        measure_sources(img, var[:-1], cat, psf=PSF)
    with pytest.raises(InvalidInputError, match="'x' and 'y'"):
        measure_sources(img, var, {"ra": [1.0]}, psf=PSF)
    with pytest.raises(InvalidInputError, match="centroid"):
        measure_sources(img, var, cat, psf=PSF, centroid="peak")
    with pytest.raises(TypeError, match="Psf"):
        measure_sources(img, var, cat, psf=object())
    with pytest.raises(InvalidInputError, match="mask"):
        measure_sources(img, var, cat, psf=PSF, mask=np.zeros((3, 3), bool))
    with pytest.raises(InvalidInputError, match="radius"):
        aperture_flux(img, 1.0, 1.0, -2.0)
    with pytest.raises(InvalidInputError, match="not both"):
        aperture_flux(img, 1.0, 1.0, 2.0, variance=1.0, error=1.0)
    with pytest.raises(InvalidInputError, match="`x` has"):
        aperture_flux(img, [1.0, 2.0], [1.0], 2.0)
    with pytest.raises(InvalidInputError, match="psf"):
        sdss_centroid(img, 1.0, 1.0)
    with pytest.raises(InvalidInputError, match="fraction"):
        flux_radius(img, 1.0, 1.0, 5.0, 1.5)
    with pytest.raises(InvalidInputError, match="method"):
        psf_corrected_shape(img, 1.0, 1.0, psf=PSF, method="ksb")
    with pytest.raises(InvalidInputError, match="`b`"):
        kron_radius(img, 1.0, 1.0, 2.0, -1.0, 0.0)


def test_failures_are_flags_not_exceptions():
    """Hopeless sources get rows of flags: blank sky, negative flux, NaN position."""
    rng = np.random.default_rng(1)
    img = rng.normal(0.0, 1.0, SHAPE)
    img[30:35, 30:35] -= 50.0  # a hole
    xs = np.array([32.0, 60.0, np.nan])
    ys = np.array([32.0, 60.0, 10.0])
    cat = measure_sources(img, 1.0, {"x": xs, "y": ys}, psf=PSF)
    assert len(cat) == 3
    assert cat["centroid_flag"][0] and cat["centroid_flag"][2]
    assert cat["shape_flag"][0] and cat["hsm_flag"][0]
    assert np.isnan(cat["x"][2].value) and cat["psf_flux_flag"][2] and cat["pixel_flag_edge"][2]
    assert cat["kron_radius_flag"][0]
    for fn in (lambda: adaptive_moments(img, xs, ys), lambda: sdss_centroid(img, xs, ys, psf=PSF),
               lambda: gaussian_centroid(img, xs, ys, psf=PSF), lambda: kron_flux(img, xs, ys, 2, 2, 0),
               lambda: local_background(img, xs, ys), lambda: psf_flux(img, xs, ys, psf=PSF),
               lambda: elliptical_aperture_flux(img, xs, ys, 2, 1, 0)):
        res = fn()
        assert res.flags[2] != 0


def test_masked_pixels_are_left_out():
    img, var, pos = _scene()
    mask = np.zeros(SHAPE, dtype=bool)
    ix, iy = round(pos[0, 0]), round(pos[0, 1])
    mask[iy - 1:iy + 2, ix - 1:ix + 2] = True
    a = aperture_flux(img, pos[:, 0], pos[:, 1], 4.0, mask=mask)
    assert a.area[0] == pytest.approx(math.pi * 16 - 9, rel=1e-12)
    assert a.flags[0] & MeasurementFlag.MASKED and a.flags[1] == 0
    m = adaptive_moments(img, pos[:, 0], pos[:, 1], mask=mask)
    assert m.flags[0] & MeasurementFlag.MASKED and m.flags[1] == 0
