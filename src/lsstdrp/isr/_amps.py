"""Amplifier-level steps on a raw frame: crosstalk correction and assembly."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..core import DetectorGeometry, InvalidInputError, MaskPlane, as_image, check_in, normalize_mask

__all__ = ["CrosstalkResult", "assemble_amplifiers", "correct_crosstalk", "amp_segments"]


@dataclasses.dataclass(frozen=True, eq=False)
class CrosstalkResult:
    """Result of :func:`correct_crosstalk`.

    Attributes
    ----------
    image : numpy.ndarray
        The raw-shaped image with the crosstalk removed (input float dtype).
    mask : numpy.ndarray of uint32
        The input mask plus ``CROSSTALK`` on every victim pixel whose source pixel (with
        a non-zero coefficient) is saturated.
    n_flagged : int
        Pixels flagged ``CROSSTALK``.
    """

    image: np.ndarray
    mask: np.ndarray
    n_flagged: int


def _check_geometry(geometry: Any) -> DetectorGeometry:
    if not isinstance(geometry, DetectorGeometry):
        raise InvalidInputError(f"`geometry` must be an lsstdrp.core.DetectorGeometry; got {type(geometry).__name__}")
    return geometry


def amp_segments(geometry: DetectorGeometry) -> list[tuple[slice, slice]]:
    """Raw-array slices of the amplifier segments that crosstalk couples pixel by pixel.

    The whole segments (``raw_bbox``) when all have one shape, else the data boxes
    (which then must share a shape).

    Parameters
    ----------
    geometry : DetectorGeometry
        The amplifier layout.

    Returns
    -------
    list of (slice, slice)
        One per amplifier, in amplifier order.

    Raises
    ------
    InvalidInputError
        If neither the segments nor the data boxes share one shape.
    """
    geom = _check_geometry(geometry)
    amps = geom.amplifiers
    if len({a.raw_bbox.shape for a in amps}) == 1:
        return [a.raw_bbox.slices for a in amps]
    if len({a.data_bbox.shape for a in amps}) == 1:
        return [a.data_bbox.slices for a in amps]
    raise InvalidInputError("crosstalk needs amplifier segments (or data boxes) of one shape")


def correct_crosstalk(
    image: Any,
    geometry: DetectorGeometry,
    crosstalk: Any,
    *,
    crosstalk_quadratic: Any = None,
    mask: Any = None,
    saturated: str = "flag",
    n_iter: int = 2,
) -> CrosstalkResult:
    r"""Remove inter-amplifier crosstalk from a raw frame (after overscan and gain).

    Parameters
    ----------
    image : array_like, shape ``geometry.raw_shape``
        The raw frame in e⁻ above the overscan level (serial overscan subtracted, gain
        applied), amps in read-out order as stored; not modified.
    geometry : DetectorGeometry
        The amplifier layout.
    crosstalk : array_like, shape (n_amp, n_amp)
        ``crosstalk[victim, source]`` (dimensionless, in electrons).
    crosstalk_quadratic : array_like, shape (n_amp, n_amp), optional
        Quadratic coefficients (1/e⁻).
    mask : array_like of uint32 or bool, shape ``geometry.raw_shape``, optional
        Raw-frame mask; its ``SAT`` bits mark saturated source pixels.
    saturated : {"flag", "skip"}
        What to do with saturated source pixels. ``"flag"`` (default): subtract the
        crosstalk of their measured (clipped) value -- what the electronics couple
        when the source is clipped at saturation -- and flag the victims
        ``CROSSTALK``; ``"skip"``: do not correct from them at all, and flag. Either
        way the victims are flagged, because a saturated source's true signal (and
        any bleed) is unknown.
    n_iter : int
        Iterations of the inversion (1 = first order, subtracting the crosstalk of the
        measured sources; 2 also removes the crosstalk of the crosstalk).

    Returns
    -------
    CrosstalkResult
        ``image``, ``mask`` (uint32, ``CROSSTALK`` added), ``n_flagged``.

    Raises
    ------
    InvalidInputError
        A wrong image shape or matrix shape, non-finite coefficients, segments of
        different shapes, ``n_iter`` < 1.

    Notes
    -----
    The forward model is :math:`m_v = x_v + \sum_{s \ne v} (C_{vs} x_s +
    Q_{vs} x_s^2)` at every read-out position, where :math:`x` is the signal without
    crosstalk and all amps are aligned in read-out order (the pixels read at the same
    time). The correction iterates :math:`x^{(k+1)}_v = m_v - \sum_s (C_{vs}
    x^{(k)}_s + Q_{vs} (x^{(k)}_s)^2)` from :math:`x^{(0)} = m`; each iteration
    multiplies the error by :math:`\max|C| \sim 10^{-4}`.

    References
    ----------
    .. [1] Snyder, A. et al. 2021, JATIS 7, 038003 (LSST camera crosstalk).
    .. [2] Bosch, J. et al. 2018, PASJ 70, S5 (HSC crosstalk correction).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import make_detector_geometry
    >>> from lsstdrp.isr import correct_crosstalk
    >>> g = make_detector_geometry(2, 1, (4, 3), prescan=0, serial_overscan=1, parallel_overscan=0)
    >>> raw = np.zeros(g.raw_shape); raw[g.amp(0).data_bbox.slices] = 1000.0
    >>> raw[g.amp(1).data_bbox.slices] = 1e-3 * 1000.0        # crosstalk from amp 0
    >>> C = np.array([[0.0, 0.0], [1e-3, 0.0]])
    >>> float(abs(correct_crosstalk(raw, g, C).image[g.amp(1).data_bbox.slices]).max())
    0.0
    """
    geom = _check_geometry(geometry)
    img = as_image(image, "image")
    if img.shape != geom.raw_shape:
        raise InvalidInputError(f"`image` has shape {img.shape}; it must be the raw shape {geom.raw_shape}")
    n = geom.n_amps
    c = np.asarray(crosstalk, dtype=np.float64)
    if c.shape != (n, n):
        raise InvalidInputError(f"`crosstalk` has shape {c.shape}; expected ({n}, {n}) (victim, source)")
    if not np.isfinite(c).all():
        raise InvalidInputError("`crosstalk` has non-finite coefficients")
    q = None
    if crosstalk_quadratic is not None:
        q = np.asarray(crosstalk_quadratic, dtype=np.float64)
        if q.shape != (n, n):
            raise InvalidInputError(f"`crosstalk_quadratic` has shape {q.shape}; expected ({n}, {n})")
        if not np.isfinite(q).all():
            raise InvalidInputError("`crosstalk_quadratic` has non-finite coefficients")
    check_in(saturated, "saturated", ("flag", "skip"))
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise InvalidInputError(f"`n_iter` must be an integer >= 1; got {n_iter!r}")
    m = normalize_mask(mask, img.shape, image=img, warn=False)
    segs = amp_segments(geom)
    c = c.copy()
    np.fill_diagonal(c, 0.0)
    if q is not None:
        q = q.copy()
        np.fill_diagonal(q, 0.0)
    m64 = img.astype(np.float64, copy=False)
    finite = np.isfinite(m64)
    if not finite.all():
        m64 = np.where(finite, m64, 0.0)
    sat = [(m[sl] & np.uint32(MaskPlane.SAT)) != 0 for sl in segs]
    has_sat = [bool(a.any()) for a in sat]
    coupled = (c != 0) | (q != 0 if q is not None else False)
    out = img.astype(np.float64, copy=True)
    prev = None  # the previous iterate, one segment per amp (None: the measured values)
    for it in range(int(n_iter)):
        last = it == int(n_iter) - 1
        nxt = None if last else np.empty((len(segs), *m64[segs[0]].shape))
        for v, sv in enumerate(segs):
            acc = m64[sv].copy()
            for s_ in np.flatnonzero(coupled[v]):
                src = m64[segs[s_]] if prev is None else prev[s_]
                if has_sat[s_]:
                    src = np.where(sat[s_], m64[segs[s_]] if saturated == "flag" else 0.0, src)
                if c[v, s_] != 0:
                    acc -= c[v, s_] * src
                if q is not None and q[v, s_] != 0:
                    acc -= q[v, s_] * src * src
            if last:
                out[sv] = np.where(finite[sv], acc, out[sv])
            else:
                nxt[v] = acc
        prev = nxt
    nflag = 0
    for v, sv in enumerate(segs):
        srcs = np.flatnonzero(coupled[v])
        if srcs.size and any(has_sat[k] for k in srcs):
            hit = np.logical_or.reduce([sat[k] for k in srcs])
            sub = m[sv]
            newly = hit & ((sub & np.uint32(MaskPlane.CROSSTALK)) == 0)
            nflag += int(np.count_nonzero(newly))
            sub[hit] |= np.uint32(MaskPlane.CROSSTALK)
    return CrosstalkResult(image=out.astype(img.dtype, copy=False), mask=m, n_flagged=nflag)


def assemble_amplifiers(image: Any, geometry: DetectorGeometry) -> np.ndarray:
    r"""Cut each amplifier's data out of a raw-shaped array and place it, flipped, in the detector.

    Parameters
    ----------
    image : array_like, shape ``geometry.raw_shape``
        Any raw-shaped plane: pixel values (dtype kept) or a uint32 mask. Not modified.
    geometry : DetectorGeometry
        The amplifier layout.

    Returns
    -------
    numpy.ndarray, shape ``geometry.assembled_shape``
        A new array of the input dtype: for each amp,
        ``out[assembled_bbox] = raw[data_bbox]`` reversed along x if ``flip_x`` and
        along y if ``flip_y``.

    Raises
    ------
    InvalidInputError
        If ``image`` does not have the raw shape.

    Notes
    -----
    Raw segments are stored in read-out order; an amp whose read-out corner is at high
    x (high y) of its assembled box has ``flip_x`` (``flip_y``) set, so its data are
    reversed along that axis to restore the sky orientation.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import make_detector_geometry
    >>> from lsstdrp.isr import assemble_amplifiers
    >>> g = make_detector_geometry(1, 2, (1, 3), prescan=0, serial_overscan=0, parallel_overscan=0)
    >>> raw = np.array([[1, 2, 3], [4, 5, 6]])
    >>> assemble_amplifiers(raw, g).tolist()      # the upper amp is read from its top-right
    [[1, 2, 3], [6, 5, 4]]
    """
    geom = _check_geometry(geometry)
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.shape != geom.raw_shape:
        raise InvalidInputError(f"`image` has shape {arr.shape}; it must be the raw shape {geom.raw_shape}")
    out = np.empty(geom.assembled_shape, dtype=arr.dtype.newbyteorder("="))
    for a in geom.amplifiers:
        d = arr[a.data_bbox.slices]
        if a.flip_x:
            d = d[:, ::-1]
        if a.flip_y:
            d = d[::-1, :]
        out[a.assembled_bbox.slices] = d
    return out
