"""``run_isr``: the standard ISR sequence for one detector, one snap or two."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..core import Calibs, Exposure, InvalidInputError, MaskPlane, RawFrame, check_in
from ._amps import assemble_amplifiers, correct_crosstalk
from ._bf import correct_brighter_fatter
from ._calibrate import apply_flat, make_variance, mask_defects, subtract_bias, subtract_dark
from ._common import check_finite_scalar, check_int
from ._cosmicrays import CosmicRayResult, SnapCombination, combine_snaps, detect_cosmic_rays
from ._interp import interpolate_bad_pixels
from ._linearity import correct_linearity
from ._overscan import fit_overscan
from ._saturation import mask_saturation

__all__ = ["IsrResult", "run_isr", "ISR_STEPS"]

logger = logging.getLogger("lsstdrp.isr")

#: The steps of :func:`run_isr`, in order.
ISR_STEPS = (
    "serial_overscan",
    "saturation",
    "gain",
    "crosstalk",
    "parallel_overscan",
    "linearity",
    "assembly",
    "bias",
    "dark",
    "brighter_fatter",
    "defects",
    "variance",
    "flat",
    "cosmic_rays",
)


@dataclasses.dataclass(frozen=True, eq=False)
class IsrResult:
    """Result of :func:`run_isr`.

    Attributes
    ----------
    exposure : Exposure
        The science-ready exposure: image and variance in e⁻ and e⁻² (``dtype``),
        uint32 :class:`~lsstdrp.core.MaskPlane` mask; for two snaps their sum (with
        ``exptime`` the total), cosmic rays repaired.
    cosmic_rays : CosmicRayResult or SnapCombination or None
        The cosmic-ray step: single-exposure detection, the snap combination, or None
        when skipped.
    snaps : tuple of Exposure
        The ISR-corrected exposure of each snap before cosmic-ray treatment.
    diagnostics : tuple of dict
        One dict per snap: ``steps`` (the steps applied, in order) and per-step
        numbers (overscan levels, saturated pixel counts, crosstalk flags, linearity
        inversion residual, BF iterations and flux change, interpolated defects,
        ``NO_DATA`` counts).
    """

    exposure: Exposure
    cosmic_rays: CosmicRayResult | SnapCombination | None
    snaps: tuple[Exposure, ...]
    diagnostics: tuple[dict, ...]


def _as_raws(raws: Any) -> tuple[RawFrame, ...]:
    if isinstance(raws, RawFrame):
        return (raws,)
    if isinstance(raws, (str, bytes)) or not isinstance(raws, Sequence):
        raise TypeError(f"`raws` must be a RawFrame or a sequence of one or two RawFrames; got {type(raws).__name__}")
    out = tuple(raws)
    if not 1 <= len(out) <= 2:
        raise InvalidInputError(f"`raws` holds {len(out)} frames; expected one snap or two")
    for i, r in enumerate(out):
        if not isinstance(r, RawFrame):
            raise TypeError(f"`raws[{i}]` must be a RawFrame; got {type(r).__name__}")
    if len(out) == 2:
        a, b = out
        if a.geometry != b.geometry:
            raise InvalidInputError("the two snaps have different detector geometries")
        if abs(a.exptime - b.exptime) > 1e-3 * max(a.exptime, b.exptime):
            raise InvalidInputError(
                f"the two snaps have different exposure times ({a.exptime} s and {b.exptime} s); "
                "a snap pair has equal exposures"
            )
        if a.exptime <= 0:
            raise InvalidInputError("snaps need a positive exposure time")
    return out


def _serial_overscan(
    raw: np.ndarray, geom: Any, opts: dict, diag: dict
) -> np.ndarray:
    """Subtract each amp's per-row serial overscan level over its whole segment (float64)."""
    out = raw.astype(np.float64, copy=True)
    levels = []
    for a in geom.amplifiers:
        so = a.serial_overscan_bbox
        if so.is_empty:
            raise InvalidInputError(f"amplifier {a.name} has no serial overscan; cannot subtract the bias level")
        rb = a.raw_bbox
        # the overscan columns over every row of the segment (parallel-overscan rows included)
        block = raw[rb.y0 : rb.y1, so.x0 : so.x1]
        profile, _, nrej = fit_overscan(block, axis=1, **opts)
        out[rb.y0 : rb.y1, rb.x0 : rb.x1] -= profile[:, None]
        levels.append(float(np.mean(profile)))
    diag["serial_overscan"] = {"mean_level_adu": np.array(levels)}
    return out


