"""Camera types: geometry validation, raw frame, linearity, Calibs and their FITS round trips."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lsstdrp import InvalidInputError
from lsstdrp.core import (
    Amplifier,
    BBox,
    Calibs,
    DetectorGeometry,
    Linearity,
    PhotonTransferCurve,
    RawFrame,
    make_detector_geometry,
)


@pytest.fixture(scope="module")
def geom():
    return make_detector_geometry(4, 2, (10, 6), prescan=2, serial_overscan=3, parallel_overscan=2, detector=7)


def _amp(**changes):
    base = dict(
        name="A", raw_bbox=BBox(0, 12, 0, 11), data_bbox=BBox(0, 10, 2, 8), serial_prescan_bbox=BBox(0, 10, 0, 2),
        serial_overscan_bbox=BBox(0, 10, 8, 11), parallel_overscan_bbox=BBox(10, 12, 2, 8),
        assembled_bbox=BBox(0, 10, 0, 6), flip_x=False, flip_y=False, gain=1.5, read_noise=5.0, saturation=1e5,
    )
    base.update(changes)
    return Amplifier(**base)


# -- BBox ---------------------------------------------------------------------------------
def test_bbox_slices_shape_and_relations():
    b = BBox(1, 3, 2, 6)
    assert b.shape == (2, 4) and b.area == 8 and not b.is_empty
    assert np.arange(40).reshape(5, 8)[b.slices].shape == b.shape
    assert BBox(0, 5, 0, 8).contains(b) and not b.contains(BBox(0, 5, 0, 8))
    assert b.overlaps(BBox(2, 4, 5, 9)) and not b.overlaps(BBox(3, 4, 0, 9))
    assert BBox(2, 2, 0, 3).is_empty and not BBox(2, 2, 0, 3).overlaps(b)
    assert b.shifted(1, -2) == BBox(2, 4, 0, 4)
    assert b.fits_in((3, 6)) and not b.fits_in((3, 5))


def test_bbox_fits_sections_are_one_based_inclusive():
    b = BBox.from_fits_section("[3:6, 2:3]")
    assert b == BBox(1, 3, 2, 6)
    assert b.to_fits_section() == "[3:6,2:3]"
    assert BBox.from_fits_section("[6:3,3:2]") == b  # reversed ranges normalised
    for bad in ("3:6,2:3", "[0:5,1:2]", "[a:b,1:2]"):
        with pytest.raises(InvalidInputError, match="section"):
            BBox.from_fits_section(bad)


@pytest.mark.parametrize("args, match", [
    ((-1, 3, 0, 2), "y0"), ((3, 1, 0, 2), "y1"), ((0, 2, 4, 3), "x1"), ((0, 2.5, 0, 2), "y1"), ((0, True, 0, 1), "y1"),
])
def test_bbox_rejects_bad_bounds(args, match):
    with pytest.raises(InvalidInputError, match=match):
        BBox(*args)


def test_bbox_accepts_numpy_integers():
    b = BBox(*np.array([0, 2, 1, 3], dtype=np.int64))
    assert type(b.y1) is int and b.shape == (2, 2)


# -- Amplifier ----------------------------------------------------------------------------
@pytest.mark.parametrize("changes, match", [
    (dict(gain=0.0), "gain"),
    (dict(read_noise=-1.0), "read_noise"),
    (dict(saturation=np.nan), "saturation"),
    (dict(flip_x=1), "flip_x"),
    (dict(name=""), "name"),
    (dict(data_bbox=BBox(0, 10, 2, 12)), "data_bbox.*not inside"),
    (dict(serial_overscan_bbox=BBox(0, 10, 7, 10)), "overlaps"),
    (dict(assembled_bbox=BBox(0, 10, 0, 5)), "assembled_bbox.*shape"),
    (dict(raw_bbox=(0, 12, 0)), "raw_bbox"),
])
def test_amplifier_validation_names_the_field(changes, match):
    with pytest.raises(InvalidInputError, match=match):
        _amp(**changes)


def test_amplifier_accepts_tuples_and_optional_levels():
    a = _amp(data_bbox=(0, 10, 2, 8), suspect_level=5e4, bias_level=1000)
    assert a.data_bbox == BBox(0, 10, 2, 8) and a.suspect_level == 5e4 and a.data_shape == (10, 6)


# -- DetectorGeometry ---------------------------------------------------------------------
def test_lsst_default_geometry():
    g = make_detector_geometry()
    assert g.n_amps == 16 and g.assembled_shape == (4000, 4072)
    assert g.raw_shape == (2 * (2000 + 48), 8 * (3 + 509 + 64))
    assert len(set(g.names)) == 16
    assert np.all((g.gains > 1.4) & (g.gains < 1.8)) and np.all(g.read_noises > 4)
    top = [a for a in g.amplifiers if a.assembled_bbox.y0 > 0]
    assert all(a.flip_x and a.flip_y for a in top)
    idx = g.amp_index_image()
    assert idx.min() == 0 and np.bincount(idx.ravel()).tolist() == [2000 * 509] * 16


def test_geometry_regions_and_lookup(geom):
    assert geom.detector == 7 and geom.assembled_shape == (20, 24) and geom.raw_shape == (24, 44)
    raw = np.zeros(geom.raw_shape, dtype=int)
    for k, a in enumerate(geom.amplifiers):
        for f in ("data_bbox", "serial_prescan_bbox", "serial_overscan_bbox", "parallel_overscan_bbox"):
            assert np.all(raw[getattr(a, f).slices] == 0)
            raw[getattr(a, f).slices] = k + 1
        # read-out order inside the segment: prescan, data, serial overscan; then parallel overscan rows
        assert a.serial_prescan_bbox.x1 == a.data_bbox.x0 and a.data_bbox.x1 == a.serial_overscan_bbox.x0
        assert a.parallel_overscan_bbox.y0 == a.data_bbox.y1
    assert geom.amp("C13") is geom.amplifiers[7] and geom.amp(-1) is geom.amplifiers[-1]
    assert geom.amp_index("C01") == 1
    with pytest.raises(InvalidInputError, match="not an amplifier"):
        geom.amp("nope")
    with pytest.raises(InvalidInputError, match="out of range"):
        geom.amp(8)


def test_make_detector_geometry_from_assembled_shape():
    g = make_detector_geometry(8, 2, assembled_shape=(256, 256), gains=[2.0] * 16, read_noises=4.0,
                               bias_levels=100.0, suspect_level=5e4, parallel_overscan=0, prescan=0)
    assert g.assembled_shape == (256, 256) and g.amplifiers[0].data_shape == (128, 32)
    assert np.all(g.gains == 2.0) and g.amplifiers[3].bias_level == 100.0
    assert g.amplifiers[0].parallel_overscan_bbox.is_empty and g.amplifiers[0].serial_prescan_bbox.is_empty
    with pytest.raises(InvalidInputError, match="assembled_shape"):
        make_detector_geometry(8, 2, assembled_shape=(256, 250))
    with pytest.raises(InvalidInputError, match="gains"):
        make_detector_geometry(8, 2, (10, 10), gains=[1.0, 2.0])
    with pytest.raises(InvalidInputError, match="serial_overscan"):
        make_detector_geometry(2, 1, (10, 10), serial_overscan=-1)
    with pytest.raises(InvalidInputError, match="n_amp_x"):
        make_detector_geometry(0, 1)


def test_geometry_rejects_bad_layouts(geom):
    amps = list(geom.amplifiers)
    with pytest.raises(InvalidInputError, match="outside the raw frame"):
        DetectorGeometry(0, tuple(amps), geom.assembled_shape, (geom.raw_shape[0], geom.raw_shape[1] - 1))
    with pytest.raises(InvalidInputError, match="tile"):
        DetectorGeometry(0, tuple(amps[:-1]), geom.assembled_shape, geom.raw_shape)
    with pytest.raises(InvalidInputError, match="outside the assembled"):
        DetectorGeometry(0, tuple(amps), (10, 24), geom.raw_shape)
    dup = dataclasses.replace(amps[1], name=amps[0].name)
    with pytest.raises(InvalidInputError, match="duplicate"):
        DetectorGeometry(0, (amps[0], dup, *amps[2:]), geom.assembled_shape, geom.raw_shape)
    clash = dataclasses.replace(amps[1], assembled_bbox=amps[0].assembled_bbox)
    with pytest.raises(InvalidInputError, match="assembled_bbox regions overlap"):
        DetectorGeometry(0, (amps[0], clash, *amps[2:]), geom.assembled_shape, geom.raw_shape)
    with pytest.raises(InvalidInputError, match="raw_bbox regions overlap"):
        DetectorGeometry(0, (amps[0], dataclasses.replace(amps[1], **{f: getattr(amps[0], f) for f in (
            "raw_bbox", "data_bbox", "serial_prescan_bbox", "serial_overscan_bbox", "parallel_overscan_bbox")}),
            *amps[2:]), geom.assembled_shape, geom.raw_shape)
    with pytest.raises(InvalidInputError, match="empty"):
        DetectorGeometry(0, (), (1, 1), (1, 1))
    with pytest.raises(InvalidInputError, match="Amplifier objects"):
        DetectorGeometry(0, ("C00",), (1, 1), (1, 1))
    with pytest.raises(InvalidInputError, match="raw_shape"):
        DetectorGeometry(0, tuple(amps), geom.assembled_shape, (0, 5))


# -- RawFrame -----------------------------------------------------------------------------
def test_raw_frame_validation_and_immutability(geom):
    data = np.arange(np.prod(geom.raw_shape), dtype=np.int32).reshape(geom.raw_shape)
    frame = RawFrame(data, geom, exptime=15.0, dark_time=16.0, band="r", snap=1, visit=3)
    assert not frame.data.flags.writeable and frame.detector == 7
    data[0, 0] = -99  # the frame holds a copy
    assert frame.data[0, 0] == 0 and data.flags.writeable
    assert frame.amp_data("C00").shape == (10, 6)
    with pytest.raises(InvalidInputError, match="raw_shape"):
        RawFrame(data[:, :-1], geom, exptime=1.0, dark_time=1.0)
    with pytest.raises(InvalidInputError, match="exptime"):
        RawFrame(data, geom, exptime=-1.0, dark_time=1.0)
    with pytest.raises(InvalidInputError, match="dark_time"):
        RawFrame(data, geom, exptime=1.0, dark_time=np.inf)
    with pytest.raises(InvalidInputError, match="dtype"):
        RawFrame(data.astype(complex), geom, exptime=1.0, dark_time=1.0)
    with pytest.raises(InvalidInputError, match="geometry"):
        RawFrame(data, "geom", exptime=1.0, dark_time=1.0)
    with pytest.raises(InvalidInputError, match="snap"):
        RawFrame(data, geom, exptime=1.0, dark_time=1.0, snap=-1)
    assert frame.replace(snap=0).snap == 0


@pytest.mark.parametrize("dtype", ["int32", "uint16", "float32", ">f4", ">i4"])
def test_raw_frame_fits_round_trip(geom, tmp_path, dtype):
    rng = np.random.default_rng(1)
    data = (rng.uniform(0, 60000, geom.raw_shape)).astype(dtype)
    frame = RawFrame(data, geom, exptime=15.0, dark_time=16.5, mjd=60123.25, band="i", snap=1, visit=42,
                     metadata={"seed": 1, "note": "x"})
    assert frame.data.dtype.isnative
    path = tmp_path / "raw.fits"
    frame.to_fits(path)
    back = RawFrame.from_fits(path)
    assert back.geometry == geom
    assert back.data.dtype == np.dtype(dtype).newbyteorder("=") and back.data.dtype.isnative
    np.testing.assert_array_equal(back.data, frame.data)
    assert (back.exptime, back.dark_time, back.mjd, back.band, back.snap, back.visit) == (15.0, 16.5, 60123.25, "i", 1, 42)
    assert back.metadata == {"seed": 1, "note": "x"}
    with pytest.raises(OSError):
        frame.to_fits(path)  # no silent overwrite
    frame.to_fits(path, overwrite=True)


def test_from_fits_rejects_other_files(tmp_path, geom):
    from astropy.io import fits

    path = tmp_path / "other.fits"
    fits.PrimaryHDU(np.zeros((3, 3))).writeto(path)
    with pytest.raises(InvalidInputError, match="not an lsstdrp RawFrame"):
        RawFrame.from_fits(path)
    with pytest.raises(InvalidInputError, match="not an lsstdrp Calibs"):
        Calibs.from_fits(path)


# -- Linearity ----------------------------------------------------------------------------
def test_linearity_models_evaluate():
    poly = Linearity("polynomial", coefficients=[-1e-6, 2e-12])
    x = np.array([0.0, 1e3, 5e4])
    np.testing.assert_allclose(poly.evaluate(x), x - 1e-6 * x**2 + 2e-12 * x**3, rtol=1e-14)
    knots = np.linspace(0, 1e5, 11)
    spl = Linearity("spline", knots=knots, values=poly.offset(knots), turnoff=9e4)
    np.testing.assert_allclose(spl.evaluate(knots), poly.evaluate(knots), rtol=0, atol=1e-9)
    assert abs(float(spl.evaluate(3.3e4)) - float(poly.evaluate(3.3e4))) < 1.0
    assert float(spl.offset(2e5)) == pytest.approx(float(poly.offset(1e5)))  # constant beyond the knots
    table = poly.offset(np.arange(1001.0))
    lut = Linearity("lookup", table=table)
    assert float(lut.evaluate(500.5)) == pytest.approx(500.5 + 0.5 * (table[500] + table[501]))
    assert float(lut.offset(5000.0)) == pytest.approx(table[-1])
    assert Linearity("spline", knots=[0, 10], values=[0, 1]).evaluate(5.0) == pytest.approx(5.5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="cubic", coefficients=[1.0]), "kind"),
    (dict(kind="polynomial"), "coefficients"),
    (dict(kind="polynomial", coefficients=[np.nan]), "non-finite"),
    (dict(kind="polynomial", coefficients=[1e-7], table=[1.0]), "not used"),
    (dict(kind="spline", knots=[0, 2, 1], values=[0, 0, 0]), "increasing"),
    (dict(kind="spline", knots=[0, 1, 2], values=[0, 0]), "one per knot"),
    (dict(kind="lookup", table=[]), "empty"),
    (dict(kind="lookup", table=[0.0], turnoff=0.0), "turnoff"),
])
def test_linearity_validation(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(InvalidInputError, match=match):
        Linearity(kind, **kwargs)


# -- Calibs -------------------------------------------------------------------------------
def _full_calibs(geom, *, defects_as_mask=False):
    rng = np.random.default_rng(3)
    shape = geom.assembled_shape
    n = geom.n_amps
    lins = [Linearity("polynomial", coefficients=[-1e-7, 1e-13], turnoff=9e4),
            Linearity("spline", knots=[0.0, 1e3, 1e4, 1e5], values=[0.0, 1.0, -3.0, -50.0]),
            Linearity("lookup", table=np.linspace(0, -10, 200), turnoff=150.0)] + [None] * (n - 3)
    defects = [BBox(0, 10, 3, 4), BBox(12, 13, 5, 6)]
    if defects_as_mask:
        m = np.zeros(shape, dtype=bool)
        m[0:10, 3] = True
        defects = m
    flat = rng.uniform(0.9, 1.1, shape)
    flat[0, 0] = np.nan  # no calibration there: allowed, ISR flags it
    return Calibs(
        geom, bias=rng.normal(0, 2, shape), dark=rng.uniform(0, 0.1, shape), flat=flat,
        linearity=lins, crosstalk=rng.normal(0, 1e-4, (n, n)), crosstalk_quadratic=rng.normal(0, 1e-9, (n, n)),
        bf_kernel=rng.normal(0, 1e-7, (5, 7)), defects=defects, gains=geom.gains * 1.01,
        read_noises=geom.read_noises, ptc=PhotonTransferCurve(
            geom.gains, geom.read_noises, a00=np.full(n, -2e-6),
            mean=rng.uniform(0, 1e5, (n, 4)), variance=rng.uniform(0, 1e5, (n, 4))),
        metadata={"source": "test", "n": 3},
    )


@pytest.mark.parametrize("as_mask", [False, True])
def test_calibs_fits_round_trip(geom, tmp_path, as_mask):
    c = _full_calibs(geom, defects_as_mask=as_mask)
    path = tmp_path / "calibs.fits"
    c.to_fits(path)
    back = Calibs.from_fits(path)
    assert back.geometry == geom and back.metadata == c.metadata
    for f in ("bias", "dark", "flat", "crosstalk", "crosstalk_quadratic", "bf_kernel", "gains", "read_noises"):
        np.testing.assert_array_equal(getattr(back, f), getattr(c, f), err_msg=f)
    assert back.bias.dtype == np.float32 and np.isnan(back.flat[0, 0])
    x = np.array([10.0, 500.0, 7e4])
    for a, b in zip(c.linearity, back.linearity):
        assert (a is None) == (b is None)
        if a is not None:
            assert (a.kind, a.turnoff) == (b.kind, b.turnoff)
            np.testing.assert_array_equal(a.evaluate(x), b.evaluate(x))
    if as_mask:
        assert isinstance(back.defects, np.ndarray) and back.defects.dtype == bool
    else:
        assert back.defects == c.defects
    np.testing.assert_array_equal(back.defect_mask(), c.defect_mask())
    for f in ("gain", "noise", "a00", "turnoff", "mean", "variance"):
        np.testing.assert_array_equal(getattr(back.ptc, f), getattr(c.ptc, f), err_msg=f)


def test_minimal_calibs_round_trip(geom, tmp_path):
    c = Calibs(geom)
    assert c.defect_mask().sum() == 0
    np.testing.assert_array_equal(c.amp_gains(), geom.gains)
    np.testing.assert_array_equal(c.amp_read_noises(), geom.read_noises)
    c.to_fits(tmp_path / "c.fits")
    back = Calibs.from_fits(tmp_path / "c.fits")
    assert all(getattr(back, f) is None for f in ("bias", "dark", "flat", "linearity", "crosstalk", "bf_kernel",
                                                  "defects", "gains", "ptc"))


def test_calibs_copies_and_freezes_inputs(geom):
    bias = np.zeros(geom.assembled_shape)
    bias.flags.writeable = False  # read-only input is fine
    xt = np.zeros((8, 8))
    c = Calibs(geom, bias=bias, crosstalk=xt, linearity={"C01": Linearity("polynomial", coefficients=[1e-7])})
    xt[0, 1] = 1.0
    assert c.crosstalk[0, 1] == 0 and not c.crosstalk.flags.writeable and not c.bias.flags.writeable
    assert c.linearity[1] is not None and c.linearity[0] is None
    assert c.replace(bias=None).bias is None and c.bias is not None


@pytest.mark.parametrize("kwargs, match", [
    (dict(bias=np.zeros((5, 5))), "bias.*assembled shape"),
    (dict(flat=np.zeros((20, 24), dtype=complex)), "flat.*dtype"),
    (dict(crosstalk=np.zeros((8, 7))), "crosstalk"),
    (dict(crosstalk=np.full((8, 8), np.nan)), "crosstalk.*non-finite"),
    (dict(bf_kernel=np.zeros((4, 5))), "bf_kernel.*odd"),
    (dict(defects=[BBox(0, 30, 0, 1)]), r"defects\[0\].*outside"),
    (dict(defects=np.zeros((20, 24), dtype=int)), "defects.*bool"),
    (dict(defects=5), "defects"),
    (dict(linearity=[None] * 3), "linearity.*8"),
    (dict(linearity={"X9": None}), "unknown"),
    (dict(linearity=Linearity("polynomial", coefficients=[0.0])), "one Linearity per"),
    (dict(linearity=["poly"] + [None] * 7), r"linearity\[0\]"),
    (dict(gains=np.zeros(8)), "gains"),
    (dict(read_noises=np.ones(3)), "read_noises"),
    (dict(ptc="ptc"), "ptc"),
])
def test_calibs_validation_names_the_field(geom, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        Calibs(geom, **kwargs)


def test_ptc_validation():
    with pytest.raises(InvalidInputError, match="gain"):
        PhotonTransferCurve([0.0], [1.0])
    with pytest.raises(InvalidInputError, match="noise"):
        PhotonTransferCurve([1.0, 2.0], [1.0])
    with pytest.raises(InvalidInputError, match="together"):
        PhotonTransferCurve([1.0], [1.0], mean=[[1.0]])
    p = PhotonTransferCurve([1.0, 2.0], [5.0, 6.0])
    assert p.n_amps == 2 and np.isnan(p.a00).all()
