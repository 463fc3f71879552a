"""FITS save/load of the PSF models and the adapter from PIFF."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ._models import AnalyticPsf, PixelGridPsf, PolynomialBasis, VisitPixelGridPsf

__all__ = ["write_psf", "read_psf", "from_piff"]

_VERSION = 1


def _basis_cards(b: PolynomialBasis, prefix: str = "") -> dict:
    return {f"{prefix}SPORD": b.spatial_order, f"{prefix}XMIN": b.bounds[0], f"{prefix}XMAX": b.bounds[1],
            f"{prefix}YMIN": b.bounds[2], f"{prefix}YMAX": b.bounds[3], f"{prefix}CORD": b.color_order,
            f"{prefix}CSORD": b.color_spatial_order, f"{prefix}CREF": b.color_ref}


def _basis_from(h: Any, prefix: str = "") -> PolynomialBasis:
    return PolynomialBasis(int(h[f"{prefix}SPORD"]), (h[f"{prefix}XMIN"], h[f"{prefix}XMAX"], h[f"{prefix}YMIN"],
                                                     h[f"{prefix}YMAX"]),
                           color_order=int(h[f"{prefix}CORD"]), color_spatial_order=int(h[f"{prefix}CSORD"]),
                           color_ref=float(h[f"{prefix}CREF"]))


def write_psf(psf: Any, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Save a :mod:`lsstdrp.psf` model to a FITS file.

    Parameters
    ----------
    psf : PixelGridPsf, AnalyticPsf or VisitPixelGridPsf
        The model.
    path : str or path-like
        Output file.
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    InvalidInputError
        An unsupported model type.
    OSError
        The file exists and ``overwrite`` is False.

    Notes
    -----
    The primary HDU holds the coefficients (``LDRPPSF`` names the class, ``LDRPVER``
    the format version) and the basis in header cards; a visit model adds one image
    extension ``DET<d>`` per detector with its per-detector terms, basis and affine
    transform (cards ``A00`` .. ``A12``).

    Examples
    --------
    >>> import tempfile, os
    >>> from lsstdrp.core import GaussianPsf
    >>> from lsstdrp.psf import PixelGridPsf, PolynomialBasis, read_psf, write_psf
    >>> psf = PixelGridPsf(GaussianPsf(1.5).kernel_image(0, 0)[None], PolynomialBasis(0, (0, 9, 0, 9)))
    >>> path = os.path.join(tempfile.mkdtemp(), "psf.fits")
    >>> write_psf(psf, path)
    >>> bool((read_psf(path).coefficients == psf.coefficients).all())
    True
    """
    from astropy.io import fits

    hdr = fits.Header()
    hdr["LDRPVER"] = _VERSION
    if isinstance(psf, PixelGridPsf):
        hdr["LDRPPSF"] = "PixelGridPsf"
        hdr.update(_basis_cards(psf.basis))
        hdr["OVERSAMP"] = psf.oversampling
        hdr["INTERP"] = psf.interpolant
        hdr["COLNAME"] = psf.color_name or ""
        hdus = [fits.PrimaryHDU(np.asarray(psf.coefficients), header=hdr)]
    elif isinstance(psf, AnalyticPsf):
        hdr["LDRPPSF"] = "AnalyticPsf"
        hdr.update(_basis_cards(psf.basis))
        hdr["PROFILE"] = psf.profile
        hdr["BETA"] = psf.beta
        hdr["KSIZE"] = -1 if psf.size is None else int(psf.size)
        hdus = [fits.PrimaryHDU(np.asarray(psf.coefficients), header=hdr)]
    elif isinstance(psf, VisitPixelGridPsf):
        hdr["LDRPPSF"] = "VisitPixelGridPsf"
        hdr.update(_basis_cards(psf.shared_basis))
        hdr["OVERSAMP"] = psf.oversampling
        hdr["INTERP"] = psf.interpolant
        hdr["COLNAME"] = psf.color_name or ""
        hdus = [fits.PrimaryHDU(np.asarray(psf.shared), header=hdr)]
        for d in psf.detectors:
            h = fits.Header()
            h["DET"] = d if isinstance(d, (int, np.integer, str)) else str(d)
            h.update(_basis_cards(psf.detector_basis[d]))
            for i in range(2):
                for j in range(3):
                    h[f"A{i}{j}"] = float(psf.transforms[d][i, j])
            hdus.append(fits.ImageHDU(np.asarray(psf.detector_terms[d]), header=h, name=f"DET{d}"))
    else:
        raise InvalidInputError(f"`psf` must be a PixelGridPsf, AnalyticPsf or VisitPixelGridPsf; got {type(psf).__name__}")
    fits.HDUList(hdus).writeto(path, overwrite=overwrite)


