"""Direct coadds assembled by region, the CoaddPsf, warp files and the convolution helper."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._errors import InvalidInputError
from ..core import DEFAULT_BAD_PLANES, MaskPlane, as_image, bad_pixel_mask, check_in, normalize_mask
from ._covariance import PixelCovariance
from ._warp import WarpedPsf, _kernel_moments

__all__ = [
    "CoaddPsf",
    "CoaddResult",
    "coadd",
    "write_warp",
    "read_warp",
    "convolve",
    "ConvolutionResult",
]

_ND = np.uint32(MaskPlane.NO_DATA)


# ---------------------------------------------------------------------------------------
# CoaddPsf
# ---------------------------------------------------------------------------------------
def _point_in_polygon(poly: np.ndarray, x: float, y: float) -> bool:
    px, py = poly[:, 0], poly[:, 1]
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    cross = (py > y) != (qy > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = px + (y - py) * (qx - px) / (qy - py)
    return bool(np.count_nonzero(cross & (x < xc)) % 2 == 1)


@dataclasses.dataclass(frozen=True, eq=False)
class CoaddPsf:
    r"""The PSF of a direct coadd: the weighted sum of the warped input PSFs covering a point.

    .. math:: P_\mathrm{coadd}(\mathbf x) = \frac{\sum_{i \ni \mathbf x} w_i P_i(\mathbf x)}
              {\sum_{i \ni \mathbf x} w_i},

    where the sums run over the inputs whose outline (``polygons``) contains
    :math:`\mathbf x` and :math:`w_i` is the one weight per input used by :func:`coadd`.
    It is discontinuous at input edges and evaluated lazily (nothing is computed until a
    method is called). It satisfies the :class:`~lsstdrp.core.Psf` protocol. Where an
    input was masked or clipped, or an input edge lies within the PSF footprint, the pixel
    coadd deviates from this model; :func:`coadd` flags those pixels ``INEXACT_PSF``.

    Parameters
    ----------
    psfs : sequence of Psf
        The input PSFs in the coadd frame (e.g. :class:`WarpedPsf`).
    weights : array_like, shape (n,)
        One positive weight per input.
    polygons : sequence of numpy.ndarray, shape (m, 2)
        Each input's outline in coadd pixels, (x, y).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import GaussianPsf
    >>> sq = np.array([[-0.5, -0.5], [99.5, -0.5], [99.5, 99.5], [-0.5, 99.5]])
    >>> p = CoaddPsf([GaussianPsf(1.5), GaussianPsf(2.5)], [1.0, 3.0], [sq, sq])
    >>> k = p.kernel_image(50, 50)
    >>> round(float(k.sum()), 12), p.n_inputs(50, 50)
    (1.0, 2)
    """

    psfs: Sequence[Any]
    weights: Any
    polygons: Sequence[Any]

    def __post_init__(self) -> None:
        psfs = tuple(self.psfs)
        w = np.asarray(self.weights, dtype=np.float64)
        polys = tuple(np.asarray(p, dtype=np.float64) for p in self.polygons)
        if not (len(psfs) == w.size == len(polys)) or w.ndim != 1 or w.size == 0:
            raise InvalidInputError(
                f"`psfs`, `weights` and `polygons` must have the same positive length; got {len(psfs)}, {w.size}, {len(polys)}"
            )
        for i, p in enumerate(psfs):
            if p is None or not all(hasattr(p, m) for m in ("kernel_image", "image", "moments")):
                raise InvalidInputError(f"`psfs[{i}]` does not satisfy the Psf protocol (got {type(p).__name__})")
        if not np.all(np.isfinite(w) & (w > 0)):
            raise InvalidInputError("`weights` must be finite and > 0")
        for i, p in enumerate(polys):
            if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] < 3:
                raise InvalidInputError(f"`polygons[{i}]` has shape {p.shape}; expected (m >= 3, 2)")
        w.flags.writeable = False
        object.__setattr__(self, "psfs", psfs)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "polygons", polys)

    @property
    def color_name(self) -> str | None:
        """The colour the input PSFs are parametrised by (from the first chromatic one)."""
        for p in self.psfs:
            c = getattr(p, "color_name", None)
            if c is not None:
                return c
        return None

    def contributors(self, x: float, y: float) -> np.ndarray:
        """Indices of the inputs whose outline contains ``(x, y)``.

        Parameters
        ----------
        x, y : float
            Coadd pixel position.

        Returns
        -------
        numpy.ndarray of int
        """
        return np.array([i for i, p in enumerate(self.polygons) if _point_in_polygon(p, float(x), float(y))], dtype=int)

    def n_inputs(self, x: float, y: float) -> int:
        """Number of inputs covering ``(x, y)``.

        Parameters
        ----------
        x, y : float
            Coadd pixel position.

        Returns
        -------
        int
        """
        return int(self.contributors(x, y).size)

    def _check(self, x: float, y: float) -> np.ndarray:
        x, y = float(x), float(y)
        if not (np.isfinite(x) and np.isfinite(y)):
            raise InvalidInputError(f"`x`, `y` must be finite; got ({x}, {y})")
        idx = self.contributors(x, y)
        if idx.size == 0:
            raise InvalidInputError(f"no input of the coadd covers ({x}, {y}); the CoaddPsf is undefined there")
        return idx

    @staticmethod
    def _pad_sum(stamps: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
        ny = max(s.shape[0] for s in stamps)
        nx = max(s.shape[1] for s in stamps)
        out = np.zeros((ny, nx))
        for s, w in zip(stamps, weights):
            oy, ox = (ny - s.shape[0]) // 2, (nx - s.shape[1]) // 2
            out[oy : oy + s.shape[0], ox : ox + s.shape[1]] += w * s
        return out / float(np.sum(weights))

    def kernel_image(self, x: float, y: float, *, color: float | None = None) -> np.ndarray:
        """Weighted mean of the covering inputs' kernels at ``(x, y)`` (odd square, unit sum).

        Parameters
        ----------
        x, y : float
            Coadd pixel position.
        color : float, optional
            Passed to the input PSFs.

        Returns
        -------
        numpy.ndarray of float64

        Raises
        ------
        InvalidInputError
            If no input covers ``(x, y)``.
        """
        idx = self._check(x, y)
        ks = [np.asarray(self.psfs[i].kernel_image(x, y, color=color), dtype=np.float64) for i in idx]
        k = self._pad_sum(ks, self.weights[idx])
        if k.shape[0] != k.shape[1]:
            n = max(k.shape)
            sq = np.zeros((n, n))
            sq[(n - k.shape[0]) // 2 : (n - k.shape[0]) // 2 + k.shape[0], (n - k.shape[1]) // 2 : (n - k.shape[1]) // 2 + k.shape[1]] = k
            k = sq
        return k / k.sum()

    def image(self, x: float, y: float, *, color: float | None = None,
              shape: int | tuple[int, int] | None = None) -> np.ndarray:
        """Weighted mean of the covering inputs' star images at sub-pixel ``(x, y)``.

        Parameters
        ----------
        x, y : float
            Coadd pixel position of the star.
        color : float, optional
            Passed to the input PSFs.
        shape : int or (int, int), optional
            Odd stamp shape (default: the largest input kernel size).

        Returns
        -------
        numpy.ndarray of float64

        Raises
        ------
        InvalidInputError
            If no input covers ``(x, y)``.
        """
        idx = self._check(x, y)
        if shape is None:
            n = max(int(np.shape(self.psfs[i].kernel_image(x, y, color=color))[0]) for i in idx)
            shape = n
        stamps = [np.asarray(self.psfs[i].image(x, y, color=color, shape=shape), dtype=np.float64) for i in idx]
        return self._pad_sum(stamps, self.weights[idx])

    def moments(self, x: float, y: float, *, color: float | None = None) -> tuple[float, float, float]:
        """Adaptive second moments (ixx, iyy, ixy) in pixels² of :meth:`kernel_image`.

        Parameters
        ----------
        x, y : float
            Coadd pixel position.
        color : float, optional
            Passed to the input PSFs.

        Returns
        -------
        tuple of float
        """
        return _kernel_moments(self.kernel_image(x, y, color=color))

    def with_input_psfs(self, input_psfs: Sequence[Any]) -> "CoaddPsf":
        """A new CoaddPsf from updated *input-frame* PSFs, without touching any pixels.

        Each :class:`WarpedPsf` keeps its WCS pair and kernel and gets the new input PSF
        (other entries are replaced as given, so they must already be in the coadd frame).

        Parameters
        ----------
        input_psfs : sequence of Psf
            One per input, in the order of :attr:`psfs`.

        Returns
        -------
        CoaddPsf

        Raises
        ------
        InvalidInputError
            Wrong number of PSFs or a non-PSF entry.
        """
        new = list(input_psfs)
        if len(new) != len(self.psfs):
            raise InvalidInputError(f"`input_psfs` has {len(new)} entries; the coadd has {len(self.psfs)} inputs")
        out = []
        for i, (old, p) in enumerate(zip(self.psfs, new)):
            if p is None:
                raise InvalidInputError(f"`input_psfs[{i}]` is None; every input needs a PSF")
            out.append(dataclasses.replace(old, psf=p) if isinstance(old, WarpedPsf) else p)
        return CoaddPsf(out, self.weights, self.polygons)


# ---------------------------------------------------------------------------------------
# warp files (FITS) and region access
# ---------------------------------------------------------------------------------------
def write_warp(path: str | os.PathLike, warp: Any, *, overwrite: bool = False) -> str:
    """Write a warp (image, mask, variance, outline, weight) to a FITS file.

    HDUs: ``IMAGE`` (float32), ``MASK`` (MaskPlane bits stored as int32), ``VARIANCE``
    (float32), ``POLYGON`` (binary table x, y) and, when the warp has a covariance model,
    ``COVKERN`` (its correlation kernels), ``COVVAR`` (the mean variance around each
    kernel sample), ``COVX``/``COVY`` (the sample positions), so a coadd built from
    files carries the covariance too; the primary header carries ``WEIGHT``
    (the inverse mean variance over valid pixels) and the output WCS. :func:`coadd`
    reads such files strip by strip, so a stack of them never needs to fit in memory.

    Parameters
    ----------
    path : str or path-like
        Output file.
    warp : WarpResult or object with image, variance, mask (and optionally wcs, polygon)
        The warp to write.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InvalidInputError
        If the planes are missing or inconsistent.
    """
    from astropy.io import fits

    img, var, msk = _planes(warp, "warp")
    hdr = fits.Header()
    wcs = getattr(warp, "wcs", None)
    if wcs is not None and hasattr(wcs, "to_header"):
        hdr.update(wcs.to_header())
    hdr["WEIGHT"] = (_mean_inverse_variance_arrays(var, msk), "inverse mean variance of valid pixels")
    hdr["LSSTDRP"] = ("warp", "lsstdrp.coadd.write_warp")
    hdus = [fits.PrimaryHDU(header=hdr),
            fits.ImageHDU(np.asarray(img, dtype=np.float32), name="IMAGE"),
            fits.ImageHDU(np.asarray(msk, dtype=np.uint32).view(np.int32), name="MASK"),
            fits.ImageHDU(np.asarray(var, dtype=np.float32), name="VARIANCE")]
    poly = getattr(warp, "polygon", None)
    if poly is not None:
        poly = np.asarray(poly, dtype=np.float64)
        hdus.append(fits.BinTableHDU.from_columns(
            [fits.Column("x", "D", array=poly[:, 0]), fits.Column("y", "D", array=poly[:, 1])], name="POLYGON"))
    cov = getattr(warp, "covariance", None)
    if cov is not None:
        hdus.append(fits.ImageHDU(np.asarray(cov.kernels, dtype=np.float64), name="COVKERN"))
        hdus.append(fits.ImageHDU(_local_variances(cov), name="COVVAR"))
        hdus.append(fits.BinTableHDU.from_columns([fits.Column("x", "D", array=cov.x_samples)], name="COVX"))
        hdus.append(fits.BinTableHDU.from_columns([fits.Column("y", "D", array=cov.y_samples)], name="COVY"))
    fits.HDUList(hdus).writeto(os.fspath(path), overwrite=overwrite)
    return os.fspath(path)


@dataclasses.dataclass(frozen=True, eq=False)
class _WarpFile:
    """Strip access to a file written by :func:`write_warp` (reads only the rows asked for)."""

    path: str
    shape: tuple[int, int]
    offsets: dict
    weight: float | None
    polygon: np.ndarray | None
    wcs: Any
    cov: tuple | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> "_WarpFile":
        from astropy.io import fits
        from astropy.wcs import WCS

        p = os.fspath(path)
        if not os.path.exists(p):
            raise InvalidInputError(f"warp file {p!r} does not exist")
        try:
            with fits.open(p, memmap=False, lazy_load_hdus=False) as hdul:
                names = [h.name for h in hdul]
                offs = {}
                shape = None
                for name, dt in (("IMAGE", ">f4"), ("MASK", ">i4"), ("VARIANCE", ">f4")):
                    if name not in names:
                        raise InvalidInputError(f"warp file {p!r} has no {name} HDU (write it with write_warp)")
                    i = names.index(name)
                    h = hdul[i].header
                    if h.get("BSCALE", 1) != 1 or h.get("BZERO", 0) != 0 or np.dtype(dt).itemsize * 8 != abs(h["BITPIX"]):
                        raise InvalidInputError(f"warp file {p!r}: HDU {name} is scaled or has BITPIX {h['BITPIX']}")
                    s = (int(h["NAXIS2"]), int(h["NAXIS1"]))
                    if shape is not None and s != shape:
                        raise InvalidInputError(f"warp file {p!r}: HDU {name} has shape {s}, IMAGE has {shape}")
                    shape = s
                    offs[name] = (int(hdul.fileinfo(i)["datLoc"]), dt)
                weight = hdul[0].header.get("WEIGHT")
                poly = None
                if "POLYGON" in names:
                    d = hdul["POLYGON"].data
                    poly = np.column_stack([np.asarray(d["x"], float), np.asarray(d["y"], float)])
                cov = None
                if all(n_ in names for n_ in ("COVKERN", "COVVAR", "COVX", "COVY")):
                    cov = (np.asarray(hdul["COVKERN"].data, dtype=np.float64),
                           np.asarray(hdul["COVX"].data["x"], dtype=np.float64),
                           np.asarray(hdul["COVY"].data["y"], dtype=np.float64),
                           np.asarray(hdul["COVVAR"].data, dtype=np.float64))
                wcs = None
                if "CTYPE1" in hdul[0].header:
                    import warnings

                    from astropy.wcs import FITSFixedWarning

                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", FITSFixedWarning)  # the primary HDU has no data
                        wcs = WCS(hdul[0].header, naxis=2)
        except OSError as exc:
            raise InvalidInputError(f"warp file {p!r} could not be read as FITS: {exc}") from None
        return cls(p, shape, offs, None if weight is None else float(weight), poly, wcs, cov)

    def rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nx = self.shape[1]
        out = []
        with open(self.path, "rb") as f:
            for name in ("IMAGE", "VARIANCE", "MASK"):
                off, dt = self.offsets[name]
                f.seek(off + y0 * nx * 4)
                a = np.fromfile(f, dtype=dt, count=(y1 - y0) * nx).reshape(y1 - y0, nx)
                out.append(a)
        img = out[0].astype(np.float32)
        var = out[1].astype(np.float32)
        msk = out[2].astype(np.int32).view(np.uint32)
        return img, var, msk


def read_warp(path: str | os.PathLike) -> Any:
    """Read a file written by :func:`write_warp` fully into memory.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    types.SimpleNamespace
        ``image``, ``variance``, ``mask`` (uint32), ``wcs``, ``polygon``, ``weight`` and
        ``covariance`` (a :class:`PixelCovariance`, or None if the warp had none).

    Raises
    ------
    InvalidInputError
        A missing or malformed file.
    """
    import types

    wf = _WarpFile.open(path)
    img, var, msk = wf.rows(0, wf.shape[0])
    cov = None if wf.cov is None else PixelCovariance(wf.cov[0], wf.cov[1], wf.cov[2], var)
    return types.SimpleNamespace(image=img, variance=var, mask=msk, wcs=wf.wcs, polygon=wf.polygon, weight=wf.weight,
                                 covariance=cov)


def _planes(item: Any, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        img, var, msk = item.image, item.variance, item.mask
    except AttributeError:
        raise InvalidInputError(f"`{name}` has no image/variance/mask (got {type(item).__name__})") from None
    img = as_image(img, f"{name}.image")
    var = as_image(var, f"{name}.variance")
    if var.shape != img.shape or np.shape(msk) != img.shape:
        raise InvalidInputError(f"`{name}` planes have shapes {img.shape}, {var.shape}, {np.shape(msk)}; they must agree")
    return img, var, np.asarray(msk)


def _mean_inverse_variance_arrays(var: np.ndarray, msk: np.ndarray, bad: int = int(DEFAULT_BAD_PLANES)) -> float:
    good = ((np.asarray(msk, dtype=np.uint32) & np.uint32(bad)) == 0) & np.isfinite(var) & (var > 0)
    if not good.any():
        return 0.0
    return float(1.0 / np.mean(var[good], dtype=np.float64))


class _Source:
    """Uniform strip access to one coadd input (in-memory warp, Exposure or warp file)."""

    def __init__(self, item: Any, index: int) -> None:
        self.index = index
        self.psf = None
        self.polygon = None
        self.file = None
        if isinstance(item, (str, os.PathLike)):
            self.file = _WarpFile.open(item)
            self.shape = self.file.shape
            self.polygon = self.file.polygon
            self.weight_hint = self.file.weight
        else:
            img, var, msk = _planes(item, f"warps[{index}]")
            self.img, self.var = img, var
            self.msk = normalize_mask(msk, img.shape, name=f"warps[{index}].mask", warn=False) if np.asarray(msk).dtype != np.uint32 else np.asarray(msk)
            self.shape = img.shape
            self.psf = getattr(item, "psf", None)
            poly = getattr(item, "polygon", None)
            self.polygon = None if poly is None else np.asarray(poly, dtype=np.float64)
            self.weight_hint = None

    def rows(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.file is not None:
            return self.file.rows(y0, y1)
        return self.img[y0:y1], self.var[y0:y1], self.msk[y0:y1]

    def mean_inverse_variance(self, bad: int, chunk: int) -> float:
        if self.weight_hint is not None and bad == int(DEFAULT_BAD_PLANES):
            return float(self.weight_hint)
        s, n = 0.0, 0
        for y0 in range(0, self.shape[0], chunk):
            _, var, msk = self.rows(y0, min(y0 + chunk, self.shape[0]))
            good = ((msk & np.uint32(bad)) == 0) & np.isfinite(var) & (var > 0)
            s += float(np.sum(var[good], dtype=np.float64))
            n += int(np.count_nonzero(good))
        return n / s if s > 0 else 0.0


# ---------------------------------------------------------------------------------------
# coadd
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class CoaddResult:
    """A direct coadd.

    Attributes
    ----------
    image, variance : numpy.ndarray of float32
        The combined planes (NaN where ``NO_DATA``).
    mask : numpy.ndarray of uint32
        ``NO_DATA`` (no input), ``CLIPPED`` (an input was clipped), ``INEXACT_PSF`` (the
        CoaddPsf is not exact: an input edge within the PSF radius, or a covering input
        masked or clipped), and the bad bits of excluded inputs where they carried more
        than ``propagate_threshold`` of the weight.
    n_inputs : numpy.ndarray of uint16
        Inputs used per pixel.
    weights : numpy.ndarray
        The weight of each input.
    psf : CoaddPsf or None
        The coadd PSF (None when the inputs carry no PSFs and none were given).
    covariance : PixelCovariance or None
        Combined correlation kernels (when every input is a warp with a covariance).
    method : str
        'mean' or 'median'.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    n_inputs: np.ndarray
    weights: np.ndarray
    psf: Any
    covariance: Any
    method: str

    def measurement_variance(self, weights: Any, *, x0: int, y0: int) -> float:
        """Variance ``w^T C w`` of a linear measurement on the coadd (see :class:`PixelCovariance`).

        Parameters
        ----------
        weights : array_like, shape (h, w)
            Stamp weights; ``weights[0, 0]`` is pixel ``(x0, y0)``.
        x0, y0 : int
            Pixel of ``weights[0, 0]``.

        Returns
        -------
        float

        Raises
        ------
        InvalidInputError
            If the coadd has no covariance model.
        """
        if self.covariance is None:
            raise InvalidInputError("this coadd has no covariance model (its inputs carried none)")
        return self.covariance.measurement_variance(weights, x0=x0, y0=y0)


