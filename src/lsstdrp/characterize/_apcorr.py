"""Aperture corrections: the ratio of a large-aperture flux to each flux algorithm, as a smooth field."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import QTable
from numpy.polynomial import chebyshev as cheb

from .._errors import InvalidInputError
from ._common import check_int, check_pos, check_table, col

__all__ = ["ApertureCorrectionField", "ApertureCorrection", "fit_aperture_correction", "apply_aperture_correction"]

log = logging.getLogger("lsstdrp.characterize")


def _vander(xs: np.ndarray, ys: np.ndarray, order: int) -> np.ndarray:
    terms = [(i, j) for i in range(order + 1) for j in range(order + 1 - i)]
    return np.stack([cheb.chebval(xs, np.eye(i + 1)[i]) * cheb.chebval(ys, np.eye(j + 1)[j]) for i, j in terms], -1)


@dataclasses.dataclass(frozen=True, eq=False)
class ApertureCorrectionField:
    r"""A smooth multiplicative correction :math:`c(x, y)` of one flux algorithm.

    :math:`c(x, y) = \sum_{i+j \le n} a_{ij} T_i(\hat x) T_j(\hat y)` over ``bbox``
    (Chebyshev, :math:`\hat x, \hat y \in [-1, 1]`).

    Attributes
    ----------
    name : str
        The flux column it corrects.
    coefficients : numpy.ndarray
        :math:`a_{ij}` in the order (i, j) for i = 0..n, j = 0..n - i.
    covariance : numpy.ndarray
        Covariance of the coefficients.
    order : int
    bbox : tuple
        ``(x_min, x_max, y_min, y_max)``.
    n_stars : int
        Stars used.
    rms : float
        Robust rms (0.741 IQR) of the stars' ratios about the field.
    """

    name: str
    coefficients: np.ndarray
    covariance: np.ndarray
    order: int
    bbox: tuple[float, float, float, float]
    n_stars: int
    rms: float

    def _design(self, x: Any, y: Any) -> tuple[np.ndarray, tuple]:
        xb, yb = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        x0, x1, y0, y1 = self.bbox
        xs = (2 * xb.ravel() - (x0 + x1)) / (x1 - x0)
        ys = (2 * yb.ravel() - (y0 + y1)) / (y1 - y0)
        return _vander(xs, ys, self.order), xb.shape

    def __call__(self, x: Any, y: Any) -> np.ndarray:
        """The correction factor at pixels (x, y)."""
        d, shape = self._design(x, y)
        return (d @ self.coefficients).reshape(shape)

    def error(self, x: Any, y: Any) -> np.ndarray:
        """1-sigma error of the correction factor at (x, y), from the fit covariance."""
        d, shape = self._design(x, y)
        return np.sqrt(np.clip(np.einsum("nt,ts,ns->n", d, self.covariance, d), 0, None)).reshape(shape)


@dataclasses.dataclass(frozen=True, eq=False)
class ApertureCorrection:
    """Result of :func:`fit_aperture_correction`.

    Attributes
    ----------
    success : bool
        True when every requested algorithm got a field.
    reason : str
        Which algorithms failed and why (empty on success).
    reference : str
        The large-aperture flux column the others are corrected to.
    fields : dict
        ``flux column ->`` :class:`ApertureCorrectionField`.
    stars : numpy.ndarray of bool
        Catalog rows selected as aperture-correction stars.
    """

    success: bool
    reason: str
    reference: str
    fields: dict
    stars: np.ndarray


def fit_aperture_correction(catalog: Any, *, reference: str = "ap_flux_r17",
                            algorithms: Sequence[str] = ("psf_flux", "ap_flux_r3", "ap_flux_r5", "ap_flux_r8"),
                            order: int = 1, bbox: tuple[float, float, float, float] | None = None,
                            stars: Any = None, min_snr: float = 50.0, size_tolerance: float = 0.1,
                            isolation_radius: float = 25.0,
                            clip_sigma: float = 3.0, min_stars_per_term: float = 3.0, max_iter: int = 10
                            ) -> ApertureCorrection:
    r"""Fit the aperture correction of each flux algorithm to a large reference aperture.

    Parameters
    ----------
    catalog : astropy.table.Table
        Measured sources (as :func:`lsstdrp.measure.measure_sources` returns): ``x, y``,
        the ``reference`` and ``algorithms`` flux columns with ``*_err`` and, for the
        default star selection, ``shape_xx, shape_yy, psf_shape_xx, psf_shape_yy``.
        ``<column>_flag`` columns, when present, exclude a row.
    reference : str
        Flux column taken as the total flux (a large aperture, e.g. 17 pixels = 3.4" at
        0.2"/px).
    algorithms : sequence of str
        Flux columns to correct.
    order : int
        Total Chebyshev order of each field (>= 0; 1 or more to follow the PSF's
        variation over the detector).
    bbox : tuple, optional
        ``(x_min, x_max, y_min, y_max)`` (default: the sources' range).
    stars : array_like of bool, optional
        Rows to use; default: ``reference`` S/N >= ``min_snr`` and the adaptive size
        ``shape_xx + shape_yy`` within ``size_tolerance`` (fractional) of the PSF's, and
        no other source within ``isolation_radius``.
    min_snr : float
        Minimum S/N of the reference flux of a star.
    size_tolerance : float
        Fractional size tolerance of the default star selection.
    isolation_radius : float
        Default selection: no other catalog source within this many pixels (the large
        aperture must hold the star's light only).
    clip_sigma : float
        Outlier rejection threshold on the whitened ratio residual.
    min_stars_per_term : float
        A field needs this many stars per coefficient; otherwise its order is lowered
        (down to 0).
    max_iter : int
        Clipping iterations.

    Returns
    -------
    ApertureCorrection

    Raises
    ------
    InvalidInputError
        Missing columns or invalid options.

    Notes
    -----
    For each star, :math:`r_i = F_{\rm ref} / F_{\rm alg}` is fitted by weighted least
    squares (weights from both flux errors, treated as independent, which makes the
    weights conservative) with a Chebyshev polynomial over the detector and iterative
    rejection beyond ``clip_sigma`` times the robust spread (1.4826 x median absolute
    whitened residual, at least 1: blended neighbours inside the large aperture give a
    one-sided tail that a chi²-scaled threshold would let in). Multiplying an algorithm's flux by the field puts it on the
    scale of the reference aperture for point sources everywhere on the detector (the
    PSF's spatial variation changes both the PSF-model mismatch and the encircled
    energy of small apertures); the flux beyond the reference aperture is a separate,
    global correction (it is absorbed by the photometric calibration when that uses the
    same corrected fluxes).

    References
    ----------
    .. [1] Bosch, J. et al. 2018, PASJ 70, S5 (HSC pipeline: aperture corrections as
       smooth fields over each CCD).

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.uniform(0, 100, 300), rng.uniform(0, 100, 300)
    >>> f = 1e5 * np.ones(300)
    >>> cat = QTable({"x": x, "y": y, "ap_flux_r17": f, "ap_flux_r17_err": f / 1e3,
    ...               "psf_flux": f / (1.02 + 1e-4 * x), "psf_flux_err": f / 1e3})
    >>> apc = fit_aperture_correction(cat, algorithms=["psf_flux"], stars=np.ones(300, bool))
    >>> round(float(apc.fields["psf_flux"](50.0, 50.0)), 4)
    1.025
    """
    cat = check_table(catalog, "catalog", ("x", "y", reference, *algorithms))
    order = check_int(order, "order", 0, 6)
    max_iter = check_int(max_iter, "max_iter", 1, 100)
    clip_sigma = check_pos(clip_sigma, "clip_sigma")
    min_snr = check_pos(min_snr, "min_snr", allow_zero=True)
    n = len(cat)
    x = col(cat, "x")
    y = col(cat, "y")
    fr = col(cat, reference)
    fre = col(cat, f"{reference}_err") if f"{reference}_err" in cat.colnames else np.full(n, np.nan)

    def flagged(name: str) -> np.ndarray:
        f = f"{name}_flag"
        return np.asarray(cat[f], bool) if f in cat.colnames else np.zeros(n, bool)

    if stars is None:
        need = ("shape_xx", "shape_yy", "psf_shape_xx", "psf_shape_yy")
        missing = [c for c in need if c not in cat.colnames]
        if missing:
            raise InvalidInputError(f"`catalog` lacks {missing} for the default star selection; pass `stars=`")
        with np.errstate(invalid="ignore", divide="ignore"):
            t = col(cat, "shape_xx") + col(cat, "shape_yy")
            tp = col(cat, "psf_shape_xx") + col(cat, "psf_shape_yy")
            snr = fr / fre
            sel = (np.abs(t / tp - 1.0) <= size_tolerance) & (snr >= min_snr)
        sel &= ~flagged("shape")
        iso = check_pos(isolation_radius, "isolation_radius", allow_zero=True)
        fin = np.isfinite(x) & np.isfinite(y)
        if iso > 0 and fin.sum() > 1:
            from scipy.spatial import cKDTree

            pts = np.stack([x[fin], y[fin]], -1)
            dist, _ = cKDTree(pts).query(pts, k=2)
            alone = np.zeros(n, bool)
            alone[np.nonzero(fin)[0]] = dist[:, 1] > iso
            sel &= alone
    else:
        sel = np.asarray(stars, bool)
        if sel.shape != (n,):
            raise InvalidInputError(f"`stars` must be a boolean array of length {n}; got shape {sel.shape}")
    sel = sel & np.isfinite(x) & np.isfinite(y) & np.isfinite(fr) & (fr > 0) & ~flagged(reference)
    if bbox is None:
        g = np.isfinite(x) & np.isfinite(y)
        if not g.any():
            raise InvalidInputError("`catalog` has no finite positions")
        bbox = (float(x[g].min()), float(x[g].max()), float(y[g].min()), float(y[g].max()))
    x0, x1, y0, y1 = (float(b) for b in bbox)
    if not (x1 > x0 and y1 > y0):
        raise InvalidInputError(f"`bbox` must have max > min; got {bbox!r}")
    xs = (2 * x - (x0 + x1)) / (x1 - x0)
    ys = (2 * y - (y0 + y1)) / (y1 - y0)
    fields: dict[str, ApertureCorrectionField] = {}
    problems = []
    for name in algorithms:
        fa = col(cat, name)
        fae = col(cat, f"{name}_err") if f"{name}_err" in cat.colnames else np.full(n, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = fr / fa
            rel2 = np.nan_to_num((fre / fr) ** 2) + np.nan_to_num((fae / fa) ** 2)
        sig = ratio * np.sqrt(np.maximum(rel2, 1e-12))
        ok = sel & np.isfinite(ratio) & (fa > 0) & ~flagged(name) & np.isfinite(sig)
        o = order
        while o > 0 and ok.sum() < min_stars_per_term * (o + 1) * (o + 2) / 2:
            o -= 1
        if ok.sum() < max(min_stars_per_term, 2):
            problems.append(f"{name}: only {int(ok.sum())} stars")
            continue
        d = _vander(xs, ys, o)
        used = ok.copy()
        for _ in range(max_iter):
            w = 1.0 / sig[used] ** 2
            aw = d[used] * np.sqrt(w)[:, None]
            p, *_ = np.linalg.lstsq(aw, ratio[used] * np.sqrt(w), rcond=None)
            res = ratio - d @ p
            dof = max(int(used.sum()) - d.shape[1], 1)
            chi2_dof = float(np.sum(w * res[used] ** 2) / dof)
            # robust spread of the whitened residuals (blends have a one-sided tail)
            spread = max(1.4826 * float(np.median(np.abs(res[used] / sig[used]))), 1.0)
            with np.errstate(invalid="ignore"):
                new = ok & (np.abs(res) / sig <= clip_sigma * spread)
            if np.array_equal(new, used):
                break
            used = new
            if used.sum() <= d.shape[1]:
                break
        if used.sum() <= d.shape[1]:
            problems.append(f"{name}: too few stars after outlier rejection")
            continue
        w = 1.0 / sig[used] ** 2
        aw = d[used] * np.sqrt(w)[:, None]
        cov = np.linalg.pinv(aw.T @ aw) * max(1.0, chi2_dof)
        q75, q25 = np.percentile(res[used], [75, 25])
        fields[name] = ApertureCorrectionField(name, p, cov, o, (x0, x1, y0, y1), int(used.sum()),
                                               float(0.741 * (q75 - q25)))
    reason = "; ".join(problems)
    if reason:
        log.info("fit_aperture_correction: %s", reason)
    return ApertureCorrection(not problems, reason, reference, fields, sel)


def apply_aperture_correction(catalog: Any, correction: ApertureCorrection) -> QTable:
    """Multiply each corrected flux column (and its error) by its aperture-correction field.

    Parameters
    ----------
    catalog : astropy.table.Table
        With ``x, y`` and the corrected columns.
    correction : ApertureCorrection
        From :func:`fit_aperture_correction`.

    Returns
    -------
    astropy.table.QTable
        A new table (the input is not modified) where every ``<name>`` in
        ``correction.fields`` (and ``<name>_err``) is multiplied by the field at the
        source; ``<name>_apcorr`` and ``<name>_apcorr_err`` hold the factor and its
        error, and ``<name>_flag_apcorr`` marks rows where it could not be applied
        (non-finite position). Rows are never dropped.

    Raises
    ------
    InvalidInputError
        A corrected column is missing.

    Examples
    --------
    >>> import numpy as np
    >>> from astropy.table import QTable
    >>> x, y = np.random.default_rng(1).uniform(0, 100, (2, 50))
    >>> cat = QTable({"x": x, "y": y, "ap_flux_r17": np.full(50, 2.0), "psf_flux": np.ones(50)})
    >>> apc = fit_aperture_correction(cat, algorithms=["psf_flux"], stars=np.ones(50, bool))
    >>> out = apply_aperture_correction(cat, apc)
    >>> float(np.round(out["psf_flux"][0], 6)), "psf_flux_apcorr" in out.colnames
    (2.0, True)
    """
    if not isinstance(correction, ApertureCorrection):
        raise InvalidInputError(f"`correction` must be an ApertureCorrection; got {type(correction).__name__}")
    cat = check_table(catalog, "catalog", ("x", "y", *correction.fields))
    out = QTable(cat, copy=True)
    x = col(cat, "x")
    y = col(cat, "y")
    ok = np.isfinite(x) & np.isfinite(y)
    for name, field in correction.fields.items():
        fac = np.full(len(cat), np.nan)
        err = np.full(len(cat), np.nan)
        if ok.any():
            fac[ok] = field(x[ok], y[ok])
            err[ok] = field.error(x[ok], y[ok])
        unit = getattr(out[name], "unit", None)
        flux = col(out, name)
        new = flux * fac
        out[name] = new * unit if unit is not None else new
        if f"{name}_err" in out.colnames:
            fe = col(out, f"{name}_err")
            ne = np.sqrt((fe * fac) ** 2 + (flux * err) ** 2)
            ue = getattr(out[f"{name}_err"], "unit", None)
            out[f"{name}_err"] = ne * ue if ue is not None else ne
        out[f"{name}_apcorr"] = fac
        out[f"{name}_apcorr_err"] = err
        out[f"{name}_flag_apcorr"] = ~ok
    out.meta["aperture_correction_reference"] = correction.reference
    return out