def _parallel_overscan(img: np.ndarray, geom: Any, opts: dict, diag: dict) -> np.ndarray:
    levels = []
    for a in geom.amplifiers:
        po = a.parallel_overscan_bbox
        if po.is_empty:
            levels.append(0.0)
            continue
        db = a.data_bbox
        if (po.x0, po.x1) != (db.x0, db.x1):
            raise InvalidInputError(
                f"amplifier {a.name}: the parallel overscan columns {po.x0}:{po.x1} are not the data columns {db.x0}:{db.x1}"
            )
        profile, _, _ = fit_overscan(img[po.slices], axis=0, **opts)
        img[db.slices] -= profile[None, :]
        img[po.slices] -= profile[None, :]
        levels.append(float(np.mean(profile)))
    diag["parallel_overscan"] = {"mean_level_e": np.array(levels)}
    return img


def _isr_one(raw: RawFrame, calibs: Calibs, o: dict) -> tuple[Exposure, dict]:
    geom = calibs.geometry
    diag: dict[str, Any] = {"steps": []}
    steps = diag["steps"]
    gains = calibs.amp_gains()
    rns = calibs.amp_read_noises()

    # serial overscan (ADU above the overscan)
    data = np.asarray(raw.data)
    if not np.isfinite(data).all():
        raise InvalidInputError(f"raw frame (snap {raw.snap}) has non-finite pixels")
    img = _serial_overscan(data, geom, o["overscan"], diag)
    steps.append("serial_overscan")

    # saturation (ADU above overscan), per amp on its data
    mask = np.zeros(geom.raw_shape, dtype=np.uint32)
    nsat = nsus = 0
    for a in geom.amplifiers:
        s = a.data_bbox.slices
        bt = None if o["bleed_threshold"] is None else o["bleed_threshold"] * a.saturation
        m = mask_saturation(
            img[s], saturation=a.saturation, suspect_level=a.suspect_level, bleed_threshold=bt,
            grow=o["saturation_grow"],
        )
        mask[s] = m
        nsat += int(np.count_nonzero(m & np.uint32(MaskPlane.SAT)))
        nsus += int(np.count_nonzero(m & np.uint32(MaskPlane.SUSPECT)))
    diag["saturation"] = {"n_sat": nsat, "n_suspect": nsus}
    steps.append("saturation")

    # gain: ADU -> e-, whole segments
    for a, g in zip(geom.amplifiers, gains, strict=True):
        img[a.raw_bbox.slices] *= g
    diag["gain"] = {"gains": gains}
    steps.append("gain")

    if o["do_crosstalk"] and calibs.crosstalk is not None:
        xt = correct_crosstalk(
            img, geom, calibs.crosstalk, crosstalk_quadratic=calibs.crosstalk_quadratic, mask=mask,
            saturated=o["crosstalk_saturated"],
        )
        img = xt.image.astype(np.float64, copy=False)
        mask = xt.mask
        diag["crosstalk"] = {"n_flagged": xt.n_flagged}
        steps.append("crosstalk")

    if o["parallel_overscan"]:
        img = _parallel_overscan(img, geom, o["overscan"], diag)
        steps.append("parallel_overscan")

    if o["do_linearity"] and calibs.linearity is not None:
        nsus_lin = 0
        resid = 0.0
        for a, g, lin in zip(geom.amplifiers, gains, calibs.linearity, strict=True):
            if lin is None:
                continue
            s = a.data_bbox.slices
            lr = correct_linearity(img[s], lin, gain=g, mask=mask[s])
            img[s] = lr.image
            mask[s] = lr.mask
            nsus_lin += lr.n_suspect
            resid = max(resid, lr.max_residual)
        diag["linearity"] = {"n_suspect": nsus_lin, "max_inversion_residual_adu": resid}
        steps.append("linearity")

    image = assemble_amplifiers(img, geom)
    amask = assemble_amplifiers(mask, geom)
    del img, mask  # the raw-shaped planes are no longer needed: keep the peak memory low
    steps.append("assembly")

    if o["do_bias"] and calibs.bias is not None:
        r = subtract_bias(image, calibs.bias, mask=amask)
        image, amask = r.image, r.mask
        diag["bias"] = {"n_no_data": r.n_no_data}
        steps.append("bias")

    dark_subtracted = False
    if o["do_dark"] and calibs.dark is not None:
        r = subtract_dark(image, calibs.dark, dark_time=raw.dark_time, mask=amask)
        image, amask = r.image, r.mask
        dark_subtracted = True
        diag["dark"] = {"n_no_data": r.n_no_data, "dark_time": raw.dark_time}
        steps.append("dark")

    if o["do_bf"] and calibs.bf_kernel is not None:
        r = correct_brighter_fatter(image, calibs.bf_kernel, mask=amask, max_iter=o["bf_max_iter"], tol=o["bf_tol"])
        image = r.image
        diag["brighter_fatter"] = {
            "n_iter": r.n_iter, "converged": r.converged, "max_change": r.max_change, "flux_change": r.flux_change,
        }
        del r
        steps.append("brighter_fatter")

    if o["do_defects"]:
        if calibs.defects is not None:
            amask = mask_defects(calibs.defects, image.shape, mask=amask)
        steps.append("defects")  # masked here, interpolated after the flat (below)

    rn_map = np.empty(image.shape)
    for a, rn in zip(geom.amplifiers, rns, strict=True):
        rn_map[a.assembled_bbox.slices] = rn
    signal = image + np.asarray(calibs.dark) * raw.dark_time if dark_subtracted else image
    variance = make_variance(signal, read_noise=rn_map)
    del signal, rn_map
    steps.append("variance")

    if o["do_flat"] and calibs.flat is not None:
        r = apply_flat(image, calibs.flat, variance=variance, mask=amask, min_flat=o["min_flat"])
        image, variance, amask = r.image, r.variance, r.mask
        diag["flat"] = {"n_no_data": r.n_no_data}
        steps.append("flat")

    if o["do_defects"]:
        # interpolate from flat-fielded neighbours: a defect's own (e.g. dead-column)
        # response must not scale the value that replaces it
        planes = MaskPlane.BAD | (MaskPlane.SAT if o["interpolate_saturated"] else 0)
        if np.any(amask & np.uint32(planes)):
            r = interpolate_bad_pixels(image, amask, bad_planes=planes)
            rv = interpolate_bad_pixels(variance, amask, bad_planes=planes)
            image, variance, amask = r.image, rv.image, r.mask
            diag["defects"] = {"n_interpolated": r.n_interpolated, "n_failed": r.n_failed}
        else:
            diag["defects"] = {"n_interpolated": 0, "n_failed": 0}

    bad = ~np.isfinite(image) | ~np.isfinite(variance)
    amask[bad] |= np.uint32(MaskPlane.NO_DATA)
    dt = o["dtype"]
    meta = {**raw.metadata, "snap": raw.snap, "dark_time": raw.dark_time, "isr_steps": tuple(steps)}
    exp = Exposure(
        image.astype(dt), variance.astype(dt), amask, band=raw.band, visit=raw.visit, detector=raw.detector,
        mjd=raw.mjd, exptime=raw.exptime, metadata=meta,
    )
    return exp, diag


