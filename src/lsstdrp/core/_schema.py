"""The catalog column registry, full-schema empty catalogs, rename maps, refcat schemas.

One registry is shared by every stage (DESIGN.md section 2, "Catalogs"): snake_case
names, an algorithm prefix (``psf_flux``, ``ap_flux_r5``, ``shape_xx``), boolean flags
``<algo>_flag[_<reason>]``, every column with a unit, a dtype and a description.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import QTable

from .._errors import InvalidInputError

__all__ = [
    "ColumnSpec",
    "SOURCE_COLUMNS",
    "CORE_SOURCE_COLUMNS",
    "APERTURE_RADII",
    "register_column",
    "column_spec",
    "empty_catalog",
    "DPDD_NAMES",
    "SEXTRACTOR_NAMES",
    "rename_catalog",
    "ASTROMETRIC_REFCAT_COLUMNS",
    "photometric_refcat_columns",
    "empty_refcat",
    "validate_refcat",
    "SURVEY_BANDS",
    "GAIA_DR3_EPOCH_MJD",
]

#: The survey bands.
SURVEY_BANDS = ("u", "g", "r", "i", "z", "y")
#: Gaia DR3 reference epoch J2016.0 as MJD: 2016-01-01T12:00 TT = MJD 57388.5 (the
#: simulator's reference catalogs use their own stated ``epoch`` column, 57388.0 by
#: default; half a day of proper motion is < 0.2 mas for 100 mas/yr).
GAIA_DR3_EPOCH_MJD = 57388.5
#: Radii (pixels) of the registered circular apertures ``ap_flux_r<R>``.
APERTURE_RADII = (3, 5, 8, 12, 17)

_PIX = u.pix
_E = u.electron


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """One registered catalog column.

    Parameters
    ----------
    name : str
        snake_case column name.
    unit : astropy.units.UnitBase or None
        Physical unit (None for dimensionless/ids/flags).
    dtype : str
        numpy dtype string (``"f8"``, ``"i8"``, ``"?"``, ``"U8"``).
    description : str
        One line; says the convention where one applies.
    """

    name: str
    unit: Any
    dtype: str
    description: str


def _spec(name: str, unit: Any, dtype: str, description: str) -> ColumnSpec:
    return ColumnSpec(name, unit, dtype, description)


def _flux_block(prefix: str, what: str) -> list[ColumnSpec]:
    return [
        _spec(f"{prefix}", _E, "f8", f"{what} (instrumental, e⁻)"),
        _spec(f"{prefix}_err", _E, "f8", f"1-sigma error of {prefix}"),
        _spec(f"{prefix}_flag", None, "?", f"{prefix} failed or is unreliable"),
    ]


def _build_source_columns() -> dict[str, ColumnSpec]:
    cols: list[ColumnSpec] = [
        _spec("id", None, "i8", "unique source id"),
        _spec("parent_id", None, "i8", "id of the deblend parent (0 = not deblended / is a parent)"),
        _spec("footprint_id", None, "i8", "label of the detection footprint (0 = none)"),
        _spec("n_children", None, "i4", "number of deblended children"),
        _spec("visit", None, "i8", "visit id (-1 when not applicable)"),
        _spec("detector", None, "i4", "detector id (-1 when not applicable)"),
        _spec("x", _PIX, "f8", "centroid column, 0-based, integer at pixel centres"),
        _spec("y", _PIX, "f8", "centroid row, 0-based, integer at pixel centres"),
        _spec("x_err", _PIX, "f8", "1-sigma error of x"),
        _spec("y_err", _PIX, "f8", "1-sigma error of y"),
        _spec("xy_cov", _PIX**2, "f8", "covariance of x and y"),
        _spec("centroid_flag", None, "?", "centroid failed (x, y fall back to the peak)"),
        _spec("ra", u.deg, "f8", "right ascension (ICRS)"),
        _spec("dec", u.deg, "f8", "declination (ICRS)"),
        _spec("ra_err_mas", u.mas, "f8", "1-sigma error of ra*cos(dec)"),
        _spec("dec_err_mas", u.mas, "f8", "1-sigma error of dec"),
        _spec("peak_value", _E, "f8", "image value at the peak pixel"),
        _spec("significance", None, "f8", "peak S/N in the PSF matched-filter map"),
        _spec("footprint_area", _PIX**2, "i8", "number of pixels in the footprint"),
        _spec("local_background", _E, "f8", "local background per pixel (annulus)"),
        _spec("local_background_err", _E, "f8", "1-sigma error of local_background"),
        _spec("local_background_flag", None, "?", "local background failed"),
    ]
    cols += _flux_block("psf_flux", "PSF-fit flux")
    cols += [
        _spec("psf_chi2", None, "f8", "chi^2 per degree of freedom of the PSF fit"),
        _spec("psf_npixels", None, "i4", "pixels used in the PSF fit"),
    ]
    for r in APERTURE_RADII:
        cols += _flux_block(f"ap_flux_r{r}", f"flux in a circular aperture of radius {r} px (exact overlap)")
    cols += [
        _spec("kron_radius", _PIX, "f8", "Kron (1980) first-moment radius"),
        _spec("kron_radius_flag", None, "?", "Kron radius failed"),
    ]
    cols += _flux_block("kron_flux", "flux in the Kron ellipse (2.5 Kron radii)")
    cols += [
        _spec("flux_radius_50", _PIX, "f8", "radius containing 50% of the total flux"),
        _spec("flux_radius_flag", None, "?", "flux radius failed"),
        _spec("shape_xx", _PIX**2, "f8", "adaptive second moment <x x> (Gaussian-weighted)"),
        _spec("shape_yy", _PIX**2, "f8", "adaptive second moment <y y>"),
        _spec("shape_xy", _PIX**2, "f8", "adaptive second moment <x y>"),
        _spec("shape_xx_err", _PIX**2, "f8", "1-sigma error of shape_xx"),
        _spec("shape_yy_err", _PIX**2, "f8", "1-sigma error of shape_yy"),
        _spec("shape_xy_err", _PIX**2, "f8", "1-sigma error of shape_xy"),
        _spec("shape_flag", None, "?", "adaptive moments failed"),
        _spec("psf_shape_xx", _PIX**2, "f8", "adaptive moment <x x> of the PSF at the source"),
        _spec("psf_shape_yy", _PIX**2, "f8", "adaptive moment <y y> of the PSF at the source"),
        _spec("psf_shape_xy", _PIX**2, "f8", "adaptive moment <x y> of the PSF at the source"),
        _spec("hsm_e1", None, "f8", "PSF-corrected ellipticity, distortion convention e=(a²-b²)/(a²+b²)"),
        _spec("hsm_e2", None, "f8", "PSF-corrected ellipticity (distortion) second component"),
        _spec("hsm_sigma_e", None, "f8", "per-component error of hsm_e1/e2"),
        _spec("hsm_resolution", None, "f8", "resolution factor R2 of the PSF correction"),
        _spec("hsm_flag", None, "?", "PSF-corrected shape failed"),
        _spec("extendedness", None, "f8", "0 = point source, 1 = extended"),
        _spec("pixel_flag_edge", None, "?", "footprint touches the image edge or EDGE pixels"),
        _spec("pixel_flag_bad", None, "?", "a BAD pixel in the footprint"),
        _spec("pixel_flag_no_data", None, "?", "a NO_DATA pixel in the footprint"),
        _spec("pixel_flag_saturated", None, "?", "a SAT pixel in the footprint"),
        _spec("pixel_flag_saturated_center", None, "?", "a SAT pixel within 1 px of the centroid"),
        _spec("pixel_flag_interpolated", None, "?", "an INTRP pixel in the footprint"),
        _spec("pixel_flag_interpolated_center", None, "?", "an INTRP pixel within 1 px of the centroid"),
        _spec("pixel_flag_cr", None, "?", "a CR pixel in the footprint"),
        _spec("pixel_flag_cr_center", None, "?", "a CR pixel within 1 px of the centroid"),
        _spec("pixel_flag_suspect", None, "?", "a SUSPECT pixel in the footprint"),
        _spec("psf_flux_njy", u.nJy, "f8", "calibrated PSF flux"),
        _spec("psf_flux_njy_err", u.nJy, "f8", "1-sigma error of psf_flux_njy"),
        _spec("psf_mag", u.mag, "f8", "AB magnitude of psf_flux_njy"),
        _spec("psf_mag_err", u.mag, "f8", "1-sigma error of psf_mag"),
    ]
    return {c.name: c for c in cols}


#: The column registry, in column order: the core source schema first, then the
#: columns stages register with :func:`register_column` (e.g. detect's ``iso_*``).
SOURCE_COLUMNS: dict[str, ColumnSpec] = _build_source_columns()
#: Names of the core source schema (the columns defined here, before any stage
#: registers its own).
CORE_SOURCE_COLUMNS: tuple[str, ...] = tuple(SOURCE_COLUMNS)
#: Registered columns that are not part of the default source schema (e.g. detect's
#: SExtractor-mode ``iso_*`` columns): they appear only when named explicitly.
_NOT_IN_DEFAULT: set[str] = set()


def register_column(name: str, unit: Any, dtype: str, description: str, *,
                    source_schema: bool = True) -> ColumnSpec:
    """Register a new column in the shared source schema (for stages that add columns).

    Parameters
    ----------
    name : str
        snake_case name; must not already be registered with a different definition.
    unit : astropy unit or None
        Unit of the column.
    dtype : str
        numpy dtype string.
    description : str
        One-line description.
    source_schema : bool
        Whether the column belongs to the default full source schema returned by
        :func:`empty_catalog`; False for columns of a special-purpose table (it is then
        included only when named).

    Returns
    -------
    ColumnSpec
        The registered spec.

    Raises
    ------
    InvalidInputError
        If the name is not snake_case, or conflicts with an existing registration.
    """
    if not name or not name.replace("_", "a").isalnum() or name.lower() != name or name[0].isdigit():
        raise InvalidInputError(f"`name` {name!r} must be snake_case (lower case letters, digits, underscores)")
    try:
        np.dtype(dtype)
    except TypeError:
        raise InvalidInputError(f"`dtype` {dtype!r} is not a numpy dtype") from None
    spec = ColumnSpec(name, None if unit is None else u.Unit(unit), dtype, description)
    old = SOURCE_COLUMNS.get(name)
    if old is not None and (old.unit != spec.unit or np.dtype(old.dtype) != np.dtype(spec.dtype)):
        raise InvalidInputError(f"`name` {name!r} is already registered as {old}")
    SOURCE_COLUMNS.setdefault(name, spec)
    if not source_schema and name not in CORE_SOURCE_COLUMNS:
        _NOT_IN_DEFAULT.add(name)
    return SOURCE_COLUMNS[name]


def column_spec(name: str) -> ColumnSpec:
    """Look up a registered column.

    Parameters
    ----------
    name : str
        Column name.

    Returns
    -------
    ColumnSpec

    Raises
    ------
    InvalidInputError
        If the name is not registered.
    """
    try:
        return SOURCE_COLUMNS[name]
    except KeyError:
        raise InvalidInputError(f"column {name!r} is not in the lsstdrp schema registry") from None


def _fill_value(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind in "iu":
        return -1 if dtype.kind == "i" else 0
    return ""


def _make_table(specs: Iterable[ColumnSpec], n_rows: int, meta: Mapping[str, Any] | None) -> QTable:
    from .. import __version__

    table = QTable()
    for spec in specs:
        dt = np.dtype(spec.dtype)
        data = np.full(n_rows, _fill_value(dt), dtype=dt)
        if spec.unit is not None and dt.kind == "f":
            table[spec.name] = u.Quantity(data, spec.unit, copy=False)
        else:
            table[spec.name] = data
        table[spec.name].info.description = spec.description
    table.meta["lsstdrp_version"] = __version__
    if meta:
        table.meta.update(meta)
    return table


def empty_catalog(n_rows: int = 0, *, columns: Iterable[str] | None = None, meta: Mapping[str, Any] | None = None) -> QTable:
    """A full-schema source catalog with ``n_rows`` rows of fill values.

    Floats are NaN, flags False, integers -1 (ids), so a row that a stage does not fill
    is visibly unmeasured rather than zero.

    Parameters
    ----------
    n_rows : int
        Number of rows (0 gives the empty, full-schema table: never ``None``).
    columns : iterable of str, optional
        Registered columns to include (in registry order); default every registered
        column of the source schema (those registered with ``source_schema=False``,
        such as detect's SExtractor-mode ``iso_*`` columns, only when named).
    meta : mapping, optional
        Provenance added to ``table.meta`` (the package version is always there).

    Returns
    -------
    astropy.table.QTable

    Raises
    ------
    InvalidInputError
        Negative ``n_rows`` or an unregistered column.

    Examples
    --------
    >>> from lsstdrp.core import empty_catalog
    >>> cat = empty_catalog()
    >>> len(cat), cat["psf_flux"].unit
    (0, Unit("electron"))
    """
    if int(n_rows) != n_rows or n_rows < 0:
        raise InvalidInputError(f"`n_rows` must be a non-negative integer; got {n_rows!r}")
    if columns is None:
        specs = [spec for name, spec in SOURCE_COLUMNS.items() if name not in _NOT_IN_DEFAULT]
    else:
        wanted = list(columns)
        for name in wanted:
            column_spec(name)
        specs = [s for s in SOURCE_COLUMNS.values() if s.name in set(wanted)]
    return _make_table(specs, int(n_rows), meta)


#: snake_case -> Rubin DPDD camelCase names (Source / Object tables).
DPDD_NAMES: dict[str, str] = {
    "id": "sourceId",
    "parent_id": "parentSourceId",
    "visit": "visit",
    "detector": "detector",
    "x": "x",
    "y": "y",
    "x_err": "xErr",
    "y_err": "yErr",
    "ra": "coord_ra",
    "dec": "coord_dec",
    "ra_err_mas": "coord_raErr",
    "dec_err_mas": "coord_decErr",
    "psf_flux": "psfFlux",
    "psf_flux_err": "psfFluxErr",
    "psf_flux_flag": "psfFlux_flag",
    "psf_flux_njy": "psfFlux_nJy",
    "psf_flux_njy_err": "psfFluxErr_nJy",
    "psf_mag": "psfMag",
    "psf_mag_err": "psfMagErr",
    "kron_flux": "kronFlux",
    "kron_flux_err": "kronFluxErr",
    "kron_radius": "kronRad",
    "shape_xx": "ixx",
    "shape_yy": "iyy",
    "shape_xy": "ixy",
    "shape_flag": "shape_flag",
    "psf_shape_xx": "ixxPSF",
    "psf_shape_yy": "iyyPSF",
    "psf_shape_xy": "ixyPSF",
    "extendedness": "extendedness",
    "local_background": "localBackground_instFlux",
    "pixel_flag_edge": "pixelFlags_edge",
    "pixel_flag_bad": "pixelFlags_bad",
    "pixel_flag_saturated": "pixelFlags_saturated",
    "pixel_flag_saturated_center": "pixelFlags_saturatedCenter",
    "pixel_flag_interpolated": "pixelFlags_interpolated",
    "pixel_flag_interpolated_center": "pixelFlags_interpolatedCenter",
    "pixel_flag_cr": "pixelFlags_cr",
    "pixel_flag_cr_center": "pixelFlags_crCenter",
    "pixel_flag_suspect": "pixelFlags_suspect",
    "centroid_flag": "centroid_flag",
}
for _r in APERTURE_RADII:
    DPDD_NAMES[f"ap_flux_r{_r}"] = f"apFlux_{_r}_0_instFlux"
    DPDD_NAMES[f"ap_flux_r{_r}_err"] = f"apFlux_{_r}_0_instFluxErr"
    DPDD_NAMES[f"ap_flux_r{_r}_flag"] = f"apFlux_{_r}_0_flag"

#: snake_case -> sep / SExtractor names (SExtractor pixel columns are 1-based: add 1 to
#: x, y when comparing with X_IMAGE/Y_IMAGE; this map renames, it does not shift).
SEXTRACTOR_NAMES: dict[str, str] = {
    "id": "NUMBER",
    "x": "X_IMAGE",
    "y": "Y_IMAGE",
    "x_err": "ERRX_IMAGE",
    "y_err": "ERRY_IMAGE",
    "shape_xx": "X2WIN_IMAGE",
    "shape_yy": "Y2WIN_IMAGE",
    "shape_xy": "XYWIN_IMAGE",
    "kron_radius": "KRON_RADIUS",
    "kron_flux": "FLUX_AUTO",
    "kron_flux_err": "FLUXERR_AUTO",
    "flux_radius_50": "FLUX_RADIUS",
    "psf_flux": "FLUX_PSF",
    "psf_flux_err": "FLUXERR_PSF",
    "peak_value": "FLUX_MAX",
    "footprint_area": "ISOAREA_IMAGE",
    "local_background": "BACKGROUND",
    "ra": "ALPHA_J2000",
    "dec": "DELTA_J2000",
}


def rename_catalog(catalog: QTable, to: str = "dpdd") -> QTable:
    """Return a copy of ``catalog`` with columns renamed to another naming scheme.

    Parameters
    ----------
    catalog : astropy.table.QTable or Table
        A catalog with lsstdrp (snake_case) names.
    to : {"dpdd", "sextractor"}
        Target scheme: Rubin DPDD camelCase or sep/SExtractor names. Columns without an
        equivalent keep their name.

    Returns
    -------
    astropy.table.QTable
        A new table; the input is not modified.

    Raises
    ------
    InvalidInputError
        Unknown scheme.

    Examples
    --------
    >>> from lsstdrp.core import empty_catalog, rename_catalog
    >>> "psfFlux" in rename_catalog(empty_catalog()).colnames
    True
    """
    maps = {"dpdd": DPDD_NAMES, "sextractor": SEXTRACTOR_NAMES}
    if to not in maps:
        raise InvalidInputError(f"`to` is {to!r}; expected one of {list(maps)}")
    mapping = maps[to]
    out = QTable(catalog, copy=True)
    for old in list(out.colnames):
        new = mapping.get(old)
        if new is not None and new != old and new not in out.colnames:
            out.rename_column(old, new)
    return out


def _refcat_astrometric() -> dict[str, ColumnSpec]:
    cols = [
        _spec("id", None, "i8", "reference source id"),
        _spec("ra", u.deg, "f8", "right ascension (ICRS) at `epoch`"),
        _spec("dec", u.deg, "f8", "declination (ICRS) at `epoch`"),
        _spec("ra_err_mas", u.mas, "f8", "1-sigma error of ra*cos(dec) at `epoch`"),
        _spec("dec_err_mas", u.mas, "f8", "1-sigma error of dec at `epoch`"),
        _spec("pmra", u.mas / u.yr, "f8", "proper motion in ra*cos(dec)"),
        _spec("pmdec", u.mas / u.yr, "f8", "proper motion in dec"),
        _spec("pmra_err", u.mas / u.yr, "f8", "1-sigma error of pmra"),
        _spec("pmdec_err", u.mas / u.yr, "f8", "1-sigma error of pmdec"),
        _spec("parallax", u.mas, "f8", "parallax"),
        _spec("parallax_err", u.mas, "f8", "1-sigma error of parallax"),
        _spec("epoch", u.d, "f8", "epoch of ra/dec as MJD (TAI); Gaia DR3 (J2016.0) is 57388.5"),
        _spec("g_mag", u.mag, "f8", "broad-band (Gaia-G-like) magnitude"),
    ]
    return {c.name: c for c in cols}


#: Gaia-like astrometric reference catalog schema.
ASTROMETRIC_REFCAT_COLUMNS: dict[str, ColumnSpec] = _refcat_astrometric()


def photometric_refcat_columns(bands: Iterable[str] = SURVEY_BANDS) -> dict[str, ColumnSpec]:
    """Schema of a photometric reference catalog: id, ra, dec, ``<band>_flux[_err]`` in nJy.

    Parameters
    ----------
    bands : iterable of str
        Survey bands to include.

    Returns
    -------
    dict of str to ColumnSpec
    """
    cols = [
        _spec("id", None, "i8", "reference source id"),
        _spec("ra", u.deg, "f8", "right ascension (ICRS)"),
        _spec("dec", u.deg, "f8", "declination (ICRS)"),
    ]
    for b in bands:
        if b not in SURVEY_BANDS:
            raise InvalidInputError(f"`bands` contains {b!r}; expected a subset of {SURVEY_BANDS}")
        cols += [
            _spec(f"{b}_flux", u.nJy, "f8", f"{b}-band flux in the standard bandpass"),
            _spec(f"{b}_flux_err", u.nJy, "f8", f"1-sigma error of {b}_flux"),
        ]
    return {c.name: c for c in cols}


def empty_refcat(kind: str = "astrometric", n_rows: int = 0, *, bands: Iterable[str] = SURVEY_BANDS) -> QTable:
    """An empty (or fill-valued) reference catalog of the given kind.

    Parameters
    ----------
    kind : {"astrometric", "photometric"}
        Gaia-like astrometric or survey-band photometric.
    n_rows : int
        Number of rows.
    bands : iterable of str
        Bands of a photometric catalog.

    Returns
    -------
    astropy.table.QTable

    Raises
    ------
    InvalidInputError
        Unknown kind or band.
    """
    if kind == "astrometric":
        specs = ASTROMETRIC_REFCAT_COLUMNS.values()
    elif kind == "photometric":
        specs = photometric_refcat_columns(bands).values()
    else:
        raise InvalidInputError(f"`kind` is {kind!r}; expected 'astrometric' or 'photometric'")
    if int(n_rows) != n_rows or n_rows < 0:
        raise InvalidInputError(f"`n_rows` must be a non-negative integer; got {n_rows!r}")
    return _make_table(specs, int(n_rows), {"refcat_kind": kind})


def validate_refcat(table: Any, kind: str = "astrometric", *, bands: Iterable[str] | None = None,
                    name: str = "table") -> QTable:
    """Check a user reference catalog against the schema and return it as a QTable.

    Plain columns (no unit) are given the schema unit; columns with a convertible unit
    are converted; missing required columns raise.

    Parameters
    ----------
    table : astropy Table / QTable
        The reference catalog.
    kind : {"astrometric", "photometric"}
        Which schema.
    bands : iterable of str, optional
        Photometric bands to require (default: those present).
    name : str
        The caller's argument name, used in error messages (e.g. ``"refcat"``).

    Returns
    -------
    astropy.table.QTable
        A new table with schema units.

    Raises
    ------
    InvalidInputError
        Missing columns, incompatible units, non-finite positions, empty table.
    """
    from astropy.table import Table

    if not isinstance(table, Table):
        raise InvalidInputError(f"`{name}` must be an astropy Table/QTable; got {type(table).__name__}")
    if len(table) == 0:
        raise InvalidInputError(f"`{name}` (reference catalog) has no rows")
    if kind == "astrometric":
        required = ["id", "ra", "dec", "ra_err_mas", "dec_err_mas", "pmra", "pmdec", "parallax", "epoch"]
        specs = ASTROMETRIC_REFCAT_COLUMNS
    elif kind == "photometric":
        present = [b for b in SURVEY_BANDS if f"{b}_flux" in table.colnames]
        bands = list(bands) if bands is not None else present
        if not bands:
            raise InvalidInputError(f"`{name}` has no '<band>_flux' column for a photometric reference catalog")
        specs = photometric_refcat_columns(bands)
        required = list(specs)
    else:
        raise InvalidInputError(f"`kind` is {kind!r}; expected 'astrometric' or 'photometric'")
    missing = [c for c in required if c not in table.colnames]
    if missing:
        raise InvalidInputError(f"`{name}` lacks reference-catalog column(s) {missing}")
    out = QTable(table, copy=True)
    for cname, spec in specs.items():
        if cname not in out.colnames or spec.unit is None:
            continue
        col = out[cname]
        if isinstance(col, u.Quantity):
            try:
                out[cname] = col.to(spec.unit)
            except u.UnitConversionError:
                raise InvalidInputError(f"`{name}['{cname}']` has unit {col.unit}; expected {spec.unit}") from None
        else:
            unit = getattr(col, "unit", None)
            q = u.Quantity(np.asarray(col, dtype=np.float64), unit if unit is not None else spec.unit)
            try:
                out[cname] = q.to(spec.unit)
            except u.UnitConversionError:
                raise InvalidInputError(f"`{name}['{cname}']` has unit {unit}; expected {spec.unit}") from None
    if not (np.isfinite(out["ra"].value).all() and np.isfinite(out["dec"].value).all()):
        raise InvalidInputError(f"`{name}` has non-finite ra/dec")
    return out
