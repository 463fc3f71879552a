import numpy as np
import pytest

from lsstdrp import InputDataWarning, InvalidInputError
from lsstdrp.core import (
    DEFAULT_BAD_PLANES,
    MaskPlane,
    as_image,
    as_rng,
    bad_pixel_mask,
    check_in,
    check_positive,
    check_same_shape,
    normalize_mask,
)

DTYPES = ["float32", "float64", "int16", "int32", ">f4", ">f8", "uint8", "bool"]
EXPECTED = {"float32": "float32", "float64": "float64", "int16": "float32", "int32": "float64",
            ">f4": "float32", ">f8": "float64", "uint8": "float32", "bool": "float32"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_as_image_dtype_policy(dtype):
    arr = (np.arange(12).reshape(3, 4) % 2).astype(dtype)
    out = as_image(arr)
    assert out.dtype == np.dtype(EXPECTED[dtype])
    assert out.dtype.byteorder in "=|"
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, arr.astype(np.float64))  # never rescaled


def test_as_image_noncontiguous_and_no_copy_when_possible():
    base = np.ones((6, 8), dtype=np.float32)
    out = as_image(base[:, ::2])
    assert out.flags.c_contiguous and out.shape == (6, 4)
    assert np.shares_memory(as_image(base), base)  # no copy when nothing changes


def test_as_image_bad_inputs():
    with pytest.raises(InvalidInputError, match="`img` has 1 dimension"):
        as_image(np.ones(3), "img")
    with pytest.raises(InvalidInputError, match="every axis"):
        as_image(np.ones((0, 3)), "image")
    with pytest.raises(InvalidInputError, match="`image`.*complex"):
        as_image(np.ones((2, 2), complex))
    with pytest.raises(TypeError, match="`image` is None"):
        as_image(None)
    with pytest.raises(TypeError, match="object"):
        as_image(np.array([[object()]]))
    with pytest.raises(InvalidInputError, match="non-finite"):
        as_image(np.array([[np.nan, 1.0]]), allow_nonfinite=False)


def test_check_same_shape():
    a = np.zeros((10, 10))
    check_same_shape(a, "image", variance=np.zeros((10, 10)), mask=None)
    with pytest.raises(InvalidInputError, match=r"`variance` has shape \(10, 12\); it must match `image` \(10, 10\)"):
        check_same_shape(a, "image", variance=np.zeros((10, 12)))


def test_normalize_mask_bool_and_bits():
    b = np.array([[True, False], [False, True]])
    m = normalize_mask(b, (2, 2))
    assert m.dtype == np.uint32
    assert m.tolist() == [[MaskPlane.BAD, 0], [0, MaskPlane.BAD]]
    bits = np.array([[MaskPlane.SAT, MaskPlane.CR], [0, 0]], dtype=np.uint32)
    m2 = normalize_mask(bits, (2, 2))
    assert m2 is not bits and m2.tolist() == bits.tolist()


def test_normalize_mask_nonfinite_becomes_no_data_and_input_untouched():
    img = np.ones((3, 3), np.float32)
    img[1, 1] = np.inf
    var = np.ones((3, 3), np.float32)
    var[0, 0] = -1.0
    mask = np.zeros((3, 3), np.uint32)
    mask.flags.writeable = False
    with pytest.warns(InputDataWarning, match="lsstdrp: 2 pixel"):
        out = normalize_mask(mask, (3, 3), image=img, variance=var)
    assert out[1, 1] & MaskPlane.NO_DATA and out[0, 0] & MaskPlane.NO_DATA
    assert np.count_nonzero(out) == 2
    assert not mask.any()


def test_normalize_mask_bad_inputs():
    with pytest.raises(InvalidInputError, match="`mask` has shape"):
        normalize_mask(np.zeros((2, 3), bool), (2, 2))
    with pytest.raises(InvalidInputError, match="negative"):
        normalize_mask(np.full((2, 2), -1), (2, 2))
    with pytest.raises(InvalidInputError, match="dtype float64"):
        normalize_mask(np.zeros((2, 2)), (2, 2))


def test_bad_pixel_mask_selection():
    m = np.array([[MaskPlane.SAT, MaskPlane.DETECTED, MaskPlane.CR, 0]], dtype=np.uint32)
    assert bad_pixel_mask(m).tolist() == [[True, False, True, False]]
    assert bad_pixel_mask(m, ["DETECTED"]).tolist() == [[False, True, False, False]]
    assert bad_pixel_mask(m, MaskPlane.CR).tolist() == [[False, False, True, False]]
    assert not (DEFAULT_BAD_PLANES & MaskPlane.DETECTED)
    with pytest.raises(InvalidInputError, match="unknown plane 'NOPE'"):
        bad_pixel_mask(m, ["NOPE"])


def test_small_checks():
    assert isinstance(as_rng(3), np.random.Generator)
    g = np.random.default_rng(1)
    assert as_rng(g) is g
    with pytest.raises(TypeError, match="`rng`"):
        as_rng(1.5)
    assert check_positive(2, "sigma") == 2.0
    assert check_positive(0, "sigma", allow_zero=True) == 0.0
    for bad in (0, -1, np.nan, "x"):
        with pytest.raises(InvalidInputError, match="`sigma`"):
            check_positive(bad, "sigma")
    assert check_in("a", "mode", ["a", "b"]) == "a"
    with pytest.raises(InvalidInputError, match="`mode` is 'c'"):
        check_in("c", "mode", ["a", "b"])


def test_maskplane_bits_unique_and_uint32():
    values = [int(m) for m in MaskPlane]
    assert len(set(values)) == len(values)
    assert max(values) < 2**32
    assert all(v & (v - 1) == 0 for v in values)  # single bits
