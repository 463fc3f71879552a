import re

import numpy as np
import pytest
from astropy import units as u
from astropy.table import QTable, Table

from lsstdrp import InvalidInputError
from lsstdrp.core import (
    ASTROMETRIC_REFCAT_COLUMNS,
    CORE_SOURCE_COLUMNS,
    DPDD_NAMES,
    SEXTRACTOR_NAMES,
    SOURCE_COLUMNS,
    column_spec,
    empty_catalog,
    empty_refcat,
    register_column,
    rename_catalog,
    validate_refcat,
)


def test_empty_catalog_full_schema_zero_rows():
    cat = empty_catalog()
    assert isinstance(cat, QTable) and len(cat) == 0
    assert cat.colnames[: len(CORE_SOURCE_COLUMNS)] == list(CORE_SOURCE_COLUMNS)
    # a special-purpose column (source_schema=False) does not change the default schema
    before = empty_catalog().colnames
    register_column("test_schema_extra", "pix", "f8", "for the test", source_schema=False)
    try:
        assert empty_catalog().colnames == before
        assert empty_catalog(columns=["x", "test_schema_extra"]).colnames == ["x", "test_schema_extra"]
    finally:
        del SOURCE_COLUMNS["test_schema_extra"]
    assert "lsstdrp_version" in cat.meta
    for name in CORE_SOURCE_COLUMNS:
        spec = SOURCE_COLUMNS[name]
        if spec.unit is not None and np.dtype(spec.dtype).kind == "f":
            assert cat[name].unit == spec.unit, name
        assert cat[name].dtype == np.dtype(spec.dtype), name
    for required in ["id", "parent_id", "x", "y", "x_err", "y_err", "ra", "dec", "psf_flux",
                     "psf_flux_err", "kron_flux", "ap_flux_r5", "shape_xx", "shape_yy", "shape_xy"]:
        assert required in cat.colnames


def test_empty_catalog_fill_values_and_subset():
    cat = empty_catalog(3, columns=["id", "x", "psf_flux_flag"], meta={"stage": "t"})
    assert cat.colnames == ["id", "x", "psf_flux_flag"]
    assert (cat["id"] == -1).all() and np.isnan(cat["x"].value).all() and not cat["psf_flux_flag"].any()
    assert cat.meta["stage"] == "t"
    with pytest.raises(InvalidInputError, match="'nope' is not in the lsstdrp schema"):
        empty_catalog(columns=["nope"])
    with pytest.raises(InvalidInputError, match="`n_rows`"):
        empty_catalog(-1)


def test_flag_and_name_conventions():
    for name, spec in SOURCE_COLUMNS.items():
        assert name == name.lower() and " " not in name
        # <algo>_flag[_<reason>] columns are booleans; SExtractor-style integer
        # bitfields are named *_flags and are not flag columns in this sense
        if re.search(r"_flag(_|$)", name):
            assert spec.dtype == "?", name
        assert spec.description


def test_register_column():
    spec = register_column("test_extra_col", "pix", "f8", "for the test")
    assert column_spec("test_extra_col") is spec
    assert register_column("test_extra_col", "pix", "f8", "again") is spec
    with pytest.raises(InvalidInputError, match="already registered"):
        register_column("test_extra_col", "deg", "f8", "conflict")
    with pytest.raises(InvalidInputError, match="snake_case"):
        register_column("BadName", None, "f8", "x")
    del SOURCE_COLUMNS["test_extra_col"]


def test_rename_maps():
    cat = empty_catalog(2)
    d = rename_catalog(cat, "dpdd")
    assert {"psfFlux", "coord_ra", "coord_dec", "apFlux_5_0_instFlux"} <= set(d.colnames)
    assert "psf_flux" in cat.colnames  # input untouched
    s = rename_catalog(cat, "sextractor")
    assert {"X_IMAGE", "FLUX_AUTO", "NUMBER"} <= set(s.colnames)
    assert set(DPDD_NAMES) <= set(SOURCE_COLUMNS) and set(SEXTRACTOR_NAMES) <= set(SOURCE_COLUMNS)
    assert len(set(DPDD_NAMES.values())) == len(DPDD_NAMES)
    with pytest.raises(InvalidInputError, match="`to`"):
        rename_catalog(cat, "sdss")


def test_refcat_schemas_and_validation():
    ast = empty_refcat("astrometric", 2)
    assert ast["epoch"].unit == u.d and ast["pmra"].unit == u.mas / u.yr
    assert set(ASTROMETRIC_REFCAT_COLUMNS) == set(ast.colnames)
    ph = empty_refcat("photometric", bands=["g", "r"])
    assert ph["g_flux"].unit == u.nJy and "i_flux" not in ph.colnames
    with pytest.raises(InvalidInputError, match="`bands`"):
        empty_refcat("photometric", bands=["q"])
    with pytest.raises(InvalidInputError, match="`kind`"):
        empty_refcat("spectro")

    t = Table({"id": [1, 2], "ra": [10.0, 10.1], "dec": [-5.0, -5.1], "ra_err_mas": [0.1, 0.1],
               "dec_err_mas": [0.1, 0.1], "pmra": [1.0, 2.0], "pmdec": [0.0, 0.0],
               "parallax": [1.0, 1.0], "epoch": [57388.0, 57388.0]})
    t["ra"].unit = u.deg
    t["dec"].unit = "deg"
    v = validate_refcat(t)
    assert v["ra"].unit == u.deg and v["pmra"].unit == u.mas / u.yr
    t2 = QTable(t)
    t2["ra"] = t2["ra"].to(u.arcsec)
    np.testing.assert_allclose(validate_refcat(t2)["ra"].value, [10.0, 10.1])
    with pytest.raises(InvalidInputError, match="lacks reference-catalog column"):
        validate_refcat(Table({"ra": [1.0], "dec": [1.0]}))
    with pytest.raises(InvalidInputError, match="no rows"):
        validate_refcat(t[:0])
    bad = QTable(t)
    bad["ra"] = [1.0, 2.0] * u.s
    with pytest.raises(InvalidInputError, match="`table\\['ra'\\]` has unit"):
        validate_refcat(bad)
    with pytest.raises(InvalidInputError, match="astropy Table"):
        validate_refcat({"ra": 1})
