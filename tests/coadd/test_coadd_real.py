"""Real DECam data (sfft test set): our convolution + median stacking vs SFFT's stacks.

Reference: ``4check/Stack-DEC-OBS{04,18}.fits`` of thomasvrussell/sfft @ fa820e8b, each
the pixel-wise median of [a, b*K_b, ..., e*K_e] with astropy
``convolve(boundary='extend', normalize_kernel=False)`` (see
../shared/data/real/README.md, section 8). Acceptance: max |difference| <= 1e-6 max
|reference| in the interior (away from the boundary band of the largest kernel).
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest

from lsstdrp.coadd import coadd, convolve

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "sfft_decam_decorr"

pytestmark = pytest.mark.real_data


@pytest.mark.skipif(not DATA.exists(), reason="real data not available (../shared/data/real)")
@pytest.mark.parametrize("group", ["04", "18"])
def test_decam_median_stack_matches_sfft(group, record_property):
    from astropy.io import fits

    inp = DATA / "input_data"
    images, margin = [], 0
    for letter in "abcde":
        img = fits.getdata(inp / f"DEC-OBS{group}{letter}.mini.fits.gz").astype(np.float64)
        if letter != "a":
            k = fits.getdata(inp / f"DEC-OBS{group}{letter}.MatchKernel.fits").astype(np.float64)
            margin = max(margin, k.shape[0] // 2)
            img = convolve(img, k, boundary="extend").image
        images.append(types.SimpleNamespace(image=img, variance=np.ones_like(img),
                                            mask=np.zeros(img.shape, np.uint32)))
    stack = coadd(images, method="median", weights=np.ones(5), missing_psf="flag")
    ref = fits.getdata(DATA / "4check" / f"Stack-DEC-OBS{group}.fits").astype(np.float64)
    sl = (slice(margin, -margin), slice(margin, -margin))
    rel = float(np.max(np.abs(stack.image[sl] - ref[sl])) / np.max(np.abs(ref[sl])))
    record_property(f"decam_stack{group}_max_rel_diff", rel)
    assert np.all(stack.n_inputs == 5)
    assert rel <= 1e-6