def _local_variances(cov: PixelCovariance, xs: np.ndarray | None = None, ys: np.ndarray | None = None) -> np.ndarray:
    """Mean finite variance in the 9 x 9 pixels around each kernel sample (NaN if none)."""
    xs = cov.x_samples if xs is None else xs
    ys = cov.y_samples if ys is None else ys
    out = np.full((ys.size, xs.size), np.nan)
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            yi, xi = int(round(y)), int(round(x))
            v = np.asarray(cov.variance[max(yi - 4, 0) : yi + 5, max(xi - 4, 0) : xi + 5], dtype=np.float64)
            v = v[np.isfinite(v)]
            if v.size:
                out[j, i] = float(np.mean(v))
    return out


def _combine_covariance(sources: list[_Source], items: Sequence[Any], weights: np.ndarray,
                        shape: tuple[int, int]) -> Any:
    covs, local = [], []
    for src, it in zip(sources, items):
        if src.file is not None:
            if src.file.cov is None:
                return None
            ker_f, xs_f, ys_f, lv = src.file.cov
            # the variance plane stays on disk: the stored local means stand in for it
            covs.append(PixelCovariance(ker_f, xs_f, ys_f, np.zeros((1, 1), np.float32)))
            local.append(lv)
        else:
            c = getattr(it, "covariance", None)
            if c is None:
                return None
            covs.append(c)
            local.append(None)
    c0 = covs[0]
    r = max(c.radius for c in covs)
    xs, ys = c0.x_samples, c0.y_samples
    ker = np.zeros((ys.size, xs.size, 2 * r + 1, 2 * r + 1))
    norm = np.zeros((ys.size, xs.size))
    for c, lv, w in zip(covs, local, weights):
        if lv is None:
            lv = _local_variances(c, xs, ys)
        for j, y in enumerate(ys):
            for i, x in enumerate(xs):
                if lv.shape == (ys.size, xs.size):
                    vbar = lv[j, i]
                else:  # a file sampled on another grid: nearest stored sample
                    vbar = lv[int(np.argmin(np.abs(c.y_samples - y))), int(np.argmin(np.abs(c.x_samples - x)))]
                if not np.isfinite(vbar):
                    continue
                k = c.kernel_at(x, y)
                pad = r - c.radius
                kk = np.pad(k, pad) if pad else k
                contrib = w * w * float(vbar)
                ker[j, i] += contrib * kk
                norm[j, i] += contrib
    ok = norm > 0
    ker[ok] /= norm[ok][:, None, None]
    ker[~ok] = 0.0
    ker[~ok, r, r] = 1.0
    return ker, xs, ys


