"""Test-suite wide fixtures."""

from __future__ import annotations

import numbers
import os
import tempfile
from collections.abc import Callable
from typing import Any

import pytest


def _private_numba_cache() -> None:
    """Give every pytest-xdist worker its own numba cache directory.

    Two workers compiling the same function into one cache can overwrite each other's
    entries (numba's index and data files are written separately), and a worker then
    loads machine code for another signature: wrong results or a segfault, depending on
    timing. Runs here before any test module imports numba (lsstdrp loads it lazily).
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "lsstdrp-numba-cache")
    os.environ["NUMBA_CACHE_DIR"] = os.path.join(base, f"xdist-{worker}")


_private_numba_cache()


def _plain(value: Any) -> Any:
    """A value that pytest-xdist can send between processes (execnet serialises only
    Python builtins: a numpy scalar in a recorded property crashes the worker)."""
    if isinstance(value, (bool, str, type(None))):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)  # numpy arrays, astropy quantities' values
    if callable(tolist):
        return _plain(getattr(value, "value", value).tolist())
    return str(value)


@pytest.fixture
def record_property(record_property: Callable[[str, object], None]) -> Callable[[str, object], None]:
    """pytest's ``record_property`` with values converted to plain Python types, so that
    acceptance figures recorded as numpy scalars survive ``pytest -n 2``."""

    def record(name: str, value: object) -> None:
        record_property(name, _plain(value))

    return record
