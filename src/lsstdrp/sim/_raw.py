"""Raw multi-amplifier frames from a calibrated truth image: the instrument simulator.

Physics, in the order it is applied to one snap (every step can be switched off or
scaled through :class:`RawEffects`; static sensor properties live in a
:class:`SensorTruth`, drawn once and reusable between exposures):

1. **Illumination and response.** The truth image :math:`T` (e⁻ expected in the flat-
   fielded frame over the whole exposure) is scaled to the snap and multiplied by the
   quantum-efficiency map :math:`q` (pixel response non-uniformity x vignetting).
2. **Charge displacement** (tree rings, smooth pixel-area variations, edge roll-off):
   the photo-charge generated in a pixel is collected displaced by a static field
   :math:`\\mathbf d(x, y)` (|d| < 1 px), deposited flux-conservingly on the pixel grid
   (cloud-in-cell). Uniform illumination then shows the pixel-area map
   :math:`1 - \\nabla\\cdot\\mathbf d`, and a star's centroid moves by :math:`\\mathbf d`.
   The true flat is the response to uniform light, :math:`F = D(q)\\,c` (with the bad-
   column response :math:`c`), normalised to mean 1.
3. **Poisson noise** on the expected photo-charge.
4. **Brighter-fatter** charge redistribution (kernel formalism of Coulton et al. 2018,
   flux form): :math:`Q_{obs} = Q - \\tfrac12\\nabla\\cdot[Q\\,\\nabla(K\\otimes Q)]`.
5. **Dark current** (with hot pixels) over the dark time and **cosmic rays** (muon
   tracks, electron worms, compact spots; an independent set per snap).
6. **Full well and bleed trails**: charge above the full well flows up and down the
   column, half each way, filling the pixels it reaches (conserved; what leaves the
   detector is recorded).
7. **Electronics**, per amp and in read-out order: the residual 2-D bias structure,
   non-linearity :math:`f` (:class:`~lsstdrp.core.Linearity`, ADU), inter-amp crosstalk
   (linear and quadratic, in e⁻, from the unclipped analog signal of the source), the
   output clipping at ``saturation * (1 + saturation_margin)`` ADU, per-column offsets
   (removed by the parallel overscan), the per-amp bias level with a per-frame drift
   along rows (removed by the serial overscan), read noise and digitisation.

Written in readout order, an amp's raw value is

.. math::

    R = B_{amp} + \\delta(r) + p(c) + \\min\\!\\Big(\\tfrac{1}{g}\\big[g f\\big(\\tfrac{Q + b}{g}\\big)
        + \\textstyle\\sum_s C_{vs} S_s + C^{(2)}_{vs} S_s^2\\big], A_{clip}\\Big) + n

with :math:`S_s = g_s f_s((Q_s + b_s)/g_s) + g_s p_s(c)` the source amp's analog signal
in e⁻. ISR undoes these steps in the reverse order with the true :class:`Calibs`.

This module imports only :mod:`lsstdrp.core` types: it shares no code with
:mod:`lsstdrp.isr`.

References
----------
.. [1] Antilogus, P. et al. 2014, JINST 9, C03048 (brighter-fatter as pixel-boundary
   shifts proportional to the charge of neighbouring pixels).
.. [2] Coulton, W. R. et al. 2018, AJ 155, 258 (the kernel formalism; correction).
.. [3] Astier, P. et al. 2019, A&A 629, A36 (the :math:`a_{ij}` model, PTC covariances).
.. [4] Lage, C., Bradshaw, A., Tyson, J. A. 2017, JINST 12, C03091 (pixel-boundary
   distortions in LSST sensors).
.. [5] Plazas, A. A., Bernstein, G. M., Sheldon, E. S. 2014, PASP 126, 750; Park, H. Y.
   et al. 2017, JINST 12, C05015 (tree rings as charge displacement).
.. [6] Janesick, J. R. 2001, *Scientific Charge-Coupled Devices*, SPIE (PTC, full well,
   bleeding).
.. [7] Groom, D. 2004, Exp. Astron. 14, 45 (cosmic rays and other nonsense in CCDs).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import QTable

from .._errors import InvalidInputError
from ..core import BBox, Calibs, DetectorGeometry, Linearity, RawFrame, as_rng

__all__ = [
    "RawEffects",
    "SensorTruth",
    "RawSimulation",
    "make_sensor_truth",
    "make_raw",
    "make_calibration_exposures",
    "make_bf_aij",
    "bf_kernel_from_aij",
    "apply_brighter_fatter",
    "displace_charge",
]

# fixed child streams, drawn in this order whatever effects are on, so that switching an
# effect off leaves every other realisation unchanged
_SENSOR_STREAMS = ("prnu", "vignetting", "tree_rings", "pixel_area", "hot", "bad_columns",
                   "crosstalk", "nonlinearity", "bias_structure", "spare")
_FRAME_STREAMS = ("poisson", "dark", "cosmic_rays", "drift", "columns", "read_noise", "spare")


def _child_rngs(rng: np.random.Generator, names: Sequence[str]) -> dict[str, np.random.Generator]:
    seeds = rng.integers(0, 2**63 - 1, size=len(names))
    return {n: np.random.default_rng(int(s)) for n, s in zip(names, seeds)}


def _check_range(value: float, name: str, lo: float = 0.0, hi: float = math.inf, *, lo_open: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"`{name}` must be a number; got {value!r}") from None
    if not math.isfinite(v) and not (hi == math.inf and v == math.inf):
        raise InvalidInputError(f"`{name}` must be finite; got {value!r}")
    if v < lo or v > hi or (lo_open and v == lo):
        raise InvalidInputError(f"`{name}` must be in {'(' if lo_open else '['}{lo}, {hi}]; got {value!r}")
    return v


# -- effects ------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RawEffects:
    """Switches and strengths of every instrumental effect of :func:`make_raw`.

    A strength of 0 (or False) switches the effect off. Defaults are LSST-like and all
    on. :meth:`none` gives a frame with no effect at all (only Poisson noise), the
    starting point for switching single effects on.

    Parameters
    ----------
    bias_level : bool
        Add each amp's ``bias_level`` (ADU) to its segment.
    overscan_drift : float
        ADU scale of the per-frame drift of the bias along rows (a decaying start-of-
        read transient, a slope and a slow oscillation, each of random amplitude up to
        this value).
    column_pattern : float
        ADU rms of per-frame, per-column offsets in the data and parallel overscan
        (what the parallel overscan removes).
    bias_structure : float
        e⁻ rms of the static residual 2-D bias (the true ``Calibs.bias``): a smooth
        gradient plus a static column pattern.
    read_noise : bool
        Gaussian read noise of each amp's ``read_noise``.
    quantize : bool
        Round to integer ADU and return int32 raw data (else float32).
    poisson : bool
        Poisson noise on photo-charge and dark charge.
    dark_current : float
        e⁻/s/pixel (0 = no dark current, hot pixels included).
    hot_pixel_fraction : float
        Fraction of pixels with a hot dark rate, log-uniform in ``hot_pixel_rate``.
    hot_pixel_rate : (float, float)
        e⁻/s range of hot pixels.
    hot_pixel_defect_rate : float
        Hot pixels above this rate (e⁻/s) are listed as defects.
    dark_overhead : float
        s of dark accumulation beyond ``exptime`` (read-out); ``dark_time = exptime +
        dark_overhead``.
    prnu : float
        rms of the pixel response non-uniformity (white).
    vignetting : float
        Fractional response drop at the far corner (a smooth quadratic fall-off from a
        centre off the detector).
    tree_ring_amplitude : float
        px: amplitude of the radial tree-ring displacement.
    tree_ring_period : float
        px: mean ring period (three sinusoids with periods 0.6 - 1.6 times this).
    tree_ring_center : (float, float), optional
        (y, x) of the ring centre in px; default off the lower-left corner.
    pixel_area_amplitude : float
        px rms of a smooth curl-free displacement field (pixel-area variations).
    edge_rolloff : float
        px displacement *away from* the detector edge at the edge pixels (lateral
        fields push charge inwards, so flats roll off at the edges), decaying
        exponentially inwards with ``edge_rolloff_scale`` px.
    edge_rolloff_scale : float
    bf_a00 : float
        :math:`a_{00}` (1/e⁻, < 0; 0 = no brighter-fatter) of the power-law
        :math:`a_{ij}` model (:func:`make_bf_aij`).
    bf_power, bf_radius, bf_anisotropy, bf_kernel_radius :
        Shape of the :math:`a_{ij}` model and half-size of the kernel.
    nonlinearity : float
        Fractional signal deficit at the saturation level (0 = linear).
    linearity_kind : {"polynomial", "spline", "lookup"}
        Representation of the true non-linearity in ``Calibs.linearity``.
    crosstalk : float
        Typical magnitude of the crosstalk coefficient between adjacent amps (0 = off).
    crosstalk_quadratic : float
        Typical quadratic coefficient between adjacent amps (1/e⁻).
    saturation : bool
        Full well with bleed trails and output clipping.
    saturation_margin : float
        The output clips at ``saturation * (1 + margin)`` ADU, so every saturated pixel
        reads at or above the declared ``Amplifier.saturation`` despite noise.
    full_well : float, optional
        e⁻; default: the charge whose signal reaches the clip level.
    n_bad_columns : int
        Bad (partially or wholly dead) columns.
    bad_column_response : (float, float)
        Range of their response.
    cosmic_ray_rate : float
        Events per cm² per s of dark time (0 = off).
    cosmic_ray_kinds : (float, float, float)
        Fractions of muon tracks, electron worms and compact spots.
    pixel_size_um, thickness_um : float
        Pixel pitch and depleted thickness (set muon track lengths and energies).
    snap_gap : float
        s between the starts of the two snaps beyond the first snap's exposure.

    Examples
    --------
    >>> fx = RawEffects.none(cosmic_ray_rate=0.1)
    >>> fx.cosmic_ray_rate, fx.bf_a00, fx.poisson
    (0.1, 0.0, True)
    """

    bias_level: bool = True
    overscan_drift: float = 5.0
    column_pattern: float = 0.5
    bias_structure: float = 2.0
    read_noise: bool = True
    quantize: bool = True
    poisson: bool = True
    dark_current: float = 0.02
    hot_pixel_fraction: float = 1e-4
    hot_pixel_rate: tuple[float, float] = (0.5, 50.0)
    hot_pixel_defect_rate: float = 5.0
    dark_overhead: float = 1.0
    prnu: float = 0.01
    vignetting: float = 0.05
    tree_ring_amplitude: float = 0.02
    tree_ring_period: float = 40.0
    tree_ring_center: tuple[float, float] | None = None
    pixel_area_amplitude: float = 0.02
    edge_rolloff: float = 0.05
    edge_rolloff_scale: float = 4.0
    bf_a00: float = -2.0e-6
    bf_power: float = 2.5
    bf_radius: int = 4
    bf_anisotropy: float = 0.1
    bf_kernel_radius: int = 8
    nonlinearity: float = 0.01
    linearity_kind: str = "polynomial"
    crosstalk: float = 2e-4
    crosstalk_quadratic: float = 0.0
    saturation: bool = True
    saturation_margin: float = 0.01
    full_well: float | None = None
    n_bad_columns: int = 2
    bad_column_response: tuple[float, float] = (0.0, 0.5)
    cosmic_ray_rate: float = 0.025
    cosmic_ray_kinds: tuple[float, float, float] = (0.6, 0.3, 0.1)
    pixel_size_um: float = 10.0
    thickness_um: float = 100.0
    snap_gap: float = 2.0

    def __post_init__(self) -> None:
        for f in ("overscan_drift", "column_pattern", "bias_structure", "dark_current", "hot_pixel_defect_rate",
                  "dark_overhead", "prnu", "tree_ring_amplitude", "pixel_area_amplitude", "edge_rolloff",
                  "crosstalk", "crosstalk_quadratic", "nonlinearity", "saturation_margin", "cosmic_ray_rate",
                  "bf_anisotropy", "snap_gap"):
            _check_range(getattr(self, f), f)
        _check_range(self.hot_pixel_fraction, "hot_pixel_fraction", 0.0, 1.0)
        _check_range(self.vignetting, "vignetting", 0.0, 0.9)
        _check_range(self.nonlinearity, "nonlinearity", 0.0, 0.3)
        for f in ("tree_ring_period", "edge_rolloff_scale", "bf_power", "pixel_size_um", "thickness_um"):
            _check_range(getattr(self, f), f, lo_open=True)
        _check_range(-self.bf_a00, "bf_a00 (negated)", 0.0, 1e-3)
        if self.bf_anisotropy >= 1:
            raise InvalidInputError(f"`bf_anisotropy` must be in [0, 1); got {self.bf_anisotropy}")
        for f in ("bf_radius", "bf_kernel_radius", "n_bad_columns"):
            v = getattr(self, f)
            if not isinstance(v, (int, np.integer)) or v < (0 if f == "n_bad_columns" else 1):
                raise InvalidInputError(f"`{f}` must be a {'non-negative' if f == 'n_bad_columns' else 'positive'} integer; got {v!r}")
        if self.bf_kernel_radius < self.bf_radius + 2:
            raise InvalidInputError(
                f"`bf_kernel_radius` ({self.bf_kernel_radius}) must be >= bf_radius + 2 ({self.bf_radius + 2})")
        if self.linearity_kind not in ("polynomial", "spline", "lookup"):
            raise InvalidInputError(f"`linearity_kind` is {self.linearity_kind!r}; expected polynomial, spline or lookup")
        lo, hi = self.hot_pixel_rate
        if not (0 < lo <= hi):
            raise InvalidInputError(f"`hot_pixel_rate` must be (lo, hi) with 0 < lo <= hi; got {self.hot_pixel_rate}")
        lo, hi = self.bad_column_response
        if not (0 <= lo <= hi <= 1):
            raise InvalidInputError(f"`bad_column_response` must be within [0, 1]; got {self.bad_column_response}")
        kinds = np.asarray(self.cosmic_ray_kinds, dtype=float)
        if kinds.shape != (3,) or np.any(kinds < 0) or kinds.sum() <= 0:
            raise InvalidInputError(f"`cosmic_ray_kinds` must be 3 non-negative fractions; got {self.cosmic_ray_kinds}")
        if self.full_well is not None:
            _check_range(self.full_well, "full_well", lo_open=True)

    @classmethod
    def none(cls, **overrides: Any) -> "RawEffects":
        """Every effect off (Poisson noise kept, float32 raw), then ``overrides`` applied.

        Parameters
        ----------
        **overrides
            Fields to set, e.g. ``bf_a00=-2e-6``.

        Returns
        -------
        RawEffects
        """
        off = dict(bias_level=False, overscan_drift=0.0, column_pattern=0.0, bias_structure=0.0, read_noise=False,
                   quantize=False, poisson=True, dark_current=0.0, hot_pixel_fraction=0.0, prnu=0.0,
                   vignetting=0.0, tree_ring_amplitude=0.0, pixel_area_amplitude=0.0, edge_rolloff=0.0,
                   bf_a00=0.0, nonlinearity=0.0, crosstalk=0.0, crosstalk_quadratic=0.0, saturation=False,
                   n_bad_columns=0, cosmic_ray_rate=0.0)
        off.update(overrides)
        return cls(**off)


# -- building blocks (public: the forward models, for tests and users) ---------------------
def displace_charge(charge: Any, dx: Any, dy: Any) -> np.ndarray:
    """Move each pixel's charge by a displacement field, conserving the total.

    The charge of pixel (y, x) is a unit square shifted by ``(dy[y, x], dx[y, x])`` and
    deposited on the grid by area overlap (cloud-in-cell); charge that would leave the
    array is kept in the edge pixel, so ``out.sum() == charge.sum()``.

    Parameters
    ----------
    charge : array_like, shape (ny, nx)
        e⁻ (any real dtype; computed in float64).
    dx, dy : array_like, shape (ny, nx)
        Displacements in pixels, ``|d| < 1``.

    Returns
    -------
    numpy.ndarray of float64, shape (ny, nx)

    Raises
    ------
    InvalidInputError
        Mismatched shapes, non-finite values, or ``|d| >= 1``.

    Notes
    -----
    To first order the collected charge of a uniform illumination :math:`I` is
    :math:`I\\,(1 - \\nabla\\cdot\\mathbf d)`, the pixel-area variation seen in flats
    (tree rings, Plazas et al. 2014), while a compact source's centroid moves by
    :math:`\\mathbf d`: the effect is astrometric as well as photometric.

    Examples
    --------
    >>> import numpy as np
    >>> q = np.zeros((3, 3)); q[1, 1] = 100.0
    >>> out = displace_charge(q, np.full((3, 3), 0.25), np.zeros((3, 3)))
    >>> out[1].tolist(), float(out.sum())
    ([0.0, 75.0, 25.0], 100.0)
    """
    q = np.array(charge, dtype=np.float64)
    dxa = np.asarray(dx, dtype=np.float64)
    dya = np.asarray(dy, dtype=np.float64)
    if q.ndim != 2:
        raise InvalidInputError(f"`charge` must be 2-D; got shape {q.shape}")
    for name, d in (("dx", dxa), ("dy", dya)):
        if d.shape != q.shape:
            raise InvalidInputError(f"`{name}` has shape {d.shape}; it must match `charge` {q.shape}")
        if not np.isfinite(d).all() or np.abs(d).max() >= 1.0:
            raise InvalidInputError(f"`{name}` must be finite with |{name}| < 1 pixel")
    ny, nx = q.shape
    out = np.zeros((ny + 2, nx + 2))
    tmp = np.empty_like(q)
    for oy in (-1, 0, 1):
        # weight of the target row y + oy: max(-dy, 0), 1 - |dy|, max(dy, 0)
        qy = 1.0 - np.abs(dya) if oy == 0 else np.maximum(oy * dya, 0.0)
        qy *= q
        for ox in (-1, 0, 1):
            wx = 1.0 - np.abs(dxa) if ox == 0 else np.maximum(ox * dxa, 0.0)
            np.multiply(qy, wx, out=tmp)
            out[1 + oy:1 + oy + ny, 1 + ox:1 + ox + nx] += tmp
    out[1, :] += out[0, :]
    out[-2, :] += out[-1, :]
    out[:, 1] += out[:, 0]
    out[:, -2] += out[:, -1]
    return out[1:-1, 1:-1].copy()


def make_bf_aij(a00: float, *, power: float = 2.5, radius: int = 4, anisotropy: float = 0.0) -> np.ndarray:
    """The power-law brighter-fatter :math:`a_{ij}` model (pixel-area change per electron).

    Parameters
    ----------
    a00 : float
        :math:`a_{00}` in 1/e⁻ (negative: a pixel with charge shrinks), e.g. -2e-6 as
        measured on LSST sensors (Astier et al. 2019).
    power : float
        :math:`a_{ij} \\propto r^{-p}` for :math:`0 < r = \\sqrt{i^2 + j^2} \\le R`.
    radius : int
        :math:`R`, the half-size of the returned array.
    anisotropy : float
        :math:`\\epsilon` in :math:`[0, 1)`: neighbours along x (serial) are weighted
        :math:`1 + \\epsilon\\cos 2\\theta`.

    Returns
    -------
    numpy.ndarray, shape (2R+1, 2R+1)
        ``a[R + j, R + i]`` for the pixel ``(dy=j, dx=i)`` away; sums to 0 to rounding
        (the pixel area is conserved).

    Notes
    -----
    The fractional area change of pixel :math:`i` is
    :math:`\\delta A_i/A = \\sum_j a_{ij} Q_j` (Antilogus et al. 2014; Astier et al.
    2019), so a uniform flat of :math:`Q` e⁻ is unchanged and a star's core loses
    charge to its wings.

    Examples
    --------
    >>> a = make_bf_aij(-2e-6, radius=2)
    >>> a.shape, abs(float(a.sum())) < 1e-20, float(a[2, 2])
    ((5, 5), True, -2e-06)
    """
    a00 = float(a00)
    if not math.isfinite(a00) or a00 > 0:
        raise InvalidInputError(f"`a00` must be <= 0 (a charged pixel shrinks); got {a00!r}")
    radius = int(radius)
    if radius < 1:
        raise InvalidInputError(f"`radius` must be >= 1; got {radius}")
    j, i = np.mgrid[-radius:radius + 1, -radius:radius + 1].astype(np.float64)
    r = np.hypot(i, j)
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where((r > 0) & (r <= radius + 1e-9), r ** (-float(power)), 0.0)
        cos2 = np.where(r > 0, (i * i - j * j) / np.where(r > 0, r * r, 1.0), 0.0)
    w = w * (1.0 + float(anisotropy) * cos2)
    a = np.zeros_like(w)
    if a00 != 0.0:
        a = -a00 * w / w.sum()
        a[radius, radius] = a00
    return a


def bf_kernel_from_aij(aij: Any, kernel_radius: int) -> np.ndarray:
    """The brighter-fatter kernel :math:`K` whose Laplacian is :math:`-2a`.

    Solves the discrete Poisson equation :math:`\\nabla^2 K = -2a` (5-point Laplacian)
    on a ``(2k+1)²`` grid with :math:`K = 0` outside, by a type-I discrete sine
    transform, so that with :func:`apply_brighter_fatter` a uniform illumination of
    :math:`Q` e⁻ gives :math:`\\delta Q_i = Q\\sum_j a_{ij} Q_j` (Coulton et al. 2018).

    Parameters
    ----------
    aij : array_like, odd square shape
        From :func:`make_bf_aij` (1/e⁻).
    kernel_radius : int
        Half-size ``k`` of the kernel (>= half-size of ``aij`` + 1).

    Returns
    -------
    numpy.ndarray of float64, shape (2k+1, 2k+1)
        The kernel in 1/e⁻. Its effective :math:`a`, :math:`-\\tfrac12\\nabla^2 K` with
        zero padding, equals ``aij`` inside and sums to zero.

    Raises
    ------
    InvalidInputError
        Even or non-square ``aij``, or a kernel too small to hold it.
    """
    from scipy.fft import dstn, idstn

    a = np.asarray(aij, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] % 2 == 0 or not np.isfinite(a).all():
        raise InvalidInputError(f"`aij` must be a finite odd square array; got shape {a.shape}")
    ra = a.shape[0] // 2
    k = int(kernel_radius)
    if k < ra + 1:
        raise InvalidInputError(f"`kernel_radius` ({k}) must be >= {ra + 1} to hold `aij`")
    n = 2 * k + 1
    src = np.zeros((n, n))
    src[k - ra:k + ra + 1, k - ra:k + ra + 1] = -2.0 * a
    lam = 2.0 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1)) - 2.0
    kern = idstn(dstn(src, type=1) / (lam[:, None] + lam[None, :]), type=1)
    return 0.5 * (kern + kern[::-1, ::-1])


def _laplacian_padded(k: np.ndarray) -> np.ndarray:
    p = np.pad(k, 2)
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * p[1:-1, 1:-1]


def _convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Linear convolution (zero outside), cropped to ``image``'s shape, centred kernel."""
    from scipy import fft

    ky, kx = kernel.shape
    ny, nx = image.shape
    sy, sx = fft.next_fast_len(ny + ky - 1, real=True), fft.next_fast_len(nx + kx - 1, real=True)
    spec = fft.rfft2(image, s=(sy, sx))
    spec *= fft.rfft2(kernel, s=(sy, sx))
    full = fft.irfft2(spec, s=(sy, sx))
    return full[ky // 2:ky // 2 + ny, kx // 2:kx // 2 + nx].copy()


def apply_brighter_fatter(charge: Any, kernel: Any) -> np.ndarray:
    """Redistribute charge by the brighter-fatter effect (flux form, conserving).

    .. math::

        Q_{obs} = Q - \\tfrac12 \\nabla\\cdot\\big[Q\\,\\nabla(K\\otimes Q)\\big]

    discretised on pixel faces: with :math:`\\Phi = K\\otimes Q` (zero outside the
    array), the face between neighbours :math:`i, j` carries
    :math:`\\tfrac12(Q_i + Q_j)(\\Phi_j - \\Phi_i)`, and no charge crosses the array
    edge, so the total is conserved exactly.

    Parameters
    ----------
    charge : array_like, shape (ny, nx)
        e⁻ (float64 inside).
    kernel : array_like, odd shape
        :math:`K` in 1/e⁻ (:func:`bf_kernel_from_aij`).

    Returns
    -------
    numpy.ndarray of float64

    Notes
    -----
    This is the model a Coulton et al. (2018) correction inverts: iterating
    :math:`Q \\leftarrow Q_{obs} + \\tfrac12\\nabla\\cdot[Q\\nabla(K\\otimes Q)]` with the
    same discretisation recovers :math:`Q`. For a uniform field it reduces to the
    :math:`a_{ij}` model with :math:`a = -\\tfrac12\\nabla^2 K`.

    Examples
    --------
    >>> import numpy as np
    >>> k = bf_kernel_from_aij(make_bf_aij(-2e-6, radius=2), 4)
    >>> q = np.zeros((15, 15)); q[7, 7] = 1e5; q[7, 8] = 5e4
    >>> out = apply_brighter_fatter(q, k)
    >>> bool(out[7, 7] < 1e5), bool(abs(out.sum() - q.sum()) < 1e-6)
    (True, True)
    """
    q = np.array(charge, dtype=np.float64)
    kern = np.asarray(kernel, dtype=np.float64)
    if q.ndim != 2 or kern.ndim != 2 or kern.shape[0] % 2 == 0 or kern.shape[1] % 2 == 0:
        raise InvalidInputError("`charge` must be 2-D and `kernel` 2-D with odd sizes")
    if not np.isfinite(kern).all():
        raise InvalidInputError("`kernel` has non-finite values")
    phi = _convolve_same(q, kern)
    div = np.zeros_like(q)
    fx = 0.5 * (q[:, 1:] + q[:, :-1]) * (phi[:, 1:] - phi[:, :-1])
    div[:, :-1] += fx
    div[:, 1:] -= fx
    fy = 0.5 * (q[1:, :] + q[:-1, :]) * (phi[1:, :] - phi[:-1, :])
    div[:-1, :] += fy
    div[1:, :] -= fy
    return q - 0.5 * div


# -- sensor truth ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class SensorTruth:
    """The static truth of one simulated detector, reusable between exposures.

    Attributes
    ----------
    geometry : DetectorGeometry
    effects : RawEffects
        The effects it was drawn with (its static effects apply to every exposure).
    calibs : Calibs
        The true calibration products (what ISR should use): ``bias`` (e⁻), ``dark``
        (e⁻/s), ``flat`` (mean 1, includes pixel-area variations and bad columns),
        ``linearity``, ``crosstalk``, ``crosstalk_quadratic``, ``bf_kernel``,
        ``defects`` (bad columns and hot pixels as BBox), ``gains``, ``read_noises``.
        Effects that are off give None (``defects`` an empty tuple).
    qe : numpy.ndarray or None
        Response before charge displacement (PRNU x vignetting), scaled so that the
        flat has mean 1.
    displacement_x, displacement_y : numpy.ndarray or None
        Static charge displacement field (px), sum of the three components below.
    tree_ring_displacement : (numpy.ndarray, numpy.ndarray) or None
        (dx, dy) of the tree rings alone.
    column_response : numpy.ndarray or None
        Multiplicative response (1 except in bad columns).
    hot_pixels : numpy.ndarray of bool or None
    bf_aij : numpy.ndarray or None
        The :math:`a_{ij}` model (1/e⁻) the kernel was derived from.
    bf_aij_effective : numpy.ndarray or None
        :math:`-\\tfrac12\\nabla^2 K` (zero padded): the :math:`a_{ij}` actually
        simulated.
    full_well : numpy.ndarray
        e⁻ per amp (inf when saturation is off).
    clip_adu : numpy.ndarray
        ADU above the overscan where each amp's output clips (inf when off).
    """

    geometry: DetectorGeometry
    effects: RawEffects
    calibs: Calibs
    qe: np.ndarray | None
    displacement_x: np.ndarray | None
    displacement_y: np.ndarray | None
    tree_ring_displacement: tuple[np.ndarray, np.ndarray] | None
    column_response: np.ndarray | None
    hot_pixels: np.ndarray | None
    bf_aij: np.ndarray | None
    bf_aij_effective: np.ndarray | None
    full_well: np.ndarray
    clip_adu: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class RawSimulation:
    """The output of :func:`make_raw` / :func:`make_calibration_exposures`.

    Attributes
    ----------
    raws : tuple of RawFrame
        One or two snaps (:func:`make_raw`) or the calibration frames.
    calibs : Calibs
        The true calibration products (``sensor.calibs``).
    truth : dict
        Every simulated quantity, see :func:`make_raw`.
    sensor : SensorTruth
        The static detector truth; pass it as ``calibs_truth`` to simulate more
        exposures of the same detector.
    """

    raws: tuple[RawFrame, ...]
    calibs: Calibs
    truth: dict
    sensor: SensorTruth


def _geometry(geometry: Any) -> DetectorGeometry:
    if not isinstance(geometry, DetectorGeometry):
        raise InvalidInputError(f"`geometry` must be a lsstdrp.core.DetectorGeometry; got {type(geometry).__name__}")
    return geometry


def _effects(effects: Any) -> RawEffects:
    if not isinstance(effects, RawEffects):
        raise InvalidInputError(f"`effects` must be a RawEffects; got {type(effects).__name__}")
    return effects


def _ro(arr: np.ndarray | None, dtype: Any = None) -> np.ndarray | None:
    if arr is None:
        return None
    out = np.array(arr, dtype=dtype if dtype is not None else arr.dtype, copy=True)
    out.flags.writeable = False
    return out


def _smooth_modes(rng: np.random.Generator, n_modes: int) -> list[tuple[float, ...]]:
    modes = []
    for _ in range(n_modes):
        ky, kx = rng.uniform(0.5, 3.0, 2) * np.pi
        py, px = rng.uniform(0, 2 * np.pi, 2)
        modes.append((float(ky), float(kx), float(py), float(px), float(rng.normal())))
    return modes


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator, n_modes: int = 6,
                  gradient: bool = False) -> Any:
    """A smooth random potential from a few low-frequency cosine modes (zero mean, rms 1),
    or its gradient (gy, gx) per pixel (rms of |grad| 1) when ``gradient``."""
    ny, nx = shape
    y = (np.arange(ny) + 0.5) / ny
    x = (np.arange(nx) + 0.5) / nx
    modes = _smooth_modes(rng, n_modes)
    if not gradient:
        out = np.zeros(shape)
        for ky, kx, py, px, amp in modes:
            out += amp * np.outer(np.cos(ky * y + py), np.cos(kx * x + px))
        out -= out.mean()
        sd = out.std()
        return out / sd if sd > 0 else out
    gy = np.zeros(shape)
    gx = np.zeros(shape)
    for ky, kx, py, px, amp in modes:
        cy, sy = np.cos(ky * y + py), np.sin(ky * y + py)
        cx, sx = np.cos(kx * x + px), np.sin(kx * x + px)
        gy -= (amp * ky / ny) * np.outer(sy, cx)
        gx -= (amp * kx / nx) * np.outer(cy, sx)
    norm = math.sqrt(float(np.mean(gx * gx) + np.mean(gy * gy)))
    if norm > 0:
        gy /= norm
        gx /= norm
    return gy, gx