def coadd(
    warps: Sequence[Any],
    *,
    weights: Any = None,
    method: str = "mean",
    clip: float | None = None,
    clip_iterations: int = 2,
    bad_planes: Any = None,
    psfs: Sequence[Any] | None = None,
    missing_psf: str = "raise",
    inexact_psf_radius: float | None = None,
    propagate_threshold: float = 0.3,
    rows_per_chunk: int | None = None,
    memory_limit_mb: float = 512.0,
    progress: bool = False,
) -> CoaddResult:
    r"""Direct coadd of warps on one pixel grid, assembled strip by strip.

    Parameters
    ----------
    warps : sequence
        The inputs, all of one shape: :class:`WarpResult` objects, anything with
        ``image``, ``variance``, ``mask`` (e.g. an :class:`~lsstdrp.core.Exposure`), or
        paths of files written by :func:`write_warp`. Files are read strip by strip
        (plain seeks, no memory map), so with paths (or a lazy sequence of paths) only
        ``rows_per_chunk`` rows of every input are in memory at once; in-memory inputs
        are used by reference. Warp files written by :func:`write_warp` from a warp with
        a covariance model carry it (kernels and local variances), so the result has one.
    weights : array_like of shape (n,), optional
        One weight per input; default the inverse mean variance of each input's valid
        pixels (so the coadd PSF does not depend on a source's flux, as it would with
        per-pixel inverse-variance weights).
    method : {'mean', 'median'}
        Weighted mean, or the (unweighted) median of the valid inputs per pixel.
    clip : float, optional
        Sigma clipping: inputs with :math:`|I_i - c| > \mathrm{clip}\,\sqrt{V_i}` about
        the centre :math:`c` (median first, then the weighted mean of the survivors) are
        rejected, ``clip_iterations`` times; rejected inputs flag ``CLIPPED``.
    clip_iterations : int
        Number of clipping passes.
    bad_planes : optional
        Input mask bits that exclude a pixel (default :data:`~lsstdrp.core.DEFAULT_BAD_PLANES`).
    psfs : sequence of Psf, optional
        Coadd-frame PSFs of the inputs (default each input's ``psf`` attribute).
    missing_psf : {'raise', 'flag'}
        An input without a PSF raises :class:`~lsstdrp.InvalidInputError`, or ('flag') is
        left out of the CoaddPsf and its area flagged ``INEXACT_PSF``.
    inexact_psf_radius : float, optional
        Pixels within this distance of an input's outline are ``INEXACT_PSF`` (default
        half the PSF kernel size).
    propagate_threshold : float
        Bad bits of excluded inputs are set in the coadd where those inputs carried more
        than this fraction of the weight.
    rows_per_chunk : int, optional
        Strip height; default from ``memory_limit_mb`` (n inputs x 13 bytes per pixel).
    memory_limit_mb : float
        Target size of the per-strip input buffers.
    progress : bool
        tqdm progress bar over strips.

    Returns
    -------
    CoaddResult

    Raises
    ------
    InvalidInputError
        No inputs, inputs of different shapes, bad weights, an unknown method, a missing
        PSF with ``missing_psf='raise'``, or an unreadable file.

    Notes
    -----
    Mean: :math:`I = \sum_i w_i I_i / \sum_i w_i`, :math:`V = \sum_i w_i^2 V_i /
    (\sum_i w_i)^2` over the inputs valid at the pixel. Median: the median of the valid
    values, variance :math:`(\pi/2) \sum V_i / n^2` (the large-n efficiency of the median
    of Gaussian samples; exact mean variance for n <= 2). The coadd covariance combines the
    inputs' correlation kernels weighted by :math:`w_i^2 \bar V_i`. Streaming keeps the
    peak memory at the outputs (14 bytes per pixel) plus one strip of every input.

    References
    ----------
    .. [1] Bosch, J. et al. 2018, PASJ 70, S5 (direct coadds and CoaddPsf in the HSC
       pipeline).
    .. [2] Jee, M. J. & Tyson, J. A. 2011, PASP 123, 596 (stacking and PSF of coadds).

    Examples
    --------
    >>> import numpy as np, types
    >>> a = types.SimpleNamespace(image=np.ones((4, 4), np.float32), variance=np.ones((4, 4), np.float32),
    ...                           mask=np.zeros((4, 4), np.uint32))
    >>> b = types.SimpleNamespace(image=3 * np.ones((4, 4), np.float32), variance=np.ones((4, 4), np.float32),
    ...                           mask=np.zeros((4, 4), np.uint32))
    >>> r = coadd([a, b], missing_psf="flag")
    >>> float(r.image[0, 0]), float(r.variance[0, 0]), int(r.n_inputs[0, 0])
    (2.0, 0.5, 2)
    """
    from ._kernels import parallel_rows, polygon_inside_near, stack_region

    items = list(warps) if not isinstance(warps, Sequence) else warps
    n = len(items)
    if n == 0:
        raise InvalidInputError("`warps` is empty; a coadd needs at least one input")
    check_in(method, "method", ("mean", "median"))
    check_in(missing_psf, "missing_psf", ("raise", "flag"))
    if clip is not None and not (float(clip) > 0):
        raise InvalidInputError(f"`clip` must be None or > 0; got {clip!r}")
    if int(clip_iterations) < 0:
        raise InvalidInputError(f"`clip_iterations` must be >= 0; got {clip_iterations!r}")
    bad = _bits(bad_planes)
    sources = [_Source(it, i) for i, it in enumerate(items)]
    shape = sources[0].shape
    for s in sources[1:]:
        if s.shape != shape:
            raise InvalidInputError(f"`warps[{s.index}]` has shape {s.shape}; every input must match warps[0] {shape}")
    ny, nx = shape
    if rows_per_chunk is None:
        rows = int(max(8, min(ny, memory_limit_mb * 2**20 / (n * nx * 14.0))))
    else:
        rows = int(rows_per_chunk)
        if rows < 1:
            raise InvalidInputError(f"`rows_per_chunk` must be >= 1; got {rows_per_chunk!r}")
    if weights is None:
        w = np.array([s.mean_inverse_variance(bad, rows) for s in sources])
        if np.any(w <= 0):
            i = int(np.argmax(w <= 0))
            raise InvalidInputError(f"`warps[{i}]` has no valid pixel (all masked or non-finite variance)")
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (n,) or not np.all(np.isfinite(w) & (w > 0)):
            raise InvalidInputError(f"`weights` must be {n} finite values > 0; got shape {w.shape}")

    # PSFs
    in_psfs: list[Any] = list(psfs) if psfs is not None else [s.psf for s in sources]
    if len(in_psfs) != n:
        raise InvalidInputError(f"`psfs` has {len(in_psfs)} entries; there are {n} inputs")
    missing = [i for i, p in enumerate(in_psfs) if p is None]
    if missing and missing_psf == "raise":
        raise InvalidInputError(
            f"input(s) {missing} have no PSF; pass `psfs=` or missing_psf='flag' to coadd without them in the CoaddPsf"
        )
    polys = []
    for s in sources:
        if s.polygon is None:
            polys.append(np.array([[-0.5, -0.5], [nx - 0.5, -0.5], [nx - 0.5, ny - 0.5], [-0.5, ny - 0.5]]))
        else:
            polys.append(s.polygon)
    have = [i for i in range(n) if in_psfs[i] is not None]
    cpsf = CoaddPsf([in_psfs[i] for i in have], w[have], [polys[i] for i in have]) if have else None
    if inexact_psf_radius is None:
        # half the largest input kernel (each evaluated at the centre of its outline)
        rad = 0.0
        for i in have:
            cx, cy = np.mean(polys[i], axis=0)
            try:
                size = np.shape(in_psfs[i].kernel_image(float(cx), float(cy)))[0]
            except InvalidInputError:  # a PSF undefined at the centroid of its outline
                size = 21
            rad = max(rad, (size - 1) / 2.0)
    else:
        rad = float(inexact_psf_radius)
        if rad < 0:
            raise InvalidInputError(f"`inexact_psf_radius` must be >= 0; got {inexact_psf_radius!r}")

    out_img = np.empty(shape, np.float32)
    out_var = np.empty(shape, np.float32)
    out_msk = np.zeros(shape, np.uint32)
    out_cnt = np.empty(shape, np.uint16)
    meth = 0 if method == "mean" else 1
    clipv = float(clip) if clip is not None else 0.0
    chunks = list(range(0, ny, rows))
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="coadd strips")
    for y0 in chunks:
        y1 = min(y0 + rows, ny)
        h = y1 - y0
        bi = np.empty((n, h, nx), np.float32)
        bv = np.empty((n, h, nx), np.float32)
        bm = np.empty((n, h, nx), np.uint32)
        for s in sources:
            a, b, c = s.rows(y0, y1)
            bi[s.index], bv[s.index], bm[s.index] = a, b, c
        cnt = np.empty((h, nx), np.int64)
        ncl = np.empty((h, nx), np.int64)
        bbits = np.empty((h, nx), np.uint32)
        bfrac = np.empty((h, nx), np.float64)
        used = np.empty((n, h, nx), np.bool_)
        parallel_rows(stack_region, h, bi, bv, bm, w, np.uint32(bad), meth, clipv, int(clip_iterations),
                      out_img[y0:y1], out_var[y0:y1], cnt, ncl, bbits, bfrac, used, block=8)
        del bi, bv
        m = out_msk[y0:y1]
        out_cnt[y0:y1] = cnt
        m[cnt == 0] |= _ND
        m[ncl > 0] |= np.uint32(MaskPlane.CLIPPED)
        prop = bfrac > float(propagate_threshold)
        m[prop] |= bbits[prop] & ~_ND
        # INEXACT_PSF: an input outline within `rad` of the pixel, or a covering input unused
        inexact = (ncl > 0)
        inside = np.empty((h, nx), np.bool_)
        near = np.empty((h, nx), np.bool_)
        for i in range(n):
            poly = polys[i]
            if poly[:, 1].min() > y1 + rad or poly[:, 1].max() < y0 - rad:
                continue
            polygon_inside_near(np.ascontiguousarray(poly[:, 0]), np.ascontiguousarray(poly[:, 1]),
                                0.0, float(y0), nx, h, rad, inside, near)
            inexact |= near
            inexact |= inside & ~used[i]
            if in_psfs[i] is None:
                inexact |= inside
        m[inexact & (cnt > 0)] |= np.uint32(MaskPlane.INEXACT_PSF)
        del bm, used
    out_img.flags.writeable = False
    out_var.flags.writeable = False
    out_msk.flags.writeable = False
    out_cnt.flags.writeable = False
    cov = None
    comb = _combine_covariance(sources, items, w, shape)
    if comb is not None:
        ker, xs, ys = comb
        if method == "mean":
            cov = PixelCovariance(ker, xs, ys, out_var)
    return CoaddResult(out_img, out_var, out_msk, out_cnt, w, cpsf, cov, method)