def run_isr(
    raws: RawFrame | Sequence[RawFrame],
    calibs: Calibs,
    *,
    psf: Any = None,
    overscan_statistic: str = "median",
    overscan_fit: str = "none",
    overscan_order: int = 1,
    overscan_n_knots: int = 8,
    overscan_nsigma: float = 3.0,
    parallel_overscan: bool = True,
    saturation_grow: int = 1,
    bleed_threshold: float | None = 0.5,
    do_crosstalk: bool = True,
    crosstalk_saturated: str = "flag",
    do_linearity: bool = True,
    do_bias: bool = True,
    do_dark: bool = True,
    do_bf: bool = True,
    bf_max_iter: int = 20,
    bf_tol: float = 1e-3,
    do_defects: bool = True,
    interpolate_saturated: bool = False,
    do_flat: bool = True,
    min_flat: float = 1e-3,
    cosmic_rays: str = "auto",
    cr_options: dict | None = None,
    snap_options: dict | None = None,
    dtype: Any = np.float32,
) -> IsrResult:
    r"""Instrument signature removal of one detector: raw snap(s) to an exposure in e⁻.

    The standard sequence, each step one of the public functions of
    :mod:`lsstdrp.isr` (see :data:`ISR_STEPS`):

    1. serial overscan (per amp, per row: :func:`fit_overscan` on the serial overscan
       columns over all rows of the segment),
    2. saturation and suspect masking with bleed trails (:func:`mask_saturation`, in
       ADU above the overscan, the units of the amplifier's levels),
    3. gain (ADU to e⁻, per amp),
    4. crosstalk (:func:`correct_crosstalk`),
    5. parallel overscan (per column),
    6. linearity (:func:`correct_linearity`, per amp),
    7. assembly (:func:`assemble_amplifiers`),
    8. bias,
    9. dark scaled by the dark time,
    10. brighter-fatter (:func:`correct_brighter_fatter`),
    11. defects (masked ``BAD``; interpolated, ``INTRP``, after the flat from
        flat-fielded neighbours, image and variance),
    12. variance (:func:`make_variance`: signal with the dark charge, plus read noise),
    13. flat (:func:`apply_flat`: ``NO_DATA`` where the flat is ~0),
    14. cosmic rays: with two snaps, :func:`combine_snaps`; with one snap and a
        ``psf``, :func:`detect_cosmic_rays`.

    A step runs when its calibration exists in ``calibs`` and its ``do_*`` flag is
    True.

    Parameters
    ----------
    raws : RawFrame or sequence of one or two RawFrame
        The raw read-out(s) of one detector; two snaps must have the same geometry and
        exposure time.
    calibs : Calibs
        Calibration products of this detector (its geometry must be the raws').
    psf : Psf or array_like, optional
        PSF for single-snap cosmic-ray detection (see :func:`detect_cosmic_rays`);
        without it, a single snap gets no cosmic-ray detection.
    overscan_statistic, overscan_fit, overscan_order, overscan_n_knots, overscan_nsigma
        Options of :func:`fit_overscan` for both overscans (``statistic``, ``fit``,
        ``order``, ``n_knots``, ``nsigma``).
    parallel_overscan : bool
        Subtract the per-column parallel overscan level.
    saturation_grow : int
        Dilation of saturated regions (pixels).
    bleed_threshold : float or None
        Bleed trails are followed along columns down to this *fraction* of each amp's
        saturation level (None: ``mask_saturation``'s default, one half).
    do_crosstalk, do_linearity, do_bias, do_dark, do_bf, do_defects, do_flat : bool
        Switch steps off.
    crosstalk_saturated : {"flag", "skip"}
        See :func:`correct_crosstalk`.
    bf_max_iter, bf_tol
        Options of :func:`correct_brighter_fatter`.
    interpolate_saturated : bool
        Also interpolate over ``SAT`` pixels (the defects are always interpolated).
    min_flat : float
        See :func:`apply_flat`.
    cosmic_rays : {"auto", "none"}
        ``"none"`` skips the cosmic-ray step.
    cr_options, snap_options : dict, optional
        Extra keyword arguments of :func:`detect_cosmic_rays` / :func:`combine_snaps`.
    dtype : dtype
        Output pixel type (default float32; computations are float64).

    Returns
    -------
    IsrResult
        ``exposure``, ``cosmic_rays``, ``snaps`` and per-snap ``diagnostics``.

    Raises
    ------
    TypeError
        If ``raws`` or ``calibs`` have the wrong types.
    InvalidInputError
        Different geometries of raws and calibs, a snap pair with different exposure
        times, non-finite raw pixels, an amp without serial overscan, invalid options;
        and as the individual steps.

    Notes
    -----
    Order matters where effects do not commute: saturation is tested on the raw
    signal (before gain or crosstalk change it); crosstalk is removed before the
    linearity correction because the electronics couple the *measured* (non-linear)
    signals; brighter-fatter acts on all collected charge, so it is corrected after
    bias and dark but before the flat (the flat describes the response after the
    pixel boundaries moved); the variance uses the signal before the flat, with the
    dark charge (Poisson too), and is divided by the flat squared with the image.

    References
    ----------
    .. [1] Bosch, J. et al. 2018, PASJ 70, S5 (HSC ISR).
    .. [2] Plazas Malagón, A. A. et al. 2024, LSST ``ip_isr`` (the Rubin sequence).

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import Calibs, RawFrame, make_detector_geometry
    >>> from lsstdrp.isr import run_isr
    >>> g = make_detector_geometry(2, 1, (32, 16), prescan=1, serial_overscan=8, parallel_overscan=4,
    ...                            gains=2.0, read_noises=5.0, bias_levels=1000.0)
    >>> raw = np.full(g.raw_shape, 1000.0)
    >>> for a in g.amplifiers:
    ...     raw[a.data_bbox.slices] += 50.0               # 50 ADU of signal
    >>> res = run_isr(RawFrame(raw, g, exptime=30.0, dark_time=31.0), Calibs(g))
    >>> float(res.exposure.image.mean()), float(res.exposure.variance.mean())
    (100.0, 125.0)
    """
    frames = _as_raws(raws)
    if not isinstance(calibs, Calibs):
        raise TypeError(f"`calibs` must be an lsstdrp.core.Calibs; got {type(calibs).__name__}")
    if frames[0].geometry != calibs.geometry:
        raise InvalidInputError("`calibs` were made for a different detector geometry than `raws`")
    check_in(crosstalk_saturated, "crosstalk_saturated", ("flag", "skip"))
    check_in(cosmic_rays, "cosmic_rays", ("auto", "none"))
    if bleed_threshold is not None:
        bleed_threshold = check_finite_scalar(bleed_threshold, "bleed_threshold", minimum=0.0, strict=True)
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise InvalidInputError(f"`dtype` must be a floating type; got {dt}")
    opts = {
        "overscan": {
            "statistic": overscan_statistic, "fit": overscan_fit, "order": overscan_order,
            "n_knots": overscan_n_knots, "nsigma": overscan_nsigma,
        },
        "parallel_overscan": bool(parallel_overscan),
        "saturation_grow": check_int(saturation_grow, "saturation_grow"),
        "bleed_threshold": bleed_threshold,
        "do_crosstalk": bool(do_crosstalk),
        "crosstalk_saturated": crosstalk_saturated,
        "do_linearity": bool(do_linearity),
        "do_bias": bool(do_bias),
        "do_dark": bool(do_dark),
        "do_bf": bool(do_bf),
        "bf_max_iter": check_int(bf_max_iter, "bf_max_iter", minimum=1),
        "bf_tol": check_finite_scalar(bf_tol, "bf_tol", minimum=0.0),
        "do_defects": bool(do_defects),
        "interpolate_saturated": bool(interpolate_saturated),
        "do_flat": bool(do_flat),
        "min_flat": check_finite_scalar(min_flat, "min_flat", minimum=0.0, strict=True),
        "dtype": dt,
    }
    snaps = []
    diags = []
    for raw in frames:
        exp, diag = _isr_one(raw, calibs, opts)
        logger.debug("isr: snap %d done (%s)", raw.snap, ", ".join(diag["steps"]))
        snaps.append(exp)
        diags.append(diag)
    cr: CosmicRayResult | SnapCombination | None = None
    exposure = snaps[0]
    if len(snaps) == 2:
        if cosmic_rays == "none":
            exposure = _sum_snaps(snaps[0], snaps[1])
        else:
            cr = combine_snaps(snaps[0], snaps[1], **(snap_options or {}))
            exposure = cr.exposure
    elif cosmic_rays == "auto" and psf is not None:
        cr = detect_cosmic_rays(exposure.image, exposure.variance, psf=psf, mask=exposure.mask, **(cr_options or {}))
        exposure = exposure.replace(image=cr.image, mask=cr.mask, psf=psf if hasattr(psf, "kernel_image") else None)
    return IsrResult(exposure=exposure, cosmic_rays=cr, snaps=tuple(snaps), diagnostics=tuple(diags))


def _sum_snaps(a: Exposure, b: Exposure) -> Exposure:
    meta = {**a.metadata, "snaps": 2}
    return a.replace(
        image=(a.image.astype(np.float64) + b.image).astype(a.image.dtype),
        variance=(a.variance.astype(np.float64) + b.variance).astype(a.variance.dtype),
        mask=a.mask | b.mask,
        exptime=float(a.exptime + b.exptime),
        metadata=meta,
    )