def _displacement(geom: DetectorGeometry, fx: RawEffects, rngs: dict) -> tuple:
    ny, nx = geom.assembled_shape
    dx = np.zeros((ny, nx))
    dy = np.zeros((ny, nx))
    tree = None
    rng = rngs["tree_rings"]
    periods = rng.uniform(0.6, 1.6, 3) * fx.tree_ring_period
    phases = rng.uniform(0, 2 * np.pi, 3)
    weights = rng.uniform(0.5, 1.0, 3)
    if fx.tree_ring_amplitude > 0:
        cy, cx = fx.tree_ring_center if fx.tree_ring_center is not None else (-0.3 * ny, -0.2 * nx)
        ry = (np.arange(ny, dtype=np.float64) - cy)[:, None]
        rx = (np.arange(nx, dtype=np.float64) - cx)[None, :]
        r = np.hypot(ry, rx)
        dr = np.zeros_like(r)
        for per, ph, w in zip(periods, phases, weights):
            dr += w * np.sin(2 * np.pi * r / per + ph)
        peak = np.abs(dr).max()
        dr *= fx.tree_ring_amplitude / peak if peak > 0 else 0.0
        np.divide(dr, np.where(r > 0, r, 1.0), out=dr)  # dr / r
        tdx, tdy = dr * rx, dr * ry
        del dr, r
        dx += tdx
        dy += tdy
        tree = (tdx.astype(np.float32), tdy.astype(np.float32))
        del tdx, tdy
    rng = rngs["pixel_area"]
    if fx.pixel_area_amplitude > 0:
        gy, gx = _smooth_field((ny, nx), rng, gradient=True)
        dx += fx.pixel_area_amplitude * gx
        dy += fx.pixel_area_amplitude * gy
        del gx, gy
    if fx.edge_rolloff > 0:
        lam = fx.edge_rolloff_scale
        xs = np.arange(nx, dtype=np.float64)
        ys = np.arange(ny, dtype=np.float64)
        # lateral fields push charge away from the edges: flats roll off there
        dx += (fx.edge_rolloff * (np.exp(-xs / lam) - np.exp(-(nx - 1 - xs) / lam)))[None, :]
        dy += (fx.edge_rolloff * (np.exp(-ys / lam) - np.exp(-(ny - 1 - ys) / lam)))[:, None]
    if not (fx.tree_ring_amplitude > 0 or fx.pixel_area_amplitude > 0 or fx.edge_rolloff > 0):
        return None, None, None
    if max(np.abs(dx).max(), np.abs(dy).max()) >= 0.95:
        raise InvalidInputError("the tree-ring, pixel-area and edge roll-off displacements add to >= 0.95 px; "
                                "reduce their amplitudes")
    return dx, dy, tree