def _bits(bad_planes: Any) -> int:
    if bad_planes is None:
        return int(DEFAULT_BAD_PLANES)
    probe = np.array([0xFFFFFFFF], dtype=np.uint32)
    bad_pixel_mask(probe, bad_planes)  # validates names
    if isinstance(bad_planes, (int, MaskPlane)):
        return int(bad_planes)
    bits = 0
    for p in bad_planes:
        bits |= int(MaskPlane[str(p)])
    return bits


# ---------------------------------------------------------------------------------------
# convolution helper
# ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ConvolutionResult:
    """Result of :func:`convolve`.

    Attributes
    ----------
    image : numpy.ndarray
        Convolved image (input dtype).
    variance : numpy.ndarray or None
        Variance convolved with the squared kernel (pixel correlations ignored).
    mask : numpy.ndarray of uint32
        Input bits grown by the kernel footprint for excluded pixels, plus ``EDGE`` where
        the kernel reached beyond the image (values there depend on ``boundary``).
    """

    image: np.ndarray
    variance: np.ndarray | None
    mask: np.ndarray


_PAD_MODES = {"extend": "edge", "reflect": "symmetric", "wrap": "wrap", "fill": "constant"}


def convolve(
    image: Any,
    kernel: Any,
    *,
    variance: Any = None,
    mask: Any = None,
    boundary: str = "extend",
    fill_value: float = 0.0,
    bad_planes: Any = None,
) -> ConvolutionResult:
    r"""Convolve an image (and its variance) with a kernel, with stated boundary handling.

    :math:`O(\mathbf x) = \sum_{\mathbf u} K(\mathbf u)\, I(\mathbf x - \mathbf u)` (a true
    convolution; the kernel is not normalised), computed by FFT in float64 on the image
    padded by half the kernel size.

    Parameters
    ----------
    image : array_like, shape (ny, nx)
        Input image.
    kernel : array_like, shape (ky, kx)
        Odd-sized kernel, centred on its central pixel.
    variance : array_like, optional
        Variance plane, convolved with :math:`K^2`.
    mask : array_like of bool or uint32, optional
        Excluded pixels are replaced by 0 before convolving and their bits spread to every
        output pixel the kernel footprint reaches.
    boundary : {'extend', 'reflect', 'wrap', 'fill'}
        Values beyond the edge: nearest edge pixel (astropy's ``boundary='extend'``), a
        mirror (edge pixel repeated), periodic, or ``fill_value``. Output pixels within
        half a kernel of the edge are flagged ``EDGE``.
    fill_value : float
        Value beyond the edge for ``boundary='fill'``.
    bad_planes : optional
        Mask bits that exclude (default :data:`~lsstdrp.core.DEFAULT_BAD_PLANES`).

    Returns
    -------
    ConvolutionResult

    Raises
    ------
    InvalidInputError
        Bad shapes, an even-sized or non-finite kernel, an unknown boundary.

    Examples
    --------
    >>> import numpy as np
    >>> img = np.zeros((5, 5)); img[2, 2] = 1.0
    >>> k = np.zeros((3, 3)); k[1, 2] = 1.0          # shift by +1 in x
    >>> out = convolve(img, k).image
    >>> bool(out[2, 3] == 1.0)
    True
    """
    from scipy.signal import fftconvolve

    img = as_image(image, "image")
    ker = as_image(kernel, "kernel", dtype=np.float64, allow_nonfinite=False)
    if ker.shape[0] % 2 == 0 or ker.shape[1] % 2 == 0:
        raise InvalidInputError(f"`kernel` has shape {ker.shape}; both sides must be odd")
    check_in(boundary, "boundary", tuple(_PAD_MODES))
    var = None
    if variance is not None:
        var = as_image(variance, "variance", dtype=img.dtype)
        if var.shape != img.shape:
            raise InvalidInputError(f"`variance` has shape {var.shape}; it must match `image` {img.shape}")
    msk = normalize_mask(mask, img.shape, image=img, variance=var, warn=False)
    badm = bad_pixel_mask(msk, bad_planes) | ~np.isfinite(img)
    hy, hx = ker.shape[0] // 2, ker.shape[1] // 2
    pad = ((hy, hy), (hx, hx))
    kw = {"constant_values": float(fill_value)} if boundary == "fill" else {}

    def _conv(a: np.ndarray, k: np.ndarray) -> np.ndarray:
        a = np.where(badm, 0.0, a.astype(np.float64))
        p = np.pad(a, pad, mode=_PAD_MODES[boundary], **kw)
        return fftconvolve(p, k, mode="valid")

    out = _conv(img, ker).astype(img.dtype)
    outv = _conv(var, ker * ker).astype(img.dtype) if var is not None else None
    out_m = msk.copy()
    if badm.any():
        foot = (ker != 0).astype(np.float64)
        ys, xs = np.nonzero(badm)
        spread = fftconvolve(np.pad(badm.astype(np.float64), pad), foot, mode="valid") > 0.5
        bits = np.bitwise_or.reduce(msk[badm]) if ys.size else np.uint32(0)
        out_m[spread] |= np.uint32(bits) | np.uint32(MaskPlane.INTRP)
        out_m[badm] |= msk[badm]
    edge = np.ones(img.shape, bool)
    edge[hy : img.shape[0] - hy, hx : img.shape[1] - hx] = False
    out_m[edge] |= np.uint32(MaskPlane.EDGE)
    return ConvolutionResult(out, outv, out_m)
