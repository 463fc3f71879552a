"""lsstdrp.isr on real frames with a peer's reference (../shared/data/real, see its README).

- ``astroscrappy_gmos/gmos.fits``: a Gemini GMOS-S long-slit cutout. astroscrappy's own
  test (``detect_cosmics(readnoise=4.24, gain=1.933)``, defaults otherwise, its sky model
  as ``inbkg``) finds exactly two cosmic rays with bounding boxes [41:72, 142:161] and
  [117:147, 35:43]. We run :func:`lsstdrp.isr.detect_cosmic_rays` with the frame's
  variance plane, the sky model as background and a Gaussian PSF of FWHM 2.5 px (the
  width of the sky lines along the dispersion, i.e. the instrumental line profile;
  any FWHM in 2-4 px gives the same two regions), all else default.
- ``ccdproc/a8280271.fits``: a raw SAAO 1.0 m frame. Overscan (median per row) from
  BIASSEC, trim to TRIMSEC and gain agree with ccdproc's ``subtract_overscan`` +
  ``trim_image`` + ``gain_correct`` to 1e-6 relative, through the array functions and
  through ``run_isr`` on a one-amplifier geometry built from the header.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lsstdrp.core import Amplifier, BBox, Calibs, DetectorGeometry, GaussianPsf, MaskPlane, RawFrame
from lsstdrp.isr import detect_cosmic_rays, run_isr, subtract_overscan

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/real"
GMOS = REAL / "astroscrappy_gmos" / "gmos.fits"
SAAO = REAL / "ccdproc" / "a8280271.fits"

pytestmark = pytest.mark.real_data

#: astroscrappy's reference regions (numpy slices y0:y1, x0:x1) of its test_gmos.py.
GMOS_BOXES = ((41, 72, 142, 161), (117, 147, 35, 43))


def _iou(a, b):
    iy = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    ix = max(0, min(a[3], b[3]) - max(a[2], b[2]))
    inter = iy * ix
    area = lambda r: (r[1] - r[0]) * (r[3] - r[2])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.skipif(not GMOS.exists(), reason="real data not available")
def test_gmos_two_cosmic_rays_match_astroscrappy(record_property):
    from astropy.io import fits

    with fits.open(GMOS) as hdul:
        sci = hdul["SCI"].data
        var = hdul["VAR"].data
        sky = hdul["SKYFIT"].data
    res = detect_cosmic_rays(sci, var, psf=GaussianPsf(2.5 / 2.3548), background=sky)
    labels, n = ndimage.label(res.cr, structure=np.ones((3, 3)))
    assert n == res.n_regions == 2
    boxes = [(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in ndimage.find_objects(labels)]
    ious = sorted(max(_iou(b, ref) for b in boxes) for ref in GMOS_BOXES)
    for ref in GMOS_BOXES:  # each reference box has its own region
        assert sum(_iou(b, ref) > 0 for b in boxes) == 1
    record_property("gmos_iou_min", ious[0])
    assert ious[0] >= 0.7
    assert res.image.dtype == np.float32 and not np.isnan(res.image).any()
    assert (res.mask[res.cr] & MaskPlane.CR).all()


@pytest.mark.skipif(not GMOS.exists(), reason="real data not available")
def test_gmos_same_regions_for_psf_widths_2_to_4_px():
    from astropy.io import fits

    with fits.open(GMOS) as hdul:
        sci, var, sky = (hdul[k].data for k in ("SCI", "VAR", "SKYFIT"))
    for fwhm in (2.0, 3.0, 4.0):
        res = detect_cosmic_rays(sci, var, psf=GaussianPsf(fwhm / 2.3548), background=sky)
        assert res.n_regions == 2


def _ccdproc_reference(data, header):
    ccdproc = pytest.importorskip("ccdproc")
    import astropy.units as u
    from astropy.nddata import CCDData

    ccd = CCDData(data, unit="adu", meta=header)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # astropy/ccdproc deprecation chatter
        o = ccdproc.subtract_overscan(ccd, fits_section=header["BIASSEC"], median=True, overscan_axis=1)
        t = ccdproc.trim_image(o, fits_section=header["TRIMSEC"])
        g = ccdproc.gain_correct(t, header["GAIN"] * u.electron / u.adu)
    return np.asarray(g.data, dtype=np.float64)


def _max_relative(ours, ref):
    nz = ref != 0
    assert (ours[~nz] == 0).all()
    return float(np.max(np.abs(ours[nz] - ref[nz]) / np.abs(ref[nz])))


@pytest.mark.skipif(not SAAO.exists(), reason="real data not available")
def test_saao_overscan_trim_gain_match_ccdproc(record_property):
    from astropy.io import fits

    with fits.open(SAAO) as hdul:
        data = np.asarray(hdul[0].data)
        header = hdul[0].header
    ref = _ccdproc_reference(data, header)
    bias = BBox.from_fits_section(header["BIASSEC"])
    trim = BBox.from_fits_section(header["TRIMSEC"])
    gain = float(header["GAIN"])

    # the array functions
    res = subtract_overscan(data, data[bias.slices])
    ours = res.image[trim.slices].astype(np.float64) * np.float32(gain)
    rel = _max_relative(ours, ref)
    record_property("saao_max_relative_difference", rel)
    assert rel < 1e-6

    # the same through run_isr: a one-amplifier geometry from the header keywords
    ny, nx = data.shape
    amp = Amplifier(
        name="A", raw_bbox=BBox(0, ny, 0, nx), data_bbox=trim, serial_prescan_bbox=BBox(0, ny, 0, 0),
        serial_overscan_bbox=bias, parallel_overscan_bbox=BBox(ny, ny, trim.x0, trim.x1),
        assembled_bbox=BBox(0, trim.shape[0], 0, trim.shape[1]), flip_x=False, flip_y=False,
        gain=gain, read_noise=float(header["RDNOISE"]), saturation=65535.0,
    )
    geom = DetectorGeometry(0, (amp,), trim.shape, data.shape)
    raw = RawFrame(data, geom, exptime=float(header.get("EXPTIME", 150.0)), dark_time=150.0)
    exp = run_isr(raw, Calibs(geom), parallel_overscan=False, dtype=np.float64).exposure
    rel_run = _max_relative(exp.image, ref)
    record_property("saao_run_isr_max_relative_difference", rel_run)
    assert rel_run < 1e-6
    # variance: Poisson of the signal plus the read noise, in e-^2
    np.testing.assert_allclose(exp.variance, np.maximum(ref, 0) + float(header["RDNOISE"]) ** 2, rtol=1e-6)