def _linearities(geom: DetectorGeometry, fx: RawEffects, clip: np.ndarray, rng: np.random.Generator) -> tuple:
    n = geom.n_amps
    scale = rng.uniform(0.8, 1.2, n)
    cubic = rng.uniform(-0.2, 0.2, n)
    if fx.nonlinearity <= 0:
        return tuple([None] * n)
    out = []
    for k, amp in enumerate(geom.amplifiers):
        s = amp.saturation
        nl = fx.nonlinearity * scale[k]
        # offset(x) = -nl * s * [(1 - c) (x/s)^2 + c (x/s)^3]: -nl*s at x = s, monotonic
        c2 = -nl * (1 - cubic[k]) / s
        c3 = -nl * cubic[k] / s**2
        poly = Linearity("polynomial", coefficients=[c2, c3], turnoff=s)
        if fx.linearity_kind == "polynomial":
            out.append(poly)
            continue
        top = 1.2 * max(clip[k], s) if math.isfinite(clip[k]) else 1.2 * s
        if fx.linearity_kind == "spline":
            knots = np.linspace(0.0, top, 32)  # Akima error < 0.005 ADU vs the polynomial
            out.append(Linearity("spline", knots=knots, values=poly.offset(knots), turnoff=s))
        else:
            xs = np.arange(int(math.ceil(top)) + 1, dtype=np.float64)
            out.append(Linearity("lookup", table=poly.offset(xs), turnoff=s))
    return tuple(out)