def read_psf(path: str | os.PathLike) -> Any:
    """Load a model written by :func:`write_psf`.

    Parameters
    ----------
    path : str or path-like
        The FITS file.

    Returns
    -------
    PixelGridPsf, AnalyticPsf or VisitPixelGridPsf

    Raises
    ------
    InvalidInputError
        Not a file written by :func:`write_psf`.
    """
    from astropy.io import fits

    with fits.open(path) as hl:
        h = hl[0].header
        kind = h.get("LDRPPSF")
        data = np.array(hl[0].data, dtype=np.float64)
        if kind == "PixelGridPsf":
            return PixelGridPsf(data, _basis_from(h), oversampling=int(h["OVERSAMP"]), interpolant=h["INTERP"],
                                color_name=h["COLNAME"] or None)
        if kind == "AnalyticPsf":
            return AnalyticPsf(h["PROFILE"], data, _basis_from(h), beta=float(h["BETA"]),
                               size=None if int(h["KSIZE"]) < 0 else int(h["KSIZE"]))
        if kind == "VisitPixelGridPsf":
            terms, bases, trs = {}, {}, {}
            for e in hl[1:]:
                d = e.header["DET"]
                terms[d] = np.array(e.data, dtype=np.float64)
                bases[d] = _basis_from(e.header)
                trs[d] = np.array([[e.header[f"A{i}{j}"] for j in range(3)] for i in range(2)])
            return VisitPixelGridPsf(data, _basis_from(h), terms, bases, trs, oversampling=int(h["OVERSAMP"]),
                                     interpolant=h["INTERP"], color_name=h["COLNAME"] or None)
    raise InvalidInputError(f"{os.fspath(path)!r} is not an lsstdrp PSF file (no LDRPPSF card)")


def from_piff(piff_psf: Any, bounds: Any, *, spatial_order: int = 2, size: int = 25, chipnum: int = 0,
              n_grid: int | None = None) -> PixelGridPsf:
    """Convert a fitted PIFF PSF to a :class:`PixelGridPsf` (lsstdrp's protocol).

    PIFF's model is drawn pixel-centred on an ``n_grid`` x ``n_grid`` grid of
    positions over ``bounds`` and each kernel pixel is fitted by the polynomial basis
    (exact when PIFF's interpolation is a polynomial of at most ``spatial_order`` in
    the same coordinates). The grid values are used with the interpolating Lanczos-5
    kernel, so ``kernel_image`` reproduces PIFF's pixel-centred stamps.

    Parameters
    ----------
    piff_psf : piff.PSF
        A fitted PIFF PSF whose pixel coordinates are those of the exposure (PIFF is
        1-based; the conversion adds 1).
    bounds : (xmin, xmax, ymin, ymax)
        The detector area, 0-based pixels.
    spatial_order : int
        Degree of the lsstdrp polynomial.
    size : int
        Odd kernel side.
    chipnum : int
        PIFF chip number.
    n_grid : int, optional
        Positions per axis (default ``spatial_order + 3``).

    Returns
    -------
    PixelGridPsf

    Raises
    ------
    InvalidInputError
        An even ``size``.
    """
    if size % 2 == 0:
        raise InvalidInputError(f"`size` must be odd; got {size}")
    basis = PolynomialBasis(spatial_order, bounds)
    ng = spatial_order + 3 if n_grid is None else int(n_grid)
    xmin, xmax, ymin, ymax = basis.bounds
    gx, gy = np.meshgrid(np.linspace(xmin + 0.5, xmax - 0.5, ng), np.linspace(ymin + 0.5, ymax - 0.5, ng))
    gx, gy = np.floor(gx.ravel() + 0.5), np.floor(gy.ravel() + 0.5)
    ks = []
    for x, y in zip(gx, gy):
        im = piff_psf.draw(float(x) + 1.0, float(y) + 1.0, chipnum=chipnum, stamp_size=size)
        a = np.asarray(im.array, dtype=np.float64)
        ks.append(a / a.sum())
    B = basis.evaluate(gx, gy)
    K = np.array(ks).reshape(len(ks), -1)
    coef = np.linalg.lstsq(B, K, rcond=None)[0].reshape(basis.n_terms, size, size)
    if not np.all(np.isfinite(coef)):
        raise InvalidInputError("PIFF's model gave non-finite kernels")
    return PixelGridPsf(coef, basis, interpolant="lanczos5")

