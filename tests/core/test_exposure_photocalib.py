import dataclasses
import pickle

import numpy as np
import pytest

from lsstdrp import InputDataWarning, InvalidInputError
from lsstdrp.core import Exposure, MaskPlane, PhotoCalib, abmag_to_njy, njy_to_abmag


def test_exposure_normalises_and_does_not_mutate():
    img = np.arange(20, dtype=">f4").reshape(4, 5)
    var = np.ones((4, 5), np.float64)
    mask = np.zeros((4, 5), bool)
    mask[2, 2] = True
    exp = Exposure(img, var, mask, band="r", visit=3, detector=1, mjd=60000.0, exptime=30.0)
    assert exp.image.dtype == np.float32 and exp.image.dtype.byteorder in "=|"
    assert exp.variance.dtype == np.float64
    assert exp.mask.dtype == np.uint32 and exp.mask[2, 2] == MaskPlane.BAD
    assert not exp.image.flags.writeable and not exp.mask.flags.writeable
    assert mask.dtype == bool and img.flags.writeable  # caller's arrays untouched
    assert exp.shape == (4, 5)
    exp2 = exp.replace(band="g")
    assert exp2.band == "g" and exp.band == "r"
    assert dataclasses.replace(exp, visit=4).visit == 4
    assert "band='r'" in repr(exp)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.band = "i"
    assert pickle.loads(pickle.dumps(exp)).visit == 3


def test_exposure_nonfinite_is_no_data():
    img = np.zeros((3, 3), np.float32)
    img[0, 1] = np.nan
    with pytest.warns(InputDataWarning):
        exp = Exposure(img, np.ones((3, 3), np.float32))
    assert exp.mask[0, 1] & MaskPlane.NO_DATA
    assert np.count_nonzero(exp.mask) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(variance=np.ones((3, 4))), "`variance` has shape"),
        (dict(mask=np.zeros((2, 3), bool)), "`mask` has shape"),
        (dict(exptime=-1.0), "`exptime`"),
        (dict(mjd=np.nan), "`mjd`"),
        (dict(band=3), "`band`"),
    ],
)
def test_exposure_bad_inputs(kwargs, match):
    args = dict(image=np.zeros((3, 3)), variance=np.ones((3, 3)))
    args.update(kwargs)
    with pytest.raises(InvalidInputError, match=match):
        Exposure(**args)


def test_photocalib_ab_relations():
    assert float(njy_to_abmag(1.0)) == pytest.approx(31.4)
    assert float(abmag_to_njy(31.4 - 2.5)) == pytest.approx(10.0)
    assert np.isnan(njy_to_abmag(-1.0))
    pc = PhotoCalib(zeropoint=27.0, zeropoint_err=0.01)
    # a source of magnitude 20 gives 10**(0.4*(27-20)) e-
    inst = 10 ** (0.4 * (27.0 - 20.0))
    assert float(pc.instflux_to_mag(inst)) == pytest.approx(20.0, abs=1e-12)
    flux, err = pc.instflux_to_njy(inst, instflux_err=0.0)
    assert float(err) == pytest.approx(0.4 * np.log(10) * 0.01 * float(flux))
    assert float(pc.njy_to_instflux(flux)) == pytest.approx(inst)


def test_photocalib_spatial_variation_and_roundtrip():
    coeff = np.zeros((2, 2))
    coeff[1, 0] = 0.01  # +1% at the right edge, -1% at the left
    pc = PhotoCalib(zeropoint=31.4, spatial_coefficients=coeff, bbox=(0, 100, 0, 50))
    c = pc.calibration([0, 50, 100], [25, 25, 25])
    np.testing.assert_allclose(c, [0.99, 1.0, 1.01])
    pc2 = PhotoCalib.from_dict(pc.to_dict())
    np.testing.assert_allclose(pc2.calibration(10, 3), pc.calibration(10, 3))
    assert eval(repr(pc), {"PhotoCalib": PhotoCalib}).zeropoint == 31.4


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(zeropoint=np.inf), "`zeropoint`"),
        (dict(zeropoint="a"), "`zeropoint`"),
        (dict(zeropoint=30, zeropoint_err=-1), "`zeropoint_err`"),
        (dict(zeropoint=30, spatial_coefficients=np.zeros((2, 3)), bbox=(0, 1, 0, 1)), "`spatial_coefficients`"),
        (dict(zeropoint=30, spatial_coefficients=np.zeros((2, 2))), "`bbox` is required"),
        (dict(zeropoint=30, spatial_coefficients=np.zeros((2, 2)), bbox=(1, 0, 0, 1)), "`bbox`"),
    ],
)
def test_photocalib_bad_inputs(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        PhotoCalib(**kwargs)