def _invert_monotonic(func: Any, target: float, hi: float) -> float:
    lo = 0.0
    while func(hi) < target:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if func(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


def _crosstalk(geom: DetectorGeometry, fx: RawEffects, rng: np.random.Generator) -> tuple:
    n = geom.n_amps
    centers = np.array([[(a.assembled_bbox.y0 + a.assembled_bbox.y1) / 2, (a.assembled_bbox.x0 + a.assembled_bbox.x1) / 2]
                        for a in geom.amplifiers])
    widths = np.array([a.assembled_bbox.shape for a in geom.amplifiers], dtype=float)
    u = rng.uniform(0.5, 1.5, (n, n))
    sgn = np.where(rng.uniform(size=(n, n)) < 0.8, -1.0, 1.0)
    uq = rng.uniform(0.5, 1.5, (n, n))
    if fx.crosstalk <= 0 and fx.crosstalk_quadratic <= 0:
        return None, None
    c = np.zeros((n, n))
    cq = np.zeros((n, n))
    for v in range(n):
        for s in range(n):
            if v == s:
                continue
            dyy = abs(centers[v, 0] - centers[s, 0]) / max(widths[v, 0], 1)
            dxx = abs(centers[v, 1] - centers[s, 1]) / max(widths[v, 1], 1)
            same_row = dyy < 0.5
            dist = dxx if same_row else math.hypot(dxx, dyy)
            if same_row:
                c[v, s] = sgn[v, s] * fx.crosstalk * u[v, s] / max(dist, 1.0) ** 2
            else:
                c[v, s] = sgn[v, s] * 0.1 * fx.crosstalk * u[v, s] / max(dist, 1.0) ** 2
            if same_row and round(dist) == 1:
                cq[v, s] = fx.crosstalk_quadratic * uq[v, s]
    return (c if fx.crosstalk > 0 else None), (cq if fx.crosstalk_quadratic > 0 else None)


def make_sensor_truth(geometry: DetectorGeometry, *, effects: RawEffects = RawEffects(), rng: Any = None) -> SensorTruth:
    """Draw the static truth of a detector: response, displacements, calibs.

    Parameters
    ----------
    geometry : DetectorGeometry
    effects : RawEffects
        Strengths of the static effects (the per-exposure ones are ignored here).
    rng : None, int or numpy.random.Generator
        Seed; each static effect has its own child stream, so switching one effect off
        leaves the others' realisations unchanged.

    Returns
    -------
    SensorTruth

    Raises
    ------
    InvalidInputError
        Bad ``geometry``/``effects``, or displacements adding to >= 0.95 px.

    Notes
    -----
    - **Flat**: :math:`F = D(q)\\,c / \\langle D(q)\\,c\\rangle` with
      :math:`q` = (1 + PRNU) x vignetting, :math:`D` the displacement operator
      (:func:`displace_charge`) and :math:`c` the bad-column response.
    - **Brighter-fatter**: :math:`a_{ij}` from :func:`make_bf_aij`, kernel from
      :func:`bf_kernel_from_aij`.
    - **Non-linearity**: per amp
      :math:`f(x) = x - \\eta s[(1-\\gamma)(x/s)^2 + \\gamma(x/s)^3]`, with :math:`s` the
      saturation, :math:`\\eta` = ``nonlinearity`` x U(0.8, 1.2), :math:`\\gamma` ~
      U(-0.2, 0.2).
    - **Full well**: the charge whose non-linear signal reaches the clip level
      ``saturation * (1 + saturation_margin)``, unless ``effects.full_well`` is set.
    """
    geom = _geometry(geometry)
    fx = _effects(effects)
    rngs = _child_rngs(as_rng(rng), _SENSOR_STREAMS)
    ny, nx = geom.assembled_shape
    n = geom.n_amps
    gains = geom.gains

    # response
    # (each effect draws from its own stream, so conditional draws keep the others fixed)
    vc = rngs["vignetting"].uniform(-1.0, 2.0, 2) * np.array([ny, nx])
    qe = None
    if fx.prnu > 0 or fx.vignetting > 0:
        qe = np.ones((ny, nx))
        if fx.prnu > 0:
            qe += fx.prnu * rngs["prnu"].normal(0.0, 1.0, (ny, nx))
        if fx.vignetting > 0:
            r2 = (np.arange(ny)[:, None] - vc[0]) ** 2 + (np.arange(nx)[None, :] - vc[1]) ** 2
            qe *= 1.0 - fx.vignetting * r2 / r2.max()
            del r2
    dx, dy, tree = _displacement(geom, fx, rngs)

    # bad columns (response) and hot pixels
    rng = rngs["bad_columns"]
    defects: list[BBox] = []
    colresp = None
    picks = [(int(rng.integers(n)), rng.uniform(), rng.uniform(), rng.uniform(*fx.bad_column_response), rng.uniform())
             for _ in range(fx.n_bad_columns)]
    if picks:
        colresp = np.ones((ny, nx))
        for k, ux, uy, resp, ufull in picks:
            a = geom.amplifiers[k].assembled_bbox
            col = a.x0 + min(int(ux * a.shape[1]), a.shape[1] - 1)
            trap = a.y0 + min(int(uy * a.shape[0]), a.shape[0] - 1)
            # pixels upstream of a blocking trap (farther from the serial register)
            if ufull < 0.5:
                b = BBox(a.y0, a.y1, col, col + 1)
            elif geom.amplifiers[k].flip_y:
                b = BBox(a.y0, trap + 1, col, col + 1)
            else:
                b = BBox(trap, a.y1, col, col + 1)
            colresp[b.slices] = resp
            defects.append(b)
    rng = rngs["hot"]
    dark = hot = None
    if fx.dark_current > 0:
        n_hot = int(rng.binomial(ny * nx, fx.hot_pixel_fraction))
        where = rng.choice(ny * nx, size=n_hot, replace=False)
        rate = np.exp(rng.uniform(np.log(fx.hot_pixel_rate[0]), np.log(fx.hot_pixel_rate[1]), n_hot))
        hot = np.zeros((ny, nx), dtype=bool)
        hot.ravel()[where] = True
        dark = np.full((ny, nx), fx.dark_current)
        dark.ravel()[where] += rate
        for y, x in zip(*np.nonzero(hot & (dark > fx.hot_pixel_defect_rate))):
            defects.append(BBox(int(y), int(y) + 1, int(x), int(x) + 1))

    # flat = D(qe) * colresp, normalised
    base = qe if qe is not None else np.ones((ny, nx))
    flat_raw = displace_charge(base, dx, dy) if dx is not None else base.copy()
    if colresp is not None:
        flat_raw = flat_raw * colresp
    flat = None
    if qe is not None or dx is not None or colresp is not None:
        norm = flat_raw.mean()
        qe = base / norm
        flat = flat_raw / norm

    # bias structure (e-): smooth gradient + static column pattern
    rng = rngs["bias_structure"]
    smooth = _smooth_field((ny, nx), rng, n_modes=3)
    cols = rng.normal(0.0, 1.0, nx)
    bias = None
    if fx.bias_structure > 0:
        bias = fx.bias_structure * (0.8 * smooth + 0.6 * cols[None, :])

    # brighter-fatter
    aij = kern = aeff = None
    if fx.bf_a00 < 0:
        aij = make_bf_aij(fx.bf_a00, power=fx.bf_power, radius=fx.bf_radius, anisotropy=fx.bf_anisotropy)
        kern = bf_kernel_from_aij(aij, fx.bf_kernel_radius)
        aeff = -0.5 * _laplacian_padded(kern)

    # electronics
    clip = np.array([a.saturation * (1.0 + fx.saturation_margin) if fx.saturation else math.inf
                     for a in geom.amplifiers])
    lins = _linearities(geom, fx, clip, rngs["nonlinearity"])
    full_well = np.full(n, math.inf)
    if fx.saturation:
        for k in range(n):
            if fx.full_well is not None:
                full_well[k] = fx.full_well
            elif lins[k] is None:
                full_well[k] = gains[k] * clip[k]
            else:
                lin = lins[k]
                full_well[k] = gains[k] * _invert_monotonic(lambda x: float(lin.evaluate(x)), clip[k], clip[k])
    xt, xtq = _crosstalk(geom, fx, rngs["crosstalk"])
    calibs = Calibs(
        geom, bias=bias, dark=dark, flat=flat,
        linearity=lins if any(lin is not None for lin in lins) else None,
        crosstalk=xt, crosstalk_quadratic=xtq, bf_kernel=kern, defects=tuple(sorted(defects, key=BBox.to_tuple)),
        gains=gains, read_noises=geom.read_noises,
        metadata={"source": "lsstdrp.sim.make_sensor_truth", "bf_a00": fx.bf_a00},
    )
    return SensorTruth(
        geometry=geom, effects=fx, calibs=calibs,
        qe=_ro(qe, np.float32), displacement_x=_ro(dx, np.float32), displacement_y=_ro(dy, np.float32),
        tree_ring_displacement=None if tree is None else (_ro(tree[0]), _ro(tree[1])),
        column_response=_ro(colresp, np.float32), hot_pixels=_ro(hot),
        bf_aij=_ro(aij), bf_aij_effective=_ro(aeff), full_well=_ro(full_well), clip_adu=_ro(clip),
    )


def _sensor_from_calibs(calibs: Calibs, fx: RawEffects) -> SensorTruth:
    """A SensorTruth that uses a given Calibs as the truth (no charge displacement)."""
    geom = calibs.geometry
    gains = calibs.amp_gains()
    clip = np.array([a.saturation * (1.0 + fx.saturation_margin) if fx.saturation else math.inf
                     for a in geom.amplifiers])
    lins = calibs.linearity or tuple([None] * geom.n_amps)
    full_well = np.full(geom.n_amps, math.inf)
    if fx.saturation:
        for k in range(geom.n_amps):
            lin = lins[k]
            if fx.full_well is not None:
                full_well[k] = fx.full_well
            elif lin is None:
                full_well[k] = gains[k] * clip[k]
            else:
                full_well[k] = gains[k] * _invert_monotonic(lambda x: float(lin.evaluate(x)), clip[k], clip[k])
    aeff = None if calibs.bf_kernel is None else -0.5 * _laplacian_padded(np.asarray(calibs.bf_kernel))
    for f in ("bias", "dark", "flat"):
        arr = getattr(calibs, f)
        if arr is not None and not np.isfinite(arr).all():
            raise InvalidInputError(f"`calibs_truth.{f}` has non-finite pixels; a truth frame must be finite")
    if calibs.dark is not None and np.min(calibs.dark) < 0:
        raise InvalidInputError("`calibs_truth.dark` has negative dark current")
    return SensorTruth(
        geometry=geom, effects=fx, calibs=calibs, qe=calibs.flat, displacement_x=None, displacement_y=None,
        tree_ring_displacement=None, column_response=None, hot_pixels=None, bf_aij=None,
        bf_aij_effective=_ro(aeff), full_well=_ro(full_well), clip_adu=_ro(clip),
    )


def _resolve_sensor(geom: DetectorGeometry, calibs_truth: Any, fx: RawEffects, rng: np.random.Generator) -> SensorTruth:
    sensor_rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
    if calibs_truth is None:
        return make_sensor_truth(geom, effects=fx, rng=sensor_rng)
    if isinstance(calibs_truth, SensorTruth):
        sensor = calibs_truth
    elif isinstance(calibs_truth, Calibs):
        sensor = _sensor_from_calibs(calibs_truth, fx)
    else:
        raise InvalidInputError(
            f"`calibs_truth` must be None, a Calibs or a SensorTruth; got {type(calibs_truth).__name__}")
    if sensor.geometry != geom:
        raise InvalidInputError("`calibs_truth` was made for a different `geometry`")
    return sensor


# -- cosmic rays ----------------------------------------------------------------------------
def _cosmic_rays(shape: tuple[int, int], n_events: int, fx: RawEffects, rng: np.random.Generator) -> tuple:
    """Charge image (e⁻, float64) and event table of ``n_events`` cosmic rays."""
    ny, nx = shape
    img = np.zeros(shape)
    rows: list[tuple] = []
    kinds = np.asarray(fx.cosmic_ray_kinds, dtype=float)
    kinds = kinds / kinds.sum()
    pix = fx.pixel_size_um
    for _ in range(n_events):
        kind = ("muon", "worm", "spot")[int(rng.choice(3, p=kinds))]
        x0, y0 = rng.uniform(-0.5, nx - 0.5), rng.uniform(-0.5, ny - 0.5)
        if kind == "muon":
            # zenith angle: flux through a horizontal plane ~ cos^3(theta) sin(theta)
            cos_t = max(rng.uniform() ** 0.25, 0.05)
            tan_t = math.sqrt(1 - cos_t**2) / cos_t
            phi = rng.uniform(0, 2 * np.pi)
            length = min(fx.thickness_um * tan_t / pix, 2.0 * max(nx, ny))
            path_um = fx.thickness_um / cos_t
            nstep = int(max(math.ceil(path_um), math.ceil(6 * length), 8))
            s = (np.arange(nstep) + 0.5) / nstep
            xs = x0 + s * length * math.cos(phi)
            ys = y0 + s * length * math.sin(phi)
            # ~80 e-/um most probable (minimum ionising in Si), Landau-like tail (Moyal)
            moyal = -np.log(np.clip(rng.chisquare(1, nstep), 1e-300, None))
            dep = np.clip(path_um / nstep * 80.0 * (1.0 + 0.15 * moyal), 0.0, None)
            # diffusion: charge made far from the gates (s ~ 0, back side) spreads more
            sig = 0.15 + 0.35 * (1.0 - s)
            x1, y1 = xs[-1], ys[-1]
        elif kind == "worm":
            length = math.exp(rng.uniform(math.log(2.0), math.log(20.0)))
            nstep = int(math.ceil(length / 0.25)) + 1
            turn = np.cumsum(rng.normal(0.0, 0.35, nstep))
            ang = rng.uniform(0, 2 * np.pi) + turn
            xs = x0 + np.concatenate([[0.0], np.cumsum(0.25 * np.cos(ang[:-1]))])
            ys = y0 + np.concatenate([[0.0], np.cumsum(0.25 * np.sin(ang[:-1]))])
            energy = math.exp(rng.uniform(math.log(2e3), math.log(3e4)))
            w = rng.gamma(2.0, 1.0, nstep)
            dep = energy * w / w.sum()
            sig = np.full(nstep, 0.3)
            x1, y1 = xs[-1], ys[-1]
        else:
            nstep = 64
            xs = np.full(nstep, x0)
            ys = np.full(nstep, y0)
            energy = math.exp(rng.uniform(math.log(1e3), math.log(2e4)))
            dep = np.full(nstep, energy / nstep)
            sig = np.full(nstep, rng.uniform(0.3, 0.7))
            x1, y1 = x0, y0
            length = 0.0
        # each step's charge as 8 diffused sub-deposits
        nsub = 8
        px = (xs[:, None] + sig[:, None] * rng.normal(size=(nstep, nsub))).ravel()
        py = (ys[:, None] + sig[:, None] * rng.normal(size=(nstep, nsub))).ravel()
        q = np.repeat(dep / nsub, nsub)
        ix = np.floor(px + 0.5).astype(np.int64)
        iy = np.floor(py + 0.5).astype(np.int64)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        np.add.at(img, (iy[inside], ix[inside]), q[inside])
        rows.append((kind, float(x0), float(y0), float(x1), float(y1), float(length), float(q[inside].sum())))
    table = QTable(rows=rows if rows else None,
                   names=("kind", "x_start", "y_start", "x_end", "y_end", "length_px", "energy_e"),
                   dtype=(str, float, float, float, float, float, float))
    table.meta["unit_energy"] = "electron (deposited inside the detector)"
    return img, table


# -- saturation -----------------------------------------------------------------------------
def _bleed(charge: np.ndarray, fw: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Spill charge above the full well up and down columns (in place); returns
    (charge, charge lost off the array, boolean mask of pixels that received bleed)."""
    over = charge > fw
    received = np.zeros(charge.shape, dtype=bool)
    lost = 0.0
    if not over.any():
        return charge, lost, received
    ny = charge.shape[0]
    for c in np.nonzero(over.any(axis=0))[0]:
        q = charge[:, c]
        f = fw[:, c]
        o = q > f
        edges = np.diff(np.concatenate([[0], o.view(np.int8), [0]]))
        starts, ends = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
        for a, b in zip(starts, ends):
            excess = float(np.sum(q[a:b] - f[a:b]))
            if excess <= 0:
                continue
            q[a:b] = np.minimum(q[a:b], f[a:b])
            for direction in (1, -1):
                e = 0.5 * excess
                idx = np.arange(b, ny) if direction == 1 else np.arange(a - 1, -1, -1)
                if idx.size == 0:
                    lost += e
                    continue
                cap = np.clip(f[idx] - q[idx], 0.0, None)
                cum = np.cumsum(cap)
                k = int(np.searchsorted(cum, e))
                full = idx[:k]
                q[full] += cap[:k]
                received[full, c] = True
                if k < idx.size:
                    q[idx[k]] += e - (cum[k - 1] if k > 0 else 0.0)
                    received[idx[k], c] = True
                else:
                    lost += e - cum[-1]
        charge[:, c] = q
    return charge, lost, received


# -- one frame ------------------------------------------------------------------------------
def _to_readout(seg: np.ndarray, flip_x: bool, flip_y: bool) -> np.ndarray:
    if flip_y:
        seg = seg[::-1, :]
    if flip_x:
        seg = seg[:, ::-1]
    return seg


def _simulate_frame(expected: np.ndarray | None, sensor: SensorTruth, fx: RawEffects, rng: np.random.Generator, *,
                    exptime: float, dark_time: float, snap: int, mjd: float | None, band: str | None,
                    visit: int | None, metadata: dict) -> tuple[RawFrame, dict]:
    """One raw frame from an expected *illumination* (e⁻ in the flat-fielded frame)."""
    geom = sensor.geometry
    calibs = sensor.calibs
    rngs = _child_rngs(rng, _FRAME_STREAMS)
    ny, nx = geom.assembled_shape
    truth: dict[str, Any] = {}

    # photo-charge
    if expected is None:
        photo_exp = np.zeros((ny, nx))
    else:
        photo_exp = expected * sensor.qe if sensor.qe is not None else expected.copy()
        if sensor.displacement_x is not None:
            photo_exp = displace_charge(photo_exp, sensor.displacement_x, sensor.displacement_y)
        if sensor.column_response is not None:
            photo_exp = photo_exp * sensor.column_response
    truth["charge_expected"] = photo_exp.astype(np.float32)
    photo = rngs["poisson"].poisson(photo_exp).astype(np.float64) if fx.poisson else photo_exp.copy()
    if calibs.bf_kernel is not None and expected is not None:
        photo = apply_brighter_fatter(photo, calibs.bf_kernel)
    truth["charge_photo"] = photo.astype(np.float32)

    # dark and cosmic rays
    dark = None
    if calibs.dark is not None:
        dark_exp = np.clip(np.asarray(calibs.dark, dtype=np.float64) * dark_time, 0, None)
        dark = rngs["dark"].poisson(dark_exp).astype(np.float64) if fx.poisson else dark_exp
    truth["charge_dark"] = None if dark is None else dark.astype(np.float32)
    area_cm2 = ny * nx * (fx.pixel_size_um * 1e-4) ** 2
    cr_rng = rngs["cosmic_rays"]
    n_cr = int(cr_rng.poisson(fx.cosmic_ray_rate * area_cm2 * dark_time)) if fx.cosmic_ray_rate > 0 else 0
    cr, events = _cosmic_rays((ny, nx), n_cr, fx, cr_rng)
    truth["cr_charge"] = cr.astype(np.float32)
    truth["cr_mask"] = cr >= 1.0
    truth["cr_events"] = events

    charge = photo + cr
    if dark is not None:
        charge += dark
    del photo, dark
    amp_idx = geom.amp_index_image()
    fw = sensor.full_well[amp_idx]
    charge, lost, received = _bleed(charge, fw)
    truth["full_well_mask"] = charge >= fw * (1 - 1e-12)
    truth["bleed_mask"] = received
    truth["bleed_lost_e"] = lost
    truth["charge"] = charge.astype(np.float32)

    # electronics, per amp in read-out order
    gains = calibs.amp_gains()
    rns = calibs.amp_read_noises()
    bias_e = np.asarray(calibs.bias, dtype=np.float64) if calibs.bias is not None else None
    lins = calibs.linearity or tuple([None] * geom.n_amps)
    analog = []  # ADU above the overscan level, data segment in read-out order
    colpat = []
    col_rng = rngs["columns"]
    for k, amp in enumerate(geom.amplifiers):
        q = charge[amp.assembled_bbox.slices]
        if bias_e is not None:
            q = q + bias_e[amp.assembled_bbox.slices]
        x = q / gains[k]
        if lins[k] is not None:
            x = lins[k].evaluate(x)
        x = _to_readout(x, amp.flip_x, amp.flip_y)
        cp = col_rng.normal(0.0, 1.0, amp.raw_bbox.shape[1]) * fx.column_pattern
        colpat.append(cp)
        dcols = cp[amp.data_bbox.x0 - amp.raw_bbox.x0:amp.data_bbox.x1 - amp.raw_bbox.x0]
        analog.append(x + dcols[None, :])
    xt, xtq = calibs.crosstalk, calibs.crosstalk_quadratic
    if xt is not None or xtq is not None:
        shapes = {a.shape for a in analog}
        if len(shapes) != 1:
            raise InvalidInputError("crosstalk needs amplifiers with equal data shapes")
        sig_e = [analog[k] * gains[k] for k in range(geom.n_amps)]
        out = []
        for v in range(geom.n_amps):
            acc = sig_e[v].copy()
            for s in range(geom.n_amps):
                if xt is not None and xt[v, s] != 0:
                    acc += xt[v, s] * sig_e[s]
                if xtq is not None and xtq[v, s] != 0:
                    acc += xtq[v, s] * sig_e[s] ** 2
            out.append(acc / gains[v])
        analog = out
    sat_mask = np.zeros((ny, nx), dtype=bool)
    raw = np.zeros(geom.raw_shape)
    drift_rng = rngs["drift"]
    rn_rng = rngs["read_noise"]
    levels = []
    for k, amp in enumerate(geom.amplifiers):
        a = np.minimum(analog[k], sensor.clip_adu[k])
        sat_mask[amp.assembled_bbox.slices] = _to_readout(a >= amp.saturation, amp.flip_x, amp.flip_y)
        nrows = amp.raw_bbox.shape[0]
        r = np.arange(nrows, dtype=np.float64)
        u = drift_rng.uniform(-1.0, 1.0, 3)
        tau = drift_rng.uniform(0.02, 0.2) * nrows
        period = drift_rng.uniform(0.3, 2.0) * nrows
        phase = drift_rng.uniform(0, 2 * np.pi)
        drift = fx.overscan_drift * (u[0] * np.exp(-r / tau) + u[1] * (r / nrows - 0.5)
                                     + 0.3 * u[2] * np.sin(2 * np.pi * r / period + phase))
        level = (amp.bias_level if fx.bias_level else 0.0) + drift
        levels.append(level.astype(np.float64))
        seg = np.zeros(amp.raw_bbox.shape)
        seg += level[:, None]
        rb = amp.raw_bbox
        d = amp.data_bbox
        seg[d.y0 - rb.y0:d.y1 - rb.y0, d.x0 - rb.x0:d.x1 - rb.x0] += a
        po = amp.parallel_overscan_bbox
        if not po.is_empty:
            seg[po.y0 - rb.y0:po.y1 - rb.y0, po.x0 - rb.x0:po.x1 - rb.x0] += colpat[k][None, po.x0 - rb.x0:po.x1 - rb.x0]
        if fx.read_noise and rns[k] > 0:
            seg += rn_rng.normal(0.0, rns[k] / gains[k], seg.shape)
        raw[rb.slices] = seg
    if fx.quantize:
        data = np.floor(raw + 0.5).astype(np.int32)
    else:
        data = raw.astype(np.float32)
    truth["saturated_mask"] = sat_mask
    truth["overscan_level"] = tuple(levels)
    truth["column_pattern"] = tuple(colpat)
    truth["exptime"] = exptime
    truth["dark_time"] = dark_time
    frame = RawFrame(data, geom, exptime=exptime, dark_time=dark_time, mjd=mjd, snap=snap, band=band,
                     visit=visit, metadata=metadata)
    return frame, truth


def _input_image(image_e: Any, geom: DetectorGeometry) -> tuple[np.ndarray, dict]:
    meta: dict[str, Any] = {}
    arr = image_e
    if hasattr(image_e, "noiseless") and not isinstance(image_e, np.ndarray):
        if image_e.noiseless is None:
            raise InvalidInputError("`exposure_truth` has no noiseless image (catalog-level mode); render it")
        arr = image_e.noiseless
        for f in ("band", "visit", "mjd"):
            meta[f] = getattr(image_e, f, None)
    if arr is None:
        raise TypeError("`image_e` is None; expected a 2-D array in e⁻ or an ExposureTruth")
    a = np.asarray(arr)
    if a.dtype.kind not in "fiub":
        raise InvalidInputError(f"`image_e` has dtype {a.dtype}; expected a real numeric array")
    if a.ndim != 2 or a.shape != geom.assembled_shape:
        raise InvalidInputError(f"`image_e` has shape {a.shape}; it must be the geometry's assembled_shape "
                                f"{geom.assembled_shape}")
    out = np.array(a, dtype=np.float64, copy=True)
    if not np.isfinite(out).all():
        raise InvalidInputError(f"`image_e` has {int(np.count_nonzero(~np.isfinite(out)))} non-finite pixel(s)")
    if out.min() < 0:
        raise InvalidInputError(f"`image_e` is an expectation in e⁻ and must be >= 0; minimum {out.min()!r}")
    return out, meta


def _stack_truth(frames: list[dict]) -> dict:
    return {k: tuple(f[k] for f in frames) for k in frames[0]}


def make_raw(
    exposure_truth_or_image_e: Any,
    geometry: DetectorGeometry,
    *,
    calibs_truth: Calibs | SensorTruth | None = None,
    rng: Any = None,
    exptime: float = 30.0,
    snaps: int = 1,
    effects: RawEffects = RawEffects(),
    mjd: float | None = None,
    band: str | None = None,
    visit: int | None = None,
) -> RawSimulation:
    """Simulate the raw read-out(s) of a detector from its calibrated truth image.

    Parameters
    ----------
    exposure_truth_or_image_e : ExposureTruth or array_like, shape ``assembled_shape``
        The expected image in e⁻ over the whole exposure, flat-fielded (e.g.
        ``survey.truth[key]`` of :func:`lsstdrp.sim.make_survey`, whose ``noiseless``
        is used, with its band, visit and MJD). Never modified.
    geometry : DetectorGeometry
        Amplifier layout; ``assembled_shape`` must be the image shape
        (``make_detector_geometry(assembled_shape=image.shape)``).
    calibs_truth : Calibs or SensorTruth, optional
        None draws a new detector (:func:`make_sensor_truth` with ``effects``); a
        :class:`SensorTruth` (e.g. ``previous.sensor``) reuses one, with its own static
        effects; a :class:`~lsstdrp.core.Calibs` is used as the truth as is (its flat as
        the response, no charge displacement).
    rng : None, int or numpy.random.Generator
        Seed of everything. Each effect has its own child stream, so with the same seed
        switching one effect off leaves the others' realisations unchanged.
    exptime : float
        s of the whole exposure (> 0).
    snaps : {1, 2}
        Two snaps split the exposure in halves, each with its own noise, cosmic rays,
        overscan drift and column pattern; the second starts ``effects.snap_gap`` s
        after the first ends.
    effects : RawEffects
        Which effects to apply, and how strong.
    mjd : float, optional
        MJD (TAI) of the start of the first snap (default from the ExposureTruth).
    band : str, optional
    visit : int, optional
        Default from the ExposureTruth.

    Returns
    -------
    RawSimulation
        ``raws`` (1 or 2 :class:`~lsstdrp.core.RawFrame`), ``calibs`` (true),
        ``sensor`` (static truth) and ``truth``, a dict with: ``image_e`` (the input),
        ``exptime``, ``snap_exptimes``, ``flat``, ``qe``, ``displacement_x``,
        ``displacement_y``, ``tree_ring_displacement``, ``bf_kernel``, ``bf_aij``,
        ``bf_aij_effective``, ``dark_rate``, ``hot_pixels``, ``bias_e``,
        ``defect_mask``, ``full_well`` and, as tuples with one entry per snap,
        ``charge_expected`` (expected photo-charge after response and displacement),
        ``charge_photo`` (after Poisson and brighter-fatter), ``charge_dark`` (None
        without dark current),
        ``cr_charge``, ``cr_mask`` (>= 1 e⁻), ``cr_events`` (QTable: kind, x/y start
        and end, length_px, energy_e), ``charge`` (all charge after bleeding),
        ``full_well_mask``, ``bleed_mask``, ``bleed_lost_e``, ``saturated_mask``
        (signal >= the amp's declared saturation), ``overscan_level`` (per amp, ADU
        per raw-segment row), ``column_pattern`` (per amp, ADU per raw-segment
        column), ``dark_time``; plus ``snap_dark_times`` and
        ``clip_adu``. Images are float32 (e⁻) or bool, on the assembled frame.

    Raises
    ------
    InvalidInputError
        Wrong shape, negative or non-finite image; ``snaps`` not 1 or 2; ``exptime``
        not > 0; ``calibs_truth`` for another geometry.

    Notes
    -----
    See the module documentation for the equations and their order. The
    brighter-fatter step acts on each snap's own photo-charge (after Poisson noise),
    so its correlations appear in flat pairs as in real data (Astier et al. 2019).
    Dark charge and cosmic rays are added after it.

    Examples
    --------
    >>> import numpy as np
    >>> from lsstdrp.core import make_detector_geometry
    >>> geom = make_detector_geometry(4, 2, (16, 8), 2, 4, 3)
    >>> sim = make_raw(np.full((32, 32), 100.0), geom, rng=1, exptime=15.0, snaps=2)
    >>> len(sim.raws), sim.raws[0].data.shape, sim.raws[0].data.dtype
    (2, (38, 56), dtype('int32'))
    """
    geom = _geometry(geometry)
    fx = _effects(effects)
    image, meta = _input_image(exposure_truth_or_image_e, geom)
    if snaps not in (1, 2) or isinstance(snaps, bool):
        raise InvalidInputError(f"`snaps` must be 1 or 2; got {snaps!r}")
    exptime = _check_range(exptime, "exptime", lo_open=True)
    band = band if band is not None else meta.get("band")
    visit = visit if visit is not None else meta.get("visit")
    mjd = mjd if mjd is not None else meta.get("mjd")
    gen = as_rng(rng)
    sensor = _resolve_sensor(geom, calibs_truth, fx, gen)
    t_snap = exptime / snaps
    frames, truths = [], []
    for s in range(snaps):
        frng = np.random.default_rng(int(gen.integers(0, 2**63 - 1)))
        smjd = None if mjd is None else float(mjd) + s * (t_snap + fx.snap_gap) / 86400.0
        frame, tr = _simulate_frame(image * (t_snap / exptime), sensor, fx, frng, exptime=t_snap,
                                    dark_time=t_snap + fx.dark_overhead, snap=s, mjd=smjd, band=band,
                                    visit=visit, metadata={"simulated": True, "snaps": snaps})
        frames.append(frame)
        truths.append(tr)
    truth = _stack_truth(truths)
    truth.update(_static_truth(sensor))
    image.flags.writeable = False
    truth["image_e"] = image
    truth["exptime"] = exptime
    truth["snap_exptimes"] = tuple(f.exptime for f in frames)
    truth["snap_dark_times"] = tuple(f.dark_time for f in frames)
    return RawSimulation(raws=tuple(frames), calibs=sensor.calibs, truth=truth, sensor=sensor)


def _static_truth(sensor: SensorTruth) -> dict:
    c = sensor.calibs
    return {
        "flat": c.flat, "qe": sensor.qe, "displacement_x": sensor.displacement_x,
        "displacement_y": sensor.displacement_y, "tree_ring_displacement": sensor.tree_ring_displacement,
        "bf_kernel": c.bf_kernel, "bf_aij": sensor.bf_aij, "bf_aij_effective": sensor.bf_aij_effective,
        "dark_rate": c.dark, "hot_pixels": sensor.hot_pixels, "bias_e": c.bias, "defect_mask": c.defect_mask(),
        "full_well": sensor.full_well, "clip_adu": sensor.clip_adu,
    }


def make_calibration_exposures(
    geometry: DetectorGeometry,
    calibs_truth: Calibs | SensorTruth | None = None,
    *,
    kind: str = "bias",
    n: int = 5,
    levels: float | Sequence[float] | None = None,
    exptime: float | None = None,
    rng: Any = None,
    effects: RawEffects = RawEffects(),
) -> RawSimulation:
    """Simulate calibration frames (biases, darks, flats or flat pairs) with truth.

    Parameters
    ----------
    geometry : DetectorGeometry
    calibs_truth : Calibs or SensorTruth, optional
        The detector (as in :func:`make_raw`); pass the science simulation's ``sensor``
        so the calibration frames see the same detector. None draws a new one.
    kind : {"bias", "dark", "flat", "flat_pair"}
        ``bias``: zero exposure; ``dark``: shutter closed for ``exptime``; ``flat``:
        uniform illumination; ``flat_pair``: two flats per level (for the PTC).
    n : int
        Number of frames (pairs for ``flat_pair``).
    levels : float or sequence, optional
        Flats: expected e⁻ per pixel of the illumination (flat-fielded, i.e. before
        the response): one value for all, or ``n`` values. Default: 20000 e⁻ for
        ``flat``, ``n`` log-spaced levels from 100 e⁻ to 90% of the smallest full well
        for ``flat_pair``.
    exptime : float, optional
        s; defaults 0 (bias), 30 (dark), 1 (flats). Dark time is ``exptime +
        effects.dark_overhead``.
    rng : None, int or numpy.random.Generator
    effects : RawEffects
        Per-exposure effects (cosmic rays, noise, drift ...) and, when a new detector
        is drawn, its static effects.

    Returns
    -------
    RawSimulation
        ``raws`` (in order; a flat pair is two consecutive frames), ``calibs``,
        ``sensor`` and ``truth``: the static truth as in :func:`make_raw`, ``kind``,
        ``levels`` (per frame, e⁻), ``pairs`` (index pairs for ``flat_pair``) and the
        per-frame quantities of :func:`make_raw` as tuples over frames.

    Raises
    ------
    InvalidInputError
        Unknown ``kind``, ``n < 1``, negative levels, wrong number of levels.

    Examples
    --------
    >>> from lsstdrp.core import make_detector_geometry
    >>> geom = make_detector_geometry(2, 1, (8, 8), 1, 3, 2)
    >>> sim = make_calibration_exposures(geom, kind="flat_pair", n=3, rng=0)
    >>> len(sim.raws), sim.truth["pairs"]
    (6, ((0, 1), (2, 3), (4, 5)))
    """
    geom = _geometry(geometry)
    fx = _effects(effects)
    if kind not in ("bias", "dark", "flat", "flat_pair"):
        raise InvalidInputError(f"`kind` is {kind!r}; expected 'bias', 'dark', 'flat' or 'flat_pair'")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InvalidInputError(f"`n` must be a positive integer; got {n!r}")
    gen = as_rng(rng)
    sensor = _resolve_sensor(geom, calibs_truth, fx, gen)
    if exptime is None:
        exptime = {"bias": 0.0, "dark": 30.0}.get(kind, 1.0)
    exptime = _check_range(exptime, "exptime")
    if kind in ("flat", "flat_pair"):
        if levels is None:
            if kind == "flat":
                lv = np.full(n, 20000.0)
            else:
                fw = float(np.min(sensor.full_well))
                top = 0.9 * fw if math.isfinite(fw) else 1.5e5
                lv = np.geomspace(100.0, top, n) if n > 1 else np.array([top])
        else:
            lv = np.atleast_1d(np.asarray(levels, dtype=np.float64))
            if lv.size == 1:
                lv = np.full(n, float(lv[0]))
            if lv.shape != (n,) or not np.isfinite(lv).all() or np.any(lv < 0):
                raise InvalidInputError(f"`levels` must be 1 or {n} finite values >= 0; got {levels!r}")
    else:
        if levels is not None:
            raise InvalidInputError(f"`levels` is only for flats; got {levels!r} for kind={kind!r}")
        lv = np.zeros(n)
    per_frame = np.repeat(lv, 2) if kind == "flat_pair" else lv
    frames, truths = [], []
    ny, nx = geom.assembled_shape
    for i, level in enumerate(per_frame):
        frng = np.random.default_rng(int(gen.integers(0, 2**63 - 1)))
        expected = np.full((ny, nx), float(level)) if kind in ("flat", "flat_pair") else None
        frame, tr = _simulate_frame(expected, sensor, fx, frng, exptime=exptime,
                                    dark_time=exptime + fx.dark_overhead, snap=0, mjd=None, band=None, visit=None,
                                    metadata={"simulated": True, "calib_kind": kind, "level_e": float(level),
                                              "index": i})
        frames.append(frame)
        truths.append(tr)
    truth = _stack_truth(truths)
    truth.update(_static_truth(sensor))
    truth["kind"] = kind
    truth["levels"] = tuple(float(v) for v in per_frame)
    truth["pairs"] = tuple((2 * i, 2 * i + 1) for i in range(n)) if kind == "flat_pair" else ()
    return RawSimulation(raws=tuple(frames), calibs=sensor.calibs, truth=truth, sensor=sensor)
